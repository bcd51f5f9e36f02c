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
24. Wheel-Version 0.x installs ..... here
25. headers-dist, not headers.dist . here
26. setuptools wrappers skipped .... here; test_pip_wheels (pip's own script.wheel* wheels)
27. reserved names ................. here; test_hostile: console-script-python3, data-*,
                                     planted-*; test_confinement: journals and locks
28. PEP 668 ........................ here
29. METADATA matches the file name . test_hostile: metadata-of-another-project; here: renamed
30. no symlink followed out ........ test_confinement: the upgrade and recovery cases
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest

from asynclink import (
    InvalidWheelError,
    Scheme,
    TargetError,
    install_wheels,
    plan_install,
    scheme_for_venv,
)
from asynclink._scheme import INTERPRETER_MEMOS
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


def test_23_a_remembered_scheme_that_leaves_the_venv_is_not_used(tmp_path: Path) -> None:
    """The memo is the cache's, not the interpreter's word: one edited to send a venv's files
    elsewhere is asked again."""
    make_venv(tmp_path / "venv")
    truth = scheme_for_venv(tmp_path / "venv", str(tmp_path / "cache"))
    (memo,) = (tmp_path / "cache" / INTERPRETER_MEMOS).iterdir()
    saved = json.loads(memo.read_text())
    for key in ("purelib", "platlib", "scripts", "data"):
        saved["scheme"][key] = str(tmp_path / "outside")
    memo.write_text(json.dumps(saved))

    scheme = scheme_for_venv(tmp_path / "venv", str(tmp_path / "cache"))

    assert scheme == truth


def test_23_every_venv_of_one_interpreter_shares_one_remembered_scheme(tmp_path: Path) -> None:
    for name in ("first", "second"):
        make_venv(tmp_path / name)
    first = scheme_for_venv(tmp_path / "first", str(tmp_path / "cache"))
    memos = list((tmp_path / "cache" / INTERPRETER_MEMOS).iterdir())

    second = scheme_for_venv(tmp_path / "second", str(tmp_path / "cache"))

    assert len(memos) == 1 and list((tmp_path / "cache" / INTERPRETER_MEMOS).iterdir()) == memos
    assert second.purelib == first.purelib.replace("/first/", "/second/")
    assert second.interpreter == str(tmp_path / "second/bin/python")
    assert second.tags == first.tags


# 24 --------------------------------------------------------------------------------------------


async def test_24_a_wheel_version_below_1_installs_without_a_warning(
    tmp_path: Path, target: Scheme
) -> None:
    path = build_wheel(
        tmp_path / "dist",
        files={"demo/__init__.py": ""},
        wheel_text="Wheel-Version: 0.1\nRoot-Is-Purelib: true\n",
    )

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        await install_wheels(target, [path], cache_dir=tmp_path / "cache")

    assert (Path(target.purelib) / "demo/__init__.py").exists()


# 25 --------------------------------------------------------------------------------------------


async def test_25_headers_go_under_the_normalised_project_name(tmp_path: Path) -> None:
    venv = make_venv(tmp_path / "venv")
    path = build_wheel(
        tmp_path / "dist",
        name="headers.Dist",
        files={"headers_dist/__init__.py": "", "headers.Dist-1.0.data/headers/h.h": "int x;\n"},
    )

    await install_wheels(venv, [path], cache_dir=tmp_path / "cache")

    version = "python{}.{}".format(*sys.version_info[:2])
    assert (venv / "include/site" / version / "headers-dist/h.h").read_text() == "int x;\n"


# 26 --------------------------------------------------------------------------------------------


async def test_26_setuptools_wrappers_beside_an_entry_point_are_left_out(
    tmp_path: Path, target: Scheme
) -> None:
    wrappers = ["tool", "tool-script.py", "tool.exe", "tool.pya"]  # pip's and uv's list
    path = build_wheel(
        tmp_path / "dist",
        files={
            "demo/__init__.py": "def main(): pass\n",
            "demo-1.0.data/scripts/other": "#!/bin/sh\n",
            **{f"demo-1.0.data/scripts/{name}": "wrapper\n" for name in wrappers},
        },
        entry_points="[console_scripts]\ntool = demo:main\n",
    )

    await install_wheels(target, [path], cache_dir=tmp_path / "cache")

    scripts = Path(target.scripts)
    assert sorted(p.name for p in scripts.iterdir()) == ["other", "tool"]
    assert "wrapper" not in (scripts / "tool").read_text()
    record = (Path(target.purelib) / "demo-1.0.dist-info/RECORD").read_text()
    assert "tool-script" not in record and "tool.exe" not in record


# 27 --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["python", "python3", "python3.11", "pythonw", "activate", "Activate.ps1"]
)
async def test_27_a_console_script_may_not_replace_the_venv_interpreter_or_activation(
    tmp_path: Path, name: str
) -> None:
    venv = make_venv(tmp_path / "venv")
    before = {p.name: (p.is_symlink(), p.read_bytes()) for p in (venv / "bin").iterdir()}
    path = build_wheel(
        tmp_path / "dist",
        files={"demo/__init__.py": "def main(): pass\n"},
        entry_points=f"[console_scripts]\n{name} = demo:main\n",
    )

    with pytest.raises(InvalidWheelError, match=f"would replace .*bin/{name}") as caught:
        await install_wheels(venv, [path], cache_dir=tmp_path / "cache")

    assert caught.value.entry == f"entry point {name}"
    assert {p.name: (p.is_symlink(), p.read_bytes()) for p in (venv / "bin").iterdir()} == before
    ran = subprocess.run(
        [venv / "bin/python3", "-c", "print(42)"], capture_output=True, text=True, check=True
    )
    assert ran.stdout == "42\n"


