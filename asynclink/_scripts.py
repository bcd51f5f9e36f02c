"""Scripts: launchers for entry points, and ``#!python`` shebangs rewritten for the target.

The launcher is the one pip and pypa ``installer`` write (distlib's template), byte for byte; a
test holds ours against ``installer.scripts.Script``. We do not import ``installer`` for it:
importing it costs about 35 ms (it pulls in its whole package, ``email`` and ``csv`` included),
a third of a warm install of fifty wheels, to format one string.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

__all__ = ["EntryPoint", "launcher", "rewrite_shebang", "shebang"]


@dataclass(frozen=True, slots=True)
class EntryPoint:
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


def shebang(interpreter: str) -> bytes:
    """The first line(s) that make a script run with ``interpreter``.

    A path with a space, or too long for the kernel to read, gets the ``/bin/sh`` trampoline
    that pip and ``installer`` use: the shell runs the ``exec`` line, Python sees a string.
    """
    path = interpreter.encode("utf-8")
    if b" " not in path and len(path) + 3 <= _MAX_SHEBANG:
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
