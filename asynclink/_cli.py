"""The ``asynclink`` command: ``install``, ``sync``, ``uninstall``, ``list`` and ``cache``.

Exit codes: 0 success, 1 the command failed (the message names the wheel and the path), 2 the
command line was wrong (argparse's own convention) or the target cannot be used, 128 + the
signal's number when ``SIGINT`` (130), ``SIGTERM`` (143) or ``SIGHUP`` (129) stopped it: the
install rolled back first (unless it was compiling bytecode, after the commit: a warning says
so).

Start-up time counts for a tool that installs fifty wheels in a tenth of a second: this module
imports only ``argparse``, ``os``, ``signal`` and ``sys`` at the top (and what they bring);
the engine, ``anyio`` and (on a terminal only) ``rich`` come after the arguments are known to
be good. What each command does is ``_commands``'s.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

if TYPE_CHECKING:
    from ._modes import LinkMode

__all__ = ["main", "run"]

T = TypeVar("T")

EXAMPLES = """\
examples:
  asynclink install --venv .venv dist/*.whl
  asynclink install --python /usr/bin/python3.12 --link-mode copy wheelhouse/
  asynclink install --target build/site-packages --dry-run requests-2.32.3-py3-none-any.whl
  asynclink sync --venv .venv wheelhouse/          # exactly these wheels, nothing else
  asynclink uninstall --venv .venv requests idna
  asynclink list --venv .venv --json
  asynclink cache verify

environment:
  ASYNCLINK_LINK_MODE   default for --link-mode
  ASYNCLINK_CACHE_DIR   default for --cache-dir
  ASYNCLINK_INFLATER    zlib: inflate with the standard library even where python-isal is
  VIRTUAL_ENV           the target when none of --python, --venv, --target is given
  NO_COLOR              no colours (unless --color always)
"""


def _columns() -> int:
    """The terminal's width, read as ``shutil.get_terminal_size`` reads it: ``COLUMNS``, else
    the terminal of stdout, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0 and sys.__stdout__ is not None:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, told the width: left to itself it imports ``shutil`` (and with it
    ``bz2`` and ``lzma``) to ask, 3 ms of every command's start-up, help or not."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        width = _columns() - 2 if width is None else width
        super().__init__(prog, indent_increment, max_help_position, width)


class _RawDescriptionFormatter(_Formatter, argparse.RawDescriptionHelpFormatter):
    """The same, with the description and epilog (the examples) printed as written."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error prints one line of usage and the error, not the whole
    usage block."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        usage = self.usage or self.format_usage().split("\n", 1)[0].removeprefix("usage: ")
        self.exit(2, f"usage: {usage}\n{self.prog}: error: {message}\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _link_mode(text: str) -> LinkMode:
    from ._modes import LinkMode

    try:
        return LinkMode.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


class _Version(argparse.Action):
    """``--version``: the installed distribution's version, read only when asked."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("asynclink")
        except PackageNotFoundError:
            found = "(not installed)"
        print(f"asynclink {found}")
        parser.exit(0)


def _output_options(suppress: bool) -> _Parser:
    """-v, -q and --color, given before or after the command (after it, ``suppress`` keeps
    the command's copy from overwriting what was given before it)."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    options = _Parser(add_help=False)
    options.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default(0),
        help="more detail in the log (-vv: all of it)",
    )
    options.add_argument(
        "-q", "--quiet", action="store_true", default=default(False), help="print errors only"
    )
    options.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default=default("auto"),
        help="colour on a terminal (default: auto, and never when NO_COLOR is set)",
    )
    return options


def _target_options() -> _Parser:
    options = _Parser(add_help=False)
    where = options.add_mutually_exclusive_group()
    where.add_argument("--python", metavar="PATH", help="the environment of this interpreter")
    where.add_argument("--venv", metavar="DIR", help="this virtual environment")
    where.add_argument(
        "--target", metavar="DIR", help="straight into this directory (scripts in DIR/bin)"
    )
    options.add_argument(
        "--prefix",
        metavar="DIR",
        help="the interpreter's layout below DIR (DIR/lib/pythonX.Y/site-packages, DIR/bin)",
    )
    options.add_argument(
        "--root", metavar="DIR", help="every directory of the target moved below DIR"
    )
    options.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where unpacked wheels are kept (default: $ASYNCLINK_CACHE_DIR, else "
        "$XDG_CACHE_HOME/asynclink, else ~/.cache/asynclink)",
    )
    options.add_argument(
        "--lock-timeout",
        type=float,
        metavar="SECONDS",
        help="give up if another installer holds the target longer (default: wait)",
    )
    options.add_argument(
        "--break-system-packages",
        action="store_true",
        help="change an interpreter's environment even if its distributor manages it "
        "(PEP 668's EXTERNALLY-MANAGED marker)",
    )
    options.add_argument(
        "--json", action="store_true", help="print a machine-readable report on stdout"
    )
    return options


def _install_options() -> _Parser:
    options = _Parser(add_help=False)
    options.add_argument("wheels", nargs="+", metavar="WHEEL_OR_DIR")
    options.add_argument(
        "--link-mode",
        type=_link_mode,
        metavar="MODE",
        help="clone (reflink), hardlink, copy or symlink; default: $ASYNCLINK_LINK_MODE, else "
        "clone on Linux and macOS (falling back to hardlink, then copy), hardlink elsewhere",
    )
    options.add_argument(
        "-j", "--jobs", type=_positive, metavar="N", help="wheels installed at once"
    )
    options.add_argument(
        "--compile", action="store_true", help="compile the installed Python files to bytecode"
    )
    options.add_argument(
        "--reinstall",
        action="store_true",
        help="install even the wheels that are installed already (same version, same wheel)",
    )
    options.add_argument(
        "--no-direct-url",
        action="store_true",
        help="do not record the wheel files as direct URLs (direct_url.json, PEP 610)",
    )
    options.add_argument(
        "--no-tag-check",
        action="store_true",
        help="install wheels whose tags the target interpreter does not accept",
    )
    options.add_argument(
        "--no-conflict-check",
        action="store_true",
        help="skip the scan for files that two wheels provide differently",
    )
    options.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be placed and where; write nothing (not even the cache)",
    )
    return options


def _parser() -> _Parser:
    parser = _Parser(
        prog="asynclink",
        usage="asynclink [--version] [-v] [-q] [--color WHEN] COMMAND ...",
        description="Install many wheels into one Python environment at once.",
        epilog=EXAMPLES,
        formatter_class=_RawDescriptionFormatter,
        parents=[_output_options(suppress=False)],
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    output, target, install = _output_options(True), _target_options(), _install_options()
    install_command = commands.add_parser(
        "install",
        prog="asynclink install",
        parents=[output, target, install],
        usage="asynclink install [options] WHEEL_OR_DIR...",
        help="install wheels (.whl files, directories of them, or unpacked wheels)",
        description="Install .whl files (or every .whl in a directory, or an unpacked wheel "
        "directory) into a virtual environment, an interpreter's environment or a directory. "
        "Archives are unpacked into a cache once and linked from there; a wheel already "
        "installed is skipped.",
    )
    install_command.set_defaults(subparser=install_command)
    sync = commands.add_parser(
        "sync",
        prog="asynclink sync",
        parents=[output, target, install],
        usage="asynclink sync [options] WHEEL_OR_DIR...",
        help="make the environment hold exactly these wheels",
        description="Install what is missing, replace what differs, skip what is the same, "
        "and remove every other distribution (but pip, or those --keep names).",
    )
    sync.add_argument(
        "--keep",
        action="append",
        metavar="NAME",
        help="a distribution to keep though no wheel is for it (default: pip)",
    )
    sync.add_argument("--keep-nothing", action="store_true", help="remove pip too")
    sync.set_defaults(subparser=sync)
    uninstall = commands.add_parser(
        "uninstall",
        prog="asynclink uninstall",
        parents=[output, target],
        usage="asynclink uninstall [options] NAME...",
        help="remove distributions",
        description="Remove distributions by name: every file their RECORD lists, their "
        ".pyc files and scripts, and the directories that leaves empty.",
    )
    uninstall.add_argument("names", nargs="+", metavar="NAME")
    uninstall.add_argument(
        "--missing-ok", action="store_true", help="a name that is not installed is no error"
    )
    uninstall.add_argument(
        "--dry-run", action="store_true", help="show what would be removed; remove nothing"
    )
    uninstall.set_defaults(subparser=uninstall)
    listing = commands.add_parser(
        "list",
        prog="asynclink list",
        parents=[output, target],
        usage="asynclink list [options]",
        help="list the installed distributions",
    )
    listing.set_defaults(subparser=listing)
    cache = commands.add_parser(
        "cache",
        prog="asynclink cache",
        parents=[output],
        usage="asynclink cache {dir,clean,prune,verify} [options]",
        help="show, check or empty the cache of unpacked wheels",
        description="dir: where the cache is; verify: check every unpacked wheel against its "
        "RECORD hashes; prune: remove what no install can use; clean: remove all of it.",
    )
    cache.add_argument("action", choices=("dir", "clean", "prune", "verify"))
    cache.add_argument("--cache-dir", metavar="DIR", help="the cache (default as for install)")
    cache.add_argument(
        "--remove", action="store_true", help="verify: remove the entries that differ"
    )
    cache.add_argument("--json", action="store_true", help="print a machine-readable report")
    cache.set_defaults(subparser=cache)
    return parser


class Interrupted(BaseException):
    """A signal asked the command to stop (``signum``); nothing is left half done."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


#: The signals that stop the command as ``SIGINT`` does: the install rolls back, then the exit
#: status is ``128 + signum``.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signum)


def _catch_stop_signals() -> None:
    """Outside the event loop (before it starts, after it ends) a stop signal raises
    :class:`Interrupted`: nothing is being written then, so stopping at once is safe. Inside
    it, :func:`_interruptible` turns the signal into a cancellation instead."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_interrupted)


async def _interruptible(work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` until it ends or a stop signal arrives, which cancels it (the install rolls
    back) and then raises :class:`Interrupted`.

    The signals are caught until ``work`` has returned: a second Ctrl-C while the rollback
    runs must not stop it halfway (the event loop's own handler, or the system's default for
    ``SIGTERM``, would), leaving two versions of a distribution side by side."""
    import anyio
    import anyio.abc

    received: list[int] = []
    finished: list[T] = []

    async def watch(scope: anyio.CancelScope, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
            task_status.started()
            async for signum in signals:
                received.append(signum)
                scope.cancel()  # again, for a later signal: the rollback is shielded

    failed: list[Exception] = []
    async with anyio.create_task_group() as group:
        working = anyio.CancelScope()
        await group.start(watch, working)  # listening before any work starts
        with working:
            try:
                finished.append(await work())
            except Exception as error:  # raised below as itself, not in an ExceptionGroup
                failed.append(error)
        group.cancel_scope.cancel()
    if failed:
        raise failed[0]
    if not finished:
        raise Interrupted(received[0] if received else signal.SIGINT)
    return finished[0]


def _lines_of(error: Exception) -> str:
    """An error's message for the terminal: its lines kept, a control character in a name it
    quotes (a METADATA field, a path) shown as ``?``."""
    from ._confinement import printable

    return "\n".join(printable(line) for line in str(error).split("\n"))


class _LogFormatter(logging.Formatter):
    """``asynclink: warning: ...``, as the errors read."""

    def format(self, record: logging.LogRecord) -> str:
        from ._confinement import printable  # a message may quote a name from outside

        return f"asynclink: {record.levelname.lower()}: {printable(record.getMessage())}"


def _configure_logging(verbose: int, quiet: bool) -> None:
    """Show the ``asynclink`` logger on stderr, one line a record: warnings and errors (only
    errors with ``-q``; information too with ``-v``, everything with ``-vv``). The warnings
    module's copy of each warning (a line of source code under it) is left out."""
    import warnings

    from ._errors import AsyncLinkWarning

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormatter())
    logger = logging.getLogger("asynclink")
    logger.addHandler(handler)
    levels = {0: logging.WARNING, 1: logging.INFO}
    logger.setLevel(logging.ERROR if quiet else levels.get(verbose, logging.DEBUG))
    logger.propagate = False
    warnings.simplefilter("ignore", AsyncLinkWarning)


def run() -> None:
    """The ``asynclink`` command: :func:`main`, then exit without the interpreter's teardown.

    Everything is done and closed by then (the install committed, its lock released, its files
    closed); freeing the objects of a large install one by one would only add about 14 ms (as
    much as a tenth of a warm install) to what the user waits for.
    """
    try:
        code = main()
    except BrokenPipeError:  # the reader went away (``asynclink ... --json | head``)
        code = 1
    except Interrupted as stop:  # while printing the result: the install is done
        code = 128 + stop.signum
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            code = code or 1
    transaction = sys.modules.get("asynclink._transaction")  # imported if anything was installed
    if transaction is not None:
        try:
            transaction.finish_discards()  # a rolled-back install's journal, which a thread deletes
        except Interrupted as stop:  # stopped again: the next install deletes what is left
            code = code or 128 + stop.signum
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    _catch_stop_signals()
    try:
        return _main(argv)
    except Interrupted as stop:
        print("asynclink: interrupted", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print("asynclink: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    color = args.color == "always" or (args.color == "auto" and not os.environ.get("NO_COLOR"))
    _configure_logging(args.verbose, args.quiet)

    from . import _commands
    from ._errors import AsyncLinkError, TargetError

    try:
        work = _commands.prepare(args, args.subparser, color)
        if isinstance(work, int):  # done before any event loop was needed
            return work
        import anyio

        return anyio.run(_interruptible, work)
    except TargetError as error:
        print(f"asynclink: error: {_lines_of(error)}", file=sys.stderr)
        return 2
    except AsyncLinkError as error:
        print(f"asynclink: error: {_lines_of(error)}", file=sys.stderr)
        return 1
    finally:
        _catch_stop_signals()  # the event loop put back the system's defaults
