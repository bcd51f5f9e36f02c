"""The cache keeps itself honest: a hard-linked install shares its files, so an edit there is
an edit of the cache; installs notice, ``verify_cache`` finds every one, and ``prune_cache``
and ``clean_cache`` remove what is no longer wanted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from asynclink import (
    Scheme,
    TargetError,
    clean_cache,
    install_wheels,
    prune_cache,
    unpack_wheels,
    verify_cache,
)
from tests.wheels import build_wheel

pytestmark = pytest.mark.anyio

FILES = {f"demo/m{n:02}.py": f"VALUE = {n}\n" for n in range(20)}


async def test_an_edit_through_a_hard_link_is_noticed_and_the_wheel_unpacked_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wheel = build_wheel(tmp_path / "dist", files=FILES)
    first = Scheme.for_directory(tmp_path / "first")
    await install_wheels(first, [wheel], cache_dir=tmp_path / "cache", mode="hardlink")
    # The first file of the tree (in name order) is looked at by every install that uses it.
    with open(Path(first.purelib) / "demo-1.0.dist-info/METADATA", "a") as installed_file:
        installed_file.write("Edited: yes\n")  # in place: the cache's file is this file
    second = Scheme.for_directory(tmp_path / "second")

    await install_wheels(second, [wheel], cache_dir=tmp_path / "cache", mode="hardlink")

    metadata = (Path(second.purelib) / "demo-1.0.dist-info/METADATA").read_text()
    assert "Edited" not in metadata
    assert "was changed" in caplog.text and "unpacking it again" in caplog.text
    assert (await verify_cache(tmp_path / "cache")).damaged == ()


async def test_verify_finds_every_changed_file_and_can_remove_the_entry(tmp_path: Path) -> None:
    (unpacked,) = await unpack_wheels(
        [build_wheel(tmp_path / "dist", files=FILES)], cache_dir=tmp_path / "cache"
    )
    good = await verify_cache(tmp_path / "cache")
    tree = Path(unpacked.tree)
    (tree / "demo/m13.py").write_text("VALUE = 'tampered'\n")
    os.utime(tree / "demo/m13.py", ns=(unpacked.manifest.sealed, unpacked.manifest.sealed))

    found = await verify_cache(tmp_path / "cache")
    removed = await verify_cache(tmp_path / "cache", remove=True)

    assert good.entries == 1 and good.damaged == ()
    (problem,) = found.damaged
    assert "demo/m13.py does not match its RECORD hash" in problem
    assert len(removed.removed) == 1 and not tree.exists()


async def test_prune_removes_entries_whose_archive_is_gone(tmp_path: Path) -> None:
    kept = build_wheel(tmp_path / "kept", name="kept", files={"kept/__init__.py": ""})
    gone = build_wheel(tmp_path / "gone", name="gone", files={"gone/__init__.py": ""})
    unpacked = await unpack_wheels([kept, gone], cache_dir=tmp_path / "cache")
    gone.unlink()
    (tmp_path / "cache/tmp/stale-extraction").mkdir(parents=True)

    report = await prune_cache(tmp_path / "cache")

    assert Path(unpacked[0].tree).exists() and not Path(unpacked[1].tree).exists()
    assert str(tmp_path / "cache/tmp/stale-extraction") in report.removed
    again = await unpack_wheels([kept], cache_dir=tmp_path / "cache")
    assert again[0].cached  # what is kept is still found


async def test_clean_removes_the_whole_cache(tmp_path: Path) -> None:
    await unpack_wheels([build_wheel(tmp_path / "dist", files=FILES)], cache_dir=tmp_path / "c")

    report = await clean_cache(tmp_path / "c")

    assert report.entries == 1 and not (tmp_path / "c").exists()


# -- a cache that is not one asynclink keeps -------------------------------------------------------


@pytest.mark.parametrize("part", ["wheels-v4", "archives-v2", "tmp"])
async def test_pruning_refuses_a_cache_whose_own_directory_is_a_symlink(
    tmp_path: Path, part: str
) -> None:
    """Pruning removes what it lists there: through the link, files elsewhere."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "sub").mkdir(parents=True)
    (elsewhere / "precious.txt").write_text("a\n/nonexistent/x.whl")
    (elsewhere / "sub" / "f").write_text("f\n")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / part).symlink_to(elsewhere)

    for keep in (prune_cache(cache), verify_cache(cache, remove=True)):
        with pytest.raises(TargetError, match=r"is not a directory \(a symlink or a file\)"):
            await keep

    assert sorted(p.name for p in elsewhere.rglob("*")) == ["f", "precious.txt", "sub"]


async def test_a_cache_that_is_a_file_is_an_error_naming_it(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.write_text("not a cache\n")

    for keep in (prune_cache(cache), verify_cache(cache), clean_cache(cache)):
        with pytest.raises(TargetError, match=r"cache .* is not a directory"):
            await keep

    assert cache.read_text() == "not a cache\n"


def test_the_intact_check_reads_each_files_recorded_size_quoted_or_not() -> None:
    """The spot check finds a sampled file's row in the RECORD text, without splitting it."""
    from asynclink._cache import _recorded_size
    from asynclink._manifest import Manifest
    from asynclink._record import RecordEntry, format_row

    files = sorted(["a", "a.py", "we,ird.py", 'q"uote.py', "z/b.py"])
    rows = [format_row(RecordEntry(path, "sha256=x", 10 * n + 1)) for n, path in enumerate(files)]
    manifest = Manifest(
        "demo-1.0-py3-none-any.whl", "demo", "1.0", "demo-1.0.dist-info", True, (), (),
        files, "\n".join(rows), [], (), 0, (),
    )  # fmt: skip

    assert [_recorded_size(manifest, n) for n in range(len(files))] == [1, 11, 21, 31, 41]
