"""Installs that complete or leave the target as it was: a lock, a journal, a stash, a rollback.

In the target's site-packages (``root``)::

    .asynclink-lock                      flock()ed for the whole install: one installer at a time
    .asynclink-journal/<pid>-<time>/
        journal                          what the install does, each record written before it
        stash/<n>                        files replaced or removed, hard-linked (or copied) aside

Records, in the order the install wrote them:

``W wheel created-dirs destinations existing``
    before a wheel places any file: the directories it just created, the paths it will create
    or replace outside those directories, and which of these already existed. Undo removes the
    destinations that did not exist, then the created directories whole.
``R path stash``
    before ``path`` is replaced: the old file is linked to ``stash`` first. Undo moves it back.
``X path stash``
    before ``path`` (a file of an older version) is removed. Undo moves it back.
``D path mode``
    before an emptied directory of an older version is removed. Undo recreates it.
``C``
    the install committed; the journal and stash are only waiting to be deleted.

Undo walks the records backwards, so the rollback of a live failure and the recovery from a
crash (the next install finds a journal without ``C``) are one function. A file written by one
wheel and replaced by another comes back right: the later ``R`` restores the earlier wheel's
file, then the earlier ``W`` removes it. Records are appended with one ``write`` each to an
``O_APPEND`` file; without ``fsync``: a killed process loses nothing, a power cut might.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import fcntl
import itertools
import logging
import os
import shutil
import stat
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import cast

import anyio

from ._errors import LockTimeoutError, RollbackError, TargetError
from ._fsutil import absolute
from ._link import TEMPORARY_PREFIX, Recorder, write_all
from ._plan import WheelPlan, single_destinations

__all__ = ["RollbackReport", "Transaction", "recover", "recover_journals", "transaction"]

logger = logging.getLogger("asynclink")

LOCK_NAME = ".asynclink-lock"
JOURNAL_NAME = ".asynclink-journal"
_END = b"\0\n"
#: Errors that mean "there is nothing at that path", so there is nothing to undo.
_NOT_THERE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG})

Record = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class RollbackReport:
    """What undoing an install did, and what it could not put back."""

    removed_files: int = 0
    restored_files: int = 0
    removed_dirs: int = 0
    recreated_dirs: int = 0
    problems: tuple[str, ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        text = (
            f"rolled back: removed {self.removed_files} files and {self.removed_dirs} "
            f"directories, restored {self.restored_files} files and {self.recreated_dirs} "
            "directories"
        )
        if self.problems:
            text += "; could not undo: " + "; ".join(self.problems)
        return text


class Transaction(Recorder):
    """The journal of one install, and the means to undo it; see the module docstring."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.directory = os.path.join(root, JOURNAL_NAME, f"{os.getpid()}-{time.time_ns():x}")
        self._stash_dir = os.path.join(self.directory, "stash")
        os.makedirs(self._stash_dir)
        self._fd = os.open(
            os.path.join(self.directory, "journal"),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
            0o644,
        )
        self._records: list[Record] = []
        self.recovered: tuple[RollbackReport, ...] = ()
        """Reports of crashed installs undone before this one began."""
        self._write_lock = threading.Lock()
        self._replace_lock = threading.Lock()
        self._stash_names = itertools.count()

    # -- writing ---------------------------------------------------------------------------------

    def _append(self, record: Record) -> None:
        data = _encode(record)
        with self._write_lock:
            write_all(self._fd, data)
            self._records.append(record)

    def begin_wheel(self, plan: WheelPlan, created_dirs: Sequence[str]) -> None:
        """Write the wheel's ``W`` record: the directories it made, and the files it will put
        into directories it did not make (with those already there). Files inside the
        directories it made need no record: undoing removes those directories whole."""
        created = set(created_dirs)
        lexists = os.path.lexists
        loose = list(_loose(plan, created))
        existing = [path for path in loose if lexists(path)]
        self._append(("W", plan.wheel, list(created_dirs), loose, existing))

    @contextlib.contextmanager
    def replacing(self, path: str) -> Iterator[None]:
        # Record, stash and rename as one step: two wheels replacing the same file must leave
        # their records in the order of their renames, or undo would restore the wrong file.
        with self._replace_lock:
            self._stash("R", path)
            yield

    def remove_file(self, path: str) -> None:
        """Remove ``path`` (a file or symlink of an older version), keeping it in the stash."""
        self._stash("X", path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def remove_dir(self, path: str) -> bool:
        """Remove ``path`` if it is an empty directory, remembering its mode; say if it was."""
        mode = stat.S_IMODE(os.lstat(path).st_mode)
        self._append(("D", path, f"{mode:o}"))
        try:
            os.rmdir(path)
        except OSError:
            return False  # not empty after all: the record only recreates what is missing
        return True

    def _stash(self, kind: str, path: str) -> None:
        name = str(next(self._stash_names))
        self._append((kind, path, name))
        stash = os.path.join(self._stash_dir, name)
        try:
            os.link(path, stash, follow_symlinks=False)
        except FileNotFoundError:
            pass  # nothing there any more: nothing to keep
        except OSError:  # another filesystem, or no hard links: keep a copy instead
            shutil.copy2(path, stash, follow_symlinks=False)

    # -- ending ----------------------------------------------------------------------------------

    def commit(self) -> None:
        """The install is done: record it, then forget the journal and the stash."""
        self._append(("C",))
        os.close(self._fd)
        _discard(self.directory)

    def rollback(self) -> RollbackReport:
        """Undo everything recorded, newest first, then forget the journal."""
        os.close(self._fd)
        report = undo(self._records, self._stash_dir, temporary_prefix=None)
        _discard(self.directory)
        return report


def undo(records: Sequence[Record], stash_dir: str, temporary_prefix: str | None) -> RollbackReport:
    """Put back what ``records`` did; see the module docstring for each kind.

    Files are undone newest first; the directories the install created go last, deepest
    first, because two wheels may share one: the first to make it need not be the last to
    leave a file in it.
    """
    removed = restored = removed_dirs = recreated = 0
    problems: list[str] = []
    created: set[str] = set()
    for record in reversed(records):
        kind = record[0]
        if kind in ("R", "X"):
            path, name = str(record[1]), str(record[2])
            stash = os.path.join(stash_dir, name)
            if not os.path.lexists(stash):
                continue
            try:
                os.replace(stash, path)
                restored += 1
            except OSError as error:
                problems.append(f"restore {path}: {error.strerror}")
        elif kind == "D":
            path, mode = str(record[1]), int(str(record[2]), 8)
            try:
                os.mkdir(path, mode)
                os.chmod(path, mode)
                recreated += 1
            except FileExistsError:
                pass
            except OSError as error:
                problems.append(f"recreate {path}: {error.strerror}")
        elif kind == "W":
            loose = cast(list[str], record[3])
            kept = set(cast(list[str], record[4]))
            for path in loose:
                if path in kept:
                    continue
                try:
                    os.unlink(path)
                    removed += 1
                except OSError as error:
                    if error.errno not in _NOT_THERE:
                        problems.append(f"remove {path}: {error.strerror}")
            if temporary_prefix is not None:
                _remove_temporaries(loose, temporary_prefix)
            created.update(cast(list[str], record[2]))
    # Directories the install made go last, outermost first and whole: what is in them (files
    # of any wheel of the install, or a temporary a crash left) came with the install.
    gone: list[str] = []
    for path in sorted(created, key=len):
        if any(path.startswith(parent + os.sep) for parent in gone):
            continue
        files, failure = _remove_tree(path)
        if failure is None:
            removed += files
            removed_dirs += 1
            gone.append(path)
        elif failure.errno not in _NOT_THERE:
            problems.append(f"remove directory {path}: {failure.strerror}")
    return RollbackReport(removed, restored, removed_dirs, recreated, tuple(problems))


def recover_journals(root: str) -> list[RollbackReport]:
    """Finish what crashed installs into ``root`` left: undo uncommitted journals; blocking.

    Call it holding the target's lock, so that no live install owns the journals found.
    """
    parent = os.path.join(root, JOURNAL_NAME)
    try:
        entries = sorted(os.listdir(parent))
    except FileNotFoundError:
        return []
    reports: list[RollbackReport] = []
    for entry in entries:
        directory = os.path.join(parent, entry)
        try:
            with open(os.path.join(directory, "journal"), "rb") as handle:
                records = _decode(handle.read())
        except FileNotFoundError:
            records = []
        if records and records[-1] == ("C",):
            _discard(directory)
            continue
        pid = entry.partition("-")[0]
        report = undo(records, os.path.join(directory, "stash"), f"{TEMPORARY_PREFIX}{pid}-")
        logger.warning(
            "an earlier install into %s was interrupted (journal %s); %s", root, entry, report
        )
        reports.append(report)
        _discard(directory)
    return reports


def _loose(plan: WheelPlan, created: set[str]) -> Iterator[str]:
    """The plan's destinations that are not inside a directory in ``created``.

    A tree whose files are sorted is taken a top-level block at a time (the files below one
    top-level directory are contiguous), so a fresh install checks a few dozen names, not
    every file.
    """
    sep = os.sep
    for tree in plan.trees:
        root, files = tree.target + sep, tree.files
        if tree.target in created:
            continue
        if not tree.sorted:
            for relative in files:
                head = relative.rpartition(sep)[0]
                if not head or root + head not in created:
                    yield root + relative
            continue
        index, total = 0, len(files)
        while index < total:
            name, separator, _ = files[index].partition(sep)
            if not separator:
                yield root + name
                index += 1
                continue
            end = bisect.bisect_left(files, name + chr(ord(sep) + 1), index)
            if root + name not in created:
                yield from (root + relative for relative in files[index:end])
            index = end
    yield from (path for path in single_destinations(plan) if os.path.dirname(path) not in created)


def _remove_tree(path: str) -> tuple[int, OSError | None]:
    """Remove a directory and everything in it; count the files."""
    files = 0
    try:
        for directory, dirnames, filenames in os.walk(path, topdown=False):
            for name in filenames:
                os.unlink(os.path.join(directory, name))
                files += 1
            for name in dirnames:
                child = os.path.join(directory, name)
                if os.path.islink(child):
                    os.unlink(child)
                    files += 1
                else:
                    os.rmdir(child)
        os.rmdir(path)
    except OSError as error:
        return files, error
    return files, None


def _remove_temporaries(paths: Sequence[str], prefix: str) -> None:
    """Temporary files a crashed process left next to its destinations (it names them)."""
    for directory in {path.rpartition(os.sep)[0] for path in paths}:
        with contextlib.suppress(OSError):
            for name in os.listdir(directory):
                if name.startswith(prefix):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(directory, name))


