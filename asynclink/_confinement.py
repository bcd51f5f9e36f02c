"""The bounds: the paths a wheel may name, and the directories an install may change.

A wheel names paths relative to itself: :func:`normalise_member` refuses every one that could
leave it (``..``, absolute and drive-letter paths, control characters), that no filesystem can
hold, or that asynclink keeps for its own state in an environment (``.asynclink-*``).

Everything asynclink changes lies inside the directories of one environment (the scheme's
purelib, platlib, scripts, headers and data; for :func:`asynclink.link_wheels`, the one
site-packages). Two things can lead outside while a path still *reads* as inside: a path
that is not normalised (``site-packages/../../etc``), and a symlink on the way
(``site-packages/pkg -> /elsewhere``). A :class:`Confinement` answers both, lexically first
(cheap, no syscalls) and then, where a change is about to happen in a directory that already
existed, by resolving it. A wheel, a RECORD, a journal or the target's own symlinks are all
hostile input here: nothing they say widens the bounds.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable

from ._errors import InvalidWheelError, TargetError

__all__ = [
    "CONTROL_CHARACTERS",
    "DRIVE_LETTER",
    "MAX_PATH_BYTES",
    "RESERVED_PREFIX",
    "Confinement",
    "check_path_length",
    "is_below",
    "is_file_name",
    "normalise_member",
    "printable",
    "reserved_name_error",
    "special_file_error",
]

#: Names asynclink keeps for itself in an environment (its lock, journal and temporaries): no
#: wheel may ship a file or directory whose name starts with it, in any scheme.
RESERVED_PREFIX = ".asynclink-"
#: The target's lock file and journal directory, in its site-packages.
LOCK_NAME = RESERVED_PREFIX + "lock"
JOURNAL_NAME = RESERVED_PREFIX + "journal"
#: The longest member path accepted, in bytes: a quarter of Linux's ``PATH_MAX``, longer than
#: any real wheel's, and short enough that the cache's own prefix still fits before it.
MAX_PATH_BYTES = 1024
_NAME_MAX = 255
DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
#: What no name from outside may hold: a filesystem or a terminal would take it for more than
#: a character (C0, DEL and C1, whose CSI starts escape sequences as ESC [ does).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def normalise_member(wheel: str, name: str) -> str:
    """The safe relative path of an archive member, or an error saying why it is not safe.

    Refused: absolute paths, drive letters, ``..`` anywhere (``\\`` counts as a separator for
    this check, so ``a\\..\\..\\x`` is caught on every platform), NUL and other control
    characters, names asynclink keeps for itself (``.asynclink-*``, in any directory), and
    paths too long for any filesystem to hold (see :func:`check_path_length`). ``.`` and
    empty components are dropped.
    """
    if not name:
        raise InvalidWheelError(wheel, "an archive entry has an empty name", entry=name)
    if CONTROL_CHARACTERS.search(name):
        raise InvalidWheelError(wheel, "control character in an entry name", entry=name)
    if name.startswith(("/", "\\")) or DRIVE_LETTER.match(name):
        raise InvalidWheelError(wheel, "absolute path in the archive", entry=name)
    if "\\" not in name and "/." not in name and not name.startswith(".") and "//" not in name:
        path = name.rstrip("/")  # the usual case: nothing to normalise
        check_path_length(wheel, path)
        return path
    parts = [part for part in re.split(r"[/\\]", name) if part not in ("", ".")]
    if ".." in parts:
        raise InvalidWheelError(wheel, "path leaves the wheel ('..')", entry=name)
    if not parts:
        raise InvalidWheelError(wheel, "an archive entry has an empty path", entry=name)
    if "\\" in name:
        raise InvalidWheelError(wheel, "backslash in an entry name", entry=name)
    if any(part.startswith(RESERVED_PREFIX) for part in parts):
        raise reserved_name_error(wheel, name)
    path = "/".join(parts)
    check_path_length(wheel, path)
    return path


def is_file_name(name: str) -> bool:
    """Whether ``name`` (an entry point's: it names a launcher) is one plain file name: not
    blank, not ``.`` or ``..``, and with no separator, drive letter or control character."""
    return not (
        not name.strip()
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or DRIVE_LETTER.match(name)
        or CONTROL_CHARACTERS.search(name)
    )


def printable(text: str) -> str:
    """``text`` (a name from outside: a distribution's, a path) with each control character
    as ``?``: safe to print to a terminal, or to write in a record whose format keeps them."""
    return CONTROL_CHARACTERS.sub("?", text)


def special_file_error(wheel: str, entry: str) -> InvalidWheelError:
    """The refusal of an unpacked wheel's FIFO, socket or device: reading one (to hash or to
    copy it) would hang the install or read what is not the wheel's."""
    return InvalidWheelError(wheel, f"{entry} is not a regular file or a symlink", entry=entry)


def reserved_name_error(wheel: str, entry: str) -> InvalidWheelError:
    """The refusal of an entry named like asynclink's own files (:data:`RESERVED_PREFIX`)."""
    return InvalidWheelError(
        wheel,
        f"names starting with {RESERVED_PREFIX!r} are kept for asynclink's own files (its "
        "lock and journal) in an environment",
        entry=entry,
    )


def check_path_length(wheel: str, path: str) -> None:
    """Refuse a path no filesystem can hold below a real directory: a component over 255
    bytes (``NAME_MAX`` everywhere), or over :data:`MAX_PATH_BYTES` in all."""
    encoded = path.encode("utf-8", "surrogateescape")
    if len(encoded) > MAX_PATH_BYTES:
        raise InvalidWheelError(
            wheel, f"the path is {len(encoded):,} bytes long, over {MAX_PATH_BYTES:,}", entry=path
        )
    if len(encoded) > _NAME_MAX and any(
        len(part.encode("utf-8", "surrogateescape")) > _NAME_MAX for part in path.split("/")
    ):
        raise InvalidWheelError(
            wheel, f"a name in the path is over {_NAME_MAX} bytes (File name too long)", entry=path
        )


class Confinement:
    """The roots of one environment, as named and as resolved."""

    __slots__ = ("_resolved", "_ways", "real_roots", "reserved", "roots")

    def __init__(
        self,
        roots: tuple[str, ...],
        real_roots: tuple[str, ...],
        reserved: Callable[[str], str | None] | None = None,
    ) -> None:
        self.roots = roots
        """Absolute, normalised; some may lie inside others (a venv's data root holds the
        rest)."""
        self.real_roots = real_roots
        """The same with every symlink resolved: where the environment really is."""
        self.reserved = reserved or _nothing_reserved
        """What of the environment's own a path is (``Scheme.reserved``: its interpreter, its
        activation scripts, ``pyvenv.cfg``), if anything: never removed, whatever a RECORD
        says."""
        self._resolved: dict[str, bool] = {}
        """Directory -> whether it resolves inside, remembered for one install."""
        self._ways: dict[str, str | None] = {}
        """Path -> the outermost symlink on the way to it, remembered for one install."""

    def __repr__(self) -> str:
        return f"Confinement({self.roots!r})"

    @classmethod
    def of(
        cls, roots: Iterable[str], reserved: Callable[[str], str | None] | None = None
    ) -> Confinement:
        """The confinement of ``roots``; a :class:`~asynclink.TargetError` if one that lies
        inside another (a venv's ``bin`` in the venv, a ``--target``'s ``include`` in it) is
        reached through a symlink leading out of that one: the environment's own symlink
        would otherwise widen the bounds to wherever it points."""
        named = tuple(dict.fromkeys(os.path.normpath(os.path.abspath(root)) for root in roots))
        real = {root: os.path.realpath(root) for root in named}
        for inner in named:
            for outer in named:
                nested = inner != outer and is_below(inner, (outer,))
                if nested and not is_below(real[inner], (real[outer],)):
                    raise TargetError(
                        f"{inner} leads out of the environment (to {real[inner]}, outside "
                        f"{outer}) through a symlink; refusing to change anything there"
                    )
        return cls(named, tuple(dict.fromkeys(real.values())), reserved)

    def holds(self, path: str) -> bool:
        """Whether ``path`` is absolute, normalised and at or below one of the roots, read as
        text (nothing is resolved)."""
        if not os.path.isabs(path) or os.path.normpath(path) != path:
            return False
        return is_below(path, self.roots)

    def resolves_inside(self, directory: str) -> bool:
        """Whether ``directory``, with every symlink on the way resolved, is still inside.

        Remembered per directory: during one install nothing but the install itself changes
        the target (it holds the target's lock), and the install makes no symlinks to
        directories; an undo that puts one back calls :meth:`forget`.
        """
        known = self._resolved.get(directory)
        if known is None:
            real = os.path.realpath(directory)
            known = self._resolved[directory] = is_below(real, self.real_roots)
        return known

    def forget(self) -> None:
        """Drop what :meth:`resolves_inside` and :meth:`symlink_on_the_way` remember: a
        rollback has just put a symlink back, and the way to what lies below it changed."""
        self._resolved.clear()
        self._ways.clear()

    def root_of(self, path: str) -> str | None:
        """The deepest root that holds ``path`` (read as text), if any."""
        holders = [root for root in self.roots if is_below(path, (root,))]
        return max(holders, key=len) if holders else None

    def symlink_on_the_way(self, path: str) -> str | None:
        """The outermost symlink between ``path``'s root and ``path`` (itself included), or
        ``None`` when there is none, or when ``path`` is in no root (:meth:`holds` decides
        that). Remembered per path, like :meth:`resolves_inside`."""
        root = self.root_of(path)
        if root is None or path == root:
            return None
        known = self._ways
        chain: list[str] = []
        current = path
        while current != root and current not in known:
            chain.append(current)
            current = os.path.dirname(current)
        found = known.get(current)
        for step in reversed(chain):  # outermost first
            if found is None:
                try:
                    found = step if stat.S_ISLNK(os.lstat(step).st_mode) else None
                except OSError:
                    found = None
            known[step] = found
        return found


def _nothing_reserved(path: str) -> None:
    return None


def is_below(path: str, roots: tuple[str, ...]) -> bool:
    """Whether ``path`` is one of ``roots`` or below one, read as text."""
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)
