"""The event channel: what an embedder hears, in what order."""

from __future__ import annotations

from pathlib import Path

import pytest

from asynclink import (
    ConflictFound,
    Event,
    LinkMode,
    LinkModeFallbackWarning,
    ModeFellBack,
    Scheme,
    WheelFinished,
    WheelLinked,
    WheelStarted,
    WheelUnpacked,
    WheelUnpacking,
    install_wheels,
)
from tests.events import Concurrency
from tests.wheels import build_wheel

pytestmark = pytest.mark.anyio


WheelEvent = WheelUnpacked | WheelStarted | ModeFellBack | WheelLinked | WheelFinished


def per_wheel(events: list[Event]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for event in events:
        if isinstance(event, WheelUnpacking):  # before its name is read: only the file's
            wheel = "-".join(Path(event.archive).name.split("-")[:2])
            found.setdefault(wheel, []).append(type(event).__name__)
        elif isinstance(event, WheelEvent):  # not the batch's own (the lock, conflicts)
            found.setdefault(event.wheel, []).append(type(event).__name__)
    return found


async def test_each_wheel_is_unpacked_started_linked_and_finished(tmp_path: Path) -> None:
    paths = [
        build_wheel(tmp_path / "dist", name=name, files={f"{name}/__init__.py": name})
        for name in ("one", "two", "three")
    ]
    events: list[Event] = []

    result = await install_wheels(
        Scheme.for_directory(tmp_path / "target"),
        paths,
        cache_dir=tmp_path / "cache",
        mode="copy",
        on_event=events.append,
    )

    expected = ["WheelUnpacking", "WheelUnpacked", "WheelStarted", "WheelLinked", "WheelFinished"]
    assert per_wheel(events) == {f"{n}-1.0": expected for n in ("one", "two", "three")}
    unpacked = [e for e in events if isinstance(e, WheelUnpacked)]
    assert all(not e.cached and e.files == 3 and e.bytes > 0 for e in unpacked)
    linked = {e.wheel: e for e in events if isinstance(e, WheelLinked)}
    assert all(e.mode is LinkMode.COPY for e in linked.values())
    finished = [e.result for e in events if isinstance(e, WheelFinished)]
    assert sorted(finished, key=lambda r: r.wheel) == sorted(result.wheels, key=lambda r: r.wheel)


async def test_a_second_install_reports_cached_wheels(tmp_path: Path) -> None:
    path = build_wheel(tmp_path / "dist", files={"demo/__init__.py": ""})
    target = Scheme.for_directory(tmp_path / "target")
    await install_wheels(target, [path], cache_dir=tmp_path / "cache")
    events: list[Event] = []

    await install_wheels(
        target, [path], cache_dir=tmp_path / "cache", reinstall=True, on_event=events.append
    )

    (unpacked,) = [e for e in events if isinstance(e, WheelUnpacked)]
    assert unpacked.cached


async def test_a_fallback_is_an_event_between_start_and_link(tmp_path: Path) -> None:
    path = build_wheel(tmp_path / "dist", files={"demo/__init__.py": ""})
    events: list[Event] = []

    with pytest.warns(LinkModeFallbackWarning):
        await install_wheels(
            Scheme.for_directory(tmp_path / "target"),
            [path],
            cache_dir=tmp_path / "cache",
            mode="clone",
            on_event=events.append,
        )

    names = per_wheel(events)["demo-1.0"]
    assert names == [
        "WheelUnpacking",
        "WheelUnpacked",
        "WheelStarted",
        "ModeFellBack",
        "WheelLinked",
        "WheelFinished",
    ]
    (fallback,) = [e for e in events if isinstance(e, ModeFellBack)]
    assert (fallback.from_mode, fallback.to_mode) == (LinkMode.CLONE, LinkMode.HARDLINK)
    assert "not supported" in fallback.reason


async def test_conflicts_are_heard_after_every_wheel_finished(tmp_path: Path) -> None:
    paths = [
        build_wheel(tmp_path / "dist", name=name, files={"shared/mod.py": name * 3})
        for name in ("left", "right")
    ]
    events: list[Event] = []

    await install_wheels(
        Scheme.for_directory(tmp_path / "target"),
        paths,
        cache_dir=tmp_path / "cache",
        mode="copy",
        on_event=events.append,
    )

    kinds = [type(e).__name__ for e in events]
    assert kinds[-1] == "ConflictFound"
    assert kinds.index("ConflictFound") > max(
        i for i, kind in enumerate(kinds) if kind == "WheelFinished"
    )
    (conflict,) = [e.conflict for e in events if isinstance(e, ConflictFound)]
    assert conflict.path == "shared/mod.py"


async def test_the_started_event_comes_after_the_concurrency_limit(tmp_path: Path) -> None:
    paths = [
        build_wheel(tmp_path / "dist", name=f"w{n}", files={f"w{n}/__init__.py": ""})
        for n in range(5)
    ]
    concurrency = Concurrency()

    await install_wheels(
        Scheme.for_directory(tmp_path / "target"),
        paths,
        cache_dir=tmp_path / "cache",
        jobs=2,
        on_event=concurrency,
    )

    assert 1 <= concurrency.peak <= 2
