"""Nothing lost: a failed, cancelled or crashed install leaves the target as it was; upgrades
are part of the transaction; one installer at a time holds a target."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
import pytest

from asynclink import (
    ConflictFound,
    InvalidWheelError,
    LinkError,
    LinkMode,
    LockAcquired,
    LockTimeoutError,
    Scheme,
    WheelLinked,
    WheelStarted,
    install_wheels,
    link_wheels,
    recover,
    uninstall,
)
from asynclink import _transaction as transaction
from asynclink._events import EventCallback
from asynclink._transaction import DISCARD_AT_ONCE
from tests.environments import JOURNAL as JOURNAL_NAME
from tests.environments import LOCK as LOCK_NAME
from tests.environments import another_installer
from tests.inotify import DirectoryWatch
from tests.trees import leftovers, make_tree, snapshot, wheel_tree
from tests.wheels import build_wheel

pytestmark = pytest.mark.anyio

BEFORE = {
    "pkg/__init__.py": "old init\n",
    "pkg/keep.py": "untouched\n",
    "bin/tool": "#!/bin/sh\nold\n",
    "other-2.0.dist-info/RECORD": "other/__init__.py,,\n",
    "other/__init__.py": "other\n",
}


def existing_target(root: Path) -> Path:
    """A site-packages with files a batch will replace, files it will not, a symlink, modes."""
    make_tree(root, BEFORE, executable=["bin/tool"], symlinks={"pkg/alias.py": "keep.py"})
    (root / "pkg").chmod(0o750)
    return root


def batch(tmp_path: Path, failing: bool) -> list[Path]:
    """Three wheels; with ``failing``, the last one cannot be placed (a directory is in its
    way, made by :func:`obstruct`)."""
    return [
        wheel_tree(
            tmp_path / "w1",
            "pkg",
            {"pkg/__init__.py": "new\n", "pkg/mod.py": "m\n", "bin/tool": "#!/bin/sh\nnew\n"},
        ),
        wheel_tree(tmp_path / "w2", "second", {f"second/m{n}.py": f"{n}\n" for n in range(50)}),
        wheel_tree(tmp_path / "w3", "zz", {"zz/a.py": "a\n", "zz/blocked.py": "b\n"}),
    ][: 3 if failing else 2]


def obstruct(site_packages: Path) -> None:
    make_tree(site_packages, {"zz/blocked.py/in-the-way": "x\n"})


@pytest.mark.parametrize("mode", [LinkMode.COPY, LinkMode.HARDLINK, LinkMode.SYMLINK])
async def test_a_failed_batch_leaves_the_target_as_it_was(tmp_path: Path, mode: LinkMode) -> None:
    target = existing_target(tmp_path / "sp")
    obstruct(target)
    before = snapshot(target)

    with pytest.raises(LinkError) as caught:
        await link_wheels(target, batch(tmp_path, failing=True), mode=mode, jobs=1)

    assert snapshot(target) == before
    assert any("rolled back: removed" in note for note in caught.value.__notes__)
    assert not (target / JOURNAL_NAME).exists() and not (target / LOCK_NAME).exists()


async def test_a_cancel_during_the_last_step_rolls_the_batch_back(tmp_path: Path) -> None:
    """The conflict scan is the batch's last step, in a thread that cannot be cut short: a
    cancel that comes meanwhile (here from the conflict's own event, right after it) rolls
    the batch back instead of leaving it neither committed nor undone."""
    wheels = [wheel_tree(tmp_path / name, name, {"shared/mod.py": name * 3}) for name in ("a", "b")]
    target = existing_target(tmp_path / "sp")
    before = snapshot(target)

    with anyio.CancelScope() as scope:

        def on_event(event: object) -> None:
            if isinstance(event, ConflictFound):
                scope.cancel()

        await link_wheels(target, wheels, mode="copy", on_event=on_event)

    assert scope.cancelled_caught
    assert snapshot(target) == before


async def test_a_callback_that_raises_on_the_lock_lets_go_of_it(tmp_path: Path) -> None:
    wheels = batch(tmp_path, failing=False)
    target = existing_target(tmp_path / "sp")

    def on_event(event: object) -> None:
        if isinstance(event, LockAcquired):
            raise RuntimeError("the embedder's callback broke")

    with pytest.raises(RuntimeError, match="callback broke"):
        await link_wheels(target, wheels, mode="copy", on_event=on_event)

    assert not (target / LOCK_NAME).exists()
    await link_wheels(target, wheels, mode="copy", lock_timeout=5)


async def test_a_failed_install_into_a_new_directory_leaves_no_directory(tmp_path: Path) -> None:
    good = build_wheel(tmp_path / "dist", files={"demo/__init__.py": ""})
    hostile = build_wheel(
        tmp_path / "dist", name="evil", files={"evil/x.py": ""}, extra=[("../x.py", b"")]
    )
    target = tmp_path / "new" / "site-packages"

    with pytest.raises(InvalidWheelError, match="path leaves the wheel"):
        await install_wheels(
            Scheme.for_directory(target), [good, hostile], cache_dir=tmp_path / "cache", jobs=1
        )

    assert not (tmp_path / "new").exists()


async def test_a_cancelled_batch_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    target = existing_target(tmp_path / "sp")
    before = snapshot(target)
    linked = 0

    with anyio.CancelScope() as scope:

        def cancel_after_the_first_wheel(event: object) -> None:
            nonlocal linked
            if isinstance(event, WheelLinked):
                linked += 1
                scope.cancel()

        await link_wheels(
            target,
            batch(tmp_path, failing=False),
            mode="copy",
            jobs=1,
            on_event=cancel_after_the_first_wheel,
        )

    assert scope.cancelled_caught and linked == 1
    assert snapshot(target) == before
    assert leftovers(target) == []


def big_wheel(tmp_path: Path) -> Path:
    """A wheel whose files are more than a rollback deletes before it returns."""
    files = {f"big/sub{n % 7}/m{n}.py": f"{n}\n" for n in range(DISCARD_AT_ONCE + 100)}
    return wheel_tree(tmp_path / "big", "big", files)


def cancel_when(scope: anyio.CancelScope, test: Callable[[object], bool]) -> EventCallback:
    """An event callback that cancels ``scope`` at the first event that passes ``test``."""

    def on_event(event: object) -> None:
        if test(event):
            scope.cancel()

    return on_event


def big_linked(event: object) -> bool:
    return isinstance(event, WheelLinked) and event.files > DISCARD_AT_ONCE


async def test_a_large_rollback_returns_before_deleting_what_it_took_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = existing_target(tmp_path / "sp")
    before = snapshot(target)
    deferred: list[tuple[str, Sequence[str]]] = []
    monkeypatch.setattr(transaction, "discard_in_background", lambda *args: deferred.append(args))

    with anyio.CancelScope() as scope:
        await link_wheels(
            target,
            [big_wheel(tmp_path), *batch(tmp_path, failing=False)],
            mode="hardlink",
            jobs=1,
            on_event=cancel_when(scope, big_linked),
        )

    # All is as it was but the journal, whose trash holds the rest of the big wheel's files.
    after = snapshot(target)
    assert {path for path in after if not path.startswith(JOURNAL_NAME)} == set(before)
    assert any(path.startswith(f"{JOURNAL_NAME}/") and "/trash/" in path for path in after)
    (arguments,) = deferred
    monkeypatch.undo()
    transaction.discard_in_background(*arguments)
    transaction.finish_discards()
    assert snapshot(target) == before


async def test_a_large_rollback_of_a_new_target_removes_it_in_the_background(
    tmp_path: Path,
) -> None:
    files = {f"big/sub{n % 7}/m{n}.py": "" for n in range(DISCARD_AT_ONCE + 100)}
    wheels = [build_wheel(tmp_path / "dist", name=name, files=files) for name in ("big", "zz")]
    target = tmp_path / "new" / "site-packages"

    with anyio.CancelScope() as scope:
        await install_wheels(
            Scheme.for_directory(target),
            wheels,
            cache_dir=tmp_path / "cache",
            jobs=1,
            on_event=cancel_when(scope, big_linked),
        )

    transaction.finish_discards()
    assert scope.cancelled_caught and not (tmp_path / "new").exists()


async def test_a_large_uninstall_returns_before_deleting_what_it_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An uninstall renames its directories into the journal's stash; committed, it deletes
    what a rollback would (:data:`DISCARD_AT_ONCE` files) and leaves the rest to a thread."""
    scheme = Scheme.for_directory(tmp_path / "sp")
    wheel = build_wheel(
        tmp_path / "dist",
        name="big",
        files={f"big/sub{n % 7}/m{n}.py": "" for n in range(DISCARD_AT_ONCE + 100)},
    )
    await install_wheels(scheme, [wheel], cache_dir=tmp_path / "cache")
    deferred: list[tuple[str, Sequence[str]]] = []
    monkeypatch.setattr(transaction, "discard_in_background", lambda *args: deferred.append(args))

    await uninstall(scheme, ["big"])

    after = snapshot(tmp_path / "sp")
    assert after and all(path.startswith(JOURNAL_NAME) for path in after)
    assert any("/stash/" in path for path in after)
    (arguments,) = deferred
    monkeypatch.undo()
    transaction.discard_in_background(*arguments)
    transaction.finish_discards()
    assert not (tmp_path / "sp" / JOURNAL_NAME).exists()


async def test_an_uninstall_removes_file_by_file_what_it_cannot_rename_into_its_stash(
    tmp_path: Path, other_device: Path
) -> None:
    """A directory on another filesystem than site-packages (whose journal holds the stash)
    cannot be renamed there whole: its files go one by one, and the directory after them."""
    scheme = dataclasses.replace(Scheme.for_directory(tmp_path / "env"), data=str(other_device))
    data = {f"demo-1.0.data/data/share/demo/{n}.txt": "" for n in range(3)}
    wheel = build_wheel(tmp_path / "dist", name="demo", files={"demo/__init__.py": "", **data})
    await install_wheels(scheme, [wheel], cache_dir=tmp_path / "cache", mode="copy")
    assert len(list((other_device / "share" / "demo").iterdir())) == 3

    (removed,) = (await uninstall(scheme, ["demo"])).removed

    assert list(other_device.iterdir()) == []
    assert removed.files > len(data)  # and the module, and the .dist-info's files


async def test_a_rollback_removes_in_place_what_it_cannot_rename_into_its_trash(
    tmp_path: Path, other_device: Path
) -> None:
    site_packages = tmp_path / "env"
    scheme = dataclasses.replace(Scheme.for_directory(site_packages), data=str(other_device))
    data = {f"demo-1.0.data/data/share/demo/{n}.txt": "" for n in range(3)}
    wheel = build_wheel(tmp_path / "dist", name="demo", files={"demo/__init__.py": "", **data})

    with anyio.CancelScope() as scope:
        await install_wheels(
            scheme,
            [wheel],
            cache_dir=tmp_path / "cache",
            mode="copy",
            on_event=cancel_when(scope, lambda event: isinstance(event, WheelLinked)),
        )

    assert scope.cancelled_caught
    assert list(other_device.iterdir()) == [] and not site_packages.exists()


async def test_an_undone_journal_left_by_a_killed_process_is_deleted_not_undone(
    tmp_path: Path,
) -> None:
    target = existing_target(tmp_path / "sp")
    before = snapshot(target)
    # A process that rolled back and was killed before its background deletion ran leaves
    # an undone journal with a trash: the next install deletes it and undoes nothing.
    wheels = [str(wheel) for wheel in [big_wheel(tmp_path), *batch(tmp_path, failing=False)]]
    killed = ROLLED_BACK_THEN_KILLED.format(
        target=str(target), wheels=wheels, limit=DISCARD_AT_ONCE
    )
    process = subprocess.run([sys.executable, "-c", killed], capture_output=True, check=False)
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert (target / JOURNAL_NAME).exists()

    assert await recover(target) == []

    assert snapshot(target) == before


ROLLED_BACK_THEN_KILLED = """
import os, signal, anyio, asynclink, asynclink._transaction as transaction
transaction.discard_in_background = lambda *args: os.kill(os.getpid(), signal.SIGKILL)

async def main():
    with anyio.CancelScope() as scope:
        await asynclink.link_wheels(
            {target!r}, {wheels!r}, mode="hardlink", jobs=1,
            on_event=lambda event: getattr(event, "files", 0) > {limit} and scope.cancel())

anyio.run(main)
"""


async def test_a_successful_batch_commits_and_leaves_no_journal(tmp_path: Path) -> None:
    target = existing_target(tmp_path / "sp")

    result = await link_wheels(target, batch(tmp_path, failing=False), mode="copy")

    assert (target / "pkg/__init__.py").read_text() == "new\n"
    assert (target / "pkg/keep.py").read_text() == "untouched\n"
    assert not (target / JOURNAL_NAME).exists() and not (target / LOCK_NAME).exists()
    assert result.recovered == ()


CRASHING_INSTALL = """
import os, signal, sys
import anyio, asynclink

def crash(event):
    if isinstance(event, asynclink.WheelLinked):
        os.kill(os.getpid(), signal.SIGKILL)  # as abrupt as a power-less OOM kill

anyio.run(lambda: asynclink.link_wheels(sys.argv[1], sys.argv[2:], mode="copy", jobs=1,
                                        on_event=crash))
"""


def crash_an_install(target: Path, wheels: list[Path]) -> int:
    process = subprocess.run(
        [sys.executable, "-c", CRASHING_INSTALL, str(target), *map(str, wheels)],
        capture_output=True,
        check=False,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr
    (journal,) = (target / JOURNAL_NAME).iterdir()
    return int(journal.name.partition("-")[0])


async def test_a_crash_leaves_a_journal_that_recover_undoes(tmp_path: Path) -> None:
    target = existing_target(tmp_path / "sp")
    before = snapshot(target)
    pid = crash_an_install(target, batch(tmp_path, failing=False))
    assert snapshot(target) != before
    # A crash between writing a temporary file and renaming it leaves one behind, named for
    # the process; recovery removes those too.
    (target / "pkg" / f".asynclink-tmp-{pid}-abc-7").write_text("half\n")

    (report,) = await recover(target)

    assert snapshot(target) == before
    assert report.removed_files > 0 and report.restored_files > 0 and not report.problems


async def test_the_next_install_finishes_a_crashed_ones_rollback(tmp_path: Path) -> None:
    target = existing_target(tmp_path / "sp")
    wheels = batch(tmp_path, failing=False)
    crash_an_install(target, wheels)

    result = await link_wheels(target, wheels, mode="copy")

    assert len(result.recovered) == 1
    assert (target / "pkg/__init__.py").read_text() == "new\n"
    assert not (target / JOURNAL_NAME).exists()


# -- upgrades --------------------------------------------------------------------------------


def old_and_new(tmp_path: Path) -> tuple[Path, Path]:
    old = build_wheel(
        tmp_path / "dist",
        name="demo",
        version="1.0",
        files={
            "demo/__init__.py": "VERSION = 1\n",
            "demo/old.py": "OLD = 1\n",
            "demo/sub/gone.py": "",
            "demo-1.0.data/scripts/oldtool": "#!/bin/sh\n",
        },
        entry_points="[console_scripts]\ndemo-old = demo:main\ndemo = demo:main\n",
    )
    new = build_wheel(
        tmp_path / "dist",
        name="demo",
        version="2.0",
        files={"demo/__init__.py": "VERSION = 2\n", "demo/new.py": "NEW = 1\n"},
        entry_points="[console_scripts]\ndemo = demo:main\n",
    )
    return old, new


@pytest.fixture
def scheme(tmp_path: Path) -> Scheme:
    return Scheme.for_directory(tmp_path / "env")


async def test_an_upgrade_removes_what_only_the_old_version_had(
    tmp_path: Path, scheme: Scheme
) -> None:
    old, new = old_and_new(tmp_path)
    await install_wheels(scheme, [old], cache_dir=tmp_path / "cache", compile=False)
    (Path(scheme.purelib) / "demo/__pycache__").mkdir()
    (Path(scheme.purelib) / "demo/__pycache__/old.cpython-311.pyc").write_bytes(b"pyc")

    await install_wheels(scheme, [new], cache_dir=tmp_path / "cache")

    site, bin_dir = Path(scheme.purelib), Path(scheme.scripts)
    assert (site / "demo/__init__.py").read_text() == "VERSION = 2\n"
    assert (site / "demo/new.py").exists()
    assert not (site / "demo/old.py").exists() and not (site / "demo/sub").exists()
    assert not (site / "demo/__pycache__").exists()
    assert sorted(p.name for p in site.glob("demo-*.dist-info")) == ["demo-2.0.dist-info"]
    assert sorted(p.name for p in bin_dir.iterdir()) == ["demo"]


async def test_an_upgrade_finds_the_old_version_whatever_the_new_version_looks_like(
    tmp_path: Path, scheme: Scheme
) -> None:
    """``2.0-1`` is a valid spelling of 2.0.post1, with a dash in it."""
    old = build_wheel(tmp_path / "old", files={"demo/__init__.py": "", "demo/old.py": ""})
    new = build_wheel(
        tmp_path / "new",
        version="2.0-1",
        filename="demo-2.0.post1-py3-none-any.whl",
        dist_info="demo-2.0.post1.dist-info",
        files={"demo/__init__.py": ""},
    )
    await install_wheels(scheme, [old], cache_dir=tmp_path / "cache")

    await install_wheels(scheme, [new], cache_dir=tmp_path / "cache")

    site = Path(scheme.purelib)
    assert not (site / "demo/old.py").exists()
    assert sorted(p.name for p in site.glob("demo-*.dist-info")) == ["demo-2.0.post1.dist-info"]


async def test_files_both_versions_have_are_replaced_not_removed(
    tmp_path: Path, scheme: Scheme
) -> None:
    old, new = old_and_new(tmp_path)
    await install_wheels(scheme, [old], cache_dir=tmp_path / "cache")

    with DirectoryWatch(Path(scheme.purelib) / "demo") as watch:
        await install_wheels(scheme, [new], cache_dir=tmp_path / "cache")
        events = watch.events()

    assert ("moved_to", "__init__.py") in events  # renamed over the old one
    assert ("delete", "__init__.py") not in events
    assert ("delete", "old.py") in events


async def test_a_failed_upgrade_brings_the_old_version_back(tmp_path: Path, scheme: Scheme) -> None:
    old, new = old_and_new(tmp_path)
    await install_wheels(scheme, [old], cache_dir=tmp_path / "cache")
    broken = build_wheel(tmp_path / "dist", name="broken", files={"broken/x.py": ""})
    make_tree(tmp_path / "env", {"broken/x.py/in-the-way": ""})
    before = snapshot(tmp_path / "env")

    with pytest.raises(LinkError):
        await install_wheels(scheme, [new, broken], cache_dir=tmp_path / "cache", jobs=1)

    assert snapshot(tmp_path / "env") == before


async def test_an_upgrade_never_removes_files_outside_the_environment(
    tmp_path: Path, scheme: Scheme, caplog: pytest.LogCaptureFixture
) -> None:
    old, new = old_and_new(tmp_path)
    await install_wheels(scheme, [old], cache_dir=tmp_path / "cache")
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    record = Path(scheme.purelib) / "demo-1.0.dist-info/RECORD"
    record.write_text(record.read_text() + "../precious.txt,,\n")

    await install_wheels(scheme, [new], cache_dir=tmp_path / "cache")

    assert outside.read_text() == "keep me\n"
    assert "outside the environment; not removing it" in caplog.text


# -- one installer at a time -------------------------------------------------------------------


def test_two_processes_install_one_after_the_other(tmp_path: Path) -> None:
    wheels = [
        build_wheel(
            tmp_path / "dist", name=name, files={f"{name}/__init__.py": name, "shared.txt": name}
        )
        for name in ("first", "second")
    ]
    target, sequential = tmp_path / "target", tmp_path / "sequential"
    target.mkdir()

    def install_command(into: Path, wheel: Path) -> list[str]:
        return [
            *(sys.executable, "-m", "asynclink", "install", "--target", str(into)),
            *("--cache-dir", str(tmp_path / "cache"), "--link-mode", "copy", str(wheel)),
        ]

    for wheel in wheels:  # the reference: one after the other, by hand
        subprocess.run([*install_command(sequential, wheel), "-q"], check=True)
    with another_installer(target):
        processes = [
            subprocess.Popen(install_command(target, wheel), stderr=subprocess.PIPE, text=True)
            for wheel in wheels
        ]
        for process in processes:  # both are waiting for the lock before we let go of it
            assert process.stderr is not None
            assert "waiting for another installer" in process.stderr.readline()

    finished = [process.communicate() for process in processes]
    assert [process.returncode for process in processes] == [0, 0], finished
    result, reference = snapshot(target), snapshot(sequential)
    assert set(result) == set(reference)
    assert result["shared.txt"][2] in (b"first", b"second")  # whichever went last
    assert {k: v for k, v in result.items() if k != "shared.txt"} == {
        k: v for k, v in reference.items() if k != "shared.txt"
    }


async def test_a_lock_timeout_gives_up_cleanly(tmp_path: Path) -> None:
    target = existing_target(tmp_path / "sp")
    before = snapshot(target)
    with (
        another_installer(target),
        pytest.raises(LockTimeoutError, match=r"locked for more than 0\.2s"),
    ):
        await link_wheels(target, batch(tmp_path, failing=False), lock_timeout=0.2)

    assert snapshot(target) == before


async def test_the_lock_is_released_on_every_exit(tmp_path: Path) -> None:
    target = existing_target(tmp_path / "sp")
    obstruct(target)

    with pytest.raises(LinkError):
        await link_wheels(target, batch(tmp_path, failing=True), mode="copy")

    assert not (target / LOCK_NAME).exists()
    with another_installer(target):  # would wait for ever if the lock were still held
        pass


# -- faults on real filesystems -------------------------------------------------------------


async def test_disk_full(tmp_path: Path, small_tmpfs: Path) -> None:
    make_tree(small_tmpfs, {"pkg/__init__.py": "old\n"})
    before = snapshot(small_tmpfs)
    wheel = wheel_tree(
        tmp_path / "w", "pkg", {"pkg/__init__.py": "new\n", "pkg/big.bin": os.urandom(2 << 20)}
    )

    with pytest.warns(UserWarning), pytest.raises(LinkError) as caught:
        await link_wheels(small_tmpfs, [wheel], mode="hardlink")

    assert "No space left on device" in str(caught.value)
    assert caught.value.destination == str(small_tmpfs / "pkg/big.bin")
    assert snapshot(small_tmpfs) == before


async def test_permission_denied(tmp_path: Path) -> None:
    target = existing_target(tmp_path / "sp")
    wheel = wheel_tree(tmp_path / "w", "pkg", {"pkg/__init__.py": "new\n", "aaa/first.py": "1\n"})
    before = snapshot(target)
    locked = target / "pkg"
    if os.geteuid() == 0:  # root ignores modes, not read-only mounts
        subprocess.run(["mount", "--bind", str(locked), str(locked)], check=True)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(locked)], check=True)
    else:
        locked.chmod(0o555)
    try:
        with pytest.raises(LinkError) as caught:
            await link_wheels(target, [wheel], mode="copy")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(locked)], check=True)
        else:
            locked.chmod(0o750)

    assert caught.value.destination.startswith(str(locked))
    assert any(word in str(caught.value) for word in ("Read-only", "Permission denied"))
    assert snapshot(target) == before


