"""An environment's whole life: install, skip what is there, upgrade, downgrade, reinstall,
sync to a set of wheels, uninstall, list; each one transaction, each on asyncio and trio."""

from __future__ import annotations

import dataclasses
import os
import tracemalloc
from pathlib import Path

import anyio
import pytest

from asynclink import (
    Action,
    DistributionRemoved,
    Event,
    LinkError,
    LockAcquired,
    NotInstalledError,
    Scheme,
    TargetError,
    WaitingForLock,
    WheelSkipped,
    install_wheels,
    installed,
    sync_wheels,
    uninstall,
)
from tests.environments import another_installer
from tests.trees import make_tree, snapshot
from tests.wheels import build_wheel

pytestmark = pytest.mark.anyio


@pytest.fixture
def scheme(tmp_path: Path) -> Scheme:
    return Scheme.for_directory(tmp_path / "env")


def wheel(tmp_path: Path, name: str = "demo", version: str = "1.0", **spec: object) -> Path:
    files = spec.pop("files", None) or {f"{name}/__init__.py": f"VERSION = {version!r}\n"}
    directory = tmp_path / f"dist-{name}-{version}"
    return build_wheel(directory, name=name, version=version, files=files, **spec)


def identities(root: Path) -> dict[str, tuple[int, int]]:
    """Every entry's inode and mtime: what "touching nothing" leaves as it was."""
    found: dict[str, tuple[int, int]] = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames, ""]:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            found[os.path.relpath(path, root)] = (info.st_ino, info.st_mtime_ns)
    return found


# -- skip, reinstall, upgrade, downgrade ---------------------------------------------------------


async def test_a_second_identical_install_touches_nothing(tmp_path: Path, scheme: Scheme) -> None:
    wheels = [wheel(tmp_path, "alpha"), wheel(tmp_path, "beta")]
    await install_wheels(scheme, wheels, cache_dir=tmp_path / "cache")
    before = identities(tmp_path / "env")
    events: list[Event] = []

    result = await install_wheels(
        scheme, wheels, cache_dir=tmp_path / "cache", on_event=events.append
    )

    assert [w.action for w in result.wheels] == [Action.SKIPPED] * 2
    assert result.files == 0 and result.changed == ()
    assert identities(tmp_path / "env") == before  # inodes and mtimes, directories included
    assert sorted(e.wheel for e in events if isinstance(e, WheelSkipped)) == [
        "alpha-1.0",
        "beta-1.0",
    ]


async def test_reinstall_installs_anyway(tmp_path: Path, scheme: Scheme) -> None:
    path = wheel(tmp_path)
    await install_wheels(scheme, [path], cache_dir=tmp_path / "cache")

    result = await install_wheels(scheme, [path], cache_dir=tmp_path / "cache", reinstall=True)

    (done,) = result.wheels
    assert (done.action, done.replaced, done.files) == (Action.REINSTALLED, "1.0", done.files)
    assert done.files > 0


async def test_another_wheel_of_the_same_version_is_reinstalled(
    tmp_path: Path, scheme: Scheme
) -> None:
    """A rebuilt wheel (other bytes, same name and version) is not the wheel installed."""
    first = wheel(tmp_path, files={"demo/__init__.py": "BUILD = 1\n"})
    await install_wheels(scheme, [first], cache_dir=tmp_path / "cache")
    rebuilt = build_wheel(tmp_path / "rebuilt", files={"demo/__init__.py": "BUILD = 2\n"})

    result = await install_wheels(scheme, [rebuilt], cache_dir=tmp_path / "cache")

    assert result.wheels[0].action is Action.REINSTALLED
    assert (Path(scheme.purelib) / "demo/__init__.py").read_text() == "BUILD = 2\n"


async def test_another_platform_tag_of_the_same_version_is_reinstalled(
    tmp_path: Path, scheme: Scheme
) -> None:
    first = wheel(tmp_path, tag="py3-none-any")
    await install_wheels(scheme, [first], cache_dir=tmp_path / "cache")
    tagged = build_wheel(
        tmp_path / "tagged",
        files={"demo/__init__.py": "VERSION = '1.0'\n"},
        tag="py311-none-any",
    )

    result = await install_wheels(scheme, [tagged], cache_dir=tmp_path / "cache", check_tags=False)

    assert result.wheels[0].action is Action.REINSTALLED


