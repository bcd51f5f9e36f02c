"""Unpacking archives into the cache: reuse, atomicity, and every validation rule."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import anyio
import pytest

from asynclink import (
    InvalidWheelError,
    PycacheSkippedWarning,
    WheelUnpacked,
    WheelVersionWarning,
    unpack_wheels,
)
from asynclink._cache import WheelCache
from tests.wheels import WheelSpec, build_wheel, patch_bytes, unpack_one

pytestmark = pytest.mark.anyio

FILES = {"demo/__init__.py": "VALUE = 1\n", "demo/tool.sh": "#!/bin/sh\necho hi\n"}


def cache_entries(cache: Path) -> list[str]:
    wheels = next(cache.glob("wheels-v*"), cache / "wheels-v0")
    tmp = cache / "tmp"
    return sorted(os.listdir(wheels) if wheels.exists() else []) + sorted(
        os.listdir(tmp) if tmp.exists() else []
    )


async def refused(tmp_path: Path, message: str, **spec: object) -> InvalidWheelError:
    """Build a wheel from ``spec``, check unpacking it fails with ``message`` and leaves the
    cache without an entry (nothing half-unpacked that a later run would trust)."""
    path = WheelSpec(**spec).build(tmp_path / "dist")  # type: ignore[arg-type]
    return await refused_archive(tmp_path, path, message)


async def refused_archive(tmp_path: Path, path: Path, message: str) -> InvalidWheelError:
    before = sorted(os.listdir(tmp_path))
    cache = tmp_path / "cache"
    with pytest.raises(InvalidWheelError, match=message) as caught:
        await unpack_one(path, cache)
    assert path.name in str(caught.value) or caught.value.wheel == path.name
    assert cache_entries(cache) == []
    assert sorted(p for p in os.listdir(tmp_path) if p != "cache") == [
        p for p in before if p != "cache"
    ]
    return caught.value


async def test_an_archive_is_unpacked_with_a_manifest(tmp_path: Path) -> None:
    path = build_wheel(tmp_path, files=FILES, executable=["demo/tool.sh"])

    unpacked = await unpack_one(path, tmp_path / "cache")

    tree = Path(unpacked.tree)
    assert (tree / "demo/__init__.py").read_text() == "VALUE = 1\n"
    assert os.access(tree / "demo/tool.sh", os.X_OK)
    assert not os.access(tree / "demo/__init__.py", os.X_OK)
    assert unpacked.manifest.files == [
        "demo-1.0.dist-info/METADATA",
        "demo-1.0.dist-info/WHEEL",
        "demo/__init__.py",
        "demo/tool.sh",
    ]
    assert unpacked.manifest.dirs == ["demo", "demo-1.0.dist-info"]
    init_row = unpacked.manifest.rows()[2]
    assert init_row.startswith("demo/__init__.py,sha256=")
    assert init_row.endswith(",10")  # len("VALUE = 1\n")
    assert unpacked.manifest.size == sum(
        len(info.read_bytes()) for info in tree.rglob("*") if info.is_file()
    ) - len((tree / "demo-1.0.dist-info/RECORD").read_bytes())
    assert not unpacked.cached and unpacked.archive == str(path)


async def test_a_cached_wheel_is_reused_not_extracted_again(tmp_path: Path) -> None:
    path = build_wheel(tmp_path, files=FILES)
    first = await unpack_one(path, tmp_path / "cache")
    marker = Path(first.tree) / "demo/__init__.py"
    inode = marker.stat().st_ino

    second = await unpack_one(path, tmp_path / "cache")

    assert second.cached and second.tree == first.tree
    assert marker.stat().st_ino == inode


async def test_the_cache_is_keyed_by_content_not_by_path(tmp_path: Path) -> None:
    path = build_wheel(tmp_path / "a", files=FILES)
    copy = tmp_path / "b" / path.name
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())
    first = await unpack_one(path, tmp_path / "cache")

    second = await unpack_one(copy, tmp_path / "cache")

    assert second.cached and second.tree == first.tree


async def test_a_rebuilt_archive_at_the_same_path_is_unpacked_again(tmp_path: Path) -> None:
    path = build_wheel(tmp_path, files=FILES)
    first = await unpack_one(path, tmp_path / "cache")
    build_wheel(tmp_path, files={**FILES, "demo/new.py": "NEW = 1\n"})

    second = await unpack_one(path, tmp_path / "cache")

    assert not second.cached and second.tree != first.tree
    assert (Path(second.tree) / "demo/new.py").exists()


async def test_many_archives_unpack_at_once_with_events(tmp_path: Path) -> None:
    paths = [build_wheel(tmp_path, name=f"w{n}", files={f"w{n}/x.py": ""}) for n in range(6)]
    events: list[object] = []

    unpacked = await unpack_wheels(paths, cache_dir=tmp_path / "cache", on_event=events.append)

    assert [u.manifest.name for u in unpacked] == [f"w{n}" for n in range(6)]
    assert sorted(e.wheel for e in events if isinstance(e, WheelUnpacked)) == [
        f"w{n}-1.0" for n in range(6)
    ]


class Stopped(BaseException):
    """Stands for a cancellation (or a kill) arriving between two members."""


def test_an_extraction_stopped_midway_leaves_no_half_wheel(tmp_path: Path) -> None:
    path = build_wheel(tmp_path, files={f"demo/m{n}.py": f"x = {n}\n" for n in range(500)})
    cache = WheelCache(tmp_path / "cache")
    checks = 0

    def stop_at_the_third_check() -> None:
        nonlocal checks
        checks += 1
        if checks == 3:  # about 64 members in: the tree is half written
            raise Stopped

    with pytest.raises(Stopped):
        cache.unpack(str(path), checkpoint=stop_at_the_third_check)

    assert cache_entries(tmp_path / "cache") == []
    assert cache.unpack(str(path)).cached is False


async def test_cancelling_before_the_extraction_leaves_nothing(tmp_path: Path) -> None:
    path = build_wheel(tmp_path, files=FILES)
    cache = tmp_path / "cache"

    with anyio.CancelScope() as scope:
        scope.cancel()
        await unpack_one(path, cache)

    assert scope.cancelled_caught
    assert cache_entries(cache) == []


# -- the rules, one test each ------------------------------------------------------------------


async def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "demo-1.0-py3-none-any.whl"
    path.write_bytes(b"this is not a zip archive")
    await refused_archive(tmp_path, path, "not a readable zip archive")


async def test_a_bad_file_name(tmp_path: Path) -> None:
    await refused(tmp_path, "not a valid wheel file name", filename="demo.whl", files=FILES)


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("../evil.py", r"path leaves the wheel"),
        ("./../evil.py", r"path leaves the wheel"),
        ("demo/../../evil.py", r"path leaves the wheel"),
        ("/etc/evil.py", "absolute path"),
        ("C:/evil.py", "absolute path"),
        ("C:\\evil.py", "absolute path"),
        ("demo\\..\\..\\evil.py", r"path leaves the wheel"),
        ("demo-1.0.data/data/../../../evil.py", r"path leaves the wheel"),
    ],
)
async def test_unsafe_paths_are_refused(tmp_path: Path, entry: str, reason: str) -> None:
    error = await refused(tmp_path, reason, files=FILES, extra=[(entry, b"boom")])
    assert error.entry == entry


async def test_duplicate_entries(tmp_path: Path) -> None:
    await refused(tmp_path, "duplicate entry", files=FILES, extra=[("demo/__init__.py", b"again")])


async def test_entries_differing_only_in_case(tmp_path: Path) -> None:
    await refused(tmp_path, "differ only in case", files=FILES, extra=[("Demo/__init__.py", b"x")])


async def test_a_symlink_member(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("demo/link.py")
    link.external_attr = (0o120777) << 16
    await refused(tmp_path, "symlinks are not allowed", files=FILES, extra=[(link, b"/etc/passwd")])


async def test_a_non_utf8_name(tmp_path: Path) -> None:
    path = build_wheel(tmp_path / "dist", files=FILES, extra=[("demo/caf#.py", b"")])
    patch_bytes(path, b"demo/caf#.py", b"demo/caf\xe9.py")
    await refused_archive(tmp_path, path, "not UTF-8")


async def test_a_utf8_name_without_the_flag_is_read_as_utf8(tmp_path: Path) -> None:
    path = build_wheel(
        tmp_path / "dist",
        files=FILES,
        record=lambda rows: [
            *rows,
            ["demo/caf\u00e9.py", "sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU", "0"],
        ],
        extra=[("demo/caf##.py", b"")],
    )
    patch_bytes(path, b"demo/caf##.py", "demo/caf\u00e9.py".encode())

    unpacked = await unpack_one(path, tmp_path / "cache")

    assert (Path(unpacked.tree) / "demo/caf\u00e9.py").exists()


async def test_missing_wheel_file(tmp_path: Path) -> None:
    await refused(tmp_path, "missing .dist-info/WHEEL", files=FILES, wheel_text=None)


async def test_wheel_file_without_a_version(tmp_path: Path) -> None:
    await refused(tmp_path, "no Wheel-Version", files=FILES, wheel_text="Root-Is-Purelib: true\n")


async def test_a_malformed_wheel_version(tmp_path: Path) -> None:
    await refused(
        tmp_path, "malformed Wheel-Version", files=FILES, wheel_text="Wheel-Version: one\n"
    )


async def test_a_newer_major_wheel_version(tmp_path: Path) -> None:
    await refused(
        tmp_path,
        "Wheel-Version 2.0 is not supported",
        files=FILES,
        wheel_text="Wheel-Version: 2.0\nRoot-Is-Purelib: true\n",
    )


async def test_a_newer_minor_wheel_version_warns(tmp_path: Path) -> None:
    path = build_wheel(
        tmp_path, files=FILES, wheel_text="Wheel-Version: 1.9\nRoot-Is-Purelib: true\n"
    )

    with pytest.warns(WheelVersionWarning, match="1.9 is newer than 1.0"):
        unpacked = await unpack_one(path, tmp_path / "cache")

    assert unpacked.manifest.root_is_purelib


async def test_no_dist_info(tmp_path: Path) -> None:
    path = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("demo/__init__.py", "")
    await refused_archive(tmp_path, path, "no .dist-info directory")


async def test_two_dist_info_directories(tmp_path: Path) -> None:
    await refused(
        tmp_path, "more than one .dist-info", files={**FILES, "other-1.0.dist-info/METADATA": "x"}
    )


@pytest.mark.parametrize(
    "dist_info", ["other-1.0.dist-info", "demo-2.0.dist-info"], ids=["name", "version"]
)
async def test_a_dist_info_that_does_not_match_the_file_name(
    tmp_path: Path, dist_info: str
) -> None:
    await refused(tmp_path, "does not match the file name", files=FILES, dist_info=dist_info)


async def test_a_dist_info_matching_after_normalisation(tmp_path: Path) -> None:
    path = build_wheel(
        tmp_path,
        name="Foo.Bar",
        files={"foo/__init__.py": ""},
        filename="foo_bar-1.0-py3-none-any.whl",
    )

    unpacked = await unpack_one(path, tmp_path / "cache")

    assert unpacked.manifest.dist_info == "Foo.Bar-1.0.dist-info"


async def test_a_missing_record(tmp_path: Path) -> None:
    await refused(tmp_path, "missing demo-1.0.dist-info/RECORD", files=FILES, record=None)


def _edit(path: str, column: int, value: str):  # type: ignore[no-untyped-def]
    def edit(rows: list[list[str]]) -> list[list[str]]:
        return [[*r[:column], value, *r[column + 1 :]] if r[0] == path else r for r in rows]

    return edit


async def test_a_hash_that_does_not_match(tmp_path: Path) -> None:
    wrong = "sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
    error = await refused(
        tmp_path,
        "hash of demo/__init__.py does not match RECORD",
        files=FILES,
        record=_edit("demo/__init__.py", 1, wrong),
    )
    assert error.entry == "demo/__init__.py"


async def test_a_size_that_does_not_match(tmp_path: Path) -> None:
    await refused(
        tmp_path,
        "size of demo/__init__.py does not match RECORD",
        files=FILES,
        record=_edit("demo/__init__.py", 2, "999"),
    )


async def test_a_file_missing_from_record(tmp_path: Path) -> None:
    await refused(
        tmp_path,
        "demo/extra.py is not listed in RECORD",
        files=FILES,
        extra=[("demo/extra.py", b"")],
    )


async def test_a_record_row_for_a_file_not_in_the_archive(tmp_path: Path) -> None:
    await refused(
        tmp_path,
        "RECORD lists demo/ghost.py, which is not in the wheel",
        files=FILES,
        record=lambda rows: [*rows, ["demo/ghost.py", "sha256=abc", "3"]],
    )


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "whirlpool"])
async def test_weak_or_unknown_hash_algorithms(tmp_path: Path, algorithm: str) -> None:
    await refused(
        tmp_path,
        f"with '{algorithm}', not sha256 or stronger",
        files=FILES,
        record=_edit("demo/__init__.py", 1, f"{algorithm}=abc"),
    )


async def test_a_record_row_without_three_fields(tmp_path: Path) -> None:
    await refused(
        tmp_path,
        "has 2 fields, not 3",
        files=FILES,
        record=lambda rows: [r[:2] if r[0] == "demo/__init__.py" else r for r in rows],
    )


async def test_a_zip_bomb_by_declared_size(tmp_path: Path) -> None:
    path = tmp_path / "dist" / "demo-1.0-py3-none-any.whl"
    WheelSpec(files=FILES).build(tmp_path / "dist")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("demo/bomb.bin", b"\0" * 1000)
        archive.filelist[-1].file_size = 50 << 30  # the central directory now says 50 GiB
    await refused_archive(tmp_path, path, "zip bomb")


async def test_a_total_size_over_the_callers_limit(tmp_path: Path) -> None:
    path = build_wheel(tmp_path, files={"demo/big.bin": b"x" * 5000})

    with pytest.raises(InvalidWheelError, match="over the limit of 4,096"):
        await unpack_one(path, tmp_path / "cache", max_unpacked_size=4096)


async def test_sizes_that_lie_are_corrupt_entries(tmp_path: Path) -> None:
    path = tmp_path / "dist" / "demo-1.0-py3-none-any.whl"
    WheelSpec(files=FILES).build(tmp_path / "dist")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("demo/short.bin", b"y" * 1000)
        archive.filelist[-1].file_size = 10  # the central directory now says 10 bytes
    await refused_archive(tmp_path, path, "corrupt entry|not listed in RECORD")


async def test_a_file_directly_in_the_data_directory(tmp_path: Path) -> None:
    await refused(tmp_path, "belongs to no scheme", files={**FILES, "demo-1.0.data/stray.txt": "x"})


async def test_an_unknown_data_key(tmp_path: Path) -> None:
    error = await refused(
        tmp_path, "unknown scheme 'etc'", files={**FILES, "demo-1.0.data/etc/conf": "x"}
    )
    assert error.entry == "demo-1.0.data/etc/conf"


async def test_a_shipped_pycache_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = build_wheel(
        tmp_path, files={**FILES, "demo/__pycache__/__init__.cpython-311.pyc": b"\0\0"}
    )

    with pytest.warns(PycacheSkippedWarning, match="__pycache__") as caught:
        unpacked = await unpack_one(path, tmp_path / "cache")

    assert "demo/__pycache__/__init__.cpython-311.pyc" in str(caught[0].message)  # named

    assert not (Path(unpacked.tree) / "demo/__pycache__").exists()
    assert all("__pycache__" not in path for path in unpacked.manifest.files)


@pytest.mark.parametrize(
    ("entry_points", "reason"),
    [
        ("[console_scripts]\ntool = demo\n", "is not 'module:callable'"),
        ("[console_scripts]\n.. = demo:main\n", "is not a file name"),
        ("[console_scripts]\nsub/tool = demo:main\n", "is not a file name"),
        ("[gui_scripts]\n/abs = demo:main\n", "is not a file name"),
    ],
)
async def test_bad_entry_points(tmp_path: Path, entry_points: str, reason: str) -> None:
    await refused(tmp_path, reason, files=FILES, entry_points=entry_points)
