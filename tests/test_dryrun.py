"""The dry run: what an install would place, read from the archive, with nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from asynclink import InvalidWheelError, PlannedFile, Scheme, plan_install
from tests.trees import snapshot
from tests.wheels import build_wheel

pytestmark = pytest.mark.anyio


async def test_a_script_is_read_from_an_archive_wherever_it_lies(tmp_path: Path) -> None:
    wheel = build_wheel(
        tmp_path / "dist!/more",  # "!/" in the path as well as between archive and member
        files={"demo/__init__.py": "", "demo-1.0.data/scripts/tool": "#!python\nprint(1)\n"},
    )
    scheme = Scheme.for_directory(tmp_path / "env")
    before = snapshot(tmp_path)

    (planned,) = await plan_install(scheme, [wheel], cache_dir=tmp_path / "cache")

    assert PlannedFile(f"{scheme.scripts}/tool", None, "write") in planned.files
    assert planned.cached is False and planned.archive == str(wheel)
    assert snapshot(tmp_path) == before


async def test_a_dry_run_refuses_two_wheels_of_one_project_as_an_install_does(
    tmp_path: Path,
) -> None:
    wheels = [build_wheel(tmp_path / f"d{v}", name="demo", version=v) for v in ("1.0", "2.0")]

    with pytest.raises(InvalidWheelError, match="both install demo; give only one"):
        await plan_install(Scheme.for_directory(tmp_path / "env"), wheels, cache_dir=tmp_path)


async def test_a_dry_run_plans_a_wheel_named_twice_once(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist", name="demo")

    planned = await plan_install(
        Scheme.for_directory(tmp_path / "env"), [wheel, wheel], cache_dir=tmp_path / "cache"
    )

    assert [p.project for p in planned] == ["demo"]