async def test_27_a_data_file_may_not_replace_pyvenv_cfg(tmp_path: Path) -> None:
    venv = make_venv(tmp_path / "venv")
    before = (venv / "pyvenv.cfg").read_text()
    path = build_wheel(
        tmp_path / "dist",
        files={"demo/__init__.py": "", "demo-1.0.data/data/pyvenv.cfg": "home = /evil\n"},
    )

    with pytest.raises(InvalidWheelError, match=r"pyvenv\.cfg, the virtual environment's"):
        await install_wheels(venv, [path], cache_dir=tmp_path / "cache")

    assert (venv / "pyvenv.cfg").read_text() == before


# 28 --------------------------------------------------------------------------------------------

SYSTEM_PYTHON = Path("/usr/bin/python3")


def _marker_of(python: Path) -> Path | None:
    """The PEP 668 marker of a non-venv interpreter, if it has one."""
    if not python.exists():
        return None
    done = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    marker = Path(done.stdout.strip()) / "EXTERNALLY-MANAGED"
    return marker if done.returncode == 0 and marker.is_file() else None


@pytest.fixture
def managed_python() -> tuple[Path, Path]:
    """A distributor's interpreter with its EXTERNALLY-MANAGED marker (Debian's python3)."""
    marker = _marker_of(SYSTEM_PYTHON)
    if marker is None:
        pytest.skip(f"{SYSTEM_PYTHON} is not an externally managed interpreter here")
    return SYSTEM_PYTHON, marker


async def test_28_an_externally_managed_environment_is_refused_quoting_its_marker(
    tmp_path: Path, managed_python: tuple[Path, Path]
) -> None:
    python, marker = managed_python
    path = build_wheel(tmp_path / "dist", files={"demo/__init__.py": ""})
    first_line = next(
        line.partition("=")[2].strip()
        for line in marker.read_text().splitlines()
        if line.startswith("Error")
    )

    with pytest.raises(TargetError, match="externally managed") as caught:
        await install_wheels(python, [path], cache_dir=tmp_path / "cache")

    assert first_line in str(caught.value)
    assert "--break-system-packages" in str(caught.value)


