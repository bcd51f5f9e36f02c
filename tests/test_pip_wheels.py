"""pip's own test wheels, installed by pip, by uv and by asynclink: where pip and uv agree,
asynclink agrees with them.

The wheels are pypa/pip's ``tests/data/packages`` (broken and corrupt wheels, script wrappers,
data files, console scripts, versions to upgrade between), read from the team's shared test
data beside the repository; nothing of them is copied into it. Each wheel goes into three fresh
virtual environments, one per installer, and the trees are compared file by file (launchers
by name: their shebangs name different venvs). A wheel pip and uv both refuse, asynclink
refuses too.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asynclink import AsyncLinkError, install_wheels
from tests.environments import make_venv

pytestmark = pytest.mark.anyio

PIP_WHEELS = Path(__file__).resolve().parents[2] / "shared/testdata/pip-wheels"
WHEELS = sorted(PIP_WHEELS.glob("*.whl")) if PIP_WHEELS.is_dir() else []
#: What an installer writes for itself (uv also leaves its own ``.lock`` in the venv).
OWN = ("INSTALLER", "RECORD", "REQUESTED", "direct_url.json", "uv_cache.json", "asynclink.json")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # these tests judge trees by pip and uv, not the event loop


@pytest.fixture(params=WHEELS or [None], ids=lambda path: path.name if path else "none")  # type: ignore[list-item]
def pip_wheel(request: pytest.FixtureRequest) -> Path:
    if request.param is None:
        pytest.skip(f"pip's test wheels are not at {PIP_WHEELS}")
    path: Path = request.param
    return path


def tree(venv: Path, before: set[str]) -> dict[str, str]:
    """Relative path -> what it is, for what an installer added to ``venv``."""
    found: dict[str, str] = {}
    for directory, _, files in os.walk(venv):
        for name in files:
            path = Path(directory, name)
            relative = str(path.relative_to(venv))
            if relative in before or "__pycache__" in relative or name in OWN or name == ".lock":
                continue
            if relative.startswith("bin/"):
                found[relative] = "script"
            else:
                found[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def files_of(venv: Path) -> set[str]:
    return {str(Path(d, n).relative_to(venv)) for d, _, names in os.walk(venv) for n in names}


async def test_pip_uv_and_asynclink_install_the_same_files(tmp_path: Path, pip_wheel: Path) -> None:
    venvs = {name: make_venv(tmp_path / name) for name in ("pip", "uv", "asynclink")}
    before = files_of(venvs["pip"])
    by_pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venvs["pip"] / "bin/python"),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-compile",
            str(pip_wheel),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    by_uv = subprocess.run(
        [
            sys.executable,
            "-m",
            "uv",
            "pip",
            "install",
            "--offline",
            "--no-deps",
            "--python",
            str(venvs["uv"] / "bin/python"),
            str(pip_wheel),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if (by_pip.returncode == 0) != (by_uv.returncode == 0):
        pytest.skip(f"pip and uv disagree on {pip_wheel.name}: nothing to hold asynclink to")
    try:
        await install_wheels(venvs["asynclink"], [pip_wheel], cache_dir=tmp_path / "cache")
    except AsyncLinkError as error:
        assert by_pip.returncode != 0, f"pip and uv install it; asynclink says: {error}"
        return
    assert by_pip.returncode == 0, f"pip and uv refuse it: {by_pip.stderr}"

    mine = tree(venvs["asynclink"], before)
    assert mine == tree(venvs["pip"], before)
    assert mine == tree(venvs["uv"], before)
