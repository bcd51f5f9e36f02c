"""The verbs: install wheels, link unpacked wheels, unpack wheels into the cache.

Both installing verbs run one batch the same way (:func:`_run_batch`): lock the target and
recover crashed installs (``_transaction``), place every wheel in its own task (``_scheduler``)
with a placer that writes the journal (``_placing``), then bump the site-packages mtime, scan
for conflicts, and commit. What differs is how a wheel gets its plan: :func:`link_wheels`
walks an unpacked tree as it is; :func:`install_wheels` finds the archive in the cache or
unpacks it (``_cache``), maps it onto the target's scheme (``_plan``), detaches what an old
version of the project reached through symlinks (``_environment``), and after the last wheel
places top-level ``.pth`` files, removes what the old versions own and the new ones do not,
and, after the commit, compiles bytecode if asked.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import NamedTuple

from anyio.from_thread import check_cancelled

from ._cache import DEFAULT_MAX_UNPACKED_SIZE, UnpackedWheel, WheelCache
from ._compile import compilable, compile_bytecode
from ._confinement import Confinement
from ._environment import (
    InstalledDistribution,
    detach_symlinks,
    make_way,
    read_distribution,
    refuse_unrecorded,
    remove_distributions,
)
from ._errors import AsyncLinkError, TargetError
from ._events import (
    DistributionRemoved,
    EventCallback,
    WheelFinished,
    WheelSkipped,
    WheelUnpacked,
    WheelUnpacking,
)
from ._fsutil import absolute, canonical_name
from ._helpers import HELPER_PROCESSES, Unpacked
from ._installed import (
    AlreadyInstalled,
    claim_project,
    nothing_to_do,
    replacing,
    skipped_result,
    survey,
)
from ._manifest import ManifestMemo, manifest_for_tree
from ._modes import LinkMode
from ._options import FILESYSTEM_THREADS, Options
from ._placing import Placer
from ._plan import (
    WheelPlan,
    destinations,
    directories,
    plan_unpacked_tree,
    plan_wheel,
    refuse_escaping_symlinks,
)
from ._results import (
    Action,
    Conflict,
    InstallResult,
    LinkResult,
    RemovedDistribution,
    RollbackReport,
    WheelResult,
)
from ._scheduler import Scheduler, Threads
from ._scheme import Scheme, refuse_externally_managed, resolve_target
from ._session import current_session
from ._transaction import Transaction, transaction

__all__ = ["install_wheels", "link_wheels", "sync_wheels", "unpack_wheels"]

logger = logging.getLogger("asynclink")


async def install_wheels(
    target: Scheme | str | os.PathLike[str],
    wheels: Iterable[str | os.PathLike[str]],
    *,
    mode: LinkMode | str | None = None,
    jobs: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    compile: bool = False,
    reinstall: bool = False,
    requested: bool | Collection[str] = True,
    direct_urls: Mapping[str, Mapping[str, object]] | None = None,
    installer: str = "asynclink",
    check_conflicts: bool = True,
    check_tags: bool = True,
    break_system_packages: bool = False,
    max_unpacked_size: int = DEFAULT_MAX_UNPACKED_SIZE,
    lock_timeout: float | None = None,
    filesystem_threads: int = FILESYSTEM_THREADS,
    helper_processes: int = HELPER_PROCESSES,
    on_event: EventCallback | None = None,
) -> InstallResult:
    """Install ``.whl`` files (or unpacked wheel directories) into ``target``, all at once.

    ``target`` is a :class:`Scheme`, a virtual environment directory or an interpreter. Archives
    are unpacked into ``cache_dir`` (reused when already there) and checked; each wheel is
    linked with ``mode`` as soon as it is unpacked. A wheel already installed (the same
    version, from the same wheel by content) is skipped without touching a file, unless
    ``reinstall``; another version of an installed project replaces it. ``requested`` marks
    the wheels that get a ``REQUESTED`` file (``True``: all, or a collection of project
    names); ``direct_urls`` maps a wheel's file name to its PEP 610 ``direct_url.json``
    contents (an ``archive_info`` without a hash gets the archive's, as pip and uv record a
    local file's). ``compile=True`` compiles the installed Python files to bytecode afterwards, in
    processes of the target interpreter.

    Wheels the target cannot use (by their tags) are refused unless ``check_tags`` is false;
    an interpreter's environment that its distributor manages (PEP 668) is refused unless
    ``break_system_packages``.

    ``jobs``, ``filesystem_threads`` and ``helper_processes`` are as for :func:`link_wheels`;
    helper processes also unpack big archives (as many at once as there are cores).

    The batch is one transaction: it holds the target's lock (waiting at most ``lock_timeout``
    seconds for another installer, if given); older versions of the packages are removed in it;
    on any failure or cancellation the target is put back as it was.
    """
    options = Options.make(
        mode=mode,
        jobs=jobs,
        cache_dir=cache_dir,
        compile=compile,
        reinstall=reinstall,
        requested=requested,
        direct_urls=direct_urls,
        installer=installer,
        check_conflicts=check_conflicts,
        check_tags=check_tags,
        break_system_packages=break_system_packages,
        max_unpacked_size=max_unpacked_size,
        lock_timeout=lock_timeout,
        filesystem_threads=filesystem_threads,
        helper_processes=helper_processes,
        on_event=on_event,
    )
    return await _install(target, wheels, options, keep=None)


async def sync_wheels(
    target: Scheme | str | os.PathLike[str],
    wheels: Iterable[str | os.PathLike[str]],
    *,
    keep: Collection[str] = ("pip",),
    mode: LinkMode | str | None = None,
    jobs: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    compile: bool = False,
    reinstall: bool = False,
    requested: bool | Collection[str] = True,
    direct_urls: Mapping[str, Mapping[str, object]] | None = None,
    installer: str = "asynclink",
    check_conflicts: bool = True,
    check_tags: bool = True,
    break_system_packages: bool = False,
    max_unpacked_size: int = DEFAULT_MAX_UNPACKED_SIZE,
    lock_timeout: float | None = None,
    filesystem_threads: int = FILESYSTEM_THREADS,
    helper_processes: int = HELPER_PROCESSES,
    on_event: EventCallback | None = None,
) -> InstallResult:
    """Make ``target`` hold exactly ``wheels``: install what is missing, replace what differs,
    skip what is the same, and remove every other distribution but those named in ``keep``.

    ``keep`` defaults to pip, the environment's own installer, as pip-tools' ``pip-sync``
    keeps it (``uv pip sync`` keeps nothing: pass ``keep=()``). Everything else is as for
    :func:`install_wheels`, and the whole sync is one transaction: a failure anywhere restores
    every file it removed or replaced. ``InstallResult.removed`` lists what went.
    """
    options = Options.make(
        mode=mode,
        jobs=jobs,
        cache_dir=cache_dir,
        compile=compile,
        reinstall=reinstall,
        requested=requested,
        direct_urls=direct_urls,
        installer=installer,
        check_conflicts=check_conflicts,
        check_tags=check_tags,
        break_system_packages=break_system_packages,
        max_unpacked_size=max_unpacked_size,
        lock_timeout=lock_timeout,
        filesystem_threads=filesystem_threads,
        helper_processes=helper_processes,
        on_event=on_event,
    )
    return await _install(target, wheels, options, keep=frozenset(map(canonical_name, keep)))


def _session_manifests() -> ManifestMemo | None:
    """The manifests the calling task's session remembers, if it runs in one."""
    session = current_session()
    return session.manifests if session is not None else None


