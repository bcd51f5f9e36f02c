"""What each command of ``asynclink`` does, and what it prints.

:func:`prepare` checks what the arguments name before the event loop starts (a usage error is
the parser's, exit 2) and returns the command's work, which the command line runs until it
ends or a signal stops it; or, for an install whose every wheel is installed already, its exit
code: that answer needs neither an event loop nor threads, so it costs little more than the
interpreter's start-up. The engine does the work; this module turns arguments into its
calls and its results into lines (``_progress``) or JSON (``_report``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._modes import LinkMode
    from ._scheme import Scheme

__all__ = ["Command", "Work", "prepare"]

Work = Callable[[], Awaitable[int]]
#: What :func:`prepare` returns: the work to run, or the exit code of a command already done.
Command = Work | int


def prepare(args: argparse.Namespace, parser: argparse.ArgumentParser, color: bool) -> Command:
    """The work of the command ``args`` names; a usage error exits through ``parser``."""
    if args.command == "cache":
        return partial(_cache, args)
    target = _target(parser, args)
    if args.command == "list":
        return partial(_list, args, target)
    if args.command == "uninstall":
        return partial(_uninstall, args, target)
    wheels = _collect_wheels(parser, args.wheels)
    mode = args.link_mode
    if mode is None and os.environ.get("ASYNCLINK_LINK_MODE"):
        from ._modes import LinkMode

        try:
            mode = LinkMode.parse(os.environ["ASYNCLINK_LINK_MODE"])
        except ValueError as error:
            parser.error(f"ASYNCLINK_LINK_MODE: {error}")
    if args.dry_run:
        return partial(_plan, args, target, wheels)
    if args.command == "install" and not args.reinstall:
        done = _installed_already(args, target, wheels, mode)
        if done is not None:
            return done
    return partial(_install, args, target, wheels, mode, color)


def _installed_already(
    args: argparse.Namespace, target: Scheme | str, wheels: list[str], mode: LinkMode | None
) -> int | None:
    """The exit code of an install with nothing to do (every wheel installed already, no
    other installer at work), found as the engine finds it (``nothing_to_do``), but before
    an event loop is started; ``None`` if there is work."""
    import time

    from ._cache import WheelCache
    from ._fsutil import absolute
    from ._installed import nothing_to_do, skipped_result
    from ._modes import default_link_mode
    from ._results import InstallResult
    from ._scheme import refuse_externally_managed, resolve_target

    started = time.perf_counter()
    cache = WheelCache(args.cache_dir)
    scheme = resolve_target(target, cache.root, True)
    if not args.break_system_packages:
        refuse_externally_managed(scheme)
    found = nothing_to_do(scheme, cache, list(dict.fromkeys(map(absolute, wheels))))
    if found is None:
        return None
    results = tuple(skipped_result(each, mode or default_link_mode()) for each in found)
    result = InstallResult(scheme, results, (), 0, time.perf_counter() - started)
    if args.json:
        from ._report import install_document

        _print_json(install_document(args.command, result))
    if not args.quiet:
        from ._progress import summary_lines

        print("\n".join(summary_lines(result)), file=sys.stderr)
    return 0


# -- what the arguments name -----------------------------------------------------------------


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
    """The target the options name: a scheme, or a venv or interpreter the engine asks."""
    from ._scheme import Scheme

    if args.target:
        if args.prefix or args.root:
            parser.error("--prefix and --root go with an interpreter, not with --target")
        return Scheme.for_directory(args.target, tags=_target_tags(args))
    chosen = _environment(parser, args)
    if args.prefix or args.root:
        return _moved(args, chosen)
    if chosen is None:
        parser.error("name a target: --venv DIR, --python PATH or --target DIR")
    return chosen


def _target_tags(args: argparse.Namespace) -> tuple[str, ...] | None:
    """The wheel tags ``--target`` checks: none where nothing is installed or the check is
    off; else the running interpreter's, read from the cache's memo of it, as a venv's are
    (working them out imports ``packaging.tags`` and probes the system: 15 to 20 ms of every
    command). ``None`` (work them out) where the command may not write the cache."""
    if args.command in ("list", "uninstall") or getattr(args, "no_tag_check", False):
        return ()
    if args.dry_run or not sys.executable:
        return None
    from ._cache import WheelCache
    from ._errors import TargetError
    from ._scheme import scheme_for_python

    try:
        return scheme_for_python(sys.executable, WheelCache(args.cache_dir).root).tags
    except TargetError:
        return None


def _environment(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str | None:
    """The venv or interpreter named, else the active venv, else ``./.venv`` if there is one."""
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
    return None


def _moved(args: argparse.Namespace, chosen: str | None) -> Scheme:
    """pip's ``--prefix`` and ``--root``, of the interpreter named (else this one)."""
    from ._cache import WheelCache
    from ._scheme import resolve_target, scheme_for_prefix, with_root

    interpreter = chosen or sys.executable
    if os.path.isdir(interpreter):
        interpreter = os.path.join(interpreter, "bin", "python")
    if args.prefix:
        scheme = scheme_for_prefix(interpreter, args.prefix)
    else:
        scheme = resolve_target(interpreter, WheelCache(args.cache_dir).root, True)
    return with_root(scheme, args.root) if args.root else scheme