async def test_a_target_deeper_than_path_max_still_works(tmp_path: Path) -> None:
    # Files are placed relative to directory descriptors, so absolute paths beyond PATH_MAX
    # (4096) are no limit: only each relative path and each name must fit.
    deep = tmp_path
    while len(str(deep)) < 3900:
        deep = deep / ("d" * 100)
    deep.mkdir(parents=True)
    long_name = "pkg/" + "n" * 200 + ".py"
    wheel = wheel_tree(tmp_path / "w", "pkg", {"pkg/short.py": "", long_name: "LONG = 1\n"})

    await link_wheels(deep, [wheel], mode="copy")

    fd = os.open(deep, os.O_RDONLY)
    try:
        assert os.stat(long_name, dir_fd=fd).st_size == len("LONG = 1\n")
    finally:
        os.close(fd)


async def test_a_name_too_long_for_any_filesystem_is_refused(
    tmp_path: Path, scheme: Scheme
) -> None:
    wheel = build_wheel(tmp_path / "dist", files={"demo/" + "x" * 300 + ".py": ""})

    with pytest.raises(InvalidWheelError, match="File name too long") as caught:
        await install_wheels(scheme, [wheel], cache_dir=tmp_path / "cache")

    assert caught.value.entry == "demo/" + "x" * 300 + ".py"
    assert not Path(scheme.purelib).exists()
    assert not list((tmp_path / "cache").glob("tmp/*"))


