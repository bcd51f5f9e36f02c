"""Nothing reaches outside the environment: not a wheel, not a journal, not the target's symlinks.

Each test puts a folder of precious files beside the environment, does what an attacker (or an
accident) would, and proves afterwards, by a snapshot of that folder, that nothing there was
created, written, replaced or deleted; and of the environment, that it is as it was or as the
install left it. These are the holes an adversarial review found in the landed code: a planted
journal that made the next install delete and overwrite files elsewhere, a planted lock, and
upgrades that deleted and wrote through a symlinked ``.dist-info`` or package directory.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest

from asynclink import (
    InvalidWheelError,
    LinkError,
    Scheme,
    TargetError,
    install_wheels,
    link_wheels,
    recover,
    uninstall,
)
from tests.trees import make_tree, snapshot, wheel_tree
from tests.wheels import build_wheel

pytestmark = pytest.mark.anyio

JOURNAL = ".asynclink-journal"
LOCK = ".asynclink-lock"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """Files that belong to nobody's environment."""
    return make_tree(
        tmp_path / "outside",
        {"file.txt": "precious\n", "dir/a.txt": "a\n", "dir/sub/b.txt": "b\n"},
    )


@pytest.fixture
def scheme(tmp_path: Path) -> Scheme:
    return Scheme.for_directory(tmp_path / "env")


def planted_journal(site_packages: Path, outside: Path, header: str | None = None) -> Path:
    """A journal in asynclink's own format that, undone, would delete ``outside/dir`` and put
    the stash's bytes over ``outside/file.txt``."""
    entry = site_packages / JOURNAL / "1-0"
    (entry / "stash").mkdir(parents=True)
    (entry / "stash" / "0").write_bytes(b"owned\n")
    records = [
        *([header] if header is not None else []),
        f"W\0evil\0{1}\0{outside / 'dir'}\0{0}\0{0}",
        f"R\0{outside / 'file.txt'}\0" + "0",
    ]
    (entry / "journal").write_bytes(b"".join(r.encode() + b"\0\n" for r in records))
    return entry


def journal_header(site_packages: Path, *roots: Path | str) -> list[str]:
    """The fields of a journal's first record, forged for ``site_packages`` (its path, device
    and inode), naming ``roots`` (default: ``site_packages`` alone) as the environment."""
    info = site_packages.stat()
    named = [str(root) for root in roots or (site_packages,)]
    head = ["H", "asynclink-journal", "2", str(site_packages), str(info.st_dev)]
    return [*head, str(info.st_ino), str(len(named)), *named]


# -- 1: a planted journal --------------------------------------------------------------------


async def test_a_wheel_cannot_ship_a_journal(tmp_path: Path, scheme: Scheme) -> None:
    journal = f"{JOURNAL}/1-0/journal"
    wheel = build_wheel(
        tmp_path / "dist",
        name="evil",
        files={"evil/__init__.py": "", journal: "W\0x\0", f"{JOURNAL}/1-0/stash/0": "x"},
    )

    with pytest.raises(InvalidWheelError, match="kept for asynclink's own files") as caught:
        await install_wheels(scheme, [wheel], cache_dir=tmp_path / "cache")

    assert caught.value.entry is not None and caught.value.entry.startswith(JOURNAL)
    assert not Path(scheme.purelib).exists()


@pytest.mark.parametrize(
    "where",
    [
        "evil/.asynclink-journal/x",
        "evil-1.0.data/purelib/.asynclink-lock",
        "evil-1.0.data/data/lib/.asynclink-tmp-1-2-3",
        "evil-1.0.data/platlib/pkg/.asynclink-journal",
    ],
)
async def test_a_wheel_cannot_ship_any_name_asynclink_keeps_in_any_scheme(
    tmp_path: Path, scheme: Scheme, where: str
) -> None:
    wheel = build_wheel(tmp_path / "dist", name="evil", files={"evil/__init__.py": "", where: ""})

    with pytest.raises(InvalidWheelError, match="kept for asynclink's own files"):
        await install_wheels(scheme, [wheel], cache_dir=tmp_path / "cache")


