"""The ``asynclink`` command: ``asynclink install WHEEL_OR_DIR...``.

Exit codes: 0 success, 1 the install failed (the message names the wheel and the path), 2 the
command line was wrong (argparse's own convention), 128 + the signal's number when ``SIGINT``
(130), ``SIGTERM`` (143) or ``SIGHUP`` (129) stopped it: the install rolled back first.

Start-up time counts for a tool that installs fifty wheels in a tenth of a second: this module
imports only ``argparse``, ``os`` and ``sys`` at the top; the engine, ``anyio`` and (on a
terminal only) ``rich`` come after the arguments are known to be good.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import warnings
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ._dryrun import PlannedWheel
    from ._modes import LinkMode
    from ._results import InstallResult
    from ._scheme import Scheme

__all__ = ["main", "run"]

T = TypeVar("T")

EXAMPLES = """\
examples:
  asynclink install --venv .venv dist/*.whl
  asynclink install --python /usr/bin/python3.12 --link-mode copy wheelhouse/
  asynclink install --target build/site-packages --dry-run requests-2.32.3-py3-none-any.whl
  ASYNCLINK_LINK_MODE=hardlink asynclink install --json --venv .venv wheelhouse/ > report.json

environment:
  ASYNCLINK_LINK_MODE   default for --link-mode
  ASYNCLINK_CACHE_DIR   default for --cache-dir
  VIRTUAL_ENV           the target when none of --python, --venv, --target is given
"""


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


def _parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The top-level parser and the ``install`` subcommand's (whose errors name it)."""
    parser = argparse.ArgumentParser(
        prog="asynclink",
        description="Install many wheels into one Python environment at once.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    install = commands.add_parser(
        "install",
        help="install wheels (.whl files, directories of them, or unpacked wheels)",
        description=(
            "Install .whl files (or every .whl in a directory, or an unpacked wheel directory) "
            "into a virtual environment, an interpreter's environment or a plain directory. "
            "Archives are unpacked into a cache once and linked from there."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    install.add_argument("wheels", nargs="+", metavar="WHEEL_OR_DIR")
    where = install.add_mutually_exclusive_group()
    where.add_argument("--python", metavar="PATH", help="install for this interpreter")
    where.add_argument("--venv", metavar="DIR", help="install into this virtual environment")
    where.add_argument(
        "--target", metavar="DIR", help="install straight into this directory (scripts in DIR/bin)"
    )
    install.add_argument(
        "--link-mode",
        type=_link_mode,
        metavar="MODE",
        help="clone (reflink), hardlink, copy or symlink; default: $ASYNCLINK_LINK_MODE, else "
        "clone on Linux and macOS (falling back to hardlink, then copy), hardlink elsewhere",
    )
    install.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where unpacked wheels are kept (default: $ASYNCLINK_CACHE_DIR, else "
        "$XDG_CACHE_HOME/asynclink, else ~/.cache/asynclink)",
    )
    install.add_argument(
        "-j", "--jobs", type=_positive, metavar="N", help="wheels installed at once"
    )
    install.add_argument(
        "--compile", action="store_true", help="compile the installed Python files to bytecode"
    )
    install.add_argument(
        "--lock-timeout",
        type=float,
        metavar="SECONDS",
        help="give up if another installer holds the target longer (default: wait)",
    )
    install.add_argument(
        "--break-system-packages",
        action="store_true",
        help="install into an interpreter's environment even if its distributor manages it "
        "(PEP 668's EXTERNALLY-MANAGED marker)",
    )
    install.add_argument(
        "--no-tag-check",
        action="store_true",
        help="install wheels whose tags the target interpreter does not accept",
    )
    install.add_argument(
        "--no-conflict-check",
        action="store_true",
        help="skip the scan for files that two wheels provide differently",
    )
    install.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    install.add_argument(
        "--json", action="store_true", help="print a machine-readable report on stdout"
    )
    install.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be placed and where; write nothing (not even the cache)",
    )
    return parser, install


def _collect_wheels(parser: argparse.ArgumentParser, arguments: list[str]) -> list[str]:
    """``.whl`` files as given; a directory is an unpacked wheel, or a folder of ``.whl``s."""
    found: list[str] = []
    for argument in arguments:
        if os.path.isdir(argument):
            names = os.listdir(argument)
            if any(name.endswith(".dist-info") for name in names):
                found.append(argument)
                continue
            archives = sorted(name for name in names if name.endswith(".whl"))
            if not archives:
                parser.error(f"{argument} holds no .whl files and is not an unpacked wheel")
            found.extend(os.path.join(argument, name) for name in archives)
        elif os.path.isfile(argument):
            found.append(argument)
        else:
            parser.error(f"no such file or directory: {argument}")
    return found


def _target(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Scheme | str:
    from ._scheme import Scheme

    if args.target:
        return Scheme.for_directory(args.target)
    chosen = args.python or args.venv
    if chosen:
        if not os.path.exists(chosen):
            parser.error(f"no such {'interpreter' if args.python else 'directory'}: {chosen}")
        if args.venv and not os.path.isfile(os.path.join(chosen, "pyvenv.cfg")):
            parser.error(
                f"{chosen} is not a virtual environment (it has no pyvenv.cfg); "
                "--target DIR installs straight into a directory"
            )
        return str(chosen)
    active = os.environ.get("VIRTUAL_ENV")
    if active:
        return active
    if os.path.isfile(os.path.join(".venv", "pyvenv.cfg")):
        return ".venv"
    parser.error("name a target: --venv DIR, --python PATH or --target DIR")


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
    back) and then raises :class:`Interrupted`."""
    import anyio
    import anyio.abc

    received: list[int] = []
    finished: list[T] = []

    async def watch(scope: anyio.CancelScope, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
            task_status.started()
            async for signum in signals:
                received.append(signum)
                scope.cancel()
                return

    failed: list[Exception] = []
    async with anyio.create_task_group() as group:
        await group.start(watch, group.cancel_scope)  # listening before any work starts
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


class _LogFormatter(logging.Formatter):
    """``asynclink: warning: ...``, as the errors read."""

    def format(self, record: logging.LogRecord) -> str:
        return f"asynclink: {record.levelname.lower()}: {record.getMessage()}"


def _configure_logging() -> None:
    """Show the ``asynclink`` logger's warnings on stderr, one line each; leave out the
    warnings module's copy of them (with a line of source code under each)."""
    from ._errors import AsyncLinkWarning

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormatter())
    logger = logging.getLogger("asynclink")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
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
    parser, install_parser = _parser()
    args = parser.parse_args(argv)
    mode = args.link_mode
    if mode is None and os.environ.get("ASYNCLINK_LINK_MODE"):
        try:
            mode = _link_mode(os.environ["ASYNCLINK_LINK_MODE"])
        except argparse.ArgumentTypeError as error:
            install_parser.error(f"ASYNCLINK_LINK_MODE: {error}")
    wheels = _collect_wheels(install_parser, args.wheels)
    target = _target(install_parser, args)

    import anyio

    from ._errors import AsyncLinkError, TargetError

    _configure_logging()
    try:
        if args.dry_run:
            planned = anyio.run(_interruptible, partial(_plan, args, target, wheels))
            _show_plan(planned, args)
        else:
            result = anyio.run(_interruptible, partial(_install, args, target, wheels, mode))
            if args.json:
                _print_json(_result_json(result))
    except TargetError as error:
        print(f"asynclink: error: {error}", file=sys.stderr)
        return 2
    except AsyncLinkError as error:
        print(f"asynclink: error: {error}", file=sys.stderr)
        return 1
    finally:
        _catch_stop_signals()  # the event loop put back the system's defaults
    return 0


async def _install(
    args: argparse.Namespace, target: Scheme | str, wheels: list[str], mode: LinkMode | None
) -> InstallResult:
    from ._install import install_wheels
    from ._progress import make_reporter

    reporter = make_reporter(args.quiet)
    reporter.start(len(wheels))
    try:
        result = await install_wheels(
            target,
            wheels,
            mode=mode,
            jobs=args.jobs,
            cache_dir=args.cache_dir,
            compile=args.compile,
            check_conflicts=not args.no_conflict_check,
            check_tags=not args.no_tag_check,
            break_system_packages=args.break_system_packages,
            lock_timeout=args.lock_timeout,
            on_event=reporter,
        )
    finally:
        reporter.stop()
    reporter.finish(result)
    return result


async def _plan(
    args: argparse.Namespace, target: Scheme | str, wheels: list[str]
) -> list[PlannedWheel]:
    from ._dryrun import plan_install

    return await plan_install(
        target,
        wheels,
        cache_dir=args.cache_dir,
        jobs=args.jobs,
        check_tags=not args.no_tag_check,
        break_system_packages=args.break_system_packages,
    )


def _show_plan(planned: list[PlannedWheel], args: argparse.Namespace) -> None:
    if args.json:
        _print_json(
            {
                "dry_run": True,
                "wheels": [
                    {
                        "wheel": wheel.wheel,
                        "version": wheel.version,
                        "archive": wheel.archive,
                        "cached": wheel.cached,
                        "files": [
                            {"destination": f.destination, "source": f.source, "action": f.action}
                            for f in wheel.files
                        ],
                    }
                    for wheel in planned
                ],
            }
        )
        return
    if args.quiet:
        return
    total = sum(len(wheel.files) for wheel in planned)
    print(f"Would install {len(planned)} packages ({total:,} files); nothing was written.")
    for wheel in planned:
        print(f"  {wheel.wheel}{' (cached)' if wheel.cached else ''}: {len(wheel.files)} files")
        for planned_file in wheel.files:
            print(f"    {planned_file.action:5} {planned_file.destination}")


def _result_json(result: InstallResult) -> dict[str, Any]:
    return {
        "dry_run": False,
        "target": {
            "purelib": result.scheme.purelib,
            "platlib": result.scheme.platlib,
            "scripts": result.scheme.scripts,
            "interpreter": result.scheme.interpreter,
        },
        "elapsed": round(result.elapsed, 6),
        "files": result.files,
        "bytes": result.bytes,
        "compiled": result.compiled,
        "wheels": [
            {
                "wheel": w.wheel,
                "version": w.version,
                "archive": w.archive,
                "cached": w.cached,
                "files": w.files,
                "bytes": w.bytes,
                "mode": w.mode.value,
                "requested_mode": w.requested_mode.value,
                "fallbacks": [
                    {"from": f.from_mode.value, "to": f.to_mode.value, "reason": f.reason}
                    for f in w.fallbacks
                ],
                "scripts": list(w.scripts),
            }
            for w in result.wheels
        ],
        "conflicts": [
            {"path": c.path, "wheels": list(c.wheels), "reason": c.reason} for c in result.conflicts
        ],
    }


def _print_json(value: object) -> None:
    import json

    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")
