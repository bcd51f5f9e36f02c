"""Real wheels from PyPI, installed by asynclink and judged by pip and by uv.

The wheels are downloaded once (``pip download``) into ``~/.cache/asynclink-tests`` and reused;
when the registry cannot be reached the tests are skipped with that reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asynclink import install_wheels
from tests.environments import REAL_WHEELS, make_venv, pip_download
from tests.trees import snapshot

Completed = subprocess.CompletedProcess[str]

pytestmark = [pytest.mark.anyio, pytest.mark.network]


def run(*command: str | os.PathLike[str], env: dict[str, str] | None = None) -> Completed:
    return subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, check=True, env=env
    )


def site_packages(venv: Path) -> Path:
    (found,) = venv.glob("lib/python*/site-packages")
    return found


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # these tests exercise pip and uv, not the event loop


async def test_pip_sees_checks_and_uninstalls_what_asynclink_installed(
    tmp_path: Path, real_wheels: list[Path]
) -> None:
    venv = make_venv(tmp_path / "venv", with_pip=True)
    python = venv / "bin/python"
    before = snapshot(venv)

    result = await install_wheels(
        venv, real_wheels, cache_dir=tmp_path / "cache", mode="hardlink", compile=True
    )

    assert {w.wheel.split("-")[0].lower() for w in result.wheels} == set(REAL_WHEELS.values())
    assert result.compiled > 0
    listed = {
        p["name"].lower()
        for p in json.loads(run(python, "-m", "pip", "list", "--format=json").stdout)
    }
    assert set(REAL_WHEELS.values()) <= listed
    run(python, "-m", "pip", "check")
    for name in REAL_WHEELS.values():
        shown = run(python, "-m", "pip", "show", "--verbose", "--files", name).stdout
        assert "\nInstaller: asynclink\n" in shown
        files = shown.split("Files:\n", 1)[1].split()
        location = shown.split("Location: ", 1)[1].split("\n", 1)[0]
        assert files and all((Path(location) / f).exists() for f in files)
    run(python, "-c", "import idna, markupsafe, pyflakes, greenlet; greenlet.getcurrent()")
    assert "3.2.0" in run(venv / "bin/pyflakes", "--version").stdout
    assert (venv / "include/site").is_dir()  # greenlet's headers, from its .data directory

    run(python, "-m", "pip", "uninstall", "-y", *REAL_WHEELS.values())

    left = sorted(set(snapshot(venv)) - set(before))
    assert left == leftovers_of_pip_itself(tmp_path / "judge", real_wheels)


def leftovers_of_pip_itself(venv: Path, wheels: list[Path]) -> list[str]:
    """What pip's own install and uninstall of the same wheels leaves behind: empty parents of
    the headers directory (``include/site/pythonX.Y``), which pip does not prune."""
    make_venv(venv, with_pip=True)
    before = snapshot(venv)
    python = venv / "bin/python"
    run(python, "-m", "pip", "install", "--no-deps", "--no-index", *wheels)
    run(python, "-m", "pip", "uninstall", "-y", *REAL_WHEELS.values())
    return sorted(set(snapshot(venv)) - set(before))


def tree_digest(root: Path) -> dict[str, str]:
    found = {}
    for path, (kind, mode, content) in snapshot(root).items():
        if kind == "file":
            found[path] = f"{mode:o} " + hashlib.sha256(content).hexdigest()  # type: ignore[arg-type]
        else:
            found[path] = kind
    return found


#: Files that legitimately differ between two installers.
def expected_difference(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    in_dist_info = ".dist-info/" in path
    return (
        in_dist_info
        and name
        in {
            "INSTALLER",
            "RECORD",
            "REQUESTED",
            "direct_url.json",
            "uv_cache.json",
            "asynclink.json",
        }
    ) or "__pycache__" in path


async def test_the_same_tree_as_uv(tmp_path: Path, real_wheels: list[Path]) -> None:
    ours = make_venv(tmp_path / "ours", with_pip=False)
    theirs = make_venv(tmp_path / "theirs", with_pip=False)

    await install_wheels(ours, real_wheels, cache_dir=tmp_path / "cache", mode="copy")
    env = {**os.environ, "UV_CACHE_DIR": str(tmp_path / "uv-cache"), "UV_NO_PROGRESS": "1"}
    run(
        sys.executable,
        "-m",
        "uv",
        "pip",
        "install",
        "--python",
        theirs / "bin/python",
        "--no-deps",
        "--link-mode",
        "copy",
        *real_wheels,
        env=env,
    )

    mine, uvs = tree_digest(site_packages(ours)), tree_digest(site_packages(theirs))
    differences = sorted(
        f"{path}: asynclink={mine.get(path)} uv={uvs.get(path)}"
        for path in set(mine) | set(uvs)
        if mine.get(path) != uvs.get(path) and not expected_difference(path)
    )
    print("\n".join(differences) or "no differences")
    assert differences == []
    scripts_ours = {p.name for p in (ours / "bin").iterdir()}
    scripts_uv = {p.name for p in (theirs / "bin").iterdir()}
    assert scripts_ours == scripts_uv
    headers = "include/site/python{}.{}/greenlet/greenlet.h".format(*sys.version_info[:2])
    assert (ours / headers).read_bytes() == (theirs / headers).read_bytes()


async def test_installing_pip_writes_the_targets_versioned_launcher(tmp_path: Path) -> None:
    """pip's wheel names its launchers ``pip`` and ``pip3``; pip and uv add ``pip3.<minor>``
    of the target interpreter, and record it."""
    directory = tmp_path / "wheels"
    done = pip_download(directory, "pip==25.0")
    if done.returncode != 0:
        pytest.skip(f"cannot download pip's wheel from the package registry: {done.stderr}")
    venv = make_venv(tmp_path / "venv")
    versioned = "pip{}.{}".format(*sys.version_info[:2])

    result = await install_wheels(venv, list(directory.glob("*.whl")), cache_dir=tmp_path / "c")

    assert {"pip", "pip3", versioned} <= set(result.wheels[0].scripts)
    ran = run(venv / "bin" / versioned, "--version")
    assert ran.stdout.startswith("pip 25.0")
    record = (site_packages(venv) / "pip-25.0.dist-info/RECORD").read_text()
    assert f"../../../bin/{versioned}," in record


def listed_by_pip(python: Path) -> set[tuple[str, str]]:
    shown = json.loads(run(python, "-m", "pip", "list", "--format=json").stdout)
    return {(canonical(p["name"]), p["version"]) for p in shown}


def listed_by_uv(tmp_path: Path, python: Path) -> set[tuple[str, str]]:
    shown = json.loads(uv_pip(tmp_path, "list", "--format=json", "--python", python).stdout)
    return {(canonical(p["name"]), p["version"]) for p in shown}


def listed_by_asynclink(venv: Path, cache: Path) -> set[tuple[str, str]]:
    command = ("-m", "asynclink", "list", "--json", "--venv", venv, "--cache-dir", cache)
    shown = json.loads(run(sys.executable, *command).stdout)
    return {(canonical(d["project"]), d["version"]) for d in shown["distributions"]}


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


async def test_pip_list_and_uv_pip_list_agree_with_asynclink_list(
    tmp_path: Path, real_wheels: list[Path]
) -> None:
    venv = make_venv(tmp_path / "venv", with_pip=True)
    python = venv / "bin/python"
    run(sys.executable, "-m", "asynclink", "install", "--venv", venv, *real_wheels,
        "--cache-dir", tmp_path / "cache")  # fmt: skip

    ours = listed_by_asynclink(venv, tmp_path / "cache")

    assert {name for name, _ in ours} >= set(REAL_WHEELS.values())
    assert ours == listed_by_pip(python) == listed_by_uv(tmp_path, python)
    run(python, "-m", "pip", "check")


async def test_asynclink_uninstalls_what_pip_installed(
    tmp_path: Path, real_wheels: list[Path]
) -> None:
    venv = make_venv(tmp_path / "venv", with_pip=True)
    python = venv / "bin/python"
    before = snapshot(venv)
    run(python, "-m", "pip", "install", "--no-deps", "--no-index", *real_wheels)

    run(sys.executable, "-m", "asynclink", "uninstall", "--venv", venv, *REAL_WHEELS.values(),
        "--cache-dir", tmp_path / "cache")  # fmt: skip

    assert not {name for name, _ in listed_by_pip(python)} & set(REAL_WHEELS.values())
    left = sorted(set(snapshot(venv)) - set(before))
    assert set(left) <= set(leftovers_of_pip_itself(tmp_path / "judge", real_wheels))
    run(python, "-m", "pip", "check")


async def test_uv_uninstalls_what_asynclink_installed(
    tmp_path: Path, real_wheels: list[Path]
) -> None:
    venv = make_venv(tmp_path / "venv")
    before = snapshot(venv)
    await install_wheels(venv, real_wheels, cache_dir=tmp_path / "cache")

    uv_pip(tmp_path, "uninstall", "--python", venv / "bin/python", *REAL_WHEELS.values())

    left = sorted(set(snapshot(venv)) - set(before))
    assert left == leftovers_of_uv_itself(tmp_path, real_wheels)


def uv_pip(tmp_path: Path, *arguments: str | os.PathLike[str]) -> Completed:
    env = {**os.environ, "UV_CACHE_DIR": str(tmp_path / "uv-cache"), "UV_NO_PROGRESS": "1"}
    return run(sys.executable, "-m", "uv", "pip", *arguments, env=env)


def leftovers_of_uv_itself(tmp_path: Path, wheels: list[Path]) -> list[str]:
    """What uv's own install and uninstall of the same wheels leaves behind: its ``.lock``,
    and the headers' directories, which it does not prune."""
    venv = make_venv(tmp_path / "uv-judge")
    before = snapshot(venv)
    uv_pip(tmp_path, "install", "--no-deps", "--python", venv / "bin/python", *wheels)
    uv_pip(tmp_path, "uninstall", "--python", venv / "bin/python", *REAL_WHEELS.values())
    return sorted(set(snapshot(venv)) - set(before))
