"""The exceptions asynclink raises, all under one root.

::

    AsyncLinkError                  anything asynclink raises on purpose
    ├── LinkError                   a file could not be placed: wheel, source, destination, OS error
    ├── InvalidWheelError           a wheel is malformed or unsafe: wheel, entry, reason
    ├── TargetError                 the target environment cannot be used as asked
    ├── LockTimeoutError            another installer kept the target locked for too long
    └── RollbackError               a failed install could not put everything back

Context (which wheel, which path) is attached by the layer that knows it; the messages name
it so that one line in a log is enough to act on.
"""

from __future__ import annotations

from ._modes import describe_os_error

__all__ = [
    "AsyncLinkError",
    "InvalidWheelError",
    "LinkError",
    "LockTimeoutError",
    "RollbackError",
    "TargetError",
]


class AsyncLinkError(Exception):
    """The root of every error asynclink raises on purpose."""


class LinkError(AsyncLinkError):
    """A file of a wheel could not be put in place."""

    def __init__(
        self, wheel: str, source: str | None, destination: str, error: OSError, action: str
    ) -> None:
        self.wheel = wheel
        self.source = source
        self.destination = destination
        self.error = error
        self.action = action
        origin = f" from {source}" if source is not None else ""
        super().__init__(
            f"{wheel}: cannot {action} {destination}{origin}: {describe_os_error(error)}"
        )


class InvalidWheelError(AsyncLinkError):
    """A wheel (an archive or an unpacked tree) breaks a rule of the wheel format."""

    def __init__(self, wheel: str, reason: str, entry: str | None = None) -> None:
        self.wheel = wheel
        self.entry = entry
        self.reason = reason
        where = f" (entry {entry!r})" if entry is not None else ""
        super().__init__(f"{wheel}{where}: {reason}")


class TargetError(AsyncLinkError):
    """The target (interpreter, virtual environment or directory) cannot be installed into."""


class LockTimeoutError(AsyncLinkError):
    """Another installer held the target's lock for longer than the caller allowed."""


class RollbackError(AsyncLinkError):
    """Restoring the target after a failure left something behind; the message lists it."""
