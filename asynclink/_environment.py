"""The changes to what is installed: the upgrades, uninstalls and syncs (reading what is
installed is ``_installed``'s).

Old files are removed after every new file is in place, so a file the new version also has is
replaced (atomically, stashed) rather than deleted and recreated, and a file that moves from
one package to another within the batch is never lost. Compiled ``__pycache__`` files of
removed modules go too, as with pip.

Nothing outside the environment is ever removed or written, whatever the old RECORD or the
target's symlinks say. A RECORD row that points elsewhere (``../../../../etc/passwd``) is
skipped with a warning, as uv does; one that a distribution staying installed lists too is
kept (:func:`shared_files`). A symlink on the way to an old file is never followed:
an old ``.dist-info`` or package directory that is a symlink (to a folder outside the
environment, say) is *detached* before the new version is placed, unlinked as the link it is
and kept in the stash, so that the new version gets a real directory there and the folder it
pointed to is left alone, as pip leaves it. Files below any other symlink are left alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from collections.abc import Collection, Iterable, Sequence
from typing import NamedTuple

from ._cache import WheelCache
from ._confinement import Confinement
from ._errors import LinkError, NotInstalledError, TargetError
from ._events import DistributionRemoved, EventCallback
from ._fsutil import canonical_name
from ._installed import installed_distributions, list_installed
from ._options import Options
from ._record import read_installed, recorded_paths
from ._results import Distribution, RemovedDistribution, UninstallResult
from ._scheduler import Threads
from ._scheme import Scheme, refuse_externally_managed, resolve_target
from ._transaction import Transaction, transaction

__all__ = [
    "InstalledDistribution",
    "detach_symlinks",
    "installed",
    "make_way",
    "read_distribution",
    "refuse_unrecorded",
    "remove_distributions",
    "shared_files",
    "uninstall",
]


logger = logging.getLogger("asynclink")


class InstalledDistribution(NamedTuple):
    """A distribution found in the environment, and what it owns there."""

    dist_info: str
    """Its ``.dist-info`` directory (which may be a symlink)."""
    owned: tuple[str, ...]
    """Absolute, normalised paths: its RECORD rows and the files of a real ``.dist-info``."""
    recorded: bool = True
    """It has a RECORD (without one, what it owns beyond its ``.dist-info`` is not known)."""

    @property
    def name(self) -> str:
        return os.path.basename(self.dist_info)[: -len(".dist-info")].rpartition("-")[0]

    @property
    def version(self) -> str:
        return os.path.basename(self.dist_info)[: -len(".dist-info")].rpartition("-")[2]


def read_distribution(dist_info: str) -> InstalledDistribution:
    """What the distribution at ``dist_info`` owns; blocking. Reading follows a symlinked
    ``.dist-info`` (reading changes nothing); walking it for files to remove does not."""
    recorded = os.path.isfile(os.path.join(dist_info, "RECORD"))
    owned = dict.fromkeys(read_installed(dist_info) if recorded else ())
    site, own = os.path.dirname(dist_info), os.path.basename(dist_info)
    foreign = [path for path in owned if _in_other_metadata(path, site, own)]
    if foreign:  # its RECORD cannot make it the owner of another distribution's metadata
        logger.warning(
            "%s: RECORD lists %d files of another distribution's .dist-info (%s); not "
            "removing them",
            own,
            len(foreign),
            foreign[0],
        )
        for path in foreign:
            del owned[path]
    if not os.path.islink(dist_info):
        for directory, dirnames, files in os.walk(dist_info):
            # A symlink among the directories is not walked into: it goes as a link.
            links = [name for name in dirnames if os.path.islink(os.path.join(directory, name))]
            owned.update(dict.fromkeys(os.path.join(directory, name) for name in files + links))
    return InstalledDistribution(dist_info, tuple(owned), recorded)


def _in_other_metadata(path: str, site: str, own: str) -> bool:
    """Whether ``path`` lies in a ``.dist-info`` directory of ``site`` other than ``own``."""
    if not path.startswith(site + os.sep):
        return False
    head = path[len(site) + 1 :].partition(os.sep)[0]
    return head != own and head.endswith(".dist-info")


def detach_symlinks(
    transaction: Transaction, distribution: InstalledDistribution, confinement: Confinement
) -> None:
    """Unlink the symlinks through which ``distribution``'s files are reached (its
    ``.dist-info``, a package directory), before a new version is placed and before the
    files are removed; blocking.

    Each is kept in the stash (a rollback puts it back) and nothing it points to is touched.
    """
    if os.path.islink(distribution.dist_info):
        _remove(transaction, distribution, distribution.dist_info)
    # Only a package directory beside the .dist-info: a symlink elsewhere on the way (a venv's
    # own lib64) is the environment's, whatever a RECORD says; its files stay, as reached
    # through a symlink.
    site = os.path.dirname(distribution.dist_info)
    directories = dict.fromkeys(path.rpartition(os.sep)[0] for path in distribution.owned)
    for link in dict.fromkeys(confinement.symlink_on_the_way(path) for path in directories):
        if link is None or os.path.dirname(link) != site:
            continue
        if confinement.root_of(link) != link and os.path.islink(link):
            _remove(transaction, distribution, link)


def make_way(
    transaction: Transaction,
    distributions: Sequence[InstalledDistribution],
    new_directories: Iterable[str],
    new_files: Iterable[str],
    confinement: Confinement,
    staying: Sequence[str] = (),
) -> None:
    """Remove now, before the new version is placed, what of the old versions stands where it
    needs another kind of entry: an old file where it makes a directory (``pkg/data`` becomes
    ``pkg/data/``), and an old directory's files where it places a file (the other way round),
    with the directories that leaves empty. Everything else old goes after the new files are
    in place (:func:`remove_distributions`), as pip would have it gone before. Blocking.

    Only what the old versions own goes, checked as every removal is (:func:`_victims`), and
    not what a distribution staying installed (``staying``) lists too (:func:`shared_files`):
    a directory that still holds something else stays, and placing the new file there fails
    as it would have."""
    owned = {path for distribution in distributions for path in distribution.owned}
    ancestors: set[str] = set()
    for path in owned:
        parent = path.rpartition(os.sep)[0]
        while parent and parent not in ancestors:
            ancestors.add(parent)
            parent = parent.rpartition(os.sep)[0]
    files_in_the_way = {path for path in new_directories if path in owned}
    directories_in_the_way = {path for path in new_files if path in ancestors}
    if not (files_in_the_way or directories_in_the_way):
        return
    emptied: set[str] = set()
    for distribution in distributions:
        in_the_way = distribution._replace(
            owned=tuple(
                path
                for path in distribution.owned
                if path in files_in_the_way or _below_any(path, directories_in_the_way)
            )
        )
        kept = shared_files([in_the_way], (), staying)
        for victim in _victims(in_the_way, kept, confinement):
            _remove(transaction, distribution, victim)
            emptied.add(os.path.dirname(victim))
    for directory in sorted(emptied, key=len, reverse=True):
        while directory in directories_in_the_way or _below_any(directory, directories_in_the_way):
            try:
                if os.listdir(directory) or not transaction.remove_dir(directory):
                    break
            except OSError:
                break
            directory = os.path.dirname(directory)


def _below_any(path: str, directories: Collection[str]) -> bool:
    """Whether one of ``path``'s parents is in ``directories``."""
    parent = path.rpartition(os.sep)[0]
    while parent:
        if parent in directories:
            return True
        parent = parent.rpartition(os.sep)[0]
    return False


