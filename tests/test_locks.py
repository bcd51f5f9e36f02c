"""Directory locks: one holder per directory at a time, others at once, nothing left held."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from asynclink._locks import DirectoryLocks

pytestmark = pytest.mark.anyio


async def test_a_second_holder_of_a_directory_waits_for_the_first_to_let_go() -> None:
    locks = DirectoryLocks()
    order: list[str] = []
    first_holds, first_may_go = anyio.Event(), anyio.Event()

    async def first() -> None:
        async with locks.holding(["/sp/pkg", "/sp/bin"]):
            order.append("first in")
            first_holds.set()
            await first_may_go.wait()
            order.append("first out")

    async def second() -> None:
        await first_holds.wait()
        async with locks.holding(["/sp/pkg"]):
            order.append("second in")

    async with anyio.create_task_group() as group:
        group.start_soon(first)
        group.start_soon(second)
        await first_holds.wait()
        for _ in range(10):  # the second holder has every chance to get in, and must not
            await anyio.lowlevel.checkpoint()
        assert order == ["first in"]
        first_may_go.set()

    assert order == ["first in", "first out", "second in"]


async def test_holders_of_different_directories_hold_them_at_once() -> None:
    locks = DirectoryLocks()
    both_in = anyio.Event()
    inside = 0

    async def hold(directory: str) -> None:
        nonlocal inside
        async with locks.holding([directory]):
            inside += 1
            if inside == 2:
                both_in.set()
            await both_in.wait()  # returns only if the other holder got in meanwhile

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(hold, "/sp/a")
            group.start_soon(hold, "/sp/b")


async def test_a_holder_cancelled_while_waiting_leaves_nothing_held() -> None:
    locks = DirectoryLocks()
    holds, may_go = anyio.Event(), anyio.Event()

    async def first() -> None:
        async with locks.holding(["/sp/a", "/sp/b"]):
            holds.set()
            await may_go.wait()

    async with anyio.create_task_group() as group:
        group.start_soon(first)
        await holds.wait()
        with anyio.move_on_after(0) as waiting:
            async with locks.holding(["/sp/0", "/sp/a"]):  # gets /sp/0, waits for /sp/a
                pytest.fail("held a directory another holder has")
        assert waiting.cancelled_caught
        may_go.set()

    with anyio.fail_after(10):
        async with locks.holding(["/sp/0", "/sp/a", "/sp/b"]):
            pass  # every directory is free again
