"""The event loop's side of an install: one task per wheel, bounded, with batched thread hops.

Everything in this module runs on the event loop. Blocking work goes to the install's own
worker threads (:class:`Threads`: anyio's default limiter is shared with the host
application, so we bring our own) a wheel's phase at a time, never a file at a time: a thread
hop costs as much as dozens of links. Filesystem batches go to the filesystem thread (one: see
``_options.FILESYSTEM_THREADS``); extractions from archives to one CPU thread per core, as
they spend their time in ``zlib`` and ``hashlib`` with the GIL released. Once a wheel's first
file has decided its mode, the bulk of its files (and each chunk of copies) goes to a helper
process if one is free (``_helpers``): a second core placing files, which a second thread
cannot be.

A :class:`Scheduler` lives for one install. What one wheel goes through, :meth:`place`:

1. the link phase in the filesystem thread (``Placer.link_phase``), holding the directory
   locks of the files it copies and writes (RECORD, scripts, metadata);
2. the bulk, cut into pieces of :data:`PIECE` files placed at the same time, each by a helper
   while there are helpers, else in the thread; a helper's answer is settled in the thread;
3. the copy phase: files left for copies (a fallback to copy, too many links), a chunk of
   directories at a time under their :class:`~._locks.DirectoryLocks`.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar, TypeVarTuple, Unpack

import anyio
import anyio.to_thread
from anyio.from_thread import check_cancelled

from ._child import TreeJob
from ._conflicts import find_conflicts
from ._errors import LinkModeFallbackWarning
from ._events import ConflictFound, Event, ModeFellBack, WheelLinked, WheelStarted
from ._helpers import EARLY_HELPER_WHEELS, HelperPool
from ._locks import DirectoryLocks
from ._modes import LinkMode
from ._options import Options
from ._placing import CopyChunk, CopyWork, ModeState, Placer, TreeFiles, chunk_copies, in_loops
from ._plan import WheelPlan
from ._results import Conflict, WheelResult
from ._session import current_session

__all__ = ["PIECE", "Scheduler", "Threads", "gather"]

logger = logging.getLogger("asynclink")

T = TypeVar("T")
R = TypeVar("R")
PosArgs = TypeVarTuple("PosArgs")

#: Files per piece of work handed to a lane (the filesystem thread or a helper): a wheel's bulk
#: and its copy phase are cut into pieces this big (a directory is never cut), which run at the
#: same time, so one big wheel keeps every lane busy instead of one. Smaller pieces balance
#: better and cost more round trips.
PIECE = 4096
#: A copy phase with this many files is grouped by directory in a worker thread (it looks at
#: every file name); a smaller one on the event loop, where it costs less than the hop.
COPIES_GROUPED_IN_THREAD = 256


class Threads:
    """The worker threads of one install: a limiter for filesystem batches, one for CPU work."""

    def __init__(self, options: Options) -> None:
        self.filesystem = anyio.CapacityLimiter(options.filesystem_threads)
        self.cpu = anyio.CapacityLimiter(max(1, min(options.jobs, os.cpu_count() or 1)))

    async def run(self, func: Callable[[Unpack[PosArgs]], T], *args: *PosArgs) -> T:
        """Run a blocking filesystem batch in the filesystem thread."""
        return await anyio.to_thread.run_sync(func, *args, limiter=self.filesystem)

    async def run_cpu(self, func: Callable[[Unpack[PosArgs]], T], *args: *PosArgs) -> T:
        """Run blocking work that spends most of its time outside the GIL (decompressing,
        hashing) in one of the CPU threads, one per core."""
        return await anyio.to_thread.run_sync(func, *args, limiter=self.cpu)


class Scheduler:
    """The limits and shared state of one install's wheel tasks; see the module docstring."""

    def __init__(self, options: Options, threads: Threads, placer: Placer) -> None:
        self.options = options
        self.threads = threads
        self.placer = placer
        session = current_session()
        self.helpers = HelperPool(
            options.helper_processes, session.helpers if session is not None else None
        )
        self.locks = DirectoryLocks()
        self._wheels = anyio.CapacityLimiter(options.jobs)
        self._warned: set[tuple[LinkMode, LinkMode]] = set()

    def emit(self, event: Event) -> None:
        if self.options.on_event is not None:
            self.options.on_event(event)

    async def run_wheels(self, items: Sequence[T], work: Callable[[T], Awaitable[R]]) -> list[R]:
        """Run ``work`` for every item, one task each, at most ``jobs`` at a time; fail as
        :func:`gather` does."""

        async def run_one(item: T) -> R:
            async with self._wheels:
                return await work(item)

        # Helpers live as long as this call: all bulk work happens in it. ``jobs=1`` asks for
        # one thing at a time.
        self.helpers.open = self.options.jobs > 1
        try:
            if len(items) >= EARLY_HELPER_WHEELS:
                await self.helpers.start_early()
            return await gather(run_one(item) for item in items)
        finally:
            await self.helpers.aclose()

    async def place(self, plan: WheelPlan) -> WheelResult:
        """Put every file of ``plan`` in place (see the module docstring)."""
        self.emit(WheelStarted(plan.wheel))
        state = ModeState(self.options.mode)
        # The copies and writes known in advance (RECORD, scripts, metadata) ride in the same
        # thread hop as the links, under the locks of their directories.
        known = CopyWork(copies=list(plan.copies), writes=list(plan.writes))
        directories = {os.path.dirname(d) for _, d in plan.copies}
        directories.update(os.path.dirname(d) for d, _, _ in plan.writes)
        hand_off = self.helpers.takes(plan.file_count)
        async with self.locks.holding(directories):
            bulk, deferred = await self.threads.run(
                self.placer.link_phase, plan, state, known, hand_off, check_cancelled
            )
        if bulk:
            deferred += await self._place_bulk(plan.wheel, state.mode, bulk)
        for fallback in state.fallbacks:
            self.emit(
                ModeFellBack(plan.wheel, fallback.from_mode, fallback.to_mode, fallback.reason)
            )
        if state.fallbacks:
            self._warn_fallback(plan, state)
        await self.place_copies(plan.wheel, deferred)
        self.emit(WheelLinked(plan.wheel, plan.file_count, plan.size, state.mode))
        return WheelResult(
            wheel=plan.wheel,
            source=plan.source,
            files=plan.file_count,
            requested_mode=self.options.mode,
            mode=state.mode,
            fallbacks=tuple(state.fallbacks),
            copied=len(plan.copies) + sum(len(left.files) for left in deferred),
            bytes=plan.size,
        )

    # -- the bulk: pieces, each to a helper or the thread ----------------------------------------

    async def _place_bulk(
        self, wheel: str, mode: LinkMode, trees: Sequence[TreeFiles]
    ) -> list[TreeFiles]:
        """Place ``trees``' files with the decided ``mode``, a :data:`PIECE` at a time, at the
        same time. Returns the files left for the copy phase."""
        deferred: list[TreeFiles] = []
        for left in await gather(self._place_piece(wheel, mode, piece) for piece in _pieces(trees)):
            deferred += left
        return deferred

    async def _place_piece(
        self, wheel: str, mode: LinkMode, trees: list[TreeFiles]
    ) -> list[TreeFiles]:
        """One piece: to a helper while there are helpers (the filesystem thread has the
        planning and the first files of every wheel to do), else in the thread."""
        answers = None
        if in_loops(mode):
            jobs = [TreeJob(tree.source, tree.target, files, dirs) for tree, files, dirs in trees]
            answers = await self.helpers.place(mode.value, jobs, self.placer.recorder.held_fds)
        if answers is None:
            return await self.threads.run(
                self.placer.place_trees, wheel, mode, trees, check_cancelled
            )
        if not answers:
            return []
        return await self.threads.run(
            self.placer.settle_answer, wheel, mode, trees, answers, check_cancelled
        )

    # -- the copy phase, under directory locks -------------------------------------------------

    async def place_copies(
        self,
        wheel: str,
        tree_files: Sequence[TreeFiles] = (),
        copies: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Copy files, holding the lock of each destination directory (see ``_locks``).

        Directories are taken a chunk of :data:`PIECE` files at a time, in sorted order within
        a chunk (which cannot deadlock), and the chunks run at the same time.
        """
        files = len(copies) + sum(len(left.files) for left in tree_files)
        if files >= COPIES_GROUPED_IN_THREAD:
            chunks = await self.threads.run_cpu(chunk_copies, tree_files, copies, PIECE)
        else:
            chunks = chunk_copies(tree_files, copies, PIECE)
        await gather(self._copy_chunk(wheel, chunk) for chunk in chunks)

    async def _copy_chunk(self, wheel: str, chunk: CopyChunk) -> None:
        work = chunk.work
        async with self.locks.holding(chunk.directories):
            if work.tree_files and self.helpers.takes(len(work), copies=True):
                await self._place_bulk(wheel, LinkMode.COPY, work.trees())
                work.tree_files.clear()
            if len(work):
                await self.threads.run(self.placer.copy_and_write, wheel, work, check_cancelled)

    # -- the end of a batch ------------------------------------------------------------------------

    def _warn_fallback(self, plan: WheelPlan, state: ModeState) -> None:
        """Say once per install that a mode gave way, and why.

        A default clone that becomes a hardlink is only logged, as in uv: most filesystems
        cannot clone, and hardlinks cost nothing more. Falling back to copy (slower, more disk)
        or away from a mode the caller chose is a warning, once per pair of modes.
        """
        requested = self.options.mode
        key = (requested, state.mode)
        if key in self._warned:
            return
        self._warned.add(key)
        steps = "; ".join(
            f"{step.from_mode} -> {step.to_mode}: {step.reason}" for step in state.fallbacks
        )
        message = (
            f"cannot {requested} from {plan.source} into {plan.target} ({steps}); "
            f"{plan.wheel} and other wheels between these filesystems use {state.mode}. "
            "Choose the link mode (mode=..., --link-mode or ASYNCLINK_LINK_MODE) to silence this."
        )
        if self.options.mode_chosen or state.mode is LinkMode.COPY:
            logger.warning(message)
            warnings.warn(message, LinkModeFallbackWarning, stacklevel=2)
        else:
            logger.info(message)

    async def finish(
        self, target: str, plans: Sequence[WheelPlan], touched: bool = True
    ) -> tuple[Conflict, ...]:
        """After every wheel: the site-packages mtime bump (if anything changed), then the
        conflict scan."""
        check = self.options.check_conflicts
        if not (touched or check):
            return ()
        conflicts = await self.threads.run(_scan_and_touch, target, plans, check, touched)
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


def _pieces(trees: Sequence[TreeFiles]) -> list[list[TreeFiles]]:
    """``trees``' files cut into pieces of about :data:`PIECE` files."""
    pieces: list[list[TreeFiles]] = [[]]
    size = 0
    for tree, files, dirs in trees:  # each piece makes the directories (they may race)
        for start in range(0, len(files), PIECE):
            if size >= PIECE:
                pieces.append([])
                size = 0
            piece = files[start : start + PIECE]
            pieces[-1].append(TreeFiles(tree, piece, dirs))
            size += len(piece)
    return pieces


async def gather(work: Iterable[Awaitable[T]]) -> list[T]:
    """Await all of ``work`` at once, in one task group; the results, in order.

    The first failure cancels the rest, and the caller gets that failure itself (not an
    ``ExceptionGroup``), with failures that happened at the same time attached as notes.
    Cancellation of the caller is never swallowed.
    """
    jobs = list(work)
    if len(jobs) <= 1:  # no task group for one job (or none)
        return [await job for job in jobs]
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
    target: str, plans: Sequence[WheelPlan], check: bool, touch: bool
) -> list[Conflict]:
    # CPython's FileFinder caches a directory's listing until its mtime changes; a clone (and a
    # whole-directory clone on macOS in particular) may not change it, so new packages would
    # not be importable in a running interpreter without importlib.invalidate_caches().
    if touch:
        try:
            os.utime(target)
        except OSError as error:
            logger.debug("cannot update the mtime of %s: %s", target, error)
    return find_conflicts(plans) if check and plans else []
