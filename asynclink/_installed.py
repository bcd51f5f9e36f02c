"""What is installed in an environment, read without changing anything.

Each distribution asynclink installs records where it came from, in its ``.dist-info``:
``asynclink.json`` names the wheel and its content hash (as uv keeps ``uv_cache.json``), so a
second install of the same wheel finds it there and touches nothing (:func:`installed_as`),
and :func:`list_installed` can say which wheel each distribution is. A directory scan does
the listing: METADATA's first lines, INSTALLER, that file; no ``importlib.metadata``.

This module imports no event loop and no thread machinery: the command line asks it, before
starting either, whether an install has anything to do at all (:func:`nothing_to_do`).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from typing import NamedTuple

from ._cache import WheelCache, archive_sha256
from ._confinement import JOURNAL_NAME, LOCK_NAME
from ._errors import AsyncLinkError, InvalidWheelError
from ._fsutil import canonical_name, read_small
from ._manifest import manifest_for_tree
from ._modes import LinkMode
from ._results import Action, Distribution, WheelResult
from ._scheme import Scheme
from ._wheelinfo import same_version

__all__ = [
    "SOURCE_FILE",
    "AlreadyInstalled",
    "Change",
    "Survey",
    "change_for",
    "claim_project",
    "installed_as",
    "installed_distributions",
    "list_installed",
    "nothing_to_do",
    "replacing",
    "skipped_result",
    "survey",
]

#: The file in a ``.dist-info`` where asynclink writes which wheel it installed (as uv keeps
#: ``uv_cache.json``): the wheel's file name (or an unpacked tree's path) and content hash.
SOURCE_FILE = "asynclink.json"


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


def _read_source(dist_info: str) -> tuple[str | None, str | None]:
    try:
        found = json.loads(read_small(os.path.join(dist_info, SOURCE_FILE)))
        return str(found["wheel"]), str(found["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, None


def installed_as(dist_infos: Sequence[str], version: str, digest: str) -> bool:
    """Whether ``dist_infos`` (one project's) are exactly one distribution of ``version``
    that asynclink installed from a wheel whose content hash is ``digest``."""
    if len(dist_infos) != 1:
        return False
    dist_info = dist_infos[0]
    if os.path.basename(dist_info)[: -len(".dist-info")].rpartition("-")[2] != version:
        return False
    return _read_source(dist_info)[1] == digest


def replacing(old: str, new: str) -> Action:
    """What installing version ``new`` over version ``old`` is."""
    from packaging.version import Version

    if same_version(old, new):
        return Action.REINSTALLED
    try:
        return Action.UPGRADED if Version(new) > Version(old) else Action.DOWNGRADED
    except ValueError:  # not a version PEP 440 can order
        return Action.UPGRADED


class Change(NamedTuple):
    """What installing a wheel would do to the project's installed distribution."""

    action: Action
    replaced: str | None
    """The version installed now (``None`` when there is none)."""


def claim_project(owners: dict[str, str], name: str, source: str) -> str:
    """Note in ``owners`` (project -> source) that ``source`` installs the project ``name``,
    and return the project's canonical name; refuse a second wheel of one project in one call,
    as pip and uv do (which one would win is not the caller's to guess)."""
    project = canonical_name(name)
    owner = owners.setdefault(project, source)
    if owner != source:
        both = " and ".join(sorted(os.path.basename(path) for path in (owner, source)))
        raise InvalidWheelError(
            os.path.basename(source), f"{both} both install {project}; give only one"
        )
    return project


def change_for(dist_infos: Sequence[str], version: str, digest: str, reinstall: bool) -> Change:
    """What installing ``version`` of a project (from a wheel whose content hash is
    ``digest``) would do, given its installed ``dist_infos``."""
    if not dist_infos:
        return Change(Action.INSTALLED, None)
    old = _name_and_version(dist_infos[0])[1]
    if not reinstall and installed_as(dist_infos, version, digest):
        return Change(Action.SKIPPED, old)
    return Change(replacing(old, version), old)


def list_installed(scheme: Scheme) -> list[Distribution]:
    """Every distribution in the scheme's site-packages, by name; blocking."""
    found: list[Distribution] = []
    for dist_infos in installed_distributions(scheme).values():
        for dist_info in dist_infos:
            name, version = _name_and_version(dist_info)
            installer = _first_line(os.path.join(dist_info, "INSTALLER"))
            wheel, digest = _read_source(dist_info)
            found.append(Distribution(name, version, dist_info, installer, wheel, digest))
    return sorted(found, key=lambda d: (canonical_name(d.name), d.version))


def _name_and_version(dist_info: str) -> tuple[str, str]:
    """``Name`` and ``Version`` from METADATA's headers (its first lines only), else from the
    directory's name."""
    named, _, version = os.path.basename(dist_info)[: -len(".dist-info")].rpartition("-")
    found: dict[str, str] = {}
    try:
        head = read_small(os.path.join(dist_info, "METADATA")).decode("utf-8", "replace")
    except OSError:
        head = ""
    for line in head.splitlines():
        if not line.strip():
            break
        key, sep, value = line.partition(":")
        if sep and key.lower() in ("name", "version"):
            found.setdefault(key.lower(), value.strip())
            if len(found) == 2:
                break
    return found.get("name", named), found.get("version", version)


def _first_line(path: str) -> str | None:
    try:
        text = read_small(path, 4096).decode("utf-8", "replace")
    except OSError:
        return None
    return text.partition("\n")[0].strip() or None


# -- which of an install's wheels are installed already ------------------------------------------


class AlreadyInstalled(NamedTuple):
    """A wheel given to an install that is installed already: same version, same wheel."""

    source: str
    project: str
    version: str
    dist_info: str
    archive: str | None
    """The source if it is a ``.whl`` file (``None``: an unpacked tree)."""

    @property
    def wheel(self) -> str:
        """``name-version``, as results and events name a wheel."""
        return f"{self.project}-{self.version}"


class Survey(NamedTuple):
    """What is installed (canonical name -> its ``.dist-info`` directories), and which of an
    install's sources that already is."""

    installed: dict[str, list[str]]
    skipped: dict[str, AlreadyInstalled]


def survey(scheme: Scheme, cache: WheelCache, sources: list[str], reinstall: bool) -> Survey:
    """What is installed, and which ``sources`` it already is (unless ``reinstall``): the same
    version from the same wheel by content, found without unpacking or reading a manifest (a
    memo and the distribution's ``asynclink.json``); blocking."""
    installed = installed_distributions(scheme)
    skipped: dict[str, AlreadyInstalled] = {}
    if reinstall or not installed:
        return Survey(installed, skipped)
    for source in sources:
        found = _identify(cache, source)
        if found is None:
            continue
        dist_infos = installed.get(canonical_name(found.project), [])
        if installed_as(dist_infos, found.version, found.digest):
            skipped[source] = AlreadyInstalled(
                source, found.project, found.version, dist_infos[0], found.archive
            )
    return Survey(installed, skipped)


def nothing_to_do(
    scheme: Scheme, cache: WheelCache, sources: list[str]
) -> list[AlreadyInstalled] | None:
    """Every source, if each is installed already (see :func:`survey`) and no other installer
    is at work or was interrupted (no lock file, no journal): then a second identical install
    changes nothing at all, the target's own mtime included. ``None`` otherwise; blocking."""
    if not sources or any(
        os.path.lexists(os.path.join(scheme.purelib, name)) for name in (LOCK_NAME, JOURNAL_NAME)
    ):
        return None
    skipped = survey(scheme, cache, sources, False).skipped
    if len(skipped) != len(sources):
        return None
    return [skipped[source] for source in sources]


def skipped_result(found: AlreadyInstalled, mode: LinkMode) -> WheelResult:
    """The result of a wheel that was installed already: nothing placed."""
    return WheelResult(
        wheel=found.wheel,
        source=found.source,
        files=0,
        requested_mode=mode,
        mode=mode,
        fallbacks=(),
        copied=0,
        version=found.version,
        archive=found.archive,
        cached=True,
        dist_info=found.dist_info,
        project=found.project,
        action=Action.SKIPPED,
    )


class _Identity(NamedTuple):
    project: str
    version: str
    digest: str
    archive: str | None


def _identify(cache: WheelCache, source: str) -> _Identity | None:
    """Project, version and content hash of a source, as cheaply as can be told (one stat
    tells a tree from an archive and names the archive's memo): an archive by its file name
    and its memo (or, not seen before, its hash); a tree by its manifest."""
    try:
        info = os.stat(source)
    except OSError:
        return None  # planning it will say why
    if stat.S_ISDIR(info.st_mode):
        try:
            manifest = manifest_for_tree(source)
        except AsyncLinkError:
            return None
        return _Identity(manifest.name, manifest.version, manifest.digest(), None)
    name = os.path.basename(source)
    parts = name[: -len(".whl")].split("-") if name.endswith(".whl") else []
    if len(parts) < 5:
        return None
    try:
        digest = cache.digest_of(source, info) or archive_sha256(source)
    except AsyncLinkError:
        return None
    return _Identity(parts[0], parts[1], digest, source)
