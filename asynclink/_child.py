"""What runs in a helper process: the hot loops, both helpers' mains, the socket and its messages.

Two kinds of helper (started and fed by ``_helpers``) answer framed requests on a socket (their
stdin and stdout), one at a time:

* the **file helper** (:func:`file_helper`) places many files of a few trees in one mode with
  the loops below: a bare interpreter (``python -I -S``, about 10 ms to start) that imports
  this module and nothing of asynclink, so that a second core places files while the first
  one plans. Threads cannot do that: every ``linkat`` releases and retakes the GIL, and two
  threads doing so take turns (see ``_scheduler.FILESYSTEM_THREADS``). The filesystem thread
  runs the very same loops for the files it places itself.
* the **unpacker** (:func:`unpacker`) unpacks an archive into the cache; it imports asynclink's
  cache lazily, so this module still loads with nothing but the standard library.

A loop creates files that must not exist yet and leaves everything else to its caller: a file
that exists, a source with too many links, a clone refused for now are reported and skipped;
any other error is reported and ends the loop. The caller (``_placing``) handles each report
the careful way, with the journal: an atomic replacement, a copy, or an error naming the wheel
and the path. The helper works on ``bytes`` paths, as they come off the socket; the thread on
``str`` ones; the loops take either.

A message is an 8-byte little-endian length and that many bytes. A file helper's request is
NUL-separated fields: the mode, then per tree (a :class:`TreeJob`) its source root, target
root, directory count, file count, directories and files. Its answer has, per tree with
something to report (a :class:`TreeAnswer`), the tree's index, whether its roots could be
opened (and its directories made), and each file it did not place with the ``errno``; an
empty answer means every file is in place.
"""

from __future__ import annotations

import errno
import os
import stat
import sys

TYPE_CHECKING = False  # not typing's: the helper imports neither typing nor collections
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Sequence
    from typing import AnyStr, TypeVar

    T = TypeVar("T")


class TreeJob:
    """Files of one tree for a file helper: the same relative names below both roots, and
    the directories below the target to make first (parents first; each may exist already:
    another piece of the tree, or another wheel, made it). The install's journal lists those
    directories before any is made, so the helper making them is as undoable as the thread."""

    __slots__ = ("dirs", "files", "source", "target")

    def __init__(
        self, source: str, target: str, files: Sequence[str], dirs: Sequence[str] = ()
    ) -> None:
        self.source, self.target, self.files, self.dirs = source, target, files, dirs


class TreeAnswer:
    """What a file helper reports of one tree of a job (the ``index``-th): when not
    ``opened``, it placed nothing of the tree (its roots could not be opened or its directories
    made: the caller places it itself, to report the error properly); otherwise the files it
    did not place, each with the ``errno`` that says why, as :func:`place_files` reports them."""

    __slots__ = ("failures", "index", "opened")

    def __init__(self, index: int, opened: bool, failures: list[tuple[str, int]]) -> None:
        self.index, self.opened, self.failures = index, opened, failures


_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_READ_FLAGS = os.O_RDONLY | _O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC
DIRECTORY_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _O_CLOEXEC
_COPY_CHUNK = 1 << 20
#: ``_IOW(0x94, 9, int)`` from ``linux/fs.h``: clone all of one file's extents into another.
FICLONE = 0x40049409
#: How many files a loop places between two looks at the cancellation state.
CHECK_EVERY = 256
#: Errors a loop reports and goes on after: the caller deals with those files one by one (a
#: file in the way, too many links to a source, a clone the filesystem refused for now).
SKIPPED = frozenset({errno.EEXIST, errno.EMLINK, errno.EAGAIN})
#: The modes the loops (and so the helper) do themselves: clones only through Linux's ioctl.
LOOP_MODES = frozenset(
    {"hardlink", "copy", "symlink"} | ({"clone"} if sys.platform.startswith("linux") else set())
)


def _nothing() -> None:
    pass


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file(
    dst_fd: int | None,
    destination: AnyStr,
    perms: int,
    umask: int,
    fill: Callable[[int, T], object],
    what: T,
) -> None:
    """Create ``destination`` (it must not exist) with exactly ``perms`` (not what the umask
    leaves of them), let ``fill(fd, what)`` put the bytes in, and remove it again if that
    fails."""
    fout = os.open(destination, _CREATE_FLAGS, perms, dir_fd=dst_fd)
    try:
        fill(fout, what)
        if perms & umask:
            os.fchmod(fout, perms)
    except BaseException:
        os.close(fout)
        unlink_quietly(destination, dst_fd)
        raise
    os.close(fout)


