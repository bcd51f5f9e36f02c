"""The core engine's public verb: place unpacked wheels into one site-packages, as a unit."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from ._confinement import Confinement
from ._errors import AsyncLinkError
from ._events import EventCallback, WheelFinished
from ._fsutil import absolute
from ._modes import LinkMode
from ._plan import WheelPlan, plan_unpacked_tree
from ._results import LinkResult, WheelResult
from ._scheduler import FILESYSTEM_THREADS, HELPER_PROCESSES, Scheduler
from ._transaction import transaction

__all__ = ["link_wheels"]


async def link_wheels(
    site_packages: str | os.PathLike[str],
    wheels: Iterable[str | os.PathLike[str]],
    *,
    mode: LinkMode | str | None = None,
    jobs: int | None = None,
    check_conflicts: bool = True,
    lock_timeout: float | None = None,
    filesystem_threads: int = FILESYSTEM_THREADS,
    helper_processes: int = HELPER_PROCESSES,
    on_event: EventCallback | None = None,
) -> LinkResult:
    """Place every file of many unpacked wheels into ``site_packages``, concurrently.

    Each wheel is a directory laid out as a wheel's contents (as a package manager's cache
    holds them). ``mode`` is a :class:`LinkMode` or its name (``None``: clone on Linux and
    macOS, hardlink elsewhere); a mode that cannot work falls back per wheel (see
    :class:`LinkMode`). ``jobs`` bounds how many wheels are in flight at once;
    ``filesystem_threads`` how many worker threads place files (one is fastest on local disks);
    ``helper_processes`` how many helper processes may place the bulk of them on other cores
    (``0``: none; ``jobs=1`` starts none either).

    The batch is one transaction: it holds ``site_packages``' lock (waiting at most
    ``lock_timeout`` seconds for another installer, if given), and on any failure or
    cancellation ``site_packages`` is put back as it was. Raises :class:`LinkError` (or another
    :class:`AsyncLinkError`) naming the wheel and path when a file cannot be placed.
    """
    started = time.perf_counter()
    target = absolute(site_packages)
    sources = [absolute(wheel) for wheel in wheels]
    confinement = Confinement.of([target])
    scheduler = Scheduler(
        mode,
        jobs,
        on_event=on_event,
        confinement=confinement,
        filesystem_threads=filesystem_threads,
        helper_processes=helper_processes,
    )
    if not await scheduler.in_thread(os.path.isdir, target):
        raise AsyncLinkError(f"site-packages directory {target} does not exist")
    plans: list[WheelPlan] = []

    async def one(source: str) -> WheelResult:
        plan = await scheduler.in_thread(plan_unpacked_tree, None, source, target)
        plans.append(plan)
        result = await scheduler.place(plan)
        scheduler.emit(WheelFinished(plan.wheel, result))
        return result

    async with transaction(target, confinement=confinement, lock_timeout=lock_timeout) as journal:
        scheduler.placer.recorder = journal
        results = await scheduler.run_wheels(sources, one)
        conflicts = await scheduler.finish(target, plans, check_conflicts)
    elapsed = time.perf_counter() - started
    return LinkResult(target, tuple(results), conflicts, elapsed, journal.recovered)
