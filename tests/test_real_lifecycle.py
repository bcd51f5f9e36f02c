"""The lifecycle on real wheels from PyPI, on asyncio and on trio: a second install touches
nothing, an upgrade replaces, a sync removes, an uninstall leaves the environment as it was;
pip judges each result."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from asynclink import Action, install_wheels, installed, sync_wheels, uninstall
from tests.environments import REAL_WHEELS, make_venv, pip_download
from tests.trees import snapshot

pytestmark = [pytest.mark.anyio, pytest.mark.network]


def pip(venv: Path, *arguments: str) -> str:
    command = [str(venv / "bin/python"), "-m", "pip", *arguments]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def pip_listed(venv: Path) -> set[str]:
    return {p["name"].lower() for p in json.loads(pip(venv, "list", "--format=json"))}


def inodes_and_mtimes(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path): (path.lstat().st_ino, path.lstat().st_mtime_ns)
        for path in [root, *root.rglob("*")]
    }


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    return make_venv(tmp_path / "venv", with_pip=True)


async def test_a_second_install_of_real_wheels_skips_every_one_and_touches_nothing(
    tmp_path: Path, venv: Path, real_wheels: list[Path]
) -> None:
    await install_wheels(venv, real_wheels, cache_dir=tmp_path / "cache", compile=True)
    before = inodes_and_mtimes(venv)

    again = await install_wheels(venv, real_wheels, cache_dir=tmp_path / "cache", compile=True)

    assert {w.action for w in again.wheels} == {Action.SKIPPED}
    assert inodes_and_mtimes(venv) == before


async def test_an_upgrade_of_a_real_wheel_replaces_it_and_pip_sees_the_new_version(
    tmp_path: Path, venv: Path, real_wheels: list[Path]
) -> None:
    newer = tmp_path / "newer"
    done = pip_download(newer, "idna==3.11")
    if done.returncode != 0:
        pytest.skip(f"cannot download idna 3.11 from the package registry: {done.stderr}")
    await install_wheels(venv, real_wheels, cache_dir=tmp_path / "cache")

    result = await install_wheels(venv, list(newer.glob("*.whl")), cache_dir=tmp_path / "cache")

    (wheel,) = result.wheels
    assert (wheel.action, wheel.replaced) == (Action.UPGRADED, "3.10")
    assert "Version: 3.11\n" in pip(venv, "show", "idna")
    pip(venv, "check")


async def test_a_sync_to_fewer_real_wheels_removes_the_others(
    tmp_path: Path, venv: Path, real_wheels: list[Path]
) -> None:
    await install_wheels(venv, real_wheels, cache_dir=tmp_path / "cache")
    keep = [wheel for wheel in real_wheels if wheel.name.startswith("idna-")]

    result = await sync_wheels(venv, keep, cache_dir=tmp_path / "cache")

    assert [w.action for w in result.wheels] == [Action.SKIPPED]
    removed = {r.name.lower() for r in result.removed}
    assert removed >= set(REAL_WHEELS.values()) - {"idna"}
    assert pip_listed(venv) == {"idna", "pip"}
    pip(venv, "check")


async def test_uninstalling_real_distributions_leaves_the_environment_as_it_was(
    tmp_path: Path, venv: Path, real_wheels: list[Path]
) -> None:
    before = snapshot(venv)
    await install_wheels(venv, real_wheels, cache_dir=tmp_path / "cache", compile=True)

    result = await uninstall(venv, REAL_WHEELS.values(), cache_dir=tmp_path / "cache")

    assert {r.name.lower() for r in result.removed} == set(REAL_WHEELS.values())
    left = set(snapshot(venv)) - set(before)
    assert all(path.startswith("include/site") for path in left), left  # as pip leaves them
    names = {d.name.lower() for d in await installed(venv, cache_dir=tmp_path / "cache")}
    assert names == pip_listed(venv) and not names & set(REAL_WHEELS.values())
