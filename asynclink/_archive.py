"""Read a ``.whl`` archive: check every rule, then extract it (or just describe it).

The zip-level rules (names, sizes, symlinks, duplicates, zip bombs) and the wheel-level ones
(dist-info, WHEEL, METADATA, RECORD coverage) all run before the first byte is written; the
contents are checked against RECORD (hash and size) while they are extracted. Only the cold
path of an install (an archive not yet in the cache) and the dry run import this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mmap
import os
import stat
import struct
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import NamedTuple

from ._confinement import normalise_member
from ._errors import InvalidWheelError, LinkError, PycacheSkippedWarning
from ._manifest import Manifest, data_dir_of
from ._record import UNRECORDED, RecordEntry, record_hash
from ._scheme import SCHEME_KEYS
from ._scripts import EntryPoint
from ._wheelinfo import WheelName, check_dist_info_name, check_metadata_name, read_dist_info

__all__ = ["PycacheSkippedWarning", "extract_archive", "peek_archive"]

logger = logging.getLogger("asynclink")


def _inflater() -> ModuleType:
    """python-isal's ``isal_zlib`` where it is installed (it inflates the benchmark's corpus
    in half the CPU time of the standard library's), else ``zlib``; ``ASYNCLINK_INFLATER=zlib``
    chooses the standard library's anyway (the tests run both)."""
    if os.environ.get("ASYNCLINK_INFLATER", "").lower() != "zlib":
        try:
            from isal import isal_zlib
        except ImportError:  # not installed, or no wheel for this platform
            pass
        else:
            return isal_zlib
    return zlib


#: What inflates deflated members: ``isal.isal_zlib`` or ``zlib``, with the same interface.
INFLATER = _inflater()

#: How many skipped ``__pycache__`` files a warning names before it counts the rest.
_NAMED = 20
#: Above this size, a wheel must not unpack to more than ``_MAX_RATIO`` times its archive.
_RATIO_FLOOR = 256 << 20
_MAX_RATIO = 200


class _Inspection(NamedTuple):
    """An archive's checked structure and metadata, before any content is read."""

    filename: str
    tags: tuple[str, ...]
    members: list[tuple[str, zipfile.ZipInfo]]
    dist_info: str
    root_is_purelib: bool
    name: str
    version: str
    record: dict[str, RecordEntry]
    entry_points: tuple[EntryPoint, ...]

    @property
    def data_dir(self) -> str:
        return data_dir_of(self.dist_info)

    def manifest(self, files: Iterable[RecordEntry], sealed: int = 0) -> Manifest:
        return Manifest.build(
            filename=self.filename,
            name=self.name,
            version=self.version,
            dist_info=self.dist_info,
            root_is_purelib=self.root_is_purelib,
            tags=self.tags,
            entry_points=self.entry_points,
            files=files,
            sealed=sealed,
        )