async def test_the_source_cache_disappearing_mid_install(tmp_path: Path) -> None:
    target = existing_target(tmp_path / "sp")
    before = snapshot(target)
    wheels = batch(tmp_path, failing=False)

    def delete_the_second_wheel(event: object) -> None:
        # The first wheel is in place and the second planned, but none of its files placed.
        if isinstance(event, WheelStarted) and event.wheel == "second-1.0":
            shutil.rmtree(wheels[1])

    with pytest.raises(LinkError) as caught:
        await link_wheels(target, wheels, mode="copy", jobs=1, on_event=delete_the_second_wheel)

    assert "No such file or directory" in str(caught.value)
    assert caught.value.wheel == "second-1.0"
    assert snapshot(target) == before


def read_only_bind(path: Path) -> None:
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True)


async def test_a_read_only_directory_during_an_upgrade_leaves_no_empty_directory(
    tmp_path: Path, scheme: Scheme
) -> None:
    """The new version's dist-info and its licenses/ exist before placing into the read-only
    package fails; every directory was written down first, so every one goes again."""
    if os.geteuid() != 0:
        pytest.skip("needs root for a read-only bind mount")
    old = build_wheel(tmp_path / "dist", version="1.0", files={"demo/__init__.py": "1\n"})
    new = build_wheel(
        tmp_path / "dist",
        version="2.0",
        files={
            "demo/__init__.py": "2\n",
            "demo/sub/x.py": "",
            "demo-2.0.dist-info/licenses/LICENSE": "MIT\n",
        },
    )
    await install_wheels(scheme, [old], cache_dir=tmp_path / "cache")
    site = Path(scheme.purelib)
    before = snapshot(tmp_path / "env")
    read_only_bind(site / "demo")
    try:
        with pytest.raises(LinkError, match="Read-only file system"):
            await install_wheels(scheme, [new], cache_dir=tmp_path / "cache")
    finally:
        subprocess.run(["umount", str(site / "demo")], check=True)

    assert snapshot(tmp_path / "env") == before
    (distribution,) = importlib.metadata.distributions(path=[str(site)])
    assert distribution.version == "1.0"


async def test_a_refusal_before_anything_was_written_logs_nothing_at_warning(
    tmp_path: Path, scheme: Scheme, caplog: pytest.LogCaptureFixture
) -> None:
    hostile = build_wheel(
        tmp_path / "dist", name="evil", files={"evil/x.py": ""}, extra=[("../x.py", b"")]
    )

    with caplog.at_level(logging.WARNING, logger="asynclink"), pytest.raises(InvalidWheelError):
        await install_wheels(scheme, [hostile], cache_dir=tmp_path / "cache")

    assert caplog.records == []


async def test_a_cancelled_install_logs_nothing_at_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = existing_target(tmp_path / "sp")

    with caplog.at_level(logging.WARNING, logger="asynclink"), anyio.CancelScope() as scope:

        def cancel(event: object) -> None:
            if isinstance(event, WheelLinked):
                scope.cancel()

        await link_wheels(target, batch(tmp_path, failing=False), mode="copy", on_event=cancel)

    assert scope.cancelled_caught
    assert caplog.records == []