def _discard(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(directory))  # .asynclink-journal, once no journal is left


# -- the record format: NUL-separated fields (paths cannot hold NUL), lists led by a count ------


def _encode(record: Record) -> bytes:
    fields: list[str] = []
    for value in record:
        if isinstance(value, list):
            fields.append(str(len(value)))
            fields.extend(value)
        else:
            fields.append(str(value))
    return "\0".join(fields).encode("utf-8", "surrogateescape") + _END


_SHAPES = {"W": "sLLL", "R": "ss", "X": "ss", "D": "ss", "C": ""}


def _decode(data: bytes) -> list[Record]:
    records: list[Record] = []
    for chunk in data.split(_END)[:-1]:  # an unterminated last record never happened
        fields = chunk.decode("utf-8", "surrogateescape").split("\0")
        kind, position = fields[0], 1
        shape = _SHAPES.get(kind)
        if shape is None:
            break
        values: list[object] = [kind]
        for part in shape:
            if part == "s":
                values.append(fields[position])
                position += 1
            else:
                count = int(fields[position])
                values.append(fields[position + 1 : position + 1 + count])
                position += 1 + count
        records.append(tuple(values))
    return records


# -- the lock ------------------------------------------------------------------------------------


class TargetLock:
    """An exclusive ``flock`` on ``<root>/.asynclink-lock``, held for a whole install.

    The holder removes the file when it lets go, so an install leaves nothing behind. That
    is safe because a waiter that locked a file which has since been removed notices (the
    path no longer names its file) and tries again.
    """

    def __init__(self, root: str) -> None:
        self.path = os.path.join(root, LOCK_NAME)
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; blocking only for a few syscalls."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        try:
            same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return False
        self._fd = fd
        return True

    @property
    def fd(self) -> int | None:
        """The locked descriptor while the lock is held: processes that inherit it hold the
        lock until they exit, even if this process dies first."""
        return self._fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)  # closing drops the flock
        self._fd = None


