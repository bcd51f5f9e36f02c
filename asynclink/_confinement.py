"""The environment's bounds: the directories an install, upgrade or rollback may change.

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
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["RESERVED_PREFIX", "Confinement"]

#: Names asynclink keeps for itself in an environment (its lock, journal and temporaries): no
#: wheel may ship a file or directory whose name starts with it, in any scheme.
RESERVED_PREFIX = ".asynclink-"


@dataclass(frozen=True, slots=True)
class Confinement:
    """The roots of one environment, as named and as resolved."""

    roots: tuple[str, ...]
    """Absolute, normalised; some may lie inside others (a venv's data root holds the rest)."""
    real_roots: tuple[str, ...]
    """The same with every symlink resolved: where the environment really is."""
    _resolved: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)
    """Directory -> whether it resolves inside, remembered for one install."""

    @classmethod
    def of(cls, roots: Iterable[str]) -> Confinement:
        named = tuple(dict.fromkeys(os.path.normpath(os.path.abspath(root)) for root in roots))
        return cls(named, tuple(dict.fromkeys(os.path.realpath(root) for root in named)))

    def holds(self, path: str) -> bool:
        """Whether ``path`` is absolute, normalised and at or below one of the roots, read as
        text (nothing is resolved)."""
        if not os.path.isabs(path) or os.path.normpath(path) != path:
            return False
        return _below(path, self.roots)

    def resolves_inside(self, directory: str) -> bool:
        """Whether ``directory``, with every symlink on the way resolved, is still inside.

        Remembered per directory: during one install nothing but the install itself changes
        the target (it holds the target's lock), and the install makes no symlinks to
        directories.
        """
        known = self._resolved.get(directory)
        if known is None:
            known = self._resolved[directory] = _below(
                os.path.realpath(directory), self.real_roots
            )
        return known

    def root_of(self, path: str) -> str | None:
        """The deepest root that holds ``path`` (read as text), if any."""
        holders = [root for root in self.roots if _below(path, (root,))]
        return max(holders, key=len) if holders else None

    def first_symlink(self, path: str) -> str | None:
        """The outermost symlink on the way from ``path``'s root down to ``path`` itself
        (``path`` included), or ``None`` when every step is a real directory or file."""
        root = self.root_of(path)
        if root is None or path == root:
            return None
        current = root.rstrip(os.sep)
        for part in path[len(current) + 1 :].split(os.sep):
            current = current + os.sep + part
            try:
                mode = os.lstat(current).st_mode
            except OSError:
                return None  # nothing there: nothing to follow either
            if stat.S_ISLNK(mode):
                return current
            if not stat.S_ISDIR(mode):
                return None
        return None

    def remember(self, directory: str) -> None:
        """``directory`` was just created by this install (a real directory inside)."""
        self._resolved[directory] = True


def _below(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)
