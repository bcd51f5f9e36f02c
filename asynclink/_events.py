"""Progress events: one typed channel for embedders, the CLI's display included.

Pass ``on_event=callback`` to :func:`asynclink.install_wheels` or :func:`asynclink.link_wheels`;
the callback runs on the event loop thread, between steps of the install, so it must be quick
(append to a list, update a counter, send on a memory stream). Events are small frozen
dataclasses; match on their type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._modes import LinkMode
from ._results import Conflict, RemovedDistribution, WheelResult

__all__ = [
    "ConflictFound",
    "DistributionRemoved",
    "Event",
    "EventCallback",
    "LockAcquired",
    "ModeFellBack",
    "WaitingForLock",
    "WheelFinished",
    "WheelLinked",
    "WheelSkipped",
    "WheelStarted",
    "WheelUnpacked",
    "WheelUnpacking",
]


@dataclass(frozen=True, slots=True)
class WheelStarted:
    """A wheel's task got its turn (past the concurrency limit)."""

    wheel: str


@dataclass(frozen=True, slots=True)
class WaitingForLock:
    """Another installer holds the target; this call waits for it (``lock_timeout`` at most)."""

    target: str
    """The site-packages whose lock is held."""


@dataclass(frozen=True, slots=True)
class LockAcquired:
    """The call holds the target's lock: it is the only installer there until it returns."""

    target: str
    waited: float
    """Seconds spent waiting for another installer (0 when the lock was free)."""


@dataclass(frozen=True, slots=True)
class WheelSkipped:
    """The same version of the project, from the same wheel, is installed: nothing to do."""

    wheel: str
    version: str


@dataclass(frozen=True, slots=True)
class DistributionRemoved:
    """An uninstall or a sync removed a distribution (in the same transaction as the rest)."""

    distribution: RemovedDistribution


@dataclass(frozen=True, slots=True)
class WheelUnpacking:
    """An archive the cache does not have is being unpacked into it: by an unpacking helper
    process (``in_helper``), or by a worker thread of this process."""

    archive: str
    in_helper: bool


@dataclass(frozen=True, slots=True)
class WheelUnpacked:
    """A ``.whl`` archive is unpacked in the cache (or was found there: ``cached``)."""

    wheel: str
    files: int
    bytes: int
    cached: bool


@dataclass(frozen=True, slots=True)
class ModeFellBack:
    """A wheel could not use its link mode and moved down the fallback chain."""

    wheel: str
    from_mode: LinkMode
    to_mode: LinkMode
    reason: str


@dataclass(frozen=True, slots=True)
class WheelLinked:
    """A wheel's files are in place (scripts and metadata may still follow)."""

    wheel: str
    files: int
    bytes: int
    mode: LinkMode


@dataclass(frozen=True, slots=True)
class WheelFinished:
    """Everything of a wheel is done; the result is final."""

    wheel: str
    result: WheelResult


@dataclass(frozen=True, slots=True)
class ConflictFound:
    """The scan after the batch found a path two wheels provide differently."""

    conflict: Conflict


Event = (
    WaitingForLock
    | LockAcquired
    | WheelSkipped
    | WheelUnpacking
    | WheelUnpacked
    | WheelStarted
    | ModeFellBack
    | WheelLinked
    | WheelFinished
    | ConflictFound
    | DistributionRemoved
)
EventCallback = Callable[[Event], object]
