"""What placing one wheel means: directories to make, files to link or copy, bytes to write.

A :class:`WheelPlan` is built once per wheel, in a worker thread, and the scheduler then
executes it. :func:`plan_wheel` maps a wheel from the cache (its manifest: no walk of the tree)
onto an environment's scheme, step by step in the order of the binary distribution format's
"installing a wheel" section, with what the "recording installed projects" specification asks
of an installer; :func:`plan_unpacked_tree` walks an unpacked wheel into a plan that places it
as it is, for :func:`asynclink.link_wheels`.

Most files travel in :class:`Tree`\\ s: a source directory, a target directory and the relative
paths below both. The placer opens the two directories once and works relative to them
(``linkat`` and friends with directory descriptors), so the kernel does not walk two long
absolute paths per file and Python does not build them.
"""

from __future__ import annotations

import bisect
import functools
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

from ._cache import UnpackedWheel
from ._confinement import (
    RESERVED_PREFIX,
    Confinement,
    is_below,
    reserved_name_error,
    special_file_error,
)
from ._errors import InvalidWheelError
from ._fsutil import add_parent_dirs, canonical_name
from ._installed import SOURCE_FILE
from ._manifest import Manifest, ManifestRefused, load_manifest
from ._options import Options
from ._record import RecordEntry, find_row, format_row, row_for
from ._scheme import Scheme
from ._scripts import launcher, launchers_for, read_script, rewrite_shebang, setuptools_wrappers

__all__ = [
    "Tree",
    "WheelPlan",
    "conflict_key",
    "destinations",
    "plan_unpacked_tree",
    "plan_wheel",
    "refuse_escaping_symlinks",
    "single_destinations",
    "site_files",
]

#: Files of a dist-info directory that the install writes itself, replacing the wheel's own.
_GENERATED = ("INSTALLER", "REQUESTED", "direct_url.json", SOURCE_FILE, "RECORD")

#: File name endings of importable modules; the part before the first dot is the module.
_MODULE_ENDINGS = (".py", ".pyc", ".so", ".pyd")


class Tree:
    """Files below ``source`` that go to the same relative paths below ``target``; one object
    per tree (equal only to itself, so it can key what is done to it).

    The records of a plan are plain classes, not dataclasses: every command pays for each
    dataclass's generated code at start-up (most of a millisecond a class on Python 3.11)."""

    __slots__ = ("dirs", "files", "sorted", "source", "target")

    def __init__(
        self,
        source: str,
        target: str,
        dirs: list[str] | None = None,
        files: list[str] | None = None,
        sorted: bool = False,
    ) -> None:
        self.source = source
        self.target = target
        self.dirs = [] if dirs is None else dirs
        """Directories to make below ``target`` (relative, ``os.sep``), each after its parent."""
        self.files = [] if files is None else files
        """Files to link (or copy, when the mode falls back), relative to both roots."""
        self.sorted = sorted
        """``files`` are in string order (as from a manifest), so a directory's are contiguous."""

    def __repr__(self) -> str:
        return f"Tree({self.source!r} -> {self.target!r}, {len(self.files)} files)"


