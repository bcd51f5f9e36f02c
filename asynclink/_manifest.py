"""What the cache knows of an unpacked wheel: its manifest, read instead of walking the tree.

A cache entry (``_cache``) is an unpacked tree beside its ``manifest``: the wheel's name,
version, dist-info, tags, entry points, and every file with its RECORD entry, checked once when
the archive was unpacked (``_archive``). A warm install reads the manifest and nothing else of
the wheel. :func:`manifest_for_tree` makes one for a wheel that someone else unpacked.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable
from typing import Any, NamedTuple

from ._confinement import RESERVED_PREFIX, is_file_name, normalise_member, special_file_error
from ._errors import InvalidWheelError
from ._fsutil import add_parent_dirs, canonical_name
from ._record import RecordEntry, format_row, hash_file
from ._scripts import EntryPoint

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "Manifest",
    "ManifestMemo",
    "ManifestRefused",
    "data_dir_of",
    "decode_fields",
    "encode_fields",
    "load_manifest",
    "manifest_for_tree",
]

#: The layout of a cache entry's ``manifest``; the cache keeps entries of each format apart,
#: so that a newer asynclink unpacks again rather than misread an entry.
MANIFEST_FORMAT = 5


class Manifest(NamedTuple):
    """What an install needs to know about an unpacked wheel, checked once.

    Laid out for a warm install that reads it instead of walking the tree: the files outside
    ``.data`` come as one sorted list with their RECORD rows beside them, stored as single
    newline-joined strings, so loading 3,000 files is one slice, one decode and one ``split``.
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
    data: tuple[RecordEntry, ...]
    """The RECORD entries of the files under ``<name>.data/``."""
    size: int
    """Bytes of all files."""
    top: tuple[str, ...]
    """Top-level names outside ``<name>.data/``."""
    sealed: int = 0
    """The modification time (ns) every file of the tree was given when it was unpacked: a
    file whose mtime differs was written to since (see ``_cache``); 0 for a tree unpacked
    elsewhere."""

    @property
    def data_dir(self) -> str:
        return data_dir_of(self.dist_info)

    @property
    def file_count(self) -> int:
        return len(self.files) + len(self.data)

    def entries(self) -> list[RecordEntry]:
        """The RECORD entry of every file (outside ``.data`` first, then in it)."""
        entries = [
            RecordEntry(path, digest, int(size))
            for path, (digest, size) in zip(
                self.files, (row.rsplit(",", 2)[1:] for row in self.rows()), strict=True
            )
        ]
        return entries + list(self.data)

    def digest(self) -> str:
        """A content hash of the wheel from its RECORD rows: what identifies a tree that was
        unpacked elsewhere (an archive is identified by its own sha256)."""
        import hashlib

        rows = "\n".join([self.record, *(format_row(entry) for entry in self.data)])
        return hashlib.sha256(rows.encode("utf-8", "surrogateescape")).hexdigest()

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
        files: Iterable[RecordEntry],
        sealed: int = 0,
    ) -> Manifest:
        """From the RECORD entry of every file of the wheel."""
        data_prefix = data_dir_of(dist_info) + "/"
        record = f"{dist_info}/RECORD"
        root: list[RecordEntry] = []
        data: list[RecordEntry] = []
        size = 0
        for entry in files:
            if entry.path == record:
                continue  # installs write their own
            size += entry.size
            (data if entry.path.startswith(data_prefix) else root).append(entry)
        root.sort()
        dirs: dict[str, None] = {}
        for entry in root:
            add_parent_dirs(dirs, entry.path)
        return cls(
            filename=filename,
            name=name,
            version=version,
            dist_info=dist_info,
            root_is_purelib=root_is_purelib,
            tags=tags,
            entry_points=entry_points,
            files=[entry.path for entry in root],
            record="\n".join(format_row(entry) for entry in root),
            dirs=sorted(dirs),
            data=tuple(sorted(data)),
            size=size,
            top=tuple(sorted({entry.path.partition("/")[0] for entry in root})),
            sealed=sealed,
        )

    def fields(self) -> dict[str, Any]:
        """The manifest as plain values (what :func:`encode_fields` stores)."""
        return {
            "format": MANIFEST_FORMAT,
            "filename": self.filename,
            "name": self.name,
            "version": self.version,
            "dist_info": self.dist_info,
            "root_is_purelib": self.root_is_purelib,
            "tags": list(self.tags),
            "entry_points": [list(entry_point) for entry_point in self.entry_points],
            "files": "\n".join(self.files),
            "record": self.record,
            "dirs": "\n".join(self.dirs),
            "data": [list(entry) for entry in self.data],
            "size": self.size,
            "top": list(self.top),
            "sealed": self.sealed,
        }

    def to_bytes(self) -> bytes:
        """What ``manifest`` in a cache entry holds (see :func:`encode_fields`)."""
        return encode_fields(self.fields())

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """The manifest :meth:`to_bytes` wrote, checked (see :class:`ManifestRefused`)."""
        return cls.from_fields(decode_fields(data))

    @classmethod
    def from_fields(cls, raw: dict[str, Any]) -> Manifest:
        """The manifest of :meth:`fields`, checked (see :class:`ManifestRefused`)."""
        if raw.get("format") != MANIFEST_FORMAT:
            raise ValueError("unknown manifest format")
        try:
            for key in _TEXTS:
                _check_type(raw[key], str, key)
            manifest = cls(
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
                data=tuple(RecordEntry(*entry) for entry in raw["data"]),
                size=raw["size"],
                top=tuple(raw["top"]),
                sealed=raw["sealed"],
            )
        except (KeyError, TypeError) as error:
            raise ManifestRefused(f"a field is missing or of the wrong shape ({error})") from None
        _check_manifest(manifest, raw["files"], raw["dirs"])
        return manifest


