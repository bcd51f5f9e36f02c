"""The scan after the batch: modules that two wheels provide with different contents."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from asynclink import ConflictFound, link_wheels
from tests.trees import wheel_tree

pytestmark = pytest.mark.anyio


async def install(tmp_path: Path, wheels: dict[str, dict[str, str]], **options: object):  # type: ignore[no-untyped-def]
    sources = [wheel_tree(tmp_path / name, name, files) for name, files in wheels.items()]
    site_packages = tmp_path / "site-packages"
    site_packages.mkdir()
    return await link_wheels(site_packages, sources, mode="copy", **options)  # type: ignore[arg-type]


async def test_two_wheels_with_different_files_at_one_path_conflict(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    result = await install(
        tmp_path,
        {
            "opencv_python": {"cv2/__init__.py": "a = 1\n"},
            "opencv_contrib": {"cv2/__init__.py": "a = 1\nb = 2\n"},
        },
    )

    (conflict,) = result.conflicts
    assert conflict.path == "cv2/__init__.py"
    assert sorted(conflict.wheels) == ["opencv_contrib-1.0", "opencv_python-1.0"]
    assert "cv2/__init__.py is provided by more than one wheel" in caplog.text


async def test_a_conflict_deep_in_a_shared_tree_is_found(tmp_path: Path) -> None:
    deep = "top/a/b/c/d/module.py"
    result = await install(
        tmp_path,
        {
            "first": {deep: "x = 1\n", "top/a/only_first.py": ""},
            "second": {deep: "x = 2\n", "top/a/b/only_second.py": ""},
        },
    )

    assert [c.path for c in result.conflicts] == [deep]
    assert result.conflicts[0].reason == "different contents"


async def test_same_size_different_bytes_is_still_a_conflict(tmp_path: Path) -> None:
    result = await install(tmp_path, {"one": {"mod.py": "x = 1\n"}, "two": {"mod.py": "x = 2\n"}})

    assert [c.path for c in result.conflicts] == ["mod.py"]


async def test_namespace_packages_with_identical_init_do_not_conflict(tmp_path: Path) -> None:
    init = "__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n"
    result = await install(
        tmp_path,
        {
            "nvidia_cublas": {"nvidia/__init__.py": init, "nvidia/cublas/lib.py": "a\n"},
            "nvidia_cudnn": {"nvidia/__init__.py": init, "nvidia/cudnn/lib.py": "bb\n"},
            "nvidia_nccl": {"nvidia/__init__.py": init, "nvidia/nccl/lib.py": "ccc\n"},
        },
    )

    assert result.conflicts == ()


async def test_a_module_file_and_a_package_directory_conflict(tmp_path: Path) -> None:
    result = await install(
        tmp_path,
        {
            "multipart": {"multipart.py": "old = True\n"},
            "python_multipart": {"multipart/__init__.py": "new = True\n"},
        },
    )

    (conflict,) = result.conflicts
    assert conflict.path == "multipart"
    assert "multipart.py" in conflict.reason and "multipart/" in conflict.reason


async def test_paths_differing_only_in_case_are_compared(tmp_path: Path) -> None:
    result = await install(
        tmp_path, {"upper": {"Yaml/__init__.py": "u\n"}, "lower": {"yaml/__init__.py": "ll\n"}}
    )

    assert len(result.conflicts) == 1


async def test_conflicts_are_events_too(tmp_path: Path) -> None:
    events: list[object] = []
    result = await install(
        tmp_path,
        {"one": {"mod.py": "1\n"}, "two": {"mod.py": "22\n"}},
        on_event=events.append,
    )

    assert result.conflicts
    assert [e.conflict for e in events if isinstance(e, ConflictFound)] == list(result.conflicts)


async def test_the_scan_can_be_switched_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="asynclink"):
        result = await install(
            tmp_path,
            {"one": {"mod.py": "1\n"}, "two": {"mod.py": "22\n"}},
            check_conflicts=False,
        )

    assert result.conflicts == ()
    assert "more than one wheel" not in caplog.text


async def test_wheels_without_shared_names_do_not_conflict(tmp_path: Path) -> None:
    result = await install(
        tmp_path, {name: {f"{name}/__init__.py": name} for name in ("a", "b", "c", "d")}
    )

    assert result.conflicts == ()
