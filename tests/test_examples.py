"""The examples run as a user runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from unittest.mock import ANY

import pytest

from tests.environments import make_venv, pip_download
from tests.trees import wheel_tree
from tests.wheels import build_wheel

EXAMPLES = Path(__file__).parent.parent / "examples"


def from_the_registry(tmp_path: Path, *requirements: str) -> None:
    """Skip the test, with the reason, unless pip can download a wheel of each requirement
    (the package registry is unreachable, or lacks it)."""
    for requirement in requirements:
        done = pip_download(tmp_path / "probe", requirement)
        if done.returncode != 0:
            reason = done.stderr.strip().splitlines()[-1:]
            pytest.skip(f"the package registry is unreachable, or lacks {requirement}: {reason}")


def batch_install(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """Run the batch install example with its caches and venv in ``tmp_path``; it reports on
    stderr."""
    command = [sys.executable, str(EXAMPLES / "batch_install.py"), *options]
    command += ["--cache-dir", str(tmp_path / "cache"), "--venv", str(tmp_path / "venv")]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stderr
    return done


def table_row(output: str, package: str) -> list[str]:
    """The cells of ``package``'s row in the example's table: package, version, action, files,
    mode, unpacked, import."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in re.split(r"[│|]", line)[1:-1]]
        if cells and cells[0] == package:
            return cells
    raise AssertionError(f"no row for {package} in:\n{output}")


@pytest.mark.network
def test_batch_install_end_to_end_then_from_the_caches(tmp_path: Path) -> None:
    """A cold run resolves with pip and unpacks every wheel, saying by whom; a second run
    skips pip and takes every wheel unpacked from the cache, into a fresh venv again."""
    from_the_registry(tmp_path, "six", "idna", "attrs")
    first = batch_install(tmp_path, "six", "idna", "attrs")
    second = batch_install(tmp_path, "six", "idna", "attrs")

    assert "cold run: pip resolved and downloaded 3 wheels, unpacked 3 now" in first.stderr
    for name in ("six", "idna", "attrs"):
        assert re.search(rf"unpacked {name}-\S+ in (a thread|a helper process): ", first.stderr)
        assert table_row(first.stderr, name)[2:] == ["installed", ANY, ANY, "now", "ok"]
    assert (
        "warm run: reused the resolution and 3 downloaded wheels (no pip), "
        "took 3 unpacked from the cache"
    ) in second.stderr
    assert not re.search(r"unpacked \S+ in ", second.stderr)
    for name in ("six", "idna", "attrs"):
        assert table_row(second.stderr, name)[2:] == ["installed", ANY, ANY, "cached", "ok"]
    assert (tmp_path / "venv/bin/python").exists()


@pytest.mark.network
def test_batch_install_into_the_kept_venv_skips_every_installed_wheel(tmp_path: Path) -> None:
    """With ``--keep-venv``, a second run finds every wheel installed already: it shows each
    skip as it happens, places no file, and still imports every package."""
    from_the_registry(tmp_path, "six", "idna")
    batch_install(tmp_path, "six", "idna", "--keep-venv")

    second = batch_install(tmp_path, "six", "idna", "--keep-venv")

    for name in ("six", "idna"):
        assert re.search(rf"skipped {name}-\S+: installed already", second.stderr)
        assert table_row(second.stderr, name)[2:] == ["skipped", "0", "", "", "ok"]
    assert "skipped 2, installed already" in second.stderr


@pytest.mark.network
def test_batch_install_into_the_kept_venv_says_what_it_upgraded(tmp_path: Path) -> None:
    """With ``--keep-venv``, a newer version of an installed package replaces it, and the
    table says from which version."""
    from_the_registry(tmp_path, "six==1.16.0", "six==1.17.0")
    batch_install(tmp_path, "six==1.16.0", "--keep-venv")

    second = batch_install(tmp_path, "six==1.17.0", "--keep-venv")

    assert table_row(second.stderr, "six")[1:3] == ["1.17.0", "upgraded from 1.16.0"]


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


# -- the tiny package manager: a lock file, a venv, sync_wheels ---------------------------------


def build(wheels: Path, name: str, version: str) -> Path:
    """A small pure wheel of ``name`` at ``version`` in the folder ``wheels`` (built once)."""
    built = wheels / f"{name}-{version}-py3-none-any.whl"
    if built.exists():
        return built
    files = {f"{name}/__init__.py": f"VERSION = {version!r}\n"}
    return build_wheel(wheels, name=name, version=version, files=files)


def write_lock_file(lock_file: Path, wheels: list[Path]) -> None:
    """A lock file in the example's format: comments, a blank line, paths relative to it."""
    lines = ["# the wheels this environment must hold", ""]
    lines += [f"{wheel.relative_to(lock_file.parent)}  # {wheel.name}" for wheel in wheels]
    lock_file.write_text("\n".join(lines) + "\n")


