"""Real Python environments and real downloads for the tests: venvs, and ``pip download``."""

from __future__ import annotations

import subprocess
import sys
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
