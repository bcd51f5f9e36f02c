"""RECORD: every read, row, hash and write of it, for wheels and for installed distributions.

A wheel's ``<name>-<version>.dist-info/RECORD`` lists each of its files as a CSV row of path,
hash (``sha256=`` and urlsafe base64 without padding) and size; RECORD's own row and its
signatures (``RECORD.jws``, ``RECORD.p7s``) carry none. The unpacker checks every file against
it once (:func:`parse_record`, then the hash of what it extracted); the cache keeps the rows
(:class:`RecordEntry`, and :func:`format_row` strings, sorted by path so that :func:`find_row`
can bisect them); an install writes the installed RECORD from those rows and the rows of the
files it generates (:func:`row_for`); an upgrade reads an installed RECORD back
(:func:`read_installed`) to know what the old version owns.
"""

from __future__ import annotations

import base64
import bisect
import logging
import os
import stat
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from ._confinement import normalise_member
from ._errors import InvalidWheelError

if TYPE_CHECKING:
    import hashlib

__all__ = [
    "MAX_RECORD_BYTES",
    "STRONG_HASHES",
    "UNRECORDED",
    "RecordEntry",
    "find_row",
    "format_row",
    "hash_file",
    "parse_record",
    "read_installed",
    "record_hash",
    "recorded_paths",
    "row_for",
    "row_path",
]

logger = logging.getLogger("asynclink")

#: Hash algorithms RECORD may use: sha256 or stronger. md5, sha1 and sha224 are refused.
STRONG_HASHES = frozenset(
    {"sha256", "sha384", "sha512", "sha3_256", "sha3_384", "sha3_512", "blake2b", "blake2s"}
)

#: Files in a dist-info directory that RECORD does not list (it cannot list its own signature).
UNRECORDED = ("RECORD", "RECORD.jws", "RECORD.p7s")


class RecordEntry(NamedTuple):
    """One file as RECORD lists it (a tuple, so that a manifest stores it as a JSON list)."""

    path: str
    """Relative, with ``/``."""
    hash: str
    """``algorithm=digest``; empty for RECORD itself."""
    size: int


def parse_record(wheel: str, text: str) -> dict[str, RecordEntry]:
    """A wheel's RECORD, path -> entry; RECORD's own row and signatures are left out.

    Each row is three CSV fields; a listed file must carry a sha256-or-stronger hash and its
    size, and a safe path (:func:`~._confinement.normalise_member`). Repeated identical rows
    are tolerated; contradicting ones are not.
    """
    import csv

    rows: dict[str, RecordEntry] = {}
    try:
        parsed = list(csv.reader(text.splitlines()))
    except csv.Error as error:
        raise InvalidWheelError(
            wheel, f"RECORD is not valid CSV: {error}", entry="RECORD"
        ) from None
    for number, row in enumerate(parsed, start=1):
        if not row:
            continue
        if len(row) != 3:
            raise InvalidWheelError(
                wheel, f"RECORD row {number} has {len(row)} fields, not 3", entry="RECORD"
            )
        path = normalise_member(wheel, row[0].lstrip("/"))
        head, _, tail = path.partition("/")
        if head.endswith(".dist-info") and tail in UNRECORDED:
            continue
        entry = RecordEntry(path, _checked_hash(wheel, path, row[1]), _size(wheel, path, row[2]))
        if rows.setdefault(path, entry) != entry:
            raise InvalidWheelError(wheel, f"RECORD lists {path} twice, differently", entry=path)
    return rows


def _checked_hash(wheel: str, path: str, digest: str) -> str:
    algorithm, sep, value = digest.partition("=")
    if not sep or not value:
        raise InvalidWheelError(wheel, f"RECORD lists {path} without a hash", entry=path)
    if algorithm not in STRONG_HASHES:
        raise InvalidWheelError(
            wheel, f"RECORD hashes {path} with {algorithm!r}, not sha256 or stronger", entry=path
        )
    return digest


def _size(wheel: str, path: str, size: str) -> int:
    if not size.isascii() or not size.isdigit() or len(size) > 20:  # 2**64 has 20 digits
        raise InvalidWheelError(
            wheel, f"RECORD lists {path} without a valid size ({size!r})", entry=path
        )
    return int(size)


