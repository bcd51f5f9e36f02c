"""Directory locks: copies into one directory are made by one wheel at a time.

uv keeps a map of mutexes, one per destination directory, around each copy (``CopyLocks``);
this is that map for the event loop. Copies (unlike links) write a file's bytes over time.
Each copy goes to a new inode (``O_EXCL``, or a temporary name renamed over an existing file),
so bytes of two wheels never mix in one file, the race of uv issue 4831. The directory lock
adds what atomic files cannot: all the files one wheel copies into a directory land together,
so when two wheels ship the same directory (a namespace package, a vendored module) its files
come from one wheel or the other as a set, never interleaved file by file.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable

import anyio

__all__ = ["DirectoryLocks"]


class DirectoryLocks:
    """One :class:`anyio.Lock` per directory, made when first asked for."""

    def __init__(self) -> None:
        self._locks: dict[str, anyio.Lock] = {}

    @contextlib.asynccontextmanager
    async def holding(self, directories: Iterable[str]) -> AsyncIterator[None]:
        """Hold the locks of ``directories``, taken in sorted order so that no two holders can
        wait for each other; whichever thread or process then copies holds them too."""
        held: list[anyio.Lock] = []
        try:
            for directory in sorted(directories):
                lock = self._locks.get(directory)
                if lock is None:
                    lock = self._locks[directory] = anyio.Lock(fast_acquire=True)
                await lock.acquire()
                held.append(lock)
            yield
        finally:
            for lock in reversed(held):
                lock.release()
