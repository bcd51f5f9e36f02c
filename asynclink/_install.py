"""Whole-wheel installs: unpack (or find in the cache), map to the scheme, link, write metadata.

The flow per wheel reads in the order of the specification's steps: unpack and check the
archive; map its root to purelib or platlib and each ``<name>.data/<key>/`` to the scheme;
write launchers for entry points and rewrite ``#!python`` scripts; write INSTALLER, REQUESTED,
``direct_url.json`` and RECORD. All of it becomes one :class:`~asynclink._plan.WheelPlan`,
placed by the scheduler like any other, so the wheel's linking starts as soon as it is
unpacked while other wheels are still unpacking. Top-level ``.pth`` files wait until every
other file of the batch is in place, and the conflict scan and bytecode compilation come last.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import re
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from ._compile import compile_bytecode
from ._confinement import Confinement
from ._errors import InvalidWheelError, TargetError
from ._events import EventCallback, WheelFinished, WheelUnpacked
from ._fsutil import absolute, add_parent_dirs, canonical_name, record_hash
from ._modes import LinkMode
from ._plan import Tree, WheelPlan, conflict_key, destinations, native_paths
from ._results import Conflict, WheelResult
from ._scheduler import FILESYSTEM_THREADS, HELPER_PROCESSES, Scheduler
from ._scheme import Scheme, refuse_externally_managed, scheme_for_python, scheme_for_venv
from ._scripts import EntryPoint, launcher, rewrite_shebang
from ._transaction import RollbackReport, Transaction, transaction
from ._uninstall import (
    InstalledDistribution,
    detach_symlinks,
    installed_distributions,
    read_distribution,
    remove_old_versions,
)
from ._unpack import (
    DEFAULT_MAX_UNPACKED_SIZE,
    UnpackedWheel,
    WheelCache,
    manifest_for_tree,
    record_row,
    row_path,
)

__all__ = [
    "InstallResult",
    "install_wheels",
    "unpack_wheels",
]

#: Files of a dist-info directory that the install writes itself, replacing the wheel's own.
_GENERATED = ("INSTALLER", "REQUESTED", "direct_url.json", "RECORD")


@dataclass(frozen=True, slots=True)
class InstallResult:
    """The outcome of :func:`asynclink.install_wheels`."""

    scheme: Scheme
    wheels: tuple[WheelResult, ...]
    conflicts: tuple[Conflict, ...]
    compiled: int
    """Python files compiled to bytecode (0 unless asked)."""
    elapsed: float
    recovered: tuple[RollbackReport, ...] = ()
    """Crashed earlier installs into the same target, undone before this one began."""

    @property
    def files(self) -> int:
        return sum(wheel.files for wheel in self.wheels)

    @property
    def bytes(self) -> int:
        return sum(wheel.bytes for wheel in self.wheels)


@dataclass(frozen=True, slots=True)
class _Options:
    scheme: Scheme
    installer: str
    requested: bool | frozenset[str]
    direct_urls: Mapping[str, Mapping[str, object]]
    check_tags: bool

    def is_requested(self, name: str) -> bool:
        if isinstance(self.requested, bool):
            return self.requested
        return canonical_name(name) in self.requested


async def install_wheels(
    target: Scheme | str | os.PathLike[str],
    wheels: Iterable[str | os.PathLike[str]],
    *,
    mode: LinkMode | str | None = None,
    jobs: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    compile: bool = False,
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
    linked with ``mode`` as soon as it is unpacked. ``requested`` marks the wheels that get a
    ``REQUESTED`` file (``True``: all, or a collection of project names); ``direct_urls`` maps
    a wheel's file name to its PEP 610 ``direct_url.json`` contents. ``compile=True`` compiles
    the installed Python files to bytecode afterwards, in processes of the target interpreter.

    Wheels the target cannot use (by their tags) are refused unless ``check_tags`` is false;
    an interpreter's environment that its distributor manages (PEP 668) is refused unless
    ``break_system_packages``.

    ``jobs``, ``filesystem_threads`` and ``helper_processes`` are as for :func:`link_wheels`;
    helper processes also unpack big archives (as many at once as there are cores).

    The batch is one transaction: it holds the target's lock (waiting at most ``lock_timeout``
    seconds for another installer, if given); older versions of the packages are removed in it;
    on any failure or cancellation the target is put back as it was.
    """
    started = time.perf_counter()
    cache = WheelCache(cache_dir)
    scheduler = Scheduler(
        mode,
        jobs,
        on_event=on_event,
        filesystem_threads=filesystem_threads,
        helper_processes=helper_processes,
    )
    scheme = await scheduler.in_thread(resolve_target, target, cache.root)
    if not break_system_packages:
        refuse_externally_managed(scheme)
    confinement = scheduler.placer.confinement = Confinement.of(scheme.roots)
    created_roots = await scheduler.in_thread(_make_roots, scheme)
    options = make_options(scheme, installer, requested, direct_urls, check_tags)
    sources = list(dict.fromkeys(absolute(wheel) for wheel in wheels))  # a path named twice
    plans: list[WheelPlan] = []
    projects: dict[str, str] = {}  # one wheel per project in a batch, as pip and uv insist
    installed: dict[str, list[str]] = {}
    replaced: dict[str, list[InstalledDistribution]] = {}  # project -> its old versions

    async def one(source: str) -> WheelResult:
        # A wheel found in the cache is planned on the filesystem thread (a few reads, some
        # Python); only a real extraction (decompressing and hashing) goes to an unpacking
        # helper or a CPU thread, where it overlaps the linking of other wheels.
        found = await scheduler.in_thread(_lookup_and_plan, cache, source, options)
        if found is None:
            unpacked = await _unpack(scheduler, cache, source, max_unpacked_size)
            plan = await scheduler.in_thread(plan_wheel, unpacked, options)
        else:
            unpacked, plan = found
        project = canonical_name(unpacked.manifest.name)
        owner = projects.setdefault(project, source)
        if owner != source:
            both = " and ".join(sorted(os.path.basename(path) for path in (owner, source)))
            raise InvalidWheelError(
                os.path.basename(source), f"{both} both install {project}; give only one"
            )
        if project in installed:  # an upgrade: read what the old version owns, detach links
            replaced[project] = await scheduler.in_thread(
                _prepare_upgrade, journal, installed[project], confinement
            )
        scheduler.emit(
            WheelUnpacked(plan.wheel, unpacked.manifest.file_count, unpacked.size, unpacked.cached)
        )
        plans.append(plan)
        placed = await scheduler.place(plan)
        result = replace(
            placed,
            version=unpacked.manifest.version,
            archive=unpacked.archive,
            cached=unpacked.cached,
            scripts=tuple(plan.scripts),
            dist_info=os.path.join(plan.target, unpacked.manifest.dist_info),
        )
        scheduler.emit(WheelFinished(plan.wheel, result))
        return result

    async with transaction(
        scheme.purelib,
        confinement=confinement,
        lock_timeout=lock_timeout,
        created_roots=created_roots,
    ) as journal:
        scheduler.placer.recorder = journal
        installed = await scheduler.in_thread(installed_distributions, scheme)
        results = await scheduler.run_wheels(sources, one)
        for plan in plans:  # .pth files last: a Python starting now must not run a half package
            await scheduler.place_locked(plan.wheel, copies=plan.late)
        if replaced:
            await scheduler.in_thread(
                remove_old_versions,
                journal,
                [old for olds in replaced.values() for old in olds],
                set(destinations(plans)),
                confinement,
            )
        conflicts = await scheduler.finish(scheme.purelib, plans, check_conflicts)
    compiled = 0
    if compile:
        roots = (scheme.purelib + os.sep, scheme.platlib + os.sep)
        python_files = [
            path for path in destinations(plans) if path.endswith(".py") and path.startswith(roots)
        ]
        compiled = await compile_bytecode(scheme.interpreter, python_files, scheduler.jobs)
    elapsed = time.perf_counter() - started
    return InstallResult(scheme, tuple(results), conflicts, compiled, elapsed, journal.recovered)


