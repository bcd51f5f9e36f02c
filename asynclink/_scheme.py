"""Where an install puts things: the scheme of a target interpreter, venv or directory.

The paths come from the *target* interpreter's ``sysconfig`` (it may be another Python than the
one running asynclink), asked once in a subprocess and remembered in the cache, keyed by the
interpreter's identity, so a warm install starts no interpreter at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from ._errors import TargetError
from ._fsutil import absolute, write_memo

__all__ = ["SCHEME_KEYS", "Scheme", "scheme_for_python", "scheme_for_venv"]

#: The directories of a scheme, which are also the keys a wheel's ``.data`` may use.
SCHEME_KEYS = ("purelib", "platlib", "scripts", "headers", "data")

#: Stands for the environment's prefix in remembered schemes, so that every virtual
#: environment made from one interpreter shares one answer.
PREFIX = "{asynclink-prefix}"

#: Printed by the target interpreter: its scheme paths and the wheel tags it accepts. Our copy
#: of ``packaging`` is put on its path for the tags (it is pure Python and has no dependencies).
_QUERY = """
import json, os, sys, sysconfig
sys.path.insert(0, sys.argv[1])
from packaging.tags import sys_tags
venv = sys.prefix != sys.base_prefix
prefix = sys.argv[2] if venv else sys.prefix
paths = sysconfig.get_paths(vars={"base": prefix, "platbase": prefix} if venv else None)
version = "%d.%d" % sys.version_info[:2]
# pip's headers location in a venv, not the base Python's include directory
headers = os.path.join(prefix, "include", "site", "python" + version) if venv else paths["include"]
print(json.dumps({
    "purelib": paths["purelib"], "platlib": paths["platlib"], "scripts": paths["scripts"],
    "data": paths["data"], "headers": headers, "version": version,
    "tags": [str(t) for t in sys_tags()],
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
        return getattr(self, key) if key in SCHEME_KEYS else None

    @classmethod
    def for_directory(cls, site_packages: str | os.PathLike[str], interpreter: str = "") -> Scheme:
        """Install straight into a directory, as ``pip install --target`` does.

        Scripts go to ``<dir>/bin``, headers to ``<dir>/include``, data to ``<dir>``; no wheel
        tags are checked (there is no interpreter to ask).
        """
        root = absolute(site_packages)
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
    root = absolute(venv)
    if not os.path.isfile(os.path.join(root, "pyvenv.cfg")):
        raise TargetError(f"{root} is not a virtual environment (it has no pyvenv.cfg)")
    for name in ("bin/python", "bin/python3", "Scripts/python.exe"):
        python = os.path.join(root, name)
        if os.path.exists(python):
            return scheme_for_python(python, cache_dir)
    raise TargetError(f"the virtual environment {root} has no bin/python")


def scheme_for_python(python: str | os.PathLike[str], cache_dir: str | None = None) -> Scheme:
    """The scheme of the interpreter at ``python``; blocking, run it in a thread.

    The answer is cached in ``cache_dir`` under the identity of the real interpreter behind
    ``python`` (its inode, size and mtime). For a virtual environment it is kept with the
    environment's prefix left as a placeholder, so a fresh venv of a known interpreter (a
    package manager makes one per build) costs a read, not an interpreter start.
    """
    path = absolute(python)
    directory = os.path.dirname(os.path.dirname(path))
    venv = os.path.isfile(os.path.join(directory, "pyvenv.cfg"))
    real = os.path.realpath(path)
    try:
        info = os.stat(real)
    except OSError as error:
        raise TargetError(f"no interpreter at {path}: {error.strerror}") from error
    identity = [real, info.st_ino, info.st_size, info.st_mtime_ns, venv]
    if not venv:
        identity.append(path)
    memo = None
    if cache_dir is not None:
        name = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:32]
        memo = os.path.join(cache_dir, "interpreters-v2", f"{name}.json")
        try:
            with open(memo, encoding="utf-8") as handle:
                saved = json.load(handle)
            if saved.get("identity") == identity:
                return _scheme_from(saved["scheme"], path, directory)
        except (OSError, ValueError, KeyError, TypeError):
            pass
    found = _ask(path)
    if memo is not None:
        write_memo(memo, json.dumps({"identity": identity, "scheme": found}).encode())
    return _scheme_from(found, path, directory)


def _ask(python: str) -> dict[str, Any]:
    import subprocess

    import packaging

    packaging_parent = os.path.dirname(os.path.dirname(os.path.abspath(packaging.__file__)))
    try:
        done = subprocess.run(
            [python, "-I", "-c", _QUERY, packaging_parent, PREFIX],
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
    return answer


def _scheme_from(saved: dict[str, Any], interpreter: str, prefix: str) -> Scheme:
    """A remembered scheme with the prefix filled in and the interpreter as the caller named it
    (shebangs must say the venv's ``bin/python``, not the file it links to)."""
    paths = {key: str(saved[key]).replace(PREFIX, prefix) for key in SCHEME_KEYS}
    return Scheme(
        **paths, interpreter=interpreter, version=saved["version"], tags=tuple(saved["tags"])
    )
