"""The async part of an install: one task per wheel, bounded, with batched thread hops.

A :class:`Scheduler` lives for one install. It owns

* a :class:`anyio.CapacityLimiter` for wheel tasks, one for the filesystem worker threads and
  one for the CPU worker threads (anyio's default thread limiter is shared with the host
  application, so we bring our own);
* the failed-probe memo: a mode that failed between two devices is not tried again;
* one :class:`anyio.Lock` per destination directory, held while copying into it;
* its helper processes, started when there is work for them, stopped before
  :meth:`Scheduler.run_wheels` returns.

Blocking work runs in worker threads a wheel at a time (directories, links, and the copies and
writes known in advance, in one hop) or a chunk of directories at a time (copies left over by a
fallback), never a file at a time: a thread hop costs as much as dozens of links. Filesystem
batches go to :data:`FILESYSTEM_THREADS` threads (one: see there why), extractions from
archives to one thread per core, as they spend their time in ``zlib`` and ``hashlib`` with the
GIL released. Once a wheel's first file has decided its mode, the bulk of its files (and each
chunk of copies) goes to a helper process if one is free (``_helper``, up to
:data:`HELPER_PROCESSES`): a second core placing files, which a second thread cannot be.
Big archives are unpacked by unpacking helpers (``_helper.Unpacker``) in the same way, as many at
once as there are CPU threads.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import anyio.to_thread
from anyio.from_thread import check_cancelled

from ._confinement import Confinement
from ._conflicts import find_conflicts
from ._errors import LinkError, LinkModeFallbackWarning
from ._events import (
    ConflictFound,
    EventCallback,
    ModeFellBack,
    WheelLinked,
    WheelStarted,
)
from ._helper import HelperPool
from ._link import (
    ModeState,
    Placer,
    Recorder,
    TreeHandles,
    in_loops,
    place_rest,
    settle,
    start_tree,
)
from ._modes import LinkMode, default_link_mode
from ._plan import Tree, WheelPlan
from ._results import Conflict, WheelResult

__all__ = ["LinkModeFallbackWarning", "Scheduler", "default_jobs"]

logger = logging.getLogger("asynclink")

T = TypeVar("T")
R = TypeVar("R")

#: Files per piece of work handed to a lane (the filesystem thread or a helper): a wheel's bulk
#: and its copy phase are cut into pieces this big (a directory is never cut), which run at the
#: same time, so one big wheel keeps every lane busy instead of one. Smaller pieces balance
#: better and cost more round trips.
PIECE = 4096


@dataclass(slots=True)
class _Group:
    """What the locked phase puts into one directory (or a chunk of directories)."""

    tree_files: dict[int, tuple[Tree, list[str]]] = field(default_factory=dict)
    """``id(tree)`` -> (tree, files of the tree to copy)."""
    copies: list[tuple[str, str]] = field(default_factory=list)
    writes: list[tuple[str, bytes, int]] = field(default_factory=list)

    def __len__(self) -> int:
        files = sum(len(names) for _, names in self.tree_files.values())
        return files + len(self.copies) + len(self.writes)

    def extend(self, other: _Group) -> None:
        for key, (tree, names) in other.tree_files.items():
            self.tree_files.setdefault(key, (tree, []))[1].extend(names)
        self.copies.extend(other.copies)
        self.writes.extend(other.writes)


def default_jobs() -> int:
    """How many wheels are in flight at once unless the caller says otherwise."""
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


#: Worker threads for the filesystem batches (directories, links, copies, writes), by default.
#: One: these batches are thousands of short syscalls, each releasing and retaking the GIL, and
#: two threads doing that take turns with the GIL at every call. The benchmark's ``bounds`` rows
#: measure it (README, Performance; 2 cores, tmpfs, no helper processes): link-only hardlink
#: took 67 ms with one thread and 76 ms with two, copy 255 ms and 329 ms. Wheel tasks still
#: overlap: one is unpacked while another is linked, and helper processes (below) give the
#: bulk of the files a core of their own. More threads pay only where each syscall waits long
#: (a network mount); the directory locks keep copies right with any number.
FILESYSTEM_THREADS = 1

#: Helper processes of each kind (``_helper``: placing files, unpacking archives) an install
#: may start, by default: one per core (up to four), none with one core. Unlike threads,
#: processes do place files in parallel. The benchmark's ``bounds`` rows (README, Performance;
#: 2 cores, tmpfs) have link-only copy at 255 ms with no helper, 329 ms with a second thread
#: instead, 232 ms with one helper and 179 ms with two. Helpers start only when there is work
#: for them (see ``_helper.HELPER_MIN_FILES`` and ``_helper.UNPACKER_MIN_BYTES``), each when
#: the others are busy.
HELPER_PROCESSES = min(4, os.cpu_count() or 1) if (os.cpu_count() or 1) > 1 else 0

#: The bulk jobs handed to a helper: (tree, its files still to place).
TreeFiles = list[tuple[Tree, list[str]]]


class Scheduler:
    """Shared state and limits of one install; see the module docstring."""

    def __init__(
        self,
        mode: LinkMode | str | None,
        jobs: int | None = None,
        recorder: Recorder | None = None,
        on_event: EventCallback | None = None,
        confinement: Confinement | None = None,
        filesystem_threads: int = FILESYSTEM_THREADS,
        helper_processes: int = HELPER_PROCESSES,
    ) -> None:
        self.mode_chosen = mode is not None
        self.mode = LinkMode.parse(mode) if mode is not None else default_link_mode()
        jobs = jobs if jobs is not None else default_jobs()
        if jobs < 1:
            raise ValueError(f"jobs must be at least 1, not {jobs}")
        if filesystem_threads < 1:
            raise ValueError(f"filesystem_threads must be at least 1, not {filesystem_threads}")
        if helper_processes < 0:
            raise ValueError(f"helper_processes cannot be negative: {helper_processes}")
        self.jobs = jobs
        self.wheel_limiter = anyio.CapacityLimiter(jobs)
        self.filesystem_limiter = anyio.CapacityLimiter(filesystem_threads)
        self.cpu_limiter = anyio.CapacityLimiter(max(1, min(jobs, os.cpu_count() or 1)))
        self.placer = Placer(confinement or Confinement.of([]), recorder)
        self.on_event = on_event
        self._probes: dict[tuple[int, int, LinkMode], str] = {}
        self._dir_locks: dict[str, anyio.Lock] = {}
        self._warned: set[tuple[LinkMode, LinkMode]] = set()
        self.helpers = HelperPool(helper_processes)

    def emit(self, event: object) -> None:
        if self.on_event is not None:
            self.on_event(event)  # type: ignore[arg-type]

    async def in_thread(self, func: Callable[..., T], *args: object) -> T:
        """Run a blocking filesystem batch in this install's filesystem worker thread."""
        return await anyio.to_thread.run_sync(func, *args, limiter=self.filesystem_limiter)

    async def in_cpu_thread(self, func: Callable[..., T], *args: object) -> T:
        """Run blocking work that spends most of its time outside the GIL (decompressing,
        hashing) in one of this install's CPU threads, one per core."""
        return await anyio.to_thread.run_sync(func, *args, limiter=self.cpu_limiter)

    async def run_wheels(self, items: Sequence[T], work: Callable[[T], Awaitable[R]]) -> list[R]:
        """Run ``work`` for every item, one task each, at most ``jobs`` at a time; fail as
        :func:`_all` does."""

        async def run_one(item: T) -> R:
            async with self.wheel_limiter:
                return await work(item)

        # Helpers live as long as this call: all bulk work happens in it. ``jobs=1`` asks for
        # one thing at a time.
        self.helpers.open = self.jobs > 1
        try:
            return await _all(run_one(item) for item in items)
        finally:
            await self.helpers.aclose()

    async def place(self, plan: WheelPlan) -> WheelResult:
        """Put every file of ``plan`` in place: links in one hop (or the bulk of them in a
        helper process), then copies under locks."""
        self.emit(WheelStarted(plan.wheel))
        state = ModeState(self.mode)
        # The copies and writes known in advance (RECORD, scripts, metadata) ride in the same
        # thread hop as the links, under the locks of their directories.
        known = _Group(copies=list(plan.copies), writes=list(plan.writes))
        directories = {os.path.dirname(d) for _, d in plan.copies}
        directories.update(os.path.dirname(d) for d, _, _ in plan.writes)
        hand_off = self.helpers.takes(plan.file_count)
        async with self._locked(directories):
            bulk, deferred = await self.in_thread(
                self._link_phase, plan, state, known, hand_off, check_cancelled
            )
        if bulk:
            deferred += await self._place_bulk(plan.wheel, state.mode, bulk)
        for fallback in state.fallbacks:
            self.emit(
                ModeFellBack(plan.wheel, fallback.from_mode, fallback.to_mode, fallback.reason)
            )
        if state.fallbacks:
            self._warn_fallback(plan, state)
        await self.place_locked(plan.wheel, deferred)
        self.emit(WheelLinked(plan.wheel, plan.file_count, plan.size, state.mode))
        return WheelResult(
            wheel=plan.wheel,
            source=plan.source,
            files=plan.file_count,
            requested_mode=self.mode,
            mode=state.mode,
            fallbacks=tuple(state.fallbacks),
            copied=len(plan.copies) + sum(len(files) for _, files in deferred),
            bytes=plan.size,
        )

    def _link_phase(
        self,
        plan: WheelPlan,
        state: ModeState,
        known: _Group,
        hand_off: bool,
        checkpoint: Callable[[], None],
    ) -> tuple[TreeFiles, TreeFiles]:
        """Directories, the mode decision, symlinks and the known copies and writes; the bulk
        of the files too unless ``hand_off``. Returns the bulk left (for a helper) and the
        files left for the copy phase."""
        placer = self.placer
        wheel = plan.wheel
        bulk: TreeFiles = []
        deferred: TreeFiles = []
        sep = os.sep
        with TreeHandles(wheel, plan.trees) as handles:
            # Every directory is written down before it is made, so that a kill at any moment
            # leaves nothing the journal does not know of.
            handles.open_sources()
            outer = placer.new_dirs(wheel, plan.dirs)
            handles.open_targets(missing=set(outer))
            inner = [
                placer.new_dirs(wheel, tree.dirs, target_fd, tree.target)
                if target_fd >= 0
                else list(tree.dirs)
                for tree, target_fd in zip(plan.trees, handles.targets, strict=True)
            ]
            placer.recorder.begin_wheel(
                plan,
                outer
                + [
                    tree.target + sep + directory
                    for tree, new in zip(plan.trees, inner, strict=True)
                    for directory in new
                ],
            )
            placer.make_dirs(wheel, outer)
            handles.open_targets()
            for tree, target_fd, new in zip(plan.trees, handles.targets, inner, strict=True):
                placer.make_dirs(wheel, new, target_fd, tree.target)
            for text, destination in plan.symlinks:
                try:
                    placer.place(LinkMode.SYMLINK, text, destination)
                except OSError as error:
                    raise LinkError(wheel, text, destination, error, "symlink") from error
            for tree, source_fd, target_fd in zip(
                plan.trees, handles.sources, handles.targets, strict=True
            ):
                index, left = start_tree(
                    placer, wheel, tree, source_fd, target_fd, state, self._probes
                )
                rest = tree.files[index:] if index < len(tree.files) else []
                if rest and hand_off:
                    bulk.append((tree, rest))
                elif rest:
                    mode = state.mode
                    left += place_rest(
                        placer, wheel, tree, mode, rest, source_fd, target_fd, checkpoint
                    )
                if left:
                    deferred.append((tree, left))
        self._copy_and_write(wheel, known, checkpoint)
        return bulk, deferred

    # -- helpers: the bulk of the files in another process -------------------------------------

    async def _place_bulk(self, wheel: str, mode: LinkMode, trees: TreeFiles) -> TreeFiles:
        """Place ``trees``' files with the decided ``mode``, a :data:`PIECE` at a time, each in
        a helper if one is free, else in the filesystem thread. Returns the files left for the
        copy phase."""
        pieces: list[TreeFiles] = [[]]
        size = 0
        for tree, files in trees:
            for start in range(0, len(files), PIECE):
                if size >= PIECE:
                    pieces.append([])
                    size = 0
                piece = files[start : start + PIECE]
                pieces[-1].append((tree, piece))
                size += len(piece)
        deferred: TreeFiles = []
        for left in await _all(self._place_piece(wheel, mode, piece) for piece in pieces):
            deferred += left
        return deferred

    async def _place_piece(self, wheel: str, mode: LinkMode, trees: TreeFiles) -> TreeFiles:
        """One piece: to a helper while there are helpers (the filesystem thread has the
        planning and the first files of every wheel to do), else in the thread."""
        answer = None
        if in_loops(mode):
            jobs = [(tree.source, tree.target, files) for tree, files in trees]
            answer = await self.helpers.place(mode.value, jobs, self.placer.recorder.held_fds)
        if answer is None:
            return await self.in_thread(self._place_trees, wheel, mode, trees, check_cancelled)
        if not answer:
            return []
        return await self.in_thread(
            self._settle_answer, wheel, mode, trees, answer, check_cancelled
        )

    def _place_trees(
        self, wheel: str, mode: LinkMode, trees: TreeFiles, checkpoint: Callable[[], None]
    ) -> TreeFiles:
        deferred: TreeFiles = []
        with TreeHandles(wheel, [tree for tree, _ in trees]) as handles:
            handles.open_sources()
            handles.open_targets()
            for (tree, files), source_fd, target_fd in zip(
                trees, handles.sources, handles.targets, strict=True
            ):
                left = place_rest(
                    self.placer, wheel, tree, mode, files, source_fd, target_fd, checkpoint
                )
                if left:
                    deferred.append((tree, left))
        return deferred

    def _settle_answer(
        self,
        wheel: str,
        mode: LinkMode,
        trees: TreeFiles,
        answer: list[tuple[int, str, int]],
        checkpoint: Callable[[], None],
    ) -> TreeFiles:
        """Finish what a helper reported it did not place (see ``_bulk``): a tree it could not
        open is done here whole (its error is reported from here), the rest file by file."""
        failures: dict[int, list[tuple[str, int]]] = {}
        for index, name, code in answer:
            failures.setdefault(index, []).append((name, code))
        redo = [trees[index] for index, found in failures.items() if found[0][0] == ""]
        deferred = self._place_trees(wheel, mode, redo, checkpoint) if redo else []
        for index, found in failures.items():
            if found[0][0] == "":
                continue
            tree = trees[index][0]
            with TreeHandles(wheel, [tree]) as handles:
                handles.open_sources()
                handles.open_targets()
                source_fd, target_fd = handles.sources[0], handles.targets[0]
                left = settle(
                    self.placer, wheel, tree, mode, found, source_fd, target_fd, checkpoint
                )
            if left:
                deferred.append((tree, left))
        return deferred

    async def place_locked(
        self,
        wheel: str,
        tree_files: Sequence[tuple[Tree, Sequence[str]]] = (),
        copies: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Copy files, holding the lock of each destination directory.

        Copies (unlike links) write a file's bytes over time. Each copy goes to a new inode
        (``O_EXCL``, or a temporary name renamed over an existing file), so bytes of two wheels
        never mix in one file, the race of uv issue 4831. The directory lock adds what atomic
        files cannot: all the files one wheel copies into a directory land together, so when two
        wheels ship the same directory (a namespace package, a vendored module) its files come
        from one wheel or the other as a set, never interleaved file by file. Directories are
        taken a chunk at a time in sorted order, which cannot deadlock.
        """
        sep = os.sep
        groups: dict[str, _Group] = {}
        for tree, files in tree_files:
            last_head: str | None = None
            names: list[str] = []
            for relative in files:  # a directory's files come one after another
                head = relative.rpartition(sep)[0]
                if head != last_head:
                    last_head = head
                    directory = tree.target + sep + head if head else tree.target
                    group = groups.get(directory) or groups.setdefault(directory, _Group())
                    names = group.tree_files.setdefault(id(tree), (tree, []))[1]
                names.append(relative)
        for pair in copies:
            groups.setdefault(os.path.dirname(pair[1]), _Group()).copies.append(pair)
        chunks: list[list[str]] = [[]]
        size = 0
        for directory, group in groups.items():
            if size >= PIECE:
                chunks.append([])
                size = 0
            chunks[-1].append(directory)
            size += len(group)
        await _all(self._run_locked(wheel, chunk, groups) for chunk in chunks if chunk)

    async def _run_locked(
        self, wheel: str, directories: list[str], groups: dict[str, _Group]
    ) -> None:
        work = _Group()
        for directory in directories:
            work.extend(groups[directory])
        async with self._locked(directories):
            if work.tree_files and self.helpers.takes(len(work), copies=True):
                await self._place_bulk(wheel, LinkMode.COPY, list(work.tree_files.values()))
                work.tree_files.clear()
            if len(work):
                await self.in_thread(self._copy_and_write, wheel, work, check_cancelled)

    @asynccontextmanager
    async def _locked(self, directories: Iterable[str]) -> AsyncIterator[None]:
        """Hold the locks of ``directories``, taken in sorted order so that no two holders
        can wait for each other."""
        held: list[anyio.Lock] = []
        locks = self._dir_locks
        try:
            for directory in sorted(directories):
                lock = locks.get(directory)
                if lock is None:
                    lock = locks[directory] = anyio.Lock(fast_acquire=True)
                await lock.acquire()
                held.append(lock)
            yield
        finally:
            for lock in reversed(held):
                lock.release()

    def _copy_and_write(self, wheel: str, work: _Group, checkpoint: Callable[[], None]) -> None:
        if work.tree_files:
            self._place_trees(wheel, LinkMode.COPY, list(work.tree_files.values()), checkpoint)
        for source, destination in work.copies:
            try:
                self.placer.place(LinkMode.COPY, source, destination)
            except OSError as error:
                raise LinkError(wheel, source, destination, error, "copy") from error
        for destination, data, perms in work.writes:
            try:
                self.placer.write(destination, data, perms)
            except OSError as error:
                raise LinkError(wheel, None, destination, error, "write") from error

    def _warn_fallback(self, plan: WheelPlan, state: ModeState) -> None:
        """Say once per install that a mode gave way, and why.

        A default clone that becomes a hardlink is only logged, as in uv: most filesystems
        cannot clone, and hardlinks cost nothing more. Falling back to copy (slower, more disk)
        or away from a mode the caller chose is a warning, once per pair of modes.
        """
        key = (self.mode, state.mode)
        if key in self._warned:
            return
        self._warned.add(key)
        steps = "; ".join(
            f"{step.from_mode} -> {step.to_mode}: {step.reason}" for step in state.fallbacks
        )
        message = (
            f"cannot {self.mode} from {plan.source} into {plan.target} ({steps}); "
            f"{plan.wheel} and other wheels between these filesystems use {state.mode}. "
            "Choose the link mode (mode=..., --link-mode or ASYNCLINK_LINK_MODE) to silence this."
        )
        if self.mode_chosen or state.mode is LinkMode.COPY:
            logger.warning(message)
            warnings.warn(message, LinkModeFallbackWarning, stacklevel=2)
        else:
            logger.info(message)

    async def finish(
        self, target: str, plans: Sequence[WheelPlan], check_conflicts: bool
    ) -> tuple[Conflict, ...]:
        """After every wheel: the site-packages mtime bump, then the conflict scan."""
        conflicts = await self.in_thread(_scan_and_touch, target, plans, check_conflicts)
        for conflict in conflicts:
            logger.warning(
                "%s is provided by more than one wheel (%s): %s; whichever was placed last won, "
                "and the module may be broken",
                conflict.path,
                ", ".join(conflict.wheels),
                conflict.reason,
            )
            self.emit(ConflictFound(conflict))
        return tuple(conflicts)


async def _all(work: Iterable[Awaitable[T]]) -> list[T]:
    """Await all of ``work`` at once, in one task group; the results, in order.

    The first failure cancels the rest, and the caller gets that failure itself (not an
    ``ExceptionGroup``), with failures that happened at the same time attached as notes.
    Cancellation of the caller is never swallowed.
    """
    jobs = list(work)
    if len(jobs) == 1:
        return [await jobs[0]]
    results: list[T | None] = [None] * len(jobs)
    errors: list[Exception] = []

    async def run(index: int, job: Awaitable[T]) -> None:
        try:
            results[index] = await job
        except Exception as error:
            errors.append(error)
            task_group.cancel_scope.cancel()

    async with anyio.create_task_group() as task_group:
        for index, job in enumerate(jobs):
            task_group.start_soon(run, index, job)
    if errors:
        first = errors[0]
        for other in errors[1:]:
            first.add_note(f"at the same time: {other}")
        raise first
    return results  # type: ignore[return-value]


def _scan_and_touch(
    target: str, plans: Sequence[WheelPlan], check_conflicts: bool
) -> list[Conflict]:
    # CPython's FileFinder caches a directory's listing until its mtime changes; a clone (and a
    # whole-directory clone on macOS in particular) may not change it, so new packages would
    # not be importable in a running interpreter without importlib.invalidate_caches().
    try:
        os.utime(target)
    except OSError as error:
        logger.debug("cannot update the mtime of %s: %s", target, error)
    return find_conflicts(plans) if check_conflicts else []