def _prepare_upgrade(
    journal: Transaction, dist_infos: list[str], confinement: Confinement
) -> list[InstalledDistribution]:
    """Read what the installed versions own, and detach the symlinks on the way to it."""
    distributions = [read_distribution(dist_info) for dist_info in dist_infos]
    for distribution in distributions:
        detach_symlinks(journal, distribution, confinement)
    return distributions


async def unpack_wheels(
    archives: Iterable[str | os.PathLike[str]],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    jobs: int | None = None,
    max_unpacked_size: int = DEFAULT_MAX_UNPACKED_SIZE,
    on_event: EventCallback | None = None,
) -> list[UnpackedWheel]:
    """Unpack ``.whl`` archives into the cache, many at once; reuse those already there."""
    cache = WheelCache(cache_dir)
    scheduler = Scheduler(None, jobs, None, on_event)

    async def one(archive: str) -> UnpackedWheel:
        unpacked = await scheduler.in_thread(cache.lookup, archive, False)
        if unpacked is None:
            unpacked = await _unpack(scheduler, cache, archive, max_unpacked_size)
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


def make_options(
    scheme: Scheme,
    installer: str,
    requested: bool | Collection[str],
    direct_urls: Mapping[str, Mapping[str, object]] | None,
    check_tags: bool,
) -> _Options:
    if not isinstance(requested, bool):
        requested = frozenset(canonical_name(name) for name in requested)
    return _Options(scheme, installer, requested, direct_urls or {}, check_tags)


