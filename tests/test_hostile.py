"""Hostile and broken wheels: each gets a clear error, and changes nothing anywhere.

Every case installs a batch of a good wheel and the bad one into a target that already holds
files. Afterwards the target, and everything outside it, is as it was; the cache holds no
unpacked wheel of the bad one (only its empty skeleton may remain).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from asynclink import (
    AsyncLinkError,
    InvalidWheelError,
    LinkError,
    Scheme,
    install_wheels,
    link_wheels,
    unpack_wheels,
)
from tests.trees import make_tree, snapshot, wheel_tree
from tests.wheels import WheelSpec, build_wheel, patch_bytes, set_declared_size

pytestmark = pytest.mark.anyio

GOOD = {"good/__init__.py": "GOOD = 1\n"}
FILES = {"evil/__init__.py": "EVIL = 1\n"}


def symlink_member() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("evil/link")
    info.external_attr = 0o120777 << 16
    return info


CASES: dict[str, tuple[dict[str, object], str]] = {
    "dot-dot": ({"extra": [("../evil.py", b"x")]}, "path leaves the wheel"),
    "absolute": ({"extra": [("/tmp/evil.py", b"x")]}, "absolute path"),
    "drive-letter": ({"extra": [("C:/evil.py", b"x")]}, "absolute path"),
    "backslash-traversal": ({"extra": [("evil\\..\\..\\x.py", b"x")]}, "path leaves the wheel"),
    "hash": (
        {
            "record": lambda rows: [
                [r[0], "sha256=AAAA", r[2]] if r[0] == "evil/__init__.py" else r for r in rows
            ]
        },
        "hash of evil/__init__.py does not match RECORD",
    ),
    "size": (
        {
            "record": lambda rows: [
                [r[0], r[1], "3"] if r[0] == "evil/__init__.py" else r for r in rows
            ]
        },
        "size of evil/__init__.py does not match RECORD",
    ),
    "dist-info-name": ({"dist_info": "angel-1.0.dist-info"}, "does not match the file name"),
    "duplicate": ({"extra": [("evil/__init__.py", b"again")]}, "duplicate entry"),
    "case-collision": ({"extra": [("EVIL/__init__.py", b"x")]}, "differ only in case"),
    "symlink-member": ({"extra": [(symlink_member(), b"/etc/passwd")]}, "symlinks are not allowed"),
    "record-not-csv": (
        {"record": 'evil/__init__.py,"sha256=unterminated\n'},
        "RECORD is not valid CSV|RECORD row",
    ),
    "zip-bomb": ({}, "zip bomb"),
    "over-the-limit": ({"files": {**FILES, "evil/big.bin": b"x" * 5000}}, "over the limit"),
    "non-utf8-name": ({"extra": [("evil/caf#.py", b"")]}, "not UTF-8"),
    "planted-journal": (
        {"files": {**FILES, ".asynclink-journal/1-0/journal": "W\0x\0"}},
        "kept for asynclink's own files",
    ),
    "planted-lock": ({"files": {**FILES, ".asynclink-lock": ""}}, "kept for asynclink's own"),
    "reserved-name-in-data": (
        {"files": {**FILES, "evil-1.0.data/purelib/.asynclink-tmp-9-0-0": ""}},
        "kept for asynclink's own files",
    ),
    "metadata-of-another-project": (
        {"metadata_text": "Metadata-Version: 2.1\nName: requests\nVersion: 9.9\n"},
        "METADATA says Name: requests, Version: 9.9",
    ),
    "inflates-past-its-size": (
        {"files": {**FILES, "evil/big.txt": "x" * 5000}},
        "more data than the archive declares",
    ),
    "name-too-long": ({"files": {**FILES, "evil/" + "n" * 300: ""}}, "File name too long"),
    "path-2100-deep": ({"files": {**FILES, "evil/" + "d/" * 2100 + "x.py": ""}}, "bytes long"),
    "console-script-python3": (
        {"entry_points": "[console_scripts]\npython3 = evil:main\n"},
        "would replace .*bin/python3, the environment's interpreter",
    ),
    "data-script-python": (
        {"files": {**FILES, "evil-1.0.data/scripts/python": "#!python\n"}},
        "would replace .*bin/python, the environment's interpreter",
    ),
    "data-bin-activate": (
        {"files": {**FILES, "evil-1.0.data/data/bin/activate": "evil\n"}},
        "would replace .*bin/activate, the environment's interpreter or activation",
    ),
    "data-pyvenv-cfg": (
        {"files": {**FILES, "evil-1.0.data/data/pyvenv.cfg": "home = /evil\n"}},
        "would replace .*pyvenv.cfg, the virtual environment's configuration",
    ),
    "entry-point-name-with-nul": (
        {"entry_points": "[console_scripts]\nev\0il = evil:main\n"},
        "entry point name 'ev.x00il' is not a file name",
    ),
    "data-purelib-over-a-root-file": (
        {"files": {**FILES, "evil-1.0.data/purelib/evil/__init__.py": "OTHER = 1\n"}},
        "two of its files would be installed as .*evil/__init__.py",
    ),
    "data-bin-over-a-script": (  # --target: the data is the directory, the scripts its bin
        {"files": {**FILES, "evil-1.0.data/data/bin/x": "a\n", "evil-1.0.data/scripts/x": "b\n"}},
        "two of its files would be installed as .*bin/x",
    ),
    "a-root-file-where-the-scripts-go": (  # --target: the scripts are the directory's bin
        {
            "files": {**FILES, "bin": "a file\n"},
            "entry_points": "[console_scripts]\nrun = evil:main\n",
        },
        "it has .*/bin as a file and as a directory",
    ),
    "data-over-the-metadata-the-install-writes": (
        {"files": {**FILES, "evil-1.0.data/purelib/evil-1.0.dist-info/INSTALLER": "me\n"}},
        "two of its files would be installed as .*evil-1.0.dist-info/INSTALLER",
    ),
    "data-purelib-over-a-root-pth": (
        {"files": {**FILES, "evil.pth": "\n", "evil-1.0.data/purelib/evil.pth": "import os\n"}},
        "two of its files would be installed as .*evil.pth",
    ),
    "console-and-gui-script-of-one-name": (
        {"entry_points": "[console_scripts]\nrun = evil:main\n[gui_scripts]\nrun = evil:gui\n"},
        "two of its files would be installed as .*bin/run",
    ),
}


#: Wheels that are well-formed but would replace the environment's own files: refused when
#: they are planned for a target, after the cache has checked and kept them.
REFUSED_FOR_THE_TARGET = {
    "console-script-python3",
    "data-script-python",
    "data-bin-activate",
    "data-pyvenv-cfg",
    "data-purelib-over-a-root-file",
    "data-bin-over-a-script",
    "console-and-gui-script-of-one-name",
    "a-root-file-where-the-scripts-go",
    "data-over-the-metadata-the-install-writes",
    "data-purelib-over-a-root-pth",
}


def build_hostile(directory: Path, case: str) -> Path:
    spec, _ = CASES[case]
    path = WheelSpec(**{"name": "evil", "files": FILES, **spec}).build(directory)  # type: ignore[arg-type]
    if case == "zip-bomb":
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr("evil/bomb.bin", b"\0" * 1000)
            archive.filelist[-1].file_size = 50 << 30
    elif case == "non-utf8-name":
        patch_bytes(path, b"evil/caf#.py", b"evil/caf\xe9.py")
    elif case == "inflates-past-its-size":
        set_declared_size(path, "evil/big.txt", 100)
    return path


def outside(root: Path, target: Path, cache: Path) -> dict[str, object]:
    """Everything under ``root`` but the target and the cache."""
    return {
        path: entry
        for path, entry in snapshot(root).items()
        if not (root / path).is_relative_to(target) and not (root / path).is_relative_to(cache)
    }


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_hostile_wheel_is_refused_and_changes_nothing(tmp_path: Path, case: str) -> None:
    target = make_tree(tmp_path / "env", {"existing/__init__.py": "x\n", "bin/tool": "t\n"})
    scheme = Scheme.for_directory(target)
    good = build_wheel(tmp_path / "dist", name="good", files=GOOD)
    hostile = build_hostile(tmp_path / "dist", case)
    cache = tmp_path / "cache"
    before_target, before_outside = snapshot(target), outside(tmp_path, target, cache)
    limit = {"max_unpacked_size": 2000} if case == "over-the-limit" else {}

    with pytest.raises(AsyncLinkError, match=CASES[case][1]) as caught:
        await install_wheels(scheme, [good, hostile], cache_dir=cache, jobs=1, **limit)  # type: ignore[arg-type]

    assert "evil-1.0" in str(caught.value)
    assert snapshot(target) == before_target
    assert outside(tmp_path, target, cache) == before_outside
    if case not in REFUSED_FOR_THE_TARGET:
        assert all("evil" not in os.listdir(tree) for tree in cache.glob("wheels-v*/*/tree"))
    assert not list(cache.glob("tmp/*"))


def test_the_command_line_refuses_each_hostile_wheel_in_one_line(tmp_path: Path) -> None:
    """Every case above, through ``asynclink install``: exit 1, the wheel and the reason on
    stderr, never a traceback."""
    target = make_tree(tmp_path / "env", {"existing/__init__.py": "x\n"})
    before = snapshot(target)
    for case in sorted(set(CASES) - {"over-the-limit"}):  # within the CLI's limit: it installs
        directory = tmp_path / case
        build_hostile(directory, case)
        done = subprocess.run(
            [
                *(sys.executable, "-m", "asynclink", "install", "--target", str(target)),
                *("--cache-dir", str(tmp_path / "cache"), str(directory)),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 1, (case, done.stderr)
        assert "Traceback" not in done.stderr, (case, done.stderr)
        (line,) = done.stderr.strip().splitlines()[-1:]
        assert line.startswith("asynclink: error: evil-1.0"), (case, line)
        assert re.search(CASES[case][1], done.stderr), (case, done.stderr)
        assert snapshot(target) == before, case
    assert not list((tmp_path / "cache").glob("tmp/*"))


async def test_a_full_cache_disk_is_an_error_naming_the_wheel(
    tmp_path: Path, small_tmpfs: Path
) -> None:
    """ENOSPC while unpacking: the error names the wheel, the staging directory goes."""
    target = make_tree(tmp_path / "env", {"existing/__init__.py": "x\n"})
    wheel = build_wheel(
        tmp_path / "dist",
        name="big",
        files={"big/__init__.py": "", "big/blob": os.urandom(2 << 20)},
    )
    before = snapshot(target)

    with pytest.raises(LinkError, match="No space left on device") as caught:
        await install_wheels(Scheme.for_directory(target), [wheel], cache_dir=small_tmpfs)

    assert caught.value.wheel == "big-1.0-py3-none-any.whl"
    assert snapshot(target) == before
    assert not list(small_tmpfs.glob("tmp/*"))
    assert not list(small_tmpfs.glob("wheels-v*/*"))


async def test_a_fifo_in_an_unpacked_wheel_is_refused_before_anything_reads_it(
    tmp_path: Path,
) -> None:
    hostile = wheel_tree(tmp_path / "evil", "evil", FILES)
    os.mkfifo(hostile / "evil" / "pipe")  # opening it to read (to hash or copy it) would hang
    target = make_tree(tmp_path / "sp", {"existing.py": "x\n"})
    before = snapshot(target)

    with pytest.raises(InvalidWheelError, match="evil/pipe is not a regular file") as caught:
        await link_wheels(target, [hostile], mode="copy")

    assert caught.value.wheel == "evil-1.0"
    assert snapshot(target) == before


async def test_a_fifo_in_an_unpacked_wheel_given_to_install_is_refused(tmp_path: Path) -> None:
    hostile = tmp_path / "evil"
    with zipfile.ZipFile(build_wheel(tmp_path / "wheels", name="evil", files=FILES)) as archive:
        archive.extractall(hostile)
    os.mkfifo(hostile / "evil" / "pipe")  # not in RECORD: hashing it would hang
    target = make_tree(tmp_path / "sp", {"existing.py": "x\n"})
    before = snapshot(target)

    with pytest.raises(InvalidWheelError, match="evil/pipe is not a regular file"):
        await install_wheels(Scheme.for_directory(target), [hostile], cache_dir=tmp_path / "c")

    assert snapshot(target) == before


@pytest.mark.parametrize("where", ["package", "dist-info"])
async def test_a_directory_symlink_in_an_unpacked_wheel_given_to_install_is_refused(
    tmp_path: Path, where: str
) -> None:
    """Walking the tree lists such a link and never goes in: its files would be lost (the
    package), or read from elsewhere (the metadata)."""
    hostile = tmp_path / "evil"
    with zipfile.ZipFile(build_wheel(tmp_path / "wheels", name="evil", files=FILES)) as archive:
        archive.extractall(hostile)
    linked = hostile / ("evil" if where == "package" else "evil-1.0.dist-info")
    linked.rename(tmp_path / "moved")
    linked.symlink_to(tmp_path / "moved")
    target = make_tree(tmp_path / "sp", {"existing.py": "x\n"})
    before = snapshot(target)

    with pytest.raises(InvalidWheelError, match="is a symlink"):
        await install_wheels(Scheme.for_directory(target), [hostile], cache_dir=tmp_path / "c")

    assert snapshot(target) == before


async def test_a_symlink_out_of_an_unpacked_wheel_changes_nothing(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("secret\n")
    good = wheel_tree(tmp_path / "good", "good", GOOD)
    hostile = wheel_tree(tmp_path / "evil", "evil", FILES, symlinks={"evil/leak": str(secret)})
    target = make_tree(tmp_path / "sp", {"existing.py": "x\n"})
    before = snapshot(target)

    with pytest.raises(AsyncLinkError, match="points outside the unpacked wheel"):
        await link_wheels(target, [good, hostile], mode="copy", jobs=1)

    assert snapshot(target) == before
    assert secret.read_text() == "secret\n"


async def test_symlinks_of_two_trees_cannot_chain_out_of_site_packages(tmp_path: Path) -> None:
    # In its own tree, evil's "leak" goes through a missing "hop" and stays inside; in
    # site-packages "hop" is hopper's link to "." and the same text would climb out of it.
    secret = tmp_path / "secret.txt"
    secret.write_text("secret\n")
    hopper = wheel_tree(tmp_path / "hopper", "hopper", GOOD, symlinks={"hop": "."})
    hostile = wheel_tree(tmp_path / "evil", "evil", FILES, symlinks={"leak": "hop/../secret.txt"})
    target = tmp_path / "sp"
    target.mkdir()

    await link_wheels(target, [hopper, hostile], mode="copy", jobs=1)

    assert os.readlink(target / "leak") == "secret.txt"
    assert Path(os.path.realpath(target / "leak")).parent == target


async def test_a_symlink_that_the_target_makes_resolve_outside_is_refused(tmp_path: Path) -> None:
    # The target's own "pkg" is a link to "."; evil's "pkg/leak -> ../secret.txt" would land
    # in site-packages itself and point one level above it.
    secret = tmp_path / "secret.txt"
    secret.write_text("secret\n")
    hostile = wheel_tree(tmp_path / "evil", "evil", FILES, symlinks={"pkg/leak": "../secret.txt"})
    (tmp_path / "evil" / "secret.txt").write_text("inside the tree\n")
    target = make_tree(tmp_path / "sp", {"existing.py": "x\n"})
    (target / "pkg").symlink_to(".")
    before = snapshot(target)

    with pytest.raises(InvalidWheelError, match="resolves outside") as caught:
        await link_wheels(target, [hostile], mode="copy")

    assert "evil" in str(caught.value) and "leak" in str(caught.value)
    assert snapshot(target) == before
    assert secret.read_text() == "secret\n"


async def test_an_entry_whose_local_header_names_another_file_is_refused(tmp_path: Path) -> None:
    """pip's ``zipfile`` compares the two names; asynclink finds the bytes through the local
    header, so it compares them too (a local name may say ``../../e.py``)."""
    wheel = build_wheel(tmp_path, files={"demo/aa.py": "A = 1\n"})
    data = wheel.read_bytes()
    at = data.find(b"demo/aa.py")  # the first is the local header's name
    wheel.write_bytes(data[:at] + b"demo/bb.py" + data[at + 10 :])

    with pytest.raises(InvalidWheelError, match="local header names another file"):
        await unpack_wheels([wheel], cache_dir=tmp_path / "cache")


async def test_entries_that_share_their_bytes_are_refused(tmp_path: Path) -> None:
    """Central directory entries that point at one local entry: a small archive that unpacks
    to many copies of one member (a zip bomb below the size-ratio check's floor)."""
    wheel = build_wheel(tmp_path, files={"demo/one.py": "X = 1\n", "demo/two.py": "X = 1\n"})
    with zipfile.ZipFile(wheel) as archive:
        first, second = (archive.getinfo(f"demo/{name}.py") for name in ("one", "two"))
    data = bytearray(wheel.read_bytes())
    central = data.find(b"PK\x01\x02")
    while not data[central + 46 :].startswith(b"demo/two.py"):
        central = data.find(b"PK\x01\x02", central + 4)
    data[central + 42 : central + 46] = first.header_offset.to_bytes(4, "little")
    wheel.write_bytes(bytes(data))
    assert second.header_offset != first.header_offset

    with pytest.raises(InvalidWheelError, match="entries overlap in the archive"):
        await unpack_wheels([wheel], cache_dir=tmp_path / "cache")
