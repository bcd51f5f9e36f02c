"""Installs that complete or leave the target as it was: a lock, a journal, a stash, a rollback.

In the target's site-packages (``root``)::

    .asynclink-lock                      flock()ed for the whole install: one installer at a time
    .asynclink-journal/<pid>-<time>/
        journal                          what the install does, each record written before it
        stash/<n>                        files replaced or removed, hard-linked (or copied) aside;
                                         directories removed whole, renamed there
        trash/<n>                        directories a rollback took out, waiting to be deleted

Records, in the order the install wrote them:

``H asynclink-journal format root device inode roots``
    first: whose journal this is. Recovery acts on a journal only if it was written for this
    very site-packages (same path, device and inode) and every root it names is one of the
    environment's own directories; every path of every record must then lie in those roots.
``W wheel dirs destinations existing``
    before a wheel creates anything: the directories it is about to create (none existed a
    moment before, and the install holds the lock, so whatever is at those paths later came
    from the install), the paths it will create or replace outside those directories, and
    which of these already exist. Undo removes the destinations that did not exist, then the
    directories whole.
``R path stash``
    before ``path`` is replaced: the old file is linked to ``stash`` first. Undo moves it back.
``X path stash``
    before ``path`` (a file, or a symlink, of an older version) is removed; or a directory
    in which everything is removed, renamed into the stash whole. Undo moves it back.
``D path mode``
    before an emptied directory of an older version is removed. Undo recreates it.
``C``
    the install committed; the journal and stash are only waiting to be deleted.
``U``
    the install was undone; the journal, its stash and its trash are only waiting to be
    deleted.

Undo takes a directory the install created out of the way with one rename, into the
journal's ``trash/`` (same directory, so same filesystem), however many files it holds: the
rollback's time does not grow with the install's. It then deletes the journal, trash and all,
up to :data:`DISCARD_AT_ONCE` files, and leaves the rest to a background ``rm -rf`` (the
interpreter waits for it before it exits; if it is killed first, the next install into the
target, or :func:`recover`, deletes it): the ``await`` returns once site-packages is as it
was but for that hidden journal. Where the rename cannot be made (a directory on another
filesystem) the directory is removed in place. A commit deletes its journal the same way:
an uninstall renames each directory that goes whole into the stash, and the ``await``
returns without waiting for tens of thousands of unlinks.

Undo walks the records backwards, so the rollback of a live failure and the recovery from a
crash (the next install finds a journal without ``C``) are one function. A file written by one
wheel and replaced by another comes back right: the later ``R`` restores the earlier wheel's
file, then the earlier ``W`` removes it. Records are appended with one ``write`` each to an
``O_APPEND`` file; without ``fsync``: a killed process loses nothing, a power cut might.

A journal is input like any other: a wheel cannot ship one (names starting with
``.asynclink-`` are refused in wheels), but whatever is found in the target is checked before
it is acted on, and undo never follows a symlink out of the environment. Anything else is
refused with :class:`~asynclink.TargetError` and left where it is.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import fcntl
import itertools
import logging
import os
import re
import stat
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import cast

import anyio
import anyio.lowlevel

from ._confinement import JOURNAL_NAME, LOCK_NAME, Confinement, printable
from ._errors import LockTimeoutError, RollbackError, TargetError
from ._events import EventCallback, LockAcquired, WaitingForLock
from ._fsutil import absolute, remove_tree
from ._placing import TEMPORARY_PREFIX, Recorder, write_all
from ._plan import WheelPlan, single_destinations
from ._results import RollbackReport

__all__ = ["Transaction", "finish_discards", "recover", "recover_journals", "transaction"]

logger = logging.getLogger("asynclink")

#: What the first record of every journal starts with, and the format this module writes.
_MAGIC = "asynclink-journal"
_FORMAT = "2"
_END = b"\0\n"
#: A journal directory's parts beside its ``journal`` file: what it replaced, what it undid.
_STASH, _TRASH = "stash", "trash"
#: Errors that mean "there is nothing at that path", so there is nothing to undo.
_NOT_THERE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG})
#: A journal directory's name: the writer's process id and the time it began, in hex.
_ENTRY_NAME = re.compile(r"^([0-9]{1,10})-[0-9a-f]{1,20}$")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

Record = tuple[object, ...]


class JournalError(Exception):
    """A journal found in the target is not one this module wrote for it (the reason)."""


class Transaction(Recorder):
    """The journal of one install, and the means to undo it; see the module docstring."""

    def __init__(self, root: str, confinement: Confinement) -> None:
        self.root = root
        self.confinement = confinement
        self.directory = os.path.join(root, JOURNAL_NAME, f"{os.getpid()}-{time.time_ns():x}")
        self._stash_dir = os.path.join(self.directory, _STASH)
        for attempt in range(3):  # a background discard may remove the journals' parent
            try:
                os.makedirs(self._stash_dir)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        self._fd = os.open(
            os.path.join(self.directory, "journal"),
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC | _NOFOLLOW,
            0o600,
        )
        self._records: list[Record] = []
        self.discarded = False
        """Whether :meth:`commit` or :meth:`rollback` deleted the whole journal."""
        self.recovered: tuple[RollbackReport, ...] = ()
        """Reports of crashed installs undone before this one began."""
        self._write_lock = threading.Lock()
        self._replace_lock = threading.Lock()
        self._stash_names = itertools.count()
        info = os.stat(root)
        self._append(
            (
                "H",
                _MAGIC,
                _FORMAT,
                root,
                str(info.st_dev),
                str(info.st_ino),
                list(confinement.roots),
            )
        )

    # -- writing ---------------------------------------------------------------------------------

    def _append(self, record: Record) -> None:
        data = _encode(record)
        with self._write_lock:
            write_all(self._fd, data)
            self._records.append(record)

    def begin_wheel(self, plan: WheelPlan, new_dirs: Sequence[str]) -> None:
        """Write the wheel's ``W`` record, before it creates anything: the directories it is
        about to create, and the files it will put into directories it does not create (with
        those already there). Files inside the new directories need no record: undoing
        removes those directories whole."""
        created = set(new_dirs)
        lexists = os.path.lexists
        loose = list(_loose(plan, created))
        existing = [path for path in loose if lexists(path)]
        self._append(("W", printable(plan.wheel), list(new_dirs), loose, existing))

    @contextlib.contextmanager
    def replacing(self, path: str) -> Iterator[None]:
        # Record, stash and rename as one step: two wheels replacing the same file must leave
        # their records in the order of their renames, or undo would restore the wrong file.
        with self._replace_lock:
            self._stash("R", path)
            yield

    def remove_file(self, path: str) -> None:
        """Remove ``path`` (a file or symlink of an older version), keeping it in the stash.

        The caller has checked that ``path`` is inside the environment and that no symlink on
        the way leads out of it (a symlink at ``path`` itself is removed as a link)."""
        self._stash("X", path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def remove_directory(self, path: str) -> bool:
        """Remove the directory ``path`` whole, with one rename into the stash (an ``X``
        record, as for a file); say if it went (a rename fails across filesystems).

        The caller has checked that everything in it is to be removed, and that no symlink on
        the way leads out of the environment."""
        name = str(next(self._stash_names))
        self._append(("X", path, name))
        try:
            os.rename(path, os.path.join(self._stash_dir, name))
        except OSError:
            return False  # undo finds no stash entry of this record: nothing to put back
        return True

    def remove_dir(self, path: str) -> bool:
        """Remove ``path`` if it is an empty directory, remembering its mode; say if it was."""
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode):
            return False
        self._append(("D", path, f"{stat.S_IMODE(info.st_mode):o}"))
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
            import shutil  # here: it imports bz2 and lzma, 3 ms of every command's start-up

            shutil.copy2(path, stash, follow_symlinks=False)

    # -- ending ----------------------------------------------------------------------------------

    def commit(self) -> None:
        """The install is done: record it, then delete the journal and the stash, or as much
        of them as :data:`DISCARD_AT_ONCE` allows (then ``discarded`` is false)."""
        self._append(("C",))
        os.close(self._fd)
        self.discarded = _discard(self.directory, DISCARD_AT_ONCE)

    def rollback(self) -> RollbackReport:
        """Undo everything recorded, newest first, mark the journal undone and delete it, or
        as much of it as :data:`DISCARD_AT_ONCE` allows (then ``discarded`` is false)."""
        report = undo(self._records, self.directory, None, self.confinement)
        self._append(("U",))
        os.close(self._fd)
        self.discarded = _discard(self.directory, DISCARD_AT_ONCE)
        return report


def undo(
    records: Sequence[Record],
    journal_dir: str,
    temporary_prefix: str | None,
    confinement: Confinement,
) -> RollbackReport:
    """Put back what ``records`` (the journal in ``journal_dir``) did; see the module docstring
    for each kind.

    Files are undone newest first; the directories the install created go last, outermost
    first and whole (into the journal's trash), because two wheels may share one: the first
    to make it need not be the last to leave a file in it. Nothing is done through a symlink
    that leads out of ``confinement``: such a path is reported as a problem and left alone.
    ``temporary_prefix`` names the temporary files a crashed process may have left beside its
    destinations.
    """
    undoing = _Undo(journal_dir, temporary_prefix, confinement)
    for record in reversed(records):
        kind = record[0]
        if kind in ("R", "X"):
            undoing.restore(str(record[1]), str(record[2]), replaced=kind == "R")
        elif kind == "D":
            undoing.recreate(str(record[1]), int(str(record[2]), 8))
        elif kind == "W":
            undoing.remove_wheel(
                cast(list[str], record[2]), cast(list[str], record[3]), cast(list[str], record[4])
            )
    return undoing.finish()


class _Undo:
    """The state of one :func:`undo`: what it did, what it could not, what is left to do."""

    def __init__(
        self, journal_dir: str, temporary_prefix: str | None, confinement: Confinement
    ) -> None:
        self.stash_dir = os.path.join(journal_dir, _STASH)
        self.trash_dir = os.path.join(journal_dir, _TRASH)
        self.trash_made = False
        self.trash_names = (f"{os.getpid()}-{number}" for number in itertools.count())
        self.temporary_prefix = temporary_prefix
        self.confinement = confinement
        self.removed = self.restored = self.removed_dirs = self.recreated = 0
        self.problems: list[str] = []
        self.created: set[str] = set()
        """Directories the install made (from its ``W`` records), removed last."""
        self.gone: set[str] = set()

    def inside(self, path: str) -> bool:
        if self.confinement.resolves_inside(os.path.dirname(path)):
            return True
        self.problems.append(f"{path}: the way there leaves the environment; left alone")
        return False

    def restore(self, path: str, name: str, replaced: bool) -> None:
        """An ``R`` record (``replaced``) or an ``X`` one: the stashed file goes back to
        ``path``. A removal (``X``) whose file is still there never happened: nothing to do."""
        stash = os.path.join(self.stash_dir, name)
        if not os.path.lexists(stash) or not self.inside(path):
            return
        if path in self.created:  # a directory made where a link was detached: it goes first
            self.remove_created(path)
        elif not replaced and os.path.lexists(path):
            return
        try:
            _put_back(stash, path)
            self.restored += 1
        except OSError as error:
            self.problems.append(f"restore {path}: {error.strerror}")
            return
        if os.path.islink(path):  # what lies below it is elsewhere now: resolve afresh
            self.confinement.forget()

    def recreate(self, path: str, mode: int) -> None:
        """A ``D`` record: the emptied directory of an older version comes back."""
        if not self.inside(path):
            return
        try:
            os.mkdir(path, mode)
            os.chmod(path, mode)
            self.recreated += 1
        except FileExistsError:
            pass
        except OSError as error:
            self.problems.append(f"recreate {path}: {error.strerror}")

    def remove_wheel(self, dirs: list[str], loose: list[str], existing: list[str]) -> None:
        """A ``W`` record: the wheel's files outside its new directories go (not those that
        were there before: an ``R`` record restored them); its directories go at the end."""
        kept = set(existing)
        for path in loose:
            if path in kept or not os.path.lexists(path) or not self.inside(path):
                continue
            try:
                os.unlink(path)
                self.removed += 1
            except OSError as error:
                if error.errno not in _NOT_THERE:
                    self.problems.append(f"remove {path}: {error.strerror}")
        if self.temporary_prefix is not None:
            _remove_temporaries(loose, self.temporary_prefix, self.confinement)
        self.created.update(dirs)

    def remove_created(self, path: str) -> None:
        """Remove the directory ``path`` that the install created, whole: into the trash if
        it can be renamed there, else in place."""
        if not os.path.lexists(path) or not self.inside(path):
            return
        try:
            if not self.set_aside(path):
                self.removed += remove_tree(path)
        except OSError as error:
            if error.errno not in _NOT_THERE:
                self.problems.append(f"remove directory {path}: {error.strerror}")
            return
        self.removed_dirs += 1
        self.gone.add(path)

    def set_aside(self, path: str) -> bool:
        """Rename ``path`` into the trash; say if it went (not across filesystems)."""
        try:
            if not self.trash_made:
                os.makedirs(self.trash_dir, 0o700, exist_ok=True)
                self.trash_made = True
            os.rename(path, os.path.join(self.trash_dir, next(self.trash_names)))
        except OSError:
            return False
        return True

    def finish(self) -> RollbackReport:
        # Directories the install made go last, outermost first and whole: what is in them
        # (files of any wheel of the install, or a temporary a crash left) came with it.
        for path in sorted(self.created, key=len):
            if not _below(path, self.gone):
                self.remove_created(path)
        return RollbackReport(
            self.removed, self.restored, self.removed_dirs, self.recreated, tuple(self.problems)
        )


def _below(path: str, directories: set[str]) -> bool:
    """Whether ``path`` is one of ``directories`` or inside one: a look up its few parents,
    where comparing with every removed directory cost a rollback of a fresh install of the
    benchmark's corpus (3,600 directories made) a fifth of its time."""
    while path not in directories:
        path = path.rpartition(os.sep)[0]
        if not path:
            return False
    return True


