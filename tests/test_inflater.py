"""Deflated members are inflated by python-isal where it is installed and by the standard
library's zlib otherwise (``ASYNCLINK_INFLATER=zlib`` chooses it): both give the same files and
refuse the same damage."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.commandline import asynclink
from tests.wheels import build_wheel

INFLATERS = {"isal": {}, "zlib": {"ASYNCLINK_INFLATER": "zlib"}}


def chosen(env: dict[str, str]) -> str:
    code = "import asynclink._archive as a; print(a.INFLATER.__name__)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    return done.stdout.strip()


def test_isal_inflates_where_it_is_installed() -> None:
    pytest.importorskip("isal.isal_zlib")

    assert chosen({}) == "isal.isal_zlib"


def test_the_standard_library_inflates_when_asked() -> None:
    assert chosen(INFLATERS["zlib"]) == "zlib"


def big_wheel(directory: Path) -> Path:
    """Members of a few MiB, compressible and not, so that inflating takes several calls."""
    noise = random.Random(7).randbytes(3 << 20)
    files = {"big/text.txt": b"line of text\n" * 500_000, "big/noise.bin": noise, "big/e.txt": ""}
    return build_wheel(directory, name="big", files=files)


@pytest.mark.parametrize("inflater", INFLATERS)
def test_both_inflaters_install_the_same_files(tmp_path: Path, inflater: str) -> None:
    wheel = big_wheel(tmp_path / "dist")
    target = tmp_path / "target"
    env = INFLATERS[inflater]

    done = asynclink(
        "install", "--target", target, "--cache-dir", tmp_path / "cache", wheel, env=env
    )

    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(wheel) as archive:
        for name in ("big/text.txt", "big/noise.bin", "big/e.txt"):
            assert (target / name).read_bytes() == archive.read(name)


@pytest.mark.parametrize("inflater", INFLATERS)
def test_both_inflaters_refuse_a_damaged_member(tmp_path: Path, inflater: str) -> None:
    wheel = big_wheel(tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        info = archive.getinfo("big/text.txt")
    data = bytearray(wheel.read_bytes())
    name_length = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_length = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_length + extra_length
    middle = start + info.compress_size // 2
    data[middle : middle + 64] = bytes(64)  # a run of zeros inside the deflate stream
    wheel.write_bytes(bytes(data))
    target = tmp_path / "target"

    done = asynclink(
        "install", "--target", target, "--cache-dir", tmp_path / "cache", wheel,
        env=INFLATERS[inflater],
    )  # fmt: skip

    assert done.returncode == 1
    assert done.stderr.startswith("asynclink: error: big-1.0-py3-none-any.whl")
    assert "big/text.txt" in done.stderr
    assert "Traceback" not in done.stderr
    assert not target.exists() or not any(target.iterdir())