async def test_an_unpacked_wheel_cannot_hold_a_journal_either(
    tmp_path: Path, outside: Path
) -> None:
    source = wheel_tree(tmp_path / "w", "evil", {"evil/__init__.py": "", f"{JOURNAL}/1-0/x": ""})
    site_packages = make_tree(tmp_path / "sp", {"kept.py": ""})
    before = snapshot(site_packages)

    with pytest.raises(InvalidWheelError, match="kept for asynclink's own files"):
        await link_wheels(site_packages, [source], mode="copy")

    assert snapshot(site_packages) == before


async def test_a_journal_found_in_the_target_that_names_outside_paths_is_refused(
    tmp_path: Path, outside: Path, scheme: Scheme
) -> None:
    """Planted by other means than a wheel: the next install refuses it, touches nothing."""
    site_packages = Path(scheme.purelib)
    site_packages.mkdir(parents=True)
    entry = planted_journal(site_packages, outside)
    wheel = build_wheel(tmp_path / "dist", files={"demo/__init__.py": ""})
    before_outside, before_target = snapshot(outside), snapshot(site_packages)

    with pytest.raises(TargetError, match="refusing to recover from") as caught:
        await install_wheels(scheme, [wheel], cache_dir=tmp_path / "cache")

    assert str(entry) in str(caught.value) and "left as it is" in str(caught.value)
    assert snapshot(outside) == before_outside
    assert snapshot(site_packages) == before_target  # the journal stays, for a person to read


async def test_a_journal_with_a_forged_header_still_cannot_name_outside_paths(
    tmp_path: Path, outside: Path
) -> None:
    site_packages = make_tree(tmp_path / "sp", {"kept.py": ""})
    planted_journal(site_packages, outside, "\0".join(journal_header(site_packages)))
    before = snapshot(outside)

    with pytest.raises(TargetError, match=r"names '.*outside.*', outside the environment"):
        await recover(site_packages)

    assert snapshot(outside) == before


async def test_a_symlink_a_journal_puts_back_is_not_followed_by_its_other_records(
    tmp_path: Path, outside: Path
) -> None:
    """Undone backwards: ``D`` looks at ``evil`` while it does not exist (inside, as text),
    ``X`` puts back a stashed symlink ``evil -> outside``, and the ``R`` and ``W`` records
    before it would write, unlink and take a directory through that link."""
    site_packages = make_tree(tmp_path / "sp", {"kept.py": ""})
    evil = site_packages / "evil"
    entry = site_packages / JOURNAL / "1-0"
    (entry / "stash").mkdir(parents=True)
    (entry / "stash" / "0").symlink_to(outside)
    (entry / "stash" / "1").write_bytes(b"owned\n")
    records = [
        journal_header(site_packages),
        ["W", "evil", "1", str(evil / "dir"), "1", str(evil / "file.txt"), "0"],
        ["R", str(evil / "dir/a.txt"), "1"],
        ["X", str(evil), "0"],
        ["D", str(evil / "new"), "755"],
    ]
    (entry / "journal").write_bytes(b"".join("\0".join(r).encode() + b"\0\n" for r in records))
    before = snapshot(outside)

    reports = await recover(site_packages)

    assert snapshot(outside) == before
    assert any("leaves the environment" in problem for r in reports for problem in r.problems)


async def test_a_journal_claiming_the_whole_machine_as_its_environment_is_refused(
    tmp_path: Path, outside: Path
) -> None:
    site_packages = make_tree(tmp_path / "sp", {"kept.py": ""})
    header = journal_header(site_packages, "/")  # the whole machine
    planted_journal(site_packages, outside, "\0".join(header))
    before = snapshot(outside)

    with pytest.raises(TargetError, match="names directories outside the environment"):
        await recover(site_packages)

    assert snapshot(outside) == before


async def test_a_journal_written_for_another_directory_is_refused(
    tmp_path: Path, outside: Path
) -> None:
    """A journal copied from another target, with that target's header, is not this one's."""
    other = make_tree(tmp_path / "other", {"x.py": ""})
    site_packages = make_tree(tmp_path / "sp", {"kept.py": ""})
    info = other.stat()
    header = "\0".join(
        [
            "H",
            "asynclink-journal",
            "2",
            str(other),
            str(info.st_dev),
            str(info.st_ino),
            "1",
            str(site_packages),
        ]
    )
    planted_journal(site_packages, outside, header)
    before = snapshot(site_packages)

    with pytest.raises(TargetError, match="it was written for"):
        await recover(site_packages)

    assert snapshot(site_packages) == before


