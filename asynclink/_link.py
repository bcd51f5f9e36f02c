"""Put files in place, synchronously: the four modes, atomic replacement, the first-file decision.

Nothing here knows about wheels or event loops: the scheduler hands a worker thread a whole
:class:`~asynclink._plan.Tree` (or a list of absolute pairs) and this module places it. Paths
are ``str`` and relative to directory descriptors where possible (``linkat``, ``openat``,
``mkdirat``, ``renameat``): ``pathlib`` objects, or absolute paths the kernel walks again for
every file, would cost more than the work itself.

A *creator* makes a file that must not exist yet: ``create(src_fd, src, dst_fd, dst)``, where a
descriptor of ``None`` means the path is absolute. :meth:`Placer.put` calls one and, when the
destination exists, replaces it atomically (:meth:`Placer._replace`), telling the
:class:`Recorder` first so a journal can stash the old file.
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
from ._plan import Tree, WheelPlan
from ._results import Fallback

__all__ = ["ModeState", "Placer", "Recorder", "TreeHandles", "link_tree", "write_all"]

#: ``_IOW(0x94, 9, int)`` from ``linux/fs.h``: clone all of one file's extents into another.
FICLONE = 0x40049409

_LINUX = sys.platform.startswith("linux")
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_READ_FLAGS = os.O_RDONLY | _O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC
_DIRECTORY_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _O_CLOEXEC
_COPY_CHUNK = 1 << 20
#: How many files a worker thread places between two looks at the cancellation state.
CHECK_EVERY = 256
#: Temporary files are named ``<prefix><pid>-<placer>-<n>``, so a crashed run's can be found.
TEMPORARY_PREFIX = ".asynclink-tmp-"

Creator = Callable[[int | None, str, int | None, str], None]


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
        """``path`` was created by a copy, a write or :meth:`Placer.place` (hard links and
        clones of a tree are not reported one by one)."""

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
    files (unique per process and install) and reports changes to its :class:`Recorder`.
    """

    def __init__(self, recorder: Recorder | None = None) -> None:
        self.recorder = recorder or Recorder()
        self._umask = _current_umask()
        self._temp_names = itertools.count()
        self._temp_prefix = f"{TEMPORARY_PREFIX}{os.getpid()}-{id(self) & 0xFFFFFF:x}-"
        self._creators: dict[LinkMode, Creator] = {
            LinkMode.CLONE: self.clone,
            LinkMode.COPY: self.copy,
            LinkMode.HARDLINK: _hardlink,
            LinkMode.SYMLINK: _symlink,
        }

    def creator(self, mode: LinkMode) -> Creator:
        return self._creators[mode]

    # -- the four ways to create a file that must not exist yet --------------------------------

    def copy(self, src_fd: int | None, source: str, dst_fd: int | None, destination: str) -> None:
        """A full copy into a new file, with the source's permission bits (not the umask's)."""
        self._new_file_from(src_fd, source, dst_fd, destination, _copy_data)

    def clone(self, src_fd: int | None, source: str, dst_fd: int | None, destination: str) -> None:
        """A copy-on-write clone into a new file, with the source's permission bits.

        On Linux this is the ``FICLONE`` ioctl on a file created with the right mode. The
        ``reflink-copy`` package creates the file with default permissions (uv issue 18181), so
        it needs a ``chmod`` after; measured on the corpus on XFS, the two take the same time
        (about 250 ms for 19,071 files either way), and the ioctl is kept because it works
        relative to directory descriptors like every other mode here and fails with an
        ``errno`` (``reflink-copy``'s errors have none, only a message). Elsewhere (macOS
        ``clonefile``) ``reflink-copy`` keeps the mode and is used as is.
        """
        if not _LINUX:
            _reflink_copy(_fd_path(src_fd, source), _fd_path(dst_fd, destination))
            return
        self._new_file_from(src_fd, source, dst_fd, destination, _clone_data)

    def _new_file_from(
        self,
        src_fd: int | None,
        source: str,
        dst_fd: int | None,
        destination: str,
        fill: Callable[[int, int, int], None],
    ) -> None:
        """Create ``destination`` (it must not exist) with ``source``'s mode, and let ``fill``
        put the bytes in (``fill(source fd, destination fd, size)``); on any failure the new
        file is removed again."""
        fin = os.open(source, _READ_FLAGS, dir_fd=src_fd)
        try:
            info = os.fstat(fin)
            self._new_file(
                dst_fd,
                destination,
                stat.S_IMODE(info.st_mode),
                lambda fout: fill(fin, fout, info.st_size),
            )
        finally:
            os.close(fin)

    def _new_file(
        self, dst_fd: int | None, destination: str, perms: int, fill: Callable[[int], None]
    ) -> None:
        """Create ``destination`` with exactly ``perms`` (not what the umask leaves of them),
        let ``fill`` write it, and remove it again if that fails."""
        fout = os.open(destination, _CREATE_FLAGS, perms, dir_fd=dst_fd)
        try:
            fill(fout)
            if perms & self._umask:
                os.fchmod(fout, perms)
        except BaseException:
            os.close(fout)
            _unlink_quietly(destination, dst_fd)
            raise
        os.close(fout)

    # -- placing: create, or replace atomically -------------------------------------------------

    def put(
        self,
        create: Creator,
        src_fd: int | None,
        source: str,
        dst_fd: int | None,
        destination: str,
        dst_root: str = "",
    ) -> bool:
        """Create ``destination``, replacing a file already there; say if it was new.

        A replaced file is never removed first: the new one is made under a temporary name in
        the same directory and renamed over it, so a reader sees the old file or the new one.
        ``dst_root`` is the directory of ``dst_fd`` (for the journal and messages).
        """
        try:
            create(src_fd, source, dst_fd, destination)
        except FileExistsError:
            self._replace(create, src_fd, source, dst_fd, destination, dst_root)
            return False
        return True

    def place(self, mode: LinkMode, source: str, destination: str) -> None:
        """Put ``source`` at ``destination`` (both absolute) with ``mode``."""
        if self.put(self._creators[mode], None, source, None, destination):
            self.recorder.file_created(destination)

    def write(self, destination: str, data: bytes, perms: int = 0o644) -> None:
        """Write generated bytes (a script, RECORD) to the absolute ``destination``, atomically."""

        def create(_fd: int | None, _source: str, dst_fd: int | None, path: str) -> None:
            self._new_file(dst_fd, path, perms, lambda fd: write_all(fd, data))

        if self.put(create, None, "", None, destination):
            self.recorder.file_created(destination)

    def _replace(
        self,
        create: Creator,
        src_fd: int | None,
        source: str,
        dst_fd: int | None,
        destination: str,
        dst_root: str,
    ) -> None:
        head, sep, name = destination.rpartition(os.sep)
        if stat.S_ISDIR(os.lstat(destination, dir_fd=dst_fd).st_mode):
            raise IsADirectoryError(errno.EISDIR, "a directory is in the way of this file", name)
        temporary = f"{head}{sep}{self._temp_prefix}{next(self._temp_names)}"
        create(src_fd, source, dst_fd, temporary)
        try:
            with self.recorder.replacing(_absolute(dst_fd, destination, dst_root)):
                os.replace(temporary, destination, src_dir_fd=dst_fd, dst_dir_fd=dst_fd)
            # Renaming a hard link over another link to the same inode is a successful no-op
            # (POSIX rename), which would leave the temporary name behind.
            if create is _hardlink:
                _unlink_quietly(temporary, dst_fd)
        except BaseException:
            _unlink_quietly(temporary, dst_fd)
            raise

    def make_dirs(
        self, wheel: str, directories: Sequence[str], dir_fd: int | None = None, root: str = ""
    ) -> list[str]:
        """Create directories (absolute, or relative to ``dir_fd`` whose path is ``root``),
        parents listed before children; existing ones are merged into.

        Returns the absolute paths of the directories that did not exist before.
        """
        created: list[str] = []
        mkdir = os.mkdir
        for path in directories:
            try:
                mkdir(path, dir_fd=dir_fd)
            except FileExistsError:
                if not stat.S_ISDIR(os.stat(path, dir_fd=dir_fd).st_mode):
                    error = NotADirectoryError(
                        errno.ENOTDIR, "a file is in the way of this directory", path
                    )
                    where = _absolute(dir_fd, path, root)
                    raise LinkError(wheel, None, where, error, "create directory") from None
            except OSError as error:
                where = _absolute(dir_fd, path, root)
                raise LinkError(wheel, None, where, error, "create directory") from error
            else:
                created.append(_absolute(dir_fd, path, root))
        return created


