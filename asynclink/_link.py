"""Put files in place, synchronously: the four modes, atomic replacement, the first-file decision.

Nothing here knows about wheels or event loops: the scheduler hands a batch of
``(source, destination)`` string pairs to a worker thread and this module places them. Hot loops
use ``os`` functions on ``str`` paths; ``pathlib`` objects would cost more than the syscalls.

Every file that appears in a target goes through :meth:`Placer.place` or :meth:`Placer.write`,
and every replacement through :meth:`Placer._replace`, so a journal (see ``_transaction``) sees
each creation and can stash each file before it is replaced.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import stat
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ._errors import LinkError
from ._modes import LinkMode, describe_os_error, is_unsupported
from ._plan import WheelPlan
from ._results import Fallback

__all__ = ["ModeState", "Placer", "Recorder", "copy_batch", "link_batch"]

#: ``_IOW(0x94, 9, int)`` from ``linux/fs.h``: clone all of one file's extents into another.
FICLONE = 0x40049409

_LINUX = sys.platform.startswith("linux")
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_READ_FLAGS = os.O_RDONLY | _O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC
_COPY_CHUNK = 1 << 20
#: Temporary files are named ``<prefix><pid>-<placer>-<n>``, so a crashed run's can be found.
TEMPORARY_PREFIX = ".asynclink-tmp-"


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class Recorder:
    """Hears about the changes a :class:`Placer` makes; the base class forgets them.

    The transaction (``_transaction``) subclasses it to make installs undoable. Methods are
    called from worker threads, so implementations must be thread-safe.
    """

    def begin_wheel(self, plan: WheelPlan, created_dirs: Sequence[str]) -> None:
        """``plan``'s directories exist (``created_dirs`` are new) and no file is placed yet."""

    def file_created(self, path: str) -> None:
        """``path`` did not exist and is now a file or symlink."""

    def replacing(self, path: str) -> contextlib.AbstractContextManager[object]:
        """Around the rename that replaces the existing ``path`` with a new file."""
        return contextlib.nullcontext()


@dataclass(slots=True)
class ModeState:
    """A wheel's link mode while it is being placed: the first file decides.

    Until one file has been placed, an "unsupported" error moves the wheel down the chain
    (clone -> hardlink -> copy, symlink -> copy); after that, any error is a real one.
    """

    mode: LinkMode
    decided: bool = False
    fallbacks: list[Fallback] = field(default_factory=list)

    def fall_back(self, reason: str, probed: bool = True) -> LinkMode:
        """Move one step down the chain; return the new mode."""
        following = self.mode.fallback
        assert following is not None, "copy has no fallback"
        self.fallbacks.append(Fallback(self.mode, following, reason, probed))
        self.mode = following
        if following is LinkMode.COPY:
            self.decided = True
        return following


class Placer:
    """Creates files, links and directories in a target, one install's worth.

    An instance is shared by all worker threads of one install. It owns the names of temporary
    files (unique per process and install) and reports each change to its :class:`Recorder`.
    """

    def __init__(self, recorder: Recorder | None = None) -> None:
        self.recorder = recorder or Recorder()
        self._umask = _current_umask()
        self._temp_names = itertools.count()
        self._temp_prefix = f"{TEMPORARY_PREFIX}{os.getpid()}-{id(self) & 0xFFFFFF:x}-"
        self._creators: dict[LinkMode, Callable[[str, str], None]] = {
            LinkMode.CLONE: self.clone,
            LinkMode.COPY: self.copy,
            LinkMode.HARDLINK: os.link,
            LinkMode.SYMLINK: os.symlink,
        }

    # -- the four ways to create a file that must not exist yet --------------------------------

    def copy(self, source: str, destination: str) -> None:
        """A full copy into a new file, with the source's permission bits (not the umask's)."""
        fin = os.open(source, _READ_FLAGS)
        try:
            info = os.fstat(fin)
            perms = stat.S_IMODE(info.st_mode)
            fout = os.open(destination, _CREATE_FLAGS, perms)
            try:
                if info.st_size:
                    _copy_data(fin, fout, info.st_size)
                if perms & self._umask:
                    os.fchmod(fout, perms)
            except BaseException:
                os.close(fout)
                _unlink_quietly(destination)
                raise
            os.close(fout)
        finally:
            os.close(fin)

    def clone(self, source: str, destination: str) -> None:
        """A copy-on-write clone into a new file, with the source's permission bits.

        On Linux this is the ``FICLONE`` ioctl on a file created with the right mode: the
        ``reflink-copy`` package creates the file with default permissions (uv issue 18181) and
        reports errors without an ``errno``, so using it would cost a ``chmod`` per file and a
        message parse per failure. Elsewhere (macOS ``clonefile``) ``reflink-copy`` keeps the
        mode and is used as is.
        """
        if not _LINUX:
            _reflink_copy(source, destination)
            return
        import fcntl

        fin = os.open(source, _READ_FLAGS)
        try:
            perms = stat.S_IMODE(os.fstat(fin).st_mode)
            fout = os.open(destination, _CREATE_FLAGS, perms)
            try:
                fcntl.ioctl(fout, FICLONE, fin)
                if perms & self._umask:
                    os.fchmod(fout, perms)
            except BaseException:
                os.close(fout)
                _unlink_quietly(destination)
                raise
            os.close(fout)
        finally:
            os.close(fin)

    # -- placing: create, or replace atomically -------------------------------------------------

    def place(self, mode: LinkMode, source: str, destination: str) -> None:
        """Put ``source`` at ``destination`` with ``mode``, replacing a file already there.

        A replaced file is never removed first: the new one is made under a temporary name in
        the same directory and renamed over it, so a reader sees the old file or the new one.
        """
        create = self._creators[mode]
        try:
            create(source, destination)
        except FileExistsError:
            self._replace(create, source, destination)
        else:
            self.recorder.file_created(destination)

    def write(self, destination: str, data: bytes, perms: int = 0o644) -> None:
        """Write generated bytes (a script, RECORD) to ``destination``, atomically."""

        def create(_: str, path: str) -> None:
            fd = os.open(path, _CREATE_FLAGS, perms)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if perms & self._umask:
                    os.fchmod(fd, perms)
            except BaseException:
                os.close(fd)
                _unlink_quietly(path)
                raise
            os.close(fd)

        try:
            create("", destination)
        except FileExistsError:
            self._replace(create, "", destination)
        else:
            self.recorder.file_created(destination)

    def _replace(self, create: Callable[[str, str], None], source: str, destination: str) -> None:
        head, _, name = destination.rpartition(os.sep)
        if stat.S_ISDIR(os.lstat(destination).st_mode):
            raise IsADirectoryError(errno.EISDIR, "a directory is in the way of this file", name)
        temporary = f"{head}{os.sep}{self._temp_prefix}{next(self._temp_names)}"
        create(source, temporary)
        try:
            with self.recorder.replacing(destination):
                os.replace(temporary, destination)
            # Renaming a hard link over another link to the same inode is a successful no-op
            # (POSIX rename), which would leave the temporary name behind.
            if create is os.link:
                _unlink_quietly(temporary)
        except BaseException:
            _unlink_quietly(temporary)
            raise

    def make_dirs(self, wheel: str, directories: Sequence[str]) -> list[str]:
        """Create directories, parents listed before children; existing ones are merged into.

        Returns the directories that did not exist before.
        """
        created: list[str] = []
        for path in directories:
            try:
                os.mkdir(path)
            except FileExistsError:
                if not os.path.isdir(path):
                    error = NotADirectoryError(
                        errno.ENOTDIR, "a file is in the way of this directory", path
                    )
                    raise LinkError(wheel, None, path, error, "create directory") from None
            except OSError as error:
                raise LinkError(wheel, None, path, error, "create directory") from error
            else:
                created.append(path)
        return created


