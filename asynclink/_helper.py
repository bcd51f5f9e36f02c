"""The helper process: a second core for the bulk file loops.

Python threads cannot place files in parallel (every ``linkat`` releases and retakes the GIL,
and two threads doing so take turns), but two processes can: the benchmark's
``bounds`` rows measure it. So an install with work for two gets one helper, a bare
interpreter running :mod:`asynclink._bulk` that takes jobs on a pipe (see the protocol there).

The helper is only ever an accelerator. Whatever it cannot do (a file that exists, a tree it
cannot open) it reports, and the scheduler does that part itself, the careful way; if it dies,
the scheduler does the whole job itself. Every job it takes is covered by the journal before it
is sent, so cancelling means killing it, waiting for it, and rolling back as usual.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Sequence

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from ._bulk import decode_answer, encode_job

__all__ = ["Helper"]

logger = logging.getLogger("asynclink")

#: Puts the directory of ``_bulk.py`` on the path (``-S``: no site-packages, ``-I``: nothing
#: from the environment) and serves. ``_bulk`` is imported, not run, so its ``.pyc`` is used.
_BOOT = "import sys; sys.path[:0] = [sys.argv[1]]; import _bulk; _bulk.serve()"
_PACKAGE = os.path.dirname(os.path.abspath(__file__))


class Helper:
    """One helper process, used by one scheduler for one install."""

    def __init__(self, process: anyio.abc.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._process = process
        self._requests = process.stdin
        self._answers = BufferedByteReceiveStream(process.stdout)
        self.busy = False
        self.broken = False
        self._closed = False

    @classmethod
    async def start(cls, held_fds: Sequence[int] = ()) -> Helper | None:
        """A new helper, or ``None`` where none can be started (it is only an accelerator).

        It inherits ``held_fds`` (the target's lock, see ``Recorder.held_fds``): if this
        process is killed, the helper finishes its piece, sees its stdin close, and exits,
        and only then can the next install lock the target and undo this one.
        """
        if not sys.executable:
            return None
        try:
            process = await anyio.open_process(
                [sys.executable, "-I", "-S", "-c", _BOOT, _PACKAGE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                pass_fds=held_fds,
            )
        except OSError as error:
            logger.debug("no helper process: %s", error)
            return None
        return cls(process)

    @property
    def idle(self) -> bool:
        return not self.busy and not self.broken

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has ended, else ``None``."""
        return self._process.returncode

    async def place(
        self, mode: str, trees: Sequence[tuple[str, str, Sequence[str]]]
    ) -> list[tuple[int, str, int]] | None:
        """Have the helper place ``trees`` of (source root, target root, files) with ``mode``.

        Returns (tree index, name, errno) of each file it did not place, or ``None`` if the
        helper failed (then it is broken, and the caller does the job itself). If the caller
        is cancelled meanwhile, the helper is killed and waited for before this returns: no
        file appears after the install has rolled back.
        """
        self.busy = True
        try:
            await self._requests.send(encode_job(mode, trees))
            size = int.from_bytes(await self._answers.receive_exactly(8), "little")
            payload = await self._answers.receive_exactly(size) if size else b""
        except (
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            anyio.EndOfStream,
            anyio.IncompleteRead,
        ) as e:
            logger.debug("the helper process failed (%r); placing its files without it", e)
            await self._stop()
            return None
        except BaseException:
            await self._stop()
            raise
        finally:
            self.busy = False
        return decode_answer(payload)

    async def aclose(self) -> None:
        """Let the helper finish: it exits when its stdin closes."""
        if self._closed:
            return
        self._closed = self.broken = True
        with anyio.CancelScope(shield=True):
            await self._process.aclose()

    async def _stop(self) -> None:
        if self._process.returncode is None:
            self._process.kill()
        await self.aclose()
