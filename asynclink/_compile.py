"""Bytecode compilation after an install, in processes of the target interpreter.

Threads would not help (compiling holds the GIL), and the ``.pyc`` format belongs to the
target interpreter's version, which need not be ours: so each worker is the target interpreter
itself, fed paths on stdin, NUL-separated (a path may hold a newline; it cannot hold a NUL) and
as the filesystem's bytes. A file that does not compile is skipped, as pip and uv do.
"""

from __future__ import annotations

import math
import os

import anyio

__all__ = ["compile_bytecode"]

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
