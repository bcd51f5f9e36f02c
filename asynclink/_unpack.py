"""``.whl`` archives into a cache of unpacked wheels, checked on the way in.

Layout of a cache directory::

    wheels-v1/<sha256 of the archive>/tree/           the unpacked wheel
    wheels-v1/<sha256 of the archive>/manifest.json   what install needs, read instead of a walk
    archives-v1/<key of path, size, mtime, inode>     that archive's sha256, so a warm lookup
                                                      costs a stat and a read, not a hash
    tmp/                                              extractions in progress

An entry is extracted into ``tmp/`` and renamed into ``wheels-v1/`` whole, manifest included:
a crash or a cancellation never leaves a half wheel that a later run would trust. Every check
(paths, RECORD hashes and sizes, metadata) runs before or during extraction, once; an install
from the cache trusts the manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ._errors import InvalidWheelError, LinkError
from ._fsutil import record_hash, write_memo
from ._wheelinfo import (
    UNRECORDED,
    EntryPoint,
    WheelName,
    check_dist_info_name,
    normalise_member,
    parse_entry_points,
    parse_metadata,
    parse_record,
    parse_wheel_file,
)

__all__ = [
    "DEFAULT_MAX_UNPACKED_SIZE",
    "Manifest",
    "UnpackedWheel",
    "WheelCache",
    "default_cache_dir",
    "manifest_for_tree",
]

logger = logging.getLogger("asynclink")

MANIFEST_FORMAT = 1
#: A wheel that would unpack to more than this is refused (the caller can raise it).
DEFAULT_MAX_UNPACKED_SIZE = 16 << 30
#: Above this size, a wheel must not unpack to more than ``_MAX_RATIO`` times its archive.
_RATIO_FLOOR = 256 << 20
_MAX_RATIO = 200
_STALE_TEMPORARY = 24 * 3600
_DATA_KEYS = frozenset({"purelib", "platlib", "scripts", "headers", "data"})


class PycacheSkippedWarning(UserWarning):
    """A wheel shipped ``__pycache__`` files; they were left out."""


def default_cache_dir() -> str:
    """``$ASYNCLINK_CACHE_DIR``, else ``$XDG_CACHE_HOME/asynclink``, else ``~/.cache/asynclink``."""
    explicit = os.environ.get("ASYNCLINK_CACHE_DIR")
    if explicit:
        return os.path.abspath(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "asynclink")


@dataclass(frozen=True, slots=True)
class Manifest:
    """What an install needs to know about an unpacked wheel, checked once."""

    filename: str
    """The archive's file name (for an unpacked tree: its directory name)."""
    name: str
    """The distribution name as METADATA spells it."""
    version: str
    dist_info: str
    root_is_purelib: bool
    tags: tuple[str, ...]
    entry_points: tuple[EntryPoint, ...]
    dirs: tuple[str, ...]
    """Directories, relative with ``/``, parents first."""
    files: tuple[tuple[str, str, int], ...]
    """(relative path, ``algorithm=digest``, size) of every file but the dist-info RECORD."""

    @property
    def data_dir(self) -> str:
        return self.dist_info[: -len(".dist-info")] + ".data"

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": MANIFEST_FORMAT,
                "filename": self.filename,
                "name": self.name,
                "version": self.version,
                "dist_info": self.dist_info,
                "root_is_purelib": self.root_is_purelib,
                "tags": self.tags,
                "entry_points": [[e.name, e.module, e.attr, e.section] for e in self.entry_points],
                "dirs": self.dirs,
                "files": self.files,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = json.loads(text)
        if raw.get("format") != MANIFEST_FORMAT:
            raise ValueError("unknown manifest format")
        return cls(
            filename=raw["filename"],
            name=raw["name"],
            version=raw["version"],
            dist_info=raw["dist_info"],
            root_is_purelib=raw["root_is_purelib"],
            tags=tuple(raw["tags"]),
            entry_points=tuple(EntryPoint(*e) for e in raw["entry_points"]),
            dirs=tuple(raw["dirs"]),
            files=tuple((f[0], f[1], f[2]) for f in raw["files"]),
        )


