"""Put files in place, synchronously: the four modes, atomic replacement, the first-file decision.

Nothing here knows about event loops: the scheduler hands a worker thread a whole
:class:`~asynclink._plan.Tree` (or a list of absolute pairs) and this module places it; the
loops over a tree's files are in ``_bulk``, shared with the helper process. Paths
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
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from ._bulk import (
    CHECK_EVERY,
    DIRECTORY_FLAGS,
    LOOP_MODES,
    copy_file,
    current_umask,
    new_file,
    place_files,
)
from ._bulk import unlink_quietly as _unlink_quietly
from ._bulk import write_all as write_all
from ._confinement import RESERVED_PREFIX, Confinement
from ._errors import LinkError
from ._modes import LinkMode, describe_os_error, is_unsupported
from ._plan import Tree, WheelPlan
from ._results import Fallback

__all__ = [
    "ModeState",
    "Placer",
    "Recorder",
    "TreeHandles",
    "in_loops",
    "place_rest",
    "settle",
    "start_tree",
    "write_all",
]

#: Temporary files are named ``<prefix><pid>-<placer>-<n>``, so a crashed run's can be found.
TEMPORARY_PREFIX = RESERVED_PREFIX + "tmp-"

Creator = Callable[[int | None, str, int | None, str], None]


class Recorder:
    """Hears about the changes a :class:`Placer` makes; the base class forgets them.

    The transaction (``_transaction``) subclasses it to make installs undoable. Methods are
    called from worker threads, so implementations must be thread-safe.
    """

    held_fds: tuple[int, ...] = ()
    """Descriptors every process working for the install must hold open: the target's lock,
    so that a helper process outliving a killed install keeps the next one (and its recovery)
    out until it has stopped."""

    def begin_wheel(self, plan: WheelPlan, new_dirs: Sequence[str]) -> None:
        """``plan`` is about to create ``new_dirs`` (absolute, none of them there yet), then
        its files; nothing of it has been created so far."""

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

    def __init__(self, confinement: Confinement, recorder: Recorder | None = None) -> None:
        self.confinement = confinement
        self.recorder = recorder or Recorder()
        self.umask = current_umask()
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
        copy_file(src_fd, source, dst_fd, destination, self.umask)

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
        if not in_loops(LinkMode.CLONE):
            _reflink_copy(_fd_path(src_fd, source), _fd_path(dst_fd, destination))
            return
        copy_file(src_fd, source, dst_fd, destination, self.umask, clone=True)

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
        self.put(self._creators[mode], None, source, None, destination)

    def write(self, destination: str, data: bytes, perms: int = 0o644) -> None:
        """Write generated bytes (a script, RECORD) to the absolute ``destination``, atomically."""

        def create(_fd: int | None, _source: str, dst_fd: int | None, path: str) -> None:
            new_file(dst_fd, path, perms, self.umask, write_all, data)

        self.put(create, None, "", None, destination)

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

    def new_dirs(
        self, wheel: str, directories: Sequence[str], dir_fd: int | None = None, root: str = ""
    ) -> list[str]:
        """Which of ``directories`` (absolute, or relative to ``dir_fd`` whose path is
        ``root``; parents listed before children) do not exist yet, to be written down before
        :meth:`make_dirs` creates them.

        Existing ones are merged into, if they are directories: a file in the way is an error,
        and so is a symlink that leads out of the environment (following it would put the
        wheel's files somewhere else on the machine). Below a missing directory everything is
        missing, so a fresh install looks at its top-level directories only.
        """
        missing: list[str] = []
        absent: set[str] = set()
        sep = os.sep
        lstat = os.lstat
        for path in directories:
            parent = path.rpartition(sep)[0]
            if parent in absent:
                missing.append(path)
                absent.add(path)
                continue
            try:
                mode = lstat(path, dir_fd=dir_fd).st_mode
            except FileNotFoundError:
                missing.append(path)
                absent.add(path)
                continue
            except OSError as error:
                where = _absolute(dir_fd, path, root)
                raise LinkError(wheel, None, where, error, "create directory") from error
            if not stat.S_ISDIR(mode):
                self._check_in_the_way(wheel, mode, _absolute(dir_fd, path, root))
        return missing

    def _check_in_the_way(self, wheel: str, mode: int, where: str) -> None:
        """An existing entry where a directory must be: fine if it is a symlink to a directory
        inside the environment, else a :class:`LinkError`."""
        if stat.S_ISLNK(mode) and self.confinement.resolves_inside(where) and os.path.isdir(where):
            return
        if stat.S_ISLNK(mode):
            error = OSError(
                errno.ELOOP, "a symlink leading out of the environment is in the way", where
            )
        else:
            error = NotADirectoryError(
                errno.ENOTDIR, "a file is in the way of this directory", where
            )
        raise LinkError(wheel, None, where, error, "create directory")

    def make_dirs(
        self, wheel: str, directories: Sequence[str], dir_fd: int | None = None, root: str = ""
    ) -> None:
        """Create ``directories`` (from :meth:`new_dirs`, parents first). One that appeared
        meanwhile was made by another wheel of this install and is merged into."""
        mkdir = os.mkdir
        for path in directories:
            try:
                mkdir(path, dir_fd=dir_fd)
            except FileExistsError:
                mode = os.lstat(path, dir_fd=dir_fd).st_mode
                if not stat.S_ISDIR(mode):
                    self._check_in_the_way(wheel, mode, _absolute(dir_fd, path, root))
            except OSError as error:
                where = _absolute(dir_fd, path, root)
                raise LinkError(wheel, None, where, error, "create directory") from error


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

    def open_targets(self, missing: Collection[str] = ()) -> None:
        """Open the targets that exist (those in ``missing`` are not made yet: their place is
        ``-1``), or, called again, the ones still to open."""
        for index, tree in enumerate(self.trees):
            if index < len(self.targets):
                if self.targets[index] < 0 and tree.target not in missing:
                    self.targets[index] = _open_directory(self.wheel, tree.target, "open")
            elif tree.target in missing:
                self.targets.append(-1)
            else:
                self.targets.append(_open_directory(self.wheel, tree.target, "open"))

    def __enter__(self) -> TreeHandles:
        return self

    def __exit__(self, *_: object) -> None:
        for fd in (*self.sources, *self.targets):
            if fd >= 0:
                os.close(fd)


def _open_directory(wheel: str, path: str, action: str) -> int:
    try:
        return os.open(path, DIRECTORY_FLAGS)
    except OSError as error:
        raise LinkError(wheel, None, path, error, action) from error


def start_tree(
    placer: Placer,
    wheel: str,
    tree: Tree,
    src_fd: int,
    dst_fd: int,
    state: ModeState,
    probes: dict[tuple[int, int, LinkMode], str],
) -> tuple[int, list[str]]:
    """Place ``tree``'s first files until the wheel's mode is decided (see :class:`ModeState`).

    Returns the index of the first file left for :func:`place_rest` (in ``state.mode``) and the
    files left for the copy phase: all of them once the wheel has fallen back to copy. A mode
    that failed between the same two devices earlier in this install is skipped without
    trying: one wheel pays for the failed probe, not every wheel.
    """
    files, total = tree.files, len(tree.files)
    devices = (0, 0)
    if not state.decided:
        devices = (os.fstat(src_fd).st_dev, os.fstat(dst_fd).st_dev)
        while state.mode is not LinkMode.COPY:
            known = probes.get((devices[0], devices[1], state.mode))
            if known is None:
                break
            state.fall_back(known, probed=False)
    if state.mode is LinkMode.COPY:
        return total, list(files)
    deferred: list[str] = []
    index = 0
    retried = -1
    while index < total and not state.decided:  # the first file decides
        relative, mode = files[index], state.mode
        try:
            placer.put(
                placer.creator(mode),
                None if mode is LinkMode.SYMLINK else src_fd,
                _link_source(mode, tree, relative),
                dst_fd,
                relative,
                tree.target,
            )
        except OSError as error:
            if error.errno == errno.EMLINK and mode is LinkMode.HARDLINK:
                deferred.append(relative)
                index += 1
                continue
            transient = _transient(error, mode)
            if transient and retried != index:
                retried = index
                continue  # once more; a second refusal counts as "cannot clone here"
            if not (transient or is_unsupported(error)):
                raise _tree_error(wheel, tree, relative, error, mode) from error
            reason = describe_os_error(error)
            probes[(devices[0], devices[1], mode)] = reason
            if state.fall_back(reason) is LinkMode.COPY:
                return total, deferred + files[index:]
            continue  # the same file again, one step down the chain
        state.decided = True
        index += 1
    return index, deferred


def place_rest(
    placer: Placer,
    wheel: str,
    tree: Tree,
    mode: LinkMode,
    files: Sequence[str],
    src_fd: int,
    dst_fd: int,
    checkpoint: Callable[[], None],
) -> list[str]:
    """Place ``files`` of ``tree`` with the decided ``mode`` in this thread; return those left
    for the copy phase. The caller holds the locks of their directories if ``mode`` copies."""
    create = None if in_loops(mode) else placer.creator(mode)
    failures = place_files(
        mode.value, tree.source + os.sep, src_fd, dst_fd, files, placer.umask, checkpoint, create
    )
    return settle(placer, wheel, tree, mode, failures, src_fd, dst_fd, checkpoint)


def settle(
    placer: Placer,
    wheel: str,
    tree: Tree,
    mode: LinkMode,
    failures: Sequence[tuple[str, int]],
    src_fd: int,
    dst_fd: int,
    checkpoint: Callable[[], None],
) -> list[str]:
    """Finish the files a bulk loop reported (``(name, errno)``, see ``_bulk``): replace those
    that exist atomically, leave those whose source has too many links (``EMLINK``) for the
    copy phase, and raise the error of any other. Returns the files left for the copy phase."""
    deferred: list[str] = []
    create = placer.creator(mode)
    source_fd = None if mode is LinkMode.SYMLINK else src_fd
    for position, (relative, code) in enumerate(failures):
        if not position % CHECK_EVERY:
            checkpoint()
        source = _link_source(mode, tree, relative)
        try:
            if code == errno.EEXIST:
                placer._replace(create, source_fd, source, dst_fd, relative, tree.target)
            elif code == errno.EAGAIN and mode is LinkMode.CLONE:  # once more, then a copy
                placer.put(create, source_fd, source, dst_fd, relative, tree.target)
            else:
                raise OSError(code, os.strerror(code), relative)
        except OSError as error:
            if not (
                (error.errno == errno.EMLINK and mode is LinkMode.HARDLINK)
                or _transient(error, mode)
            ):
                raise _tree_error(wheel, tree, relative, error, mode) from error
            deferred.append(relative)
    return deferred


def _transient(error: OSError, mode: LinkMode) -> bool:
    """``FICLONE`` refusing for now (``EAGAIN``): ZFS does, for blocks not yet written out
    (uv issue 19674). It is tried once more, then the file is copied."""
    return error.errno == errno.EAGAIN and mode is LinkMode.CLONE


def in_loops(mode: LinkMode) -> bool:
    """Whether ``_bulk``'s loops, and so a helper process, place files with ``mode`` (clones
    only where the ``FICLONE`` ioctl is; elsewhere a :class:`Placer` clones one by one)."""
    return mode.value in LOOP_MODES


def _link_source(mode: LinkMode, tree: Tree, relative: str) -> str:
    """What ``mode`` creates ``relative`` from: a symlink's text is the absolute source."""
    return tree.source + os.sep + relative if mode is LinkMode.SYMLINK else relative


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
