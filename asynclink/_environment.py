"""What is installed in an environment, and the upgrades that replace it in a transaction.

Old files are removed after every new file is in place, so a file the new version also has is
replaced (atomically, stashed) rather than deleted and recreated, and a file that moves from
one package to another within the batch is never lost. Compiled ``__pycache__`` files of
removed modules go too, as with pip.

Nothing outside the environment is ever removed or written, whatever the old RECORD or the
target's symlinks say. A RECORD row that points elsewhere (``../../../../etc/passwd``) is
skipped with a warning, as uv does. A symlink on the way to an old file is never followed:
an old ``.dist-info`` or package directory that is a symlink (to a folder outside the
environment, say) is *detached* before the new version is placed, unlinked as the link it is
and kept in the stash, so that the new version gets a real directory there and the folder it
pointed to is left alone, as pip leaves it. Files below any other symlink are left alone.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from ._confinement import Confinement
from ._fsutil import canonical_name
from ._record import read_installed
from ._scheme import Scheme
from ._transaction import Transaction

__all__ = [
    "InstalledDistribution",
    "detach_symlinks",
    "installed_distributions",
    "read_distribution",
    "remove_old_versions",
]

logger = logging.getLogger("asynclink")


@dataclass(frozen=True, slots=True)
class InstalledDistribution:
    """A distribution found in the environment, and what it owns there."""

    dist_info: str
    """Its ``.dist-info`` directory (which may be a symlink)."""
    owned: tuple[str, ...]
    """Absolute, normalised paths: its RECORD rows and the files of a real ``.dist-info``."""


def installed_distributions(scheme: Scheme) -> dict[str, list[str]]:
    """Canonical project name -> the ``.dist-info`` directories installed in the scheme."""
    found: dict[str, list[str]] = {}
    for root in dict.fromkeys((scheme.purelib, scheme.platlib)):
        try:
            names = [name for name in os.listdir(root) if name.endswith(".dist-info")]
        except FileNotFoundError:
            continue
        for name in names:
            project = name[: -len(".dist-info")].rpartition("-")[0]
            found.setdefault(canonical_name(project), []).append(os.path.join(root, name))
    return found


def read_distribution(dist_info: str) -> InstalledDistribution:
    """What the distribution at ``dist_info`` owns; blocking. Reading follows a symlinked
    ``.dist-info`` (reading changes nothing); walking it for files to remove does not."""
    owned = dict.fromkeys(read_installed(dist_info))
    if not os.path.islink(dist_info):
        for directory, dirnames, files in os.walk(dist_info):
            # A symlink among the directories is not walked into: it goes as a link.
            links = [name for name in dirnames if os.path.islink(os.path.join(directory, name))]
            owned.update(dict.fromkeys(os.path.join(directory, name) for name in files + links))
    return InstalledDistribution(dist_info, tuple(owned))


def detach_symlinks(
    transaction: Transaction, distribution: InstalledDistribution, confinement: Confinement
) -> None:
    """Unlink the symlinks through which ``distribution``'s files are reached (its
    ``.dist-info``, a package directory), before a new version is placed; blocking.

    Each is kept in the stash (a rollback puts it back) and nothing it points to is touched.
    """
    if os.path.islink(distribution.dist_info):
        transaction.remove_file(distribution.dist_info)
    directories = dict.fromkeys(os.path.dirname(path) for path in distribution.owned)
    for link in dict.fromkeys(confinement.symlink_on_the_way(path) for path in directories):
        if link is not None and confinement.root_of(link) != link and os.path.islink(link):
            transaction.remove_file(link)


def remove_old_versions(
    transaction: Transaction,
    distributions: Iterable[InstalledDistribution],
    new_destinations: Collection[str],
    confinement: Confinement,
) -> None:
    """Remove what the old distributions own and no new file replaced; blocking."""
    roots = set(confinement.roots)
    emptied: set[str] = set()
    for distribution in distributions:
        name = os.path.basename(distribution.dist_info)
        for path in distribution.owned:
            if not confinement.holds(path) or path in roots:
                logger.warning(
                    "%s: RECORD lists %s, outside the environment; not removing it", name, path
                )
                continue
            if path in new_destinations:
                continue
            for victim in (path, *_compiled(path)):
                if confinement.symlink_on_the_way(os.path.dirname(victim)) is not None:
                    logger.info("%s: not removing %s, reached through a symlink", name, victim)
                    continue
                try:
                    if stat.S_ISDIR(os.lstat(victim).st_mode):
                        continue
                except OSError:  # already gone
                    continue
                transaction.remove_file(victim)
                emptied.add(os.path.dirname(victim))
    for directory in sorted(emptied, key=len, reverse=True):
        while directory not in roots and confinement.holds(directory):
            try:
                if os.listdir(directory):
                    break
            except FileNotFoundError:
                directory = os.path.dirname(directory)
                continue
            if not transaction.remove_dir(directory):
                break
            directory = os.path.dirname(directory)


def _compiled(path: str) -> Sequence[str]:
    """``__pycache__/<module>.*.pyc`` of a ``.py`` file, for any interpreter (listed afresh
    for each module: an earlier removal may have taken some)."""
    if not path.endswith(".py"):
        return []
    directory, name = os.path.split(path)
    cache = os.path.join(directory, "__pycache__")
    stem = name[:-3] + "."
    try:
        return [
            os.path.join(cache, entry)
            for entry in os.listdir(cache)
            if entry.startswith(stem) and entry.endswith(".pyc")
        ]
    except OSError:
        return []
