"""Helper processes: more cores for the work that Python threads cannot share.

Two Python threads cannot place files in parallel (every ``linkat`` releases and retakes the
GIL, and they take turns), nor unpack archives at full speed (the Python around each member's
``zlib`` and ``hashlib`` calls holds it); two processes can. The benchmark's ``bounds`` rows
measure it. So an install with enough of such work starts helpers, each a child interpreter
that takes requests on a socket (the children's side, the loops and the messages are
``_child``'s):

* a :class:`Helper` places the bulk of a wheel's files: a bare interpreter (``-I -S``) running
  :func:`asynclink._child.file_helper`, about 10 ms to start;
* an :class:`Unpacker` unpacks an archive into the cache with :class:`~._cache.WheelCache`,
  which processes may share; it imports what unpacking needs, about 50 ms to start.

This module also holds the policy: how many helpers an install may start, and from how much
work on a helper pays for its round trip.

A helper is only ever an accelerator. What a file helper cannot do (a file in the way, a tree
it cannot open) it reports, and the scheduler does that part itself, the careful way; after an
unpacker fails, the scheduler unpacks the archive itself, which raises the error with all its
detail; if a helper dies, the scheduler does its job itself. Every file a helper places is
covered by the journal before the request is sent, so cancelling means stopping the helper,
waiting for it, and rolling back as usual.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any, Self

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from ._child import CACHED, UNPACKED, TreeAnswer, TreeJob, decode_answer, encode_job, framed

__all__ = [
    "HELPER_MIN_COPIES",
    "HELPER_MIN_FILES",
    "HELPER_PROCESSES",
    "LINK_HELPERS",
    "SLOW_LINK",
    "SLOW_PIECE",
    "UNPACKER_MIN_BYTES",
    "Child",
    "Helper",
    "HelperPool",
    "HelperStock",
    "Unpacked",
    "Unpacker",
]

logger = logging.getLogger("asynclink")

#: Where ``_child.py`` is; its parent is where ``asynclink`` itself is imported from.
_PACKAGE = os.path.dirname(os.path.abspath(__file__))
#: Puts the directory of ``_child.py`` on the path (``-S``: no site-packages, ``-I``: nothing
#: from the environment) and serves. ``_child`` is imported, not run, so its ``.pyc`` is used.
_HELPER_BOOT = "import sys; sys.path[:0] = [sys.argv[1]]; import _child; _child.file_helper()"
#: Imports this very asynclink (the environment's packages too) and serves unpacks.
_UNPACKER_BOOT = (
    "import sys; sys.path[:0] = [sys.argv[1]]; "
    "from asynclink._child import unpacker; unpacker(sys.argv[2])"
)
#: How long a stopped unpacker may take to clean up its staging directory before it is killed.
_STOP_GRACE = 5.0

#: Helper processes of each kind (placing files, unpacking archives) an install may start, by
#: default: one per core (up to four), none with one core. Unlike threads, processes do place
#: files in parallel. The benchmark's ``bounds`` rows (README, Performance; 2 cores, tmpfs)
#: have link-only copy at 255 ms with no helper, 329 ms with a second thread instead, 232 ms
#: with one helper and 179 ms with two. Helpers start only when there is work for them (see
#: :data:`HELPER_MIN_FILES` and :data:`UNPACKER_MIN_BYTES`), each when the others are busy.
HELPER_PROCESSES = min(4, os.cpu_count() or 1) if (os.cpu_count() or 1) > 1 else 0

#: A wheel (or copy chunk) with fewer files than this is placed in the filesystem thread: the
#: round trip to a helper costs about as much as linking a hundred files.
HELPER_MIN_FILES = 128
#: The same for copies, about three times as costly per file as links (the ``bounds`` rows:
#: bare loops over the corpus, 169 ms copying its small files against 53 ms linking all).
HELPER_MIN_COPIES = 16

#: Helpers that place links (hard or symbolic) at once: one, until links prove slow (see
#: :data:`SLOW_LINK`). A link is too short a syscall for a second helper to pay once the first
#: one and the main process share two cores: while this was chosen (those runs were not kept),
#: one helper beat two by 1 to 6 ms on link-only hardlink (about 60 ms); the committed run has
#: 67 ms with no helper and 63 ms with one. Measured again once the helper made the
#: directories too (in-process warm hardlink, alternating runs of each, medians): tmpfs 114 ms
#: with one, 120 ms with two; the corpus x4 441 and 435 ms; XFS 157 and 162 ms. Copies and
#: clones move data, and take every helper there is.
LINK_HELPERS = 1
#: Seconds a file of a link piece may take its helper (:data:`SLOW_PIECE` files or more) before
#: the install opens a second link lane: then the kernel's own work is the bound, and a second
#: process does it beside the first. On tmpfs a hard link costs about 4 us of it; on XFS 14 us
#: (the helper's system time: 1.1 s for the corpus x4, 77k files, while the main process used
#: 0.56 s of CPU in its 1.34 s), where two link helpers took 1.12 s against 1.46 s with one
#: (in-process warm hardlink, corpus x4, 5 alternating rounds, medians; 0.33 s against 0.35 s
#: at x1), and on tmpfs as long as one (0.78 s at x4).
SLOW_LINK = 8e-6
#: The smallest link piece whose time says anything about the filesystem (a round trip costs
#: about as much as a hundred links).
SLOW_PIECE = 1024

#: A batch of this many wheels starts a file helper before its first piece is ready (see
#: :meth:`HelperPool.start_early`). Measured on the corpus (64 wheels, tmpfs, in-process warm
#: hardlink, alternating runs): medians of 112 ms against 121 ms.
EARLY_HELPER_WHEELS = 4

#: An archive smaller than this is unpacked in a CPU thread unless an unpacking helper is idle:
#: starting one (about 50 ms of imports) pays only for big archives.
UNPACKER_MIN_BYTES = 1 << 20


class Unpacked(enum.Enum):
    """Where an unpacker left an archive: unpacked by it just now, or already in the cache."""

    NOW = "unpacked"
    ALREADY = "cached"


class Child:
    """A child process answering framed requests one at a time."""

    #: The signal that stops it when its caller is cancelled.
    stop_signal = signal.SIGKILL

    def __init__(self, process: anyio.abc.Process, channel: anyio.abc.UNIXSocketStream) -> None:
        self._process = process
        self._channel = channel
        self._answers = BufferedByteReceiveStream(channel)
        self.busy = False
        self.broken = False
        self.used = False
        """Whether it was ever sent a request."""
        self._closed = False

    @classmethod
    async def _spawn(cls, arguments: list[str]) -> Self | None:
        """Start ``python arguments`` with one end of a socket pair for its stdin and stdout
        (a socket, not pipes: requests carry descriptors, see :meth:`_call`)."""
        if not sys.executable:
            return None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Shielded: a cancel while asyncio sets up the process would leave a started one
            # that nobody closes (asyncio warns when it exits after the loop has closed). The
            # caller's cancellation comes at its next checkpoint, once the pool holds the child.
            with anyio.CancelScope(shield=True):
                process = await anyio.open_process(
                    [sys.executable, *arguments],
                    stdin=theirs.fileno(),
                    stdout=theirs.fileno(),
                    stderr=subprocess.DEVNULL,
                )
                channel = await anyio.abc.UNIXSocketStream.from_socket(ours)
        except OSError as error:
            ours.close()
            logger.debug("no helper process: %s", error)
            return None
        finally:
            theirs.close()
        return cls(process, channel)

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

    async def _call(self, request: bytes, held_fds: Sequence[int] = ()) -> bytes | None:
        """Send ``request`` (with ``held_fds``, which the child holds open until it answers),
        return the answer; ``None`` if the process failed (it is broken then). If the caller
        is cancelled meanwhile, the process is stopped and waited for before this returns: it
        does nothing after the install has rolled back."""
        self.busy = self.used = True
        try:
            if held_fds:
                await self._channel.send_fds(framed(request), held_fds)
            else:
                await self._channel.send(framed(request))
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
        """Let the process finish: it exits when its socket closes."""
        if self._closed:
            return
        self._closed = self.broken = True
        with anyio.CancelScope(shield=True):
            await self._channel.aclose()
            await self._process.aclose()

    async def _stop(self) -> None:
        self.broken = True
        with anyio.CancelScope(shield=True):
            if self._process.returncode is None:
                self._signal(self.stop_signal)
                with anyio.move_on_after(_STOP_GRACE):
                    await self._process.wait()
            if self._process.returncode is None:
                self._signal(signal.SIGKILL)
            await self.aclose()

    def _signal(self, signum: int) -> None:
        """Send ``signum`` unless the process has been reaped. Not ``Process.send_signal``: on
        asyncio that is ``Popen.send_signal``, which first polls, and a poll that reaps a
        helper that just died (it does, when the helper's death is what failed the call)
        leaves asyncio's own child watcher without its status, so it reports exit 255 instead
        of the signal. An unreaped child's pid cannot be reused."""
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, signum)