async def test_a_journal_directory_that_is_a_symlink_is_refused(
    tmp_path: Path, outside: Path
) -> None:
    site_packages = make_tree(tmp_path / "sp", {"kept.py": ""})
    (outside / "journals" / "1-0").mkdir(parents=True)
    (site_packages / JOURNAL).symlink_to(outside / "journals")
    before = snapshot(outside)

    with pytest.raises(TargetError, match="it is not a directory"):
        await recover(site_packages)

    assert snapshot(outside) == before


async def test_a_journal_too_big_for_any_install_is_refused_unread(tmp_path: Path) -> None:
    """A sparse file of 64 GiB costs no disk; read whole, it would exhaust the memory."""
    site_packages = make_tree(tmp_path / "sp", {"kept.py": ""})
    journal = site_packages / JOURNAL / "1-0" / "journal"
    journal.parent.mkdir(parents=True)
    with open(journal, "wb") as handle:
        handle.truncate(64 << 30)

    with pytest.raises(TargetError, match="more than any install writes"):
        await recover(site_packages)

    assert journal.stat().st_size == 64 << 30


async def test_recovery_does_not_follow_a_symlink_planted_after_the_crash(
    tmp_path: Path, outside: Path
) -> None:
    """A journal of a real crash names ``pkg/new.py``; before recovery runs, ``pkg`` became a
    symlink to a folder outside. Undo must not delete ``outside/dir/new.py`` through it."""
    site_packages = make_tree(tmp_path / "sp", {"kept.py": ""})
    crashed = wheel_tree(tmp_path / "w", "pkg", {"pkg/new.py": "new\n"})
    (site_packages / "pkg").mkdir()  # the crashed install's files go into an existing dir
    await crash_an_install(site_packages, crashed)
    (site_packages / "pkg" / "new.py").unlink()
    (site_packages / "pkg").rmdir()
    (site_packages / "pkg").symlink_to(outside / "dir")
    (outside / "dir" / "new.py").write_text("not yours\n")
    before = snapshot(outside)

    (report,) = await recover(site_packages)

    assert snapshot(outside) == before
    assert any("leaves the environment" in problem for problem in report.problems)


async def test_a_journal_whose_trash_is_a_symlink_leading_out_is_refused(
    tmp_path: Path, outside: Path
) -> None:
    """Undo renames the directories a crashed install made into the journal's trash: a trash
    planted as a symlink to a folder outside would take them out of the environment."""
    site_packages = make_tree(tmp_path / "sp", {"kept.py": ""})
    await crash_an_install(site_packages, wheel_tree(tmp_path / "w", "pkg", {"pkg/new.py": ""}))
    (journal,) = (site_packages / JOURNAL).iterdir()
    (outside / "trash").mkdir()
    (journal / "trash").symlink_to(outside / "trash")
    before = snapshot(outside)

    with pytest.raises(TargetError, match="is not a directory"):
        await recover(site_packages)

    assert snapshot(outside) == before and (site_packages / "pkg/new.py").exists()


CRASH = """
import os, signal, sys
import anyio, asynclink

def crash(event):
    if isinstance(event, asynclink.WheelLinked):
        os.kill(os.getpid(), signal.SIGKILL)

anyio.run(lambda: asynclink.link_wheels(sys.argv[1], [sys.argv[2]], mode="copy", jobs=1,
                                        on_event=crash))
"""


async def crash_an_install(site_packages: Path, wheel: Path) -> None:
    import anyio

    done = await anyio.run_process(
        [sys.executable, "-c", CRASH, str(site_packages), str(wheel)], check=False
    )
    assert done.returncode == -9, done.stderr
    assert (site_packages / JOURNAL).is_dir()


# -- 2: a planted lock -----------------------------------------------------------------------


