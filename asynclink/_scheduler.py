"""The async part of an install: one task per wheel, bounded, with batched thread hops.

A :class:`Scheduler` lives for one install. It owns

* a :class:`anyio.CapacityLimiter` for wheel tasks and one for its worker threads (anyio's
  default thread limiter is shared with the host application, so we bring our own);
* the failed-probe memo: a mode that failed between two devices is not tried again;
* one :class:`anyio.Lock` per destination directory, held while copying into it.

Blocking work runs in worker threads a wheel (link phase) or a group of directories (copy
phase) at a time, never a file at a time: a thread hop costs as much as dozens of links.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import TypeVar

import anyio
import anyio.to_thread
from anyio.from_thread import check_cancelled

from ._conflicts import find_conflicts
from ._errors import LinkError
from ._events import (
    ConflictFound,
    EventCallback,
    ModeFellBack,
    WheelLinked,
    WheelStarted,
)
from ._link import ModeState, Placer, Recorder, copy_batch, link_batch
from ._modes import LinkMode, default_link_mode
from ._plan import WheelPlan
from ._results import Conflict, WheelResult

__all__ = ["LinkModeFallbackWarning", "Scheduler", "absolute", "default_jobs"]

logger = logging.getLogger("asynclink")

T = TypeVar("T")
R = TypeVar("R")

#: Files copied (or written) per thread hop in the locked copy phase.
COPY_CHUNK = 256


class LinkModeFallbackWarning(UserWarning):
    """A wheel could not be placed with the chosen link mode and was copied (or linked) instead."""


def default_jobs() -> int:
    """How many wheels are placed at once unless the caller says otherwise."""
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


class Scheduler:
    """Shared state and limits of one install; see the module docstring."""

    def __init__(
        self,
        mode: LinkMode | None,
        jobs: int | None = None,
        recorder: Recorder | None = None,
        on_event: EventCallback | None = None,
    ) -> None:
        self.mode_chosen = mode is not None
        self.mode = mode if mode is not None else default_link_mode()
        jobs = jobs if jobs is not None else default_jobs()
        if jobs < 1:
            raise ValueError(f"jobs must be at least 1, not {jobs}")
        self.jobs = jobs
        self.wheel_limiter = anyio.CapacityLimiter(jobs)
        self.thread_limiter = anyio.CapacityLimiter(jobs)
        self.placer = Placer(recorder)
        self.on_event = on_event
        self._probes: dict[tuple[int, int, LinkMode], str] = {}
        self._dir_locks: dict[str, anyio.Lock] = {}
        self._warned: set[tuple[LinkMode, LinkMode]] = set()

    def emit(self, event: object) -> None:
        if self.on_event is not None:
            self.on_event(event)  # type: ignore[arg-type]

    async def in_thread(self, func: Callable[..., T], *args: object) -> T:
        """Run blocking ``func`` in one of this install's worker threads."""
        return await anyio.to_thread.run_sync(func, *args, limiter=self.thread_limiter)

    async def run_wheels(self, items: Sequence[T], work: Callable[[T], Awaitable[R]]) -> list[R]:
        """Run ``work`` for every item, one task each, at most ``jobs`` at a time.

        The first failure cancels the other tasks, and the caller gets that failure itself
        (not an ``ExceptionGroup``); failures of other wheels that happened at the same time
        are attached as notes. Cancellation of the caller is never swallowed.
        """
        results: list[R | None] = [None] * len(items)
        errors: list[Exception] = []

        async def run_one(index: int, item: T) -> None:
            try:
                async with self.wheel_limiter:
                    results[index] = await work(item)
            except Exception as error:
                errors.append(error)
                task_group.cancel_scope.cancel()

        async with anyio.create_task_group() as task_group:
            for index, item in enumerate(items):
                task_group.start_soon(run_one, index, item)
        if errors:
            first = errors[0]
            for other in errors[1:]:
                first.add_note(f"at the same time: {other}")
            raise first
        return [result for result in results if result is not None]

    async def place(self, plan: WheelPlan) -> WheelResult:
        """Put every file of ``plan`` in place: links in one hop, then copies under locks."""
        self.emit(WheelStarted(plan.wheel))
        state = ModeState(self.mode)
        deferred = await self.in_thread(self._link_phase, plan, state, check_cancelled)
        for fallback in state.fallbacks:
            self.emit(
                ModeFellBack(plan.wheel, fallback.from_mode, fallback.to_mode, fallback.reason)
            )
        if state.fallbacks:
            self._warn_fallback(plan, state)
        copies = plan.copies + deferred
        await self.place_locked(plan.wheel, copies, plan.writes)
        size = sum(plan.sizes.values())
        self.emit(WheelLinked(plan.wheel, plan.file_count, size, state.mode))
        return WheelResult(
            wheel=plan.wheel,
            source=plan.source,
            files=plan.file_count,
            requested_mode=self.mode,
            mode=state.mode,
            fallbacks=tuple(state.fallbacks),
            copied=len(copies),
            bytes=size,
        )

    def _link_phase(
        self, plan: WheelPlan, state: ModeState, checkpoint: Callable[[], None]
    ) -> list[tuple[str, str]]:
        placer = self.placer
        created = placer.make_dirs(plan.wheel, plan.dirs)
        placer.recorder.begin_wheel(plan, created)
        for text, destination in plan.symlinks:
            try:
                placer.place(LinkMode.SYMLINK, text, destination)
            except OSError as error:
                raise LinkError(plan.wheel, text, destination, error, "symlink") from error
        if not plan.links:
            return []
        try:
            devices = (os.stat(plan.source).st_dev, os.stat(plan.target).st_dev)
        except OSError as error:
            raise LinkError(plan.wheel, plan.source, plan.target, error, "stat") from error
        return link_batch(placer, plan.wheel, plan.links, state, self._probes, devices, checkpoint)

    async def place_locked(
        self,
        wheel: str,
        copies: Sequence[tuple[str, str]],
        writes: Sequence[tuple[str, bytes, int]] = (),
    ) -> None:
        """Copy files and write generated ones, holding the lock of each destination directory.

        Copies (unlike links) write a file's bytes over time. Each copy goes to a new inode
        (``O_EXCL``, or a temporary name renamed over an existing file), so bytes of two wheels
        never mix in one file, the race of uv issue 4831. The directory lock adds what atomic
        files cannot: all the files one wheel copies into a directory land together, so when two
        wheels ship the same directory (a namespace package, a vendored module) its files come
        from one wheel or the other as a set, never interleaved file by file. Directories are
        taken a chunk at a time in sorted order, which cannot deadlock.
        """
        if not copies and not writes:
            return
        groups: dict[str, tuple[list[tuple[str, str]], list[tuple[str, bytes, int]]]] = {}
        for pair in copies:
            groups.setdefault(os.path.dirname(pair[1]), ([], []))[0].append(pair)
        for item in writes:
            groups.setdefault(os.path.dirname(item[0]), ([], []))[1].append(item)
        chunk: list[str] = []
        size = 0
        for directory, (pairs, items) in groups.items():
            chunk.append(directory)
            size += len(pairs) + len(items)
            if size >= COPY_CHUNK:
                await self._run_locked(wheel, chunk, groups)
                chunk, size = [], 0
        if chunk:
            await self._run_locked(wheel, chunk, groups)

    async def _run_locked(
        self,
        wheel: str,
        directories: list[str],
        groups: dict[str, tuple[list[tuple[str, str]], list[tuple[str, bytes, int]]]],
    ) -> None:
        async with AsyncExitStack() as stack:
            for directory in sorted(directories):
                lock = self._dir_locks.get(directory)
                if lock is None:
                    lock = self._dir_locks[directory] = anyio.Lock(fast_acquire=True)
                await stack.enter_async_context(lock)
            copies = [pair for directory in directories for pair in groups[directory][0]]
            writes = [item for directory in directories for item in groups[directory][1]]
            await self.in_thread(self._copy_and_write, wheel, copies, writes, check_cancelled)

    def _copy_and_write(
        self,
        wheel: str,
        copies: list[tuple[str, str]],
        writes: list[tuple[str, bytes, int]],
        checkpoint: Callable[[], None],
    ) -> None:
        copy_batch(self.placer, wheel, copies, checkpoint)
        for destination, data, perms in writes:
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
        """After every wheel: the conflict scan, then the site-packages mtime bump."""
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


def absolute(path: str | os.PathLike[str]) -> str:
    """``os.path.abspath`` as a ``str``: lexical, no symlinks resolved, one ``getcwd`` at most."""
    return os.path.abspath(os.fspath(path))


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
