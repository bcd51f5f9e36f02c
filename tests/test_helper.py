"""Helper processes: the bulk of the files placed by another process, as the thread would."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
from pathlib import Path

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

import asynclink._child
import asynclink._helpers
import asynclink._placing
import asynclink._scheduler
from asynclink import LinkMode, WheelStarted
from asynclink._child import LOOP_MODES, TreeJob, encode_job, framed
from asynclink._helpers import (
    EARLY_HELPER_WHEELS,
    HELPER_MIN_COPIES,
    HELPER_MIN_FILES,
    LINK_HELPERS,
    Child,
    Helper,
)
from asynclink._placing import TEMPORARY_PREFIX, CopyWork, ModeState
from asynclink._plan import WheelPlan, plan_unpacked_tree
from asynclink._scheduler import PIECE
from asynclink._transaction import TargetLock, transaction
from tests.events import scheduler_for
from tests.trees import leftovers, make_tree, snapshot, wheel_tree

pytestmark = pytest.mark.anyio

FILES = 2 * HELPER_MIN_FILES  # enough for a wheel's bulk to go to a helper


def wheels(root: Path, count: int, contents: str = "", files: int = FILES) -> list[Path]:
    return [
        wheel_tree(
            root / f"w{n}",
            f"w{n}",
            {f"w{n}/sub{k % 4}/f{k:05}.py": contents or f"# {n} {k}\n" for k in range(files)},
        )
        for n in range(count)
    ]


@pytest.fixture
def site_packages(tmp_path: Path) -> Path:
    """An empty site-packages."""
    path = tmp_path / "sp"
    path.mkdir()
    return path


def plans_for(sources: list[Path], site_packages: Path) -> list[WheelPlan]:
    return [plan_unpacked_tree(None, str(source), str(site_packages)) for source in sources]


async def test_a_helper_places_what_the_thread_would(mode_root: tuple[LinkMode, Path]) -> None:
    mode, tmp_path = mode_root
    sources = wheels(tmp_path / "wheels", 4)
    results = {}
    for processes in (0, 1):
        site_packages = tmp_path / f"sp{processes}"
        site_packages.mkdir()
        scheduler = scheduler_for(site_packages, mode, jobs=4, helper_processes=processes)
        await scheduler.run_wheels(plans_for(sources, site_packages), scheduler.place)
        assert scheduler.helpers.started == processes
        results[processes] = snapshot(site_packages)

    assert results[1] == results[0]
    assert len(results[1]) > 4 * FILES
    if mode is LinkMode.CLONE:  # the last file of a wheel is the helper's: a real clone
        last = tmp_path / "sp1" / f"w3/sub3/f{FILES - 1:05}.py"
        extents = subprocess.run(
            ["filefrag", "-v", str(last)], capture_output=True, text=True, check=True
        ).stdout
        assert "shared" in extents


@pytest.mark.parametrize("mode", [LinkMode.COPY, LinkMode.HARDLINK])
async def test_one_big_wheel_keeps_the_helpers_busy(
    tmp_path: Path, site_packages: Path, mode: LinkMode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(asynclink._helpers, "SLOW_LINK", 1.0)  # links as fast as tmpfs's
    (source,) = wheels(tmp_path / "wheels", 1, files=2 * PIECE + 10)
    scheduler = scheduler_for(site_packages, mode, jobs=2, helper_processes=2)

    await scheduler.run_wheels(plans_for([source], site_packages), scheduler.place)

    # Copies take every helper; links one (a second does not pay for such short syscalls).
    assert scheduler.helpers.started == (2 if mode is LinkMode.COPY else LINK_HELPERS)
    assert snapshot(site_packages) == snapshot(source)


async def test_links_that_prove_slow_open_a_second_link_lane(
    tmp_path: Path, site_packages: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(asynclink._helpers, "SLOW_LINK", 0.0)  # every link counts as slow
    monkeypatch.setattr(asynclink._helpers, "SLOW_PIECE", 1)
    monkeypatch.setattr(asynclink._scheduler, "PIECE", 2 * HELPER_MIN_FILES)
    (source,) = wheels(tmp_path / "wheels", 1, files=6 * HELPER_MIN_FILES)
    scheduler = scheduler_for(site_packages, LinkMode.HARDLINK, jobs=2, helper_processes=2)

    await scheduler.run_wheels(plans_for([source], site_packages), scheduler.place)

    # The first piece's time opens the second lane: the next two pieces run at once.
    assert scheduler.helpers.started == 2 and scheduler.helpers.pieces == 3
    assert snapshot(site_packages) == snapshot(source)


async def test_files_already_there_are_replaced_through_a_helper(tmp_path: Path) -> None:
    sources = wheels(tmp_path / "wheels", 2, contents="new\n")
    old = {
        str(path.relative_to(source)): "old\n"
        for source in sources
        for path in source.rglob("*.py")
    }
    site_packages = make_tree(tmp_path / "sp", old)
    scheduler = scheduler_for(site_packages, LinkMode.COPY, jobs=2, helper_processes=1)

    await scheduler.run_wheels(plans_for(sources, site_packages), scheduler.place)

    assert scheduler.helpers.started == 1
    assert {(site_packages / path).read_text() for path in old} == {"new\n"}
    assert leftovers(site_packages) == []


@pytest.mark.parametrize("mode", [LinkMode.COPY, LinkMode.HARDLINK])
async def test_a_helper_that_dies_leaves_its_work_to_the_thread(
    tmp_path: Path, site_packages: Path, mode: LinkMode
) -> None:
    """The helper is killed before the third wheel starts: every piece of that wheel and the
    next is sent to a dead helper, so whatever of them is in place, the thread placed (with
    the directories a link helper would have made)."""
    sources = wheels(tmp_path / "wheels", 5)
    killed: list[Child] = []
    started: list[str] = []

    def kill_helpers(event: object) -> None:
        if isinstance(event, WheelStarted):
            started.append(event.wheel)
            if len(started) == 3:
                for helper in scheduler.helpers.children:
                    os.kill(helper.pid, signal.SIGKILL)
                    killed.append(helper)

    scheduler = scheduler_for(
        site_packages, mode, jobs=2, helper_processes=1, on_event=kill_helpers
    )
    results = await scheduler.run_wheels(plans_for(sources, site_packages), scheduler.place)

    assert len(killed) == 1 and killed[0].returncode == -signal.SIGKILL
    assert scheduler.helpers.started == 1  # no second helper: the thread did the rest
    assert len(results) == 5
    for source in sources:
        for path in source.rglob("*.py"):
            relative = path.relative_to(source)
            assert (site_packages / relative).read_bytes() == path.read_bytes()


async def test_cancelling_stops_the_helpers_before_returning(
    tmp_path: Path, site_packages: Path
) -> None:
    sources = wheels(tmp_path / "wheels", 8)
    seen: list[Child] = []
    started: list[WheelStarted] = []

    with anyio.CancelScope() as scope:

        def cancel_on_third_start(event: object) -> None:
            seen.extend(h for h in scheduler.helpers.children if h not in seen)
            if isinstance(event, WheelStarted):
                started.append(event)
                if len(started) == 3:
                    scope.cancel()

        scheduler = scheduler_for(
            site_packages, LinkMode.COPY, 2, 2, on_event=cancel_on_third_start
        )
        await scheduler.run_wheels(plans_for(sources, site_packages), scheduler.place)

    assert scope.cancelled_caught
    assert seen and all(helper.returncode is not None for helper in seen)
    assert scheduler.helpers.children == []


async def test_a_helper_started_as_its_caller_is_cancelled_is_still_handed_back() -> None:
    """The cancel arrives while the process is being set up: the caller still gets the child,
    to stop and wait for, instead of a process nobody holds (on asyncio, one that warns about
    a closed loop when it exits later)."""
    helper: Helper | None = None

    with anyio.CancelScope() as scope:
        scope.cancel()
        helper = await Helper.start()

    assert helper is not None
    await helper.aclose()
    assert helper.returncode == 0


async def test_a_helper_reports_what_it_did_not_place(tmp_path: Path) -> None:
    odd = os.fsdecode(b"caf\xe9.py")  # not UTF-8: travels the pipe as the bytes it is
    source = make_tree(tmp_path / "source", {"a.py": "a", "b.py": "b"})
    (source / odd).write_text("odd")
    target = make_tree(tmp_path / "target", {"b.py": "already here"})
    helper = await Helper.start()
    assert helper is not None
    try:
        answer = await helper.place(
            "hardlink",
            [
                TreeJob(str(source), str(target), ["a.py", "b.py", odd]),
                TreeJob(str(tmp_path / "missing"), str(target), ["c.py"]),
            ],
        )
    finally:
        await helper.aclose()

    assert answer is not None
    assert [(a.index, a.opened, a.failures) for a in answer] == [
        (0, True, [("b.py", errno.EEXIST)]),
        (1, False, []),
    ]
    assert (target / odd).read_text() == "odd"
    assert os.path.samefile(target / "a.py", source / "a.py")
    assert (target / "b.py").read_text() == "already here"
    assert helper.returncode == 0
    assert not any(name.startswith(TEMPORARY_PREFIX) for name in os.listdir(target))


async def test_a_request_bigger_than_the_socket_holds_arrives_whole_with_its_lock(
    tmp_path: Path,
) -> None:
    """A piece of thousands of names goes in several writes (the socket takes a few hundred
    kilobytes at a time); the helper gets every name, and the lock that rides on the first
    bytes."""
    names = [f"{'n' * 200}{k:05}.py" for k in range(3000)]  # about 600 kB of request
    source = make_tree(tmp_path / "source", dict.fromkeys(names, "x"))
    target = tmp_path / "target"
    target.mkdir()
    request = framed(encode_job("hardlink", [TreeJob(str(source), str(target), names)]))
    lock = TargetLock(str(tmp_path))
    assert lock.try_acquire() and lock.fd is not None
    helper = await Helper.start()
    assert helper is not None
    room = helper._channel.extra(anyio.abc.SocketAttribute.raw_socket).getsockopt(
        socket.SOL_SOCKET, socket.SO_SNDBUF
    )
    assert len(request) > 2 * room
    try:
        answer = await helper.place(
            "hardlink", [TreeJob(str(source), str(target), names)], [lock.fd]
        )
    finally:
        await helper.aclose()
        lock.release()

    assert answer == []
    assert sorted(os.listdir(target)) == sorted(names)
    assert all(os.path.samefile(target / name, source / name) for name in names[::500])


async def test_cancelling_a_big_request_to_a_helper_that_reads_nothing_stops_it(
    tmp_path: Path,
) -> None:
    """The helper is stopped (SIGSTOP), so the request fills the socket and the call waits for
    room: the cancel still ends the call, and the helper is killed on the way out."""
    names = [f"{'n' * 200}{k:05}" for k in range(20000)]  # far more than the socket holds
    helper = await Helper.start()
    assert helper is not None
    os.kill(helper.pid, signal.SIGSTOP)

    async def cancel_once_waiting(scope: anyio.CancelScope) -> None:
        await anyio.wait_all_tasks_blocked()  # the call waits for room in the socket
        scope.cancel()

    async with anyio.create_task_group() as group:
        with anyio.CancelScope() as scope:
            group.start_soon(cancel_once_waiting, scope)
            await helper.place("hardlink", [TreeJob(str(tmp_path), str(tmp_path), names)])

    assert scope.cancelled_caught
    assert helper.returncode == -signal.SIGKILL


def test_a_bulk_for_a_helper_carries_the_directories_the_link_phase_left_unmade(
    tmp_path: Path, site_packages: Path
) -> None:
    """The link phase makes the directories of the first file (which decides the mode) and
    of the metadata it writes; the helper makes the others with the files that go there."""
    (source,) = wheels(tmp_path / "wheels", 1)
    (plan,) = plans_for([source], site_packages)
    known = CopyWork(copies=list(plan.copies), writes=list(plan.writes))
    placer = scheduler_for(site_packages, LinkMode.HARDLINK, jobs=2).placer

    bulk, deferred = placer.link_phase(plan, ModeState(LinkMode.HARDLINK), known, True, _nothing)

    later = [os.path.join("w0", f"sub{k}") for k in (1, 2, 3)]
    (tree,) = plan.trees
    assert [(b.files, list(b.dirs)) for b in bulk] == [(tree.files[1:], later)]
    assert deferred == []
    assert sorted(os.listdir(site_packages / "w0")) == ["sub0"]
    assert (site_packages / "w0-1.0.dist-info/RECORD").is_file()


def test_without_a_hand_off_the_link_phase_makes_every_directory(
    tmp_path: Path, site_packages: Path
) -> None:
    (source,) = wheels(tmp_path / "wheels", 1)
    (plan,) = plans_for([source], site_packages)
    known = CopyWork(copies=list(plan.copies), writes=list(plan.writes))
    placer = scheduler_for(site_packages, LinkMode.HARDLINK, jobs=1).placer

    bulk, deferred = placer.link_phase(plan, ModeState(LinkMode.HARDLINK), known, False, _nothing)

    assert bulk == [] and deferred == []
    assert snapshot(site_packages / "w0") == snapshot(source / "w0")


def _nothing() -> None:
    pass


async def test_a_helper_makes_the_directories_of_its_piece_before_its_files(
    tmp_path: Path,
) -> None:
    source = make_tree(tmp_path / "source", {"a/b/x.py": "x", "c/y.py": "y"})
    target = make_tree(tmp_path / "target", {"c/old.py": "old"})  # c exists: merged into
    helper = await Helper.start()
    assert helper is not None
    try:
        answer = await helper.place(
            "hardlink",
            [TreeJob(str(source), str(target), ["a/b/x.py", "c/y.py"], ["a", "a/b", "c"])],
        )
    finally:
        await helper.aclose()

    assert answer == []
    assert os.path.samefile(target / "a/b/x.py", source / "a/b/x.py")
    assert os.path.samefile(target / "c/y.py", source / "c/y.py")
    assert (target / "c/old.py").read_text() == "old"


@pytest.mark.parametrize("in_the_way", ["file", "symlink"])
async def test_a_helper_leaves_a_tree_whose_directory_is_taken_to_the_caller(
    tmp_path: Path, in_the_way: str
) -> None:
    """Something where a directory must go (made since the caller looked) may be a symlink
    the caller would follow, or refuse, with the journal: the helper places nothing of it,
    and nothing goes through a symlink that leads out of the environment."""
    source = make_tree(tmp_path / "source", {"a/x.py": "x", "b/y.py": "y"})
    target = make_tree(tmp_path / "target", {"elsewhere/keep.py": "keep"})
    outside = make_tree(tmp_path / "outside", {"theirs.txt": "not the environment's"})
    before = snapshot(outside)
    if in_the_way == "file":
        (target / "a").write_text("a file")
    else:
        (target / "a").symlink_to(outside)
    helper = await Helper.start()
    assert helper is not None
    try:
        answer = await helper.place(
            "hardlink",
            [
                TreeJob(str(source), str(target), ["a/x.py", "b/y.py"], ["b", "a"]),
                TreeJob(str(source), str(target / "elsewhere"), ["b/y.py"], ["b"]),
            ],
        )
    finally:
        await helper.aclose()

    assert answer is not None
    assert [(a.index, a.opened, a.failures) for a in answer] == [(0, False, [])]
    assert snapshot(outside) == before
    assert not (target / "b/y.py").exists()  # its directory made, but none of its files
    assert sorted(os.listdir(target / "elsewhere")) == ["b", "keep.py"]  # the other tree's
    assert os.path.samefile(target / "elsewhere/b/y.py", source / "b/y.py")


async def test_a_helper_holds_the_lock_sent_with_a_request_until_it_is_done_with_it(
    tmp_path: Path,
) -> None:
    # An install killed while a helper works leaves the helper to finish its piece. The piece
    # came with the target's lock, so the next install, and its recovery, wait until the
    # helper is done. Here the request's header (and the lock) arrive, the rest never does.
    lock = TargetLock(str(tmp_path))
    assert lock.try_acquire() and lock.fd is not None
    helper = await Helper.start()
    assert helper is not None
    await helper._channel.send_fds(framed(encode_job("copy", []))[:8], [lock.fd])
    os.close(lock.fd)  # the installer is gone; its lock file stays, as after a kill
    try:
        assert not TargetLock(str(tmp_path)).try_acquire()
    finally:
        await helper.aclose()  # the socket closes: the helper gives up the request and exits
    after = TargetLock(str(tmp_path))
    assert after.try_acquire()
    after.release()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to see descriptors")
async def test_an_install_hands_its_lock_to_the_helper_with_each_piece(
    tmp_path: Path, site_packages: Path
) -> None:
    """Once planned, the wheel's last file becomes a FIFO: the helper copying it waits in
    ``open`` until something opens the other end, and while it waits it holds the lock."""
    (source,) = wheels(tmp_path / "wheels", 1, files=8 * HELPER_MIN_COPIES)
    plans = plans_for([source], site_packages)
    last = max(source.glob("w0/sub*/f*.py"))
    last.unlink()
    os.mkfifo(last)
    lock_file = str(site_packages / ".asynclink-lock")
    held: set[str] = set()
    writers: list[int] = []

    async def release_the_fifo_once_a_helper_holds_the_lock() -> None:
        try:
            with anyio.fail_after(60):
                while lock_file not in held:
                    for helper in scheduler.helpers.children:
                        fds = f"/proc/{helper.pid}/fd"
                        with contextlib.suppress(OSError):
                            held.update(os.readlink(f"{fds}/{fd}") for fd in os.listdir(fds))
                    await anyio.lowlevel.checkpoint()
        finally:
            writers.append(os.open(last, os.O_RDWR))  # never blocks; lets the copy go on

    try:
        async with transaction(str(site_packages), anyio.CapacityLimiter(1)) as journal:
            scheduler = scheduler_for(site_packages, LinkMode.COPY, 2, 1, recorder=journal)
            async with anyio.create_task_group() as group:
                group.start_soon(release_the_fifo_once_a_helper_holds_the_lock)
                await scheduler.run_wheels(plans, scheduler.place)
    finally:
        for fd in writers:
            os.close(fd)

    assert lock_file in held


async def test_clones_without_the_ioctl_stay_in_the_main_process(
    xfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where there is no FICLONE (macOS), a Placer clones through reflink-copy one file at a
    # time, and no helper is asked to. reflink-copy clones on Linux too, so this runs that path;
    # the ioctl is made to fail, as it would there.
    monkeypatch.setattr(asynclink._placing, "LOOP_MODES", LOOP_MODES - {"clone"})
    monkeypatch.setattr(asynclink._child, "FICLONE", 0)
    sources = wheels(xfs / "wheels", 2)
    site_packages = xfs / "sp"
    site_packages.mkdir()
    scheduler = scheduler_for(site_packages, LinkMode.CLONE, jobs=2, helper_processes=1)

    results = await scheduler.run_wheels(plans_for(sources, site_packages), scheduler.place)

    assert [result.mode for result in results] == [LinkMode.CLONE] * 2
    assert scheduler.helpers.started == 0
    last = site_packages / f"w1/sub3/f{FILES - 1:05}.py"
    assert last.read_text() == f"# 1 {FILES - 1}\n"
    extents = subprocess.run(
        ["filefrag", "-v", str(last)], capture_output=True, text=True, check=True
    ).stdout
    assert "shared" in extents


async def test_a_batch_of_many_wheels_has_a_helper_before_its_first_wheel_starts(
    tmp_path: Path, site_packages: Path
) -> None:
    sources = wheels(tmp_path / "wheels", EARLY_HELPER_WHEELS)
    started_by_then: list[int] = []

    def first_start(event: object) -> None:
        if isinstance(event, WheelStarted) and not started_by_then:
            started_by_then.append(scheduler.helpers.started)

    scheduler = scheduler_for(
        site_packages, LinkMode.HARDLINK, jobs=2, helper_processes=1, on_event=first_start
    )
    await scheduler.run_wheels(plans_for(sources, site_packages), scheduler.place)

    assert started_by_then == [1]
    assert scheduler.helpers.started == 1 and scheduler.helpers.pieces == len(sources)


async def test_fewer_wheels_start_a_helper_only_for_a_piece(
    tmp_path: Path, site_packages: Path
) -> None:
    sources = wheels(tmp_path / "wheels", EARLY_HELPER_WHEELS - 1, files=HELPER_MIN_FILES // 2)
    scheduler = scheduler_for(site_packages, LinkMode.HARDLINK, jobs=2, helper_processes=1)

    await scheduler.run_wheels(plans_for(sources, site_packages), scheduler.place)

    assert scheduler.helpers.started == 0


async def test_a_helper_started_early_and_never_used_is_killed_at_the_end(
    tmp_path: Path, site_packages: Path
) -> None:
    """Small wheels need no helper; the one started early may still be starting, and holds
    nothing: it is killed rather than waited for."""
    sources = wheels(tmp_path / "wheels", EARLY_HELPER_WHEELS, files=HELPER_MIN_FILES // 2)
    seen: list[Child] = []

    def remember(event: object) -> None:
        if isinstance(event, WheelStarted):
            seen.extend(c for c in scheduler.helpers.children if c not in seen)

    scheduler = scheduler_for(
        site_packages, LinkMode.HARDLINK, jobs=2, helper_processes=1, on_event=remember
    )
    await scheduler.run_wheels(plans_for(sources, site_packages), scheduler.place)

    assert scheduler.helpers.pieces == 0
    assert [helper.returncode for helper in seen] == [-signal.SIGKILL]
    assert snapshot(site_packages) == {
        path: entry for source in sources for path, entry in snapshot(source).items()
    }


async def test_copies_go_to_a_helper_from_fewer_files_than_links_do(
    tmp_path: Path, site_packages: Path
) -> None:
    # A copy costs a few times what a link does: a small wheel's copies are worth a round trip.
    sources = wheels(tmp_path / "wheels", 4, files=HELPER_MIN_COPIES)
    results = {}
    for mode in (LinkMode.HARDLINK, LinkMode.COPY):
        target = site_packages / mode.value
        target.mkdir()
        scheduler = scheduler_for(site_packages, mode, jobs=4, helper_processes=1)
        await scheduler.run_wheels(plans_for(sources, target), scheduler.place)
        results[mode] = scheduler.helpers.pieces

    assert results == {LinkMode.HARDLINK: 0, LinkMode.COPY: 4}
