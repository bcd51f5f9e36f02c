"""The public surface: what ``asynclink`` exports is what ``__all__`` says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import asynclink
from tests.commandline import install_into
from tests.environments import make_venv
from tests.wheels import build_wheel


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in dir(asynclink) if not name.startswith("_")}
    assert set(asynclink.__all__) == public
    assert all(getattr(asynclink, name) is not None for name in asynclink.__all__)


def test_importing_the_package_loads_nothing_else() -> None:
    # The command line's start-up is part of every install it runs: "import asynclink" must
    # not import the engine, anyio or rich until a name is used.
    code = (
        "import sys, asynclink; "
        "print(sorted(m for m in sys.modules if m.startswith(('asynclink.', 'anyio', 'rich'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_warm_install_from_the_command_line_imports_only_what_it_needs(
    tmp_path: Path,
) -> None:
    # Every module is start-up time the user waits for: pathlib and shutil (bz2, lzma) are
    # needed to unpack an archive, not to link one from the cache, and rich only on a terminal.
    wheel = build_wheel(tmp_path / "wheels", name="demo", files={"demo/__init__.py": ""})
    cache = tmp_path / "cache"
    code = (
        "import sys; from asynclink._cli import main; "
        "code = main(sys.argv[1:]); "
        "print(code, sorted(m for m in ('pathlib', 'shutil', 'bz2', 'lzma', 'rich') "
        "if m in sys.modules))"
    )
    venvs = [make_venv(tmp_path / "cold"), make_venv(tmp_path / "warm")]
    printed = [
        subprocess.run(
            [sys.executable, "-c", code, *install_into(venv, cache, wheel)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for venv in venvs
    ]
    assert printed[0].startswith("0 ") and printed[1] == "0 []"
    assert all(next(venv.glob("lib/python*/site-packages/demo/__init__.py")) for venv in venvs)


def test_every_error_shares_one_root() -> None:
    errors = [
        getattr(asynclink, name)
        for name in asynclink.__all__
        if isinstance(getattr(asynclink, name), type)
        and issubclass(getattr(asynclink, name), Exception)
        and not issubclass(getattr(asynclink, name), Warning)
    ]
    assert errors
    assert all(issubclass(error, asynclink.AsyncLinkError) for error in errors)


def test_every_warning_shares_one_root() -> None:
    warnings = [
        getattr(asynclink, name)
        for name in asynclink.__all__
        if isinstance(getattr(asynclink, name), type)
        and issubclass(getattr(asynclink, name), Warning)
    ]
    assert len(warnings) >= 3
    assert all(issubclass(warning, asynclink.AsyncLinkWarning) for warning in warnings)