async def _install(
    target: Scheme | str | os.PathLike[str],
    wheels: Iterable[str | os.PathLike[str]],
    options: Options,
    keep: frozenset[str] | None,
) -> InstallResult:
    """:func:`install_wheels`, or with ``keep`` (the projects a sync leaves alone)
    :func:`sync_wheels`."""
    started = time.perf_counter()
    threads = Threads(options)
    cache = WheelCache(options.cache_dir, _session_manifests())
    sources = list(dict.fromkeys(absolute(wheel) for wheel in wheels))  # a path named twice
    may_be_done = keep is None and not options.reinstall
    scheme, done = await threads.run(_resolve, target, cache, options, sources, may_be_done)
    if done is not None:  # every wheel is installed already: not even the lock is taken
        results = tuple(skipped_result(found, options.mode) for found in done)
        for result in results:
            if options.on_event is not None:
                options.on_event(WheelSkipped(result.wheel, result.version))
        return InstallResult(scheme, results, (), 0, time.perf_counter() - started)
    # The environment's bounds first: they refuse a scheme directory reached through a symlink
    # leading out, before its missing parents are made there.
    environment = _Environment(scheme, cache, options, sources, keep)
    created_roots = await threads.run(_make_roots, scheme)

    async def prepare(batch: _Batch, source: str) -> Prepared | AlreadyInstalled:
        skipped = environment.skipped.get(source)
        if skipped is not None:
            batch.scheduler.emit(WheelSkipped(skipped.wheel, skipped.version))
            return skipped
        # A wheel found in the cache is planned on the filesystem thread (a few reads, some
        # Python); only a real extraction (decompressing and hashing) goes to an unpacking
        # helper or a CPU thread, where it overlaps the linking of other wheels.
        found = await threads.run(_lookup_and_plan, cache, source, scheme, options)
        if found.unpacked is not None and found.plan is not None:
            unpacked, plan = found.unpacked, found.plan
        else:
            unpacked = await _unpack(batch.scheduler, cache, source, found.tree, options)
            plan = await threads.run(plan_wheel, unpacked, scheme, options, None)
        action, replaced = await environment.prepare(batch, source, unpacked, plan)
        manifest = unpacked.manifest
        batch.scheduler.emit(
            WheelUnpacked(plan.wheel, manifest.file_count, unpacked.size, unpacked.cached)
        )
        return Prepared(
            plan,
            wheel=plan.wheel,
            project=manifest.name,
            version=manifest.version,
            archive=unpacked.archive,
            cached=unpacked.cached,
            scripts=tuple(plan.scripts),
            dist_info=os.path.join(plan.target, manifest.dist_info),
            action=action,
            replaced=replaced,
        )

    outcome = await _run_batch(
        options,
        threads,
        scheme.purelib,
        environment.confinement,
        sources,
        prepare,
        before=environment.start,
        after=environment.finish,
        created_roots=created_roots,
    )
    compiled = 0
    if options.compile:
        roots = (scheme.purelib + os.sep, scheme.platlib + os.sep)
        python_files = [
            path
            for path in destinations(outcome.plans)
            if path.endswith(".py") and path.startswith(roots)
        ]
        chosen = await threads.run(compilable, python_files, environment.confinement)
        try:
            compiled = await compile_bytecode(scheme.interpreter, chosen, options.jobs)
        except BaseException:  # a cancellation, a signal: the batch was committed before
            logger.warning(
                "stopped while compiling bytecode; the install itself is complete and stays "
                "(nothing was rolled back)"
            )
            raise
    return InstallResult(
        scheme,
        outcome.wheels,
        outcome.conflicts,
        compiled,
        time.perf_counter() - started,
        outcome.recovered,
        tuple(environment.removed),
    )


