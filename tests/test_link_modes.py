"""Each link mode places a real tree: contents, permission bits, symlinks, counts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from asynclink import LinkMode, link_wheels
from tests.inotify import DirectoryWatch
from tests.trees import leftovers, make_tree, snapshot, wheel_tree

pytestmark = pytest.mark.anyio

FILES: dict[str, bytes | str] = {
    "pkg/__init__.py": "from .core import run\n",
    "pkg/core.py": "def run():\n    return 42\n",
    "pkg/data/table.bin": bytes(range(256)) * 64,
    "pkg/bin/tool": "#!/bin/sh\necho tool\n",
    "pkg/empty.txt": b"",
    "top_level_module.py": "X = 1\n",
}


def placed(site_packages: Path) -> dict[str, tuple[str, int, bytes | str]]:
    return {path: entry for path, entry in snapshot(site_packages).items() if entry[0] != "dir"}


@pytest.mark.parametrize("mode", [LinkMode.COPY, LinkMode.HARDLINK, LinkMode.SYMLINK])
async def test_every_file_arrives_with_its_contents_and_mode(
    tmp_path: Path, mode: LinkMode
) -> None:
    source = wheel_tree(tmp_path / "wheel", "pkg", FILES, executable=["pkg/bin/tool"])
    site_packages = tmp_path / "site-packages"
    site_packages.mkdir()

    result = await link_wheels(site_packages, [source], mode=mode)

    (wheel,) = result.wheels
    assert wheel.mode is mode and not wheel.fallbacks
    assert wheel.files == len(FILES) + 2 == result.files
    for relative, contents in FILES.items():
        installed = site_packages / relative
        expected = contents.encode() if isinstance(contents, str) else contents
        assert installed.read_bytes() == expected
        assert os.access(installed, os.X_OK) == (relative == "pkg/bin/tool")
    assert (site_packages / "pkg/bin/tool").stat().st_mode & 0o777 == 0o755


async def test_hardlink_shares_the_inode_with_the_cache(tmp_path: Path) -> None:
    source = wheel_tree(tmp_path / "wheel", "pkg", FILES)
    site_packages = tmp_path / "sp"
    site_packages.mkdir()

    await link_wheels(site_packages, [source], mode="hardlink")

    for relative in FILES:
        assert (site_packages / relative).samefile(source / relative)


async def test_copy_makes_independent_files(tmp_path: Path) -> None:
    source = wheel_tree(tmp_path / "wheel", "pkg", FILES)
    site_packages = tmp_path / "sp"
    site_packages.mkdir()

    await link_wheels(site_packages, [source], mode="copy")
    (site_packages / "pkg/core.py").write_text("edited\n")

    assert (source / "pkg/core.py").read_text() == FILES["pkg/core.py"]
    assert not (site_packages / "pkg/core.py").samefile(source / "pkg/core.py")


async def test_symlink_points_every_file_at_the_cache(tmp_path: Path) -> None:
    source = wheel_tree(tmp_path / "wheel", "pkg", FILES)
    site_packages = tmp_path / "sp"
    site_packages.mkdir()

    await link_wheels(site_packages, [source], mode="symlink")

    for relative in FILES:
        link = site_packages / relative
        assert link.is_symlink()
        assert os.readlink(link) == str(source / relative)
    assert (site_packages / "pkg").is_dir() and not (site_packages / "pkg").is_symlink()


@pytest.mark.parametrize("mode", [LinkMode.COPY, LinkMode.HARDLINK, LinkMode.SYMLINK])
async def test_symlinks_inside_the_wheel_are_recreated_as_they_are(
    tmp_path: Path, mode: LinkMode
) -> None:
    source = wheel_tree(tmp_path / "wheel", "pkg", FILES, symlinks={"pkg/alias.py": "core.py"})
    site_packages = tmp_path / "sp"
    site_packages.mkdir()

    result = await link_wheels(site_packages, [source], mode=mode)

    assert os.readlink(site_packages / "pkg/alias.py") == "core.py"
    assert (site_packages / "pkg/alias.py").read_text() == FILES["pkg/core.py"]
    assert result.files == len(FILES) + 3


async def test_record_is_always_a_copy(mode_root: tuple[LinkMode, Path]) -> None:
    mode, tmp_path = mode_root
    source = wheel_tree(tmp_path / "wheel", "pkg", FILES)
    site_packages = tmp_path / "sp"
    site_packages.mkdir()
    record = "pkg-1.0.dist-info/RECORD"
    original = (source / record).read_bytes()

    result = await link_wheels(site_packages, [source], mode=mode)
    installed = site_packages / record
    installed.write_text("rewritten\n")

    assert not installed.is_symlink()
    assert (source / record).read_bytes() == original
    assert result.wheels[0].copied >= 1


@pytest.mark.parametrize("mode", [LinkMode.COPY, LinkMode.HARDLINK, LinkMode.SYMLINK])
async def test_existing_files_are_replaced_and_directories_merged(
    tmp_path: Path, mode: LinkMode
) -> None:
    source = wheel_tree(tmp_path / "wheel", "pkg", FILES)
    site_packages = make_tree(
        tmp_path / "sp",
        {
            "pkg/core.py": "old contents\n",
            "pkg/unrelated.py": "kept\n",
            "pkg-1.0.dist-info/RECORD": "old record\n",
        },
    )

    await link_wheels(site_packages, [source], mode=mode)

    assert (site_packages / "pkg/core.py").read_text() == FILES["pkg/core.py"]
    assert (site_packages / "pkg/unrelated.py").read_text() == "kept\n"
    assert (site_packages / "pkg-1.0.dist-info/RECORD").read_bytes() == (
        source / "pkg-1.0.dist-info/RECORD"
    ).read_bytes()
    assert leftovers(site_packages) == []


async def test_installing_the_same_hardlinks_twice_leaves_nothing_behind(tmp_path: Path) -> None:
    source = wheel_tree(tmp_path / "wheel", "pkg", FILES)
    site_packages = tmp_path / "sp"
    site_packages.mkdir()

    await link_wheels(site_packages, [source], mode="hardlink")
    first = placed(site_packages)
    await link_wheels(site_packages, [source], mode="hardlink")

    assert placed(site_packages) == first
    assert leftovers(site_packages) == []


async def test_a_symlink_out_of_the_wheel_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for site-packages\n")
    source = wheel_tree(tmp_path / "wheel", "pkg", FILES, symlinks={"pkg/leak.txt": str(secret)})
    site_packages = tmp_path / "sp"
    site_packages.mkdir()

    from asynclink import InvalidWheelError

    with pytest.raises(InvalidWheelError, match="points outside the unpacked wheel"):
        await link_wheels(site_packages, [source], mode="copy")
    assert list(site_packages.iterdir()) == []


async def test_a_symlink_that_climbs_through_another_is_refused(tmp_path: Path) -> None:
    # "deep/.." is "pkg/inner" through the link, "pkg" once normalised: the two differ.
    source = wheel_tree(
        tmp_path / "wheel",
        "pkg",
        {**FILES, "pkg/inner/sub/x.py": "x\n"},
        symlinks={"pkg/deep": "inner/sub", "pkg/up": "deep/.."},
    )
    site_packages = tmp_path / "sp"
    site_packages.mkdir()

    from asynclink import InvalidWheelError

    with pytest.raises(InvalidWheelError, match="goes up through another symlink"):
        await link_wheels(site_packages, [source], mode="copy")
    assert list(site_packages.iterdir()) == []


async def test_a_symlink_inside_the_wheel_is_recreated_normalised(tmp_path: Path) -> None:
    source = wheel_tree(
        tmp_path / "wheel", "pkg", FILES, symlinks={"pkg/alias.py": "./missing/../core.py"}
    )
    site_packages = tmp_path / "sp"
    site_packages.mkdir()

    await link_wheels(site_packages, [source], mode="copy")

    assert os.readlink(site_packages / "pkg/alias.py") == "core.py"
    assert (site_packages / "pkg/alias.py").read_text() == FILES["pkg/core.py"]


async def test_a_directory_in_the_way_of_a_file_is_a_clear_error(tmp_path: Path) -> None:
    source = wheel_tree(tmp_path / "wheel", "pkg", FILES)
    site_packages = make_tree(tmp_path / "sp", {"pkg/core.py/inner.txt": "a directory\n"})

    from asynclink import LinkError

    with pytest.raises(LinkError) as caught:
        await link_wheels(site_packages, [source], mode="hardlink")
    assert caught.value.wheel == "pkg-1.0"
    assert caught.value.destination == str(site_packages / "pkg/core.py")
    assert "directory is in the way" in str(caught.value)


async def test_a_missing_site_packages_is_an_error(tmp_path: Path) -> None:
    source = wheel_tree(tmp_path / "wheel", "pkg", FILES)
    from asynclink import AsyncLinkError

    with pytest.raises(AsyncLinkError, match="does not exist"):
        await link_wheels(tmp_path / "nowhere", [source], mode="copy")


async def test_clone_shares_extents_and_keeps_the_mode(xfs: Path) -> None:
    big = os.urandom(1 << 20)
    source = wheel_tree(
        xfs / "cache", "pkg", {**FILES, "pkg/big.bin": big}, executable=["pkg/bin/tool"]
    )
    site_packages = xfs / "sp"
    site_packages.mkdir()

    result = await link_wheels(site_packages, [source], mode="clone")

    assert result.wheels[0].mode is LinkMode.CLONE and not result.wheels[0].fallbacks
    installed = site_packages / "pkg/big.bin"
    assert installed.read_bytes() == big
    assert not installed.samefile(source / "pkg/big.bin")
    extents = subprocess.run(
        ["filefrag", "-v", str(installed)], capture_output=True, text=True, check=True
    ).stdout
    assert "shared" in extents
    # uv issue 18181: a reflinked executable must stay executable.
    assert (site_packages / "pkg/bin/tool").stat().st_mode & 0o777 == 0o755
    assert placed(site_packages)["pkg/core.py"][1] == 0o644


async def test_clone_bumps_the_site_packages_mtime(xfs: Path) -> None:
    source = wheel_tree(xfs / "cache", "pkg", FILES)
    site_packages = xfs / "sp"
    site_packages.mkdir()

    with DirectoryWatch(site_packages) as watch:
        await link_wheels(site_packages, [source], mode="clone")
        events = watch.events()

    # set on purpose (utime), not only as a side effect of entries being added or removed
    assert ("attrib", "") in events


async def test_editing_a_clone_never_edits_the_cache(xfs: Path) -> None:
    source = wheel_tree(xfs / "cache", "pkg", FILES)
    site_packages = xfs / "sp"
    site_packages.mkdir()

    await link_wheels(site_packages, [source], mode="reflink")
    with open(site_packages / "pkg/core.py", "r+b") as handle:
        handle.write(b"#")

    assert (source / "pkg/core.py").read_text() == FILES["pkg/core.py"]
