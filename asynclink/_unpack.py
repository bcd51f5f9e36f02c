"""``.whl`` archives into a cache of unpacked wheels, checked on the way in.

Layout of a cache directory::

    wheels-v<N>/<sha256 of the archive>/tree/          the unpacked wheel
    wheels-v<N>/<sha256 of the archive>/manifest.json  what install needs, read instead of a walk
    archives-v2/<device-inode-size-mtime>             that archive's sha256, so a warm lookup
                                                      costs a stat and a read, not a hash
    tmp/                                              extractions in progress

``N`` is the manifest's format: a newer asynclink unpacks again rather than misread an entry.

An entry is extracted into ``tmp/`` and renamed into ``wheels-v<N>/`` whole, manifest included:
a crash or a cancellation never leaves a half wheel that a later run would trust. Every check
(paths, RECORD hashes and sizes, metadata) runs before or during extraction, once; an install
from the cache trusts the manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ._errors import InvalidWheelError, LinkError
from ._fsutil import (
    absolute,
    add_parent_dirs,
    canonical_name,
    record_hash,
    remove_tree,
    write_memo,
)
from ._scripts import EntryPoint

__all__ = [
    "DEFAULT_MAX_UNPACKED_SIZE",
    "Manifest",
    "UnpackedWheel",
    "WheelCache",
    "data_dir_of",
    "default_cache_dir",
    "load_manifest",
    "manifest_for_tree",
]

MANIFEST_FORMAT = 3
#: A wheel that would unpack to more than this is refused (the caller can raise it).
DEFAULT_MAX_UNPACKED_SIZE = 16 << 30
_STALE_TEMPORARY = 24 * 3600


def default_cache_dir() -> str:
    """``$ASYNCLINK_CACHE_DIR``, else ``$XDG_CACHE_HOME/asynclink``, else ``~/.cache/asynclink``."""
    explicit = os.environ.get("ASYNCLINK_CACHE_DIR")
    if explicit:
        return os.path.abspath(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "asynclink")


@dataclass(frozen=True, slots=True)
class Manifest:
    """What an install needs to know about an unpacked wheel, checked once.

    Laid out for a warm install that reads it instead of walking the tree: the files outside
    ``.data`` come as one sorted list with their RECORD rows beside them, stored as single
    newline-joined strings, so loading 3,000 files is one JSON string and one ``split``.
    """

    filename: str
    """The archive's file name (for an unpacked tree: its directory name)."""
    name: str
    """The distribution name as METADATA spells it."""
    version: str
    dist_info: str
    root_is_purelib: bool
    tags: tuple[str, ...]
    entry_points: tuple[EntryPoint, ...]
    files: list[str]
    """Files outside ``<name>.data/``, relative with ``/``, sorted; not the dist-info RECORD."""
    record: str
    """RECORD rows of ``files``, in the same order, one per line (see :meth:`rows`)."""
    dirs: list[str]
    """Their directories, parents first."""
    data: tuple[tuple[str, str, int], ...]
    """(relative path, hash, size) of the files under ``<name>.data/``."""
    size: int
    """Bytes of all files."""
    top: tuple[str, ...]
    """Top-level names outside ``<name>.data/``."""

    @property
    def data_dir(self) -> str:
        return data_dir_of(self.dist_info)

    @property
    def file_count(self) -> int:
        return len(self.files) + len(self.data)

    def rows(self) -> list[str]:
        """RECORD rows of ``files``; split on demand, as a link-only install never needs them."""
        return _lines(self.record)

    @classmethod
    def build(
        cls,
        *,
        filename: str,
        name: str,
        version: str,
        dist_info: str,
        root_is_purelib: bool,
        tags: tuple[str, ...],
        entry_points: tuple[EntryPoint, ...],
        files: Iterable[tuple[str, str, int]],
    ) -> Manifest:
        """From every file of the wheel as (relative path, hash, size)."""
        data_prefix = data_dir_of(dist_info) + "/"
        record = f"{dist_info}/RECORD"
        root: list[tuple[str, str, int]] = []
        data: list[tuple[str, str, int]] = []
        size = 0
        for entry in files:
            if entry[0] == record:
                continue  # installs write their own
            size += entry[2]
            (data if entry[0].startswith(data_prefix) else root).append(entry)
        root.sort()
        dirs: dict[str, None] = {}
        for path, _, _ in root:
            add_parent_dirs(dirs, path)
        return cls(
            filename=filename,
            name=name,
            version=version,
            dist_info=dist_info,
            root_is_purelib=root_is_purelib,
            tags=tags,
            entry_points=entry_points,
            files=[path for path, _, _ in root],
            record="\n".join(record_row(path, digest, length) for path, digest, length in root),
            dirs=sorted(dirs),
            data=tuple(sorted(data)),
            size=size,
            top=tuple(sorted({path.partition("/")[0] for path, _, _ in root})),
        )

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
                "files": "\n".join(self.files),
                "record": self.record,
                "dirs": "\n".join(self.dirs),
                "data": self.data,
                "size": self.size,
                "top": self.top,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
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
            files=_lines(raw["files"]),
            record=raw["record"],
            dirs=_lines(raw["dirs"]),
            data=tuple((d[0], d[1], d[2]) for d in raw["data"]),
            size=raw["size"],
            top=tuple(raw["top"]),
        )


