"""``shared/CONFORMANCE.md``, line by line. Where a line is tested elsewhere, this says where.

1. Wheel-Version rules ............. test_unpack: test_a_newer_major_wheel_version,
                                     test_a_newer_minor_wheel_version_warns,
                                     test_wheel_file_without_a_version
2. Root-Is-Purelib ................. test_install: test_root_is_purelib_*
3. one matching dist-info .......... test_unpack: test_two_dist_info_directories,
                                     test_a_dist_info_*; here: build tags, nested dist-info
4. .data layout .................... test_unpack: test_a_file_directly_in_the_data_directory,
                                     test_an_unknown_data_key
5. RECORD is CSV ................... here; test_unpack: test_a_record_row_without_three_fields
6. RECORD hashes and sizes ......... test_unpack: test_a_hash_*, test_a_size_*,
                                     test_weak_or_unknown_hash_algorithms, test_a_record_row_for_*
7. installed RECORD ................ test_install: test_a_pure_wheel_lands_in_purelib_with_an_
                                     exact_record, test_every_data_key_*, test_console_and_gui_*
8. unsafe paths, entry-point names . test_unpack: test_unsafe_paths_are_refused,
                                     test_bad_entry_points; here: the name "."
9. shipped __pycache__ ............. test_unpack: test_a_shipped_pycache_is_skipped_with_a_warning
10. zip hygiene .................... test_unpack: test_not_a_zip, test_duplicate_entries,
                                     test_sizes_that_lie_*, test_a_symlink_member,
                                     test_a_non_utf8_name, test_a_utf8_name_without_the_flag_*;
                                     here: zip64, non-ASCII module names
11. case-only differences .......... test_unpack: test_entries_differing_only_in_case;
                                     test_conflicts: test_paths_differing_only_in_case_*
12. empty dirs, external_attr 0 .... here
13. #!python shebangs .............. test_install: test_python_shebangs_*, test_awkward_*
14. executable bits ................ here; test_install: test_data_scripts_are_executable_*
15. entry points ................... test_install: test_console_and_gui_entry_points_*;
                                     test_unpack: test_bad_entry_points
16. linked files never modified .... here; test_install: test_a_rewritten_script_is_a_copy_*;
                                     test_link_modes: test_record_is_always_a_copy
17. namespace packages ............. test_conflicts: test_namespace_packages_*
18. file versus directory .......... test_conflicts: test_a_module_file_and_a_package_*;
                                     test_link_modes: test_a_directory_in_the_way_*;
                                     test_transactions: the upgrade cases
19. serialised, atomic writes ...... test_scheduler: test_wheels_sharing_a_directory_*
20. .pth files last ................ test_install: test_top_level_pth_files_arrive_*
21. upgrades ....................... test_transactions
22. bytecode ....................... here; test_real_wheels (pip's uninstall removes .pyc)
23. headers in a venv .............. here; test_real_wheels: test_the_same_tree_as_uv
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from asynclink import InvalidWheelError, Scheme, install_wheels, scheme_for_venv
from tests.environments import make_venv
from tests.wheels import WheelSpec, build_wheel, record_hash, unpack_one

pytestmark = pytest.mark.anyio


@pytest.fixture
def target(tmp_path: Path) -> Scheme:
    return Scheme.for_directory(tmp_path / "target")


# 3 ---------------------------------------------------------------------------------------------


async def test_03_a_build_tag_in_the_file_name_still_matches(tmp_path: Path) -> None:
    path = build_wheel(
        tmp_path, files={"demo/__init__.py": ""}, filename="demo-1.0-1build-py3-none-any.whl"
    )
    assert (await unpack_one(path, tmp_path / "cache")).manifest.dist_info == "demo-1.0.dist-info"


async def test_03_a_nested_dist_info_is_just_data(tmp_path: Path, target: Scheme) -> None:
    files = {"demo/__init__.py": "", "demo/vendored/other-2.0.dist-info/METADATA": "x\n"}
    path = build_wheel(tmp_path, files=files)

    await install_wheels(target, [path], cache_dir=tmp_path / "cache", mode="copy")

    assert (Path(target.purelib) / "demo/vendored/other-2.0.dist-info/METADATA").exists()


# 5 ---------------------------------------------------------------------------------------------


async def test_05_quoted_paths_duplicate_rows_and_signatures(tmp_path: Path) -> None:
    files = {"demo/a,b.py": "A = 1\n", 'demo/say "hi".py': "B = 2\n"}

    def edit(rows: list[list[str]]) -> list[list[str]]:
        return [*rows, rows[0]]  # a repeated, identical row

    path = build_wheel(
        tmp_path,
        files=files,
        record=edit,
        extra=[("demo-1.0.dist-info/RECORD.jws", b"{}"), ("demo-1.0.dist-info/RECORD.p7s", b"")],
    )

    unpacked = await unpack_one(path, tmp_path / "cache")

    paths = set(unpacked.manifest.files)
    assert {"demo/a,b.py", 'demo/say "hi".py', "demo-1.0.dist-info/RECORD.jws"} <= paths


async def test_05_record_lists_itself_without_a_hash(tmp_path: Path) -> None:
    def hashed_self(rows: list[list[str]]) -> list[list[str]]:
        return [r if r[0] != "demo-1.0.dist-info/RECORD" else [r[0], "sha256=x", "1"] for r in rows]

    path = build_wheel(tmp_path, files={"demo/__init__.py": ""}, record=hashed_self)
    assert (await unpack_one(path, tmp_path / "cache")).manifest.name == "demo"


# 8 ---------------------------------------------------------------------------------------------


async def test_08_an_entry_point_named_dot_is_refused(tmp_path: Path) -> None:
    path = build_wheel(
        tmp_path, files={"demo/__init__.py": ""}, entry_points="[console_scripts]\n. = demo:main\n"
    )
    with pytest.raises(InvalidWheelError, match="is not a file name"):
        await unpack_one(path, tmp_path / "cache")


# 10 --------------------------------------------------------------------------------------------


async def test_10_zip64_archives_are_read(tmp_path: Path, target: Scheme) -> None:
    source = build_wheel(tmp_path / "plain", files={"demo/__init__.py": "X = 1\n"})
    zip64 = tmp_path / "dist" / source.name
    zip64.parent.mkdir()
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(zip64, "w") as new:
        for info in old.infolist():
            with old.open(info) as src, new.open(info, "w", force_zip64=True) as dst:
                dst.write(src.read())

    await install_wheels(target, [zip64], cache_dir=tmp_path / "cache", mode="copy")

    assert (Path(target.purelib) / "demo/__init__.py").read_text() == "X = 1\n"


async def test_10_non_ascii_module_names_install_and_import(tmp_path: Path, target: Scheme) -> None:
    path = build_wheel(tmp_path, files={"caf\u00e9/__init__.py": "N\u00c4ME = 'ok'\n"})

    await install_wheels(target, [path], cache_dir=tmp_path / "cache", mode="copy")

    code = "import caf\u00e9; print(caf\u00e9.N\u00c4ME)"
    output = subprocess.run(
        [sys.executable, "-c", code], cwd=target.purelib, capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "ok"


# 12 --------------------------------------------------------------------------------------------


async def test_12_empty_directory_entries_are_not_installed(tmp_path: Path, target: Scheme) -> None:
    path = build_wheel(
        tmp_path,
        files={"demo/__init__.py": ""},
        extra=[("demo/empty/", b""), ("demo/also/empty/", b"")],
    )

    await install_wheels(target, [path], cache_dir=tmp_path / "cache", mode="copy")

    assert not (Path(target.purelib) / "demo/empty").exists()
    assert not (Path(target.purelib) / "demo/also").exists()


async def test_12_external_attr_zero_is_an_ordinary_file(tmp_path: Path, target: Scheme) -> None:
    info = zipfile.ZipInfo("demo/plain.txt")
    info.external_attr = 0
    path = build_wheel(
        tmp_path,
        files={"demo/__init__.py": ""},
        extra=[(info, b"plain\n")],
        record=lambda rows: [*rows, ["demo/plain.txt", record_hash(b"plain\n"), "6"]],
    )

    await install_wheels(target, [path], cache_dir=tmp_path / "cache", mode="copy")

    installed = Path(target.purelib) / "demo/plain.txt"
    assert installed.read_text() == "plain\n"
    assert stat.S_ISREG(installed.stat().st_mode) and not os.access(installed, os.X_OK)


# 14 --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "executable"), [(0o744, True), (0o654, True), (0o644, False)])
async def test_14_any_x_bit_makes_an_executable_under_the_umask(
    tmp_path: Path, target: Scheme, mode: int, executable: bool
) -> None:
    info = zipfile.ZipInfo("demo/tool")
    info.external_attr = (stat.S_IFREG | mode) << 16
    path = build_wheel(
        tmp_path,
        files={"demo/__init__.py": ""},
        extra=[(info, b"#!/bin/sh\n")],
        record=lambda rows: [*rows, ["demo/tool", record_hash(b"#!/bin/sh\n"), "10"]],
    )
    umask = os.umask(0o027)
    try:
        await install_wheels(target, [path], cache_dir=tmp_path / "cache", mode="copy")
    finally:
        os.umask(umask)

    installed = (Path(target.purelib) / "demo/tool").stat().st_mode & 0o777
    assert installed == (0o750 if executable else 0o640)


# 16 --------------------------------------------------------------------------------------------


async def test_16_a_hardlinked_install_leaves_the_cache_untouched(
    tmp_path: Path, target: Scheme
) -> None:
    path = build_wheel(
        tmp_path,
        files={"demo/__init__.py": "", "demo-1.0.data/scripts/tool": "#!python\nprint(1)\n"},
        entry_points="[console_scripts]\ndemo-cli = demo:main\n",
    )
    unpacked = await unpack_one(path, tmp_path / "cache")
    tree = Path(unpacked.tree)
    before = {p: (p.stat().st_mode, p.read_bytes()) for p in tree.rglob("*") if p.is_file()}

    await install_wheels(target, [path], cache_dir=tmp_path / "cache", mode="hardlink")

    after = {p: (p.stat().st_mode, p.read_bytes()) for p in tree.rglob("*") if p.is_file()}
    assert after == before
    installed_record = Path(target.purelib) / "demo-1.0.dist-info/RECORD"
    assert not installed_record.samefile(tree / "demo-1.0.dist-info/RECORD")


# 22 --------------------------------------------------------------------------------------------


async def test_22_source_that_does_not_compile_does_not_fail_the_install(
    tmp_path: Path, target: Scheme
) -> None:
    files = {"demo/__init__.py": "GOOD = 1\n", "demo/broken.py": "def broken(:\n"}
    path = build_wheel(tmp_path, files=files)
    scheme = Scheme.for_directory(target.purelib, interpreter=sys.executable)

    result = await install_wheels(scheme, [path], cache_dir=tmp_path / "cache", compile=True)

    assert result.compiled == 1
    cache = Path(target.purelib) / "demo/__pycache__"
    assert [p.name.split(".")[0] for p in cache.iterdir()] == ["__init__"]


async def test_22_compilation_is_off_by_default(tmp_path: Path, target: Scheme) -> None:
    path = build_wheel(tmp_path, files={"demo/__init__.py": "GOOD = 1\n"})

    result = await install_wheels(target, [path], cache_dir=tmp_path / "cache")

    assert result.compiled == 0
    assert not (Path(target.purelib) / "demo/__pycache__").exists()


# 23 --------------------------------------------------------------------------------------------


def test_23_the_headers_of_a_venv_are_under_include_site(tmp_path: Path) -> None:
    make_venv(tmp_path / "venv")

    scheme = scheme_for_venv(tmp_path / "venv", str(tmp_path / "cache"))

    version = "python{}.{}".format(*sys.version_info[:2])
    assert scheme.headers == str(tmp_path / "venv/include/site" / version)
    assert scheme.purelib == str(tmp_path / f"venv/lib/{version}/site-packages")
    assert scheme.interpreter == str(tmp_path / "venv/bin/python")
    assert any(tag.endswith("-none-any") for tag in scheme.tags)


def test_23_every_venv_of_one_interpreter_shares_one_remembered_scheme(tmp_path: Path) -> None:
    for name in ("first", "second"):
        make_venv(tmp_path / name)
    first = scheme_for_venv(tmp_path / "first", str(tmp_path / "cache"))
    memos = list((tmp_path / "cache/interpreters-v3").iterdir())

    second = scheme_for_venv(tmp_path / "second", str(tmp_path / "cache"))

    assert len(memos) == 1 and list((tmp_path / "cache/interpreters-v3").iterdir()) == memos
    assert second.purelib == first.purelib.replace("/first/", "/second/")
    assert second.interpreter == str(tmp_path / "second/bin/python")
    assert second.tags == first.tags


def test_wheelspec_builds_valid_wheels(tmp_path: Path) -> None:
    # The builder itself: a default spec is a wheel pip would accept.
    path = WheelSpec(files={"demo/__init__.py": ""}).build(tmp_path)
    with zipfile.ZipFile(path) as archive:
        assert "demo-1.0.dist-info/RECORD" in archive.namelist()