def remove_distributions(
    transaction: Transaction,
    distributions: Sequence[InstalledDistribution],
    new_destinations: Collection[str],
    confinement: Confinement,
    staying: Sequence[str] = (),
) -> list[int]:
    """Remove what each distribution owns and no new file replaced, and the directories that
    leaves empty; return how many files each lost. Blocking.

    A file that a distribution staying installed (``staying``: dist-info directories) lists
    in its RECORD too stays (see :func:`shared_files`). The directories that go whole go first
    (one rename each, see :func:`_whole_directories`); then the symlinks on the way to the
    rest are detached (:func:`detach_symlinks`: a directory that went whole had none), and the
    rest goes file by file."""
    shared = shared_files(distributions, new_destinations, staying)
    if shared:
        new_destinations = {*new_destinations, *shared}
    roots = set(confinement.roots)
    emptied: set[str] = set()
    counts: list[int] = []
    for distribution in distributions:
        removed = 0
        gone: set[str] = set()
        for whole in _whole_directories(distribution, new_destinations, confinement):
            if transaction.remove_directory(whole.path):
                gone.add(whole.path)
                emptied.add(os.path.dirname(whole.path))
                removed += whole.files
        if gone:
            distribution = distribution._replace(owned=_outside(distribution.owned, gone))
        detach_symlinks(transaction, distribution, confinement)
        for victim in _victims(distribution, new_destinations, confinement):
            _remove(transaction, distribution, victim)
            emptied.add(os.path.dirname(victim))
            removed += 1
        counts.append(removed)
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
    return counts