def _direct_urls(wheels: list[str]) -> dict[str, Mapping[str, object]]:
    """PEP 610 for the files named on the command line, as pip and uv record local paths
    (the engine adds an archive's hash)."""
    from urllib.parse import quote_from_bytes  # not pathlib's as_uri: pathlib costs 4 ms

    found: dict[str, Mapping[str, object]] = {}
    for wheel in wheels:
        path = os.path.abspath(wheel)
        info = "dir_info" if os.path.isdir(path) else "archive_info"
        found[os.path.basename(path)] = {
            "url": "file://" + quote_from_bytes(os.fsencode(path)),
            info: {},
        }
    return found


# -- install and sync --------------------------------------------------------------------------


async def _install(
    args: argparse.Namespace,
    target: Scheme | str,
    wheels: list[str],
    mode: LinkMode | None,
    color: bool,
) -> int:
    from ._install import install_wheels, sync_wheels
    from ._progress import make_reporter
    from ._report import install_document

    syncing = args.command == "sync"
    reporter = make_reporter(args.quiet, color)
    reporter.start(len(wheels))
    options: dict[str, Any] = {
        "mode": mode,
        "jobs": args.jobs,
        "cache_dir": args.cache_dir,
        "compile": args.compile,
        "reinstall": args.reinstall,
        "direct_urls": None if args.no_direct_url else _direct_urls(wheels),
        "check_conflicts": not args.no_conflict_check,
        "check_tags": not args.no_tag_check,
        "break_system_packages": args.break_system_packages,
        "lock_timeout": args.lock_timeout,
        "on_event": reporter,
    }
    if syncing:
        options["keep"] = () if args.keep_nothing else (args.keep or ("pip",))
    try:
        verb = sync_wheels if syncing else install_wheels
        result = await verb(target, wheels, **options)
    finally:
        reporter.stop()
    reporter.finish(result)
    if args.json:
        _print_json(install_document(args.command, result))
    return 0


