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
from tests.environments import make_venv, pip_download
from tests.trees import snapshot

Completed = subprocess.CompletedProcess[str]

pytestmark = [pytest.mark.anyio, pytest.mark.network]

#: One pure wheel, one with a compiled extension, one with a console script, one with .data.
REAL_WHEELS = {
    "idna==3.10": "idna",
    "markupsafe==3.0.2": "markupsafe",
    "pyflakes==3.2.0": "pyflakes",
    "greenlet==3.1.1": "greenlet",
}
WHEEL_CACHE = Path(
    os.environ.get("ASYNCLINK_TEST_WHEELS", Path.home() / ".cache/asynclink-tests/wheels")
)


def run(*command: str | os.PathLike[str], env: dict[str, str] | None = None) -> Completed:
    return subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, check=True, env=env
    )


@pytest.fixture(scope="session")
def real_wheels() -> list[Path]:
    directory = WHEEL_CACHE / f"py{sys.version_info[0]}{sys.version_info[1]}"
    directory.mkdir(parents=True, exist_ok=True)
    try:
        done = pip_download(directory, *REAL_WHEELS)
    except subprocess.TimeoutExpired as error:
        pytest.skip(f"cannot download the real wheels from the package registry: {error}")
    if done.returncode != 0:
        pytest.skip(f"cannot download the real wheels from the package registry: {done.stderr}")
    wheels = sorted(directory.glob("*.whl"))
    assert len(wheels) >= len(REAL_WHEELS)
    return wheels


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
