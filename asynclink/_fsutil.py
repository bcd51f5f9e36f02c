"""Small helpers shared by the cache, the scheme memo, RECORD writing, upgrades, rollback and
what reads the small files an environment holds."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat

__all__ = [
    "absolute",
    "add_parent_dirs",
    "canonical_name",
    "read_small",
    "remove_tree",
    "write_memo",
]

_DIRECTORY_FLAGS = (
    os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
)

_SMALL_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)

#: More than any memo or ``asynclink.json`` holds: what :func:`read_small` reads at most.
_SMALL_LIMIT = 1 << 16

_SEPARATORS = re.compile(r"[-_.]+")


def absolute(path: str | os.PathLike[str]) -> str:
    """``os.path.abspath`` as a ``str``: lexical, no symlinks resolved, one ``getcwd`` at most."""
    return os.path.abspath(os.fspath(path))


def add_parent_dirs(found: dict[str, None], relative: str, sep: str = "/") -> None:
    """Add the directories above the ``/``-separated ``relative`` path to ``found``, parents
    first, joined with ``sep``."""
    parts = relative.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        found.setdefault(sep.join(parts[:depth]))


def canonical_name(name: str) -> str:
    """A project name normalised as PEP 503 says (``Foo.Bar_baz`` -> ``foo-bar-baz``).

    ``packaging.utils.canonicalize_name`` gives the same answer (a test holds the two
    together), but importing ``packaging.utils`` pulls in ``packaging.tags`` and costs about
    20 ms; a warm install that checks what it replaces runs this and nothing else of it.
    """
    return _SEPARATORS.sub("-", name).lower()


def read_small(path: str, limit: int = _SMALL_LIMIT) -> bytes:
    """The first ``limit`` bytes of the file at ``path``: one ``open``, ``read`` and ``close``
    (a buffered ``open`` makes nine system calls), and never waiting on a FIFO or a device put
    where a file was expected (``O_NONBLOCK``: reading one fails or reads nothing). A file
    longer than ``limit`` comes back cut short, which a caller's parse rejects; ``OSError``
    as ``os.open`` and ``os.read`` raise it."""
    fd = os.open(path, _SMALL_READ_FLAGS)
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


def write_memo(path: str, data: bytes) -> None:
    """Write a cache memo atomically (temporary name, then rename); failing costs the memo."""
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)


def remove_tree(path: str, limit: int | None = None) -> int:
    """Remove ``path`` and everything below it; return how many non-directories went.

    With a ``limit``, stop at the first directory after which that many have gone (``path``
    is then still there, with the rest).

    Never follows a symlink (one is removed as the link it is, wherever it points), needs no
    recursion (a tree thousands of directories deep is no problem) and works relative to
    directory descriptors (so no path it builds grows past ``PATH_MAX``). ``shutil.rmtree``
    recurses, and raised ``RecursionError`` on a wheel's 2,100-deep member path. Raises the
    first ``OSError``; what was removed until then stays removed.
    """
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        os.unlink(path)
        return 1
    removed = 0
    # A frame per open directory: its descriptor, its name in the directory below it, and the
    # subdirectories still to go into. A directory's other entries go when it is opened.
    stack: list[tuple[int, str, list[str]]] = []
    try:
        top = os.open(path, _DIRECTORY_FLAGS)
        stack.append((top, path, []))
        removed += _clear_entries(top, stack[-1][2])
        while stack:
            fd, name, subdirs = stack[-1]
            if not subdirs:
                stack.pop()
                os.close(fd)
                if stack:
                    os.rmdir(name, dir_fd=stack[-1][0])
                else:
                    os.rmdir(path)
                continue
            child_name = subdirs.pop()
            try:
                child = os.open(child_name, _DIRECTORY_FLAGS, dir_fd=fd)
            except (NotADirectoryError, OSError) as error:
                if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                os.unlink(child_name, dir_fd=fd)  # no longer a directory: a link or a file
                removed += 1
                continue
            stack.append((child, child_name, []))
            removed += _clear_entries(child, stack[-1][2])
            if limit is not None and removed >= limit:
                break
    finally:
        for fd, _, _ in stack:
            os.close(fd)
    return removed


def _clear_entries(fd: int, subdirs: list[str]) -> int:
    """Unlink what is in the directory ``fd`` but directories, whose names go to ``subdirs``."""
    removed = 0
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.name)
            else:
                os.unlink(entry.name, dir_fd=fd)
                removed += 1
    return removed
