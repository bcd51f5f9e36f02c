"""When a mode cannot work, the wheel moves down the chain: the first file decides."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from asynclink import (
    LinkError,
    LinkMode,
    LinkModeFallbackWarning,
    ModeFellBack,
    Scheme,
    install_wheels,
    link_wheels,
)
from asynclink._helpers import HELPER_MIN_FILES
from tests.trees import wheel_tree
from tests.wheels import build_wheel

FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h

pytestmark = pytest.mark.anyio

FILES = {"pkg/__init__.py": "", "pkg/mod.py": "VALUE = 1\n", "pkg/tool.sh": "#!/bin/sh\n"}


async def test_clone_without_reflink_falls_back_to_hardlink_with_a_warning(tmp_path: Path) -> None:
    source = wheel_tree(tmp_path / "cache", "pkg", FILES)
    site_packages = tmp_path / "sp"
    site_packages.mkdir()

    with pytest.warns(LinkModeFallbackWarning, match="cannot clone") as caught:
        result = await link_wheels(site_packages, [source], mode="clone")

    assert len(caught) == 1
    (wheel,) = result.wheels
    assert (wheel.requested_mode, wheel.mode) == (LinkMode.CLONE, LinkMode.HARDLINK)
    assert [(f.from_mode, f.to_mode) for f in wheel.fallbacks] == [
        (LinkMode.CLONE, LinkMode.HARDLINK)
    ]
    assert "Operation not supported" in wheel.fallbacks[0].reason
    assert (site_packages / "pkg/mod.py").samefile(source / "pkg/mod.py")


async def test_the_default_clone_falls_back_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = wheel_tree(tmp_path / "cache", "pkg", FILES)
    site_packages = tmp_path / "sp"
    site_packages.mkdir()

    with caplog.at_level(logging.INFO, logger="asynclink"):
        result = await link_wheels(site_packages, [source])

    assert result.wheels[0].mode is LinkMode.HARDLINK
    assert result.wheels[0].fell_back
    assert [r.levelno for r in caplog.records] == [logging.INFO]


async def test_hardlink_across_filesystems_falls_back_to_copy(
    tmp_path: Path, other_device: Path
) -> None:
    source = wheel_tree(tmp_path / "cache", "pkg", FILES, executable=["pkg/tool.sh"])

    with pytest.warns(LinkModeFallbackWarning, match="cannot hardlink"):
        result = await link_wheels(other_device, [source], mode="hardlink")

    (wheel,) = result.wheels
    assert wheel.mode is LinkMode.COPY
    assert "cross-device" in wheel.fallbacks[0].reason
    assert (other_device / "pkg/mod.py").read_text() == "VALUE = 1\n"
    assert (other_device / "pkg/tool.sh").stat().st_mode & 0o777 == 0o755
    assert wheel.copied == wheel.files


async def test_clone_across_filesystems_walks_the_whole_chain(
    tmp_path: Path, other_device: Path
) -> None:
    source = wheel_tree(tmp_path / "cache", "pkg", FILES)

    with pytest.warns(LinkModeFallbackWarning) as caught:
        result = await link_wheels(other_device, [source], mode="clone")

    assert len(caught) == 1
    steps = [(f.from_mode, f.to_mode) for f in result.wheels[0].fallbacks]
    assert steps == [(LinkMode.CLONE, LinkMode.HARDLINK), (LinkMode.HARDLINK, LinkMode.COPY)]
    assert (other_device / "pkg/mod.py").read_text() == "VALUE = 1\n"


@pytest.mark.parametrize("mode", ["hardlink", "clone"])
async def test_a_data_directory_on_another_filesystem_is_copied_the_rest_linked(
    tmp_path: Path, other_device: Path, mode: str
) -> None:
    """The first file decides the wheel's mode, but a link cannot cross devices: a tree of
    the wheel between two other devices (its ``.data/data`` files into a data directory on
    another filesystem) decides for itself, and the package beside it stays linked."""
    scheme = dataclasses.replace(Scheme.for_directory(tmp_path / "env"), data=str(other_device))
    data = {f"demo-1.0.data/data/share/demo/{n}.txt": f"{n}\n" for n in range(3)}
    wheel = build_wheel(tmp_path / "dist", name="demo", files={"demo/__init__.py": "", **data})

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LinkModeFallbackWarning)
        result = await install_wheels(scheme, [wheel], cache_dir=tmp_path / "cache", mode=mode)

    (installed,) = result.wheels
    assert installed.mode in (LinkMode.CLONE, LinkMode.HARDLINK)
    if installed.mode is LinkMode.HARDLINK:
        assert (tmp_path / "env/demo/__init__.py").stat().st_nlink > 1  # linked from the cache
    assert [(other_device / f"share/demo/{n}.txt").read_text() for n in range(3)] == [
        "0\n",
        "1\n",
        "2\n",
    ]
    assert installed.fallbacks[-1].to_mode is LinkMode.COPY
    assert "cross-device" in installed.fallbacks[-1].reason


async def test_a_failed_probe_is_paid_for_by_one_wheel_only(
    tmp_path: Path, other_device: Path
) -> None:
    sources = [
        wheel_tree(tmp_path / f"cache{n}", f"pkg{n}", {f"pkg{n}/a.py": "", f"pkg{n}/b.py": ""})
        for n in range(4)
    ]
    events: list[object] = []

    with pytest.warns(LinkModeFallbackWarning):
        result = await link_wheels(
            other_device, sources, mode="hardlink", jobs=1, on_event=events.append
        )

    probed = [w.fallbacks[0].probed for w in result.wheels]
    assert sorted(probed) == [False, False, False, True]
    assert all(w.mode is LinkMode.COPY for w in result.wheels)
    assert len([e for e in events if isinstance(e, ModeFellBack)]) == 4


async def test_after_the_first_file_a_failure_is_an_error_not_a_fallback(
    tmp_path: Path, tmpfs_at: Callable[[Path], Path]
) -> None:
    source = wheel_tree(tmp_path / "cache", "pkg", {"pkg/a.py": "", "zzz/b.py": ""})
    site_packages = tmp_path / "sp"
    tmpfs_at(site_packages / "zzz")  # a directory of site-packages on another filesystem

    with pytest.raises(LinkError) as caught:
        await link_wheels(site_packages, [source], mode="hardlink")

    assert caught.value.error.errno == errno.EXDEV
    assert caught.value.destination == str(site_packages / "zzz/b.py")
    assert caught.value.source == str(source / "zzz/b.py")
    assert "pkg-1.0: cannot hardlink" in str(caught.value)


def crowd(path: Path, links: Path) -> None:
    """Link ``path`` from ``links`` until the filesystem refuses another link (or skip)."""
    links.mkdir()
    try:
        for n in range(70_000):
            os.link(path, links / str(n))
    except OSError as error:
        if error.errno != errno.EMLINK:
            raise
    else:
        pytest.skip("this filesystem allows more than 70,000 links to a file")


async def test_too_many_links_to_one_file_copies_that_file(tmp_path: Path) -> None:
    source = wheel_tree(tmp_path / "cache", "pkg", FILES)
    crowded = source / "pkg/mod.py"
    crowd(crowded, tmp_path / "links")
    site_packages = tmp_path / "sp"
    site_packages.mkdir()

    result = await link_wheels(site_packages, [source], mode="hardlink")

    assert result.wheels[0].mode is LinkMode.HARDLINK
    assert (site_packages / "pkg/mod.py").read_text() == "VALUE = 1\n"
    assert not (site_packages / "pkg/mod.py").samefile(crowded)
    assert (site_packages / "pkg/tool.sh").samefile(source / "pkg/tool.sh")


async def test_after_a_crowded_first_file_the_next_decides_in_a_directory_left_to_a_helper(
    tmp_path: Path,
) -> None:
    """The link phase makes only the first file's directories when a helper takes the bulk;
    if that file's source has too many links, the next file decides the mode, and the
    directories it needs are made then."""
    bulk = {f"bbb/sub/f{k:04}.py": f"# {k}\n" for k in range(2 * HELPER_MIN_FILES)}
    source = wheel_tree(tmp_path / "cache", "zzz", {"aaa.py": "VALUE = 1\n", **bulk})
    crowd(source / "aaa.py", tmp_path / "links")
    site_packages = tmp_path / "sp"
    site_packages.mkdir()

    result = await link_wheels(site_packages, [source], mode="hardlink", jobs=2)

    assert result.wheels[0].mode is LinkMode.HARDLINK
    assert (site_packages / "aaa.py").read_text() == "VALUE = 1\n"
    assert not (site_packages / "aaa.py").samefile(source / "aaa.py")
    for path in bulk:
        assert (site_packages / path).samefile(source / path)


class FlakyClone:
    """``FICLONE`` refusing with ``EAGAIN`` (ZFS does so for blocks not written out yet, uv
    issue 19674) for the calls numbered in ``refuse``; every other ioctl goes through."""

    def __init__(self, refuse: set[int]) -> None:
        self.refuse = refuse
        self.calls = 0
        self._ioctl = fcntl.ioctl

    def __call__(self, fd: int, request: int, arg: int = 0, *rest: object) -> object:
        if request == FICLONE:
            self.calls += 1
            if self.calls in self.refuse:
                raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        return self._ioctl(fd, request, arg, *rest)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("refuse", "mode", "copied"),
    [
        ({1}, LinkMode.CLONE, 0),  # the first file, once: tried again, cloned
        ({1, 2}, LinkMode.HARDLINK, 0),  # the first file, twice: cannot clone here
        ({3, 5}, LinkMode.CLONE, 1),  # a later file, twice (3: in the loop, 5: once more)
    ],
    ids=["once", "twice-first", "twice-later"],
)
async def test_a_transient_clone_refusal_is_tried_once_more_then_falls_back(
    xfs: Path,
    monkeypatch: pytest.MonkeyPatch,
    refuse: set[int],
    mode: LinkMode,
    copied: int,
) -> None:
    source = wheel_tree(xfs / "cache", "pkg", FILES)
    site_packages = xfs / "sp"
    site_packages.mkdir()
    monkeypatch.setattr(fcntl, "ioctl", FlakyClone(refuse))

    fell_back = mode is not LinkMode.CLONE
    with pytest.warns(LinkModeFallbackWarning) if fell_back else contextlib.nullcontext():
        result = await link_wheels(
            site_packages, [source], mode="clone", jobs=1, helper_processes=0
        )

    (wheel,) = result.wheels
    assert wheel.mode is mode
    assert wheel.copied == copied + 1  # + RECORD, always a copy
    assert all(
        (site_packages / name).read_bytes() == (source / name).read_bytes() for name in FILES
    )
    if mode is LinkMode.HARDLINK:
        assert "[Errno 11]" in wheel.fallbacks[0].reason