def data_dir_of(dist_info: str) -> str:
    """``<name>-<version>.data``, the data directory beside ``<name>-<version>.dist-info``."""
    return dist_info[: -len(".dist-info")] + ".data"


def _lines(text: str) -> list[str]:
    return text.split("\n") if text else []


def record_row(path: str, digest: str, size: int | str) -> str:
    """One RECORD row as the csv module writes it (a path is quoted only when it must be)."""
    if "," in path or '"' in path:
        path = '"' + path.replace('"', '""') + '"'
    return f"{path},{digest},{size}"


def row_path(row: str) -> str:
    """The path of a RECORD row made by :func:`record_row`."""
    if row.startswith('"'):
        end = row.rfind('",')
        return row[1:end].replace('""', '"')
    return row.rpartition(",")[0].rpartition(",")[0]


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
        return self.manifest.size


class WheelCache:
    """A directory of unpacked wheels keyed by archive content; safe to share between processes."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        """The cache at ``root``; ``None`` is :func:`default_cache_dir`."""
        self.root = absolute(root) if root is not None else default_cache_dir()
        self._wheels = os.path.join(self.root, f"wheels-v{MANIFEST_FORMAT}")
        self._archives = os.path.join(self.root, "archives-v2")
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
        digest = _archive_sha256(archive)
        found = self._load(digest, archive)
        if found is None:
            found = self._extract(archive, digest, max_unpacked_size, checkpoint)
        write_memo(memo, digest.encode())
        return found

    def lookup(self, archive: str, hash_on_miss: bool = True) -> UnpackedWheel | None:
        """The unpacked wheel of ``archive`` if the cache has it; writes nothing.

        Without ``hash_on_miss`` only the memo of this very file is consulted (a stat and two
        reads); with it, an archive seen under another path is found by its contents too.
        """
        archive = os.path.abspath(archive)
        found = self._remembered(self._memo(archive), archive)
        if found is not None or not hash_on_miss:
            return found
        return self._load(_archive_sha256(archive), archive)

    def _memo(self, archive: str) -> str:
        """Where the archive's content hash is remembered: named by the file's identity (device,
        inode, size, mtime), which changes whenever its contents can have.

        Only a ``.whl`` file is a wheel (pip and uv refuse a renamed one), whatever is in it."""
        if not archive.endswith(".whl"):
            raise InvalidWheelError(
                os.path.basename(archive), f"{archive} is not a wheel: its name must end in .whl"
            )
        try:
            info = os.stat(archive)
        except OSError as error:
            raise InvalidWheelError(
                os.path.basename(archive), f"cannot read {archive}: {error.strerror}"
            ) from None
        key = f"{info.st_dev:x}-{info.st_ino:x}-{info.st_size:x}-{info.st_mtime_ns:x}"
        return os.path.join(self._archives, key)

    def _remembered(self, memo: str, archive: str) -> UnpackedWheel | None:
        # Binary reads: a warm install makes two per wheel, and a text-mode open (decoder,
        # buffer, wrapper) costs more than the read itself.
        try:
            with open(memo, "rb") as handle:
                digest = handle.read().strip().decode("ascii")
        except (OSError, UnicodeDecodeError):
            return None
        return self._load(digest, archive)

    def _load(self, digest: str, archive: str) -> UnpackedWheel | None:
        if len(digest) != 64 or digest.strip("0123456789abcdef"):
            return None  # not a digest this cache wrote
        entry = os.path.join(self._wheels, digest)
        manifest = load_manifest(entry)
        if manifest is None:
            return None
        filename = os.path.basename(archive)
        if manifest.filename != filename:
            manifest = _renamed(manifest, filename)
        return UnpackedWheel(os.path.join(entry, "tree"), manifest, archive, cached=True)

    def _extract(
        self, archive: str, digest: str, max_size: int, checkpoint: Callable[[], None]
    ) -> UnpackedWheel:
        """Extract ``archive`` into a staging directory, then rename it into the cache whole.

        Whatever goes wrong (a hostile archive, a full disk, a cancellation), the staging
        directory goes, and the error names the wheel: an ``OSError`` of the cache's own
        becomes a :class:`LinkError`.
        """
        import tempfile

        filename = os.path.basename(archive)
        try:
            os.makedirs(self._tmp, exist_ok=True)
            os.makedirs(self._wheels, exist_ok=True)
            self._remove_stale_temporaries()
            staging = tempfile.mkdtemp(prefix=f"{digest[:16]}-", dir=self._tmp)
        except OSError as error:
            raise LinkError(filename, archive, self._tmp, error, "unpack into the cache") from error
        entry = os.path.join(self._wheels, digest)
        try:
            from ._archive import extract_archive

            manifest = extract_archive(archive, os.path.join(staging, "tree"), max_size, checkpoint)
            with open(os.path.join(staging, "manifest.json"), "w", encoding="utf-8") as handle:
                handle.write(manifest.to_json())
            try:
                os.rename(staging, entry)
            except OSError:
                # Another process unpacked the same archive first; theirs is as good as ours.
                existing = self._load(digest, archive)
                if existing is not None:
                    _remove_quietly(staging)
                    return existing
                # A damaged entry that nothing can use: move it aside, then take its place.
                aside = tempfile.mkdtemp(prefix="stale-", dir=self._tmp)
                os.rename(entry, os.path.join(aside, "entry"))
                os.rename(staging, entry)
                _remove_quietly(aside)
        except OSError as error:
            _remove_quietly(staging)
            raise LinkError(filename, archive, staging, error, "unpack into the cache") from error
        except BaseException:
            _remove_quietly(staging)
            raise
        return UnpackedWheel(os.path.join(entry, "tree"), manifest, archive, cached=False)

    def _remove_stale_temporaries(self) -> None:
        """Extractions that a crash left behind; live ones are younger than a day."""
        cutoff = time.time() - _STALE_TEMPORARY
        with contextlib.suppress(OSError), os.scandir(self._tmp) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        remove_tree(entry.path)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        remove_tree(path)


def _renamed(manifest: Manifest, filename: str) -> Manifest:
    """The manifest of contents the cache first saw under another file name, for this one.

    The file name must name the same project and version (a copy of ``requests-2.0`` renamed
    ``evil-1.0`` is refused); its tags are the ones that count, as pip and uv read them from
    the file name.
    """
    from dataclasses import replace

    from ._wheelinfo import WheelName, check_metadata_name

    wheel = WheelName.parse(filename)
    check_metadata_name(wheel, manifest.name, manifest.version, f"{manifest.dist_info}/METADATA")
    return replace(manifest, filename=filename, tags=wheel.tags)


def load_manifest(entry: str) -> Manifest | None:
    """The manifest of a cache entry (the directory holding ``tree`` and ``manifest.json``);
    ``None`` if it is missing or unreadable, so the caller unpacks again."""
    try:
        with open(os.path.join(entry, "manifest.json"), "rb") as handle:
            return Manifest.from_json(handle.read())
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
    from ._wheelinfo import WheelName, check_metadata_name, normalise_member, read_dist_info

    def text(relative: str) -> str | None:
        try:
            with open(os.path.join(tree, dist_info, relative), encoding="utf-8") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    info = read_dist_info(label, dist_info, text)
    named, _, version = dist_info[: -len(".dist-info")].rpartition("-")
    wheel = WheelName(label, canonical_name(named), version, ())
    check_metadata_name(wheel, info.name, info.version, f"{dist_info}/METADATA")
    record = info.record
    real_root = os.path.realpath(tree)
    files: list[tuple[str, str, int]] = []
    for directory, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        relative_dir = os.path.relpath(directory, tree).replace(os.sep, "/")
        prefix = "" if relative_dir == "." else relative_dir + "/"
        for file_name in sorted(filenames):
            relative = normalise_member(label, prefix + file_name)
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
    return Manifest.build(
        filename=label,
        name=info.name,
        version=info.version,
        dist_info=dist_info,
        root_is_purelib=info.root_is_purelib,
        tags=(),
        entry_points=info.entry_points,
        files=files,
    )


def _hash_file(path: str) -> tuple[str, int]:
    """RECORD's hash of a file, and its size."""
    hasher, size = _sha256_of(path)
    return record_hash(hasher), size


