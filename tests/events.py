"""Test helpers around the engine's loop side: a concurrency counter for ``on_event``, and
the scheduler of an install, for the tests of its internals."""

from __future__ import annotations

from pathlib import Path

from asynclink import Event, LinkMode, WheelFinished, WheelStarted
from asynclink._confinement import Confinement
from asynclink._events import EventCallback
from asynclink._options import Options
from asynclink._placing import Placer, Recorder
from asynclink._scheduler import Scheduler, Threads


class Concurrency:
    """Pass as ``on_event``; ``peak`` is the most wheels started and not yet finished."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, WheelStarted):
            self.running += 1
            self.peak = max(self.peak, self.running)
        elif isinstance(event, WheelFinished):
            self.running -= 1


def scheduler_for(
    site_packages: Path,
    mode: LinkMode | None,
    jobs: int,
    helper_processes: int = 0,
    recorder: Recorder | None = None,
    on_event: EventCallback | None = None,
    filesystem_threads: int = 1,
) -> Scheduler:
    """The scheduler ``link_wheels`` would build for ``site_packages``, for the tests that look
    at its helpers or hand it plans of their own."""
    options = Options.make(
        mode=mode,
        jobs=jobs,
        helper_processes=helper_processes,
        filesystem_threads=filesystem_threads,
        on_event=on_event,
    )
    placer = Placer(Confinement.of([str(site_packages)]), recorder)
    return Scheduler(options, Threads(options), placer)