def _put_back(stash: str, path: str) -> None:
    """Move ``stash`` to ``path`` atomically; across filesystems (a stash kept as a copy,
    for a file on another mount), by a copy beside ``path`` renamed over it."""
    try:
        os.replace(stash, path)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        import shutil

        temporary = f"{path}.{TEMPORARY_PREFIX}restore"
        shutil.copy2(stash, temporary, follow_symlinks=False)
        os.replace(temporary, path)


def recover_journals(root: str, confinement: Confinement) -> list[RollbackReport]:
    """Finish what crashed installs into ``root`` left: undo uncommitted journals; blocking.

    Call it holding the target's lock, so that no live install owns the journals found. A
    journal that was not written for ``root`` by this module, or that names a path outside
    ``confinement``, raises :class:`TargetError` and is left where it is, untouched.
    """
    parent = os.path.join(root, JOURNAL_NAME)
    try:
        info = os.lstat(parent)
    except FileNotFoundError:
        return []
    if not stat.S_ISDIR(info.st_mode):
        raise _refused(parent, "it is not a directory (a symlink, or a file)")
    found = sorted(os.listdir(parent))
    if not found:  # killed between making it and its first journal, or after the last went
        with contextlib.suppress(OSError):
            os.rmdir(parent)
        return []
    journals = [_read_journal(root, parent, entry, confinement) for entry in found]
    reports: list[RollbackReport] = []
    for entry, records in zip(found, journals, strict=True):
        directory = os.path.join(parent, entry)
        if records and records[-1] in _DONE:
            if directory not in _discarding:  # else this process is deleting it already
                _discard(directory)
            continue
        pid = entry.partition("-")[0]
        report = undo(records, directory, f"{TEMPORARY_PREFIX}{pid}-", confinement)
        logger.warning(
            "an earlier install into %s was interrupted (journal %s); %s", root, entry, report
        )
        reports.append(report)
        _discard(directory)
    return reports


