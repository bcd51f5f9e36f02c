"""Fixtures shared by the test suite: backends, real filesystems, trees of files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio  # noqa: F401  (a missing trio must fail the run, not drop half the tests)

from asynclink import LinkMode
from tests.environments import REAL_WHEELS, WHEEL_CACHE, make_venv, pip_download
from tests.wheels import build_wheel


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on both backends, listed here so none silently disappears."""
    return str(request.param)


def _mount(kind: str, source: str, mountpoint: Path, *options: str) -> None:
    command = ["mount", "-t", kind, *options, source, str(mountpoint)]
    subprocess.run(command, check=True, capture_output=True)


def _umount(mountpoint: Path) -> None:
    subprocess.run(["umount", "-l", str(mountpoint)], check=False, capture_output=True)


@pytest.fixture(scope="session")
def xfs_reflink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A loop-mounted XFS filesystem made with ``reflink=1``: a place where clones work."""
    if os.geteuid() != 0:
        pytest.skip("needs root to loop-mount an XFS image")
    if shutil.which("mkfs.xfs") is None:
        pytest.skip("needs mkfs.xfs (apt-get install xfsprogs)")
    base = tmp_path_factory.mktemp("xfs")
    image, mountpoint = base / "reflink.img", base / "mnt"
    mountpoint.mkdir()
    with image.open("wb") as handle:
        handle.truncate(400 * 1024 * 1024)
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], check=True)
    try:
        _mount("xfs", str(image), mountpoint, "-o", "loop")
    except subprocess.CalledProcessError as error:
        pytest.skip(f"cannot loop-mount XFS here: {error.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        _umount(mountpoint)


@pytest.fixture
def xfs(xfs_reflink: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh directory on the reflink XFS filesystem for one test."""
    path = Path(tempfile.mkdtemp(dir=xfs_reflink, prefix=request.node.name[:40]))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def other_device(tmp_path: Path) -> Iterator[Path]:
    """A directory on another filesystem than ``tmp_path``: tmpfs (``/dev/shm``) versus disk."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the temporary directory")
    path = Path(tempfile.mkdtemp(dir=shm, prefix="asynclink-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs of its own, to fill up."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    mountpoint = tmp_path / "small-tmpfs"
    mountpoint.mkdir()
    _mount("tmpfs", "tmpfs", mountpoint, "-o", "size=1m")
    try:
        yield mountpoint
    finally:
        _umount(mountpoint)


@pytest.fixture
def tmpfs_at() -> Iterator[Callable[[Path], Path]]:
    """Mount a small tmpfs of its own at a given directory (made if missing): another
    filesystem inside a tree, as a mount point would be."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    mounted: list[Path] = []

    def mount(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        _mount("tmpfs", "tmpfs", path, "-o", "size=4m")
        mounted.append(path)
        return path

    try:
        yield mount
    finally:
        for path in reversed(mounted):
            _umount(path)


@pytest.fixture(params=list(LinkMode), ids=str)
def mode_root(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[LinkMode, Path]:
    """Each link mode, with a directory where it works (clones: on the reflink XFS)."""
    mode: LinkMode = request.param
    return mode, request.getfixturevalue("xfs") if mode is LinkMode.CLONE else tmp_path


@pytest.fixture(scope="session")
def real_wheels() -> list[Path]:
    """The wheels of :data:`~tests.environments.REAL_WHEELS` for the running interpreter,
    downloaded once; the test is skipped, with the reason, when the registry is unreachable."""
    directory = WHEEL_CACHE / f"py{sys.version_info[0]}{sys.version_info[1]}"
    directory.mkdir(parents=True, exist_ok=True)
    try:
        done = pip_download(directory, *REAL_WHEELS)
    except subprocess.TimeoutExpired as error:
        pytest.skip(f"cannot download the real wheels from the package registry: {error}")
    if done.returncode != 0:
        pytest.skip(f"cannot download the real wheels from the package registry: {done.stderr}")
    wheels = sorted(directory.glob("*.whl"))
    assert len(wheels) >= len(REAL_WHEELS)
    return wheels


# -- for the command-line tests --------------------------------------------------------------------


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    """A directory of two wheels, one with a console script (the command-line tests')."""
    directory = tmp_path / "wheelhouse"
    build_wheel(
        directory,
        name="alpha",
        files={"alpha/__init__.py": "def main():\n    print('alpha!')\n"},
        entry_points="[console_scripts]\nalpha = alpha:main\n",
    )
    build_wheel(directory, name="beta", files={"beta/__init__.py": "B = 1\n"})
    return directory


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    """A new venv, without pip."""
    return make_venv(tmp_path / "venv")