def shared_files(
    distributions: Sequence[InstalledDistribution],
    new_destinations: Collection[str],
    staying: Sequence[str],
) -> set[str]:
    """The files of ``distributions`` (to be removed) that the RECORD of a distribution
    staying installed lists too: they stay, where pip and uv would remove them.

    Two distributions list one file when they share it (pkgutil-style namespace
    ``__init__.py`` files, as the nvidia-* wheels ship them, or one that both install with
    different contents), or when a hostile RECORD claims another's file: removing it would
    break a distribution nobody asked to remove. Only what would otherwise go is looked up
    (nothing new replaced it, and it is not in a ``.dist-info``), so an upgrade whose old
    version has no file the new one lacks reads no other RECORD. Rows are compared as the
    RECORDs spell them (relative to site-packages, as every installer writes them).
    """
    candidates = [
        path
        for distribution in distributions
        for path in distribution.owned
        if path not in new_destinations and not path.startswith(distribution.dist_info + os.sep)
    ]
    if not candidates or not staying:
        return set()
    listed: dict[str, set[str]] = {}  # by the directory the RECORDs are relative to
    for dist_info in staying:
        listed.setdefault(os.path.dirname(dist_info), set()).update(recorded_paths(dist_info))
    shared: set[str] = set()
    for site, rows in listed.items():
        prefix = site + os.sep
        for path in candidates:
            relative = (
                path[len(prefix) :] if path.startswith(prefix) else os.path.relpath(path, site)
            )
            if relative.replace(os.sep, "/") in rows:
                shared.add(path)
    if shared:
        logger.info(
            "keeping %d files that distributions staying installed list too (%s)",
            len(shared),
            min(shared),
        )
    return shared


#: How deep below its top a directory may lie and still go whole: the walk recurses once a
#: level, and a RECORD may list a file a thousand directories down (deeper ones go file by file).
WHOLE_DEPTH = 64


class _WholeDirectory(NamedTuple):
    """A directory in which everything is a distribution's to remove."""

    path: str
    files: int
    """The files in it: the distribution's, and the compiled ``.pyc`` of its modules."""


def _whole_directories(
    distribution: InstalledDistribution,
    new_destinations: Collection[str],
    confinement: Confinement,
) -> list[_WholeDirectory]:
    """The outermost directories of ``distribution`` that hold nothing but what
    :func:`_victims` would remove (its files, no new one, the ``.pyc`` of its modules, and
    directories of the same), found by listing them: each goes with one rename, where file by
    file each of its files costs a stash link, an unlink and a record.

    Candidates are the directories just below a root (never one that holds a root), reached
    without a symlink; below them the listing follows no symlink either, and a directory
    with nothing of the distribution's in it (an empty one included) keeps its parent, as
    it would file by file."""
    owned = set(distribution.owned)
    roots = set(confinement.roots)
    sep = os.sep
    tops, ancestors = _tops(distribution.owned, roots)
    found: list[_WholeDirectory] = []

    def files_if_whole(directory: str, depth: int) -> int | None:
        """The files of ``directory`` if everything in it goes; else ``None``, once those of
        its subdirectories that go whole are in ``found``."""
        if depth > WHOLE_DEPTH:
            return None
        try:
            with os.scandir(directory) as listing:
                entries = list(listing)
        except OSError:
            return None
        whole, files, parts = bool(entries), 0, []
        compiled = directory.endswith(sep + "__pycache__")
        for entry in entries:
            path = entry.path
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                count = (
                    files_if_whole(path, depth + 1)
                    if path in ancestors or entry.name == "__pycache__"
                    else None
                )
                if count is None:
                    whole = False
                else:
                    parts.append(_WholeDirectory(path, count))
                    files += count
            elif path not in new_destinations and (
                path in owned or (compiled and _compiled_from(owned, directory, entry.name))
            ):
                files += 1
            else:
                whole = False
        if whole:
            return files
        found.extend(parts)
        return None

    for top in tops:
        if any(root.startswith(top + sep) for root in roots):
            continue
        if not confinement.holds(top) or confinement.symlink_on_the_way(top) is not None:
            continue
        count = files_if_whole(top, 0)
        if count is not None:
            found.append(_WholeDirectory(top, count))
    return found