async def test_a_wheel_cannot_ship_the_lock(tmp_path: Path, scheme: Scheme) -> None:
    wheel = build_wheel(tmp_path / "dist", name="evil", files={"evil/x.py": "", LOCK: ""})

    with pytest.raises(InvalidWheelError, match="kept for asynclink's own files"):
        await install_wheels(scheme, [wheel], cache_dir=tmp_path / "cache")


async def test_a_lock_that_is_a_symlink_is_refused_and_nothing_is_created_where_it_points(
    tmp_path: Path, outside: Path
) -> None:
    site_packages = make_tree(tmp_path / "sp", {"kept.py": ""})
    (site_packages / LOCK).symlink_to(outside / "new-file")
    wheel = wheel_tree(tmp_path / "w", "pkg", {"pkg/a.py": ""})
    before = snapshot(outside)

    with pytest.raises(TargetError, match="is a symlink, not asynclink's lock"):
        await link_wheels(site_packages, [wheel], mode="copy")

    assert snapshot(outside) == before
    assert (site_packages / LOCK).is_symlink()


# -- 3: upgrades through symlinks ----------------------------------------------------------------


def old_and_new(tmp_path: Path) -> tuple[Path, Path]:
    old = build_wheel(
        tmp_path / "dist",
        version="1.0",
        files={"demo/__init__.py": "VERSION = 1\n", "demo/old.py": "", "demo/sub/deep.py": ""},
    )
    new = build_wheel(tmp_path / "dist", version="2.0", files={"demo/__init__.py": "VERSION = 2\n"})
    return old, new


def move_out_and_link(site_packages: Path, name: str, outside: Path) -> Path:
    """Move ``site_packages/name`` into ``outside`` (with two files RECORD does not list) and
    leave a symlink to it in its place."""
    moved = outside / name
    (site_packages / name).rename(moved)
    make_tree(moved, {"unlisted-1.txt": "mine\n", "unlisted-2/x.txt": "mine too\n"})
    (site_packages / name).symlink_to(moved)
    return moved


@pytest.mark.parametrize("linked", ["demo-1.0.dist-info", "demo"])
async def test_an_upgrade_detaches_a_symlinked_directory_and_leaves_its_folder_alone(
    tmp_path: Path, outside: Path, scheme: Scheme, linked: str
) -> None:
    old, new = old_and_new(tmp_path)
    await install_wheels(scheme, [old], cache_dir=tmp_path / "cache")
    site_packages = Path(scheme.purelib)
    move_out_and_link(site_packages, linked, outside)
    before = snapshot(outside)

    await install_wheels(scheme, [new], cache_dir=tmp_path / "cache")

    assert snapshot(outside) == before
    assert not (site_packages / linked).is_symlink()
    assert (site_packages / "demo/__init__.py").read_text() == "VERSION = 2\n"
    assert not (site_packages / "demo/old.py").exists()
    assert sorted(p.name for p in site_packages.glob("demo-*.dist-info")) == ["demo-2.0.dist-info"]
    assert (site_packages / "demo-2.0.dist-info").is_dir()


async def test_a_failed_upgrade_puts_the_detached_symlink_back(
    tmp_path: Path, outside: Path, scheme: Scheme
) -> None:
    old, new = old_and_new(tmp_path)
    await install_wheels(scheme, [old], cache_dir=tmp_path / "cache")
    site_packages = Path(scheme.purelib)
    move_out_and_link(site_packages, "demo", outside)
    broken = build_wheel(tmp_path / "dist", name="broken", files={"broken/x.py": ""})
    make_tree(site_packages, {"broken/x.py/in-the-way": ""})
    before_env, before_outside = snapshot(tmp_path / "env"), snapshot(outside)

    with pytest.raises(LinkError):
        await install_wheels(scheme, [new, broken], cache_dir=tmp_path / "cache", jobs=1)

    assert snapshot(tmp_path / "env") == before_env
    assert snapshot(outside) == before_outside