#: The largest journal recovery reads: a record is a path or two and a few bytes more, so this
#: is millions of files, and far more than an install writes; a bigger one (a sparse file costs
#: no disk) is not one of asynclink's, and reading it whole would exhaust memory.
MAX_JOURNAL_BYTES = 256 << 20


def _read_journal(root: str, parent: str, entry: str, confinement: Confinement) -> list[Record]:
    """The records of one journal directory, checked; :class:`TargetError` if it is not one
    this module wrote for ``root`` (see the module docstring)."""
    directory = os.path.join(parent, entry)
    try:
        if _ENTRY_NAME.match(entry) is None:
            raise JournalError("its name is not one asynclink gives a journal")
        for path in (directory, os.path.join(directory, _STASH), os.path.join(directory, _TRASH)):
            with contextlib.suppress(FileNotFoundError):  # killed before it was made
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    raise JournalError(f"{path} is not a directory")
        try:
            # O_NONBLOCK: a FIFO planted as the journal is refused below, not waited on.
            flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | _NOFOLLOW
            fd = os.open(os.path.join(directory, "journal"), flags)
        except FileNotFoundError:
            return []  # killed before its first record: it did nothing
        except OSError as error:
            raise JournalError(f"its journal cannot be read ({error.strerror})") from None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise JournalError("its journal is not a file")
            if info.st_size > MAX_JOURNAL_BYTES:
                raise JournalError(
                    f"its journal is {info.st_size:,} bytes, more than any install writes"
                )
            records = _decode(handle.read())
        _check(records, root, confinement)
    except JournalError as error:
        raise _refused(directory, str(error)) from None
    return records


