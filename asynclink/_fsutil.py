"""Small file helpers shared by the cache, the scheme memo and RECORD writing."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os

__all__ = ["record_hash", "write_memo"]


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