async def test_a_symlink_out_of_the_environment_in_the_way_of_a_new_directory_is_an_error(
    tmp_path: Path, outside: Path, scheme: Scheme
) -> None:
    """Not an upgrade: nobody owns ``demo``, so it is not detached, and not written through."""
    site_packages = make_tree(Path(scheme.purelib), {"kept.py": ""})
    (site_packages / "demo").symlink_to(outside / "dir")
    wheel = build_wheel(tmp_path / "dist", files={"demo/__init__.py": "", "aaa.py": ""})
    before_env, before_outside = snapshot(tmp_path / "env"), snapshot(outside)

    with pytest.raises(LinkError, match="leading out of the environment") as caught:
        await install_wheels(scheme, [wheel], cache_dir=tmp_path / "cache")

    assert caught.value.destination == str(site_packages / "demo")
    assert snapshot(outside) == before_outside
    assert snapshot(tmp_path / "env") == before_env


async def test_a_symlink_to_a_directory_inside_the_environment_is_merged_into(
    tmp_path: Path, scheme: Scheme
) -> None:
    site_packages = make_tree(Path(scheme.purelib), {"real/kept.py": ""})
    (site_packages / "demo").symlink_to("real")
    wheel = build_wheel(tmp_path / "dist", files={"demo/__init__.py": "X = 1\n"})

    await install_wheels(scheme, [wheel], cache_dir=tmp_path / "cache")

    assert (site_packages / "real/__init__.py").read_text() == "X = 1\n"


async def test_an_upgrade_skips_old_files_reached_through_a_deeper_symlink(
    tmp_path: Path, outside: Path, scheme: Scheme
) -> None:
    old, new = old_and_new(tmp_path)
    await install_wheels(scheme, [old], cache_dir=tmp_path / "cache")
    site_packages = Path(scheme.purelib)
    (site_packages / "demo/sub/deep.py").rename(outside / "deep.py")
    (site_packages / "demo/sub").rmdir()
    (site_packages / "demo/sub").symlink_to(outside)
    before = snapshot(outside)

    await install_wheels(scheme, [new], cache_dir=tmp_path / "cache")

    assert snapshot(outside) == before
    assert not (site_packages / "demo/old.py").exists()


async def test_a_record_row_through_a_symlinked_pycache_removes_nothing_outside(
    tmp_path: Path, outside: Path, scheme: Scheme
) -> None:
    old, new = old_and_new(tmp_path)
    await install_wheels(scheme, [old], cache_dir=tmp_path / "cache")
    site_packages = Path(scheme.purelib)
    make_tree(outside, {"cache/old.cpython-311.pyc": "pyc"})
    (site_packages / "demo/__pycache__").symlink_to(outside / "cache")
    before = snapshot(outside)

    await install_wheels(scheme, [new], cache_dir=tmp_path / "cache")

    assert snapshot(outside) == before


async def test_recover_looks_for_the_venv_around_site_packages(
    tmp_path: Path, outside: Path
) -> None:
    """``recover(site_packages)`` of a venv accepts journals for the venv's scripts, and still
    refuses what lies outside the venv."""
    venv = make_tree(tmp_path / "venv", {"pyvenv.cfg": "home = /usr/bin\n"})
    site_packages = make_tree(venv / "lib/python3.11/site-packages", {"kept.py": ""})
    header = journal_header(site_packages, site_packages, venv / "bin")
    planted_journal(site_packages, outside, "\0".join(header))
    before = snapshot(outside)

    with pytest.raises(TargetError, match="outside the environment"):
        await recover(site_packages)

    assert snapshot(outside) == before
    assert os.path.isdir(site_packages / JOURNAL)


# -- an environment's own directories, reached through a symlink ---------------------------------


async def test_a_scripts_directory_that_is_a_symlink_leading_out_is_refused(
    tmp_path: Path, outside: Path, scheme: Scheme
) -> None:
    Path(scheme.purelib).mkdir()
    Path(scheme.scripts).symlink_to(outside / "dir")
    wheel = build_wheel(tmp_path, entry_points="[console_scripts]\nescapee = demo:main\n")
    before = snapshot(outside)

    with pytest.raises(TargetError, match="bin leads out of the environment"):
        await install_wheels(scheme, [wheel], cache_dir=tmp_path / "cache")

    assert snapshot(outside) == before
    assert sorted(os.listdir(scheme.purelib)) == ["bin"]