class WheelPlan:
    """Everything needed to place one wheel; the planner fills it in (see :class:`Tree` for
    why it is not a dataclass)."""

    __slots__ = (
        "_rows",
        "copies",
        "dirs",
        "late",
        "record",
        "scripts",
        "size",
        "source",
        "symlinks",
        "target",
        "top_level",
        "trees",
        "wheel",
        "writes",
    )

    def __init__(self, wheel: str, source: str, target: str, size: int = 0) -> None:
        self.wheel = wheel
        """The name used in results and messages."""
        self.source = source
        """The unpacked wheel's root."""
        self.target = target
        """site-packages: the conflict scan and RECORD are relative to it."""
        self.size = size
        """Bytes of the files placed, where known for free (installs from the cache)."""
        self.trees: list[Tree] = []
        self.dirs: list[str] = []
        """Absolute directories to make before the trees' (parents of data and scripts
        roots)."""
        self.copies: list[tuple[str, str]] = []
        """(source, destination) pairs that must be real copies, not links: RECORD files,
        which an installer may rewrite in place."""
        self.symlinks: list[tuple[str, str]] = []
        """(link text, destination): symlinks of the unpacked tree, recreated as they are."""
        self.writes: list[tuple[str, bytes, int]] = []
        """(destination, contents, permission bits): generated files."""
        self.late: list[tuple[str, str]] = []
        """(source, destination) copied after every other wheel of the batch (top-level
        .pth)."""
        self.top_level: dict[str, str] = {}
        """Conflict key -> top-level name in site-packages, for the conflict registry."""
        self.record: str | None = None
        """RECORD's rows (sorted by path, one per line) where known: hashes for free."""
        self.scripts: list[str] = []
        """Names of the launchers written for entry points (installs only)."""
        self._rows: list[str] | None = None
        """``record`` split into rows, on first use."""

    def __repr__(self) -> str:
        return f"WheelPlan({self.wheel!r} -> {self.target!r})"

    def known(self, relative: str) -> RecordEntry | None:
        """The RECORD entry of the site-packages-relative ``relative``, if known for free."""
        if not self.record:
            return None
        if self._rows is None:
            self._rows = self.record.split("\n")
        return find_row(self._rows, relative)

    @property
    def file_count(self) -> int:
        return (
            sum(len(tree.files) for tree in self.trees)
            + len(self.copies)
            + len(self.symlinks)
            + len(self.writes)
            + len(self.late)
        )


def destinations(plans: Iterable[WheelPlan]) -> Iterator[str]:
    """Every path the plans create or replace."""
    sep = os.sep
    for plan in plans:
        for tree in plan.trees:
            prefix = tree.target + sep
            yield from (prefix + relative for relative in tree.files)
        yield from single_destinations(plan)


def directories(plan: WheelPlan) -> Iterator[str]:
    """Every directory the plan makes or merges into (its trees' and the roots of its data
    and scripts)."""
    yield from plan.dirs
    sep = os.sep
    for tree in plan.trees:
        prefix = tree.target + sep
        yield from (prefix + relative for relative in tree.dirs)


def single_destinations(plan: WheelPlan) -> Iterator[str]:
    """The paths the plan places one by one, outside its trees (copies, symlinks, writes)."""
    yield from (d for _, d in plan.copies)
    yield from (d for _, d in plan.symlinks)
    yield from (d for d, _, _ in plan.writes)
    yield from (d for _, d in plan.late)


def site_files(plan: WheelPlan) -> Iterator[tuple[str, str]]:
    """(site-packages-relative path with ``/``, source) of every file placed in site-packages."""
    cut = len(plan.target) + 1
    for tree in plan.trees:
        if tree.target == plan.target:
            for relative in tree.files:
                yield relative.replace(os.sep, "/"), tree.source + os.sep + relative
    for source, destination in (*plan.copies, *plan.late):
        if destination.startswith(plan.target + os.sep):
            yield destination[cut:].replace(os.sep, "/"), source


def conflict_key(name: str) -> str:
    """The key two top-level entries collide on: the module name they provide, case-folded.

    ``six.py``, ``six.cpython-311-x86_64-linux-gnu.so`` and ``six/`` all provide ``six``;
    case-folding makes ``Six/`` and ``six/`` collide too, as they do on macOS and Windows.
    """
    folded = name.casefold()
    if folded.endswith(_MODULE_ENDINGS):
        return folded.partition(".")[0]
    return folded