async def _plan(args: argparse.Namespace, target: Scheme | str, wheels: list[str]) -> int:
    import anyio.to_thread

    from ._dryrun import plan_install
    from ._fsutil import canonical_name
    from ._installed import list_installed
    from ._progress import plan_lines
    from ._report import plan_document
    from ._results import RemovedDistribution

    scheme = await _resolved(args, target, remember=False)  # a dry run writes nothing
    planned = await plan_install(
        scheme,
        wheels,
        cache_dir=args.cache_dir,
        jobs=args.jobs,
        check_tags=not args.no_tag_check,
        break_system_packages=args.break_system_packages,
        reinstall=args.reinstall,
        direct_urls=None if args.no_direct_url else _direct_urls(wheels),
    )
    removing: list[RemovedDistribution] = []
    if args.command == "sync":
        keep = () if args.keep_nothing else (args.keep or ("pip",))
        wanted = {canonical_name(name) for name in keep}
        wanted.update(canonical_name(wheel.project) for wheel in planned)
        removing = [
            RemovedDistribution(d.name, d.version, d.dist_info, 0)
            for d in await anyio.to_thread.run_sync(list_installed, scheme)
            if canonical_name(d.name) not in wanted
        ]
    if args.json:
        _print_json(plan_document(args.command, scheme, planned, removing))
    elif not args.quiet:
        for line in plan_lines(planned, removing, each_file=args.verbose > 0):
            print(line, file=sys.stderr)
    return 0


# -- uninstall, list, cache ----------------------------------------------------------------------


async def _uninstall(args: argparse.Namespace, target: Scheme | str) -> int:
    from ._environment import uninstall
    from ._progress import uninstall_lines
    from ._report import uninstall_document

    result = await uninstall(
        target,
        args.names,
        missing_ok=args.missing_ok,
        dry_run=args.dry_run,
        break_system_packages=args.break_system_packages,
        cache_dir=args.cache_dir,
        lock_timeout=args.lock_timeout,
    )
    if args.json:
        _print_json(uninstall_document(result, args.dry_run))
    elif not args.quiet:
        for line in uninstall_lines(result, args.dry_run):
            print(line, file=sys.stderr)
    return 0


async def _list(args: argparse.Namespace, target: Scheme | str) -> int:
    import anyio.to_thread

    from ._confinement import printable
    from ._installed import list_installed
    from ._report import list_document

    scheme = await _resolved(args, target, remember=True)
    distributions = await anyio.to_thread.run_sync(list_installed, scheme)
    if args.json:
        _print_json(list_document(scheme, distributions))
        return 0
    rows = [("Package", "Version", "Installer")]
    rows += [
        (printable(d.name), printable(d.version), printable(d.installer or ""))
        for d in distributions
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(2)]
    for name, version, installer in rows:
        print(f"{name:<{widths[0]}}  {version:<{widths[1]}}  {installer}".rstrip())
    return 0


async def _cache(args: argparse.Namespace) -> int:
    from ._cache import CacheReport, WheelCache, clean_cache, prune_cache, verify_cache
    from ._report import cache_document

    if args.action == "dir":
        root = WheelCache(args.cache_dir).root
        if args.json:
            _print_json(cache_document("dir", CacheReport(root, 0)))
        else:
            print(root)
        return 0
    if args.action == "verify":
        report = await verify_cache(args.cache_dir, remove=args.remove)
    elif args.action == "prune":
        report = await prune_cache(args.cache_dir)
    else:
        report = await clean_cache(args.cache_dir)
    if args.json:
        _print_json(cache_document(args.action, report))
    elif not args.quiet:
        print(
            f"{args.action}: {report.entries} unpacked wheels in {report.root}; "
            f"{len(report.damaged)} damaged, {len(report.removed)} removed",
            file=sys.stderr,
        )
        for problem in report.damaged:
            print(f"  damaged: {problem}", file=sys.stderr)
    return 1 if report.damaged and not args.remove else 0


async def _resolved(args: argparse.Namespace, target: Scheme | str, remember: bool) -> Scheme:
    """The scheme of a venv or interpreter, asked of it (and, if ``remember``, kept in the
    cache for the next command)."""
    import anyio.to_thread

    from ._cache import WheelCache
    from ._scheme import resolve_target

    root = WheelCache(args.cache_dir).root
    return await anyio.to_thread.run_sync(resolve_target, target, root, remember)


def _print_json(value: object) -> None:
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")
