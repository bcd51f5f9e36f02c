"""Sessions: what many calls in one process can share, kept until the caller is done.

A package manager calls asynclink many times in one process. Each call on its own starts its
helper processes and closes them before it returns, and reads every wheel's manifest from the
cache. Inside ``async with Session():`` the calls share both: helpers that are idle when a
call ends wait for the next one, and a manifest read once is read again only if its file
changed. The module-level verbs need nothing more: they find the session of the task that
awaits them (a context variable, inherited by the tasks it starts).

The target's lock never stays with a helper between calls: it travels with each request
(see ``_child.serve``), so a kept helper holds no environment between installs.
"""

from __future__ import annotations

import contextvars
from types import TracebackType

import anyio

from ._helpers import HelperStock
from ._manifest import ManifestMemo

__all__ = ["Session", "current_session"]

_CURRENT: contextvars.ContextVar[Session | None] = contextvars.ContextVar(
    "asynclink_session", default=None
)


class Session:
    """Helper processes and parsed manifests kept across calls, until the block ends::

        async with asynclink.Session():
            await asynclink.install_wheels(venv, first_batch)
            await asynclink.sync_wheels(venv, lock_file_wheels)  # no helper starts again

    Every call awaited inside the block (and in tasks started there) uses the session; calls
    may run at once. Leaving the block closes the helpers. A session is for one event loop.
    """

    def __init__(self) -> None:
        self.helpers = HelperStock()
        """Idle helper processes, between calls."""
        self.manifests = ManifestMemo()
        """Manifests read from the cache, by entry."""
        self._tokens: list[contextvars.Token[Session | None]] = []

    async def __aenter__(self) -> Session:
        if self.helpers.closed:
            raise RuntimeError("a Session cannot be entered again once it has been left")
        self._tokens.append(_CURRENT.set(self))
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        _CURRENT.reset(self._tokens.pop())
        with anyio.CancelScope(shield=True):
            await self.helpers.aclose()


def current_session() -> Session | None:
    """The session the calling task runs in, if any."""
    return _CURRENT.get()