def plan_unpacked_tree(wheel: str | None, source: str, target: str) -> WheelPlan:
    """Walk an unpacked wheel at ``source`` into a plan that places it under ``target``.

    A file named ``RECORD`` is copied, never linked, as in uv: it is rewritten in place later.
    Symlinks are recreated as they are when they stay inside the wheel and refused when they
    point out of it (following one could pull any file on the machine into site-packages).
    A tree from asynclink's own cache comes with its listing (the manifest written when it was
    unpacked, never changed since), which is read instead of walking the tree.
    """
    cached = _plan_from_manifest(source, target)
    if cached is not None:
        return cached
    try:
        top = sorted(os.scandir(source), key=_name)
    except OSError as error:
        raise InvalidWheelError(
            wheel or os.path.basename(source), f"cannot read the unpacked wheel: {error}"
        ) from error
    if wheel is None:
        infos = [e.name[: -len(".dist-info")] for e in top if e.name.endswith(".dist-info")]
        wheel = infos[0] if len(infos) == 1 else os.path.basename(source)
    plan = WheelPlan(wheel=wheel, source=source, target=target)
    tree = Tree(source, target)
    plan.trees.append(tree)
    for entry in top:
        plan.top_level[conflict_key(entry.name)] = entry.name
    sep = os.sep
    real_root = os.path.realpath(source)
    # Depth first, in name order, so that the first file (which decides the link mode) and the
    # order of the result are the same from run to run.
    pending: list[tuple[list[os.DirEntry[str]], str]] = [(top, "")]
    while pending:
        entries, prefix = pending.pop()
        subdirs: list[tuple[list[os.DirEntry[str]], str]] = []
        for entry in entries:
            relative = prefix + entry.name
            if entry.name.startswith(RESERVED_PREFIX):
                raise reserved_name_error(wheel, relative)
            if entry.is_dir(follow_symlinks=False):
                tree.dirs.append(relative)
                try:
                    children = sorted(os.scandir(entry.path), key=_name)
                except OSError as error:
                    raise InvalidWheelError(wheel, f"cannot read {entry.path}: {error}") from error
                subdirs.append((children, relative + sep))
            elif entry.is_symlink():
                text = _inside_link(wheel, entry.path, source, real_root)
                plan.symlinks.append((text, target + sep + relative))
            elif not entry.is_file(follow_symlinks=False):
                raise special_file_error(wheel, relative)
            elif entry.name == "RECORD":
                plan.copies.append((entry.path, target + sep + relative))
            else:
                tree.files.append(relative)
        pending.extend(reversed(subdirs))
    return plan


def _plan_from_manifest(source: str, target: str) -> WheelPlan | None:
    """The plan of a cache tree (``.../<digest>/tree`` beside its ``manifest``)."""
    if os.path.basename(source) != "tree":
        return None
    try:
        manifest = load_manifest(os.path.dirname(source))
    except ManifestRefused:
        return None  # walked instead, which checks every file
    if manifest is None:
        return None
    wheel = f"{manifest.name}-{manifest.version}"
    plan = WheelPlan(wheel=wheel, source=source, target=target, size=manifest.size)
    files = list(manifest.files)
    if manifest.data:  # one contiguous block, at its place in the order
        at = bisect.bisect_left(files, manifest.data_dir + "/")
        files[at:at] = [entry.path for entry in manifest.data]
    dirs = dict.fromkeys(manifest.dirs)
    for entry in manifest.data:
        add_parent_dirs(dirs, entry.path)
    plan.trees.append(
        Tree(source, target, _native(sorted(dirs)), _native(files), sorted=os.sep == "/")
    )
    record = f"{manifest.dist_info}/RECORD"
    plan.copies.append((source + os.sep + record, target + os.sep + record))
    plan.top_level = {conflict_key(name): name for name in manifest.top}
    if manifest.data:
        plan.top_level[conflict_key(manifest.data_dir)] = manifest.data_dir
    plan.record = manifest.record
    return plan


def _native(paths: list[str]) -> list[str]:
    """Manifest paths (``/``) in this system's separator."""
    return paths if os.sep == "/" else [path.replace("/", os.sep) for path in paths]


def _name(entry: os.DirEntry[str]) -> str:
    return entry.name