def resolve_target(
    target: Scheme | str | os.PathLike[str], cache_dir: str, remember: bool = True
) -> Scheme:
    """A scheme from what the caller named: a scheme, a venv directory or an interpreter."""
    if isinstance(target, Scheme):
        return target
    path = absolute(target)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "pyvenv.cfg")):
            return scheme_for_venv(path, cache_dir if remember else None)
        raise TargetError(
            f"{path} is a directory but not a virtual environment; to install straight into "
            "it, pass Scheme.for_directory(path) (the CLI's --target)"
        )
    if os.path.isfile(path):
        return scheme_for_python(path, cache_dir if remember else None)
    raise TargetError(f"{path} is neither a virtual environment nor an interpreter")


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
    scheduler: Scheduler, cache: WheelCache, source: str, max_unpacked_size: int
) -> UnpackedWheel:
    """``source``, not found in the cache, extracted into it (or an unpacked tree taken as it
    is): by an unpacking helper where one is worth it, else in a CPU thread."""
    helped = await scheduler.helpers.unpack(
        scheduler.cpu_limiter, cache.root, source, max_unpacked_size
    )
    unpacked = await scheduler.in_cpu_thread(_unpack_one, cache, source, max_unpacked_size)
    return replace(unpacked, cached=False) if helped == "unpacked" else unpacked


def _unpack_one(cache: WheelCache, source: str, max_unpacked_size: int) -> UnpackedWheel:
    from anyio.from_thread import check_cancelled

    if os.path.isdir(source):
        return UnpackedWheel(source, manifest_for_tree(source))
    return cache.unpack(source, max_unpacked_size=max_unpacked_size, checkpoint=check_cancelled)


def _lookup_and_plan(
    cache: WheelCache, source: str, options: _Options
) -> tuple[UnpackedWheel, WheelPlan] | None:
    """The cached unpacked wheel of an archive and its plan, if the cache already has it."""
    if os.path.isdir(source):
        return None
    unpacked = cache.lookup(source, hash_on_miss=False)
    if unpacked is None:
        return None
    return unpacked, plan_wheel(unpacked, options)


