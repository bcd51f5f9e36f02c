"""asynclink: install many wheels into one site-packages at once, awaited from async code.

:func:`install_wheels` is the whole job: unpack ``.whl`` files into a cache, place them with
one of four :class:`LinkMode`\\ s (falling back per wheel where a mode cannot work), write
scripts and metadata, and report module conflicts, as one transaction. :func:`link_wheels` is
its core alone, for wheels already unpacked.

The private modules, in the order data flows through them (the README's map has a line each):
``_cli``, ``_commands``, ``_progress`` and ``_report`` (the command line); ``_install`` and
``_dryrun`` (the verbs) with ``_options`` and ``_session`` (what many calls share);
``_scheme``; ``_installed`` (what is there); ``_cache``, ``_archive``, ``_wheelinfo``,
``_record``, ``_manifest`` (a wheel into the cache, checked once); ``_plan`` and ``_scripts``
(a wheel onto the scheme); ``_environment`` (uninstalls, removals, upgrades);
``_transaction``; ``_scheduler`` and ``_locks`` (the event loop's side); ``_placing`` (the
threads' side); ``_helpers`` and ``_child`` (helper processes, both sides); ``_modes`` and
``_confinement``; ``_conflicts``; ``_events``, ``_results``, ``_errors``.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from ._cache import CacheReport as CacheReport
    from ._cache import UnpackedWheel as UnpackedWheel
    from ._cache import clean_cache as clean_cache
    from ._cache import default_cache_dir as default_cache_dir
    from ._cache import prune_cache as prune_cache
    from ._cache import verify_cache as verify_cache
    from ._dryrun import PlannedFile as PlannedFile
    from ._dryrun import PlannedWheel as PlannedWheel
    from ._dryrun import plan_install as plan_install
    from ._environment import installed as installed
    from ._environment import uninstall as uninstall
    from ._errors import AsyncLinkError as AsyncLinkError
    from ._errors import AsyncLinkWarning as AsyncLinkWarning
    from ._errors import InvalidWheelError as InvalidWheelError
    from ._errors import LinkError as LinkError
    from ._errors import LinkModeFallbackWarning as LinkModeFallbackWarning
    from ._errors import LockTimeoutError as LockTimeoutError
    from ._errors import NotInstalledError as NotInstalledError
    from ._errors import PycacheSkippedWarning as PycacheSkippedWarning
    from ._errors import RollbackError as RollbackError
    from ._errors import TargetError as TargetError
    from ._errors import WheelVersionWarning as WheelVersionWarning
    from ._events import ConflictFound as ConflictFound
    from ._events import DistributionRemoved as DistributionRemoved
    from ._events import Event as Event
    from ._events import LockAcquired as LockAcquired
    from ._events import ModeFellBack as ModeFellBack
    from ._events import WaitingForLock as WaitingForLock
    from ._events import WheelFinished as WheelFinished
    from ._events import WheelLinked as WheelLinked
    from ._events import WheelSkipped as WheelSkipped
    from ._events import WheelStarted as WheelStarted
    from ._events import WheelUnpacked as WheelUnpacked
    from ._events import WheelUnpacking as WheelUnpacking
    from ._install import install_wheels as install_wheels
    from ._install import link_wheels as link_wheels
    from ._install import sync_wheels as sync_wheels
    from ._install import unpack_wheels as unpack_wheels
    from ._modes import LinkMode as LinkMode
    from ._modes import default_link_mode as default_link_mode
    from ._results import Action as Action
    from ._results import Conflict as Conflict
    from ._results import Distribution as Distribution
    from ._results import Fallback as Fallback
    from ._results import InstallResult as InstallResult
    from ._results import LinkResult as LinkResult
    from ._results import RemovedDistribution as RemovedDistribution
    from ._results import RollbackReport as RollbackReport
    from ._results import UninstallResult as UninstallResult
    from ._results import WheelResult as WheelResult
    from ._scheme import Scheme as Scheme
    from ._scheme import scheme_for_python as scheme_for_python
    from ._scheme import scheme_for_venv as scheme_for_venv
    from ._session import Session as Session
    from ._transaction import recover as recover

#: Where each public name lives. Importing ``asynclink`` loads none of it: a name's module is
#: imported on first use (PEP 562), so ``asynclink install`` and a library user who needs one
#: function do not pay for the rest (the CLI's start-up is part of every install it runs).
_LOCATIONS = {
    "CacheReport": "._cache",
    "UnpackedWheel": "._cache",
    "clean_cache": "._cache",
    "default_cache_dir": "._cache",
    "prune_cache": "._cache",
    "verify_cache": "._cache",
    "PlannedFile": "._dryrun",
    "PlannedWheel": "._dryrun",
    "plan_install": "._dryrun",
    "installed": "._environment",
    "uninstall": "._environment",
    "AsyncLinkError": "._errors",
    "AsyncLinkWarning": "._errors",
    "InvalidWheelError": "._errors",
    "LinkError": "._errors",
    "LinkModeFallbackWarning": "._errors",
    "LockTimeoutError": "._errors",
    "NotInstalledError": "._errors",
    "PycacheSkippedWarning": "._errors",
    "RollbackError": "._errors",
    "TargetError": "._errors",
    "WheelVersionWarning": "._errors",
    "ConflictFound": "._events",
    "DistributionRemoved": "._events",
    "Event": "._events",
    "LockAcquired": "._events",
    "ModeFellBack": "._events",
    "WaitingForLock": "._events",
    "WheelFinished": "._events",
    "WheelLinked": "._events",
    "WheelSkipped": "._events",
    "WheelStarted": "._events",
    "WheelUnpacked": "._events",
    "WheelUnpacking": "._events",
    "install_wheels": "._install",
    "link_wheels": "._install",
    "sync_wheels": "._install",
    "unpack_wheels": "._install",
    "LinkMode": "._modes",
    "default_link_mode": "._modes",
    "Action": "._results",
    "Conflict": "._results",
    "Distribution": "._results",
    "Fallback": "._results",
    "InstallResult": "._results",
    "LinkResult": "._results",
    "RemovedDistribution": "._results",
    "RollbackReport": "._results",
    "UninstallResult": "._results",
    "WheelResult": "._results",
    "Scheme": "._scheme",
    "Session": "._session",
    "scheme_for_python": "._scheme",
    "scheme_for_venv": "._scheme",
    "recover": "._transaction",
}

__all__ = [
    "Action",
    "AsyncLinkError",
    "AsyncLinkWarning",
    "CacheReport",
    "Conflict",
    "ConflictFound",
    "Distribution",
    "DistributionRemoved",
    "Event",
    "Fallback",
    "InstallResult",
    "InvalidWheelError",
    "LinkError",
    "LinkMode",
    "LinkModeFallbackWarning",
    "LinkResult",
    "LockAcquired",
    "LockTimeoutError",
    "ModeFellBack",
    "NotInstalledError",
    "PlannedFile",
    "PlannedWheel",
    "PycacheSkippedWarning",
    "RemovedDistribution",
    "RollbackError",
    "RollbackReport",
    "Scheme",
    "Session",
    "TargetError",
    "UninstallResult",
    "UnpackedWheel",
    "WaitingForLock",
    "WheelFinished",
    "WheelLinked",
    "WheelResult",
    "WheelSkipped",
    "WheelStarted",
    "WheelUnpacked",
    "WheelUnpacking",
    "WheelVersionWarning",
    "clean_cache",
    "default_cache_dir",
    "default_link_mode",
    "install_wheels",
    "installed",
    "link_wheels",
    "plan_install",
    "prune_cache",
    "recover",
    "scheme_for_python",
    "scheme_for_venv",
    "sync_wheels",
    "uninstall",
    "unpack_wheels",
    "verify_cache",
]


def __getattr__(name: str) -> object:
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module 'asynclink' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
