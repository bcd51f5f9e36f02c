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
    _ways: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)
    """Path -> the outermost symlink on the way to it, remembered for one install."""

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
            known = self._resolved[directory] = _below(os.path.realpath(directory), self.real_roots)
        return known

    def root_of(self, path: str) -> str | None:
        """The deepest root that holds ``path`` (read as text), if any."""
        holders = [root for root in self.roots if _below(path, (root,))]
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


def _below(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)
