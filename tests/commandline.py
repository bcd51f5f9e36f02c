"""Running the ``asynclink`` command as a user does: a subprocess, its exit code, its output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ASYNCLINK = [sys.executable, "-m", "asynclink"]


def asynclink(
    *arguments: str | os.PathLike[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ASYNCLINK, *map(str, arguments)],
        capture_output=True,
        text=True,
        env={**clean_environment(), **(env or {})},
        cwd=cwd,
        check=False,
    )


def install_into(venv: Path, cache: Path, *arguments: str | os.PathLike[str]) -> list[str]:
    """``install --venv VENV --cache-dir CACHE ARGUMENTS...``, as command-line words."""
    return ["install", "--venv", str(venv), "--cache-dir", str(cache), *map(str, arguments)]


def clean_environment() -> dict[str, str]:
    """This process's environment without what would change asynclink's defaults."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCLINK_")}
    environment.pop("VIRTUAL_ENV", None)
    return environment
