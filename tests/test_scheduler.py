"""Many wheels at once: limits, overlap, directory locks, failures and cancellation."""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from pathlib import Path

import anyio
import anyio.from_thread
import pytest

from asynclink import Event, LinkError, LinkMode, WheelFinished, WheelStarted, link_wheels
from asynclink._placing import TEMPORARY_PREFIX, Recorder
from asynclink._plan import plan_unpacked_tree
from tests.events import Concurrency, scheduler_for
from tests.inotify import DirectoryWatch
from tests.trees import leftovers, make_tree, wheel_tree

pytestmark = pytest.mark.anyio


def many_files(prefix: str, count: int, contents: str = "") -> dict[str, str]:
    return {f"{prefix}/f{n:05}.py": contents or f"# {n}\n" for n in range(count)}


async def test_no_more_than_jobs_wheels_run_at_once(tmp_path: Path) -> None:
    sources = [wheel_tree(tmp_path / f"w{n}", f"w{n}", many_files(f"w{n}", 20)) for n in range(8)]
    site_packages = tmp_path / "sp"
    site_packages.mkdir()
    concurrency = Concurrency()

    result = await link_wheels(
        site_packages, sources, mode="hardlink", jobs=3, on_event=concurrency
    )

    assert 1 <= concurrency.peak <= 3
    assert len(result.wheels) == 8 and result.files == 8 * 22