async def test_upgrades_and_downgrades_say_what_they_replaced(
    tmp_path: Path, scheme: Scheme
) -> None:
    await install_wheels(scheme, [wheel(tmp_path, version="1.0")], cache_dir=tmp_path / "c")

    up = await install_wheels(scheme, [wheel(tmp_path, version="2.0")], cache_dir=tmp_path / "c")
    down = await install_wheels(scheme, [wheel(tmp_path, version="1.5")], cache_dir=tmp_path / "c")

    assert (up.wheels[0].action, up.wheels[0].replaced) == (Action.UPGRADED, "1.0")
    assert (down.wheels[0].action, down.wheels[0].replaced) == (Action.DOWNGRADED, "2.0")
    assert [d.version for d in await installed(scheme)] == ["1.5"]


AS_FILE = {"demo/__init__.py": "", "demo/data": "a file\n"}
AS_DIRECTORY = {"demo/__init__.py": "", "demo/data/inner.txt": "now a directory\n"}


@pytest.mark.parametrize(
    ("before", "after"), [(AS_FILE, AS_DIRECTORY), (AS_DIRECTORY, AS_FILE)], ids=["up", "down"]
)
async def test_an_upgrade_turns_a_file_into_a_directory_of_its_name_and_back(
    tmp_path: Path, scheme: Scheme, before: dict[str, str], after: dict[str, str]
) -> None:
    """pip removes the old version first; asynclink places the new one first, so it clears
    just what stands in the way of it beforehand."""
    old = wheel(tmp_path, files=before, version="1.0")
    new = wheel(tmp_path, files=after, version="2.0")
    await install_wheels(scheme, [old], cache_dir=tmp_path / "cache", compile=True)
    fresh = Scheme.for_directory(tmp_path / "fresh")
    await install_wheels(fresh, [new], cache_dir=tmp_path / "cache")

    result = await install_wheels(scheme, [new], cache_dir=tmp_path / "cache")

    assert result.wheels[0].action is Action.UPGRADED
    found, expected = snapshot(Path(scheme.purelib)), snapshot(Path(fresh.purelib))
    assert found.keys() - {".asynclink-lock"} == expected.keys() - {".asynclink-lock"}


async def test_a_failed_upgrade_puts_back_what_it_cleared_out_of_the_way(
    tmp_path: Path, scheme: Scheme
) -> None:
    old = wheel(tmp_path, files=AS_FILE, version="1.0")
    new = wheel(tmp_path, files={**AS_DIRECTORY, "demo/blocked": ""}, version="2.0")
    await install_wheels(scheme, [old], cache_dir=tmp_path / "cache")
    (Path(scheme.purelib) / "demo/blocked/someone-elses").mkdir(parents=True)
    before = snapshot(tmp_path / "env")

    with pytest.raises(LinkError, match="a directory is in the way"):
        await install_wheels(scheme, [new], cache_dir=tmp_path / "cache")

    assert snapshot(tmp_path / "env") == before


async def test_an_old_directory_that_holds_another_distributions_file_is_not_cleared(
    tmp_path: Path, scheme: Scheme
) -> None:
    """Only what the old version owns goes: placing the file fails as it would have."""
    old = wheel(tmp_path, files=AS_DIRECTORY, version="1.0")
    await install_wheels(scheme, [old], cache_dir=tmp_path / "cache")
    (Path(scheme.purelib) / "demo/data/someone-elses.txt").write_text("kept\n")
    before = snapshot(tmp_path / "env")

    with pytest.raises(LinkError, match="a directory is in the way"):
        await install_wheels(
            scheme, [wheel(tmp_path, files=AS_FILE, version="2.0")], cache_dir=tmp_path / "cache"
        )

    assert snapshot(tmp_path / "env") == before