async def link_wheels(
    site_packages: str | os.PathLike[str],
    wheels: Iterable[str | os.PathLike[str]],
    *,
    mode: LinkMode | str | None = None,
    jobs: int | None = None,
    check_conflicts: bool = True,
    lock_timeout: float | None = None,
    filesystem_threads: int = FILESYSTEM_THREADS,
    helper_processes: int = HELPER_PROCESSES,
    on_event: EventCallback | None = None,
) -> LinkResult:
    """Place every file of many unpacked wheels into ``site_packages``, concurrently.

    Each wheel is a directory laid out as a wheel's contents (as a package manager's cache
    holds them). ``mode`` is a :class:`LinkMode` or its name (``None``: clone on Linux and
    macOS, hardlink elsewhere); a mode that cannot work falls back per wheel (see
    :class:`LinkMode`). ``jobs`` bounds how many wheels are in flight at once;
    ``filesystem_threads`` how many worker threads place files (one is fastest on local disks);
    ``helper_processes`` how many helper processes may place the bulk of them on other cores
    (``0``: none; ``jobs=1`` starts none either).

    The batch is one transaction: it holds ``site_packages``' lock (waiting at most
    ``lock_timeout`` seconds for another installer, if given), and on any failure or
    cancellation ``site_packages`` is put back as it was. Raises :class:`LinkError` (or another
    :class:`AsyncLinkError`) naming the wheel and path when a file cannot be placed.
    """
    options = Options.make(
        mode=mode,
        jobs=jobs,
        check_conflicts=check_conflicts,
        lock_timeout=lock_timeout,
        filesystem_threads=filesystem_threads,
        helper_processes=helper_processes,
        on_event=on_event,
    )
    started = time.perf_counter()
    target = absolute(site_packages)
    threads = Threads(options)
    if not await threads.run(os.path.isdir, target):
        raise AsyncLinkError(f"site-packages directory {target} does not exist")

    async def prepare(batch: _Batch, source: str) -> Prepared:
        return Prepared(await threads.run(plan_unpacked_tree, None, source, target))

    async def after(batch: _Batch) -> None:
        await threads.run(refuse_escaping_symlinks, batch.plans, confinement)

    sources = [absolute(wheel) for wheel in wheels]
    confinement = Confinement.of([target])
    outcome = await _run_batch(options, threads, target, confinement, sources, prepare, after=after)
    elapsed = time.perf_counter() - started
    return LinkResult(target, outcome.wheels, outcome.conflicts, elapsed, outcome.recovered)