async def wait_for(lock: TargetLock) -> None:
    """Take ``lock``, waiting (and saying so once) while another installer holds it."""
    if await anyio.to_thread.run_sync(lock.try_acquire):
        return
    logger.warning("waiting for another installer to finish with %s", os.path.dirname(lock.path))
    delay = 0.01
    while not await anyio.to_thread.run_sync(lock.try_acquire):
        await anyio.sleep(delay)
        delay = min(delay * 2, 0.25)


@contextlib.asynccontextmanager
async def _locked(
    root: str, lock_timeout: float | None
) -> AsyncIterator[tuple[TargetLock, list[RollbackReport]]]:
    """Hold ``root``'s lock, having undone what crashed installs left; yield the lock and their
    reports."""
    lock = TargetLock(root)
    try:
        with anyio.fail_after(lock_timeout):
            await wait_for(lock)
    except TimeoutError:  # before OSError, of which it is a subclass
        raise LockTimeoutError(
            f"another installer kept {lock.path} locked for more than {lock_timeout:g}s"
        ) from None
    except OSError as error:
        raise TargetError(f"cannot lock {lock.path}: {error.strerror}") from error
    try:
        yield lock, await anyio.to_thread.run_sync(recover_journals, root)
    finally:
        lock.release()


@contextlib.asynccontextmanager
async def transaction(
    root: str, *, lock_timeout: float | None = None, created_roots: Sequence[str] = ()
) -> AsyncIterator[Transaction]:
    """Lock ``root``, recover crashed installs, and run the body as one transaction.

    On any exception (cancellation included) the body's changes are undone, shielded from
    cancellation, and the exception carries a note saying what was rolled back; if something
    could not be put back, a :class:`RollbackError` is raised from it instead (cancellation is
    never replaced). ``created_roots`` are directories made for this install (site-packages of
    a new target): they are removed on rollback if empty.
    """
    rolled_back = False
    try:
        async with _locked(root, lock_timeout) as (lock, recovered):
            journal = await anyio.to_thread.run_sync(Transaction, root)
            journal.recovered = tuple(recovered)
            journal.held_fds = (lock.fd,) if lock.fd is not None else ()
            try:
                yield journal
            except BaseException as error:
                with anyio.CancelScope(shield=True):
                    report = await anyio.to_thread.run_sync(journal.rollback)
                rolled_back = True
                logger.warning("install into %s failed; %s", root, report)
                error.add_note(str(report))
                if report.problems and isinstance(error, Exception):
                    raise RollbackError(f"{error}; {report}") from error
                raise
            else:
                await anyio.to_thread.run_sync(journal.commit)
    finally:
        if rolled_back:  # the lock (a file in root) is gone now, so root can go too
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_remove_roots, created_roots)


async def recover(
    site_packages: str | os.PathLike[str], *, lock_timeout: float | None = None
) -> list[RollbackReport]:
    """Undo what crashed installs left in ``site_packages``; return what each undo did.

    Any install into the same place does this first; call it to clean up without installing.
    """
    async with _locked(absolute(site_packages), lock_timeout) as (_, recovered):
        return recovered


def _remove_roots(roots: Sequence[str]) -> None:
    for path in reversed(roots):
        with contextlib.suppress(OSError):
            os.rmdir(path)
