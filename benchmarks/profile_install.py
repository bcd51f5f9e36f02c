"""Where an install's time goes, inside one interpreter: the profile behind the README's bounds.

    python benchmarks/profile_install.py                     # warm hardlink installs
    python benchmarks/profile_install.py --mode copy --cold  # or copies, from an empty cache

Installs the benchmark's corpus (``run.py`` downloads it) into fresh venvs on a tmpfs, several
times in one process (the first, which imports anyio's backend, is not counted), and prints
the median wall time, the CPU of this process and of its helpers, and the time spent in each
kind of work: the thread hops by function (a thread's share of the GIL included), and the round
trips to helper processes. Start-up (Python, asyncio, anyio, asynclink) is not in it: the
benchmark's ``bounds`` rows measure that.
"""

from __future__ import annotations

import argparse
import collections
import functools
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

import asynclink
from asynclink import _helpers, _scheduler

sys.path.insert(0, str(Path(__file__).parent))
from run import CORPUS, download, make_venv

busy: collections.defaultdict[str, float] = collections.defaultdict(float)


def timed_hops() -> None:
    """Count the time spent in each thread hop (by function) and each helper round trip."""
    in_thread = _scheduler.Threads.run
    in_cpu_thread = _scheduler.Threads.run_cpu

    def wrap(hop: Callable[..., Awaitable[Any]], kind: str) -> Callable[..., Awaitable[Any]]:
        async def timed(self: Any, func: Callable[..., Any], *args: Any) -> Any:
            def run(*inner: Any) -> Any:
                started = time.perf_counter()
                try:
                    return func(*inner)
                finally:
                    name = getattr(func, "__name__", repr(func))
                    busy[f"{kind}: {name}"] += time.perf_counter() - started

            return await hop(self, run, *args)

        return timed

    def round_trip(call: Callable[..., Awaitable[Any]], name: str) -> Callable[..., Awaitable[Any]]:
        async def timed(self: Any, *args: Any) -> Any:
            started = time.perf_counter()
            try:
                return await call(self, *args)
            finally:
                busy[name] += time.perf_counter() - started

        return timed

    # setattr: these are the real classes, instrumented for this process only
    setattr(_scheduler.Threads, "run", wrap(in_thread, "filesystem thread"))  # noqa: B010
    setattr(_scheduler.Threads, "run_cpu", wrap(in_cpu_thread, "CPU thread"))  # noqa: B010
    place, unpack = _helpers.Helper.place, _helpers.Unpacker.unpack
    setattr(_helpers.Helper, "place", round_trip(place, "file helper round trips"))  # noqa: B010
    setattr(_helpers.Unpacker, "unpack", round_trip(unpack, "unpacker round trips"))  # noqa: B010


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="hardlink")
    parser.add_argument("--cold", action="store_true", help="an empty cache for every install")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--wheels", type=Path, help="these .whl files instead of the corpus")
    options = parser.parse_args()
    wheels = sorted((options.wheels or download(CORPUS)).glob("*.whl"))
    root = Path(tempfile.mkdtemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    timed_hops()
    walls: list[float] = []
    cpu_self: list[float] = []
    cpu_children: list[float] = []
    try:
        for number in range(options.rounds + 1):
            if number == 1:
                busy.clear()
            make_venv(root / f"round{number}")
            venv = root / f"round{number}" / "venv"
            cache = root / (f"cache{number}" if options.cold else "cache")
            before = (
                resource.getrusage(resource.RUSAGE_SELF),
                resource.getrusage(resource.RUSAGE_CHILDREN),
            )
            started = time.perf_counter()
            install = functools.partial(
                asynclink.install_wheels, mode=options.mode, cache_dir=cache
            )
            anyio.run(install, venv, wheels)
            wall = time.perf_counter() - started
            after = (
                resource.getrusage(resource.RUSAGE_SELF),
                resource.getrusage(resource.RUSAGE_CHILDREN),
            )
            shutil.rmtree(root / f"round{number}")  # tmpfs memory: keep it for the next round
            if options.cold:
                shutil.rmtree(cache)
            if number:  # the first run imports anyio's backend and fills the cache
                walls.append(wall)
                own, children = (
                    (a.ru_utime + a.ru_stime) - (b.ru_utime + b.ru_stime)
                    for a, b in zip(after, before, strict=True)
                )
                cpu_self.append(own)
                cpu_children.append(children)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rounds = options.rounds
    print(
        f"{len(wheels)} wheels, {options.mode}, {'cold' if options.cold else 'warm'} cache, "
        f"medians of {rounds} installs in one process (start-up not included)"
    )
    print(f"  wall                       {statistics.median(walls) * 1000:7.1f} ms")
    print(f"  CPU of this process        {statistics.median(cpu_self) * 1000:7.1f} ms")
    print(f"  CPU of helper processes    {statistics.median(cpu_children) * 1000:7.1f} ms")
    print("  time inside (means per install):")
    for name, total in sorted(busy.items(), key=lambda item: -item[1]):
        print(f"    {total / rounds * 1000:7.1f} ms  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
