"""Unpacking helpers: archives unpacked into the cache by other processes, as a thread would."""

from __future__ import annotations

import os
import random
import shutil
import signal
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from asynclink import (
    Event,
    InvalidWheelError,
    Scheme,
    WheelFinished,
    WheelUnpacking,
    install_wheels,
    unpack_wheels,
)
from asynclink._cache import DEFAULT_MAX_UNPACKED_SIZE, WheelCache
from asynclink._helpers import UNPACKER_MIN_BYTES, HelperPool, Unpacked
from tests.inotify import DirectoryWatch
from tests.trees import snapshot
from tests.wheels import build_wheel

pytestmark = pytest.mark.anyio


def big_wheel(
    directory: Path, name: str, size: int = UNPACKER_MIN_BYTES + 4096, **spec: object
) -> Path:
    """A wheel big enough to be worth an unpacking helper (its blob does not compress)."""
    blob = random.Random(name).randbytes(size)
    files = {f"{name}/__init__.py": "", f"{name}/blob.bin": blob}
    return build_wheel(directory, name=name, files=files, **spec)


async def unpack_in_helpers(
    pool: HelperPool, cache: Path, archives: list[Path]
) -> list[Unpacked | None]:
    """Unpack ``archives`` with ``pool``'s unpackers one after another, while another unpack
    is running (the test holds one of the two CPU slots it hands the pool): that is when an
    unpacker is started."""
    slots = anyio.CapacityLimiter(2)
    other_unpack = object()
    await slots.acquire_on_behalf_of(other_unpack)
    pool.open = True
    try:
        return [
            await pool.unpack(slots, str(cache), str(archive), DEFAULT_MAX_UNPACKED_SIZE)
            for archive in archives
        ]
    finally:
        await pool.aclose()
        slots.release_on_behalf_of(other_unpack)


async def test_an_unpacker_fills_the_cache_as_a_thread_would(tmp_path: Path) -> None:
    archives = [big_wheel(tmp_path / "wheels", f"big{n}") for n in range(3)]
    pool = HelperPool(1)

    done = await unpack_in_helpers(pool, tmp_path / "helped", archives)
    threaded = await unpack_wheels(archives, cache_dir=tmp_path / "threaded", jobs=1)

    assert done == [Unpacked.NOW] * 3 and pool.started == 1
    for archive, by_thread in zip(archives, threaded, strict=True):
        by_helper = WheelCache(tmp_path / "helped").lookup(str(archive))
        assert by_helper is not None
        # The same but for when each was sealed (the second its unpacking finished).
        assert by_helper.manifest._replace(sealed=0) == by_thread.manifest._replace(sealed=0)
        assert snapshot(Path(by_helper.tree)) == snapshot(Path(by_thread.tree))


async def test_an_archive_an_unpacker_refuses_is_left_to_the_caller(tmp_path: Path) -> None:
    bad_hash = "sha256=" + "A" * 43
    archive = big_wheel(
        tmp_path / "wheels",
        "tampered",
        record=lambda rows: [
            [path, bad_hash if path.endswith("blob.bin") else digest, size]
            for path, digest, size in rows
        ],
    )
    done = await unpack_in_helpers(HelperPool(1), tmp_path / "cache", [archive])

    assert done == [None]
    assert WheelCache(tmp_path / "cache").lookup(str(archive)) is None
    assert os.listdir(tmp_path / "cache" / "tmp") == []  # its staging directory is gone
    with pytest.raises(InvalidWheelError, match="tampered") as caught:  # the caller's own try
        await unpack_wheels([archive], cache_dir=tmp_path / "cache")
    assert "blob.bin" in str(caught.value)


async def test_cancelling_stops_an_unpacker_and_its_staging_directory_goes(
    tmp_path: Path,
) -> None:
    """The unpacker is frozen (``SIGSTOP``) the moment its staging directory appears, so the
    cancellation surely finds it in the middle of its extraction; it goes on only once the
    ``SIGTERM`` that stops it is waiting for it."""
    archive = big_wheel(tmp_path / "wheels", "huge", size=8 * UNPACKER_MIN_BYTES)
    pool = HelperPool(1)
    cache = tmp_path / "cache"
    (cache / "tmp").mkdir(parents=True)

    async def thaw_once_terminated(pid: int) -> None:
        while not _pending(pid, signal.SIGTERM):
            await anyio.lowlevel.checkpoint()
        os.kill(pid, signal.SIGCONT)

    with DirectoryWatch(cache / "tmp") as watch, anyio.CancelScope() as scope:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(unpack_in_helpers, pool, cache, [archive])
            await anyio.wait_readable(watch.fd)  # the helper has made its staging directory
            (unpacker,) = seen = pool.children
            os.kill(unpacker.pid, signal.SIGSTOP)
            while not _stopped(unpacker.pid):  # a SIGTERM sent before would be taken first
                await anyio.lowlevel.checkpoint()
            assert os.listdir(cache / "tmp"), "the unpacker was stopped after its extraction"
            with anyio.CancelScope(shield=True):
                async with anyio.create_task_group() as thawing:
                    thawing.start_soon(thaw_once_terminated, unpacker.pid)
                    scope.cancel()
                    task_group.cancel_scope.cancel()

    assert seen and all(unpacker.returncode is not None for unpacker in seen)
    assert os.listdir(cache / "tmp") == []
    assert WheelCache(cache).lookup(str(archive)) is None


async def test_an_install_reports_what_an_unpacker_unpacked_as_not_cached(
    tmp_path: Path,
) -> None:
    """However the work was shared, every wheel of a cold install reports ``cached=False``;
    the events say which were unpacked by a helper."""
    archives = [big_wheel(tmp_path / "wheels", f"fresh{n}") for n in range(4)]
    events: list[Event] = []

    result = await install_wheels(
        Scheme.for_directory(tmp_path / "target"),
        archives,
        cache_dir=tmp_path / "cache",
        jobs=4,
        helper_processes=2,
        on_event=events.append,
    )

    unpacking = [e for e in events if isinstance(e, WheelUnpacking)]
    assert sorted(e.archive for e in unpacking) == sorted(map(str, archives))
    assert [w.cached for w in result.wheels] == [False] * 4
    finished = [e.result for e in events if isinstance(e, WheelFinished)]
    assert [w.cached for w in finished] == [False] * 4
    for n in range(4):
        blob = tmp_path / f"target/fresh{n}/blob.bin"
        assert blob.stat().st_size == UNPACKER_MIN_BYTES + 4096


async def test_an_unpacker_finds_an_archive_cached_under_another_path(tmp_path: Path) -> None:
    archive = big_wheel(tmp_path / "here", "moved")
    await unpack_wheels([archive], cache_dir=tmp_path / "cache")
    elsewhere = tmp_path / "there" / archive.name
    elsewhere.parent.mkdir()
    shutil.copyfile(archive, elsewhere)
    done = await unpack_in_helpers(HelperPool(1), tmp_path / "cache", [elsewhere])

    assert done == [Unpacked.ALREADY]


def _stopped(pid: int) -> bool:
    """Whether the process ``pid`` has taken its ``SIGSTOP`` (its state is ``T``)."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()[0] == "T"


def _pending(pid: int, signum: int) -> bool:
    """Whether ``signum`` waits to be delivered to the (stopped) process ``pid``."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("ShdPnd:"):
                return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    return False
