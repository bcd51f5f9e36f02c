"""What the verbs report back: per wheel, per distribution, per conflict, per rollback, and for
the whole call."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ._modes import LinkMode
from ._scheme import Scheme

__all__ = [
    "Action",
    "Conflict",
    "Distribution",
    "Fallback",
    "InstallResult",
    "LinkResult",
    "RemovedDistribution",
    "RollbackReport",
    "UninstallResult",
    "WheelResult",
]


class Action(enum.Enum):
    """What an install did with one wheel."""

    INSTALLED = "installed"
    """The project was not installed before."""
    UPGRADED = "upgraded"
    """Another, older version of the project was replaced."""
    DOWNGRADED = "downgraded"
    """Another, newer version of the project was replaced."""
    REINSTALLED = "reinstalled"
    """The same version was replaced: another wheel of it, or the caller asked (``reinstall``)."""
    SKIPPED = "skipped"
    """The same version from the same wheel was already installed: nothing was touched."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Fallback:
    """One step down the fallback chain for a wheel, and the error that forced it."""

    from_mode: LinkMode
    to_mode: LinkMode
    reason: str
    probed: bool = True
    """False when an earlier wheel of the install failed the same probe and this one skipped it."""


@dataclass(frozen=True, slots=True)
class WheelResult:
    """How one wheel was placed."""

    wheel: str
    """The wheel's name, ``<distribution>-<version>`` where it can be read."""
    source: str
    """The unpacked wheel the files came from."""
    files: int
    """Files placed (links, clones and copies; directories not counted)."""
    requested_mode: LinkMode
    mode: LinkMode
    """The mode most of the wheel's files were placed with, after any fallback."""
    fallbacks: tuple[Fallback, ...]
    """Why ``mode`` differs from ``requested_mode``; empty when it does not."""
    copied: int
    """Files copied rather than linked: all of them once the mode is (or fell back to) copy;
    otherwise RECORD files of unpacked trees and files with too many links. Generated files
    (launchers, metadata, rewritten scripts) are written, not counted."""
    bytes: int = 0
    """Bytes of the files placed, where known without extra reads (installs from archives)."""
    version: str = ""
    """The distribution's version (installs only)."""
    archive: str | None = None
    """The ``.whl`` installed from, if any (installs only)."""
    cached: bool = False
    """The wheel was found unpacked in the cache (installs only)."""
    scripts: tuple[str, ...] = ()
    """Launcher scripts written for its entry points (installs only)."""
    dist_info: str | None = None
    """The installed ``.dist-info`` directory (installs only)."""
    project: str = ""
    """The project's name as its METADATA spells it (installs only)."""
    action: Action = Action.INSTALLED
    replaced: str | None = None
    """The version that was installed before and was replaced (upgrades, downgrades and
    reinstalls)."""

    @property
    def fell_back(self) -> bool:
        return bool(self.fallbacks)


@dataclass(frozen=True, slots=True)
class Conflict:
    """A path that two or more wheels of one batch provide with different contents.

    Whichever wheel finished last won; the module may be broken at run time.
    """

    path: str
    """Relative to site-packages, with ``/`` separators."""
    wheels: tuple[str, ...]
    reason: str

    def __str__(self) -> str:
        return f"{self.path} is provided by {', '.join(self.wheels)} ({self.reason})"


@dataclass(frozen=True, slots=True)
class RollbackReport:
    """What undoing an install did, and what it could not put back."""

    removed_files: int = 0
    """Files removed one by one (what was in a removed directory is not counted)."""
    restored_files: int = 0
    removed_dirs: int = 0
    """Directories the install created, removed whole."""
    recreated_dirs: int = 0
    problems: tuple[str, ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        text = (
            f"rolled back: removed {self.removed_files} files and {self.removed_dirs} "
            f"directories, restored {self.restored_files} files and {self.recreated_dirs} "
            "directories"
        )
        if self.problems:
            text += "; could not undo: " + "; ".join(self.problems)
        return text


@dataclass(frozen=True, slots=True)
class LinkResult:
    """The outcome of :func:`asynclink.link_wheels`."""

    site_packages: str
    wheels: tuple[WheelResult, ...]
    conflicts: tuple[Conflict, ...]
    elapsed: float
    """Wall-clock seconds from the call to its return."""
    recovered: tuple[RollbackReport, ...] = ()
    """Crashed earlier installs into the same place, undone before this one began."""

    @property
    def files(self) -> int:
        return sum(wheel.files for wheel in self.wheels)


@dataclass(frozen=True, slots=True)
class RemovedDistribution:
    """A distribution an uninstall or a sync removed."""

    name: str
    version: str
    dist_info: str
    files: int
    """Files (and symlinks) removed, its ``.pyc`` files included."""


@dataclass(frozen=True, slots=True)
class InstallResult:
    """The outcome of :func:`asynclink.install_wheels` and :func:`asynclink.sync_wheels`."""

    scheme: Scheme
    wheels: tuple[WheelResult, ...]
    """One per wheel given, skipped ones included (``action``)."""
    conflicts: tuple[Conflict, ...]
    compiled: int
    """Python files compiled to bytecode (0 unless asked)."""
    elapsed: float
    recovered: tuple[RollbackReport, ...] = ()
    """Crashed earlier installs into the same target, undone before this one began."""
    removed: tuple[RemovedDistribution, ...] = ()
    """Distributions a sync removed (not the older versions an upgrade replaced)."""

    @property
    def files(self) -> int:
        return sum(wheel.files for wheel in self.wheels)

    @property
    def skipped(self) -> tuple[WheelResult, ...]:
        return tuple(wheel for wheel in self.wheels if wheel.action is Action.SKIPPED)

    @property
    def changed(self) -> tuple[WheelResult, ...]:
        """The wheels that were placed (every one that was not skipped)."""
        return tuple(wheel for wheel in self.wheels if wheel.action is not Action.SKIPPED)

    @property
    def bytes(self) -> int:
        return sum(wheel.bytes for wheel in self.wheels)


@dataclass(frozen=True, slots=True)
class UninstallResult:
    """The outcome of :func:`asynclink.uninstall`."""

    scheme: Scheme
    removed: tuple[RemovedDistribution, ...]
    missing: tuple[str, ...]
    """Names asked for that were not installed (with ``missing_ok``)."""
    elapsed: float
    recovered: tuple[RollbackReport, ...] = ()


@dataclass(frozen=True, slots=True)
class Distribution:
    """A distribution installed in an environment, as :func:`asynclink.installed` lists it."""

    name: str
    """As its METADATA spells it."""
    version: str
    dist_info: str
    installer: str | None
    """What its ``INSTALLER`` file says (``asynclink``, ``pip``, ``uv``), if it has one."""
    wheel: str | None = None
    """The wheel it came from, when asynclink installed it: the file name, or the directory
    of an unpacked tree."""
    sha256: str | None = None
    """That wheel's content hash (an archive's sha256; for an unpacked tree, of its RECORD)."""