def _inside_link(wheel: str, path: str, source: str, real_root: str) -> str:
    """The text to give the copy of the symlink at ``path``, if what it points to is inside
    the wheel.

    A relative text is given normalised (``hop/../x`` as ``x``): in site-packages a component
    on its way may be another wheel's symlink (``hop -> .``), and ``..`` after it would climb
    out of site-packages. A text that means something else once normalised (``..`` after a
    symlink of the tree) is refused, as is one that leaves the tree's path and comes back.
    """
    text = os.readlink(path)
    resolved = os.path.realpath(path)
    if not is_below(resolved, (real_root,)):
        raise InvalidWheelError(
            wheel, f"symlink {path} -> {text} points outside the unpacked wheel", entry=path
        )
    if os.path.isabs(text):
        return text
    parent = os.path.dirname(path)
    lexical = os.path.normpath(os.path.join(parent, text))
    if not is_below(lexical, (source,)) or os.path.realpath(lexical) != resolved:
        raise InvalidWheelError(
            wheel,
            f"symlink {path} -> {text} goes up through another symlink; only links that "
            "mean the same when normalised are recreated",
            entry=path,
        )
    return os.path.relpath(lexical, parent)


def refuse_escaping_symlinks(plans: Iterable[WheelPlan], confinement: Confinement) -> None:
    """Once every wheel is placed: refuse (before the commit) a recreated symlink that
    resolves outside the bounds and outside its own tree.

    Each text was checked against its own tree, but in site-packages the directories on its
    way may be the target's own symlinks (``pkg -> .``): only the placed link says where it
    really leads.
    """
    for plan in plans:
        if not plan.symlinks:
            continue
        allowed = (*confinement.real_roots, os.path.realpath(plan.source))
        for text, destination in plan.symlinks:
            resolved = os.path.realpath(destination)
            if not is_below(resolved, allowed):
                raise InvalidWheelError(
                    plan.wheel,
                    f"symlink {destination} -> {text} resolves outside site-packages "
                    f"(to {resolved}) through the target's own symlinks",
                    entry=destination,
                )


# -- the plan of a wheel from the cache, in the order of the specification's steps -----------


def plan_wheel(
    unpacked: UnpackedWheel,
    scheme: Scheme,
    options: Options,
    scripts: Mapping[str, bytes] | None = None,
) -> WheelPlan:
    """Map an unpacked wheel onto ``scheme``: every file, script and metadata file it gets.

    A ``.data/scripts`` file may need its shebang rewritten, so its bytes are read from the
    tree (see :func:`~._scripts.read_script`), or taken from ``scripts`` (wheel path -> bytes)
    in a dry run, which has only the archive.
    """
    manifest = unpacked.manifest
    _check_tags(manifest, scheme, options)
    planner = _Planner(unpacked, scheme)
    planner.unpack_root()
    planner.spread_data(scripts)
    planner.write_launchers()
    planner.refuse_collisions()
    planner.record_installed(options)
    return planner.plan


def _check_tags(manifest: Manifest, scheme: Scheme, options: Options) -> None:
    """The wheel is for this interpreter (its tags), unless the caller says not to check."""
    compatible = set(manifest.tags).intersection(scheme.tags)
    if options.check_tags and scheme.tags and manifest.tags and not compatible:
        raise InvalidWheelError(
            manifest.filename,
            f"is not compatible with {scheme.interpreter} (Python {scheme.version}): "
            f"the wheel is tagged {', '.join(manifest.tags)}; the interpreter accepts "
            f"{', '.join(scheme.tags[:3])}, ...",
        )


