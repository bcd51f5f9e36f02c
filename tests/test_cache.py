"""The cache keeps itself honest: a hard-linked install shares its files, so an edit there is
an edit of the cache; installs notice, ``verify_cache`` finds every one, and ``prune_cache``
and ``clean_cache`` remove what is no longer wanted."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from asynclink import (
    Scheme,
    TargetError,
    clean_cache,
    install_wheels,
    link_wheels,
    prune_cache,
    unpack_wheels,
    verify_cache,
)
from asynclink._manifest import MANIFEST_FORMAT, MANIFEST_NAME, decode_fields, encode_fields
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


@pytest.mark.parametrize("part", [f"wheels-v{MANIFEST_FORMAT}", "archives-v2", "tmp"])
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


# -- a manifest edited in the cache ----------------------------------------------------------------
# The cache's manifests are input too: an install links every path one lists. Each edit below
# would, if the manifest were trusted, write outside the target (or onto asynclink's own files,
# or into a launcher's code); each is refused on load, and the wheel is unpacked again over it.

Raw = dict[str, Any]


def _climbing_file(raw: Raw, entry: Path) -> None:
    planted = entry / "tree/demo/../../../escaped.py"
    planted.write_text("from the cache\n")  # the link's source: there, so the link would work
    _add_file(raw, "demo/../../../escaped.py")


def _add_file(raw: Raw, path: str) -> None:
    files = [*raw["files"].split("\n"), path]
    rows = [*raw["record"].split("\n"), f"{path},sha256=x,15"]
    raw["files"], raw["record"] = "\n".join(files), "\n".join(rows)


EDITS: dict[str, Callable[[Raw, Path], None]] = {
    "a file path with '..'": _climbing_file,
    "a directory with '..'": lambda raw, _: raw.update(dirs=raw["dirs"] + "\ndemo/../../../up"),
    "an absolute file path": lambda raw, entry: _add_file(raw, f"{entry.parent}/absolute.py"),
    "a file in asynclink's journal": lambda raw, _: _add_file(raw, ".asynclink-journal/x"),
    "a dist-info with '..'": lambda raw, _: raw.update(dist_info="../../demo-1.0.dist-info"),
    "a dist-info of another project": lambda raw, _: raw.update(dist_info="pip-1.0.dist-info"),
    "a .data file outside .data": lambda raw, _: raw.update(
        data=[["demo-1.0.data/purelib/../../../../data.py", "sha256=x", 1]]
    ),
    "a .data file of no scheme": lambda raw, _: raw.update(
        data=[["demo-1.0.data/elsewhere/data.py", "sha256=x", 1]]
    ),
    "an entry point that climbs": lambda raw, _: raw.update(
        entry_points=[["../../../launcher", "demo", "main", "console"]]
    ),
    "an entry point whose module is code": lambda raw, _: raw.update(
        entry_points=[["demo", "os; os.system('touch /tmp/x'); import demo", "main", "console"]]
    ),
    "a field of the wrong type": lambda raw, _: raw.update(dist_info=["demo-1.0.dist-info"]),
    "a count that is a string": lambda raw, _: raw.update(size="12"),
    "an entry point of two parts": lambda raw, _: raw.update(entry_points=[["demo", "x"]]),
}


def _everything_below(directory: Path) -> set[Path]:
    return set(directory.rglob("*"))


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
async def test_an_edited_manifest_is_refused_and_the_wheel_unpacked_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, edit: Callable[[Raw, Path], None]
) -> None:
    wheel = build_wheel(
        tmp_path / "dist", files=FILES, entry_points="[console_scripts]\ndemo = demo:main\n"
    )
    cache = tmp_path / "cache"
    (unpacked,) = await unpack_wheels([wheel], cache_dir=cache)
    entry = Path(unpacked.tree).parent
    raw = decode_fields((entry / MANIFEST_NAME).read_bytes())
    edit(raw, entry)
    (entry / MANIFEST_NAME).write_bytes(encode_fields(raw))
    target = Scheme.for_directory(tmp_path / "env/lib/site-packages")
    Path(target.purelib).mkdir(parents=True)
    before = _everything_below(tmp_path) - _everything_below(cache)

    result = await install_wheels(target, [wheel], cache_dir=cache, mode="hardlink")

    written = _everything_below(tmp_path) - _everything_below(cache) - before
    assert all(path.is_relative_to(target.purelib) for path in written)
    (installed,) = result.wheels
    assert installed.project == "demo" and installed.scripts == ("demo",)
    assert not installed.cached
    expected = {f"demo-1.0.dist-info/{name}" for name in ("METADATA", "WHEEL", "RECORD")}
    found = {p.relative_to(target.purelib).as_posix() for p in Path(target.purelib).rglob("*")}
    assert expected | set(FILES) <= found and not any(".." in name for name in found)
    assert caplog.text.count("manifest of demo-1.0-py3-none-any.whl was changed") == 1
    assert decode_fields((entry / MANIFEST_NAME).read_bytes()) != raw  # unpacked again


async def test_verify_reports_an_edited_manifest_as_damage(tmp_path: Path) -> None:
    (unpacked,) = await unpack_wheels(
        [build_wheel(tmp_path / "dist", files=FILES)], cache_dir=tmp_path / "cache"
    )
    manifest = Path(unpacked.tree).parent / MANIFEST_NAME
    raw = decode_fields(manifest.read_bytes())
    raw["files"] = raw["files"].replace("demo/m00.py", "demo/../m00.py")
    manifest.write_bytes(encode_fields(raw))

    report = await verify_cache(tmp_path / "cache")

    (problem,) = report.damaged
    assert "the manifest was changed (files lists a path that is not a wheel's own)" in problem


async def test_verify_reports_a_manifest_whose_rows_are_not_its_files(tmp_path: Path) -> None:
    """Rows are not counted on load (a millisecond for the corpus); verify finds the cut."""
    (unpacked,) = await unpack_wheels(
        [build_wheel(tmp_path / "dist", files=FILES)], cache_dir=tmp_path / "cache"
    )
    manifest = Path(unpacked.tree).parent / MANIFEST_NAME
    raw = decode_fields(manifest.read_bytes())
    raw["record"] = raw["record"].partition("\n")[2]
    manifest.write_bytes(encode_fields(raw))

    report = await verify_cache(tmp_path / "cache")

    (problem,) = report.damaged
    assert "RECORD rows are not those of its files" in problem


async def test_linking_a_cache_tree_whose_manifest_was_edited_walks_the_tree(
    tmp_path: Path,
) -> None:
    """``link_wheels`` reads a cache tree's manifest instead of walking it, unless refused."""
    (unpacked,) = await unpack_wheels(
        [build_wheel(tmp_path / "dist", files=FILES)], cache_dir=tmp_path / "cache"
    )
    entry = Path(unpacked.tree).parent
    raw = decode_fields((entry / MANIFEST_NAME).read_bytes())
    _climbing_file(raw, entry)
    (entry / MANIFEST_NAME).write_bytes(encode_fields(raw))
    site_packages = tmp_path / "env/lib/site-packages"
    site_packages.mkdir(parents=True)

    await link_wheels(site_packages, [unpacked.tree], mode="copy")

    assert not (tmp_path / "env/escaped.py").exists()
    assert {p.relative_to(site_packages).as_posix() for p in site_packages.rglob("*.py")} == set(
        FILES
    )


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "cut short": lambda data: data[:-10],
    "a byte too many": lambda data: data + b"\n",
    "not JSON": lambda data: b"\x00garbage\n" + data,
    "a header that is a list": lambda data: b"[]\n" + data.partition(b"\n")[2],
    "lengths that are not counts": lambda data: data.replace(b'"texts":[', b'"texts":[-1,', 1),
    "empty": lambda data: b"",
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
async def test_a_damaged_manifest_file_makes_the_wheel_unpack_again(
    tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    wheel = build_wheel(tmp_path / "dist", files=FILES)
    (unpacked,) = await unpack_wheels([wheel], cache_dir=tmp_path / "cache")
    manifest = Path(unpacked.tree).parent / MANIFEST_NAME
    manifest.write_bytes(damage(manifest.read_bytes()))

    result = await install_wheels(
        Scheme.for_directory(tmp_path / "site"), [wheel], cache_dir=tmp_path / "cache"
    )

    assert not result.wheels[0].cached
    assert decode_fields(manifest.read_bytes())["files"] == "\n".join(
        ["demo-1.0.dist-info/METADATA", "demo-1.0.dist-info/WHEEL", *sorted(FILES)]
    )