def tiny_package_manager(
    lock_file: Path, venv: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    """Run the example as a user does, with asynclink's cache in the lock file's folder."""
    command = [sys.executable, str(EXAMPLES / "tiny_package_manager.py"), str(lock_file)]
    return subprocess.run(
        [*command, "--venv", str(venv), *options],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ASYNCLINK_CACHE_DIR": str(lock_file.parent / "cache")},
    )


def sections(output: str) -> dict[str, list[str]]:
    """The report by its headings' first word: ``{"Upgraded": [" - b 1.0", " + b 2.0"]}``."""
    found: dict[str, list[str]] = {}
    lines: list[str] = []
    for line in output.splitlines():
        if line.startswith(" "):
            lines.append(line)
        elif line:
            lines = found.setdefault(line.split()[0], [])
    return found


def pip_list(venv: Path) -> set[tuple[str, str]]:
    """What the real pip sees installed in ``venv``: (name, version) pairs."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    done = subprocess.run(
        [*pip, "--python", str(venv / "bin/python"), "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {(entry["name"], entry["version"]) for entry in json.loads(done.stdout)}


@dataclass
class Project:
    """A folder with a lock file and its wheels, and the venv the tiny package manager syncs."""

    root: Path

    @property
    def lock_file(self) -> Path:
        return self.root / "wheels.lock"

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    def lock(self, *wheels: tuple[str, str]) -> None:
        write_lock_file(self.lock_file, [build(self.root / "wheels", *w) for w in wheels])

    def sync(self, *options: str) -> subprocess.CompletedProcess[str]:
        done = tiny_package_manager(self.lock_file, self.venv, *options)
        assert done.returncode == 0, done.stderr
        return done


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A project locked to alpha 1.0, beta 1.0 and gamma 1.0, with an empty venv."""
    project = Project(tmp_path)
    make_venv(project.venv)
    project.lock(("alpha", "1.0"), ("beta", "1.0"), ("gamma", "1.0"))
    return project


@pytest.fixture
def synced(project: Project) -> Project:
    """The project after its first sync, its lock file then changed: beta bumped to 2.0,
    gamma dropped, delta added (alpha stays)."""
    project.sync()
    project.lock(("alpha", "1.0"), ("beta", "2.0"), ("delta", "1.0"))
    return project


def test_tiny_package_manager_first_sync_installs_every_locked_wheel(project: Project) -> None:
    """Into an empty venv, every wheel of the lock file is installed, and nothing else."""
    done = project.sync()

    assert sections(done.stdout)["Installed"] == [" + alpha 1.0", " + beta 1.0", " + gamma 1.0"]
    assert not {"Upgraded", "Skipped", "Removed"} & sections(done.stdout).keys()
    assert pip_list(project.venv) == {("alpha", "1.0"), ("beta", "1.0"), ("gamma", "1.0")}


def test_tiny_package_manager_second_sync_installs_only_the_added_wheel(synced: Project) -> None:
    """A wheel added to the lock file is installed."""
    done = synced.sync()

    assert sections(done.stdout)["Installed"] == [" + delta 1.0"]


def test_tiny_package_manager_second_sync_upgrades_the_bumped_wheel(synced: Project) -> None:
    """A wheel whose version went up replaces the installed one, shown as uv shows it."""
    done = synced.sync()

    assert sections(done.stdout)["Upgraded"] == [" - beta 1.0", " + beta 2.0"]


def test_tiny_package_manager_second_sync_removes_the_dropped_wheel(synced: Project) -> None:
    """A distribution no longer in the lock file is removed."""
    done = synced.sync()

    assert sections(done.stdout)["Removed"] == [" - gamma 1.0"]


def test_tiny_package_manager_second_sync_skips_the_unchanged_wheel(synced: Project) -> None:
    """A wheel that is installed already, the same file, is skipped."""
    done = synced.sync()

    assert sections(done.stdout)["Skipped"] == [" = alpha 1.0"]


def test_tiny_package_manager_leaves_exactly_the_lock_file_installed(synced: Project) -> None:
    """After the sync, the real pip finds the lock file's distributions and versions, no more."""
    synced.sync()

    assert pip_list(synced.venv) == {("alpha", "1.0"), ("beta", "2.0"), ("delta", "1.0")}


def test_tiny_package_manager_lists_the_environment_at_the_end(synced: Project) -> None:
    """The output ends with ``asynclink.installed``: each distribution, version, installer."""
    done = synced.sync()

    listing = [line.split() for line in sections(done.stdout)["Synced"]]
    assert listing == [
        ["alpha", "1.0", "asynclink"],
        ["beta", "2.0", "asynclink"],
        ["delta", "1.0", "asynclink"],
    ]


def test_tiny_package_manager_changes_nothing_when_the_lock_file_did_not_change(
    project: Project,
) -> None:
    """A second sync with the same lock file skips every wheel and removes nothing."""
    project.sync()

    done = project.sync()

    assert sections(done.stdout)["Skipped"] == [" = alpha 1.0", " = beta 1.0", " = gamma 1.0"]
    assert not {"Installed", "Upgraded", "Removed"} & sections(done.stdout).keys()


def test_tiny_package_manager_runs_on_trio(synced: Project) -> None:
    """``--backend trio`` runs the same sync on trio."""
    done = synced.sync("--backend", "trio")

    assert sections(done.stdout)["Upgraded"] == [" - beta 1.0", " + beta 2.0"]
    assert pip_list(synced.venv) == {("alpha", "1.0"), ("beta", "2.0"), ("delta", "1.0")}


def test_tiny_package_manager_creates_a_missing_venv(tmp_path: Path) -> None:
    """A venv that does not exist yet is created, then synced."""
    project = Project(tmp_path)
    project.lock(("alpha", "1.0"))

    done = project.sync()

    assert f"Created a virtual environment at {project.venv}" in done.stdout
    assert pip_list(project.venv) == {("alpha", "1.0")}


def test_tiny_package_manager_refuses_a_line_that_is_not_a_wheel(project: Project) -> None:
    """A lock file line that does not name a ``.whl`` file is an error with its line number,
    and the environment is not touched."""
    project.lock_file.write_text("# a typo\nalpha-1.0-py3-none-any.wh\n")

    done = tiny_package_manager(project.lock_file, project.venv)

    assert done.returncode == 2
    assert "line 2: 'alpha-1.0-py3-none-any.wh' is not a .whl file" in done.stderr
    assert pip_list(project.venv) == set()
