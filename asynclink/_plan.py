"""What placing one wheel means: directories to make, files to link or copy, bytes to write.

A :class:`WheelPlan` is built once per wheel, in a worker thread: by walking an unpacked wheel
(:func:`plan_unpacked_tree`, for :func:`asynclink.link_wheels`) or from a cached wheel's
manifest (``_install``, which needs no walk). The scheduler then executes it.

Most files travel in :class:`Tree`\\ s: a source directory, a target directory and the relative
paths below both. The placer opens the two directories once and works relative to them
(``linkat`` and friends with directory descriptors), so the kernel does not walk two long
absolute paths per file and Python does not build them.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ._confinement import RESERVED_PREFIX
from ._errors import InvalidWheelError
from ._fsutil import add_parent_dirs
from ._wheelinfo import reserved_name_error

__all__ = [
    "Tree",
    "WheelPlan",
    "conflict_key",
    "destinations",
    "native_paths",
    "plan_unpacked_tree",
    "single_destinations",
    "site_files",
]

#: File name endings of importable modules; the part before the first dot is the module.
_MODULE_ENDINGS = (".py", ".pyc", ".so", ".pyd")


@dataclass(slots=True)
class Tree:
    """Files below ``source`` that go to the same relative paths below ``target``."""

    source: str
    target: str
    dirs: list[str] = field(default_factory=list)
    """Directories to make below ``target`` (relative, ``os.sep``), each after its parent."""
    files: list[str] = field(default_factory=list)
    """Files to link (or copy, when the mode falls back), relative to both roots."""
    sorted: bool = False
    """``files`` are in string order (as from a manifest), so a directory's are contiguous."""


@dataclass(slots=True)
class WheelPlan:
    """Everything needed to place one wheel."""

    wheel: str
    """The name used in results and messages."""
    source: str
    """The unpacked wheel's root."""
    target: str
    """site-packages: the conflict scan and RECORD are relative to it."""
    trees: list[Tree] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    """Absolute directories to make before the trees' (parents of data and scripts roots)."""
    copies: list[tuple[str, str]] = field(default_factory=list)
    """(source, destination) pairs that must be real copies, not links: RECORD files, which
    an installer may rewrite in place."""
    symlinks: list[tuple[str, str]] = field(default_factory=list)
    """(link text, destination): symlinks of the unpacked tree, recreated as they are."""
    writes: list[tuple[str, bytes, int]] = field(default_factory=list)
    """(destination, contents, permission bits): generated files."""
    late: list[tuple[str, str]] = field(default_factory=list)
    """(source, destination) copied after every other wheel of the batch (top-level .pth)."""
    top_level: dict[str, str] = field(default_factory=dict)
    """Conflict key -> top-level name in site-packages, for the conflict registry."""
    record: str | None = None
    """RECORD's rows (sorted by path, one per line) where known: hashes for free."""
    size: int = 0
    """Bytes of the files placed, where known for free (installs from the cache)."""
    scripts: list[str] = field(default_factory=list)
    """Names of the launchers written for entry points (installs only)."""
    _rows: list[str] | None = field(default=None, init=False, repr=False, compare=False)
    """``record`` split into rows, on first use."""

    def known(self, relative: str) -> tuple[str, int] | None:
        """(hash, size) of the site-packages-relative ``relative`` from RECORD, if known."""
        if not self.record:
            return None
        from ._unpack import row_path

        if self._rows is None:
            self._rows = self.record.split("\n")
        rows = self._rows
        index = bisect.bisect_left(rows, relative, key=row_path)
        if index < len(rows) and row_path(rows[index]) == relative:
            _, digest, size = rows[index].rsplit(",", 2)
            return (digest, int(size)) if digest else None
        return None

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
                text = _inside_link(wheel, entry.path, real_root)
                plan.symlinks.append((text, target + sep + relative))
            elif entry.name == "RECORD":
                plan.copies.append((entry.path, target + sep + relative))
            else:
                tree.files.append(relative)
        pending.extend(reversed(subdirs))
    return plan


def _plan_from_manifest(source: str, target: str) -> WheelPlan | None:
    """The plan of a cache tree (``.../<digest>/tree`` beside its ``manifest.json``)."""
    if os.path.basename(source) != "tree":
        return None
    from ._unpack import load_manifest

    manifest = load_manifest(os.path.dirname(source))
    if manifest is None:
        return None
    wheel = f"{manifest.name}-{manifest.version}"
    plan = WheelPlan(wheel=wheel, source=source, target=target, size=manifest.size)
    files = list(manifest.files)
    if manifest.data:  # one contiguous block, at its place in the order
        at = bisect.bisect_left(files, manifest.data_dir + "/")
        files[at:at] = [path for path, _, _ in manifest.data]
    dirs = dict.fromkeys(manifest.dirs)
    for path, _, _ in manifest.data:
        add_parent_dirs(dirs, path)
    plan.trees.append(
        Tree(source, target, native_paths(sorted(dirs)), native_paths(files), sorted=os.sep == "/")
    )
    record = f"{manifest.dist_info}/RECORD"
    plan.copies.append((source + os.sep + record, target + os.sep + record))
    plan.top_level = {conflict_key(name): name for name in manifest.top}
    if manifest.data:
        plan.top_level[conflict_key(manifest.data_dir)] = manifest.data_dir
    plan.record = manifest.record
    return plan


def native_paths(paths: list[str]) -> list[str]:
    """Manifest paths (``/``) in this system's separator."""
    return paths if os.sep == "/" else [path.replace("/", os.sep) for path in paths]


def _name(entry: os.DirEntry[str]) -> str:
    return entry.name


def _inside_link(wheel: str, path: str, real_root: str) -> str:
    """The text of the symlink at ``path``, if what it points to is inside the wheel."""
    text = os.readlink(path)
    resolved = os.path.realpath(path)
    if resolved != real_root and not resolved.startswith(real_root + os.sep):
        raise InvalidWheelError(
            wheel, f"symlink {path} -> {text} points outside the unpacked wheel", entry=path
        )
    return text