#: The file of a cache entry that holds its manifest.
MANIFEST_NAME = "manifest"
#: The long texts of a manifest (newline-joined paths, RECORD rows), stored after a one-line
#: JSON header of the other fields as the bytes they are, not as JSON strings, every newline
#: an escape: the corpus's 64 manifests took 4.2 ms as JSON, 1.5 ms as a header line and the
#: texts decoded where they lie (a scratch script, minimum of 30 runs).
_TEXTS = ("files", "record", "dirs")


def encode_fields(fields: dict[str, Any]) -> bytes:
    """``fields`` (a manifest's, see :meth:`Manifest.fields`) as a cache entry stores them:
    a line of JSON naming the byte length of each of the texts, then the texts."""
    header = {key: value for key, value in fields.items() if key not in _TEXTS}
    texts = [fields[key].encode("utf-8", "surrogateescape") for key in _TEXTS]
    header["texts"] = [len(text) for text in texts]
    return b"\n".join([json.dumps(header, separators=(",", ":")).encode("ascii"), *texts])


def decode_fields(data: bytes) -> dict[str, Any]:
    """The fields :func:`encode_fields` stored; :class:`ManifestRefused` for bytes of another
    shape (``ValueError`` for another format)."""
    end = data.find(b"\n")
    fields = json.loads(data[:end])
    if not isinstance(fields, dict):
        raise ValueError("unknown manifest format")
    sizes = fields.pop("texts", None)
    if (
        not isinstance(sizes, list)
        or len(sizes) != len(_TEXTS)
        or not all(type(size) is int and size >= 0 for size in sizes)
        or end + sum(sizes) + len(sizes) != len(data)
    ):
        raise ManifestRefused("its texts are not the lengths its header gives")
    view, start = memoryview(data), end + 1  # decoded where they lie: no copy of the bytes
    for key, size in zip(_TEXTS, sizes, strict=True):
        fields[key] = str(view[start : start + size], "utf-8", "surrogateescape")
        start += size + 1
    return fields


class ManifestRefused(ValueError):
    """A cache entry's ``manifest`` that is not one asynclink wrote as it stands: a field of the
    wrong type, a path that would lead out of the target or onto asynclink's own files, an
    entry point that is no file name, metadata that contradicts itself.

    The cache's manifests are input like any other: an install links every path a manifest
    lists, so one edited to list ``../../x`` would write outside the target. A refused
    manifest makes its entry unreadable, and the cache unpacks the wheel again over it.
    """