class _Planner:
    """The steps of :func:`plan_wheel`, each filling in part of one plan."""

    def __init__(self, unpacked: UnpackedWheel, scheme: Scheme) -> None:
        self.unpacked = unpacked
        manifest = self.manifest = unpacked.manifest
        self.scheme = scheme
        self.root = scheme.purelib if manifest.root_is_purelib else scheme.platlib
        self.plan = WheelPlan(
            wheel=f"{manifest.name}-{manifest.version}",
            source=unpacked.tree,
            target=self.root,
            size=manifest.size,
        )
        self.rows = manifest.rows()
        """The RECORD rows of the root's files, sorted by path (as :attr:`paths`)."""
        self.paths: list[str] = []
        """The path of each of :attr:`rows`: where a new row goes is found by bisecting
        these strings, not the rows through a key function (12 us a row)."""
        self.extra_rows: list[tuple[str, str]] = []
        """(path, row) of each file the install adds or moves: metadata, launchers, data."""
        self.extra_dirs: dict[str, None] = {}
        self.stop = {self.root, scheme.data, scheme.purelib, scheme.platlib}
        self.launchers = launchers_for(manifest.entry_points, scheme.version)
        self.plan.scripts = [entry.name for entry in self.launchers]

    # 1.c, 1.d: "If Root-Is-Purelib == 'true', unpack archive into purelib (site-packages).
    # Else unpack archive into platlib (site-packages)."
    def unpack_root(self) -> None:
        """The root of the wheel: one tree, straight from the manifest, minus what the install
        writes itself; top-level ``.pth`` files wait for every other file of the batch."""
        manifest, plan, root, sep = self.manifest, self.plan, self.root, os.sep
        files = manifest.files
        generated = [f"{manifest.dist_info}/{name}" for name in _GENERATED]
        late = [name for name in manifest.top if name.endswith(".pth") and _has(files, name)]
        skipped = {path for path in generated if _has(files, path)}
        if skipped:
            kept = [i for i, path in enumerate(files) if path not in skipped]
            files, self.rows = [files[i] for i in kept], [self.rows[i] for i in kept]
        self.paths = list(files)  # a copy: the manifest's list may be shared by many installs
        if late:
            files = [path for path in files if path not in late]
            plan.late = [(plan.source + sep + name, root + sep + name) for name in late]
        plan.trees.append(
            Tree(plan.source, root, _native(manifest.dirs), _native(files), sorted=sep == "/")
        )
        plan.top_level = {conflict_key(name): name for name in manifest.top}
        _refuse_reserved_in_root(plan.wheel, self.scheme, root, files)

    # 2.b: "Move each subtree of distribution-1.0.data/ onto its destination path. Each
    # subdirectory of distribution-1.0.data/ is a key into a dict of destination directories."
    # 2.c: "If applicable, update scripts starting with #!python to point to the correct
    # interpreter."
    def spread_data(self, scripts: Mapping[str, bytes] | None) -> None:
        """A tree per ``<name>.data/<key>/``, rooted at the scheme's path for the key."""
        data_prefix = self.manifest.data_dir + "/"
        wrappers = setuptools_wrappers(self.plan.scripts)
        trees: dict[str, _DataTree] = {}
        for entry in self.manifest.data:
            key, _, rest = entry.path[len(data_prefix) :].partition("/")
            tree = trees.get(key) or trees.setdefault(key, self._data_tree(key, entry.path))
            destination = tree.tree.target + os.sep + rest
            reserved = self.scheme.reserved(destination)
            if reserved is not None:
                raise _reserved_error(self.plan.wheel, entry.path, destination, reserved)
            if key == "scripts":
                if rest in wrappers:
                    continue  # as pip and uv: the entry point's launcher wins
                if self._rewrite(tree, rest, destination, entry, scripts):
                    continue
            add_parent_dirs(tree.dirs, rest, os.sep)
            tree.tree.files.append(rest.replace("/", os.sep))
            path = tree.prefix + rest
            self.extra_rows.append((path, format_row(entry._replace(path=path))))
        for tree in trees.values():
            tree.tree.dirs = list(tree.dirs)
            self.plan.trees.append(tree.tree)

    def _data_tree(self, key: str, entry: str) -> _DataTree:
        base = self.scheme.path_for(key)
        if base is None:  # the unpacker refuses these; a foreign tree may have them
            raise InvalidWheelError(self.plan.wheel, f"unknown scheme {key!r}", entry=entry)
        if key == "headers":  # pip and uv: the normalised name, headers-dist not headers.dist
            base = os.path.join(base, canonical_name(self.manifest.name))
        _add_ancestors(self.extra_dirs, base, self.stop)
        prefix = _relative_directory(base, self.root)
        source = self.plan.source + os.sep + self.manifest.data_dir + os.sep + key
        return _DataTree(Tree(source, base), {}, "" if prefix == "." else prefix + "/")

    def _rewrite(
        self,
        tree: _DataTree,
        rest: str,
        destination: str,
        entry: RecordEntry,
        scripts: Mapping[str, bytes] | None,
    ) -> bool:
        """Write a ``#!python`` script with the target's interpreter; say if it was one."""
        if scripts is not None:
            content = scripts[entry.path]
        else:
            content = read_script(tree.tree.source + os.sep + rest)
        rewritten = rewrite_shebang(content, self.scheme.interpreter)
        if rewritten is None:
            return False
        self.plan.writes.append((destination, rewritten, 0o755))
        self._add_row(_relative(destination, self.root), rewritten)
        return True

    # "Recommended installer features": generate script wrappers for entry points.
    def write_launchers(self) -> None:
        scheme = self.scheme
        if self.launchers:
            _add_ancestors(self.extra_dirs, scheme.scripts, self.stop)
        for entry in self.launchers:
            destination = os.path.join(scheme.scripts, entry.name)
            reserved = scheme.reserved(destination)
            if reserved is not None:
                raise _reserved_error(
                    self.plan.wheel, f"entry point {entry.name}", destination, reserved
                )
            content = launcher(entry, scheme.interpreter)
            self.plan.writes.append((destination, content, 0o755))
            self._add_row(_relative(destination, self.root), content)

    def refuse_collisions(self) -> None:
        """Refuse (``InvalidWheelError``) two parts of the wheel that land on one path, or a
        file of one where another needs a directory: a ``.data`` file on a file of the root
        (``<name>.data/purelib/x.py`` beside ``x.py``), two ``.data`` trees that meet
        (``data/bin/x`` and ``scripts/x`` where the scripts are the data's ``bin``), a
        launcher on either or two launchers of one name, a root file ``bin`` where the
        launchers go, a ``.data`` file over the metadata the install writes (``RECORD``).
        One would silently win (and RECORD list the path twice), or the install fail halfway.
        The root's own files cannot meet: RECORD lists each once, and the cache refuses a
        file that is a directory too."""
        plan, sep = self.plan, os.sep
        root_tree, *data_trees = plan.trees
        others = [tree.target + sep + name for tree in data_trees for name in tree.files]
        others += [destination for destination, _, _ in plan.writes]
        if not others:
            return
        prefix = root_tree.target + sep
        root_files, root_dirs = set(root_tree.files), set(root_tree.dirs)
        # The root's top-level .pth files, placed after every other file, are the root's too.
        root_files.update(destination[len(prefix) :] for _, destination in plan.late)

        def in_root(path: str, names: set[str]) -> bool:
            return path.startswith(prefix) and path[len(prefix) :] in names

        info = self.root + sep + self.manifest.dist_info + sep
        placed = {info + name for name in _GENERATED}  # the install writes these itself
        needed: set[str] = set()  # directories the others go into
        for destination in others:
            problem = None
            if destination in placed or in_root(destination, root_files):
                problem = f"two of its files would be installed as {destination}"
            elif destination in needed or in_root(destination, root_dirs):
                problem = f"it has {destination} as a file and as a directory"
            parent = os.path.dirname(destination)
            while problem is None and parent not in needed and parent not in self.stop:
                if parent in placed or in_root(parent, root_files):
                    problem = f"it has {parent} as a file and as a directory"
                needed.add(parent)
                parent, last = os.path.dirname(parent), parent
                if parent == last:
                    break
            if problem is not None:
                raise InvalidWheelError(
                    plan.wheel, problem, entry=_relative(destination, self.root)
                )
            placed.add(destination)

    def _add_row(self, relative: str, content: bytes) -> None:
        """The RECORD row of a file the install writes itself."""
        self.extra_rows.append((relative, row_for(relative, content)))

    # 2.d: "Update distribution-1.0.dist-info/RECORD with the installed paths." With the
    # "recording installed projects" files: INSTALLER, REQUESTED, direct_url.json.
    def record_installed(self, options: Options) -> None:
        manifest, plan, sep = self.manifest, self.plan, os.sep
        info = self.root + sep + manifest.dist_info
        metadata = {"INSTALLER": f"{options.installer}\n".encode()}
        if options.is_requested(manifest.name):
            metadata["REQUESTED"] = b""
        direct_url = options.direct_urls.get(manifest.filename)
        if direct_url is not None:
            direct_url = _with_hash(direct_url, self.unpacked.digest, self.unpacked.archive)
            metadata["direct_url.json"] = json.dumps(direct_url, sort_keys=True).encode()
        if self.unpacked.digest:  # where it came from: a second install of it has nothing to do
            source = {"wheel": manifest.filename, "sha256": self.unpacked.digest}
            metadata[SOURCE_FILE] = json.dumps(source, sort_keys=True).encode()
        for name, content in metadata.items():
            plan.writes.append((info + sep + name, content, 0o644))
            self._add_row(f"{manifest.dist_info}/{name}", content)
        record = f"{manifest.dist_info}/RECORD"
        self.extra_rows.append((record, record + ",,"))
        rows, paths = self.rows, self.paths
        for path, row in self.extra_rows:
            at = bisect.bisect_right(paths, path)
            paths.insert(at, path)
            rows.insert(at, row)
        plan.record = "\n".join(rows)
        plan.writes.append((info + sep + "RECORD", (plan.record + "\n").encode(), 0o644))
        plan.dirs = list(self.extra_dirs)


