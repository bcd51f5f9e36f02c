"""Bytecode compilation after an install, in processes of the target interpreter.

Threads would not help (compiling holds the GIL), and the ``.pyc`` format belongs to the
target interpreter's version, which need not be ours: so each worker is the target interpreter
itself, fed paths on stdin, NUL-separated (a path may hold a newline; it cannot hold a NUL) and
as the filesystem's bytes. A file that does not compile is skipped, as pip and uv do.

The target is hostile too: a ``__pycache__`` already there may be a symlink leading out of the
environment, and the compiler would write through it. Files whose ``__pycache__`` does not
resolve inside the environment are not compiled (:func:`compilable`).
"""

from __future__ import annotations

import logging
import math
import os
import stat
from collections.abc import Iterable

import anyio

from ._confinement import Confinement

__all__ = ["compilable", "compile_bytecode"]

logger = logging.getLogger("asynclink")

_WORKER = """
import compileall, os, sys
done = 0
for name in sys.stdin.buffer.read().split(b"\\0"):
    try:
        done += bool(name and compileall.compile_file(os.fsdecode(name), quiet=2))
    except Exception:
        pass
print(done)
"""

#: Fewer files than this per extra process are not worth the interpreter start-up.
_FILES_PER_PROCESS = 200


async def compile_bytecode(interpreter: str, paths: list[str], jobs: int | None = None) -> int:
    """Compile ``paths`` to ``__pycache__/*.pyc``; return how many compiled."""
    if not paths:
        return 0
    cores = os.cpu_count() or 1
    workers = max(1, min(jobs or cores, cores, math.ceil(len(paths) / _FILES_PER_PROCESS)))
    compiled = 0

    async def run(chunk: list[str]) -> None:
        nonlocal compiled
        done = await anyio.run_process(
            [interpreter, "-I", "-c", _WORKER],
            input=b"\0".join(os.fsencode(path) for path in chunk),
            check=False,
        )
        compiled += int(done.stdout.strip() or 0)

    async with anyio.create_task_group() as task_group:
        for index in range(workers):
            task_group.start_soon(run, paths[index::workers])
    return compiled


def compilable(paths: Iterable[str], confinement: Confinement) -> list[str]:
    """The ``paths`` whose ``__pycache__`` is missing, or a directory that resolves inside the
    environment; blocking. The others are left out with a warning: a ``.pyc`` written there
    would land wherever the target's own symlink leads."""
    verdicts: dict[str, bool] = {}
    chosen: list[str] = []
    for path in paths:
        directory = os.path.dirname(path)
        fine = verdicts.get(directory)
        if fine is None:
            fine = verdicts[directory] = _safe_cache(
                directory + os.sep + "__pycache__", confinement
            )
        if fine:
            chosen.append(path)
    refused = sorted(directory for directory, fine in verdicts.items() if not fine)
    if refused:
        logger.warning(
            "not compiling the modules of %d directories whose __pycache__ leads out of the "
            "environment or is not a directory (%s)",
            len(refused),
            refused[0] + os.sep + "__pycache__",
        )
    return chosen


def _safe_cache(cache: str, confinement: Confinement) -> bool:
    try:
        mode = os.lstat(cache).st_mode
    except FileNotFoundError:
        return confinement.resolves_inside(os.path.dirname(cache))
    except OSError:
        return False
    if stat.S_ISLNK(mode):
        return confinement.resolves_inside(cache) and os.path.isdir(cache)
    return stat.S_ISDIR(mode) and confinement.resolves_inside(cache)
