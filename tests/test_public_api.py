"""The public surface: what ``asynclink`` exports is what ``__all__`` says."""

from __future__ import annotations

import subprocess
import sys

import asynclink


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
