"""Real Python environments and real downloads for the tests: venvs, and ``pip download``."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


def make_venv(path: Path, with_pip: bool = False) -> Path:
    """A fresh virtual environment of the interpreter running the tests."""
    options = [] if with_pip else ["--without-pip"]
    subprocess.run([sys.executable, "-m", "venv", *options, str(path)], check=True)
    return path


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
