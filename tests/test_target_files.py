"""What asynclink reads in the target is hostile too: a FIFO put where it expects a small file
(an installed distribution's ``asynclink.json``, ``METADATA`` or ``INSTALLER``, a journal)
must not hang it, nor may a FIFO or a device named like a wheel. Opening a FIFO to read waits
for a writer that never comes; each test would hang without ``O_NONBLOCK``, and its short
timeout fails it instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from asynclink import (
    Action,
    InvalidWheelError,
    Scheme,
    TargetError,
    install_wheels,
    installed,
    recover,
)
from tests.wheels import build_wheel

# A hang is in a worker thread that a cancel cannot stop: the thread method ends the run.
pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30, method="thread")]

JOURNAL = ".asynclink-journal"


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    return build_wheel(tmp_path / "dist", name="demo", files={"demo/__init__.py": "X = 1\n"})


async def installed_demo(tmp_path: Path, wheel: Path) -> Scheme:
    scheme = Scheme.for_directory(tmp_path / "env")
    await install_wheels(scheme, [wheel], cache_dir=tmp_path / "cache")
    return scheme


def fifo_in_place_of(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


async def test_a_fifo_as_asynclink_json_makes_a_second_install_reinstall(
    tmp_path: Path, wheel: Path
) -> None:
    """Without its record of the wheel it came from, the distribution is not known to be this
    wheel: it is installed again, which puts the real file back."""
    scheme = await installed_demo(tmp_path, wheel)
    record = Path(scheme.purelib) / "demo-1.0.dist-info" / "asynclink.json"
    fifo_in_place_of(record)

    result = await install_wheels(scheme, [wheel], cache_dir=tmp_path / "cache")

    assert [w.action for w in result.wheels] == [Action.REINSTALLED]
    assert record.is_file()


@pytest.mark.parametrize("name", ["METADATA", "INSTALLER", "asynclink.json"])
async def test_a_fifo_in_a_dist_info_still_lists_the_distribution(
    tmp_path: Path, wheel: Path, name: str
) -> None:
    scheme = await installed_demo(tmp_path, wheel)
    fifo_in_place_of(Path(scheme.purelib) / "demo-1.0.dist-info" / name)

    (found,) = await installed(scheme)

    assert (found.name, found.version) == ("demo", "1.0")


async def test_a_fifo_planted_as_a_journal_is_refused(tmp_path: Path) -> None:
    site_packages = tmp_path / "sp"
    entry = site_packages / JOURNAL / "1-0"
    entry.mkdir(parents=True)
    os.mkfifo(entry / "journal")

    with pytest.raises(TargetError, match="its journal is not a file"):
        await recover(site_packages)


# -- a FIFO or a device named like a wheel ------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "device"])
async def test_a_wheel_that_is_not_a_regular_file_is_refused_not_read(
    tmp_path: Path, wheel: Path, kind: str
) -> None:
    """Hashing a FIFO waits for a writer, and /dev/zero never ends."""
    odd = tmp_path / "house" / "odd-1.0-py3-none-any.whl"
    odd.parent.mkdir()
    if kind == "fifo":
        os.mkfifo(odd)
    else:
        odd.symlink_to("/dev/zero")
    scheme = Scheme.for_directory(tmp_path / "env")

    with pytest.raises(InvalidWheelError, match=r"any\.whl is not a regular file"):
        await install_wheels(scheme, [wheel, odd], cache_dir=tmp_path / "cache")

    assert not (tmp_path / "env" / "demo").exists()
