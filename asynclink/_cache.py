"""The cache of unpacked wheels: ``.whl`` archives checked and extracted once, then reused.

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
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from ._errors import InvalidWheelError, LinkError
from ._fsutil import absolute, remove_tree, write_memo
from ._manifest import MANIFEST_FORMAT, Manifest, load_manifest

__all__ = ["DEFAULT_MAX_UNPACKED_SIZE", "UnpackedWheel", "WheelCache", "default_cache_dir"]

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


def _archive_sha256(path: str) -> str:
    """The archive's content hash, its key in the cache."""
    hasher = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                hasher.update(chunk)
        return hasher.hexdigest()
    except OSError as error:
        raise InvalidWheelError(
            os.path.basename(path), f"cannot read {path}: {error.strerror}"
        ) from None
