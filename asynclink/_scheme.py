"""Where an install puts things: the scheme of a target interpreter, venv or directory.

The paths come from the *target* interpreter's ``sysconfig`` (it may be another Python than the
one running asynclink), asked once in a subprocess and remembered in the cache, keyed by the
interpreter's identity, so a warm install starts no interpreter at all.
"""

from __future__ import annotations

import binascii
import contextlib
import functools
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ._confinement import is_below
from ._errors import TargetError
from ._fsutil import absolute, read_small, write_memo

__all__ = [
    "INTERPRETER_MEMOS",
    "SCHEME_KEYS",
    "Scheme",
    "refuse_externally_managed",
    "resolve_target",
    "running_tags",
    "scheme_for_prefix",
    "scheme_for_python",
    "scheme_for_venv",
    "with_root",
]

#: The cache's directory of interpreter memos (see :func:`scheme_for_python`).
INTERPRETER_MEMOS = "interpreters-v4"

#: The directories of a scheme, which are also the keys a wheel's ``.data`` may use.
SCHEME_KEYS = ("purelib", "platlib", "scripts", "headers", "data")

#: Names in the scripts directory that belong to the environment itself (as uv refuses them):
#: ``python``, ``python3``, ``python3.12``, ``pythonw``, ``python3.13t``; ``activate`` and its
#: shell variants (``activate.fish``, ``Activate.ps1``, ``activate_this.py``), ``deactivate``.
_RESERVED_SCRIPT = re.compile(
    r"(pythonw?([0-9]+(\.[0-9]+)?t?)?(\.exe)?|activate.*|deactivate.*)", re.IGNORECASE
)

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
# pip's --prefix: the posix_prefix scheme below another prefix
chosen = sys.argv[3] if len(sys.argv) > 3 else None
prefix = chosen or (sys.argv[2] if venv else sys.prefix)
if chosen:
    bases = ("base", "platbase", "installed_base", "installed_platbase")
    paths = sysconfig.get_paths("posix_prefix", vars=dict.fromkeys(bases, prefix))
else:
    paths = sysconfig.get_paths(vars={"base": prefix, "platbase": prefix} if venv else None)
version = "%d.%d" % sys.version_info[:2]
# pip's headers location in a venv, not the base Python's include directory
headers = os.path.join(prefix, "include", "site", "python" + version) if venv else paths["include"]
if chosen:
    venv = True  # no PEP 668 marker applies below a prefix of the caller's
