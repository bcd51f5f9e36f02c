"""What placing one wheel means: directories to make, files to link or copy, bytes to write.

A :class:`WheelPlan` is built once per wheel, in a worker thread: by walking an unpacked wheel
(:func:`plan_unpacked_tree`, for :func:`asynclink.link_wheels`) or from a cached wheel's
manifest (``_install``, which needs no walk). The scheduler then executes it. Paths are
absolute ``str``; the conflict scan reads them relative to ``plan.target``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ._errors import InvalidWheelError

__all__ = ["WheelPlan", "conflict_key", "destinations", "plan_unpacked_tree"]

#: File name endings of importable modules; the part before the first dot is the module.
_MODULE_ENDINGS = (".py", ".pyc", ".so", ".pyd")


@dataclass(slots=True)
class WheelPlan:
    """Everything needed to place one wheel, as absolute string paths."""

    wheel: str
    """The name used in results and messages."""
    source: str
    """The unpacked wheel's root."""
    target: str
    """site-packages: destinations and the conflict scan are relative to it."""
    dirs: list[str] = field(default_factory=list)
    """Destination directories, each after its parent."""
    links: list[tuple[str, str]] = field(default_factory=list)
    """(source, destination) pairs that the link mode may link."""
    copies: list[tuple[str, str]] = field(default_factory=list)
    """(source, destination) pairs that must be real copies (RECORD and rewritten files)."""
    symlinks: list[tuple[str, str]] = field(default_factory=list)
    """(link text, destination): symlinks of the unpacked tree, recreated as they are."""
    writes: list[tuple[str, bytes, int]] = field(default_factory=list)
    """(destination, contents, permission bits): generated files."""
    late: list[tuple[str, str]] = field(default_factory=list)
    """(source, destination) copied after every other wheel of the batch (top-level .pth)."""
    top_level: dict[str, str] = field(default_factory=dict)
    """Conflict key -> top-level name in site-packages, for the conflict registry."""
    sizes: dict[str, int] = field(default_factory=dict)
    """Destination -> size, where known for free (from RECORD)."""
    hashes: dict[str, str] = field(default_factory=dict)
    """Destination -> RECORD hash, where known for free."""

    @property
    def file_count(self) -> int:
        return (
            len(self.links)
            + len(self.copies)
            + len(self.symlinks)
            + len(self.writes)
            + len(self.late)
        )


def destinations(plans: Iterable[WheelPlan]) -> Iterator[str]:
    """Every path the plans create or replace."""
    for plan in plans:
        yield from (d for _, d in plan.links)
        yield from (d for _, d in plan.copies)
        yield from (d for _, d in plan.symlinks)
        yield from (d for d, _, _ in plan.writes)
        yield from (d for _, d in plan.late)


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
    """
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
    for entry in top:
        plan.top_level[conflict_key(entry.name)] = entry.name
    sep = os.sep
    real_root = os.path.realpath(source)
    # Depth first, in name order, so that the first file (which decides the link mode) and the
    # order of the result are the same from run to run.
    pending: list[tuple[list[os.DirEntry[str]], str]] = [(top, target)]
    while pending:
        entries, destination_dir = pending.pop()
        subdirs: list[tuple[list[os.DirEntry[str]], str]] = []
        for entry in entries:
            destination = destination_dir + sep + entry.name
            if entry.is_dir(follow_symlinks=False):
                plan.dirs.append(destination)
                try:
                    children = sorted(os.scandir(entry.path), key=_name)
                except OSError as error:
                    raise InvalidWheelError(wheel, f"cannot read {entry.path}: {error}") from error
                subdirs.append((children, destination))
            elif entry.is_symlink():
                plan.symlinks.append((_inside_link(wheel, entry.path, real_root), destination))
            elif entry.name == "RECORD":
                plan.copies.append((entry.path, destination))
            else:
                plan.links.append((entry.path, destination))
        pending.extend(reversed(subdirs))
    return plan


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
