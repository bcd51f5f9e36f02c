"""Upgrades: the files of versions being replaced leave as part of the same transaction.

Old files are removed after every new file is in place, so a file the new version also has is
replaced (atomically, stashed) rather than deleted and recreated, and a file that moves from
one package to another within the batch is never lost. Only paths inside the scheme are ever
removed: a RECORD that points elsewhere (``../../../../etc/passwd``) is skipped with a warning,
as uv does. Compiled ``__pycache__`` files of removed modules go too, as with pip.
"""

from __future__ import annotations

import csv
import logging
import os
import stat
from collections.abc import Collection, Iterable

from ._fsutil import canonical_name
from ._scheme import SCHEME_KEYS, Scheme
from ._transaction import Transaction

__all__ = ["installed_distributions", "remove_old_versions"]

logger = logging.getLogger("asynclink")


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


def remove_old_versions(
    transaction: Transaction,
    old_dist_infos: Iterable[str],
    new_destinations: Collection[str],
    scheme: Scheme,
) -> None:
    """Remove what the old ``.dist-info`` directories own and no new file replaced; blocking."""
    roots = tuple(dict.fromkeys(os.path.normpath(getattr(scheme, key)) for key in SCHEME_KEYS))
    inside = tuple(root + os.sep for root in roots)
    emptied: set[str] = set()
    for dist_info in old_dist_infos:
        for path in _owned_files(dist_info):
            if not path.startswith(inside):
                logger.warning(
                    "%s: RECORD lists %s, outside the environment; not removing it",
                    os.path.basename(dist_info),
                    path,
                )
                continue
            if path in new_destinations:
                continue
            try:
                if stat.S_ISDIR(os.lstat(path).st_mode):
                    continue
            except OSError:  # already gone
                continue
            for victim in (path, *_compiled(path)):
                transaction.remove_file(victim)
                emptied.add(os.path.dirname(victim))
    for directory in sorted(emptied, key=len, reverse=True):
        while directory not in roots and directory.startswith(inside):
            try:
                if os.listdir(directory):
                    break
            except FileNotFoundError:
                directory = os.path.dirname(directory)
                continue
            if not transaction.remove_dir(directory):
                break
            directory = os.path.dirname(directory)


def _owned_files(dist_info: str) -> list[str]:
    """Every file the distribution owns: its RECORD rows, and all of its .dist-info."""
    site = os.path.dirname(dist_info)
    owned: dict[str, None] = {}
    try:
        with open(os.path.join(dist_info, "RECORD"), newline="", encoding="utf-8") as handle:
            for row in csv.reader(handle):
                if row:
                    owned[os.path.normpath(os.path.join(site, row[0]))] = None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        logger.warning(
            "cannot read the RECORD of %s (%s); removing its .dist-info only", dist_info, error
        )
    for directory, _, files in os.walk(dist_info):
        owned.update(dict.fromkeys(os.path.join(directory, name) for name in files))
    return list(owned)


def _compiled(path: str) -> list[str]:
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