@dataclass(frozen=True, slots=True)
class UnpackedWheel:
    """A wheel ready to install: its tree on disk and its manifest."""

    tree: str
    manifest: Manifest
    archive: str | None = None
    """The ``.whl`` it came from; ``None`` when the caller handed over an unpacked tree."""
    cached: bool = False
    """Found in the cache rather than extracted by this call."""

    @property
    def size(self) -> int:
        return sum(size for _, _, size in self.manifest.files)


class WheelCache:
    """A directory of unpacked wheels keyed by archive content; safe to share between processes."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self._wheels = os.path.join(self.root, "wheels-v1")
        self._archives = os.path.join(self.root, "archives-v1")
        self._tmp = os.path.join(self.root, "tmp")

    def unpack(
        self,
        archive: str,
        *,
        max_unpacked_size: int = DEFAULT_MAX_UNPACKED_SIZE,
        checkpoint: Callable[[], None] = lambda: None,
    ) -> UnpackedWheel:
        """The unpacked wheel of ``archive``, extracted now unless the cache has it; blocking."""
        archive = os.path.abspath(archive)
        memo = self._memo(archive)
        found = self._remembered(memo, archive)
        if found is not None:
            return found
        digest = _file_sha256(archive)
        found = self._load(digest, archive)
        if found is None:
            found = self._extract(archive, digest, max_unpacked_size, checkpoint)
        write_memo(memo, digest.encode())
        return found

    def lookup(self, archive: str) -> UnpackedWheel | None:
        """The unpacked wheel of ``archive`` if the cache has it; writes nothing."""
        archive = os.path.abspath(archive)
        found = self._remembered(self._memo(archive), archive)
        return found if found is not None else self._load(_file_sha256(archive), archive)

    def _memo(self, archive: str) -> str:
        """Where the archive's content hash is remembered, keyed by its path and identity."""
        try:
            info = os.stat(archive)
        except OSError as error:
            raise InvalidWheelError(
                os.path.basename(archive), f"cannot read {archive}: {error.strerror}"
            ) from None
        key = hashlib.sha256(
            f"{archive}\0{info.st_size}\0{info.st_mtime_ns}\0{info.st_ino}\0{info.st_dev}".encode()
        ).hexdigest()[:40]
        return os.path.join(self._archives, key)

    def _remembered(self, memo: str, archive: str) -> UnpackedWheel | None:
        try:
            with open(memo, encoding="ascii") as handle:
                return self._load(handle.read().strip(), archive)
        except (OSError, UnicodeDecodeError):
            return None

    def _load(self, digest: str, archive: str) -> UnpackedWheel | None:
        entry = os.path.join(self._wheels, digest)
        try:
            with open(os.path.join(entry, "manifest.json"), encoding="utf-8") as handle:
                manifest = Manifest.from_json(handle.read())
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return UnpackedWheel(os.path.join(entry, "tree"), manifest, archive, cached=True)

    def _extract(
        self, archive: str, digest: str, max_size: int, checkpoint: Callable[[], None]
    ) -> UnpackedWheel:
        os.makedirs(self._tmp, exist_ok=True)
        os.makedirs(self._wheels, exist_ok=True)
        self._remove_stale_temporaries()
        staging = tempfile.mkdtemp(prefix=f"{digest[:16]}-", dir=self._tmp)
        entry = os.path.join(self._wheels, digest)
        try:
            manifest = extract_archive(archive, os.path.join(staging, "tree"), max_size, checkpoint)
            with open(os.path.join(staging, "manifest.json"), "w", encoding="utf-8") as handle:
                handle.write(manifest.to_json())
            try:
                os.rename(staging, entry)
            except OSError:
                # Another process unpacked the same archive first; theirs is as good as ours.
                existing = self._load(digest, archive)
                if existing is None:
                    raise
                shutil.rmtree(staging, ignore_errors=True)
                return existing
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return UnpackedWheel(os.path.join(entry, "tree"), manifest, archive, cached=False)

    def _remove_stale_temporaries(self) -> None:
        """Extractions that a crash left behind; live ones are younger than a day."""
        cutoff = time.time() - _STALE_TEMPORARY
        with contextlib.suppress(OSError), os.scandir(self._tmp) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        shutil.rmtree(entry.path, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class _Inspection:
    """An archive's checked structure and metadata, before any content is read."""

    filename: str
    tags: tuple[str, ...]
    members: list[tuple[str, zipfile.ZipInfo]]
    dist_info: str
    root_is_purelib: bool
    name: str
    version: str
    record: dict[str, tuple[str, int]]
    entry_points: tuple[EntryPoint, ...]

    @property
    def data_dir(self) -> str:
        return self.dist_info[: -len(".dist-info")] + ".data"

    def manifest(self, dirs: Iterable[str], files: Iterable[tuple[str, str, int]]) -> Manifest:
        return Manifest(
            filename=self.filename,
            name=self.name,
            version=self.version,
            dist_info=self.dist_info,
            root_is_purelib=self.root_is_purelib,
            tags=self.tags,
            entry_points=self.entry_points,
            dirs=tuple(dirs),
            files=tuple(files),
        )


def _open_archive(archive: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as error:
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

    root_is_purelib = parse_wheel_file(filename, text("WHEEL"))
    name, version = parse_metadata(filename, text("METADATA"))
    record_text = text("RECORD")
    if record_text is None:
        raise InvalidWheelError(filename, f"missing {dist_info}/RECORD")
    record = parse_record(filename, record_text)
    entry_points = parse_entry_points(filename, text("entry_points.txt"))
    found = _Inspection(
        filename=filename,
        tags=wheel_name.tags,
        members=members,
        dist_info=dist_info,
        root_is_purelib=root_is_purelib,
        name=name,
        version=version,
        record=record,
        entry_points=tuple(entry_points),
    )
    _check_coverage(filename, dist_info, found.data_dir, [path for path, _ in members], record)
    return found


def extract_archive(
    archive: str, tree: str, max_size: int, checkpoint: Callable[[], None]
) -> Manifest:
    """Check and extract one archive into ``tree`` (which must not exist); return its manifest."""
    with _open_archive(archive) as zip_file:
        found = _inspect(archive, zip_file, max_size)
        filename, record = found.filename, found.record
        scripts = f"{found.data_dir}/scripts/"
        own_record = f"{found.dist_info}/RECORD"
        os.mkdir(tree)
        dirs: dict[str, None] = {}
        files: list[tuple[str, str, int]] = []
        for index, (path, info) in enumerate(found.members):
            if not index & 31:
                checkpoint()
            parent = path.rpartition("/")[0]
            executable = bool((info.external_attr >> 16) & 0o111) or path.startswith(scripts)
            digest = record.get(path, ("sha256=", -1))[0]
            destination = os.path.join(tree, path)
            try:
                if parent and parent not in dirs:
                    _make_parents(tree, parent, dirs)
                written, size = _extract_member(
                    filename, zip_file, info, destination, executable, digest
                )
            except OSError as error:
                raise LinkError(
                    filename, f"{archive}!{path}", destination, error, "unpack"
                ) from error
            if path in record and (written, size) != record[path]:
                what = "size" if size != record[path][1] else "hash"
                raise InvalidWheelError(
                    filename, f"the {what} of {path} does not match RECORD", entry=path
                )
            if path != own_record:  # kept in the tree, but installs write their own
                files.append((path, written, size))
    return found.manifest(dirs, files)


def peek_archive(archive: str, max_size: int = DEFAULT_MAX_UNPACKED_SIZE) -> Manifest:
    """The manifest extracting ``archive`` would give, read without writing anything.

    For dry runs: every check runs but those of the contents (hashes and sizes are RECORD's).
    """
    with _open_archive(archive) as zip_file:
        found = _inspect(archive, zip_file, max_size)
    dirs: dict[str, None] = {}
    files: list[tuple[str, str, int]] = []
    own_record = f"{found.dist_info}/RECORD"
    for path, info in found.members:
        parts = path.split("/")[:-1]
        dirs.update(dict.fromkeys("/".join(parts[: n + 1]) for n in range(len(parts))))
        if path != own_record:
            files.append((path, *found.record.get(path, ("", info.file_size))))
    return found.manifest(dirs, files)


def read_member(archive: str, relative: str) -> bytes:
    """One member's bytes, for dry runs that need to look into a file."""
    with _open_archive(archive) as zip_file:
        return zip_file.read(relative)


def _check_members(
    wheel: str, zip_file: zipfile.ZipFile, archive_size: int, max_size: int
) -> list[tuple[str, zipfile.ZipInfo]]:
    """Every file member as (safe relative path, info); the archive-level rules."""
    members: list[tuple[str, zipfile.ZipInfo]] = []
    seen: dict[str, str] = {}
    total = 0
    skipped = 0
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
            skipped += 1
            continue
        total += info.file_size
        members.append((path, info))
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
        message = f"{wheel}: skipped {skipped} file(s) under __pycache__/ shipped in the wheel"
        logger.warning(message)
        warnings.warn(message, PycacheSkippedWarning, stacklevel=2)
    return members


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
    wheel: str, dist_info: str, data_dir: str, paths: list[str], record: dict[str, tuple[str, int]]
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
            if key not in _DATA_KEYS:
                raise InvalidWheelError(
                    wheel,
                    f"unknown scheme {key!r} in {data_dir}/ (not one of "
                    f"{', '.join(sorted(_DATA_KEYS))})",
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
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as error:
        raise InvalidWheelError(wheel, f"corrupt entry: {error}", entry=info.filename) from None


def _extract_member(
    wheel: str,
    zip_file: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    destination: str,
    executable: bool,
    expected_hash: str,
) -> tuple[str, int]:
    """Write one member; return its hash (in RECORD's algorithm) and its size."""
    algorithm = expected_hash.partition("=")[0] or "sha256"
    hasher = hashlib.new(algorithm)
    size = 0
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755 if executable else 0o644)
    try:
        with zip_file.open(info) as source:
            while chunk := source.read(1 << 20):
                hasher.update(chunk)
                size += len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as error:
        raise InvalidWheelError(wheel, f"corrupt entry: {error}", entry=info.filename) from None
    finally:
        os.close(fd)
    return record_hash(hasher), size


def manifest_for_tree(tree: str) -> Manifest:
    """The manifest of a wheel unpacked by someone else; blocking.

    Hashes and sizes come from the tree's RECORD (it is not re-verified: that is the job of
    whoever unpacked it); files it does not list are hashed here.
    """
    tree = os.path.abspath(tree)
    label = os.path.basename(tree)
    try:
        top = set(os.listdir(tree))
    except OSError as error:
        raise InvalidWheelError(label, f"cannot read the unpacked wheel: {error}") from None
    infos = sorted(name for name in top if name.endswith(".dist-info"))
    if len(infos) != 1:
        raise InvalidWheelError(label, f"expected one .dist-info directory, found {infos}")
    dist_info = infos[0]
    project, _, version = dist_info[: -len(".dist-info")].rpartition("-")
    name = WheelName(label, project, version, ())
    check_dist_info_name(name, top)

    def text(relative: str) -> str | None:
        try:
            with open(os.path.join(tree, dist_info, relative), encoding="utf-8") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    root_is_purelib = parse_wheel_file(label, text("WHEEL"))
    display_name, version = parse_metadata(label, text("METADATA"))
    record_text = text("RECORD")
    if record_text is None:
        raise InvalidWheelError(label, f"missing {dist_info}/RECORD")
    record = parse_record(label, record_text)
    entry_points = parse_entry_points(label, text("entry_points.txt"))
    real_root = os.path.realpath(tree)
    dirs: list[str] = []
    files: list[tuple[str, str, int]] = []
    for directory, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        relative_dir = os.path.relpath(directory, tree).replace(os.sep, "/")
        prefix = "" if relative_dir == "." else relative_dir + "/"
        dirs.extend(prefix + d for d in dirnames)
        for file_name in sorted(filenames):
            relative = prefix + file_name
            path = os.path.join(directory, file_name)
            if os.path.islink(path):
                resolved = os.path.realpath(path)
                if not resolved.startswith(real_root + os.sep):
                    raise InvalidWheelError(
                        label, f"symlink {relative} points outside the unpacked wheel", relative
                    )
            if relative == f"{dist_info}/RECORD":
                continue
            known = record.get(relative)
            files.append((relative, *known) if known else (relative, *_hash_file(path)))
    missing = set(record) - {path for path, _, _ in files}
    if missing:
        raise InvalidWheelError(label, f"RECORD lists files that are not there: {sorted(missing)}")
    return Manifest(
        filename=label,
        name=display_name,
        version=version,
        dist_info=dist_info,
        root_is_purelib=root_is_purelib,
        tags=(),
        entry_points=tuple(entry_points),
        dirs=tuple(dirs),
        files=tuple(files),
    )


def _hash_file(path: str) -> tuple[str, int]:
    hasher = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
            size += len(chunk)
    return record_hash(hasher), size


def _file_sha256(path: str) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()