async def unpack_wheels(
    archives: Iterable[str | os.PathLike[str]],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    jobs: int | None = None,
    max_unpacked_size: int = DEFAULT_MAX_UNPACKED_SIZE,
    on_event: EventCallback | None = None,
) -> list[UnpackedWheel]:
    """Unpack ``.whl`` archives into the cache, many at once; reuse those already there."""
    options = Options.make(
        jobs=jobs, cache_dir=cache_dir, max_unpacked_size=max_unpacked_size, on_event=on_event
    )
    cache = WheelCache(options.cache_dir, _session_manifests())
    threads = Threads(options)
    scheduler = Scheduler(options, threads, Placer(Confinement.of([])))

    async def one(archive: str) -> UnpackedWheel:
        unpacked = await threads.run(cache.lookup, archive, False)
        if unpacked is None:
            unpacked = await _unpack(scheduler, cache, archive, False, options)
        manifest = unpacked.manifest
        scheduler.emit(
            WheelUnpacked(
                f"{manifest.name}-{manifest.version}",
                manifest.file_count,
                unpacked.size,
                unpacked.cached,
            )
        )
        return unpacked

    return await scheduler.run_wheels([absolute(a) for a in archives], one)


# -- the batch, shared by both installing verbs ------------------------------------------------


class Prepared(NamedTuple):
    """A wheel ready to place (its ``plan``), and what its result says beyond how it was
    placed."""

    plan: WheelPlan
    wheel: str = ""
    project: str = ""
    version: str = ""
    archive: str | None = None
    cached: bool = False
    scripts: tuple[str, ...] = ()
    dist_info: str | None = None
    action: Action = Action.INSTALLED
    replaced: str | None = None
    source: str = ""


class _Batch:
    """One call's transaction, as its wheel tasks see it."""

    __slots__ = ("journal", "plans", "removed_any", "scheduler")

    def __init__(self, scheduler: Scheduler, journal: Transaction) -> None:
        self.scheduler = scheduler
        self.journal = journal
        self.plans: list[WheelPlan] = []
        self.removed_any = False

    @property
    def changed(self) -> bool:
        """Whether the batch placed or removed anything (a batch that only skipped leaves the
        target untouched, its mtime included)."""
        return bool(self.plans) or self.removed_any


class _Outcome(NamedTuple):
    wheels: tuple[WheelResult, ...]
    conflicts: tuple[Conflict, ...]
    recovered: tuple[RollbackReport, ...]
    plans: list[WheelPlan]


async def _run_batch(
    options: Options,
    threads: Threads,
    root: str,
    confinement: Confinement,
    sources: Sequence[str],
    prepare: Callable[[_Batch, str], Awaitable[Prepared | AlreadyInstalled]],
    *,
    before: Callable[[_Batch], Awaitable[None]] | None = None,
    after: Callable[[_Batch], Awaitable[None]] | None = None,
    created_roots: Sequence[str] = (),
) -> _Outcome:
    """Lock ``root``, run ``before``, place every wheel of ``sources`` as ``prepare`` plans it
    (one task each), run ``after``, then the mtime bump and the conflict scan, and commit; or
    roll back."""
    async with transaction(
        root,
        threads.filesystem,
        confinement=confinement,
        lock_timeout=options.lock_timeout,
        created_roots=created_roots,
        on_event=options.on_event,
    ) as journal:
        scheduler = Scheduler(options, threads, Placer(confinement, journal))
        batch = _Batch(scheduler, journal)
        if before is not None:
            await before(batch)

        async def one(source: str) -> WheelResult:
            prepared = await prepare(batch, source)
            if isinstance(prepared, AlreadyInstalled):
                return skipped_result(prepared, options.mode)
            batch.plans.append(prepared.plan)
            placed = await scheduler.place(prepared.plan)
            result = replace(
                placed,
                version=prepared.version,
                archive=prepared.archive,
                cached=prepared.cached,
                scripts=prepared.scripts,
                dist_info=prepared.dist_info,
                project=prepared.project,
                action=prepared.action,
                replaced=prepared.replaced,
            )
            scheduler.emit(WheelFinished(prepared.plan.wheel, result))
            return result

        results = await scheduler.run_wheels(sources, one)
        if after is not None:
            await after(batch)
        conflicts = await scheduler.finish(root, batch.plans, touched=batch.changed)
    return _Outcome(tuple(results), conflicts, journal.recovered, batch.plans)