async def test_an_upgrade_does_not_clear_an_old_file_another_distribution_lists_too(
    tmp_path: Path, scheme: Scheme
) -> None:
    """Nothing of a distribution nobody asked to change is lost: the upgrade fails instead."""
    old = wheel(tmp_path, files=AS_FILE, version="1.0")
    await install_wheels(scheme, [old, wheel(tmp_path, "other")], cache_dir=tmp_path / "cache")
    record = Path(scheme.purelib) / "other-1.0.dist-info/RECORD"
    record.write_text(record.read_text() + "demo/data,,\n")
    before = snapshot(tmp_path / "env")

    with pytest.raises(LinkError, match="a file is in the way"):
        await install_wheels(
            scheme,
            [wheel(tmp_path, files=AS_DIRECTORY, version="2.0")],
            cache_dir=tmp_path / "cache",
        )

    assert snapshot(tmp_path / "env") == before


async def test_a_skipped_wheel_is_still_reported_with_its_project(
    tmp_path: Path, scheme: Scheme
) -> None:
    path = wheel(tmp_path, "Mixed_Case")
    await install_wheels(scheme, [path], cache_dir=tmp_path / "cache")

    result = await install_wheels(scheme, [path], cache_dir=tmp_path / "cache")

    (done,) = result.wheels
    assert (done.project, done.version, done.action) == ("Mixed_Case", "1.0", Action.SKIPPED)
    assert done.dist_info is not None and done.dist_info.endswith("Mixed_Case-1.0.dist-info")


# -- installed ------------------------------------------------------------------------------------


async def test_installed_lists_name_version_installer_and_wheel(
    tmp_path: Path, scheme: Scheme
) -> None:
    path = wheel(tmp_path, "alpha", "2.1")
    await install_wheels(scheme, [path], cache_dir=tmp_path / "cache")
    make_tree(  # a distribution another tool installed
        Path(scheme.purelib),
        {
            "other-0.5.dist-info/METADATA": "Metadata-Version: 2.1\nName: Other\nVersion: 0.5\n",
            "other-0.5.dist-info/INSTALLER": "pip\n",
            "other-0.5.dist-info/RECORD": "",
        },
    )

    found = await installed(scheme)

    assert [(d.name, d.version, d.installer) for d in found] == [
        ("alpha", "2.1", "asynclink"),
        ("Other", "0.5", "pip"),
    ]
    assert found[0].wheel == path.name and found[0].sha256 is not None
    assert found[1].wheel is None


# -- uninstall ------------------------------------------------------------------------------------


async def test_uninstall_removes_every_file_scripts_and_pyc_and_empty_directories(
    tmp_path: Path, scheme: Scheme
) -> None:
    path = wheel(
        tmp_path,
        files={"demo/__init__.py": "def main(): pass\n", "demo/sub/mod.py": ""},
        entry_points="[console_scripts]\ndemo-tool = demo:main\n",
    )
    before = snapshot(tmp_path / "env") if (tmp_path / "env").exists() else {}
    await install_wheels(scheme, [path], cache_dir=tmp_path / "cache", compile=True)
    assert list((Path(scheme.purelib) / "demo/__pycache__").iterdir())
    events: list[Event] = []

    result = await uninstall(scheme, ["DEMO"], on_event=events.append)

    (removed,) = result.removed
    assert (removed.name, removed.version) == ("demo", "1.0")
    assert removed.files >= 6  # two modules, their .pyc, a launcher, the dist-info's files
    assert not (Path(scheme.purelib) / "demo").exists()
    assert not (Path(scheme.scripts) / "demo-tool").exists()
    assert not list(Path(scheme.purelib).glob("demo-*.dist-info"))
    leftover = {k: v for k, v in snapshot(tmp_path / "env").items() if v[0] != "dir"}
    assert leftover == {k: v for k, v in before.items() if v[0] != "dir"}
    assert [e.distribution for e in events if isinstance(e, DistributionRemoved)] == [removed]


