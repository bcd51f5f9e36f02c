"""Helper processes: more cores for the work that Python threads cannot share.

Two Python threads cannot place files in parallel (every ``linkat`` releases and retakes the
GIL, and they take turns), nor unpack archives at full speed (the Python around each member's
``zlib`` and ``hashlib`` calls holds it); two processes can. The benchmark's ``bounds`` rows
measure it. So an install with enough of such work starts helpers, each a child interpreter
that takes requests on a pipe (8-byte length, then the bytes; answers alike, see ``_bulk``):

* a :class:`Helper` places the bulk of a wheel's files: a bare interpreter (``-I -S``) running
  :mod:`asynclink._bulk`, about 10 ms to start;
* an :class:`Unpacker` unpacks an archive into the cache with :class:`~._unpack.WheelCache`,
  which processes may share; it imports what unpacking needs, about 50 ms to start.

A helper is only ever an accelerator. What a file helper cannot do (a file in the way, a tree
it cannot open) it reports, and the scheduler does that part itself, the careful way; after an
unpacker fails, the scheduler unpacks the archive itself, which raises the error with all its
detail; if a helper dies, the scheduler does its job itself. Every file a helper places is
covered by the journal before the request is sent, so cancelling means stopping the helper,
waiting for it, and rolling back as usual.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from ._bulk import decode_answer, encode_job, framed

__all__ = ["Helper", "Unpacker"]

logger = logging.getLogger("asynclink")

#: Where ``_bulk.py`` is; its parent is where ``asynclink`` itself is imported from.
_PACKAGE = os.path.dirname(os.path.abspath(__file__))
#: Puts the directory of ``_bulk.py`` on the path (``-S``: no site-packages, ``-I``: nothing
#: from the environment) and serves. ``_bulk`` is imported, not run, so its ``.pyc`` is used.
_HELPER_BOOT = "import sys; sys.path[:0] = [sys.argv[1]]; import _bulk; _bulk.main()"
#: Imports this very asynclink (the environment's packages too) and serves unpacks.
_UNPACKER_BOOT = (
    "import sys; sys.path[:0] = [sys.argv[1]]; "
    "from asynclink._unpack import serve_unpacks; serve_unpacks(sys.argv[2])"
)
#: How long a stopped unpacker may take to clean up its staging directory before it is killed.
_STOP_GRACE = 5.0


class _Child:
    """A child process answering framed requests one at a time."""

    #: The signal that stops it when its caller is cancelled.
    stop_signal = signal.SIGKILL

    def __init__(self, process: anyio.abc.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._process = process
        self._requests = process.stdin
        self._answers = BufferedByteReceiveStream(process.stdout)
        self.busy = False
        self.broken = False
        self._closed = False

    @classmethod
    async def _spawn(cls, arguments: list[str], held_fds: Sequence[int] = ()) -> _Child | None:
        if not sys.executable:
            return None
        try:
            process = await anyio.open_process(
                [sys.executable, *arguments],
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

    async def _call(self, request: bytes) -> bytes | None:
        """Send ``request``, return the answer; ``None`` if the process failed (it is broken
        then). If the caller is cancelled meanwhile, the process is stopped and waited for
        before this returns: it does nothing after the install has rolled back."""
        self.busy = True
        try:
            await self._requests.send(framed(request))
            size = int.from_bytes(await self._answers.receive_exactly(8), "little")
            return await self._answers.receive_exactly(size) if size else b""
        except (
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            anyio.EndOfStream,
            anyio.IncompleteRead,
        ) as error:
            logger.debug("a helper process failed (%r); doing its work without it", error)
            await self._stop()
            return None
        except BaseException:
            await self._stop()
            raise
        finally:
            self.busy = False

    async def aclose(self) -> None:
        """Let the process finish: it exits when its stdin closes."""
        if self._closed:
            return
        self._closed = self.broken = True
        with anyio.CancelScope(shield=True):
            await self._process.aclose()

    async def _stop(self) -> None:
        self.broken = True
        with anyio.CancelScope(shield=True):
            if self._process.returncode is None:
                self._process.send_signal(self.stop_signal)
                with anyio.move_on_after(_STOP_GRACE):
                    await self._process.wait()
            if self._process.returncode is None:
                self._process.kill()
            await self.aclose()


class Helper(_Child):
    """A file helper: places trees' files for one scheduler (see ``_bulk``)."""

    @classmethod
    async def start(cls, held_fds: Sequence[int] = ()) -> Helper | None:
        """A new helper, or ``None`` where none can be started (it is only an accelerator).

        It inherits ``held_fds`` (the target's lock, see ``Recorder.held_fds``): if this
        process is killed, the helper finishes its piece, sees its stdin close, and exits,
        and only then can the next install lock the target and undo this one.
        """
        child = await cls._spawn(["-I", "-S", "-c", _HELPER_BOOT, _PACKAGE], held_fds)
        assert child is None or isinstance(child, Helper)
        return child

    async def place(
        self, mode: str, trees: Sequence[tuple[str, str, Sequence[str]]]
    ) -> list[tuple[int, str, int]] | None:
        """Have the helper place ``trees`` of (source root, target root, files) with ``mode``.

        Returns (tree index, name, errno) of each file it did not place, or ``None`` if the
        helper failed (then the caller does the job itself).
        """
        answer = await self._call(encode_job(mode, trees))
        return None if answer is None else decode_answer(answer)


class Unpacker(_Child):
    """An unpacking helper: fills a :class:`~._unpack.WheelCache` for one scheduler."""

    #: ``SIGTERM`` lets an extraction remove its staging directory (``serve_unpacks``).
    stop_signal = signal.SIGTERM

    @classmethod
    async def start(cls, cache_root: str) -> Unpacker | None:
        """A new unpacker for the cache at ``cache_root``, or ``None`` if none can start."""
        package_parent = os.path.dirname(_PACKAGE)
        child = await cls._spawn(["-c", _UNPACKER_BOOT, package_parent, cache_root])
        assert child is None or isinstance(child, Unpacker)
        return child

    async def unpack(self, archive: str, max_unpacked_size: int) -> str | None:
        """``"unpacked"`` or ``"cached"`` once ``archive`` is in the cache; ``None`` if the
        unpacker failed (the caller unpacks it itself: to report why, or as the helper died)."""
        answer = await self._call(json.dumps([archive, max_unpacked_size]).encode())
        return answer.decode() if answer in (b"unpacked", b"cached") else None
