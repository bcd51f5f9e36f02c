"""A small reader of Linux inotify events, to see how files change: replaced or recreated."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
from types import TracebackType

IN_ATTRIB = 0x4
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_NONBLOCK = 0o4000

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_HEADER = struct.Struct("iIII")


class DirectoryWatch:
    """Records (event, name) for entries of one directory while it is open; an ``attrib``
    event with the name ``""`` is a change to the directory's own metadata (its mtime set)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.fd = _libc.inotify_init1(IN_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        mask = IN_ATTRIB | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO
        if _libc.inotify_add_watch(self.fd, os.fsencode(directory), mask) < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch")

    def events(self) -> list[tuple[str, str]]:
        names = {
            IN_ATTRIB: "attrib",
            IN_CREATE: "create",
            IN_DELETE: "delete",
            IN_MOVED_FROM: "moved_from",
            IN_MOVED_TO: "moved_to",
        }
        found: list[tuple[str, str]] = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return found
            offset = 0
            while offset < len(data):
                _, mask, _, length = _HEADER.unpack_from(data, offset)
                raw = data[offset + _HEADER.size : offset + _HEADER.size + length]
                name = raw.rstrip(b"\0").decode()
                for bit, label in names.items():
                    if mask & bit:
                        found.append((label, name))
                offset += _HEADER.size + length

    def wait_for(self, label: str, timeout: float = 60.0) -> list[tuple[str, str]]:
        """Block until an event ``label`` (``create``, ...) has happened; return the events
        read so far. Raises ``TimeoutError`` after ``timeout`` seconds (a hang, not a race)."""
        seen: list[tuple[str, str]] = []
        while not any(event == label for event, _ in seen):
            ready, _, _ = select.select([self.fd], [], [], timeout)
            if not ready:
                raise TimeoutError(f"no {label!r} event within {timeout}s; saw {seen}")
            seen += self.events()
        return seen

    def __enter__(self) -> DirectoryWatch:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        os.close(self.fd)