def _archive_sha256(path: str) -> str:
    try:
        return _sha256_of(path)[0].hexdigest()
    except OSError as error:
        raise InvalidWheelError(
            os.path.basename(path), f"cannot read {path}: {error.strerror}"
        ) from None


def _sha256_of(path: str) -> tuple[hashlib._Hash, int]:
    hasher = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
            size += len(chunk)
    return hasher, size


def serve_unpacks(root: str) -> None:
    """An unpacking helper's main loop (``_helper.Unpacker``): unpack the archive each request
    names into the cache at ``root`` and answer ``unpacked`` (or ``cached``: it was there), or
    ``failed``, after which the caller unpacks it itself, raising the error in full.

    ``SIGTERM`` (a cancelled install) stops an extraction at its next member, inside the
    extraction's own clean-up, so that its staging directory goes too; an idle helper exits.
    """
    import signal

    from ._bulk import serve

    extracting = stopping = False

    def stop(_signal: int, _frame: object) -> None:
        nonlocal stopping
        if not extracting:
            raise SystemExit(1)
        stopping = True

    def checkpoint() -> None:
        if stopping:
            raise SystemExit(1)

    signal.signal(signal.SIGTERM, stop)
    cache = WheelCache(root)

    def answer(request: bytes) -> bytes:
        nonlocal extracting
        archive, max_unpacked_size = json.loads(request)
        extracting = True
        try:
            unpacked = cache.unpack(
                archive, max_unpacked_size=max_unpacked_size, checkpoint=checkpoint
            )
        except Exception:
            return b"failed"
        finally:
            extracting = False
            checkpoint()  # stopped after the last member: the entry is whole, and stays
        return b"cached" if unpacked.cached else b"unpacked"

    serve(answer)