async def test_28_breaking_the_seal_is_the_callers_explicit_choice(
    tmp_path: Path, managed_python: tuple[Path, Path]
) -> None:
    """Planned only (a dry run writes nothing): the system's Python is not for a test."""
    python, _ = managed_python
    path = build_wheel(tmp_path / "dist", files={"demo/__init__.py": ""})

    with pytest.raises(TargetError, match="externally managed"):
        await plan_install(python, [path], cache_dir=tmp_path / "cache")
    planned = await plan_install(
        python, [path], cache_dir=tmp_path / "cache", break_system_packages=True
    )

    assert [wheel.wheel for wheel in planned] == ["demo-1.0"]


def test_28_the_command_line_refuses_it_in_the_markers_words(
    tmp_path: Path, managed_python: tuple[Path, Path]
) -> None:
    python, _ = managed_python
    build_wheel(tmp_path / "dist", files={"demo/__init__.py": ""})

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "asynclink",
            "install",
            "--python",
            str(python),
            "--dry-run",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(tmp_path / "dist"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 2
    assert "externally managed (PEP 668)" in done.stderr and "Traceback" not in done.stderr


async def test_28_a_venv_is_never_externally_managed(tmp_path: Path) -> None:
    venv = make_venv(tmp_path / "venv")

    scheme = scheme_for_venv(venv, str(tmp_path / "cache"))

    assert scheme.externally_managed is None


# 29 --------------------------------------------------------------------------------------------


async def test_29_a_renamed_copy_of_a_cached_wheel_is_refused(
    tmp_path: Path, target: Scheme
) -> None:
    """The same bytes under another project's name: found in the cache by content, refused by
    name, as an archive seen for the first time would be."""
    good = build_wheel(tmp_path / "dist", files={"demo/__init__.py": ""})
    await install_wheels(target, [good], cache_dir=tmp_path / "cache")
    renamed = tmp_path / "evil" / "evil-1.0-py3-none-any.whl"
    renamed.parent.mkdir()
    renamed.write_bytes(good.read_bytes())

    with pytest.raises(InvalidWheelError, match="METADATA says Name: demo"):
        await install_wheels(target, [renamed], cache_dir=tmp_path / "cache")


async def test_29_a_file_not_named_whl_is_not_a_wheel(tmp_path: Path, target: Scheme) -> None:
    good = build_wheel(tmp_path / "dist", files={"demo/__init__.py": ""})
    await install_wheels(target, [good], cache_dir=tmp_path / "cache")  # cached by content
    renamed = good.with_suffix(".zip")
    good.rename(renamed)  # same inode: the cache's memo of this very file would say "cached"

    with pytest.raises(InvalidWheelError, match=r"is not a wheel: its name must end in \.whl"):
        await install_wheels(target, [renamed], cache_dir=tmp_path / "cache")


async def test_29_target_checks_the_running_interpreters_tags(tmp_path: Path) -> None:
    """As pip's --target does; ``check_tags=False`` is the caller's way out."""
    path = build_wheel(
        tmp_path / "dist", files={"demo/__init__.py": ""}, tag="cp311-cp311-win_amd64"
    )
    target = Scheme.for_directory(tmp_path / "target")

    with pytest.raises(InvalidWheelError, match="is not compatible with"):
        await install_wheels(target, [path], cache_dir=tmp_path / "cache")
    await install_wheels(target, [path], cache_dir=tmp_path / "cache", check_tags=False)

    assert (tmp_path / "target/demo/__init__.py").exists()


def test_wheelspec_builds_valid_wheels(tmp_path: Path) -> None:
    # The builder itself: a default spec is a wheel pip would accept.
    path = WheelSpec(files={"demo/__init__.py": ""}).build(tmp_path)
    with zipfile.ZipFile(path) as archive:
        assert "demo-1.0.dist-info/RECORD" in archive.namelist()