print(json.dumps({
    "purelib": paths["purelib"], "platlib": paths["platlib"], "scripts": paths["scripts"],
    "data": paths["data"], "headers": headers, "version": version,
    "tags": [str(t) for t in sys_tags()],
    # PEP 668: where a distributor's marker says "do not install here"; a venv is exempt
    "marker": "" if venv else os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"),
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
    externally_managed: str | None = None
    """PEP 668: the ``Error`` text of the interpreter's ``EXTERNALLY-MANAGED`` marker, when
    its environment belongs to a distributor's package manager (never for a venv)."""

    @property
    def roots(self) -> tuple[str, ...]:
        """Every directory of the scheme: the environment an install may change."""
        return tuple(getattr(self, key) for key in SCHEME_KEYS)

    def reserved(self, destination: str) -> str | None:
        """What of the environment's own ``destination`` is, if a wheel must not replace it:
        the interpreter (under any of its names), the activation scripts, ``pyvenv.cfg``."""
        if destination == self.interpreter:
            return "the environment's interpreter"
        directory, name = os.path.split(destination)
        if directory == self.scripts and _RESERVED_SCRIPT.fullmatch(name):
            return "the environment's interpreter or activation scripts"
        if directory == self.data and name == "pyvenv.cfg":
            return "the virtual environment's configuration"
        return None

    def path_for(self, key: str) -> str | None:
        """The directory of a ``.data/<key>/`` subdirectory, or ``None`` for an unknown key."""
        return getattr(self, key) if key in SCHEME_KEYS else None

    @classmethod
    def for_directory(
        cls,
        site_packages: str | os.PathLike[str],
        interpreter: str = "",
        tags: Sequence[str] | None = None,
    ) -> Scheme:
        """Install straight into a directory, as ``pip install --target`` does.

        Scripts go to ``<dir>/bin``, headers to ``<dir>/include``, data to ``<dir>``. Wheels
        must suit ``tags`` (default: those of the running interpreter, as pip's ``--target``
        checks; ``()`` accepts any wheel).
        """
        root = absolute(site_packages)
        return cls(
            purelib=root,
            platlib=root,
            scripts=os.path.join(root, "bin"),
            headers=os.path.join(root, "include"),
            data=root,
            interpreter=interpreter or sys.executable,
            tags=running_tags() if tags is None else tuple(tags),
        )


@functools.cache
def running_tags() -> tuple[str, ...]:
    """The wheel tags the running interpreter accepts, best first."""
    from packaging.tags import sys_tags

    return tuple(str(tag) for tag in sys_tags())


def _marker_error(marker: str) -> str | None:
    """The ``Error`` of a PEP 668 marker file, if there is one (pip's words if it says none)."""
    if not marker:
        return None
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(read_small(marker).decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, configparser.Error):
        parser.clear()
    text = parser.get("externally-managed", "Error", fallback="").strip()
    return text or (
        "The Python environment is managed externally, and may not be manipulated by the user. "
        "Please use specific tooling from the distributor of the Python installation to "
        "interact with this Python environment instead."
    )


def resolve_target(
    target: Scheme | str | os.PathLike[str], cache_dir: str, remember: bool
) -> Scheme:
    """A scheme from what the caller named: a scheme, a venv directory or an interpreter
    (whose answer is remembered in ``cache_dir`` if ``remember``); blocking."""
    if isinstance(target, Scheme):
        return target
    path = absolute(target)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "pyvenv.cfg")):
            return scheme_for_venv(path, cache_dir if remember else None)
        raise TargetError(
            f"{path} is a directory but not a virtual environment; to install straight into "
            "it, pass Scheme.for_directory(path) (the CLI's --target)"
        )
    if os.path.isfile(path):
        return scheme_for_python(path, cache_dir if remember else None)
    raise TargetError(f"{path} is neither a virtual environment nor an interpreter")


def refuse_externally_managed(scheme: Scheme) -> None:
    """PEP 668: refuse to install into a distributor's environment, quoting its marker."""
    if scheme.externally_managed is None:
        return
    raise TargetError(
        f"the environment of {scheme.interpreter} is externally managed (PEP 668), and its "
        f"distributor says:\n\n{scheme.externally_managed}\n\n"
        "Install into a virtual environment (--venv DIR) or a directory (--target DIR) instead, "
        "or pass --break-system-packages (break_system_packages=True) to install anyway, at "
        "the risk of breaking the system's Python."
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
        memo = os.path.join(cache_dir, INTERPRETER_MEMOS, f"{_memo_name(identity)}.json")
        try:
            with open(memo, encoding="utf-8") as handle:
                saved = json.load(handle)
            known = saved.get("identity") == identity and saved["scheme"]
            if known and _is_scheme(known) and (not venv or _below_prefix(known)):
                return _scheme_from(known, path, directory)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # a memo that is not one this cache wrote: ask again
    found = _ask(path)
    if memo is not None:
        write_memo(memo, json.dumps({"identity": identity, "scheme": found}).encode())
    return _scheme_from(found, path, directory)


def _memo_name(identity: list[object]) -> str:
    """A file name for the memo of an interpreter of this identity: a CRC and the length of
    its JSON. The memo repeats the identity and is used only if it matches, so a clash costs
    a question to the interpreter, never a wrong answer. Not ``hashlib``: importing it loads
    OpenSSL, 3 to 4 ms of every command."""
    data = json.dumps(identity).encode("utf-8", "surrogateescape")
    return f"{binascii.crc32(data):08x}-{len(data):x}"


def scheme_for_prefix(python: str | os.PathLike[str], prefix: str | os.PathLike[str]) -> Scheme:
    """pip's ``--prefix``: the interpreter's ``posix_prefix`` scheme with ``prefix`` for its
    own (``<prefix>/lib/pythonX.Y/site-packages``, ``<prefix>/bin``); blocking."""
    path, root = absolute(python), absolute(prefix)
    return _scheme_from(_ask(path, root), path, root)


def with_root(scheme: Scheme, root: str | os.PathLike[str]) -> Scheme:
    """pip's ``--root``: every directory of ``scheme`` moved below ``root`` (scripts still
    name the interpreter where it is, as pip's do)."""
    base = absolute(root)
    moved = {
        key: os.path.join(base, os.path.relpath(getattr(scheme, key), os.sep))
        for key in SCHEME_KEYS
    }
    real_base = os.path.realpath(base)
    for path in moved.values():  # a symlink below ROOT would move the install elsewhere
        real = os.path.realpath(path)
        if not is_below(real, (real_base,)):
            raise TargetError(
                f"{path} leads out of {base} (to {real}) through a symlink; refusing to "
                "install there"
            )
    return replace(scheme, externally_managed=None, **moved)  # type: ignore[arg-type]


def _ask(python: str, prefix: str | None = None) -> dict[str, Any]:
    import subprocess

    import packaging

    packaging_parent = os.path.dirname(os.path.dirname(os.path.abspath(packaging.__file__)))
    chosen = [prefix] if prefix is not None else []
    try:
        done = subprocess.run(
            [python, "-I", "-c", _QUERY, packaging_parent, PREFIX, *chosen],
            capture_output=True,
            check=False,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise TargetError(f"cannot run the interpreter {python}: {error}") from error
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace")
        raise TargetError(f"the interpreter {python} failed to report its scheme:\n{said}")
    answer: Any = None
    with contextlib.suppress(ValueError):  # UnicodeDecodeError included
        answer = json.loads(done.stdout.decode("utf-8"))
    if not _is_scheme(answer):
        raise TargetError(
            f"{python} does not answer as a Python interpreter does (its report of its "
            "scheme is not one); is it a Python 3 interpreter?"
        )
    scheme: dict[str, Any] = answer
    return scheme


def _is_scheme(answer: object) -> bool:
    """Whether ``answer`` has the shape of :data:`_QUERY`'s report (an interpreter's, or a
    memo's from the cache: neither is trusted to)."""
    if not isinstance(answer, dict):
        return False
    texts = (*SCHEME_KEYS, "version", "marker")
    tags = answer.get("tags")
    return (
        all(isinstance(answer.get(key), str) and "\0" not in answer[key] for key in texts)
        and isinstance(tags, list)
        and all(isinstance(tag, str) for tag in tags)
    )


def _below_prefix(saved: dict[str, Any]) -> bool:
    """Whether a venv's remembered scheme keeps every directory inside the venv: a memo edited
    to send them elsewhere is not used."""
    for key in SCHEME_KEYS:
        path = saved[key]
        if not (path == PREFIX or path.startswith(PREFIX + "/")) or ".." in path.split("/"):
            return False
    return True


def _scheme_from(saved: dict[str, Any], interpreter: str, prefix: str) -> Scheme:
    """A remembered scheme with the prefix filled in and the interpreter as the caller named it
    (shebangs must say the venv's ``bin/python``, not the file it links to)."""
    paths = {key: str(saved[key]).replace(PREFIX, prefix) for key in SCHEME_KEYS}
    return Scheme(
        **paths,
        interpreter=interpreter,
        version=saved["version"],
        tags=tuple(saved["tags"]),
        externally_managed=_marker_error(str(saved["marker"])),
    )