def _tops(owned: Sequence[str], roots: set[str]) -> tuple[list[str], set[str]]:
    """The directories just below a root that hold ``owned`` paths, and every directory
    below a root on the way to one."""
    sep = os.sep
    ancestors: set[str] = set()
    tops: dict[str, None] = {}
    for path in owned:
        child, parent = path, path.rpartition(sep)[0]
        while parent and parent not in roots and parent not in ancestors:
            ancestors.add(parent)
            child, parent = parent, parent.rpartition(sep)[0]
        if parent in roots and child != path:
            tops[child] = None
    return list(tops), ancestors


def _compiled_from(owned: set[str], pycache: str, name: str) -> bool:
    """Whether ``name`` in ``pycache`` is the compiled ``.pyc`` of an owned module beside it
    (``<module>.<anything>.pyc``, as :func:`_compiled` finds them)."""
    if not name.endswith(".pyc"):
        return False
    stem_of = pycache.rpartition(os.sep)[0] + os.sep
    dot = name.find(".")
    while 0 < dot < len(name) - 3:
        if stem_of + name[:dot] + ".py" in owned:
            return True
        dot = name.find(".", dot + 1)
    return False


def _outside(paths: Sequence[str], directories: set[str]) -> tuple[str, ...]:
    """The ``paths`` in none of ``directories`` (a look up each path's parents, remembered per
    directory)."""
    sep = os.sep
    memo: dict[str, bool] = {}

    def inside(directory: str) -> bool:
        # Up the parents to the first known or listed one, then remember the answer for each
        # on the way (a loop: a RECORD row may be a thousand directories deep).
        chain: list[str] = []
        known = memo.get(directory)
        while known is None:
            if directory in directories:
                known = True
                break
            chain.append(directory)
            directory = directory.rpartition(sep)[0]
            known = memo.get(directory) if directory else False
        for step in chain:
            memo[step] = known
        return known

    return tuple(path for path in paths if not inside(path.rpartition(sep)[0]))


def _remove(transaction: Transaction, distribution: InstalledDistribution, path: str) -> None:
    try:
        transaction.remove_file(path)
    except OSError as error:
        name = f"{distribution.name}-{distribution.version}"
        raise LinkError(name, None, path, error, "remove") from error


def _victims(
    distribution: InstalledDistribution,
    new_destinations: Collection[str],
    confinement: Confinement,
) -> Iterable[str]:
    """The files (and symlinks) of ``distribution`` to remove, ``.pyc`` files included: inside
    the environment, not reached through a symlink, not replaced by a new file."""
    name = os.path.basename(distribution.dist_info)
    roots = confinement.roots
    for path in distribution.owned:
        if not confinement.holds(path) or path in roots:
            logger.warning(
                "%s: RECORD lists %s, outside the environment; not removing it", name, path
            )
            continue
        if path in new_destinations:
            continue
        what = confinement.reserved(path)
        if what is not None:
            logger.warning("%s: RECORD lists %s, %s; not removing it", name, path, what)
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
            yield victim


def refuse_unrecorded(distribution: InstalledDistribution) -> None:
    """pip's rule: a distribution without RECORD cannot be uninstalled, as nobody knows which
    files are its own."""
    if not distribution.recorded:
        raise TargetError(
            f"cannot uninstall {distribution.name} {distribution.version}: "
            f"{distribution.dist_info} has no RECORD, so which files are its own is not known "
            "(pip refuses too); remove it by hand"
        )


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


# -- the verbs that read or shrink an environment -----------------------------------------------


async def installed(
    target: Scheme | str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None
) -> list[Distribution]:
    """The distributions installed in ``target`` (a :class:`Scheme`, a venv or an
    interpreter), by name: version, installer, and the wheel asynclink installed each from."""
    options = Options.make(cache_dir=cache_dir, jobs=1)
    threads = Threads(options)
    scheme = await threads.run(resolve_target, target, WheelCache(options.cache_dir).root, True)
    return await threads.run(list_installed, scheme)