class Gate:
    """A file of a wheel that becomes a FIFO when the wheel starts (planning refuses a FIFO):
    copying it waits until :meth:`open` opens its other end. Opened before its wheel has
    started, it stays a plain file, and nothing waits."""

    def __init__(self, path: Path, wheel: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        self.path, self.wheel = path, wheel
        self.armed = self.opened = False

    def on_event(self, event: Event) -> None:
        if isinstance(event, WheelStarted) and event.wheel == self.wheel and not self.opened:
            self.path.unlink()
            os.mkfifo(self.path)
            self.armed = True

    def open(self) -> None:
        if self.opened:
            return
        self.opened = True
        if self.armed:

            def open_the_other_end() -> None:
                os.close(os.open(self.path, os.O_WRONLY))

            threading.Thread(target=open_the_other_end, daemon=True).start()


@pytest.mark.timeout(60)  # a serial engine waits for ever: the held wheel never finishes
async def test_wheels_overlap_one_finishes_while_another_is_held_in_flight(
    tmp_path: Path,
) -> None:
    held_source = wheel_tree(tmp_path / "held", "held", {"held/a.py": ""})
    free = wheel_tree(tmp_path / "free", "free", many_files("free", 20))
    # held waits at its last file until free has finished; free waits at its gate until held
    # has started: so held is surely in flight while free finishes, whatever order they start.
    held_gate = Gate(held_source / "held/zz-fifo", "held-1.0")
    free_gate = Gate(free / "free/zz-gate", "free-1.0")
    site_packages = tmp_path / "sp"
    site_packages.mkdir()
    finished: list[str] = []

    def release_when_free_is_done(event: Event) -> None:
        held_gate.on_event(event)
        free_gate.on_event(event)
        if isinstance(event, WheelStarted) and event.wheel == "held-1.0":
            free_gate.open()
        if isinstance(event, WheelFinished):
            finished.append(event.wheel)
            if event.wheel == "free-1.0":
                held_gate.open()

    await link_wheels(
        site_packages,
        [held_source, free],  # the held wheel goes first
        mode="copy",
        jobs=2,
        filesystem_threads=2,
        helper_processes=0,
        on_event=release_when_free_is_done,
    )

    assert finished == ["free-1.0", "held-1.0"]


@pytest.mark.parametrize("processes", [0, 1], ids=["threads", "helper"])
async def test_wheels_sharing_a_directory_copy_into_it_one_at_a_time(
    tmp_path: Path, processes: int
) -> None:
    # Both wheels ship shared/ with the same 400 names. Copies into one directory hold that
    # directory's lock, so one wheel's copies into it all happen before the other's (whichever
    # thread or process makes them): the first wheel creates the names, the second replaces
    # them through temporary names, and the kernel's own record of the directory (inotify)
    # shows the two as two runs, never a file-by-file mix.
    sources = [
        wheel_tree(tmp_path / name, name, many_files("shared", 400, f"# from {name}\n"))
        for name in ("left", "right")
    ]
    site_packages = tmp_path / "sp"
    (site_packages / "shared").mkdir(parents=True)
    plans = [plan_unpacked_tree(None, str(s), str(site_packages)) for s in sources]
    for plan in plans:  # only shared/: the dist-info directories are each wheel's own
        (tree,) = plan.trees
        tree.files = [path for path in tree.files if path.startswith("shared/")]
        plan.copies = []
    scheduler = scheduler_for(site_packages, LinkMode.COPY, 2, processes, filesystem_threads=2)

    with DirectoryWatch(site_packages / "shared") as watch:
        await scheduler.run_wheels(plans, scheduler.place)
        created = [name for event, name in watch.events() if event == "create"]

    temporary = [name.startswith(TEMPORARY_PREFIX) for name in created]
    runs = 1 + sum(a != b for a, b in itertools.pairwise(temporary))
    assert len(created) == 800 and sum(temporary) == 400
    assert runs == 2
    origins = {path.read_text() for path in (site_packages / "shared").iterdir()}
    assert len(origins) == 1
    assert leftovers(site_packages) == []


@pytest.mark.timeout(60)
async def test_two_wheels_write_one_directory_while_both_are_in_flight(tmp_path: Path) -> None:
    """``a`` is held in the middle of copying into ``ns/``; ``b`` writes all of its files
    into ``ns/`` meanwhile; then ``a`` goes on. Both land, and neither is a conflict."""
    a = wheel_tree(tmp_path / "a", "a", many_files("ns/a", 300))
    b = wheel_tree(tmp_path / "b", "b", many_files("ns/b", 300))
    a_gate = Gate(a / "ns/a/zz-fifo", "a-1.0")  # a waits here until b has finished
    b_gate = Gate(b / "b_gate/zz", "b-1.0")  # b waits here until a has started
    site_packages = tmp_path / "sp"
    site_packages.mkdir()
    in_flight: list[int] = []

    def release_a_when_b_is_done(event: Event) -> None:
        a_gate.on_event(event)
        b_gate.on_event(event)
        if isinstance(event, WheelStarted) and event.wheel == "a-1.0":
            b_gate.open()
        if isinstance(event, WheelFinished) and event.wheel == "b-1.0":
            in_flight.append(len(os.listdir(site_packages / "ns/a")))  # a is half there
            a_gate.open()

    result = await link_wheels(
        site_packages,
        [a, b],
        mode="copy",
        jobs=2,
        filesystem_threads=2,
        helper_processes=0,
        on_event=release_a_when_b_is_done,
    )

    assert in_flight and in_flight[0] <= 300  # a's files up to the FIFO, not the FIFO itself
    assert len(list((site_packages / "ns/a").iterdir())) == 301
    assert len(list((site_packages / "ns/b").iterdir())) == 300
    assert result.conflicts == ()


async def test_a_failing_wheel_cancels_the_others_and_raises_one_error(tmp_path: Path) -> None:
    # One wheel at a time: whichever order they run in, none starts after the bad one failed.
    sources = [wheel_tree(tmp_path / f"w{n}", f"w{n}", many_files(f"w{n}", 20)) for n in range(6)]
    sources.append(wheel_tree(tmp_path / "bad", "bad", {"bad/mod.py": ""}))
    site_packages = make_tree(tmp_path / "sp", {"bad/mod.py/blocker": ""})
    started: list[str] = []

    def record(event: object) -> None:
        if isinstance(event, WheelStarted):
            started.append(event.wheel)

    with pytest.raises(LinkError) as caught:
        await link_wheels(site_packages, sources, mode="hardlink", jobs=1, on_event=record)

    assert caught.value.wheel == "bad-1.0"
    assert started[-1] == "bad-1.0"
    assert leftovers(site_packages) == []


async def test_cancelling_between_wheels_leaves_no_temporary_files(tmp_path: Path) -> None:
    sources = [wheel_tree(tmp_path / f"w{n}", f"w{n}", many_files(f"w{n}", 50)) for n in range(6)]
    site_packages = tmp_path / "sp"
    site_packages.mkdir()
    seen: list[object] = []

    with anyio.CancelScope() as scope:

        def cancel_on_third_start(event: object) -> None:
            seen.append(event)
            if sum(isinstance(e, WheelStarted) for e in seen) == 3:
                scope.cancel()

        await link_wheels(
            site_packages, sources, mode="copy", jobs=2, on_event=cancel_on_third_start
        )

    assert scope.cancelled_caught
    assert sum(isinstance(e, WheelFinished) for e in seen) < 6
    assert leftovers(site_packages) == []


class CancelAfterReplacing(Recorder):
    """Asks the event loop to cancel after the n-th replacement, from the worker thread."""

    def __init__(self, after: int, scope: anyio.CancelScope) -> None:
        self.after, self.scope, self.replaced = after, scope, 0

    def replacing(self, path: str) -> contextlib.AbstractContextManager[object]:
        self.replaced += 1
        if self.replaced == self.after:
            anyio.from_thread.run_sync(self.scope.cancel)
        return contextlib.nullcontext()


@pytest.mark.parametrize("mode", [LinkMode.COPY, LinkMode.HARDLINK])
async def test_cancelling_mid_wheel_stops_promptly_without_temporary_files(
    tmp_path: Path, mode: LinkMode
) -> None:
    files = many_files("pkg", 3000)
    source = wheel_tree(tmp_path / "wheel", "pkg", files)
    site_packages = make_tree(tmp_path / "sp", dict.fromkeys(files, "old\n"))
    plan = plan_unpacked_tree(None, str(source), str(site_packages))

    with anyio.CancelScope() as scope:
        recorder = CancelAfterReplacing(100, scope)
        scheduler = scheduler_for(site_packages, mode, jobs=1, recorder=recorder)
        await scheduler.run_wheels([plan], scheduler.place)

    assert scope.cancelled_caught
    assert 100 <= recorder.replaced < 100 + 300  # stopped within a few checks, not at the end
    assert leftovers(site_packages) == []
    still_old = sum((site_packages / p).read_text() == "old\n" for p in files)
    assert still_old > 2000


async def test_the_task_group_error_is_not_an_exception_group(tmp_path: Path) -> None:
    sources = [wheel_tree(tmp_path / f"w{n}", f"w{n}", {f"w{n}/x.py": ""}) for n in range(3)]
    site_packages = make_tree(tmp_path / "sp", {f"w{n}/x.py/blocker": "" for n in range(3)})

    with pytest.raises(LinkError) as caught:
        await link_wheels(site_packages, sources, mode="copy", jobs=3)

    assert not isinstance(caught.value, BaseExceptionGroup)
    assert os.path.basename(caught.value.destination) == "x.py"
