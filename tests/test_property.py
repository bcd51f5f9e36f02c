"""Property: whatever the wheels, whatever was there, wherever the install stops, the target
ends byte for byte as it was (paths, contents, modes, symlink targets).

``PROPERTY_EXAMPLES=2000`` runs a longer search than the default.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asynclink import AsyncLinkError, LinkMode, WheelLinked, link_wheels
from tests.trees import leftovers, make_tree, snapshot

pytestmark = pytest.mark.anyio

#: Paths wheels and targets draw from; no path is a directory of another one.
DIRECTORIES = ["", "pkg/", "pkg/sub/", "ns/", "ns/a/"]
NAMES = ["__init__.py", "mod.py", "data.bin", "tool"]
POOL = [d + n for d in DIRECTORIES for n in NAMES]

contents = st.binary(max_size=64)
trees = st.dictionaries(st.sampled_from(POOL), contents, min_size=1, max_size=8)


@dataclass
class Scenario:
    wheels: list[dict[str, bytes]]
    existing: dict[str, bytes]
    executable: list[str]
    symlink: str | None
    obstacle: str | None
    """A directory put where one wheel's file must go: the install fails there."""
    cancel_after: int | None
    """Cancel the install when this many wheels are linked."""
    mode: LinkMode


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    wheels = draw(st.lists(trees, min_size=1, max_size=3))
    existing = draw(st.dictionaries(st.sampled_from([*POOL, "keep/me.txt"]), contents, max_size=6))
    executable = draw(
        st.lists(st.sampled_from(sorted(existing)), unique=True) if existing else st.just([])
    )
    symlink = draw(st.sampled_from([None, *(p for p in POOL if p not in existing)]))
    stop_by_failing = draw(st.booleans())
    every_path = sorted({path for wheel in wheels for path in wheel})
    return Scenario(
        wheels=wheels,
        existing=existing,
        executable=executable,
        symlink=symlink,
        obstacle=draw(st.sampled_from(every_path)) if stop_by_failing else None,
        cancel_after=None if stop_by_failing else draw(st.integers(0, len(wheels) - 1)),
        mode=draw(st.sampled_from([LinkMode.COPY, LinkMode.HARDLINK, LinkMode.SYMLINK])),
    )


def prepare(root: Path, scenario: Scenario) -> tuple[list[Path], Path]:
    sources = [make_tree(root / f"w{n}", files) for n, files in enumerate(scenario.wheels)]
    target = make_tree(root / "target", scenario.existing, executable=scenario.executable)
    if scenario.symlink is not None:
        make_tree(target, {}, symlinks={scenario.symlink: "elsewhere"})
    if scenario.obstacle is not None:
        obstacle = target / scenario.obstacle
        if obstacle.is_symlink() or obstacle.is_file():
            obstacle.unlink()
        make_tree(obstacle, {"blocker": b"x"})
    return sources, target


@settings(
    max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(scenario=scenarios())
async def test_a_stopped_install_leaves_the_target_exactly_as_it_was(scenario: Scenario) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        sources, target = prepare(Path(scratch), scenario)
        before = snapshot(target)
        linked = 0

        with anyio.CancelScope() as scope:

            def count_and_maybe_cancel(event: object) -> None:
                nonlocal linked
                if isinstance(event, WheelLinked):
                    if linked == scenario.cancel_after:
                        scope.cancel()
                    linked += 1

            try:
                await link_wheels(
                    target, sources, mode=scenario.mode, jobs=2, on_event=count_and_maybe_cancel
                )
            except AsyncLinkError:
                assert scenario.obstacle is not None
            else:
                assert scope.cancel_called, "the install should have been stopped"

        assert snapshot(target) == before
        assert leftovers(target) == []