class Helper(Child):
    """A file helper: places trees' files for one scheduler (see ``_child``)."""

    @classmethod
    async def start(cls) -> Helper | None:
        """A new helper, or ``None`` where none can be started (it is only an accelerator)."""
        return await cls._spawn(["-I", "-S", "-c", _HELPER_BOOT, _PACKAGE])

    async def place(
        self, mode: str, trees: Sequence[TreeJob], held_fds: Sequence[int] = ()
    ) -> list[TreeAnswer] | None:
        """Have the helper place ``trees`` with ``mode``; what it has to report of them (see
        :class:`~._child.TreeAnswer`), or ``None`` if the helper failed (then the caller does
        the job itself).

        The helper holds ``held_fds`` (the target's lock, see ``Recorder.held_fds``) while it
        works: if this process is killed, the helper finishes its piece, sees its socket
        close, and exits, and only then can the next install lock the target and undo this
        one.
        """
        answer = await self._call(encode_job(mode, trees), held_fds)
        return None if answer is None else decode_answer(answer)


class Unpacker(Child):
    """An unpacking helper: fills a :class:`~._unpack.WheelCache` for one scheduler."""

    #: ``SIGTERM`` lets an extraction remove its staging directory (``serve_unpacks``).
    stop_signal = signal.SIGTERM

    cache_root = ""
    """The cache it fills."""

    @classmethod
    async def start(cls, cache_root: str) -> Unpacker | None:
        """A new unpacker for the cache at ``cache_root``, or ``None`` if none can start."""
        package_parent = os.path.dirname(_PACKAGE)
        unpacker = await cls._spawn(["-c", _UNPACKER_BOOT, package_parent, cache_root])
        if unpacker is not None:
            unpacker.cache_root = cache_root
        return unpacker

    async def unpack(self, archive: str, max_unpacked_size: int) -> Unpacked | None:
        """Where ``archive`` is now that it is in the cache; ``None`` if the unpacker failed
        (the caller unpacks it itself: to report why, or as the helper died)."""
        answer = await self._call(json.dumps([archive, max_unpacked_size]).encode())
        if answer == UNPACKED:
            return Unpacked.NOW
        return Unpacked.ALREADY if answer == CACHED else None