#: What a launcher imports: dotted names only (a launcher is Python source made from them).
_DOTTED = re.compile(r"[\w.]+")
#: Where a manifest's list of paths must be looked at path by path: a component ``..``, an
#: absolute path, a NUL, a backslash, a name asynclink keeps for itself. A list with none of
#: them holds no path that leaves the tree or lands on asynclink's files (an odder path, an
#: empty one, fails when it is placed). Searching the joined text costs 1.5 ms for the
#: 19,000 paths of the benchmark's corpus; looking at each path would cost ten times that.
#: (``re`` finds the two-character needles faster than ``in`` does.)
_SUSPECT_PATTERNS = (re.compile(r"\.\."), re.compile(r"\n/"))
_SUSPECT_CHARACTERS = ("\x00", "\\", RESERVED_PREFIX)


def _check_manifest(manifest: Manifest, files: str, dirs: str) -> None:
    """Refuse (:class:`ManifestRefused`) a manifest that is not one asynclink writes."""
    _check_fields(manifest)
    for what, text in (("files", files), ("dirs", dirs)):
        if _odd_paths(text):
            raise ManifestRefused(f"{what} lists a path that is not a wheel's own")
    if any("/" in name or _odd_path(name) for name in manifest.top):
        raise ManifestRefused("top lists a name that is not a wheel's own")
    _check_data(manifest)
    _check_entry_points(manifest.entry_points)