async def test_uninstall_keeps_what_the_distribution_does_not_own_in_its_directories(
    tmp_path: Path, scheme: Scheme
) -> None:
    """A package directory goes whole only when everything in it is the distribution's: a
    file of someone else's, the ``.pyc`` of a module it does not own, or an empty directory
    keeps it (and itself), as removing file by file would."""
    files = {"demo/__init__.py": "", "demo/sub/mod.py": "", "demo/data/table.txt": "1\n"}
    await install_wheels(scheme, [wheel(tmp_path, files=files)], cache_dir=tmp_path / "cache")
    site = Path(scheme.purelib)
    make_tree(site, {"demo/sub/notes.txt": "mine\n", "demo/__pycache__/other.cpython-311.pyc": ""})
    (site / "demo/data/empty").mkdir()

    await uninstall(scheme, ["demo"])

    left = {str(path.relative_to(site / "demo")) for path in (site / "demo").rglob("*")}
    assert left == {
        "sub",
        "sub/notes.txt",
        "__pycache__",
        "__pycache__/other.cpython-311.pyc",
        "data",
        "data/empty",
    }


async def test_a_rolled_back_uninstall_puts_a_whole_directory_back_as_itself(
    tmp_path: Path, scheme: Scheme
) -> None:
    """A directory in which everything goes is renamed aside in one step, and undoing it
    renames the very same directory back (not a new one, refilled file by file)."""
    files = {"demo/__init__.py": "", "demo/sub/mod.py": ""}
    await install_wheels(scheme, [wheel(tmp_path, files=files)], cache_dir=tmp_path / "cache")
    before = snapshot(tmp_path / "env")
    held = os.open(Path(scheme.purelib) / "demo" / "sub", os.O_RDONLY | os.O_DIRECTORY)

    def fail(event: Event) -> None:
        if isinstance(event, DistributionRemoved):
            raise RuntimeError("the caller gave up")

    try:
        with pytest.raises(RuntimeError, match="the caller gave up"):
            await uninstall(scheme, ["demo"], on_event=fail)
        same = os.stat(Path(scheme.purelib) / "demo" / "sub").st_ino == os.fstat(held).st_ino
    finally:
        os.close(held)

    assert snapshot(tmp_path / "env") == before
    assert same


async def test_uninstall_of_several_removes_them_all_in_one_transaction(
    tmp_path: Path, scheme: Scheme
) -> None:
    names = [f"p{n}" for n in range(5)]
    await install_wheels(
        scheme, [wheel(tmp_path, name) for name in names], cache_dir=tmp_path / "cache"
    )

    result = await uninstall(scheme, names)

    assert sorted(r.name for r in result.removed) == names
    assert await installed(scheme) == []


async def test_an_uninstall_dry_run_counts_what_the_uninstall_removes(
    tmp_path: Path, scheme: Scheme
) -> None:
    """Two distributions share a file, and one RECORD lists a ``.pyc`` that the module's own
    ``.pyc`` lookup also finds: each file counts once, in the dry run as in the removal."""
    shared = {"shared.py": "S = 1\n"}
    wheels = [
        wheel(tmp_path, name, files={f"{name}/__init__.py": "", **shared}) for name in ("a", "b")
    ]
    await install_wheels(scheme, wheels, cache_dir=tmp_path / "cache", check_conflicts=False)
    site = Path(scheme.purelib)
    (site / "a/__pycache__").mkdir()
    (site / "a/__pycache__/__init__.cpython-311.pyc").write_bytes(b"")
    record = site / "a-1.0.dist-info/RECORD"
    record.write_text(record.read_text() + "a/__pycache__/__init__.cpython-311.pyc,,\n")

    would = await uninstall(scheme, ["a", "b"], dry_run=True)
    removed = await uninstall(scheme, ["a", "b"])

    assert [(r.name, r.files) for r in would.removed] == [
        (r.name, r.files) for r in removed.removed
    ]


async def test_a_missing_name_is_an_error_unless_it_may_be_absent(
    tmp_path: Path, scheme: Scheme
) -> None:
    await install_wheels(scheme, [wheel(tmp_path)], cache_dir=tmp_path / "cache")
    before = snapshot(tmp_path / "env")

    with pytest.raises(NotInstalledError, match=r"not installed in .*: ghost"):
        await uninstall(scheme, ["demo", "ghost"])
    assert snapshot(tmp_path / "env") == before  # nothing removed, demo included

    result = await uninstall(scheme, ["demo", "ghost"], missing_ok=True)
    assert result.missing == ("ghost",) and [r.name for r in result.removed] == ["demo"]