def _open_archive(archive: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except _OPEN_ERRORS as error:
        raise InvalidWheelError(
            os.path.basename(archive), f"not a readable zip archive: {error}"
        ) from None


def _inspect(archive: str, zip_file: zipfile.ZipFile, max_size: int) -> _Inspection:
    """Every rule that needs no file contents: names, sizes, metadata, RECORD coverage."""
    filename = os.path.basename(archive)
    wheel_name = WheelName.parse(filename)
    members = _check_members(filename, zip_file, os.path.getsize(archive), max_size)
    by_path = dict(members)
    dist_info = check_dist_info_name(wheel_name, {path.partition("/")[0] for path, _ in members})

    def text(relative: str) -> str | None:
        info = by_path.get(f"{dist_info}/{relative}")
        if info is None:
            return None
        try:
            return _read_member(filename, zip_file, info).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidWheelError(
                filename, "not UTF-8 text", entry=f"{dist_info}/{relative}"
            ) from None

    info = read_dist_info(filename, dist_info, text)
    check_metadata_name(wheel_name, info.name, info.version, f"{dist_info}/METADATA")
    found = _Inspection(
        filename=filename,
        tags=wheel_name.tags,
        members=members,
        dist_info=dist_info,
        root_is_purelib=info.root_is_purelib,
        name=info.name,
        version=info.version,
        record=info.record,
        entry_points=info.entry_points,
    )
    _check_coverage(filename, dist_info, found.data_dir, [path for path, _ in members], info.record)
    return found


def extract_archive(
    archive: str, tree: str, max_size: int, checkpoint: Callable[[], None]
) -> Manifest:
    """Check and extract one archive into ``tree`` (which must not exist); return its manifest."""
    with _open_archive(archive) as zip_file, open(archive, "rb") as handle:
        found = _inspect(archive, zip_file, max_size)
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        mapped = memoryview(mapping)
        try:
            return _extract_all(found, archive, zip_file, mapped, tree, checkpoint)
        finally:
            mapped.release()
            mapping.close()


def _extract_all(
    found: _Inspection,
    archive: str,
    zip_file: zipfile.ZipFile,
    mapped: memoryview,
    tree: str,
    checkpoint: Callable[[], None],
) -> Manifest:
    """Extract every member of a checked archive into ``tree``; each is hashed on the way."""
    filename, record = found.filename, found.record
    scripts = f"{found.data_dir}/scripts/"
    os.mkdir(tree)
    dirs: dict[str, None] = {}
    files: list[RecordEntry] = []
    sealed = seal_time()
    for index, (path, info) in enumerate(found.members):
        if not index & 31:
            checkpoint()
        parent = path.rpartition("/")[0]
        executable = bool((info.external_attr >> 16) & 0o111) or path.startswith(scripts)
        expected = record.get(path)
        digest = expected.hash if expected is not None else "sha256="
        destination = os.path.join(tree, path)
        try:
            if parent and parent not in dirs:
                _make_parents(tree, parent, dirs)
            written, size = _extract_member(
                filename, zip_file, mapped, info, destination, executable, digest, sealed
            )
        except OSError as error:
            raise LinkError(filename, f"{archive}!{path}", destination, error, "unpack") from error
        if expected is not None and (written, size) != (expected.hash, expected.size):
            what = "size" if size != expected.size else "hash"
            raise InvalidWheelError(
                filename, f"the {what} of {path} does not match RECORD", entry=path
            )
        files.append(RecordEntry(path, written, size))
    return found.manifest(files, sealed)


def seal_time() -> int:
    """A modification time for every file of one extraction, in ns: whole and even seconds,
    which every filesystem stores as they are (FAT keeps two-second steps)."""
    return int(time.time()) // 2 * 2 * 1_000_000_000


def peek_archive(archive: str, max_size: int) -> tuple[Manifest, dict[str, bytes]]:
    """The manifest extracting ``archive`` would give, read without writing anything, and the
    bytes of its ``.data/scripts`` files (the only contents planning an install looks at).

    For dry runs: every check runs but those of the contents (hashes and sizes are RECORD's).
    """
    with _open_archive(archive) as zip_file:
        found = _inspect(archive, zip_file, max_size)
        scripts_dir = f"{found.data_dir}/scripts/"
        scripts = {
            path: _read_member(archive, zip_file, info)
            for path, info in found.members
            if path.startswith(scripts_dir)
        }
    manifest = found.manifest(
        found.record.get(path) or RecordEntry(path, "", info.file_size)
        for path, info in found.members
    )
    return manifest, scripts


def _check_members(
    wheel: str, zip_file: zipfile.ZipFile, archive_size: int, max_size: int
) -> list[tuple[str, zipfile.ZipInfo]]:
    """Every file member as (safe relative path, info); the archive-level rules."""
    members: list[tuple[str, zipfile.ZipInfo]] = []
    seen: dict[str, str] = {}
    total = 0
    skipped: list[str] = []
    for info in zip_file.infolist():
        raw = _member_name(wheel, info)
        path = normalise_member(wheel, raw)
        if raw.endswith("/"):
            continue  # directory entries: directories come from the files in them
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise InvalidWheelError(wheel, "symlinks are not allowed in a wheel", entry=raw)
        if kind == stat.S_IFDIR:
            continue
        folded = path.casefold()
        if folded in seen:
            what = "duplicate entry" if seen[folded] == path else "entries differ only in case"
            raise InvalidWheelError(wheel, f"{what}: {seen[folded]} and {path}", entry=path)
        seen[folded] = path
        if "__pycache__" in path.split("/"):
            skipped.append(path)
            continue
        total += info.file_size
        members.append((path, info))
    _refuse_file_as_directory(wheel, seen)
    _refuse_overlaps(wheel, zip_file.infolist())
    if total > max_size:
        raise InvalidWheelError(
            wheel, f"unpacks to {total:,} bytes, over the limit of {max_size:,} (zip bomb?)"
        )
    if total > _RATIO_FLOOR and total > _MAX_RATIO * max(archive_size, 1):
        raise InvalidWheelError(
            wheel,
            f"declares {total:,} bytes unpacked from a {archive_size:,}-byte archive (zip bomb?)",
        )
    if skipped:
        shown = ", ".join(skipped[:_NAMED])
        if len(skipped) > _NAMED:
            shown += f" and {len(skipped) - _NAMED} more"
        message = (
            f"{wheel}: skipped {len(skipped)} file(s) under __pycache__/ shipped in the wheel: "
            + shown
        )
        logger.warning(message)
        warnings.warn(message, PycacheSkippedWarning, stacklevel=2)
    return members


def _refuse_file_as_directory(wheel: str, paths: dict[str, str]) -> None:
    """No member may be a file where another needs a directory (``a/b`` and ``a/b/c``); the
    keys of ``paths`` are the case-folded paths of every member."""
    directories: set[str] = set()
    for folded, path in paths.items():
        parent = folded.rpartition("/")[0]
        while parent and parent not in directories:  # each directory looked at once
            if parent in paths:
                raise InvalidWheelError(
                    wheel,
                    f"{paths[parent]} is a file, and {path} needs it to be a directory",
                    entry=path,
                )
            directories.add(parent)
            parent = parent.rpartition("/")[0]


def _member_name(wheel: str, info: zipfile.ZipInfo) -> str:
    """The member's name as UTF-8: names without the UTF-8 flag were decoded as cp437 by
    ``zipfile``; most tools still wrote UTF-8 bytes, so decode those bytes again."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        raw = info.filename.encode("cp437")
    except UnicodeEncodeError:
        return info.filename
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidWheelError(
            wheel, "entry name is not UTF-8", entry=raw.decode("utf-8", "replace")
        ) from None


def _check_coverage(
    wheel: str, dist_info: str, data_dir: str, paths: list[str], record: dict[str, RecordEntry]
) -> None:
    """RECORD and the archive list the same files; ``.data`` holds only known keys."""
    present = set(paths)
    for path in record:
        if path not in present and "__pycache__" not in path.split("/"):
            raise InvalidWheelError(wheel, f"RECORD lists {path}, which is not in the wheel")
    for path in paths:
        head, _, rest = path.partition("/")
        if path not in record and not (head == dist_info and rest in UNRECORDED):
            raise InvalidWheelError(wheel, f"{path} is not listed in RECORD", entry=path)
        if head == data_dir:
            key, sep, inner = rest.partition("/")
            if not sep:
                raise InvalidWheelError(
                    wheel, f"a file directly in {data_dir}/ belongs to no scheme", entry=path
                )
            if key not in SCHEME_KEYS:
                raise InvalidWheelError(
                    wheel,
                    f"unknown scheme {key!r} in {data_dir}/ (not one of "
                    f"{', '.join(sorted(SCHEME_KEYS))})",
                    entry=path,
                )
            if key == "scripts" and "/" in inner:
                raise InvalidWheelError(
                    wheel, "a directory in .data/scripts/ (scripts must be files)", entry=path
                )


def _make_parents(tree: str, parent: str, dirs: dict[str, None]) -> None:
    parts = parent.split("/")
    for depth in range(1, len(parts) + 1):
        relative = "/".join(parts[:depth])
        if relative not in dirs:
            with contextlib.suppress(FileExistsError):
                os.mkdir(os.path.join(tree, relative))
            dirs[relative] = None


def _read_member(wheel: str, zip_file: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        return zip_file.read(info)
    except _READ_ERRORS as error:
        raise InvalidWheelError(wheel, f"corrupt entry: {error}", entry=info.filename) from None


def _extract_member(
    wheel: str,
    zip_file: zipfile.ZipFile,
    mapped: memoryview,
    info: zipfile.ZipInfo,
    destination: str,
    executable: bool,
    expected_hash: str,
    sealed: int,
) -> tuple[str, int]:
    """Write one member; return its hash (in RECORD's algorithm) and its size.

    Deflated and stored members are read straight from the mapped archive and inflated in
    bounded chunks by one ``zlib`` call each (``zipfile``'s per-read machinery cost a third of
    the time of a cold install). The RECORD hash stands in for the CRC, except for the files
    RECORD cannot hash (RECORD itself and its signatures), whose CRC is checked. The file is
    given the ``sealed`` modification time, by which the cache tells it was not written since.
    """
    algorithm = expected_hash.partition("=")[0] or "sha256"
    hasher = hashlib.new(algorithm)
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755 if executable else 0o644)
    crc = 0

    def sink(chunk: bytes) -> None:
        nonlocal crc
        hasher.update(chunk)
        if check_crc:
            crc = zlib.crc32(chunk, crc)
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]

    check_crc = expected_hash == "sha256="
    try:
        if info.flag_bits & 0x1:
            raise NotImplementedError("encrypted entries are not supported")
        if info.compress_type in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            # A view of the archive's mapping: released here, whatever happens, or closing the
            # mapping would fail (``BufferError: cannot close exported pointers exist``).
            with _raw_member(mapped, info) as raw:
                size = _inflate(raw, info, sink)
        else:  # bzip2, lzma: rare in wheels; zipfile knows them
            size = _through_zipfile(zip_file, info, sink)
        if check_crc and crc != info.CRC:
            raise zipfile.BadZipFile("CRC does not match")
        os.utime(fd, ns=(sealed, sealed))
    except _CORRUPT as error:
        raise InvalidWheelError(wheel, f"corrupt entry: {error}", entry=info.filename) from None
    finally:
        os.close(fd)
    return record_hash(hasher), size


#: What inflating damaged data raises: ``zlib.error``, or python-isal's own error.
_INFLATE_ERRORS: tuple[type[Exception], ...] = tuple({zlib.error, INFLATER.error})
#: What reading a damaged archive raises, from ``zipfile`` (its seeks and reads too: a header
#: offset past either end is an ``OSError``), the inflater and ``struct``.
_READ_ERRORS: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    EOFError,
    *_INFLATE_ERRORS,
    NotImplementedError,
    RuntimeError,
    OSError,
    ValueError,
    struct.error,
)

#: What opening one raises: the same, or an archive too large for zip without ZIP64.
_OPEN_ERRORS: tuple[type[Exception], ...] = (*_READ_ERRORS, zipfile.LargeZipFile)
#: What a member whose data is damaged raises while it is extracted.
_CORRUPT: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    EOFError,
    *_INFLATE_ERRORS,
    NotImplementedError,
    RuntimeError,
)

_CHUNK = 4 << 20
_INPUT_SLICE = 1 << 20
_LOCAL_HEADER = struct.Struct("<4s22xHH")


def _through_zipfile(
    zip_file: zipfile.ZipFile, info: zipfile.ZipInfo, sink: Callable[[bytes], None]
) -> int:
    """A member in a compression only ``zipfile`` knows (bzip2, lzma: rare in wheels); a
    failure to read the archive is corruption, not the cache's disk failing."""
    size = 0
    try:
        source = zip_file.open(info)
    except _READ_ERRORS as error:
        raise zipfile.BadZipFile(str(error)) from None
    with source:
        while True:
            try:
                chunk = source.read(_CHUNK)
            except _READ_ERRORS as error:
                raise zipfile.BadZipFile(str(error)) from None
            if not chunk:
                return size
            size += len(chunk)
            sink(chunk)


def _raw_member(mapped: memoryview, info: zipfile.ZipInfo) -> memoryview:
    """The member's compressed bytes, located through its local header (without a copy)."""
    offset = info.header_offset
    if offset < 0:
        raise zipfile.BadZipFile("bad local header offset")
    try:
        signature, name_length, extra_length = _LOCAL_HEADER.unpack_from(mapped, offset)
    except struct.error:
        raise EOFError("the archive ends inside this entry's header") from None
    if signature != b"PK\x03\x04":
        raise zipfile.BadZipFile("bad local header")
    named = offset + _LOCAL_HEADER.size
    if bytes(mapped[named : named + name_length]) != _central_name(info):
        raise zipfile.BadZipFile("the entry's local header names another file")
    start = named + name_length + extra_length
    if start + info.compress_size > len(mapped):
        raise EOFError("the archive ends inside this entry")
    return mapped[start : start + info.compress_size]


def _central_name(info: zipfile.ZipInfo) -> bytes:
    """The member's name as the central directory spells it, in bytes."""
    return info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")


def _refuse_overlaps(wheel: str, infos: list[zipfile.ZipInfo]) -> None:
    """Two entries whose bytes overlap (central directory entries that share one local entry:
    a small archive that unpacks to many copies of one big member) are refused, as pip's
    ``zipfile`` refuses them. Each entry spans at least its local header, its name and its
    compressed bytes."""
    end, previous = -1, ""
    for info in sorted(infos, key=lambda info: info.header_offset):
        if info.header_offset < end:
            raise InvalidWheelError(
                wheel,
                f"entries overlap in the archive: {previous} and {info.filename}",
                entry=info.filename,
            )
        end = (
            info.header_offset + _LOCAL_HEADER.size + len(_central_name(info)) + info.compress_size
        )
        previous = info.filename


def _inflate(raw: memoryview, info: zipfile.ZipInfo, sink: Callable[[bytes], None]) -> int:
    """Feed the member's contents to ``sink``, a bounded chunk at a time; a member whose
    contents are longer or shorter than the central directory says is corrupt (sizes that lie,
    one shape of zip bomb).

    Deflated input goes to ``zlib`` a slice at a time: what one call leaves unconsumed comes
    back as a copy (``unconsumed_tail``), and copying the rest of a 100 MB member after every
    4 MiB of output would cost more than inflating it.
    """
    declared = info.file_size
    if info.compress_type == zipfile.ZIP_STORED:
        for start in range(0, len(raw), _CHUNK):
            sink(bytes(raw[start : start + _CHUNK]))
        size = len(raw)
    else:
        inflater = INFLATER.decompressobj(-15)
        size = 0
        for start in range(0, len(raw), _INPUT_SLICE):
            with raw[start : start + _INPUT_SLICE] as piece:
                pending: bytes | memoryview = piece
                while not inflater.eof:
                    chunk = inflater.decompress(pending, _CHUNK)
                    if chunk:
                        size += len(chunk)
                        if size > declared:
                            raise zipfile.BadZipFile("more data than the archive declares")
                        sink(chunk)
                    pending = inflater.unconsumed_tail
                    if not pending and len(chunk) < _CHUNK:
                        break  # this slice is used up, and zlib holds no output back
                del pending
            if inflater.eof:
                break
        if not inflater.eof:
            raise EOFError("compressed data ends early")
    if size != declared:
        raise zipfile.BadZipFile("less data than the archive declares")
    return size