def _refused(path: str, reason: str) -> TargetError:
    return TargetError(
        f"refusing to recover from {path}: {reason}, so it is not a journal asynclink wrote "
        "for this environment. It was left as it is; look at it, then remove it to install here"
    )


def _check(records: list[Record], root: str, confinement: Confinement) -> None:
    """Raise :class:`JournalError` unless ``records`` are a journal for ``root`` that keeps
    to ``confinement``."""
    if not records:
        return
    header = records[0]
    if header[0] != "H" or header[1] != _MAGIC:
        raise JournalError("it does not start as an asynclink journal does")
    if header[2] != _FORMAT:
        raise JournalError(f"it is in journal format {header[2]!r}, not {_FORMAT!r}")
    info = os.stat(root)
    if header[4:6] != (str(info.st_dev), str(info.st_ino)):
        raise JournalError(f"it was written for {header[3]!r}, not for this directory")
    roots = cast(list[str], header[6])
    if not roots or not all(confinement.holds(path) for path in roots):
        raise JournalError(f"it names directories outside the environment ({roots})")
    bounds = Confinement.of(roots)
    for number, record in enumerate(records[1:], start=2):
        kind = record[0]
        if kind == "W":
            paths = [
                *cast(list[str], record[2]),
                *cast(list[str], record[3]),
                *cast(list[str], record[4]),
            ]
        elif kind in ("R", "X"):
            paths = [str(record[1])]
            if not str(record[2]).isdigit():
                raise JournalError(f"record {number} names the stash entry {record[2]!r}")
        elif kind == "D":
            paths = [str(record[1])]
            mode = str(record[2])
            if not (mode and len(mode) <= 4 and all(digit in "01234567" for digit in mode)):
                raise JournalError(f"record {number} gives the mode {mode!r}")
        elif kind in ("C", "U") and number == len(records):
            paths = []
        else:
            raise JournalError(f"record {number} is of an unknown kind {kind!r}")
        for path in paths:
            # Inside the roots, and never site-packages itself or a directory above it.
            if not bounds.holds(path) or path == root or root.startswith(path + os.sep):
                raise JournalError(f"record {number} names {path!r}, outside the environment")


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


