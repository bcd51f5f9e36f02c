"""Real Python environments and real downloads for the tests: venvs, and ``pip download``."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path


def make_venv(path: Path, with_pip: bool = False) -> Path:
    """A fresh virtual environment of the interpreter running the tests.

    With pip, it is a copy of one made once per test run: ``ensurepip`` takes seconds, a copy
    milliseconds, and a venv's interpreter finds its site-packages relative to where it is
    (only pip's own launcher scripts keep the first venv's path: run ``python -m pip``)."""
    if not with_pip:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
        return path
    global _pip_venv
    if _pip_venv is None:
        made = Path(tempfile.mkdtemp(prefix="asynclink-pip-venv-")) / "venv"
        atexit.register(shutil.rmtree, made.parent, True)
        subprocess.run([sys.executable, "-m", "venv", str(made)], check=True)
        _pip_venv = made
    shutil.copytree(_pip_venv, path, symlinks=True)
    config = path / "pyvenv.cfg"
    config.write_text(config.read_text().replace(str(_pip_venv), str(path)))
    return path


_pip_venv: Path | None = None


def pip_download(destination: Path, *requirements: str) -> subprocess.CompletedProcess[str]:
    """Binary wheels of ``requirements`` (no dependencies) into ``destination``, with pip."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(destination),
            *requirements,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


#: One pure wheel, one with a compiled extension, one with a console script, one with .data.
REAL_WHEELS = {
    "idna==3.10": "idna",
    "markupsafe==3.0.2": "markupsafe",
    "pyflakes==3.2.0": "pyflakes",
    "greenlet==3.1.1": "greenlet",
}
WHEEL_CACHE = Path(
    os.environ.get("ASYNCLINK_TEST_WHEELS", Path.home() / ".cache/asynclink-tests/wheels")
)


LOCK = ".asynclink-lock"
JOURNAL = ".asynclink-journal"


@contextlib.contextmanager
def another_installer(site_packages: Path) -> Iterator[None]:
    """Hold ``site_packages``' lock as a second asynclink would: an exclusive ``flock`` on its
    ``.asynclink-lock``, whose file the holder removes as it lets go."""
    path = site_packages / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)