def record_hash(hasher: hashlib._Hash) -> str:
    """``algorithm=digest`` as RECORD writes it: urlsafe base64 without padding."""
    digest = base64.urlsafe_b64encode(hasher.digest()).rstrip(b"=").decode("ascii")
    return f"{hasher.name}={digest}"


def hash_file(path: str, relative: str) -> RecordEntry:
    """The RECORD entry of the file at ``path`` (listed as ``relative``), hashed now."""
    import hashlib  # here: importing it loads OpenSSL, and a no-op install hashes nothing

    hasher = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
            size += len(chunk)
    return RecordEntry(relative, record_hash(hasher), size)


def format_row(entry: RecordEntry) -> str:
    """One RECORD row as the csv module writes it (a path is quoted only when it must be)."""
    path = entry.path
    if "," in path or '"' in path:
        path = '"' + path.replace('"', '""') + '"'
    return f"{path},{entry.hash},{entry.size}"


def row_for(relative: str, content: bytes) -> str:
    """The row of a file the install writes itself (a launcher, INSTALLER, ...)."""
    import hashlib

    return format_row(RecordEntry(relative, record_hash(hashlib.sha256(content)), len(content)))


def row_path(row: str) -> str:
    """The path of a row made by :func:`format_row`."""
    if row.startswith('"'):
        end = row.rfind('",')
        return row[1:end].replace('""', '"')
    return row.rpartition(",")[0].rpartition(",")[0]


def find_row(rows: Sequence[str], relative: str) -> RecordEntry | None:
    """The entry of ``relative`` in ``rows`` (sorted by path), if it is there with a hash."""
    index = bisect.bisect_left(rows, relative, key=row_path)
    if index < len(rows) and row_path(rows[index]) == relative:
        _, digest, size = rows[index].rsplit(",", 2)
        return RecordEntry(relative, digest, int(size)) if digest else None
    return None


#: The largest installed RECORD read (a symlink put there could lead to a file of any size):
#: a row is a path and a hash, so this is millions of files.
MAX_RECORD_BYTES = 256 << 20


def recorded_paths(dist_info: str) -> set[str]:
    """The paths an installed RECORD lists, as it spells them (relative to the directory that
    holds ``dist_info``, with ``/``); an empty set if it cannot be read. Quick: a row is split
    at its first comma unless the RECORD quotes a path somewhere."""
    try:
        fd = os.open(os.path.join(dist_info, "RECORD"), os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, "rb") as handle:  # not waiting on a FIFO, nor reading a device
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_RECORD_BYTES:
                return set()
            text = handle.read(MAX_RECORD_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return set()
    if '"' not in text:
        return {line.partition(",")[0] for line in text.splitlines()}
    import csv
    import io

    try:
        return {row[0] for row in csv.reader(io.StringIO(text)) if row}
    except csv.Error:
        return set()


def read_installed(dist_info: str) -> list[str]:
    """The paths an installed RECORD lists, made absolute (normalised, not resolved) against
    the directory that holds ``dist_info``. An unreadable RECORD lists nothing (and says so):
    the caller still has the ``.dist-info`` itself."""
    import csv

    site = os.path.dirname(dist_info)
    record = os.path.join(dist_info, "RECORD")
    try:
        if os.stat(record).st_size > MAX_RECORD_BYTES:
            raise OSError(f"over {MAX_RECORD_BYTES >> 20} MiB, more than any RECORD holds")
        with open(record, newline="", encoding="utf-8") as handle:
            paths = [row[0] for row in csv.reader(handle) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        logger.warning(
            "cannot read the RECORD of %s (%s); removing its .dist-info only", dist_info, error
        )
        return []
    named = [path for path in paths if "\0" not in path]
    if len(named) < len(paths):
        logger.warning(
            "%s: RECORD lists %d paths with a NUL byte, which no file can have; skipping them",
            os.path.basename(dist_info),
            len(paths) - len(named),
        )
    return [os.path.normpath(os.path.join(site, path)) for path in named]