async def test_a_distribution_without_record_is_refused(tmp_path: Path, scheme: Scheme) -> None:
    make_tree(
        Path(scheme.purelib),
        {
            "legacy/__init__.py": "",
            "legacy-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: legacy\nVersion: 1.0\n",
        },
    )
    before = snapshot(tmp_path / "env")

    with pytest.raises(TargetError, match=r"legacy 1\.0: .* has no RECORD"):
        await uninstall(scheme, ["legacy"])

    assert snapshot(tmp_path / "env") == before


async def test_uninstall_never_removes_outside_the_environment(
    tmp_path: Path, scheme: Scheme
) -> None:
    await install_wheels(scheme, [wheel(tmp_path)], cache_dir=tmp_path / "cache")
    outside = make_tree(tmp_path / "outside", {"precious.txt": "keep\n", "pkg/x.py": "keep\n"})
    site = Path(scheme.purelib)
    record = site / "demo-1.0.dist-info/RECORD"
    record.write_text(record.read_text() + "../outside/precious.txt,,\n")
    (site / "linked").symlink_to(outside / "pkg")
    record.write_text(record.read_text() + "linked/x.py,,\n")
    before = snapshot(outside)

    await uninstall(scheme, ["demo"])

    assert snapshot(outside) == before


async def test_a_record_row_with_a_nul_byte_is_skipped_and_the_rest_removed(
    tmp_path: Path, scheme: Scheme, caplog: pytest.LogCaptureFixture
) -> None:
    await install_wheels(scheme, [wheel(tmp_path)], cache_dir=tmp_path / "cache")
    record = Path(scheme.purelib) / "demo-1.0.dist-info/RECORD"
    record.write_bytes(record.read_bytes() + b"demo/\0evil.py,,\n")

    (removed,) = (await uninstall(scheme, ["demo"])).removed

    assert removed.name == "demo" and await installed(scheme) == []
    assert not (Path(scheme.purelib) / "demo").exists()
    assert "1 paths with a NUL byte" in caplog.text


