"""Find modules that two wheels of one batch both provide with different contents.

uv's ``warn_package_conflicts``, run once after every wheel is in place. Each wheel registers
its top-level names (keyed by module, case-folded: see :func:`~asynclink._plan.conflict_key`);
only names claimed by two or more wheels are looked into, and inside them only paths that two
wheels share are compared, so a batch without overlaps costs one dictionary pass.

Unlike uv, equal sizes are not taken as equal contents: when sizes match, RECORD hashes are
compared where both are known and the bytes otherwise. Byte-identical files (the empty or
pkgutil-style ``__init__.py`` of namespace packages such as the ``nvidia-*`` wheels) are never
conflicts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ._plan import WheelPlan, site_files
from ._results import Conflict

__all__ = ["find_conflicts"]


def find_conflicts(plans: Sequence[WheelPlan]) -> list[Conflict]:
    """Compare what the wheels of a batch put at the same paths; blocking, run it in a thread."""
    registry: dict[str, list[WheelPlan]] = {}
    for plan in plans:
        for key in plan.top_level:
            registry.setdefault(key, []).append(plan)
    conflicts: list[Conflict] = []
    for key, owners in sorted(registry.items()):
        if len(owners) > 1:
            conflicts.extend(_scan_shared(key, owners))
    return conflicts


def _scan_shared(key: str, owners: list[WheelPlan]) -> list[Conflict]:
    names = {plan.top_level[key] for plan in owners}
    wheels = tuple(plan.wheel for plan in owners)
    if len(names) > 1:
        shown = " and ".join(
            f"{plan.top_level[key]}{'/' if _is_dir(plan, plan.top_level[key]) else ''} "
            f"({plan.wheel})"
            for plan in owners
        )
        return [Conflict(key, wheels, f"module {key!r} is provided as {shown}")]

    # Every owner has the same top-level name: compare the files they share beneath it.
    (name,) = names
    files: dict[str, list[tuple[WheelPlan, str, str]]] = {}
    dirs: dict[str, set[str]] = {}
    for plan in owners:
        for relative, source in site_files(plan):
            if relative == name or relative.startswith(name + "/"):
                files.setdefault(relative.casefold(), []).append((plan, relative, source))
        for directory in _site_dirs(plan):
            if directory == name or directory.startswith(name + "/"):
                dirs.setdefault(directory.casefold(), set()).add(plan.wheel)

    conflicts: list[Conflict] = []
    for folded, providers in sorted(files.items()):
        relative = providers[0][1]
        in_dirs = dirs.get(folded, set()) - {plan.wheel for plan, _, _ in providers}
        if in_dirs:
            owners_text = ", ".join(plan.wheel for plan, _, _ in providers)
            conflicts.append(
                Conflict(
                    relative,
                    tuple(plan.wheel for plan, _, _ in providers) + tuple(sorted(in_dirs)),
                    f"a file in {owners_text} but a directory in {', '.join(sorted(in_dirs))}",
                )
            )
            continue
        if len({plan.wheel for plan, _, _ in providers}) < 2:
            continue
        first = providers[0]
        if any(not _same_contents(first, other) for other in providers[1:]):
            conflicts.append(
                Conflict(
                    relative,
                    tuple(plan.wheel for plan, _, _ in providers),
                    "different contents",
                )
            )
    return conflicts


def _site_dirs(plan: WheelPlan) -> list[str]:
    """The plan's directories in site-packages, relative, with ``/``."""
    found = [
        d.replace(os.sep, "/")
        for tree in plan.trees
        if tree.target == plan.target
        for d in tree.dirs
    ]
    cut = len(plan.target) + 1
    found.extend(
        d[cut:].replace(os.sep, "/") for d in plan.dirs if d.startswith(plan.target + os.sep)
    )
    return found


def _is_dir(plan: WheelPlan, name: str) -> bool:
    return name in _site_dirs(plan)


def _same_contents(a: tuple[WheelPlan, str, str], b: tuple[WheelPlan, str, str]) -> bool:
    (plan_a, relative_a, source_a), (plan_b, relative_b, source_b) = a, b
    known_a, known_b = plan_a.known(relative_a), plan_b.known(relative_b)
    if known_a and known_b and known_a.hash.partition("=")[0] == known_b.hash.partition("=")[0]:
        return (known_a.hash, known_a.size) == (known_b.hash, known_b.size)
    size_a = known_a.size if known_a else os.stat(source_a).st_size
    size_b = known_b.size if known_b else os.stat(source_b).st_size
    if size_a != size_b:
        return False
    return _same_bytes(source_a, source_b)


def _same_bytes(path_a: str, path_b: str) -> bool:
    with open(path_a, "rb") as file_a, open(path_b, "rb") as file_b:
        while True:
            chunk_a = file_a.read(1 << 16)
            if chunk_a != file_b.read(1 << 16):
                return False
            if not chunk_a:
                return True
