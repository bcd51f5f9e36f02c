"""Scripts: launchers for entry points, and ``#!python`` shebangs rewritten for the target.

Which launchers an environment gets (pip's versioned ``pip3.X``), which ``.data/scripts``
files a launcher replaces (setuptools' wrappers), and how much of a script must be read to
tell whether it is rewritten, are decided here too.

The launcher is the one pip and pypa ``installer`` write (distlib's template), byte for byte; a
test holds ours against ``installer.scripts.Script``. We do not import ``installer`` for it:
importing it costs about 35 ms (it pulls in its whole package, ``email`` and ``csv`` included),
a third of a warm install of fifty wheels, to format one string.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from ._errors import TargetError

__all__ = [
    "EntryPoint",
    "launcher",
    "launchers_for",
    "read_script",
    "rewrite_shebang",
    "setuptools_wrappers",
    "shebang",
]


class EntryPoint(NamedTuple):
    """A console or GUI script declared in ``entry_points.txt``."""

    name: str
    module: str
    attr: str
    section: str
    """``console`` or ``gui``."""


_LAUNCHER = """\
# -*- coding: utf-8 -*-
import re
import sys
from {module} import {import_name}
if __name__ == "__main__":
    sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])
    sys.exit({func_path}())
"""

#: Linux reads at most 127 bytes of a ``#!`` line (``BINPRM_BUF_SIZE`` was 128 until 5.1).
_MAX_SHEBANG = 127
#: What a ``#!`` line cannot hold in its interpreter's path: it ends at whitespace.
_BREAKS_SHEBANG = re.compile(rb"[\s\x00-\x1f\x7f]")


def shebang(interpreter: str) -> bytes:
    """The first line(s) that make a script run with ``interpreter``.

    A path with whitespace or a control character (the kernel ends the ``#!`` line at the
    first), or too long for the kernel to read, gets the ``/bin/sh`` trampoline that pip and
    ``installer`` use: the shell runs the ``exec`` line, Python sees a string. A path that is
    not UTF-8 cannot be named in a Python source file at all: :class:`~asynclink.TargetError`.
    """
    try:
        path = interpreter.encode("utf-8")
    except UnicodeEncodeError:
        raise TargetError(
            f"the interpreter path {interpreter!r} is not UTF-8, so no script can name it"
        ) from None
    if not _BREAKS_SHEBANG.search(path) and len(path) + 3 <= _MAX_SHEBANG:
        return b"#!" + path
    quoted = shlex.quote(interpreter).encode("utf-8")
    return b"#!/bin/sh\n'''exec' " + quoted + b' "$0" "$@"\n' + b"' '''"


def launcher(entry: EntryPoint, interpreter: str) -> bytes:
    """The console (or, on POSIX identical, GUI) script for an entry point."""
    code = _LAUNCHER.format(
        module=entry.module,
        import_name=entry.attr.split(".")[0],
        func_path=entry.attr,
    )
    return shebang(interpreter) + b"\n" + code.encode("utf-8")


def rewrite_shebang(content: bytes, interpreter: str) -> bytes | None:
    """``content`` with a ``#!python`` first line made to run ``interpreter``; else ``None``.

    The whole first line is replaced (``#!pythonw`` and arguments such as ``-E`` included, as
    pip, installer and uv do); a CRLF first line loses its CR, the rest is left as it was.
    """
    if not content.startswith(b"#!python"):
        return None
    end = content.find(b"\n")
    rest = b"" if end < 0 else content[end + 1 :]
    return shebang(interpreter) + b"\n" + rest


def read_script(path: str) -> bytes:
    """A script's bytes: all of them if it starts with ``#!python``, else enough to tell."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        return head + handle.read() if head == b"#!python" else head


def launchers_for(entry_points: Sequence[EntryPoint], version: str) -> list[EntryPoint]:
    """The launchers to write for ``entry_points`` into an environment of Python ``version``.

    pip's own wheel names its versioned launcher after the Python that built it (``pip3.12``),
    or has none; pip and uv write ``pip3.<minor>`` of the *target* instead, and so does this.
    """
    names = {entry.name for entry in entry_points}
    template = next((e for e in entry_points if e.name == "pip3"), None)
    if template is None or "pip" not in names:
        return list(entry_points)
    kept = [entry for entry in entry_points if not _VERSIONED_PIP.fullmatch(entry.name)]
    return [*kept, template._replace(name=f"pip{version}")]


_VERSIONED_PIP = re.compile(r"pip[0-9]+\.[0-9]+")


def setuptools_wrappers(launchers: Iterable[str]) -> set[str]:
    """The ``.data/scripts`` files pip and uv leave out beside a generated launcher of the
    same name: setuptools' ``<name>``, ``<name>-script.py``, ``<name>.exe``, ``<name>.pya``.
    (Both install a ``<name>-script.pyw``, and so does asynclink.)"""
    suffixes = ("", "-script.py", ".exe", ".pya")
    return {name + suffix for name in launchers for suffix in suffixes}
