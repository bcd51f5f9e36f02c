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
    """The :class:`anyio.Lock` that holds each directory now, if one does.

    Each holder (a chunk of one wheel's copies) takes one lock of its own and enters it for
    every directory it holds; another holder of one of them waits on that lock. A lock made
    and taken per directory cost 5.7 us a directory on the event loop (anyio 4.16, asyncio),
    and a copy phase takes every directory of the wheels' trees: 26 ms of the loop's time
    for the benchmark's corpus (4,585 directories), in stalls of milliseconds a chunk; a
    dictionary entry costs 0.3 us. The rules are a lock's: one holder per directory, taken
    in sorted order so that no two holders can wait for each other.
    """

    def __init__(self) -> None:
        self._holders: dict[str, anyio.Lock] = {}

    @contextlib.asynccontextmanager
    async def holding(self, directories: Iterable[str]) -> AsyncIterator[None]:
        """Hold ``directories`` (waiting for another holder of any of them to let go);
        whichever thread or process then copies holds them too."""
        mine = anyio.Lock(fast_acquire=True)
        await mine.acquire()
        held: list[str] = []
        try:
            for directory in sorted(directories):
                while (holder := self._holders.get(directory)) is not None:
                    async with holder:  # until that holder lets go
                        pass
                self._holders[directory] = mine
                held.append(directory)
            yield
        finally:
            for directory in held:
                del self._holders[directory]
            mine.release()
