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
from ._results import Conflict, WheelResult

__all__ = [
    "ConflictFound",
    "Event",
    "EventCallback",
    "ModeFellBack",
    "WheelFinished",
    "WheelLinked",
    "WheelStarted",
    "WheelUnpacked",
    "WheelUnpacking",
]


@dataclass(frozen=True, slots=True)
class WheelStarted:
    """A wheel's task got its turn (past the concurrency limit)."""

    wheel: str


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
    WheelUnpacking
    | WheelUnpacked
    | WheelStarted
    | ModeFellBack
    | WheelLinked
    | WheelFinished
    | ConflictFound
)
EventCallback = Callable[[Event], object]