class TreeHandles:
    """Directory descriptors of a plan's trees, open while a worker thread places them."""

    def __init__(self, wheel: str, trees: Sequence[Tree]) -> None:
        self.wheel = wheel
        self.trees = trees
        self.sources: list[int] = []
        self.targets: list[int] = []

    def open_sources(self) -> None:
        for tree in self.trees:
            self.sources.append(_open_directory(self.wheel, tree.source, "read"))

    def open_targets(self) -> None:
        for tree in self.trees:
            self.targets.append(_open_directory(self.wheel, tree.target, "open"))

    def __enter__(self) -> TreeHandles:
        return self

    def __exit__(self, *_: object) -> None:
        for fd in (*self.sources, *self.targets):
            os.close(fd)


def _open_directory(wheel: str, path: str, action: str) -> int:
    try:
        return os.open(path, _DIRECTORY_FLAGS)
    except OSError as error:
        raise LinkError(wheel, None, path, error, action) from error


def link_tree(
    placer: Placer,
    wheel: str,
    tree: Tree,
    src_fd: int,
    dst_fd: int,
    state: ModeState,
    probes: dict[tuple[int, int, LinkMode], str],
    checkpoint: Callable[[], None],
) -> list[str]:
    """Place ``tree``'s files with the wheel's mode; return those left for the copy phase.

    The first file decides (see :class:`ModeState`). A mode that failed between the same two
    devices earlier in this install is skipped without trying: one wheel pays for the failed
    probe, not every wheel. Files whose source has too many links (``EMLINK``) are copied
    instead, as are all files once the wheel has fallen back to copy.
    """
    files = tree.files
    devices = (0, 0)
    if not state.decided:
        devices = (os.fstat(src_fd).st_dev, os.fstat(dst_fd).st_dev)
        while state.mode is not LinkMode.COPY:
            known = probes.get((devices[0], devices[1], state.mode))
            if known is None:
                break
            state.fall_back(known, probed=False)
    if state.mode is LinkMode.COPY:
        return list(files)
    deferred: list[str] = []
    sep = os.sep
    index, total = 0, len(files)

    while index < total and not state.decided:  # the first file decides
        relative = files[index]
        mode = state.mode
        try:
            if mode is LinkMode.SYMLINK:
                placer.put(
                    _symlink, None, tree.source + sep + relative, dst_fd, relative, tree.target
                )
            else:
                placer.put(placer.creator(mode), src_fd, relative, dst_fd, relative, tree.target)
        except OSError as error:
            if error.errno == errno.EMLINK and mode is LinkMode.HARDLINK:
                deferred.append(relative)
                index += 1
                continue
            if not is_unsupported(error):
                raise _tree_error(wheel, tree, relative, error, mode) from error
            reason = describe_os_error(error)
            probes[(devices[0], devices[1], mode)] = reason
            if state.fall_back(reason) is LinkMode.COPY:
                return deferred + files[index:]
            continue  # the same file again, one step down the chain
        state.decided = True
        index += 1

    mode = state.mode
    if mode is LinkMode.HARDLINK:
        return _hardlink_rest(placer, wheel, tree, index, src_fd, dst_fd, deferred, checkpoint)
    put = placer.put
    create = placer.creator(mode)
    for position in range(index, total):
        if not position % CHECK_EVERY:
            checkpoint()
        relative = files[position]
        try:
            if mode is LinkMode.SYMLINK:
                put(create, None, tree.source + sep + relative, dst_fd, relative, tree.target)
            else:
                put(create, src_fd, relative, dst_fd, relative, tree.target)
        except OSError as error:
            raise _tree_error(wheel, tree, relative, error, mode) from error
    return deferred


