"""What ``--json`` prints: one document per command, in the shape the README documents.

Every document carries ``"schema": 1`` (a field is only ever added under one schema number;
renaming or removing one would make it 2) and ``"command"``. ``files`` is a count everywhere;
a dry run lists what it would place under ``planned``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._cache import CacheReport
    from ._dryrun import PlannedWheel
    from ._results import (
        Conflict,
        Distribution,
        InstallResult,
        RemovedDistribution,
        RollbackReport,
        UninstallResult,
        WheelResult,
    )
    from ._scheme import Scheme

__all__ = [
    "SCHEMA",
    "cache_document",
    "install_document",
    "list_document",
    "plan_document",
    "uninstall_document",
]

SCHEMA = 1

Document = dict[str, Any]


def _head(command: str, dry_run: bool = False) -> Document:
    return {"schema": SCHEMA, "command": command, "dry_run": dry_run}


def target(scheme: Scheme) -> Document:
    return {
        "purelib": scheme.purelib,
        "platlib": scheme.platlib,
        "scripts": scheme.scripts,
        "data": scheme.data,
        "interpreter": scheme.interpreter,
    }


def install_document(command: str, result: InstallResult) -> Document:
    """``install`` and ``sync``."""
    return {
        **_head(command),
        "target": target(result.scheme),
        "elapsed": round(result.elapsed, 6),
        "files": result.files,
        "bytes": result.bytes,
        "compiled": result.compiled,
        "wheels": [_wheel(wheel) for wheel in result.wheels],
        "removed": [_removed(removed) for removed in result.removed],
        "recovered": [_recovered(report) for report in result.recovered],
        "conflicts": [_conflict(conflict) for conflict in result.conflicts],
    }


def _wheel(wheel: WheelResult) -> Document:
    return {
        "wheel": wheel.wheel,
        "project": wheel.project,
        "version": wheel.version,
        "action": wheel.action.value,
        "replaced": wheel.replaced,
        "archive": wheel.archive,
        "cached": wheel.cached,
        "files": wheel.files,
        "bytes": wheel.bytes,
        "mode": wheel.mode.value,
        "requested_mode": wheel.requested_mode.value,
        "fallbacks": [
            {"from": f.from_mode.value, "to": f.to_mode.value, "reason": f.reason}
            for f in wheel.fallbacks
        ],
        "scripts": list(wheel.scripts),
        "dist_info": wheel.dist_info,
    }


def _removed(removed: RemovedDistribution) -> Document:
    return {
        "project": removed.name,
        "version": removed.version,
        "dist_info": removed.dist_info,
        "files": removed.files,
    }


def _recovered(report: RollbackReport) -> Document:
    return {
        "removed_files": report.removed_files,
        "restored_files": report.restored_files,
        "removed_dirs": report.removed_dirs,
        "recreated_dirs": report.recreated_dirs,
        "problems": list(report.problems),
    }


def _conflict(conflict: Conflict) -> Document:
    return {"path": conflict.path, "wheels": list(conflict.wheels), "reason": conflict.reason}


def plan_document(
    command: str,
    scheme: Scheme | None,
    planned: list[PlannedWheel],
    removing: list[RemovedDistribution],
) -> Document:
    """A dry run of ``install`` or ``sync`` (``removing``: what a sync would remove)."""
    return {
        **_head(command, dry_run=True),
        "target": target(scheme) if scheme is not None else None,
        "files": sum(len(wheel.files) for wheel in planned),
        "wheels": [
            {
                "wheel": wheel.wheel,
                "project": wheel.project,
                "version": wheel.version,
                "action": wheel.action.value,
                "replaced": wheel.replaced,
                "archive": wheel.archive,
                "cached": wheel.cached,
                "files": len(wheel.files),
                "planned": [
                    {"destination": f.destination, "source": f.source, "action": f.action}
                    for f in wheel.files
                ],
            }
            for wheel in planned
        ],
        "removed": [_removed(removed) for removed in removing],
    }


def uninstall_document(result: UninstallResult, dry_run: bool = False) -> Document:
    return {
        **_head("uninstall", dry_run),
        "target": target(result.scheme),
        "elapsed": round(result.elapsed, 6),
        "files": sum(removed.files for removed in result.removed),
        "removed": [_removed(removed) for removed in result.removed],
        "missing": list(result.missing),
        "recovered": [_recovered(report) for report in result.recovered],
    }


def list_document(scheme: Scheme, distributions: list[Distribution]) -> Document:
    return {
        **_head("list"),
        "target": target(scheme),
        "distributions": [
            {
                "project": d.name,
                "version": d.version,
                "installer": d.installer,
                "wheel": d.wheel,
                "sha256": d.sha256,
                "dist_info": d.dist_info,
            }
            for d in distributions
        ],
    }


def cache_document(action: str, report: CacheReport) -> Document:
    return {
        **_head(f"cache {action}"),
        "cache_dir": report.root,
        "entries": report.entries,
        "damaged": list(report.damaged),
        "removed": list(report.removed),
    }