def _remove_temporaries(paths: Sequence[str], prefix: str, confinement: Confinement) -> None:
    """Temporary files a crashed process left next to its destinations (it names them)."""
    for directory in {path.rpartition(os.sep)[0] for path in paths}:
        if not confinement.resolves_inside(directory):
            continue
        with contextlib.suppress(OSError):
            for name in os.listdir(directory):
                if name.startswith(prefix):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(directory, name))


#: The last record of a journal that only waits to be deleted: committed, or undone.
_DONE = (("C",), ("U",))
#: How many files of a journal a commit or a rollback deletes before it returns (its stash:
#: what an upgrade or an uninstall removed; its trash: what an undone install had placed); a
#: background thread deletes the rest (about 5 ms on tmpfs, so a small install leaves nothing
#: behind it, and a large uninstall or rollback still returns at once).
DISCARD_AT_ONCE = 1000
#: Journal directories this process's background threads are deleting, and those threads.
_discarding: dict[str, threading.Thread] = {}


def _discard(directory: str, limit: int | None = None) -> bool:
    """Delete a journal directory (with ``limit``, that many files of it at most), and the
    journals' parent once no journal is left; say if the journal is gone.

    The trash and the stash go first and the journal's own records last, so a journal cut
    short still says it was undone. Another process's recovery may be deleting the same
    directory at the same time, so a removal that finds an entry gone has a second try."""
    for path in (os.path.join(directory, _TRASH), os.path.join(directory, _STASH), directory):
        for _ in range(2):
            try:
                removed = remove_tree(path, limit)
                limit = None if limit is None else max(limit - removed, 0)
                break
            except FileNotFoundError:
                continue
            except OSError:
                break
        if os.path.lexists(path) or limit == 0:
            return False
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(directory))  # .asynclink-journal, once no journal is left
    return True