async def uninstall(
    target: Scheme | str | os.PathLike[str],
    names: Iterable[str],
    *,
    missing_ok: bool = False,
    dry_run: bool = False,
    break_system_packages: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    jobs: int | None = None,
    lock_timeout: float | None = None,
    on_event: EventCallback | None = None,
) -> UninstallResult:
    """Remove the distributions ``names`` from ``target``, in the order named, in one
    transaction.

    Every path its RECORD lists goes (but one that the RECORD of a distribution staying
    installed lists too), the ``.pyc`` files of its modules (as pip removes them), its
    scripts, and the directories that leaves empty; never a path outside the environment,
    nor one reached through a symlink that leads out of it. A distribution without RECORD is
    refused (pip's rule), and so is a name that is not installed, unless ``missing_ok``.
    ``dry_run`` says what would go, and removes nothing (it takes no lock either).
    """
    options = Options.make(
        cache_dir=cache_dir, jobs=jobs, lock_timeout=lock_timeout, on_event=on_event
    )
    started = time.perf_counter()
    threads = Threads(options)
    cache_root = WheelCache(options.cache_dir).root
    scheme = await threads.run(resolve_target, target, cache_root, not dry_run)
    if not break_system_packages:
        refuse_externally_managed(scheme)
    confinement = Confinement.of(scheme.roots, scheme.reserved)
    wanted = list(dict.fromkeys(canonical_name(name) for name in names))
    if dry_run:
        found = await threads.run(installed_distributions, scheme)
        missing = _missing(wanted, found, scheme, missing_ok)
        dist_infos = [path for name in wanted for path in found.get(name, ())]
        would = await threads.run(_would_remove, dist_infos, confinement, _staying(found, wanted))
        return UninstallResult(scheme, tuple(would), tuple(missing), time.perf_counter() - started)
    async with transaction(
        scheme.purelib,
        threads.filesystem,
        confinement=confinement,
        lock_timeout=options.lock_timeout,
        on_event=options.on_event,
    ) as journal:
        found = await threads.run(installed_distributions, scheme)
        missing = _missing(wanted, found, scheme, missing_ok)
        dist_infos = [path for name in wanted for path in found.get(name, ())]
        distributions = await threads.run(_readable, dist_infos)
        staying = _staying(found, wanted)

        async def remove(distribution: InstalledDistribution) -> RemovedDistribution:
            (count,) = await threads.run(
                remove_distributions, journal, [distribution], (), confinement, staying
            )
            removed = RemovedDistribution(
                distribution.name, distribution.version, distribution.dist_info, count
            )
            if options.on_event is not None:
                options.on_event(DistributionRemoved(removed))
            return removed

        # One after another, in the order asked for: a file two of them list is counted for
        # the first, as the dry run counts it (the removals share the one filesystem thread).
        removed = [await remove(distribution) for distribution in distributions]
        if removed:
            await threads.run(_touch, scheme.purelib)
    elapsed = time.perf_counter() - started
    return UninstallResult(scheme, tuple(removed), tuple(missing), elapsed, journal.recovered)


def _missing(
    wanted: list[str], found: dict[str, list[str]], scheme: Scheme, missing_ok: bool
) -> list[str]:
    missing = [name for name in wanted if name not in found]
    if missing and not missing_ok:
        raise NotInstalledError(
            f"not installed in {scheme.purelib}: {', '.join(missing)}"
            " (missing_ok=True, or --missing-ok, to go on without them)"
        )
    return missing


def _staying(found: dict[str, list[str]], removed: list[str]) -> list[str]:
    """The dist-info directories of the distributions an uninstall of ``removed`` leaves."""
    return [path for name, paths in found.items() if name not in removed for path in paths]


def _would_remove(
    dist_infos: list[str], confinement: Confinement, staying: list[str]
) -> list[RemovedDistribution]:
    """What each distribution's removal would count: a file once, for the first that lists
    it (a ``.pyc`` RECORD lists is also its module's; two distributions may share a file),
    and none that a distribution ``staying`` lists."""
    gone: set[str] = set()
    would: list[RemovedDistribution] = []
    for distribution in _readable(dist_infos):
        kept = shared_files([distribution], (), staying)
        victims = set(_victims(distribution, kept, confinement)) - gone
        gone |= victims
        name, version, dist_info = distribution.name, distribution.version, distribution.dist_info
        would.append(RemovedDistribution(name, version, dist_info, len(victims)))
    return would


def _readable(dist_infos: list[str]) -> list[InstalledDistribution]:
    distributions = [read_distribution(dist_info) for dist_info in dist_infos]
    for distribution in distributions:
        refuse_unrecorded(distribution)
    return distributions


def _touch(site_packages: str) -> None:
    with contextlib.suppress(OSError):  # imports in a running interpreter see the change
        os.utime(site_packages)