def _check_fields(manifest: Manifest) -> None:
    """Each field of the type it has, and the dist-info directory that of the distribution."""
    for key in ("filename", "name", "version", "dist_info"):
        _check_type(getattr(manifest, key), str, key)
    _check_type(manifest.root_is_purelib, bool, "root_is_purelib")
    for key in ("size", "sealed"):
        value = getattr(manifest, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ManifestRefused(f"{key} is not a count")
    for text in (*manifest.tags, *manifest.top):
        _check_type(text, str, "tags and top")
    dist_info = manifest.dist_info
    if not dist_info.endswith(".dist-info") or "/" in dist_info or _odd_path(dist_info):
        raise ManifestRefused(f"dist_info {dist_info!r} is not a directory name")
    named, _, version = dist_info[: -len(".dist-info")].rpartition("-")
    if named != manifest.name and canonical_name(named) != canonical_name(manifest.name):
        raise ManifestRefused(f"{dist_info} is not the dist-info of {manifest.name}")
    if version != manifest.version:  # spelt otherwise (2.0-1, 2.0.post1): rare, and slower
        from ._wheelinfo import same_version

        if not same_version(version, manifest.version):
            raise ManifestRefused(f"{dist_info} is not the dist-info of version {manifest.version}")


def _check_data(manifest: Manifest) -> None:
    """Each ``.data`` entry a path, hash and size, below ``<name>.data/<scheme key>/``."""
    from ._scheme import SCHEME_KEYS

    data_prefix = manifest.data_dir + "/"
    for entry in manifest.data:
        path, digest, size = entry
        if not (isinstance(path, str) and isinstance(digest, str) and isinstance(size, int)):
            raise ManifestRefused("data holds an entry that is not path, hash, size")
        key = path[len(data_prefix) :].partition("/")[0]
        if not path.startswith(data_prefix) or _odd_path(path) or key not in SCHEME_KEYS:
            raise ManifestRefused(f"data lists {path!r}, which is not in {data_prefix}<scheme>/")


def _check_entry_points(entry_points: Iterable[EntryPoint]) -> None:
    """Each entry point names one file, and its launcher imports dotted names only."""
    for entry_point in entry_points:
        name, module, attr, section = entry_point
        if (
            not all(isinstance(part, str) for part in entry_point)
            or not is_file_name(name)
            or not _DOTTED.fullmatch(module)
            or not _DOTTED.fullmatch(attr)
            or section not in ("console", "gui")
        ):
            raise ManifestRefused(f"entry point {name!r} is not one a wheel can declare")


def _check_type(value: object, kind: type, key: str) -> None:
    if not isinstance(value, kind):
        raise ManifestRefused(f"{key} is not a {kind.__name__}")


def _odd_paths(text: str) -> bool:
    """Whether a newline-joined list of paths holds one that could lead out of the tree or
    onto asynclink's own files (see :data:`_SUSPECT_PATTERNS`)."""
    if not text:
        return False
    if not (
        text.startswith("/")
        or any(suspect in text for suspect in _SUSPECT_CHARACTERS)
        or any(pattern.search(text) for pattern in _SUSPECT_PATTERNS)
    ):
        return False
    return any(_odd_path(path) for path in text.split("\n"))


def _odd_path(path: str) -> bool:
    """Whether the unpacker would not have written ``path`` as it stands (see
    :func:`~asynclink._confinement.normalise_member`)."""
    try:
        return normalise_member("", path) != path
    except InvalidWheelError:
        return True


def data_dir_of(dist_info: str) -> str:
    """``<name>-<version>.data``, the data directory beside ``<name>-<version>.dist-info``."""
    return dist_info[: -len(".dist-info")] + ".data"


def _lines(text: str) -> list[str]:
    return text.split("\n") if text else []


def load_manifest(entry: str) -> Manifest | None:
    """The manifest of a cache entry (the directory holding ``tree`` and ``manifest``);
    ``None`` if it is missing or unreadable, so the caller unpacks again. One that reads but
    is not as asynclink writes them raises :class:`ManifestRefused`: the entry is damaged."""
    try:
        with open(os.path.join(entry, MANIFEST_NAME), "rb") as handle:
            return Manifest.from_bytes(handle.read())
    except ManifestRefused:
        raise
    except (OSError, ValueError):
        return None


class ManifestMemo:
    """Manifests already read (a :class:`~asynclink.Session`'s), by cache entry, each with
    the identity of its file: a stat instead of reading and parsing it again, unless the file
    was replaced. Each answer has lists of its own, for a caller that changes them."""

    def __init__(self) -> None:
        self._read: dict[str, tuple[tuple[int, int, int], Manifest]] = {}

    def load(self, entry: str) -> Manifest | None:
        """:func:`load_manifest` (which may raise :class:`ManifestRefused`), from memory
        when the file is the one read before."""
        try:
            info = os.stat(os.path.join(entry, MANIFEST_NAME))
        except OSError:
            return None
        identity = (info.st_ino, info.st_size, info.st_mtime_ns)
        known = self._read.get(entry)
        if known is not None and known[0] == identity:
            manifest = known[1]
        else:
            read = load_manifest(entry)
            if read is None:
                return None
            self._read[entry] = (identity, manifest := read)
        return manifest._replace(files=list(manifest.files), dirs=list(manifest.dirs))


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
    if os.path.islink(os.path.join(tree, dist_info)):
        raise InvalidWheelError(
            label, f"{dist_info} is a symlink; an unpacked wheel's metadata must be its own"
        )
    from ._wheelinfo import WheelName, check_metadata_name, read_dist_info

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
    files: list[RecordEntry] = []
    for directory, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        relative_dir = os.path.relpath(directory, tree).replace(os.sep, "/")
        prefix = "" if relative_dir == "." else relative_dir + "/"
        for name in dirnames:  # os.walk lists them and never goes in: the files would be lost
            if os.path.islink(os.path.join(directory, name)):
                raise InvalidWheelError(
                    label,
                    f"{prefix}{name} is a symlink to a directory; an unpacked wheel's "
                    "directories must be its own",
                    prefix + name,
                )
        for file_name in sorted(filenames):
            relative = normalise_member(label, prefix + file_name)
            path = os.path.join(directory, file_name)
            kind = stat.S_IFMT(os.lstat(path).st_mode)
            if kind not in (stat.S_IFREG, stat.S_IFLNK):
                raise special_file_error(label, relative)
            if kind == stat.S_IFLNK:
                resolved = os.path.realpath(path)
                if not resolved.startswith(real_root + os.sep):
                    raise InvalidWheelError(
                        label, f"symlink {relative} points outside the unpacked wheel", relative
                    )
            if relative == f"{dist_info}/RECORD":
                continue
            files.append(record.get(relative) or hash_file(path, relative))
    missing = set(record) - {entry.path for entry in files}
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
