"""The hot loops: many files of one tree created in one mode, and the file helper's main.

A loop here creates files that must not exist yet and leaves everything else to its caller: a
file that already exists, or (for hard links) whose source has too many links, is reported and
skipped; any other error is reported and ends the loop. The caller (``_link``) handles each
report the careful way: an atomic replacement recorded in the journal, a copy, or an error
naming the wheel and the path.

This module imports nothing from asynclink and nothing but the standard library's smallest
modules, because it is also a program: a file helper (``_helper.Helper``) is a bare
interpreter (``python -I -S``, about 10 ms to start) running :func:`main`, fed jobs on stdin,
so a second core places files while the first one does. Threads cannot do that: every
``linkat`` releases and retakes the GIL, and two threads doing so take turns (see
``_scheduler.FILESYSTEM_THREADS``). The helper works on ``bytes`` paths, as they come off the
pipe; the worker thread on ``str`` ones; the loops take either. :func:`serve`, the framing of
the pipe, serves the unpacking helper too.
"""

from __future__ import annotations

import errno
import os
import sys

TYPE_CHECKING = False  # not typing's: the helper does not import typing (milliseconds)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import AnyStr, TypeVar

    T = TypeVar("T")

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


# -- the helper process ---------------------------------------------------------------------
#
# A request is an 8-byte little-endian length and that many bytes: NUL-separated fields, the
# mode first, then for each tree its source root, target root, file count and files. The
# answer has the same framing: for each failure, the tree's index, the name and the errno
# (nothing when all went well). A tree whose directories cannot be opened is answered with an
# empty name, and the scheduler does that tree itself, to report the error properly.


def encode_job(mode: str, trees: Sequence[tuple[str, str, Sequence[str]]]) -> bytes:
    """The request (unframed) for ``trees`` of (source root, target root, files)."""
    fields = [mode]
    for source, target, files in trees:
        fields += (source, target, str(len(files)))
        fields += files
    return "\0".join(fields).encode("utf-8", "surrogateescape")


def decode_answer(payload: bytes) -> list[tuple[int, str, int]]:
    """(tree index, name, errno) of each file the helper did not create."""
    if not payload:
        return []
    fields = payload.decode("utf-8", "surrogateescape").split("\0")
    return [(int(fields[i]), fields[i + 1], int(fields[i + 2])) for i in range(0, len(fields), 3)]


def framed(payload: bytes) -> bytes:
    """``payload`` with the 8-byte length in front that both ends of a helper's pipe use."""
    return len(payload).to_bytes(8, "little") + payload


def _run_job(payload: bytes, umask: int) -> bytes:
    fields = payload.split(b"\0")
    mode = fields[0].decode()
    answer: list[bytes] = []
    position, index = 1, 0
    while position < len(fields):
        source, target, count = fields[position], fields[position + 1], int(fields[position + 2])
        files = fields[position + 3 : position + 3 + count]
        position += 3 + count
        for name, code in _place_tree(mode, source, target, files, umask):
            answer += (b"%d" % index, name, b"%d" % code)
        index += 1
    return b"\0".join(answer)


def _place_tree(
    mode: str, source: bytes, target: bytes, files: list[bytes], umask: int
) -> list[tuple[bytes, int]]:
    """:func:`place_files` for one tree given by its roots; a root that cannot be opened is
    reported as a failure with an empty name."""
    src_fd = dst_fd = -1
    try:
        src_fd = os.open(source, DIRECTORY_FLAGS)
        dst_fd = os.open(target, DIRECTORY_FLAGS)
        return place_files(mode, source + b"/", src_fd, dst_fd, files, umask)
    except OSError as error:
        return [(b"", error.errno or 0)]
    finally:
        for fd in (src_fd, dst_fd):
            if fd >= 0:
                os.close(fd)


def serve(answer: Callable[[bytes], bytes]) -> None:
    """A helper's main loop: read framed requests from stdin until it closes, and write the
    framed ``answer`` to each."""
    read, write = sys.stdin.buffer.read, sys.stdout.buffer
    while header := read(8):
        write.write(framed(answer(read(int.from_bytes(header, "little")))))
        write.flush()


def main() -> None:
    """The file helper: place the trees of each request (see the protocol above)."""
    umask = current_umask()
    serve(lambda payload: _run_job(payload, umask))


if __name__ == "__main__":
    main()