async def test_an_uninstall_through_a_symlinked_headers_directory_removes_nothing_outside(
    tmp_path: Path, outside: Path, scheme: Scheme
) -> None:
    """A planted distribution lists a file of the headers directory, which points out."""
    site_packages = make_tree(
        Path(scheme.purelib),
        {
            "evil-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n",
            "evil-1.0.dist-info/RECORD": "include/a.txt,,\nevil-1.0.dist-info/RECORD,,\n",
        },
    )
    Path(scheme.headers).symlink_to(outside / "dir")
    before = snapshot(outside)

    with pytest.raises(TargetError, match="include leads out of the environment"):
        await uninstall(scheme, ["evil"], cache_dir=tmp_path / "cache")

    assert snapshot(outside) == before
    assert (site_packages / "evil-1.0.dist-info/RECORD").exists()


async def test_a_scripts_directory_linked_to_another_inside_the_environment_is_used(
    tmp_path: Path, scheme: Scheme
) -> None:
    real_scripts = Path(scheme.purelib) / "real-bin"
    real_scripts.mkdir(parents=True)
    Path(scheme.scripts).symlink_to(real_scripts)
    wheel = build_wheel(tmp_path, entry_points="[console_scripts]\ndemo-run = demo:main\n")

    await install_wheels(scheme, [wheel], cache_dir=tmp_path / "cache")

    assert (real_scripts / "demo-run").is_file()


async def test_a_missing_site_packages_is_not_made_through_a_symlink_leading_out(
    tmp_path: Path, outside: Path, scheme: Scheme
) -> None:
    """A venv-like layout whose ``lib`` points out: its site-packages would be made there."""
    env = Path(scheme.data)
    env.mkdir()
    (env / "lib").symlink_to(outside / "dir")
    site_packages = str(env / "lib/python3/site-packages")
    nested = dataclasses.replace(scheme, purelib=site_packages, platlib=site_packages)
    before = snapshot(outside)

    with pytest.raises(TargetError, match="site-packages leads out of the environment"):
        await install_wheels(nested, [build_wheel(tmp_path)], cache_dir=tmp_path / "cache")

    assert snapshot(outside) == before


async def test_compiling_into_a_target_whose_path_holds_a_newline_writes_only_there(
    tmp_path: Path,
) -> None:
    """The paths go to the compiling interpreter NUL-separated: one per line split this one in
    two, the second naming a directory elsewhere."""
    elsewhere = make_tree(tmp_path / "elsewhere", {"demo/__init__.py": "OTHER = 1\n"})
    target = Path(f"{tmp_path / 'a'}\n{elsewhere}")
    wheel = build_wheel(tmp_path, files={"demo/__init__.py": "X = 1\n"})
    before = snapshot(elsewhere)

    result = await install_wheels(
        Scheme.for_directory(target), [wheel], cache_dir=tmp_path / "cache", compile=True
    )

    assert result.compiled == 1
    assert list((target / "demo" / "__pycache__").glob("__init__.*.pyc"))
    assert snapshot(elsewhere) == before


@pytest.mark.parametrize("where", ["", "demo/"])
async def test_compiling_writes_no_bytecode_through_a_pycache_that_leads_out(
    tmp_path: Path, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A ``__pycache__`` already in the target may be a symlink to a folder elsewhere: the
    modules beside it are left uncompiled, and the others are compiled."""
    outside = make_tree(tmp_path / "outside", {"keep.txt": "mine\n"})
    target = tmp_path / "target"
    (target / where).mkdir(parents=True)
    (target / where / "__pycache__").symlink_to(outside)
    files = {"demo/__init__.py": "X = 1\n", "top.py": "Y = 2\n", "other/__init__.py": ""}
    wheel = build_wheel(tmp_path, files=files)
    before = snapshot(outside)

    result = await install_wheels(
        Scheme.for_directory(target), [wheel], cache_dir=tmp_path / "cache", compile=True
    )

    assert snapshot(outside) == before
    assert result.compiled == 2
    assert list((target / "other" / "__pycache__").glob("__init__.*.pyc"))
    assert "__pycache__ leads out of the environment" in caplog.text
