"""The dry run: what an install would place and where, without writing anything.

It plans each wheel exactly as :func:`~asynclink.install_wheels` does (same scheme mapping,
launchers, metadata and RECORD), reading cached wheels from the cache and others in place.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from ._cache import DEFAULT_MAX_UNPACKED_SIZE, UnpackedWheel, WheelCache, archive_sha256
from ._confinement import Confinement
from ._fsutil import absolute, canonical_name
from ._installed import change_for, claim_project, installed_distributions
from ._manifest import manifest_for_tree
from ._options import Options
from ._placing import Placer
from ._plan import plan_wheel
from ._results import Action
from ._scheduler import Scheduler, Threads
from ._scheme import Scheme, refuse_externally_managed, resolve_target

__all__ = ["PlannedFile", "PlannedWheel", "plan_install"]


@dataclass(frozen=True, slots=True)
class PlannedFile:
    """One file an install would create or replace."""

    destination: str
    source: str | None
    """Where it comes from: a file of the unpacked wheel (or ``archive!member``), or ``None``
    for a file the install generates."""
    action: str
    """``link`` (placed with the install's link mode), ``copy`` or ``write``."""


@dataclass(frozen=True, slots=True)
class PlannedWheel:
    """What installing one wheel would do."""

    wheel: str
    version: str
    archive: str | None
    cached: bool
    files: tuple[PlannedFile, ...]
    """Nothing when the wheel is installed already (``action`` is ``SKIPPED``)."""
    project: str
    """The project's name as its METADATA spells it."""
    action: Action
    """What the install would do: as :attr:`WheelResult.action <asynclink.WheelResult.action>`."""
    replaced: str | None
    """The version installed now, if there is one."""


async def plan_install(
    target: Scheme | str | os.PathLike[str],
    wheels: Iterable[str | os.PathLike[str]],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    jobs: int | None = None,
    requested: bool | Collection[str] = True,
    direct_urls: Mapping[str, Mapping[str, object]] | None = None,
    installer: str = "asynclink",
    check_tags: bool = True,
    break_system_packages: bool = False,
    reinstall: bool = False,
    max_unpacked_size: int = DEFAULT_MAX_UNPACKED_SIZE,
) -> list[PlannedWheel]:
    """What :func:`install_wheels` would place and where, writing nothing at all.

    Archives already in the cache are read from it; others are read in place (every check but
    the contents' hashes runs). Neither the cache nor the target is touched.
    """
    options = Options.make(
        jobs=jobs,
        cache_dir=cache_dir,
        requested=requested,
        direct_urls=direct_urls,
        installer=installer,
        check_tags=check_tags,
        max_unpacked_size=max_unpacked_size,
    )
    cache = WheelCache(options.cache_dir)
    threads = Threads(options)
    scheduler = Scheduler(options, threads, Placer(Confinement.of([])))
    scheme = await threads.run(resolve_target, target, cache.root, False)
    if not break_system_packages:
        refuse_externally_managed(scheme)
    installed = await threads.run(installed_distributions, scheme)

    def plan_one(source: str) -> PlannedWheel:
        if os.path.isdir(source):
            unpacked: UnpackedWheel | None = UnpackedWheel(source, manifest_for_tree(source))
        else:
            unpacked = cache.lookup(source)
        if unpacked is not None:
            plan = plan_wheel(unpacked, scheme, options)
        else:
            from ._archive import peek_archive

            manifest, scripts = peek_archive(source, max_unpacked_size)
            unpacked = UnpackedWheel(source + "!", manifest, source)
            plan = plan_wheel(unpacked, scheme, options, scripts)
        files = [
            *(
                PlannedFile(tree.target + os.sep + f, tree.source + os.sep + f, "link")
                for tree in plan.trees
                for f in tree.files
            ),
            *(PlannedFile(d, s, "copy") for s, d in (*plan.copies, *plan.late)),
            *(PlannedFile(d, None, "write") for d, _, _ in plan.writes),
        ]
        manifest = unpacked.manifest
        digest = unpacked.digest or (archive_sha256(source) if unpacked.archive else "")
        dist_infos = installed.get(canonical_name(manifest.name), [])
        change = change_for(dist_infos, manifest.version, digest, reinstall)
        if change.action is Action.SKIPPED:
            files = []
        return PlannedWheel(
            plan.wheel,
            manifest.version,
            unpacked.archive,
            unpacked.cached,
            tuple(sorted(files, key=lambda f: f.destination)),
            manifest.name,
            change.action,
            change.replaced,
        )

    async def one(source: str) -> PlannedWheel:
        return await threads.run_cpu(plan_one, source)

    sources = list(dict.fromkeys(absolute(w) for w in wheels))  # as an install takes them
    planned = await scheduler.run_wheels(sources, one)
    owners: dict[str, str] = {}
    for source, wheel in zip(sources, planned, strict=True):
        claim_project(owners, wheel.project, source)  # refused as an install refuses it
    return planned