def _hardlink_rest(
    placer: Placer,
    wheel: str,
    tree: Tree,
    index: int,
    src_fd: int,
    dst_fd: int,
    deferred: list[str],
    checkpoint: Callable[[], None],
) -> list[str]:
    """The hot loop: hard links from ``index`` on, a slice at a time between cancellation
    checks, with nothing per file but the ``linkat`` call (at 19,000 files, each 50 ns of
    Python saved per file is a millisecond)."""
    files, link, replace = tree.files, os.link, placer._replace
    for start in range(index, len(files), CHECK_EVERY):
        checkpoint()
        for relative in files[start : start + CHECK_EVERY]:
            try:
                try:
                    link(relative, relative, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
                except FileExistsError:
                    replace(_hardlink, src_fd, relative, dst_fd, relative, tree.target)
            except OSError as error:
                if error.errno != errno.EMLINK:  # too many links to this source: copy it
                    raise _tree_error(wheel, tree, relative, error, LinkMode.HARDLINK) from error
                deferred.append(relative)
    return deferred


def copy_tree_files(
    placer: Placer, wheel: str, tree: Tree, files: Sequence[str], checkpoint: Callable[[], None]
) -> None:
    """Copy ``files`` of ``tree``; the caller holds the locks of their directories."""
    sep, put, copy, created = os.sep, placer.put, placer.copy, placer.recorder.file_created
    with TreeHandles(wheel, [tree]) as handles:
        handles.open_sources()
        handles.open_targets()
        src_fd, dst_fd = handles.sources[0], handles.targets[0]
        for index, relative in enumerate(files):
            if not index % CHECK_EVERY:
                checkpoint()
            try:
                if put(copy, src_fd, relative, dst_fd, relative, tree.target):
                    created(tree.target + sep + relative)
            except OSError as error:
                raise _tree_error(wheel, tree, relative, error, LinkMode.COPY) from error


def _tree_error(wheel: str, tree: Tree, relative: str, error: OSError, mode: LinkMode) -> LinkError:
    """The error for one file of ``tree`` that ``mode`` could not place."""
    sep = os.sep
    return LinkError(
        wheel, tree.source + sep + relative, tree.target + sep + relative, error, mode.value
    )


def _hardlink(src_fd: int | None, source: str, dst_fd: int | None, destination: str) -> None:
    os.link(source, destination, src_dir_fd=src_fd, dst_dir_fd=dst_fd)


def _symlink(_fd: int | None, source: str, dst_fd: int | None, destination: str) -> None:
    os.symlink(source, destination, dir_fd=dst_fd)


def _absolute(dir_fd: int | None, path: str, root: str = "") -> str:
    """``path`` as an absolute path: it already is one, or it is relative to ``root``."""
    if dir_fd is None or not root:
        return path
    return root + os.sep + path


def _fd_path(dir_fd: int | None, path: str) -> str:
    """The absolute path of ``path`` relative to ``dir_fd``, for APIs that take no descriptor."""
    if dir_fd is None:
        return path
    import fcntl

    if hasattr(fcntl, "F_GETPATH"):  # macOS
        root = fcntl.fcntl(dir_fd, fcntl.F_GETPATH, bytes(1024)).rstrip(b"\0").decode()
    else:
        root = os.readlink(f"/proc/self/fd/{dir_fd}")
    return root + os.sep + path


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written (a write may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _clone_data(fin: int, fout: int, size: int) -> None:
    import fcntl

    fcntl.ioctl(fout, FICLONE, fin)


def _copy_data(fin: int, fout: int, size: int) -> None:
    """Copy ``size`` bytes in the kernel where it can (``sendfile``), else through a buffer."""
    if not size:
        return
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
        write_all(fout, chunk)


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


def _unlink_quietly(path: str, dir_fd: int | None = None) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path, dir_fd=dir_fd)