class HelperStock:
    """Idle helpers kept between installs, for a :class:`~asynclink.Session`: each install's
    :class:`HelperPool` takes its helpers from here before it starts any, and gives back
    those still fit for work when it closes. Closing the stock closes them all."""

    def __init__(self) -> None:
        self._helpers: list[Helper] = []
        self._unpackers: list[Unpacker] = []
        self.closed = False

    @property
    def children(self) -> list[Child]:
        """The helpers kept now, of both kinds."""
        return [*self._helpers, *self._unpackers]

    def take_helper(self) -> Helper | None:
        return self._helpers.pop() if self._helpers else None

    def take_unpacker(self, cache_root: str) -> Unpacker | None:
        for index, unpacker in enumerate(self._unpackers):
            if unpacker.cache_root == cache_root:
                return self._unpackers.pop(index)
        return None

    def keep(self, child: Child) -> bool:
        """Keep ``child`` for a later install if it is fit for work; say if it was kept."""
        if self.closed or not child.idle or child.returncode is not None:
            return False
        if isinstance(child, Unpacker):
            self._unpackers.append(child)
        elif isinstance(child, Helper):
            self._helpers.append(child)
        else:
            return False
        return True

    async def aclose(self) -> None:
        self.closed = True
        for child in self.children:
            await child.aclose()
        self._helpers.clear()
        self._unpackers.clear()


