"""Sessions: helpers and manifests kept across the calls of one block, and nothing after it."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from asynclink import Scheme, Session, clean_cache, install_wheels, link_wheels
from asynclink._helpers import HELPER_MIN_FILES
from tests.trees import snapshot, wheel_tree
from tests.wheels import build_wheel

pytestmark = pytest.mark.anyio


def big_trees(root: Path, count: int) -> list[Path]:
    """Unpacked wheels with enough files for a helper to place their bulk."""
    return [
        wheel_tree(
            root / f"w{n}",
            f"w{n}",
            {f"w{n}/sub{k % 4}/f{k:05}.py": f"# {n} {k}\n" for k in range(2 * HELPER_MIN_FILES)},
        )
        for n in range(count)
    ]


def site(path: Path) -> Path:
    path.mkdir()
    return path


async def test_helpers_started_by_one_call_serve_the_next(tmp_path: Path) -> None:
    trees = big_trees(tmp_path / "wheels", 2)

    async with Session() as session:
        await link_wheels(site(tmp_path / "one"), trees, mode="copy", jobs=2, helper_processes=1)
        kept = [child.pid for child in session.helpers.children]
        await link_wheels(site(tmp_path / "two"), trees, mode="copy", jobs=2, helper_processes=1)
        kept_after = [child.pid for child in session.helpers.children]

    assert kept and kept_after == kept
    assert snapshot(tmp_path / "two") == snapshot(tmp_path / "one")


async def test_leaving_a_session_stops_its_helpers(tmp_path: Path) -> None:
    trees = big_trees(tmp_path / "wheels", 2)

    async with Session() as session:
        await link_wheels(site(tmp_path / "sp"), trees, mode="copy", jobs=2, helper_processes=1)
        kept = session.helpers.children

    assert kept and all(child.returncode is not None for child in kept)
    assert session.helpers.children == []


async def test_calls_of_one_session_may_run_at_once(tmp_path: Path) -> None:
    trees = big_trees(tmp_path / "wheels", 3)

    async with Session(), anyio.create_task_group() as group:
        for name in ("a", "b"):
            group.start_soon(_link_copies, site(tmp_path / name), trees)

    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")
    assert len([path for path in (tmp_path / "a").rglob("*.py")]) == 3 * 2 * HELPER_MIN_FILES


async def _link_copies(target: Path, trees: list[Path]) -> None:
    await link_wheels(target, trees, mode="copy", jobs=2, helper_processes=1)


async def test_a_cache_cleaned_between_two_calls_is_filled_again(tmp_path: Path) -> None:
    archive = build_wheel(tmp_path / "wheels", name="demo", files={"demo/__init__.py": "X = 1\n"})
    cache = tmp_path / "cache"

    async with Session():
        await install_wheels(Scheme.for_directory(tmp_path / "one"), [archive], cache_dir=cache)
        await clean_cache(cache)
        second = await install_wheels(
            Scheme.for_directory(tmp_path / "two"), [archive], cache_dir=cache
        )

    assert [wheel.cached for wheel in second.wheels] == [False]
    assert (tmp_path / "two" / "demo" / "__init__.py").read_text() == "X = 1\n"


async def test_a_session_cannot_be_entered_again_once_left() -> None:
    session = Session()
    async with session:
        pass

    with pytest.raises(RuntimeError, match="cannot be entered again"):
        async with session:
            pass
