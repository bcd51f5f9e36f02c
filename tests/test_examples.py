"""The examples run as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.environments import pip_download
from tests.trees import wheel_tree

EXAMPLES = Path(__file__).parent.parent / "examples"


def registry_reachable(tmp_path: Path) -> bool:
    return pip_download(tmp_path / "probe", "six").returncode == 0


@pytest.mark.network
def test_batch_install_end_to_end_then_from_the_caches(tmp_path: Path) -> None:
    if not registry_reachable(tmp_path):
        pytest.skip("the package registry is unreachable, so pip download cannot resolve")
    command = [
        sys.executable,
        str(EXAMPLES / "batch_install.py"),
        "six",
        "idna",
        "attrs",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--venv",
        str(tmp_path / "venv"),
    ]

    first = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    second = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)

    assert first.returncode == 0, first.stderr
    assert "first run: downloaded and unpacked 3 wheels" in first.stderr
    assert second.returncode == 0, second.stderr
    assert "second run: reused the resolution and 3 downloaded wheels" in second.stderr
    for name in ("six", "idna", "attrs"):
        row = next(line for line in second.stderr.splitlines() if f" {name} " in line)
        assert "ok" in row and "cached" in row
    assert (tmp_path / "venv/bin/python").exists()


def test_link_unpacked_example(tmp_path: Path) -> None:
    wheel = wheel_tree(tmp_path / "wheel", "demo", {"demo/__init__.py": "X = 1\n"})
    target = tmp_path / "target"
    target.mkdir()

    done = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "link_unpacked.py"),
            str(target),
            str(wheel),
            "--mode",
            "copy",
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "demo-1.0: 3 files by copy" in done.stdout
    assert (target / "demo/__init__.py").read_text() == "X = 1\n"