async def test_a_record_row_a_thousand_directories_deep_is_removed_too(
    tmp_path: Path, scheme: Scheme
) -> None:
    """Deeper than Python's recursion limit, still shorter than ``PATH_MAX``."""
    await install_wheels(scheme, [wheel(tmp_path)], cache_dir=tmp_path / "cache")
    fd = os.open(scheme.purelib, os.O_RDONLY)
    for _ in range(1100):  # os.makedirs recurses once a level, as pathlib's mkdir does
        os.mkdir("d", dir_fd=fd)
        fd, parent = os.open("d", os.O_RDONLY, dir_fd=fd), fd
        os.close(parent)
    os.close(os.open("x.py", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
    os.close(fd)
    record = Path(scheme.purelib) / "demo-1.0.dist-info/RECORD"
    row = "/".join(["d"] * 1100) + "/x.py,,\n"
    record.write_text(record.read_text() + row)

    (removed,) = (await uninstall(scheme, ["demo"])).removed

    assert removed.name == "demo" and await installed(scheme) == []
    assert not (Path(scheme.purelib) / "d").exists()


async def test_an_uninstall_leaves_the_environments_own_files_whatever_record_says(
    tmp_path: Path, scheme: Scheme
) -> None:
    await install_wheels(scheme, [wheel(tmp_path)], cache_dir=tmp_path / "cache")
    site = Path(scheme.purelib)
    (site / "bin").mkdir()
    for name in ("python3", "activate"):
        (site / "bin" / name).write_text("the environment's\n")
    record = site / "demo-1.0.dist-info/RECORD"
    record.write_text(record.read_text() + "bin/python3,,\nbin/activate,,\n")

    await uninstall(scheme, ["demo"])

    assert sorted(os.listdir(site / "bin")) == ["activate", "python3"]


async def test_an_uninstall_leaves_another_distributions_metadata_alone(
    tmp_path: Path, scheme: Scheme
) -> None:
    both = [wheel(tmp_path, "alpha"), wheel(tmp_path, "beta")]
    await install_wheels(scheme, both, cache_dir=tmp_path / "cache")
    site = Path(scheme.purelib)
    record = site / "beta-1.0.dist-info/RECORD"
    record.write_text(record.read_text() + "alpha-1.0.dist-info/METADATA,,\n")

    await uninstall(scheme, ["beta"])

    assert [d.name for d in await installed(scheme)] == ["alpha"]
    assert (site / "alpha-1.0.dist-info/METADATA").is_file()


NAMESPACE = {"nvidia/__init__.py": ""}  # pkgutil-style, shipped by every nvidia-* wheel


def nvidia_wheels(tmp_path: Path, *names: str) -> list[Path]:
    """Wheels that share the namespace's ``__init__.py``, each with a package of its own."""
    return [
        wheel(tmp_path, name, files={**NAMESPACE, f"nvidia/{name}/__init__.py": ""})
        for name in names
    ]


async def test_an_uninstall_keeps_a_file_that_a_staying_distribution_lists_too(
    tmp_path: Path, scheme: Scheme
) -> None:
    """pip and uv remove it, and the other distribution loses a file."""
    wheels = nvidia_wheels(tmp_path, "cublas", "cudnn")
    await install_wheels(scheme, wheels, cache_dir=tmp_path / "cache")
    site = Path(scheme.purelib)
    rows = (site / "cublas-1.0.dist-info/RECORD").read_text().splitlines()

    would = await uninstall(scheme, ["cublas"], dry_run=True)
    result = await uninstall(scheme, ["cublas"])

    assert (site / "nvidia/__init__.py").is_file() and (site / "nvidia/cudnn").is_dir()
    assert not (site / "nvidia/cublas").exists()
    counts = [len(rows) - 1]  # every row but the shared file's
    assert [r.files for r in would.removed] == [r.files for r in result.removed] == counts


async def test_a_shared_file_goes_with_the_last_distribution_that_lists_it(
    tmp_path: Path, scheme: Scheme
) -> None:
    wheels = nvidia_wheels(tmp_path, "cublas", "cudnn")
    await install_wheels(scheme, wheels, cache_dir=tmp_path / "cache")

    await uninstall(scheme, ["cublas"])
    await uninstall(scheme, ["cudnn"])

    assert not (Path(scheme.purelib) / "nvidia").exists()


@pytest.mark.parametrize("quoted", [False, True], ids=["plain", "quoted"])
async def test_an_uninstall_keeps_another_distributions_file_that_a_record_claims(
    tmp_path: Path, scheme: Scheme, quoted: bool
) -> None:
    """Either RECORD may quote its paths (CSV)."""
    both = [wheel(tmp_path, "alpha"), wheel(tmp_path, "beta")]
    await install_wheels(scheme, both, cache_dir=tmp_path / "cache")
    site = Path(scheme.purelib)
    if quoted:
        owner = site / "alpha-1.0.dist-info/RECORD"
        rows = [row.partition(",") for row in owner.read_text().splitlines()]
        owner.write_text("".join(f'"{path}",{rest}\n' for path, _, rest in rows))
    record = site / "beta-1.0.dist-info/RECORD"
    claim = '"alpha/__init__.py",,' if quoted else "alpha/__init__.py,,"
    record.write_text(record.read_text() + claim + "\n")

    await uninstall(scheme, ["beta"])

    assert (site / "alpha/__init__.py").read_text() == "VERSION = '1.0'\n"


async def test_an_uninstall_reads_no_fifo_that_stands_for_a_staying_record(
    tmp_path: Path, scheme: Scheme
) -> None:
    """Opening a FIFO would wait for a writer forever."""
    both = [wheel(tmp_path, "alpha"), wheel(tmp_path, "beta")]
    await install_wheels(scheme, both, cache_dir=tmp_path / "cache")
    record = Path(scheme.purelib) / "alpha-1.0.dist-info/RECORD"
    record.unlink()
    os.mkfifo(record)

    result = await uninstall(scheme, ["beta"])

    assert [r.name for r in result.removed] == ["beta"]


@pytest.mark.parametrize("which", ["alpha", "beta"], ids=["staying", "removed"])
async def test_an_uninstall_does_not_read_a_record_bigger_than_any_real_one(
    tmp_path: Path, scheme: Scheme, caplog: pytest.LogCaptureFixture, which: str
) -> None:
    """A sparse 300 MiB file (a symlink put there could lead to any file) is not read."""
    both = [wheel(tmp_path, "alpha"), wheel(tmp_path, "beta")]
    await install_wheels(scheme, both, cache_dir=tmp_path / "cache")
    site = Path(scheme.purelib)
    with open(site / f"{which}-1.0.dist-info/RECORD", "r+b") as record:
        record.truncate(300 << 20)
    tracemalloc.start()

    try:
        result = await uninstall(scheme, ["beta"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert peak < 64 << 20
    assert [r.name for r in result.removed] == ["beta"]
    assert not (site / "beta-1.0.dist-info").exists()
    assert (site / "alpha/__init__.py").exists()
    assert (which == "beta") == ("more than any RECORD holds" in caplog.text)


async def test_an_upgrade_keeps_an_old_file_that_another_distribution_lists(
    tmp_path: Path, scheme: Scheme
) -> None:
    """The old version had the namespace file, the new one does not; the other still needs it."""
    old = wheel(tmp_path, "cublas", "1.0", files={**NAMESPACE, "nvidia/cublas/__init__.py": ""})
    other = wheel(tmp_path, "cudnn", files={**NAMESPACE, "nvidia/cudnn/__init__.py": ""})
    new = wheel(tmp_path, "cublas", "2.0", files={"nvidia/cublas/__init__.py": ""})
    await install_wheels(scheme, [old, other], cache_dir=tmp_path / "cache")

    await install_wheels(scheme, [new], cache_dir=tmp_path / "cache")

    assert (Path(scheme.purelib) / "nvidia/__init__.py").is_file()


async def test_a_sync_keeps_a_removed_distributions_file_that_a_kept_one_lists(
    tmp_path: Path, scheme: Scheme
) -> None:
    wheels = nvidia_wheels(tmp_path, "cublas", "cudnn")
    await install_wheels(scheme, wheels, cache_dir=tmp_path / "cache")

    result = await sync_wheels(scheme, wheels[1:], cache_dir=tmp_path / "cache")

    assert [r.name for r in result.removed] == ["cublas"]
    assert (Path(scheme.purelib) / "nvidia/__init__.py").is_file()


async def test_an_uninstall_does_not_detach_a_symlink_of_the_environment(
    tmp_path: Path, scheme: Scheme
) -> None:
    """A venv's ``lib64 -> lib``, named in a RECORD row: only a package directory beside the
    ``.dist-info`` is a distribution's own symlink."""
    env = Path(scheme.data)
    site = env / "lib" / "site-packages"
    venv_like = dataclasses.replace(scheme, purelib=str(site), platlib=str(site))
    await install_wheels(venv_like, [wheel(tmp_path)], cache_dir=tmp_path / "cache")
    (env / "lib" / "x.py").write_text("")
    (env / "lib64").symlink_to("lib")
    record = site / "demo-1.0.dist-info/RECORD"
    record.write_text(record.read_text() + "../../lib64/x.py,,\n")

    await uninstall(venv_like, ["demo"])

    assert (env / "lib64").is_symlink() and (env / "lib" / "x.py").is_file()
    assert not (site / "demo").exists()


async def test_a_failed_uninstall_puts_everything_back(tmp_path: Path, scheme: Scheme) -> None:
    await install_wheels(
        scheme, [wheel(tmp_path, "alpha"), wheel(tmp_path, "beta")], cache_dir=tmp_path / "c"
    )
    before = snapshot(tmp_path / "env")
    site = Path(scheme.purelib)
    if os.geteuid() != 0:
        pytest.skip("needs root for a read-only bind mount")
    import subprocess

    subprocess.run(["mount", "--bind", str(site / "beta"), str(site / "beta")], check=True)
    subprocess.run(["mount", "-o", "remount,ro,bind", str(site / "beta")], check=True)
    try:
        with pytest.raises(LinkError, match=r"beta-1\.0: cannot remove .*Read-only file system"):
            await uninstall(scheme, ["alpha", "beta"])
    finally:
        subprocess.run(["umount", str(site / "beta")], check=True)

    assert snapshot(tmp_path / "env") == before


# -- sync -----------------------------------------------------------------------------------------


async def test_sync_installs_upgrades_skips_and_removes_in_one_go(
    tmp_path: Path, scheme: Scheme
) -> None:
    same = wheel(tmp_path, "same")
    await install_wheels(
        scheme,
        [same, wheel(tmp_path, "old", "1.0"), wheel(tmp_path, "extra"), wheel(tmp_path, "pip")],
        cache_dir=tmp_path / "cache",
    )

    result = await sync_wheels(
        scheme,
        [same, wheel(tmp_path, "old", "2.0"), wheel(tmp_path, "new")],
        cache_dir=tmp_path / "cache",
    )

    actions = {w.project: (w.action, w.replaced) for w in result.wheels}
    assert actions == {
        "same": (Action.SKIPPED, None),
        "old": (Action.UPGRADED, "1.0"),
        "new": (Action.INSTALLED, None),
    }
    assert [r.name for r in result.removed] == ["extra"]  # pip is kept, as pip-sync keeps it
    assert [(d.name, d.version) for d in await installed(scheme)] == [
        ("new", "1.0"),
        ("old", "2.0"),
        ("pip", "1.0"),
        ("same", "1.0"),
    ]


async def test_sync_with_nothing_kept_removes_pip_too(tmp_path: Path, scheme: Scheme) -> None:
    await install_wheels(
        scheme, [wheel(tmp_path, "pip"), wheel(tmp_path, "a")], cache_dir=tmp_path / "c"
    )

    result = await sync_wheels(scheme, [wheel(tmp_path, "a")], cache_dir=tmp_path / "c", keep=())

    assert [r.name for r in result.removed] == ["pip"]


async def test_a_failed_sync_restores_every_removed_and_replaced_file(
    tmp_path: Path, scheme: Scheme
) -> None:
    await install_wheels(
        scheme, [wheel(tmp_path, "old", "1.0"), wheel(tmp_path, "extra")], cache_dir=tmp_path / "c"
    )
    broken = wheel(tmp_path, "broken")
    make_tree(Path(scheme.purelib), {"broken/__init__.py/in-the-way": ""})
    before = snapshot(tmp_path / "env")

    with pytest.raises(LinkError):
        await sync_wheels(
            scheme, [wheel(tmp_path, "old", "2.0"), broken], cache_dir=tmp_path / "c", jobs=1
        )

    assert snapshot(tmp_path / "env") == before


# -- one installer at a time, and the events that say so -------------------------------------------


async def test_waiting_for_the_lock_is_an_event_and_so_is_getting_it(
    tmp_path: Path, scheme: Scheme
) -> None:
    site = Path(scheme.purelib)
    site.mkdir(parents=True)
    events: list[Event] = []
    released = anyio.Event()

    def release_once_waiting(event: Event) -> None:
        events.append(event)
        if isinstance(event, WaitingForLock):
            released.set()

    with another_installer(site):
        async with anyio.create_task_group() as group:
            group.start_soon(
                lambda: install_wheels(
                    scheme,
                    [wheel(tmp_path)],
                    cache_dir=tmp_path / "cache",
                    on_event=release_once_waiting,
                )
            )
            await released.wait()
            group.cancel_scope.cancel()  # let the other installer go on holding it

    assert [type(e) for e in events if isinstance(e, WaitingForLock | LockAcquired)] == [
        WaitingForLock
    ]
    events.clear()
    await install_wheels(
        scheme, [wheel(tmp_path)], cache_dir=tmp_path / "cache", on_event=events.append
    )
    (acquired,) = [e for e in events if isinstance(e, LockAcquired)]
    assert acquired.target == str(site) and acquired.waited >= 0
