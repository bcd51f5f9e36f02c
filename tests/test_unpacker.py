"""Unpacking helpers: archives unpacked into the cache by other processes, as a thread would."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import anyio
import pytest

from asynclink import InvalidWheelError, UnpackedWheel, unpack_wheels
from asynclink._helper import UNPACKER_MIN_BYTES
from asynclink._install import _unpack
from asynclink._scheduler import Scheduler
from asynclink._unpack import DEFAULT_MAX_UNPACKED_SIZE, WheelCache
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
    scheduler: Scheduler, cache: Path, archives: list[Path]
) -> list[str | None]:
    """Unpack ``archives`` with ``scheduler``'s helpers one after another, while another
    unpack seems to be running (the test holds a CPU slot): that is when one is started."""
    scheduler.cpu_limiter.total_tokens = 2  # that unpack's slot and one more, even on one core

    async def unpack(archive: Path) -> str | None:
        limiter = scheduler.cpu_limiter
        return await scheduler.helpers.unpack(
            limiter, str(cache), str(archive), DEFAULT_MAX_UNPACKED_SIZE
        )

    other_unpack = object()
    await scheduler.cpu_limiter.acquire_on_behalf_of(other_unpack)
    try:
        return await scheduler.run_wheels(archives, unpack)
    finally:
        scheduler.cpu_limiter.release_on_behalf_of(other_unpack)


async def test_an_unpacker_fills_the_cache_as_a_thread_would(tmp_path: Path) -> None:
    archives = [big_wheel(tmp_path / "wheels", f"big{n}") for n in range(3)]
    scheduler = Scheduler(None, jobs=2, helper_processes=1)

    done = await unpack_in_helpers(scheduler, tmp_path / "helped", archives)
    threaded = await unpack_wheels(archives, cache_dir=tmp_path / "threaded", jobs=1)

    assert done == ["unpacked"] * 3
    for archive, by_thread in zip(archives, threaded, strict=True):
        by_helper = WheelCache(tmp_path / "helped").lookup(str(archive))
        assert by_helper is not None
        assert by_helper.manifest == by_thread.manifest
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
    scheduler = Scheduler(None, jobs=2, helper_processes=1)

    done = await unpack_in_helpers(scheduler, tmp_path / "cache", [archive])

    assert done == [None]
    assert WheelCache(tmp_path / "cache").lookup(str(archive)) is None
    assert os.listdir(tmp_path / "cache" / "tmp") == []  # its staging directory is gone
    with pytest.raises(InvalidWheelError, match="tampered") as caught:  # the caller's own try
        await unpack_wheels([archive], cache_dir=tmp_path / "cache")
    assert "blob.bin" in str(caught.value)


async def test_cancelling_stops_an_unpacker_and_its_staging_directory_goes(
    tmp_path: Path,
) -> None:
    archive = big_wheel(tmp_path / "wheels", "huge", size=32 << 20)  # long enough to extract
    scheduler = Scheduler(None, jobs=2, helper_processes=1)
    cache = tmp_path / "cache"
    (cache / "tmp").mkdir(parents=True)

    with DirectoryWatch(cache / "tmp") as watch, anyio.CancelScope() as scope:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(unpack_in_helpers, scheduler, cache, [archive])
            await anyio.wait_readable(watch.fd)  # the helper has made its staging directory
            seen = scheduler.helpers.children
            scope.cancel()

    assert seen and all(unpacker.returncode is not None for unpacker in seen)
    assert os.listdir(cache / "tmp") == []
    assert WheelCache(cache).lookup(str(archive)) is None


async def test_an_install_reports_what_an_unpacker_unpacked_as_not_cached(
    tmp_path: Path,
) -> None:
    archive = big_wheel(tmp_path / "wheels", "fresh")
    scheduler = Scheduler(None, jobs=2, helper_processes=1)
    scheduler.cpu_limiter.total_tokens = 2
    other_unpack = object()  # another unpack running: when an unpacker is started

    async def unpack(source: str) -> UnpackedWheel:
        return await _unpack(scheduler, WheelCache(tmp_path / "cache"), source, 1 << 30)

    await scheduler.cpu_limiter.acquire_on_behalf_of(other_unpack)
    try:
        (unpacked,) = await scheduler.run_wheels([str(archive)], unpack)
    finally:
        scheduler.cpu_limiter.release_on_behalf_of(other_unpack)

    assert scheduler.helpers.started == 1
    assert not unpacked.cached  # though the thread found it in the cache after the helper
    assert (Path(unpacked.tree) / "fresh/blob.bin").stat().st_size == UNPACKER_MIN_BYTES + 4096


async def test_an_unpacker_finds_an_archive_cached_under_another_path(tmp_path: Path) -> None:
    archive = big_wheel(tmp_path / "here", "moved")
    await unpack_wheels([archive], cache_dir=tmp_path / "cache")
    elsewhere = tmp_path / "there" / archive.name
    elsewhere.parent.mkdir()
    shutil.copyfile(archive, elsewhere)
    scheduler = Scheduler(None, jobs=2, helper_processes=1)

    done = await unpack_in_helpers(scheduler, tmp_path / "cache", [elsewhere])

    assert done == ["cached"]