def _rm_rf(directory: str) -> None:
    """``rm -rf`` ``directory``: a process of its own, which holds no lock of this
    interpreter's while it deletes tens of thousands of files."""
    import subprocess

    with contextlib.suppress(OSError):
        subprocess.run(
            ["rm", "-rf", "--", directory],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )


def discard_in_background(directory: str, roots: Sequence[str] = ()) -> None:
    """Delete a finished journal ``directory`` in a thread, then ``roots`` if they are empty.

    The thread is not a daemon: the interpreter waits for it before it exits
    (:func:`finish_discards` waits for it sooner)."""

    def work() -> None:
        try:
            _rm_rf(directory)
            _discard(directory)  # what rm could not do (no rm), and the journals' parent
            _remove_roots(roots)
        finally:
            _discarding.pop(directory, None)

    thread = threading.Thread(target=work, name="asynclink-discard")
    _discarding[directory] = thread
    thread.start()


def finish_discards() -> None:
    """Wait until every journal this process set out to delete is gone."""
    for thread in list(_discarding.values()):
        thread.join()


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


_SHAPES = {"H": "sssssL", "W": "sLLL", "R": "ss", "X": "ss", "D": "ss", "C": "", "U": ""}


def _decode(data: bytes) -> list[Record]:
    """The records of a journal; an unterminated last record never happened (the writer was
    killed in the middle of its ``write``). Raises :class:`JournalError` for anything this
    module cannot have written."""
    records: list[Record] = []
    for number, chunk in enumerate(data.split(_END)[:-1], start=1):
        fields = chunk.decode("utf-8", "surrogateescape").split("\0")
        kind, position = fields[0], 1
        shape = _SHAPES.get(kind)
        if shape is None:
            raise JournalError(f"record {number} is of an unknown kind {kind[:20]!r}")
        values: list[object] = [kind]
        try:
            for part in shape:
                if part == "s":
                    values.append(fields[position])
                    position += 1
                else:
                    count = int(fields[position])
                    if count < 0 or position + 1 + count > len(fields):
                        raise ValueError
                    values.append(fields[position + 1 : position + 1 + count])
                    position += 1 + count
        except (IndexError, ValueError):
            raise JournalError(f"record {number} is malformed") from None
        if position != len(fields):
            raise JournalError(f"record {number} is malformed")
        records.append(tuple(values))
    return records


