"""The cache of unpacked wheels: ``.whl`` archives checked and extracted once, then reused.

Layout of a cache directory::

    wheels-v<N>/<sha256 of the archive>/tree/          the unpacked wheel
    wheels-v<N>/<sha256 of the archive>/manifest       what install needs, read instead of a walk
    archives-v2/<device-inode-size-mtime>             that archive's sha256 and path, so a
                                                      warm lookup costs a stat and a read, not
                                                      a hash (and ``prune`` knows what is used)
    tmp/                                              extractions in progress

``N`` is the manifest's format: a newer asynclink unpacks again rather than misread an entry.

An entry is extracted into ``tmp/`` and renamed into ``wheels-v<N>/`` whole, manifest included:
a crash or a cancellation never leaves a half wheel that a later run would trust. Every check
(paths, RECORD hashes and sizes, metadata) runs before or during extraction, once. An install
from the cache reads the manifest and checks only what could lead it astray (``_manifest``:
fields of the right types, paths that stay in the tree, entry points that name one file, a
dist-info of the distribution): a manifest edited to list ``../../x`` is damage, and the
entry is put aside and unpacked again.

The files of an entry are shared: a hard-linked (or symlinked) install *is* the cache's file,
so editing it there edits the cache, and every later install would get the edited file.
Every file of an entry is given one modification time when it is unpacked (the manifest's
``sealed``); a warm install looks at a few files of each entry it uses (one ``stat`` each:
the first, and three drawn at random, so that over installs every file is looked at), and an
entry with a file of another size or time is checked whole against its RECORD hashes and, if
it was changed, put aside and unpacked again. ``verify`` checks every entry whole. (A ``stat``
of every file would cost a fifth of a warm hard-link install; the sample costs four per
wheel.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass

from ._errors import InvalidWheelError, LinkError, TargetError
from ._fsutil import absolute, read_small, remove_tree, write_memo
from ._manifest import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    Manifest,
    ManifestMemo,
    ManifestRefused,
    load_manifest,
)
from ._record import hash_file

__all__ = [
    "DEFAULT_MAX_UNPACKED_SIZE",
    "CacheReport",
    "UnpackedWheel",
    "WheelCache",
    "archive_sha256",
    "default_cache_dir",
]

logger = logging.getLogger("asynclink")

#: Files of an entry a warm install looks at (besides its first), drawn at random.
_SAMPLE = 3

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
class UnpackedWheel:
    """A wheel ready to install: its tree on disk and its manifest."""

    tree: str
    manifest: Manifest
    archive: str | None = None
    """The ``.whl`` it came from; ``None`` when the caller handed over an unpacked tree."""
    cached: bool = False
    """Found in the cache rather than extracted by this call."""
    digest: str = ""
    """What the wheel is, by content: an archive's sha256 (its key in the cache); for an
    unpacked tree, the sha256 of its RECORD rows."""

    @property
    def size(self) -> int:
        return self.manifest.size


@dataclass(frozen=True, slots=True)
class CacheReport:
    """What :meth:`WheelCache.verify`, :meth:`~WheelCache.prune` or
    :meth:`~WheelCache.clean` found and did."""

    root: str
    entries: int
    """Unpacked wheels looked at."""
    damaged: tuple[str, ...] = ()
    """Entries whose files differ from their RECORD (or that cannot be read), with why."""
    removed: tuple[str, ...] = ()
    """What was removed: entries, memos, temporaries."""


class WheelCache:
    """A directory of unpacked wheels keyed by archive content; safe to share between processes."""

    def __init__(
        self, root: str | os.PathLike[str] | None = None, manifests: ManifestMemo | None = None
    ) -> None:
        """The cache at ``root``; ``None`` is :func:`default_cache_dir`. ``manifests`` (a
        session's) remembers the manifests read."""
        self.root = absolute(root) if root is not None else default_cache_dir()
        self._load_manifest = manifests.load if manifests is not None else load_manifest
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
        digest = archive_sha256(archive)
        found = self._load(digest, archive)
        if found is None:
            found = self._extract(archive, digest, max_unpacked_size, checkpoint)
        write_memo(memo, f"{digest}\n{archive}".encode("utf-8", "surrogateescape"))
        return found

    def digest_of(self, archive: str, info: os.stat_result | None = None) -> str | None:
        """The content hash of ``archive`` as its memo remembers it (a stat, unless ``info`` is
        the archive's, and a read), or ``None`` if this file was not seen as it is now."""
        archive = os.path.abspath(archive)
        return _read_memo(self._memo(archive, info))

    def lookup(self, archive: str, hash_on_miss: bool = True) -> UnpackedWheel | None:
        """The unpacked wheel of ``archive`` if the cache has it; writes nothing.

        Without ``hash_on_miss`` only the memo of this very file is consulted (a stat and two
        reads); with it, an archive seen under another path is found by its contents too.
        """
        archive = os.path.abspath(archive)
        found = self._remembered(self._memo(archive), archive)
        if found is not None or not hash_on_miss:
            return found
        return self._load(archive_sha256(archive), archive)

    def _memo(self, archive: str, info: os.stat_result | None = None) -> str:
        """Where the archive's content hash is remembered: named by the file's identity (device,
        inode, size, mtime), which changes whenever its contents can have.

        Only a ``.whl`` file is a wheel (pip and uv refuse a renamed one), whatever is in it."""
        if not archive.endswith(".whl"):
            raise InvalidWheelError(
                os.path.basename(archive), f"{archive} is not a wheel: its name must end in .whl"
            )
        try:
            info = os.stat(archive) if info is None else info
        except OSError as error:
            raise InvalidWheelError(
                os.path.basename(archive), f"cannot read {archive}: {error.strerror}"
            ) from None
        if not stat.S_ISREG(info.st_mode):
            raise _not_a_file(archive)
        key = f"{info.st_dev:x}-{info.st_ino:x}-{info.st_size:x}-{info.st_mtime_ns:x}"
        return os.path.join(self._archives, key)

    def _remembered(self, memo: str, archive: str) -> UnpackedWheel | None:
        digest = _read_memo(memo)
        return None if digest is None else self._load(digest, archive)

    def _load(self, digest: str, archive: str) -> UnpackedWheel | None:
        if len(digest) != 64 or digest.strip("0123456789abcdef"):
            return None  # not a digest this cache wrote
        entry = os.path.join(self._wheels, digest)
        try:
            manifest = self._load_manifest(entry)
        except ManifestRefused as why:
            logger.warning(
                "the cache's manifest of %s was changed (%s); unpacking it again",
                os.path.basename(archive),
                why,
            )
            self._put_aside(entry)
            return None
        if manifest is None:
            return None
        tree = os.path.join(entry, "tree")
        if not self._intact(entry, tree, manifest):
            return None
        filename = os.path.basename(archive)
        if manifest.filename != filename:
            manifest = _renamed(manifest, filename)
        return UnpackedWheel(tree, manifest, archive, cached=True, digest=digest)

    def _intact(self, entry: str, tree: str, manifest: Manifest) -> bool:
        """Whether a few files of the entry (see the module docstring) still are as unpacked;
        if one is not, the entry is checked whole, and put aside if it was changed."""
        if not manifest.sealed or not manifest.files:
            return True
        files = manifest.files
        picks = {0, *(_draw(len(files)) for _ in range(_SAMPLE))}
        for index in picks:
            size = _recorded_size(manifest, index)
            try:
                info = os.stat(tree + os.sep + files[index])
            except OSError:
                break
            if info.st_size != size or info.st_mtime_ns != manifest.sealed:
                break
        else:
            return True
        problem = _damage(tree, manifest)
        if problem is None:
            return True
        logger.warning(
            "the cache's copy of %s was changed (%s); unpacking it again",
            manifest.filename,
            problem,
        )
        self._put_aside(entry)
        return False

    def _put_aside(self, entry: str) -> None:
        """Move a damaged entry out of the way and remove it (installs that share its files
        keep their own links to them)."""
        import tempfile

        with contextlib.suppress(OSError):
            os.makedirs(self._tmp, exist_ok=True)
            aside = tempfile.mkdtemp(prefix="damaged-", dir=self._tmp)
            os.rename(entry, os.path.join(aside, "entry"))
            _remove_quietly(aside)

    # -- keeping the cache --------------------------------------------------------------------

    def _check_layout(self, own_directories: bool = True) -> None:
        """Refuse (:class:`~asynclink.TargetError`) to keep a cache whose root is not a
        directory, or whose own directories (unpacked wheels, memos, staging) are not real
        directories: verifying and pruning remove what they list there, and through a
        symlink that would be somewhere else on the machine. The root may be a symlink: the
        caller named it. ``clean`` removes links, not what they lead to: it checks the root."""
        try:
            if not stat.S_ISDIR(os.stat(self.root).st_mode):
                raise TargetError(f"the cache {self.root} is not a directory")
            for path in (self._wheels, self._archives, self._tmp) if own_directories else ():
                with contextlib.suppress(FileNotFoundError):
                    if not stat.S_ISDIR(os.lstat(path).st_mode):
                        raise TargetError(
                            f"{path} is not a directory (a symlink or a file), so this is not a "
                            "cache asynclink keeps; refusing to remove anything in it"
                        )
        except FileNotFoundError:
            return  # no cache yet: nothing to keep
        except OSError as error:
            raise TargetError(f"cannot use the cache {self.root}: {error.strerror}") from None

    def entries(self) -> list[str]:
        """The cache's entries (directories holding ``tree`` and ``manifest``)."""
        try:
            names = sorted(os.listdir(self._wheels))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [os.path.join(self._wheels, name) for name in names]

    def verify(self, remove: bool = False) -> CacheReport:
        """Check every entry against the RECORD hashes it was checked against when it was
        unpacked; with ``remove``, remove the damaged ones (the next install unpacks them
        again). Blocking: it reads every byte of the cache."""
        self._check_layout()
        damaged: list[str] = []
        removed: list[str] = []
        entries = self.entries()
        for entry in entries:
            problem = _entry_damage(entry)
            if problem is None:
                continue
            damaged.append(f"{os.path.basename(entry)}: {problem}")
            if remove:
                self._put_aside(entry)
                removed.append(entry)
        return CacheReport(self.root, len(entries), tuple(damaged), tuple(removed))

    def prune(self) -> CacheReport:
        """Remove what no install can use any more: memos of archives that are gone or
        changed, the entries that no remaining memo leads to, entries and memos of older
        formats, and extractions a crash left behind.

        Environments installed with ``symlink`` point into the cache: pruning an entry whose
        archive is gone breaks them (links and copies are their own files)."""
        self._check_layout()
        removed: list[str] = []
        used: set[str] = set()
        for memo in _listing(self._archives):
            digest, archive = _read_memo_and_path(memo)
            if digest is not None and (archive is None or _is_memo_of(memo, archive)):
                used.add(digest)
                continue
            with contextlib.suppress(OSError):
                os.unlink(memo)
                removed.append(memo)
        entries = self.entries()
        for entry in entries:
            if os.path.basename(entry) not in used:
                _remove_quietly(entry)
                removed.append(entry)
        for old in _listing(self.root):
            name = os.path.basename(old)
            if _older_format(name):
                _remove_quietly(old)
                removed.append(old)
        for stale in _listing(self._tmp):
            _remove_quietly(stale)
            removed.append(stale)
        return CacheReport(self.root, len(entries), (), tuple(removed))

    def clean(self) -> CacheReport:
        """Remove the whole cache (the next install unpacks every wheel again)."""
        self._check_layout(own_directories=False)
        entries = self.entries()
        removed = _listing(self.root)
        for path in removed:
            _remove_quietly(path)
        with contextlib.suppress(OSError):
            os.rmdir(self.root)
        return CacheReport(self.root, len(entries), (), tuple(removed))

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
            with open(os.path.join(staging, MANIFEST_NAME), "wb") as handle:
                handle.write(manifest.to_bytes())
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
        return UnpackedWheel(
            os.path.join(entry, "tree"), manifest, archive, cached=False, digest=digest
        )

    def _remove_stale_temporaries(self) -> None:
        """Extractions that a crash left behind; live ones are younger than a day."""
        cutoff = time.time() - _STALE_TEMPORARY
        with contextlib.suppress(OSError), os.scandir(self._tmp) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        remove_tree(entry.path)


def _recorded_size(manifest: Manifest, index: int) -> int:
    """The size RECORD gives ``manifest.files[index]``, found by searching the rows' text
    for the file's row (a few microseconds) rather than splitting every row."""
    record, path = manifest.record, manifest.files[index]
    if index == 0:
        start = 0 if record.startswith(f"{path},") else -1
    else:
        start = record.find(f"\n{path},")
        start = start + 1 if start >= 0 else -1
    try:
        if start < 0:  # a quoted row (its path holds a comma or a quote)
            return int(manifest.rows()[index].rpartition(",")[2])
        end = record.find("\n", start)
        return int((record[start:] if end < 0 else record[start:end]).rpartition(",")[2])
    except (IndexError, ValueError):
        return -1  # rows that are not the files': no file has this size, so it is checked


def _draw(count: int) -> int:
    """A random index below ``count`` (``os.urandom``: ``random`` is one more import)."""
    return int.from_bytes(os.urandom(4), "little") % count


def _entry_damage(entry: str) -> str | None:
    """What is wrong with a cache entry, its manifest or its files, if anything."""
    try:
        manifest = load_manifest(entry)
    except ManifestRefused as why:
        return f"the manifest was changed ({why})"
    if manifest is None:
        return "no readable manifest"
    return _damage(os.path.join(entry, "tree"), manifest)


def _damage(tree: str, manifest: Manifest) -> str | None:
    """What differs between ``tree`` and the RECORD entries in ``manifest``, if anything."""
    try:
        entries = manifest.entries()
    except ValueError:  # an edited manifest: a row per file, each path, hash and size
        return "the manifest's RECORD rows are not those of its files"
    for entry in entries:
        try:
            found = hash_file(os.path.join(tree, entry.path), entry.path)
        except OSError as error:
            return f"{entry.path}: {error.strerror}"
        if (found.hash, found.size) != (entry.hash, entry.size):
            return f"{entry.path} does not match its RECORD hash"
    return None


def _read_memo(memo: str) -> str | None:
    return _read_memo_and_path(memo)[0]


def _read_memo_and_path(memo: str) -> tuple[str | None, str | None]:
    """A memo's digest and the archive it was written for (older memos name none)."""
    try:
        digest, _, path = read_small(memo).partition(b"\n")
    except OSError:
        return None, None
    try:
        text = digest.strip().decode("ascii")
    except UnicodeDecodeError:
        return None, None
    return text, path.decode("utf-8", "surrogateescape") or None


def _is_memo_of(memo: str, archive: str) -> bool:
    """Whether ``archive`` still is the file ``memo`` was written for (same identity)."""
    try:
        info = os.stat(archive)
    except OSError:
        return False
    key = f"{info.st_dev:x}-{info.st_ino:x}-{info.st_size:x}-{info.st_mtime_ns:x}"
    return os.path.basename(memo) == key


def _listing(directory: str) -> list[str]:
    try:
        return [os.path.join(directory, name) for name in sorted(os.listdir(directory))]
    except OSError:
        return []


def _older_format(name: str) -> bool:
    """Cache directories of formats this asynclink no longer reads."""
    from ._scheme import INTERPRETER_MEMOS

    current = {f"wheels-v{MANIFEST_FORMAT}", "archives-v2", INTERPRETER_MEMOS, "tmp"}
    prefixes = ("wheels-v", "archives-v", "interpreters-v")
    return name.startswith(prefixes) and name not in current


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        remove_tree(path)


def _renamed(manifest: Manifest, filename: str) -> Manifest:
    """The manifest of contents the cache first saw under another file name, for this one.

    The file name must name the same project and version (a copy of ``requests-2.0`` renamed
    ``evil-1.0`` is refused); its tags are the ones that count, as pip and uv read them from
    the file name.
    """

    from ._wheelinfo import WheelName, check_metadata_name

    wheel = WheelName.parse(filename)
    check_metadata_name(wheel, manifest.name, manifest.version, f"{manifest.dist_info}/METADATA")
    return manifest._replace(filename=filename, tags=wheel.tags)


def archive_sha256(path: str) -> str:
    """The archive's content hash, its key in the cache. Opened without waiting (a FIFO named
    like a wheel would hang a plain ``open``) and read only if it is a regular file (a device
    would never end)."""
    import hashlib

    hasher = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _not_a_file(path)
            while chunk := handle.read(1 << 20):
                hasher.update(chunk)
        return hasher.hexdigest()
    except OSError as error:
        raise InvalidWheelError(
            os.path.basename(path), f"cannot read {path}: {error.strerror}"
        ) from None


def _not_a_file(path: str) -> InvalidWheelError:
    return InvalidWheelError(
        os.path.basename(path), f"{path} is not a regular file (a FIFO, a device, a socket)"
    )


# -- the verbs that keep the cache ----------------------------------------------------------------


async def verify_cache(
    cache_dir: str | os.PathLike[str] | None = None, *, remove: bool = False
) -> CacheReport:
    """Check every unpacked wheel of the cache against the RECORD hashes it was checked
    against when it was unpacked; with ``remove``, remove those that differ."""
    import anyio.to_thread

    return await anyio.to_thread.run_sync(WheelCache(cache_dir).verify, remove)


async def prune_cache(cache_dir: str | os.PathLike[str] | None = None) -> CacheReport:
    """Remove what no install can use any more (see :meth:`WheelCache.prune`)."""
    import anyio.to_thread

    return await anyio.to_thread.run_sync(WheelCache(cache_dir).prune)


async def clean_cache(cache_dir: str | os.PathLike[str] | None = None) -> CacheReport:
    """Remove the whole cache."""
    import anyio.to_thread

    return await anyio.to_thread.run_sync(WheelCache(cache_dir).clean)
