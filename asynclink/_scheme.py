"""Where an install puts things: the scheme of a target interpreter, venv or directory.

The paths come from the *target* interpreter's ``sysconfig`` (it may be another Python than the
one running asynclink), asked once in a subprocess and remembered in the cache, keyed by the
interpreter's identity, so a warm install starts no interpreter at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import packaging

from ._errors import TargetError
from ._fsutil import write_memo

__all__ = ["Scheme", "scheme_for_python", "scheme_for_venv"]

#: Printed by the target interpreter: its scheme paths and the wheel tags it accepts. Our copy
#: of ``packaging`` is put on its path for the tags (it is pure Python and has no dependencies).
_QUERY = """
import json, os, sys, sysconfig
sys.path.insert(0, sys.argv[1])
from packaging.tags import sys_tags
paths = sysconfig.get_paths()
if sys.prefix != sys.base_prefix:  # a venv: pip's headers location, not the base Python's
    version = "python%d.%d" % sys.version_info[:2]
    headers = os.path.join(sys.prefix, "include", "site", version)
else:
    headers = paths["include"]
print(json.dumps({
    "purelib": paths["purelib"], "platlib": paths["platlib"], "scripts": paths["scripts"],
    "data": paths["data"], "headers": headers, "interpreter": sys.executable,
    "version": "%d.%d" % sys.version_info[:2], "tags": [str(t) for t in sys_tags()],
}))
"""


@dataclass(frozen=True, slots=True)
class Scheme:
    """The directories a wheel's parts go to, and the interpreter its scripts run with."""

    purelib: str
    platlib: str
    scripts: str
    headers: str
    """The base headers directory; a wheel's headers go to ``<headers>/<distribution>``."""
    data: str
    interpreter: str
    """Written into script shebangs, and used to compile bytecode."""
    version: str = f"{sys.version_info[0]}.{sys.version_info[1]}"
    """``X.Y`` of the interpreter."""
    tags: tuple[str, ...] = ()
    """Wheel tags the interpreter accepts, best first; empty: accept any wheel."""

    def path_for(self, key: str) -> str | None:
        """The directory of a ``.data/<key>/`` subdirectory, or ``None`` for an unknown key."""
        if key in ("purelib", "platlib", "scripts", "headers", "data"):
            return str(getattr(self, key))
        return None

    @classmethod
    def for_directory(cls, site_packages: str | os.PathLike[str], interpreter: str = "") -> Scheme:
        """Install straight into a directory, as ``pip install --target`` does.

        Scripts go to ``<dir>/bin``, headers to ``<dir>/include``, data to ``<dir>``; no wheel
        tags are checked (there is no interpreter to ask).
        """
        root = os.path.abspath(os.fspath(site_packages))
        return cls(
            purelib=root,
            platlib=root,
            scripts=os.path.join(root, "bin"),
            headers=os.path.join(root, "include"),
            data=root,
            interpreter=interpreter or sys.executable,
        )


def scheme_for_venv(venv: str | os.PathLike[str], cache_dir: str | None = None) -> Scheme:
    """The scheme of a virtual environment, asked of its own interpreter."""
    root = os.path.abspath(os.fspath(venv))
    if not os.path.isfile(os.path.join(root, "pyvenv.cfg")):
        raise TargetError(f"{root} is not a virtual environment (it has no pyvenv.cfg)")
    for name in ("bin/python", "bin/python3", "Scripts/python.exe"):
        python = os.path.join(root, name)
        if os.path.exists(python):
            return scheme_for_python(python, cache_dir)
    raise TargetError(f"the virtual environment {root} has no bin/python")


def scheme_for_python(python: str | os.PathLike[str], cache_dir: str | None = None) -> Scheme:
    """The scheme of the interpreter at ``python``; blocking, run it in a thread.

    The answer is cached in ``cache_dir`` under the interpreter's path, and trusted while the
    interpreter file (and its ``pyvenv.cfg``, for a venv) keep their identity and mtime.
    """
    path = os.path.abspath(os.fspath(python))
    try:
        identity = _identity(path)
    except OSError as error:
        raise TargetError(f"no interpreter at {path}: {error.strerror}") from error
    memo = None
    if cache_dir is not None:
        name = hashlib.sha256(path.encode()).hexdigest()[:32]
        memo = os.path.join(cache_dir, "interpreters-v1", f"{name}.json")
        try:
            with open(memo, encoding="utf-8") as handle:
                saved = json.load(handle)
            if saved.get("identity") == identity:
                return _scheme_from(saved["scheme"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    found = _ask(path)
    if memo is not None:
        write_memo(memo, json.dumps({"identity": identity, "scheme": found}).encode())
    return _scheme_from(found)


def _identity(python: str) -> list[object]:
    real = os.stat(python)
    identity: list[object] = [python, real.st_ino, real.st_size, real.st_mtime_ns]
    cfg = os.path.join(os.path.dirname(os.path.dirname(python)), "pyvenv.cfg")
    try:
        identity.append(os.stat(cfg).st_mtime_ns)
    except OSError:
        identity.append(None)
    return identity


def _ask(python: str) -> dict[str, Any]:
    packaging_parent = os.path.dirname(os.path.dirname(os.path.abspath(packaging.__file__)))
    try:
        done = subprocess.run(
            [python, "-I", "-c", _QUERY, packaging_parent],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    except OSError as error:
        raise TargetError(f"cannot run the interpreter {python}: {error}") from error
    if done.returncode != 0:
        raise TargetError(f"the interpreter {python} failed to report its scheme:\n{done.stderr}")
    answer: dict[str, Any] = json.loads(done.stdout)
    # Shebangs name the interpreter as the caller did (a venv's bin/python, not what it links to).
    answer["interpreter"] = python
    return answer


def _scheme_from(saved: dict[str, Any]) -> Scheme:
    return Scheme(**{**saved, "tags": tuple(saved.get("tags") or ())})