# -- the lock ------------------------------------------------------------------------------------


class TargetLock:
    """An exclusive ``flock`` on ``<root>/.asynclink-lock``, held for a whole install.

    The holder removes the file when it lets go, so an install leaves nothing behind. That
    is safe because a waiter that locked a file which has since been removed notices (the
    path no longer names its file) and tries again. The file is opened without following a
    symlink: a lock planted as a symlink to a file elsewhere is refused, not created there.
    """

    def __init__(self, root: str) -> None:
        self.path = os.path.join(root, LOCK_NAME)
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; blocking only for a few syscalls."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | _NOFOLLOW, 0o644)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise TargetError(
                    f"{self.path} is a symlink, not asynclink's lock; it was left as it is: "
                    "look at it, then remove it to install here"
                ) from None
            raise
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise TargetError(f"{self.path} is not a file; it was left as it is")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.lstat(self.path).st_ino == info.st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return False
        self._fd = fd
        return True

    @property
    def fd(self) -> int | None:
        """The locked descriptor while the lock is held: a process given a copy (a helper,
        with each request) holds the lock until it closes it, even if this process dies."""
        return self._fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if os.lstat(self.path).st_ino == os.fstat(self._fd).st_ino:
                os.unlink(self.path)
        os.close(self._fd)  # closing drops the flock
        self._fd = None


async def wait_for(
    lock: TargetLock, limiter: anyio.CapacityLimiter, on_event: EventCallback | None
) -> float:
    """Take ``lock``, waiting (and saying so once) while another installer holds it; return
    how long that took."""
    started = time.perf_counter()
    if not await anyio.to_thread.run_sync(lock.try_acquire, limiter=limiter):
        root = os.path.dirname(lock.path)
        logger.warning("waiting for another installer to finish with %s", root)
        if on_event is not None:
            on_event(WaitingForLock(root))
        delay = 0.01
        while not await anyio.to_thread.run_sync(lock.try_acquire, limiter=limiter):
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.25)
    return time.perf_counter() - started


@contextlib.asynccontextmanager
async def _locked(
    root: str,
    confinement: Confinement,
    lock_timeout: float | None,
    limiter: anyio.CapacityLimiter,
    on_event: EventCallback | None = None,
) -> AsyncIterator[tuple[TargetLock, list[RollbackReport]]]:
    """Hold ``root``'s lock, having undone what crashed installs left; yield the lock and their
    reports."""
    lock = TargetLock(root)
    try:
        with anyio.fail_after(lock_timeout):
            waited = await wait_for(lock, limiter, on_event)
    except TimeoutError:  # before OSError, of which it is a subclass
        raise LockTimeoutError(
            f"another installer kept {lock.path} locked for more than {lock_timeout:g}s"
        ) from None
    except OSError as error:
        raise TargetError(f"cannot lock {lock.path}: {error.strerror}") from error
    try:  # from here on, whatever happens (a callback that raises included) lets go of it
        if on_event is not None:
            on_event(LockAcquired(root, waited))
        yield (
            lock,
            await anyio.to_thread.run_sync(recover_journals, root, confinement, limiter=limiter),
        )
    finally:
        lock.release()