def link_batch(
    placer: Placer,
    wheel: str,
    files: Sequence[tuple[str, str]],
    state: ModeState,
    probes: dict[tuple[int, int, LinkMode], str],
    devices: tuple[int, int],
    checkpoint: Callable[[], None],
) -> list[tuple[str, str]]:
    """Place ``files`` with the wheel's mode; return those left for the (locked) copy phase.

    The first file decides (see :class:`ModeState`). A mode that failed between the same two
    devices earlier in this install is skipped without trying: one wheel pays for the failed
    probe, not every wheel. Files whose source has too many links (``EMLINK``) are copied
    instead, as are all files once the wheel has fallen back to copy.
    """
    if not state.decided:
        while state.mode is not LinkMode.COPY:
            known = probes.get((devices[0], devices[1], state.mode))
            if known is None:
                break
            state.fall_back(known, probed=False)
    if state.mode is LinkMode.COPY:
        return list(files)

    deferred: list[tuple[str, str]] = []
    mode: LinkMode = state.mode
    index = 0
    total = len(files)
    while index < total:
        if not index & 63:
            checkpoint()
        source, destination = files[index]
        try:
            placer.place(mode, source, destination)
        except OSError as error:
            if error.errno == errno.EMLINK and mode is LinkMode.HARDLINK:
                deferred.append((source, destination))
                index += 1
                continue
            if state.decided or not is_unsupported(error):
                raise LinkError(wheel, source, destination, error, mode.value) from error
            reason = describe_os_error(error)
            probes[(devices[0], devices[1], mode)] = reason
            mode = state.fall_back(reason)
            if mode is LinkMode.COPY:
                deferred.extend(files[index:])
                return deferred
            continue  # the same file again, one step down the chain
        state.decided = True
        index += 1
    return deferred


def copy_batch(
    placer: Placer,
    wheel: str,
    files: Sequence[tuple[str, str]],
    checkpoint: Callable[[], None],
) -> None:
    """Copy ``files``; the caller holds the locks of their destination directories."""
    for index, (source, destination) in enumerate(files):
        if not index & 63:
            checkpoint()
        try:
            placer.place(LinkMode.COPY, source, destination)
        except OSError as error:
            raise LinkError(wheel, source, destination, error, "copy") from error


def _copy_data(fin: int, fout: int, size: int) -> None:
    """Copy ``size`` bytes in the kernel where it can (``sendfile``), else through a buffer."""
    offset = 0
    try:
        while offset < size:
            sent = os.sendfile(fout, fin, offset, size - offset)
            if sent == 0:
                break
            offset += sent
        return
    except OSError as error:
        if offset or error.errno not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise
    while chunk := os.read(fin, _COPY_CHUNK):
        view = memoryview(chunk)
        while view:
            view = view[os.write(fout, view) :]


_OS_ERROR_NUMBER = re.compile(r"os error (\d+)")


def _reflink_copy(source: str, destination: str) -> None:
    """``reflink_copy.reflink`` with the ``errno`` it leaves out put back on the error."""
    import reflink_copy

    try:
        reflink_copy.reflink(source, destination)
    except OSError as error:
        if error.errno is not None:
            raise
        found = _OS_ERROR_NUMBER.search(str(error))
        code = int(found.group(1)) if found else errno.EOPNOTSUPP
        if code == errno.EEXIST:
            raise FileExistsError(code, os.strerror(code), destination) from error
        raise OSError(code, os.strerror(code), destination) from error


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