def copy_file(
    src_fd: int | None,
    source: AnyStr,
    dst_fd: int | None,
    destination: AnyStr,
    umask: int,
    clone: bool = False,
) -> None:
    """A full copy (or, with ``clone``, a copy-on-write clone) of ``source`` into the new file
    ``destination``, with the source's permission bits."""
    fin = os.open(source, _READ_FLAGS, dir_fd=src_fd)
    try:
        info = os.fstat(fin)
        fill = _clone_data if clone else _copy_data
        new_file(dst_fd, destination, info.st_mode & 0o7777, umask, fill, (fin, info.st_size))
    finally:
        os.close(fin)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written (a write may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _copy_data(fout: int, source: tuple[int, int]) -> None:
    """Copy ``size`` bytes in the kernel where it can (``sendfile``), else through a buffer."""
    fin, size = source
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


def _clone_data(fout: int, source: tuple[int, int]) -> None:
    import fcntl

    fcntl.ioctl(fout, FICLONE, source[0])


def unlink_quietly(path: AnyStr, dir_fd: int | None = None) -> None:
    try:  # noqa: SIM105 - contextlib is one more import for the helper
        os.unlink(path, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def make_dirs(dirs: Sequence[AnyStr], dst_fd: int | None) -> bool:
    """Make ``dirs`` below ``dst_fd``, parents first; one that exists is merged into if it is a
    directory (not a symlink). ``False`` at the first that cannot be made: the caller makes
    them itself, to report or resolve what is in the way."""
    mkdir, lstat, is_dir = os.mkdir, os.lstat, stat.S_ISDIR
    for path in dirs:
        try:
            mkdir(path, dir_fd=dst_fd)
        except FileExistsError:
            try:
                if not is_dir(lstat(path, dir_fd=dst_fd).st_mode):
                    return False
            except OSError:
                return False
        except OSError:
            return False
    return True


def place_files(
    mode: str,
    link_prefix: AnyStr,
    src_fd: int,
    dst_fd: int,
    files: Sequence[AnyStr],
    umask: int,
    checkpoint: Callable[[], None] = _nothing,
    create: Callable[[int, AnyStr, int, AnyStr], None] | None = None,
) -> list[tuple[AnyStr, int]]:
    """Create ``files`` below ``dst_fd`` from the same names below ``src_fd`` with ``mode``
    (a :class:`~asynclink.LinkMode` value; ``clone`` is Linux's ``FICLONE``), or with
    ``create(src_fd, name, dst_fd, name)`` if given (a clone elsewhere).

    A symlink's text is ``link_prefix`` and the name (the source root and a separator).
    Returns ``(name, errno)`` for each file not created (see the module docstring), in order;
    ``checkpoint`` is called every :data:`CHECK_EVERY` files and may raise to stop.
    """
    failures: list[tuple[AnyStr, int]] = []
    total = len(files)
    if mode == "hardlink" and create is None:  # the hottest loop: nothing but the linkat call
        link = os.link
        for start in range(0, total, CHECK_EVERY):
            checkpoint()
            for name in files[start : start + CHECK_EVERY]:
                try:
                    link(name, name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
                except OSError as error:
                    failures.append((name, error.errno or 0))
                    if error.errno not in SKIPPED:
                        return failures
        return failures
    for start in range(0, total, CHECK_EVERY):
        checkpoint()
        for name in files[start : start + CHECK_EVERY]:
            try:
                if create is not None:
                    create(src_fd, name, dst_fd, name)
                elif mode == "symlink":
                    os.symlink(link_prefix + name, name, dir_fd=dst_fd)
                else:
                    copy_file(src_fd, name, dst_fd, name, umask, mode == "clone")
            except OSError as error:
                failures.append((name, error.errno or 0))
                if error.errno not in SKIPPED:
                    return failures
    return failures


# -- the socket and its messages ---------------------------------------------------------------


def framed(payload: bytes) -> bytes:
    """``payload`` with the 8-byte length in front that both ends of a helper's socket use."""
    return len(payload).to_bytes(8, "little") + payload


def encode_job(mode: str, trees: Sequence[TreeJob]) -> bytes:
    """A file helper's request (unframed) to place ``trees`` with ``mode``."""
    fields = [mode]
    for tree in trees:
        fields += (tree.source, tree.target, str(len(tree.dirs)), str(len(tree.files)))
        fields += tree.dirs
        fields += tree.files
    return "\0".join(fields).encode("utf-8", "surrogateescape")


def decode_answer(payload: bytes) -> list[TreeAnswer]:
    """A file helper's answer: the trees it has something to report of."""
    if not payload:
        return []
    fields = payload.decode("utf-8", "surrogateescape").split("\0")
    answers: list[TreeAnswer] = []
    position = 0
    while position < len(fields):
        index, opened = int(fields[position]), fields[position + 1] == "1"
        count = int(fields[position + 2])
        pairs = fields[position + 3 : position + 3 + 2 * count]
        failures = [(pairs[i], int(pairs[i + 1])) for i in range(0, len(pairs), 2)]
        answers.append(TreeAnswer(index, opened, failures))
        position += 3 + 2 * count
    return answers


def _encode_answer(answers: list[tuple[int, bool, list[tuple[bytes, int]]]]) -> bytes:
    fields: list[bytes] = []
    for index, opened, failures in answers:
        fields += (b"%d" % index, b"1" if opened else b"0", b"%d" % len(failures))
        for name, code in failures:
            fields += (name, b"%d" % code)
    return b"\0".join(fields)


def serve(answer: Callable[[bytes], bytes]) -> None:
    """A helper's main loop: read framed requests from its socket (stdin and stdout) until
    the other end closes, and write the framed ``answer`` to each.

    A request may come with descriptors (``SCM_RIGHTS``): the target's lock, held open until
    the answer is written, so that a helper outliving a killed install keeps the next install
    (and its recovery) out until it has finished the piece it was given. Helpers outlive one
    install in a :class:`~asynclink.Session`, so the lock comes with each request rather than
    with the helper's birth.
    """
    import socket

    channel = socket.socket(fileno=0)
    while True:
        header, held, _, _ = socket.recv_fds(channel, 8, 16)
        if not header:
            return
        try:
            header += _receive_exactly(channel, 8 - len(header))
            payload = _receive_exactly(channel, int.from_bytes(header, "little"))
            channel.sendall(framed(answer(payload)))
        finally:
            for fd in held:
                os.close(fd)


def _receive_exactly(channel: socket.socket, size: int) -> bytes:
    """``size`` bytes from ``channel``; ``EOFError`` if it closes first."""
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        count = channel.recv_into(view[got:])
        if not count:
            raise EOFError("the other end closed in the middle of a message")
        got += count
    return bytes(buffer)


# -- the file helper ---------------------------------------------------------------------------


def _run_job(payload: bytes, umask: int) -> bytes:
    fields = payload.split(b"\0")
    mode = fields[0].decode()
    answers: list[tuple[int, bool, list[tuple[bytes, int]]]] = []
    position, index = 1, 0
    while position < len(fields):
        source, target = fields[position], fields[position + 1]
        dir_count, file_count = int(fields[position + 2]), int(fields[position + 3])
        position += 4
        dirs = fields[position : position + dir_count]
        files = fields[position + dir_count : position + dir_count + file_count]
        position += dir_count + file_count
        opened, failures = _place_tree(mode, source, target, dirs, files, umask)
        if failures or not opened:
            answers.append((index, opened, failures))
        index += 1
    return _encode_answer(answers)


def _place_tree(
    mode: str, source: bytes, target: bytes, dirs: list[bytes], files: list[bytes], umask: int
) -> tuple[bool, list[tuple[bytes, int]]]:
    """Make ``dirs``, then :func:`place_files`, for one tree given by its roots; whether its
    roots could be opened and its directories made (if not, nothing of it was placed)."""
    src_fd = dst_fd = -1
    try:
        src_fd = os.open(source, DIRECTORY_FLAGS)
        dst_fd = os.open(target, DIRECTORY_FLAGS)
        if not make_dirs(dirs, dst_fd):
            return False, []
        return True, place_files(mode, source + b"/", src_fd, dst_fd, files, umask)
    except OSError:
        return False, []
    finally:
        for fd in (src_fd, dst_fd):
            if fd >= 0:
                os.close(fd)


def file_helper() -> None:
    """The file helper's main: place the trees of each request (see the module docstring)."""
    umask = current_umask()
    serve(lambda payload: _run_job(payload, umask))


# -- the unpacker --------------------------------------------------------------------------------

#: An unpacker's answers: the archive is in the cache now, or was already; or it could not
#: unpack it, and the caller unpacks it itself, which raises the error in full.
UNPACKED, CACHED, FAILED = b"unpacked", b"cached", b"failed"


def unpacker(root: str) -> None:
    """The unpacker's main: unpack the archive each request names (JSON: path, size limit)
    into the cache at ``root``; answer :data:`UNPACKED`, :data:`CACHED` or :data:`FAILED`.

    ``SIGTERM`` (a cancelled install) stops an extraction at its next member, inside the
    extraction's own clean-up, so that its staging directory goes too; an idle helper exits.
    """
    import json
    import signal

    from ._cache import WheelCache

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
            return FAILED
        finally:
            extracting = False
            checkpoint()  # stopped after the last member: the entry is whole, and stays
        return CACHED if unpacked.cached else UNPACKED

    serve(answer)


if __name__ == "__main__":
    file_helper()