def read_script(path: str) -> bytes:
    """A script's bytes: all of them if it starts with ``#!python``, else enough to tell."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        return head + handle.read() if head == b"#!python" else head


def plan_wheel(
    unpacked: UnpackedWheel, options: _Options, scripts: Mapping[str, bytes] | None = None
) -> WheelPlan:
    """Map an unpacked wheel onto the scheme: every file, script and metadata file it gets.

    A ``.data/scripts`` file may need its shebang rewritten, so its bytes are read from the
    tree (see :func:`read_script`), or taken from ``scripts`` (wheel path -> bytes) in a dry
    run, which has only the archive.
    """
    manifest = unpacked.manifest
    scheme = options.scheme
    compatible = set(manifest.tags).intersection(scheme.tags)
    if options.check_tags and scheme.tags and manifest.tags and not compatible:
        raise InvalidWheelError(
            manifest.filename,
            f"is not compatible with {scheme.interpreter} (Python {scheme.version}): "
            f"the wheel is tagged {', '.join(manifest.tags)}; the interpreter accepts "
            f"{', '.join(scheme.tags[:3])}, ...",
        )
    root = scheme.purelib if manifest.root_is_purelib else scheme.platlib
    source = unpacked.tree
    sep = os.sep
    plan = WheelPlan(
        wheel=f"{manifest.name}-{manifest.version}", source=source, target=root, size=manifest.size
    )
    stop = {root, scheme.data, scheme.purelib, scheme.platlib}
    extra_dirs: dict[str, None] = {}
    extra_rows: list[str] = []

    # The root of the wheel: one tree, straight from the manifest, minus what is special.
    files, rows = manifest.files, manifest.rows()
    generated = [f"{manifest.dist_info}/{name}" for name in _GENERATED]
    late = [name for name in manifest.top if name.endswith(".pth") and _has(files, name)]
    skipped = {path for path in generated if _has(files, path)}
    if skipped:
        kept = [i for i, path in enumerate(files) if path not in skipped]
        files, rows = [files[i] for i in kept], [rows[i] for i in kept]
    if late:
        files = [path for path in files if path not in late]
        plan.late = [(source + sep + name, root + sep + name) for name in late]
    plan.trees.append(
        Tree(source, root, native_paths(manifest.dirs), native_paths(files), sorted=os.sep == "/")
    )
    plan.top_level = {conflict_key(name): name for name in manifest.top}
    _refuse_reserved_in_root(plan.wheel, scheme, root, files)

    # <name>.data/<key>/...: a tree per key, rooted at the scheme's path for the key.
    data_prefix = manifest.data_dir + "/"
    entry_points = launchers_for(manifest.entry_points, scheme.version)
    plan.scripts = [entry.name for entry in entry_points]
    wrappers = _setuptools_wrappers(plan.scripts)
    # key -> (tree, its directories, its root as a RECORD path prefix)
    data_trees: dict[str, tuple[Tree, dict[str, None], str]] = {}
    for relative, digest, size in manifest.data:
        key, _, rest = relative[len(data_prefix) :].partition("/")
        found = data_trees.get(key)
        if found is None:
            base = scheme.path_for(key)
            if base is None:  # the unpacker refuses these; a foreign tree may have them
                raise InvalidWheelError(plan.wheel, f"unknown scheme {key!r}", entry=relative)
            if key == "headers":  # pip and uv: the normalised name, headers-dist not headers.dist
                base = os.path.join(base, canonical_name(manifest.name))
            _add_ancestors(extra_dirs, base, stop)
            prefix = _relative(base, root)
            found = data_trees[key] = (
                Tree(source + sep + data_prefix + key, base),
                {},
                "" if prefix == "." else prefix + "/",
            )
        tree, tree_dirs, record_prefix = found
        destination = tree.target + sep + rest
        reserved = scheme.reserved(destination)
        if reserved is not None:
            raise _reserved_error(plan.wheel, relative, destination, reserved)
        if key == "scripts":
            if rest in wrappers:
                continue  # as pip and uv: the entry point's launcher wins
            content = (
                scripts[relative] if scripts is not None else read_script(tree.source + sep + rest)
            )
            rewritten = rewrite_shebang(content, scheme.interpreter)
            if rewritten is not None:
                plan.writes.append((destination, rewritten, 0o755))
                extra_rows.append(_row(destination, root, rewritten))
                continue
        add_parent_dirs(tree_dirs, rest, sep)
        tree.files.append(rest.replace("/", sep))
        extra_rows.append(record_row(record_prefix + rest, digest, size))
    for tree, tree_dirs, _ in data_trees.values():
        tree.dirs = list(tree_dirs)
        plan.trees.append(tree)

    # Launchers for entry points, then the metadata an installer writes.
    if entry_points:
        _add_ancestors(extra_dirs, scheme.scripts, stop)
    for entry in entry_points:
        destination = os.path.join(scheme.scripts, entry.name)
        reserved = scheme.reserved(destination)
        if reserved is not None:
            raise _reserved_error(plan.wheel, f"entry point {entry.name}", destination, reserved)
        content = launcher(entry, scheme.interpreter)
        plan.writes.append((destination, content, 0o755))
        extra_rows.append(_row(destination, root, content))
    info = root + sep + manifest.dist_info
    metadata = {"INSTALLER": f"{options.installer}\n".encode()}
    if options.is_requested(manifest.name):
        metadata["REQUESTED"] = b""
    direct_url = options.direct_urls.get(manifest.filename)
    if direct_url is not None:
        metadata["direct_url.json"] = json.dumps(direct_url, sort_keys=True).encode()
    for name, content in metadata.items():
        destination = info + sep + name
        plan.writes.append((destination, content, 0o644))
        extra_rows.append(_row(destination, root, content))
    extra_rows.append(f"{manifest.dist_info}/RECORD,,")
    for row in extra_rows:
        bisect.insort(rows, row, key=row_path)
    plan.record = "\n".join(rows)
    plan.writes.append((info + sep + "RECORD", (plan.record + "\n").encode(), 0o644))
    plan.dirs = list(extra_dirs)
    return plan


def launchers_for(entry_points: Sequence[EntryPoint], version: str) -> list[EntryPoint]:
    """The launchers to write for ``entry_points`` into an environment of Python ``version``.

    pip's own wheel names its versioned launcher after the Python that built it (``pip3.12``);
    pip and uv write ``pip3.<minor>`` of the *target* instead, and so does this.
    """
    names = {entry.name for entry in entry_points}
    template = next((e for e in entry_points if e.name == "pip3"), None)
    if template is None or "pip" not in names:
        return list(entry_points)
    versioned = f"pip{version}"
    kept = [entry for entry in entry_points if not _VERSIONED_PIP.fullmatch(entry.name)]
    return [*kept, replace(template, name=versioned)]


_VERSIONED_PIP = re.compile(r"pip[0-9]+\.[0-9]+")


def _setuptools_wrappers(scripts: Iterable[str]) -> set[str]:
    """The ``.data/scripts`` files pip and uv leave out beside a generated launcher of the
    same name: setuptools' ``<name>``, ``<name>-script.py``, ``<name>.exe``, ``<name>.pya``.
    (Both install a ``<name>-script.pyw``, and so does asynclink.)"""
    suffixes = ("", "-script.py", ".exe", ".pya")
    return {name + suffix for name in scripts for suffix in suffixes}


def _refuse_reserved_in_root(wheel: str, scheme: Scheme, root: str, files: list[str]) -> None:
    """The root's files that would land on the environment's own (see ``Scheme.reserved``):
    only possible where the scripts or data directory lies inside the root (``--target``)."""
    for directory in (scheme.scripts, scheme.data):
        if directory == root:
            candidates = [path for path in files if "/" not in path]
        elif directory.startswith(root + os.sep):
            prefix = _relative(directory, root) + "/"
            start = bisect.bisect_left(files, prefix)
            end = bisect.bisect_left(files, prefix[:-1] + chr(ord("/") + 1), start)
            candidates = files[start:end]
        else:
            continue
        for path in candidates:
            destination = root + os.sep + path.replace("/", os.sep)
            reserved = scheme.reserved(destination)
            if reserved is not None:
                raise _reserved_error(wheel, path, destination, reserved)


def _reserved_error(wheel: str, entry: str, destination: str, what: str) -> InvalidWheelError:
    return InvalidWheelError(
        wheel, f"would replace {destination}, {what}; a wheel may not install that", entry=entry
    )


def _has(sorted_paths: list[str], path: str) -> bool:
    index = bisect.bisect_left(sorted_paths, path)
    return index < len(sorted_paths) and sorted_paths[index] == path


def _relative(destination: str, root: str) -> str:
    return os.path.relpath(destination, root).replace(os.sep, "/")


def _add_ancestors(found: dict[str, None], directory: str, stop: set[str]) -> None:
    """``directory`` and its parents below the first of ``stop``, parents first, into ``found``."""
    chain: list[str] = []
    while directory not in stop and directory not in found:
        chain.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    for path in reversed(chain):
        found[path] = None


def _row(destination: str, root: str, content: bytes) -> str:
    digest = record_hash(hashlib.sha256(content))
    return record_row(_relative(destination, root), digest, len(content))
