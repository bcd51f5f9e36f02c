"""The exceptions asynclink raises, all under one root.

::

    AsyncLinkError                  anything asynclink raises on purpose
    ├── LinkError                   a file could not be placed: wheel, source, destination, OS error
    ├── InvalidWheelError           a wheel is malformed or unsafe: wheel, entry, reason
    ├── TargetError                 the target environment cannot be used as asked
    ├── NotInstalledError           an uninstall names a distribution that is not there
    ├── LockTimeoutError            another installer kept the target locked for too long
    └── RollbackError               a failed install could not put everything back

    AsyncLinkWarning (UserWarning)  something worth knowing that did not stop the install
    ├── LinkModeFallbackWarning     a wheel could not use the chosen link mode
    ├── PycacheSkippedWarning       a wheel shipped __pycache__ files; they were left out
    └── WheelVersionWarning         a wheel declares a newer minor Wheel-Version than 1.0

Every warning is also logged on the ``asynclink`` logger (the command line shows the log and
not the warnings, so each appears once).

Context (which wheel, which path) is attached by the layer that knows it; the messages name
it so that one line in a log is enough to act on.
"""

from __future__ import annotations

from ._modes import describe_os_error

__all__ = [
    "AsyncLinkError",
    "AsyncLinkWarning",
    "InvalidWheelError",
    "LinkError",
    "LinkModeFallbackWarning",
    "LockTimeoutError",
    "NotInstalledError",
    "PycacheSkippedWarning",
    "RollbackError",
    "TargetError",
    "WheelVersionWarning",
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


class NotInstalledError(AsyncLinkError):
    """An uninstall names a distribution that is not installed in the target."""


class LockTimeoutError(AsyncLinkError):
    """Another installer held the target's lock for longer than the caller allowed."""


class RollbackError(AsyncLinkError):
    """Restoring the target after a failure left something behind; the message lists it."""


class AsyncLinkWarning(UserWarning):
    """The root of the warnings asynclink issues."""


class LinkModeFallbackWarning(AsyncLinkWarning):
    """A wheel could not be placed with the chosen link mode and was copied (or linked) instead."""


class PycacheSkippedWarning(AsyncLinkWarning):
    """A wheel shipped ``__pycache__`` files; they were left out."""


class WheelVersionWarning(AsyncLinkWarning):
    """A wheel declares a newer minor ``Wheel-Version`` than asynclink knows (1.0)."""