class _Environment:
    """What an install does beyond placing wheels: one wheel per project, the wheels already
    installed (skipped), the versions it replaces (detached first, removed last) and, for a
    sync, every other distribution (removed last), all in the same transaction."""

    def __init__(
        self,
        scheme: Scheme,
        cache: WheelCache,
        options: Options,
        sources: list[str],
        keep: frozenset[str] | None,
    ) -> None:
        self.scheme = scheme
        self.cache = cache
        self.options = options
        self.sources = sources
        self.keep = keep
        self.confinement = Confinement.of(scheme.roots, scheme.reserved)
        self.skipped: dict[str, AlreadyInstalled] = {}
        self.removed: list[RemovedDistribution] = []
        self._owners: dict[str, str] = {}  # project -> the wheel that installs it
        self._installed: dict[str, list[str]] = {}
        self._replaced: dict[str, list[InstalledDistribution]] = {}

    async def start(self, batch: _Batch) -> None:
        """Before any wheel is placed: what is installed, and which wheels it already is."""
        self._installed, self.skipped = await batch.scheduler.threads.run(
            survey, self.scheme, self.cache, self.sources, self.options.reinstall
        )
        for source, found in self.skipped.items():
            self._owners[canonical_name(found.project)] = source

    async def prepare(
        self, batch: _Batch, source: str, unpacked: UnpackedWheel, plan: WheelPlan
    ) -> tuple[Action, str | None]:
        """Refuse a second wheel of one project (as pip and uv do); if the project is
        installed, read what its old versions own, detach the symlinks on the way, and make way
        for the new version where an old file stands for a directory or the other way round
        (see :func:`make_way`). Returns what the install does to the project, and the version
        it replaces."""
        project = claim_project(self._owners, unpacked.manifest.name, source)
        old = self._installed.get(project)
        if not old:
            return Action.INSTALLED, None
        others = [d for p, ds in self._installed.items() if p != project for d in ds]
        self._replaced[project] = distributions = await batch.scheduler.threads.run(
            _detached, batch.journal, old, self.confinement, plan, others
        )
        replaced = distributions[0].version
        return replacing(replaced, unpacked.manifest.version), replaced

    async def finish(self, batch: _Batch) -> None:
        """After the last wheel: ``.pth`` files, then what the old versions own and the new
        ones do not, then (a sync) the distributions no wheel is for."""
        scheduler = batch.scheduler
        for plan in batch.plans:  # .pth last: a Python starting now must not run a half package
            await scheduler.place_copies(plan.wheel, copies=plan.late)
        others = self._others()
        if not (self._replaced or others):
            return
        replaced = [old for olds in self._replaced.values() for old in olds]
        going = {*others, *(old.dist_info for old in replaced)}
        staying = [d for ds in self._installed.values() for d in ds if d not in going]
        gone = await scheduler.threads.run(
            _remove_all,
            batch.journal,
            _Removal(replaced, others, staying),
            set(destinations(batch.plans)),
            self.confinement,
        )
        batch.removed_any = True
        for removed in gone:
            self.removed.append(removed)
            scheduler.emit(DistributionRemoved(removed))

    def _others(self) -> list[str]:
        """The dist-info directories a sync removes: of projects no wheel is for."""
        if self.keep is None:
            return []
        wanted = set(self._owners) | self.keep
        return [
            dist_info
            for project, dist_infos in sorted(self._installed.items())
            if project not in wanted
            for dist_info in dist_infos
        ]


class _Removal(NamedTuple):
    """What a batch removes once every new file is in place."""

    replaced: list[InstalledDistribution]
    """The old versions of the projects it installed."""
    others: list[str]
    """The dist-info directories of the distributions a sync removes."""
    staying: list[str]
    """The dist-info directories of every other installed distribution."""


