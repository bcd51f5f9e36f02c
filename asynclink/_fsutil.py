"""Small helpers shared by the cache, the scheme memo, RECORD writing and upgrades."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re

__all__ = ["absolute", "add_parent_dirs", "canonical_name", "record_hash", "write_memo"]

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


def record_hash(hasher: hashlib._Hash) -> str:
    """``algorithm=digest`` as RECORD writes it: urlsafe base64 without padding."""
    digest = base64.urlsafe_b64encode(hasher.digest()).rstrip(b"=").decode("ascii")
    return f"{hasher.name}={digest}"


def write_memo(path: str, data: bytes) -> None:
    """Write a cache memo atomically (temporary name, then rename); failing costs the memo."""
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