@contextlib.asynccontextmanager
async def transaction(
    root: str,
    limiter: anyio.CapacityLimiter,
    *,
    confinement: Confinement | None = None,
    lock_timeout: float | None = None,
    created_roots: Sequence[str] = (),
    on_event: EventCallback | None = None,
) -> AsyncIterator[Transaction]:
    """Lock ``root``, recover crashed installs, and run the body as one transaction.

    Blocking work goes to threads of the install's own ``limiter``. ``confinement`` is the
    environment the body may change (default: ``root`` alone). On any
    exception (cancellation included) the body's changes are undone, shielded from
    cancellation, and the exception carries a note saying what was rolled back; if something
    could not be put back, a :class:`RollbackError` is raised from it instead (cancellation is
    never replaced). ``created_roots`` are directories made for this install (site-packages of
    a new target): they are removed on rollback if empty.
    """
    bounds = confinement or Confinement.of([root])
    undone = committed = None
    try:
        async with _locked(root, bounds, lock_timeout, limiter, on_event) as (lock, recovered):
            journal = await anyio.to_thread.run_sync(Transaction, root, bounds, limiter=limiter)
            journal.recovered = tuple(recovered)
            journal.held_fds = (lock.fd,) if lock.fd is not None else ()
            try:
                yield journal
                # A cancellation that came while the body's last step ran in a thread (it
                # cannot be cut short) is delivered here, before the commit, which is then
                # shielded: the batch is rolled back or committed, never left half way.
                await anyio.lowlevel.checkpoint_if_cancelled()
            except BaseException as error:
                with anyio.CancelScope(shield=True):
                    report = await anyio.to_thread.run_sync(journal.rollback, limiter=limiter)
                undone = journal
                _log_rollback(root, error, report)
                error.add_note(str(report))
                if report.problems and isinstance(error, Exception):
                    raise RollbackError(f"{error}; {report}") from error
                raise
            else:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(journal.commit, limiter=limiter)
                committed = journal
    finally:
        if undone is not None and undone.discarded:  # the lock (a file in root) is gone now,
            with anyio.CancelScope(shield=True):  # so root can go too
                await anyio.to_thread.run_sync(_remove_roots, created_roots, limiter=limiter)
        elif undone is not None:
            discard_in_background(undone.directory, created_roots)
        elif committed is not None and not committed.discarded:
            discard_in_background(committed.directory)


def _log_rollback(root: str, error: BaseException, report: RollbackReport) -> None:
    """Say what a rollback did, loudly only when it could not put everything back.

    The caller gets the error itself, with the report as a note; a cancellation is the
    host's own doing. Neither is worth a warning on a host application's stderr.
    """
    if report.problems:
        logger.error("install into %s failed (%s); %s", root, error, report)
    else:
        what = "was cancelled" if isinstance(error, anyio.get_cancelled_exc_class()) else "failed"
        logger.info("install into %s %s; %s", root, what, report)


async def recover(
    site_packages: str | os.PathLike[str],
    *,
    environment: Sequence[str | os.PathLike[str]] | None = None,
    lock_timeout: float | None = None,
) -> list[RollbackReport]:
    """Undo what crashed installs left in ``site_packages``; return what each undo did.

    Any install into the same place does this first; call it to clean up without installing.
    ``environment`` lists the directories an install may have changed (default: the virtual
    environment around ``site_packages``, else ``site_packages`` alone); a journal that
    names anything outside them is refused with :class:`TargetError` and left alone.
    """
    root = absolute(site_packages)
    roots = [absolute(path) for path in environment] if environment else _environment_of(root)
    limiter = anyio.CapacityLimiter(1)
    async with _locked(root, Confinement.of(roots), lock_timeout, limiter) as (_, recovered):
        return recovered


def _environment_of(site_packages: str) -> list[str]:
    """The virtual environment holding ``site_packages`` (a ``pyvenv.cfg`` at most four levels
    up), else ``site_packages`` itself."""
    directory = site_packages
    for _ in range(4):
        directory = os.path.dirname(directory)
        if os.path.isfile(os.path.join(directory, "pyvenv.cfg")):
            return [directory]
    return [site_packages]


def _remove_roots(roots: Sequence[str]) -> None:
    for path in reversed(roots):
        with contextlib.suppress(OSError):
            os.rmdir(path)