def _remove_all(
    journal: Transaction, removal: _Removal, new: set[str], confinement: Confinement
) -> list[RemovedDistribution]:
    """Remove the old versions of what was installed, and the others (a sync's), keeping
    every new file and every file a distribution staying lists; return what the others were."""
    removing = [read_distribution(dist_info) for dist_info in removal.others]
    for distribution in removing:
        refuse_unrecorded(distribution)
    counts = remove_distributions(
        journal, [*removal.replaced, *removing], new, confinement, removal.staying
    )
    return [
        RemovedDistribution(d.name, d.version, d.dist_info, count)
        for d, count in zip(removing, counts[len(removal.replaced) :], strict=True)
    ]


def _detached(
    journal: Transaction,
    dist_infos: list[str],
    confinement: Confinement,
    plan: WheelPlan,
    others: list[str],
) -> list[InstalledDistribution]:
    """Read what the installed versions own, detach the symlinks on the way to it, and clear
    what of it stands where ``plan`` needs another kind of entry (but what ``others``, the
    dist-info directories of the other projects installed, list too)."""
    distributions = [read_distribution(dist_info) for dist_info in dist_infos]
    for distribution in distributions:
        detach_symlinks(journal, distribution, confinement)
    make_way(journal, distributions, directories(plan), destinations([plan]), confinement, others)
    return distributions


def _make_roots(scheme: Scheme) -> list[str]:
    """Create purelib and platlib (with missing parents); return what was created."""
    missing: dict[str, None] = {}
    for root in (scheme.purelib, scheme.platlib):
        chain = []
        while not os.path.isdir(root):
            chain.append(root)
            root = os.path.dirname(root)
        missing.update(dict.fromkeys(reversed(chain)))
    for path in missing:
        try:
            os.mkdir(path)
        except FileExistsError:
            pass
        except OSError as error:
            raise TargetError(f"cannot create {path}: {error.strerror}") from error
    return list(missing)


async def _unpack(
    scheduler: Scheduler, cache: WheelCache, source: str, tree: bool, options: Options
) -> UnpackedWheel:
    """``source``, not found in the cache, extracted into it (or, a ``tree``, an unpacked
    wheel taken as it is): by an unpacking helper where one is worth it, else in a CPU
    thread."""
    threads, limit = scheduler.threads, options.max_unpacked_size

    def in_helper() -> None:
        scheduler.emit(WheelUnpacking(source, in_helper=True))

    helped = None
    if not tree:
        helped = await scheduler.helpers.unpack(threads.cpu, cache.root, source, limit, in_helper)
        if helped is None:
            scheduler.emit(WheelUnpacking(source, in_helper=False))
    unpacked = await threads.run_cpu(_unpack_one, cache, source, limit)
    return replace(unpacked, cached=False) if helped is Unpacked.NOW else unpacked


def _unpack_one(cache: WheelCache, source: str, max_unpacked_size: int) -> UnpackedWheel:
    if os.path.isdir(source):
        manifest = manifest_for_tree(source)
        return UnpackedWheel(source, manifest, digest=manifest.digest())
    return cache.unpack(source, max_unpacked_size=max_unpacked_size, checkpoint=check_cancelled)


class _Lookup(NamedTuple):
    """What the cache had of a source: its unpacked wheel and plan, or nothing (then the
    source is an unpacked ``tree``, or an archive to unpack)."""

    unpacked: UnpackedWheel | None = None
    plan: WheelPlan | None = None
    tree: bool = False


class _Resolved(NamedTuple):
    scheme: Scheme
    done: list[AlreadyInstalled] | None
    """Every wheel, where each is installed already (see ``nothing_to_do``)."""


def _resolve(
    target: Scheme | str | os.PathLike[str],
    cache: WheelCache,
    options: Options,
    sources: list[str],
    may_be_done: bool,
) -> _Resolved:
    """The target's scheme, checked (PEP 668), and with ``may_be_done`` whether there is nothing
    to do: one thread hop, as a second identical install is otherwise nothing but hops."""
    scheme = resolve_target(target, cache.root, True)
    if not options.break_system_packages:
        refuse_externally_managed(scheme)
    return _Resolved(scheme, nothing_to_do(scheme, cache, sources) if may_be_done else None)


def _lookup_and_plan(cache: WheelCache, source: str, scheme: Scheme, options: Options) -> _Lookup:
    """The cached unpacked wheel of an archive and its plan, if the cache already has it."""
    if os.path.isdir(source):
        return _Lookup(tree=True)
    unpacked = cache.lookup(source, hash_on_miss=False)
    if unpacked is None:
        return _Lookup()
    return _Lookup(unpacked, plan_wheel(unpacked, scheme, options))