def _with_hash(
    direct_url: Mapping[str, object], digest: str, archive: str | None
) -> Mapping[str, object]:
    """PEP 610's ``archive_info`` of a wheel file, with its hash where the caller left it out
    (as pip and uv record a local archive's)."""
    info = direct_url.get("archive_info")
    if archive is None or not digest or not isinstance(info, dict) or "hash" in info:
        return direct_url
    hashed = {**info, "hash": f"sha256={digest}", "hashes": {"sha256": digest}}
    return {**direct_url, "archive_info": hashed}


class _DataTree(NamedTuple):
    """One ``.data/<key>/`` tree being planned."""

    tree: Tree
    dirs: dict[str, None]
    prefix: str
    """Its root as a RECORD path prefix (relative to site-packages, with ``/``)."""


def _refuse_reserved_in_root(wheel: str, scheme: Scheme, root: str, files: list[str]) -> None:
    """The root's files that would land on the environment's own (see ``Scheme.reserved``):
    only possible where the scripts or data directory lies inside the root (``--target``)."""
    for directory in (scheme.scripts, scheme.data):
        if directory == root:
            candidates = [path for path in files if "/" not in path]
        elif directory.startswith(root + os.sep):
            prefix = _relative_directory(directory, root) + "/"
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
    """The file ``destination`` as RECORD names it: relative to ``root``, with ``/``."""
    directory, _, name = destination.rpartition(os.sep)
    if directory == root:
        return name
    return _relative_directory(directory, root) + "/" + name


@functools.lru_cache(maxsize=64)
def _relative_directory(directory: str, root: str) -> str:
    """The directory ``directory`` relative to ``root``, with ``/`` (``os.path.relpath``:
    ``..`` where it is an ancestor of ``root``), remembered: every wheel's launchers and ``.data``
    files go to the few directories of one scheme (``relpath`` costs 10 us a call)."""
    return os.path.relpath(directory, root).replace(os.sep, "/")


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