class HelperPool:
    """The helpers of one install: started when there is work for them (or taken from a
    session's :class:`HelperStock`), reused, and closed or given back (:meth:`aclose`) before
    the install commits or rolls back.

    ``size`` is the most helpers of each kind. Helpers are used only while :attr:`open`
    (the scheduler opens the pool for the wheels' tasks); one that dies ends their use for the
    install, and the caller does the work itself.
    """

    def __init__(self, size: int, stock: HelperStock | None = None) -> None:
        self.size = size
        self.open = False
        self.started = 0
        """How many processes the pool has started (for diagnostics and tests)."""
        self.pieces = 0
        """How many pieces of files its helpers were given (for diagnostics and tests)."""
        self._stock = stock
        self._helpers: list[Helper] = []
        self._unpackers: list[Unpacker] = []
        self._failed = size == 0
        self._copy_slots = anyio.CapacityLimiter(max(1, size))
        self._link_slots = anyio.CapacityLimiter(LINK_HELPERS)

    @property
    def usable(self) -> bool:
        return self.open and not self._failed

    @property
    def children(self) -> list[Child]:
        """Every helper this install used, of both kinds."""
        return [*self._helpers, *self._unpackers]

    def takes(self, files: int, copies: bool = False) -> bool:
        """Whether a job of ``files`` files (``copies``: copied) goes to the helpers."""
        return self.usable and files >= (HELPER_MIN_COPIES if copies else HELPER_MIN_FILES)

    async def place(
        self, mode: str, trees: Sequence[TreeJob], held_fds: Sequence[int]
    ) -> list[TreeAnswer] | None:
        """What a helper did not place of ``trees`` (see :meth:`Helper.place`), or ``None`` if
        no helper did the job. Links take :data:`LINK_HELPERS` at once (two once they prove
        slow), copies and clones all; a job waits for a helper of its own."""
        if not self.usable:
            return None
        links = mode in ("hardlink", "symlink")
        async with self._link_slots if links else self._copy_slots:
            helper = next((h for h in self._helpers if h.idle), None)
            if helper is None and len(self._helpers) < self.size:
                helper = await self._another_helper()
            if helper is None:
                return None
            self.pieces += 1
            started = anyio.current_time()
            answer = await helper.place(mode, trees, held_fds)
            self._failed = self._failed or helper.broken
            if links and self._link_slots.total_tokens < min(2, self.size):
                files = sum(len(tree.files) for tree in trees)
                if files >= SLOW_PIECE and anyio.current_time() - started > files * SLOW_LINK:
                    self._link_slots.total_tokens = 2  # a second lane: see SLOW_LINK
            return answer

    async def unpack(
        self,
        limiter: anyio.CapacityLimiter,
        cache_root: str,
        archive: str,
        max_size: int,
        on_start: Callable[[], object] | None = None,
    ) -> Unpacked | None:
        """Where ``archive`` is once an unpacker has put it into the cache at ``cache_root``,
        or ``None`` to leave it to the caller's CPU thread (which raises any error with all
        its detail). ``on_start`` is called as an unpacker takes the archive.

        Unpackers share ``limiter`` with the CPU threads: at most as many archives at once
        either way. A new one is started only for a big archive while another unpack runs;
        otherwise the archive is left to the caller, as it is when an unpacker fails. One
        kept from an earlier install of the session is used like one of this install's.
        """
        if not self.usable:
            return None
        others_running = limiter.borrowed_tokens > 0
        async with limiter:
            unpacker = next((u for u in self._unpackers if u.idle), None)
            if unpacker is None and len(self._unpackers) < self.size and self._stock is not None:
                unpacker = self._stock.take_unpacker(cache_root)
                if unpacker is not None:
                    self._unpackers.append(unpacker)
            if unpacker is None:
                if not others_running or len(self._unpackers) >= self.size:
                    return None
                info = await anyio.Path(archive).stat()
                if not stat.S_ISREG(info.st_mode) or info.st_size < UNPACKER_MIN_BYTES:
                    return None
                unpacker = await Unpacker.start(cache_root)
                self._add(unpacker, self._unpackers)
                if unpacker is None:
                    return None
            if on_start is not None:
                on_start()
            answer = await unpacker.unpack(archive, max_size)
            self._failed = self._failed or unpacker.broken
            return answer

    async def start_early(self) -> None:
        """Have a file helper before the first piece is ready: a batch of many wheels will
        need one, and its start-up (about 10 ms of the interpreter's own) then overlaps the
        first plans instead of delaying the first piece. One that is never used is killed
        when the pool closes (it holds nothing), not waited for."""
        if self.usable and not self._helpers:
            await self._another_helper()

    async def _another_helper(self) -> Helper | None:
        """One more file helper: an idle one the session kept, else a new one."""
        kept = self._stock.take_helper() if self._stock is not None else None
        if kept is not None:
            self._helpers.append(kept)
            return kept
        helper = await Helper.start()
        self._add(helper, self._helpers)
        return helper

    def _add(self, child: Child | None, into: list[Any]) -> None:
        if child is None:
            self._failed = True  # cannot start one: stop trying
        else:
            into.append(child)
            self.started += 1

    async def aclose(self) -> None:
        """Stop using the helpers: give those fit for work back to the stock, if there is
        one, and close the others (each exits when its socket closes)."""
        self.open = False
        for child in self.children:
            if self._stock is not None and self._stock.keep(child):
                continue
            if child.used:
                await child.aclose()
            else:  # perhaps still starting: waiting for it to exit would take as long
                await child._stop()
        self._helpers.clear()
        self._unpackers.clear()
