"""What an async package manager writes around asynclink: resolve, download, install, verify.

    python examples/batch_install.py                  # the ~20 packages of requirements-demo.txt
    python examples/batch_install.py rich "httpx<1"   # or any requirement strings
    python examples/batch_install.py -r my-requirements.txt --link-mode copy

Steps, each timed:
1. resolve and download wheels with ``pip download`` (pip's real resolver, run as a subprocess)
   into a folder of their own, then take every ``.whl`` in that folder; the folder is
   remembered, so a second run with the same requirements skips pip;
2. create a fresh virtual environment (``--keep-venv``: reuse the last run's);
3. unpack and install every wheel at once with ``asynclink.install_wheels``, with a progress
   display built on asynclink's events alone: which archives are being unpacked, and where
   (a helper process or a thread), which wheels are skipped, how many are done;
4. import every installed top-level module inside the new environment.

A cold run downloads and unpacks every wheel; a warm second run reuses the downloads and the
unpacked wheels from the cache (the fresh venv still gets every wheel installed, from the
cache). With ``--keep-venv`` a second run finds every wheel installed already and skips it
without touching a file. The table at the end says what happened to each wheel: installed,
skipped, upgraded from an older version.

Caches live in ``--cache-dir`` (default ``~/.cache/asynclink-example``); the environment is
at ``--venv`` (default ``<cache-dir>/venv``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from types import TracebackType

import anyio
import anyio.to_thread
from packaging.utils import NormalizedName, canonicalize_name, canonicalize_version
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

import asynclink
from asynclink import Action

HERE = Path(__file__).parent
DEFAULT_REQUIREMENTS = HERE / "requirements-demo.txt"

#: Run inside the new environment: import every top-level module of every distribution.
IMPORT_CHECK = """
import importlib, json, sys, time
results = {}
for name, modules in json.loads(sys.argv[1]).items():
    started = time.perf_counter()
    try:
        for module in modules:
            importlib.import_module(module)
        results[name] = ["ok", round(time.perf_counter() - started, 3)]
    except Exception as error:
        results[name] = [f"{type(error).__name__}: {error}", 0]
print(json.dumps(results))
"""


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("requirements", nargs="*", help="requirement strings (default: -r)")
    parser.add_argument(
        "-r",
        "--requirement",
        type=Path,
        default=None,
        help=f"requirements file (default: {DEFAULT_REQUIREMENTS.name})",
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=Path.home() / ".cache" / "asynclink-example"
    )
    parser.add_argument("--venv", type=Path, default=None)
    parser.add_argument(
        "--keep-venv",
        action="store_true",
        help="install into the last run's environment instead of a fresh one",
    )
    parser.add_argument("--link-mode", default=None)
    parser.add_argument("--jobs", type=int, default=None)
    return parser.parse_args()


def read_requirements(args: argparse.Namespace) -> list[str]:
    if args.requirements and args.requirement is None:
        return list(args.requirements)
    text = (args.requirement or DEFAULT_REQUIREMENTS).read_text()
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return [*args.requirements, *(line for line in lines if line)]


async def resolve_and_download(requirements: list[str], cache: Path) -> tuple[list[Path], bool]:
    """Wheels for ``requirements`` and their dependencies; ``True`` if pip was not needed.

    pip downloads them into a folder of their own (one per set of requirements and
    interpreter), and the wheels are whatever ``.whl`` files that folder then holds. A file
    written once pip has succeeded marks the folder complete, so a later run skips pip.
    """
    key = hashlib.sha256(
        json.dumps([sorted(requirements), sys.version, platform.platform()]).encode()
    ).hexdigest()[:16]
    folder = anyio.Path(cache / "downloads" / key)
    resolved = folder / "resolved.json"
    pip_skipped = await resolved.exists()
    if not pip_skipped:
        await anyio.to_thread.run_sync(shutil.rmtree, folder, True)  # an interrupted download
        done = await anyio.run_process(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--only-binary=:all:",
                "--progress-bar",
                "off",
                "--dest",
                str(folder),
                *requirements,
            ],
            check=False,
        )
        if done.returncode != 0:
            output = f"{done.stdout.decode()}\n{done.stderr.decode()}"
            raise SystemExit(f"pip download failed:\n{output}")
        await resolved.write_text(json.dumps(requirements))
    wheels = sorted([Path(wheel) async for wheel in folder.glob("*.whl")])
    return wheels, pip_skipped


async def create_venv(path: Path, keep: bool) -> bool:
    """A fresh virtual environment at ``path``, or with ``keep`` the one there if there is
    one (then ``True``)."""
    if keep and await anyio.Path(path / "bin" / "python").exists():
        return True
    await anyio.to_thread.run_sync(shutil.rmtree, path, True)
    await anyio.run_process([sys.executable, "-m", "venv", "--without-pip", str(path)])
    return False


def project_key(name: str, version: str) -> str:
    """One spelling for a project and version, whether from a wheel's file name
    (``typing_extensions-4.12.2-py3-none-any.whl``) or its metadata (``typing-extensions``)."""
    return f"{canonicalize_name(name)} {canonicalize_version(version)}"


def size_text(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


class InstallDisplay:
    """The progress display, driven by asynclink's events alone: a bar of the wheels done, a
    live row for each archive being unpacked (on a terminal), and a line for each wheel
    unpacked (by whom) or skipped."""

    def __init__(self, console: Console, total: int) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.bar = self.progress.add_task("[bold]asynclink", total=total, status="")
        self.files = 0
        self.unpacking: dict[str, tuple[TaskID, str]] = {}
        """Live rows of the archives being unpacked, by :func:`project_key`, and by whom."""

    def __enter__(self) -> InstallDisplay:
        self.progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def __call__(self, event: asynclink.Event) -> None:
        match event:
            case asynclink.WheelUnpacking(archive=archive, in_helper=in_helper):
                self.unpacking_started(Path(archive).name, in_helper)
            case asynclink.WheelUnpacked(wheel=wheel, files=files, bytes=size, cached=False):
                self.unpacking_done(wheel, files, size)
            case asynclink.WheelSkipped(wheel=wheel):
                self.say(f"  skipped {wheel}: installed already")
                self.advance(0)
            case asynclink.WheelFinished(result=result):
                self.advance(result.files)

    def unpacking_started(self, archive: str, in_helper: bool) -> None:
        """A live row for the archive. It is not read yet, so its file name is all there is:
        the row is found again by the project and version that name starts with."""
        by = "a helper process" if in_helper else "a thread"
        key = project_key(*archive.split("-")[:2])
        if key in self.unpacking:  # a helper gave up on it: a thread unpacks it instead
            row, _ = self.unpacking[key]
        else:
            row = self.progress.add_task("", total=None, status="")
        self.progress.update(row, description=f"  unpacking {archive} in {by}")
        self.unpacking[key] = row, by

    def unpacking_done(self, wheel: str, files: int, size: int) -> None:
        row, by = self.unpacking.pop(project_key(*wheel.rsplit("-", 1)), (None, "this process"))
        if row is not None:
            self.progress.remove_task(row)
        self.say(f"  unpacked {wheel} in {by}: {files:,} files, {size_text(size)}")

    def advance(self, files: int) -> None:
        self.files += files
        self.progress.update(self.bar, advance=1, status=f"{self.files:,} files")

    def say(self, line: str) -> None:
        self.progress.console.print(line, highlight=False, soft_wrap=True)


def modules_in(record: str) -> list[str]:
    """A distribution's importable top-level names (three at most), from its RECORD."""
    modules: set[str] = set()
    for line in record.splitlines():
        path = line.split(",", 1)[0]
        top, _, rest = path.partition("/")
        if path.startswith("..") or top.endswith((".dist-info", ".data")):
            continue
        if rest == "__init__.py" and top.isidentifier():
            modules.add(top)
        elif not rest and top.endswith(".py") and top[:-3].isidentifier():
            modules.add(top[:-3])
    return sorted(module for module in modules if not module.startswith("_"))[:3]


async def top_level_modules(venv: Path, projects: set[NormalizedName]) -> dict[str, list[str]]:
    """The top-level modules of each of ``projects`` (canonical names) installed in ``venv``,
    found by ``asynclink.installed``."""
    found: dict[str, list[str]] = {}
    for distribution in await asynclink.installed(venv):
        name = canonicalize_name(distribution.name)
        if name in projects:
            record = await anyio.Path(distribution.dist_info, "RECORD").read_text()
            found[name] = modules_in(record)
    return found


async def check_imports(venv: Path, modules: dict[str, list[str]]) -> dict[str, list[object]]:
    done = await anyio.run_process(
        [str(venv / "bin" / "python"), "-c", IMPORT_CHECK, json.dumps(modules)]
    )
    result: dict[str, list[object]] = json.loads(done.stdout)
    return result


def what_happened(wheel: asynclink.WheelResult) -> str:
    """``installed``, ``skipped``, ``upgraded from 1.16.0``: the wheel's action."""
    if wheel.action in (Action.UPGRADED, Action.DOWNGRADED):
        return f"{wheel.action} from {wheel.replaced}"
    return str(wheel.action)


def wheels_table(
    venv: Path, result: asynclink.InstallResult, imports: dict[str, list[object]]
) -> Table:
    table = Table(title=f"{len(result.wheels)} packages in {venv}")
    for column in ("package", "version", "action", "files", "mode", "unpacked", "import"):
        table.add_column(
            column, justify="right" if column == "files" else "left", no_wrap=column == "action"
        )
    for wheel in sorted(result.wheels, key=lambda w: canonicalize_name(w.project)):
        status = imports.get(canonicalize_name(wheel.project), ["no module", 0])[0]
        skipped = wheel.action is Action.SKIPPED
        table.add_row(
            wheel.project,
            wheel.version,
            what_happened(wheel),
            f"{wheel.files:,}",
            "" if skipped else wheel.mode.value,
            "" if skipped else "cached" if wheel.cached else "now",
            "[green]ok[/]" if status == "ok" else f"[red]{status}[/]",
        )
    return table


def summary(result: asynclink.InstallResult, pip_skipped: bool) -> str:
    """A cold run (pip ran, or wheels were unpacked) or a warm one, in a line."""
    unpacked = sum(not wheel.cached for wheel in result.changed)
    if pip_skipped:
        said = [f"reused the resolution and {len(result.wheels)} downloaded wheels (no pip)"]
    else:
        said = [f"pip resolved and downloaded {len(result.wheels)} wheels"]
    if unpacked:
        said.append(f"unpacked {unpacked} now")
    if len(result.changed) > unpacked:
        said.append(f"took {len(result.changed) - unpacked} unpacked from the cache")
    if result.skipped:
        said.append(f"skipped {len(result.skipped)}, installed already")
    if pip_skipped and not unpacked:
        return "warm run: " + ", ".join(said)
    return "cold run: " + ", ".join(said) + " (run again to see the caches at work)"


async def main() -> int:
    args = parse_arguments()
    console = Console(stderr=True)
    requirements = read_requirements(args)
    cache = args.cache_dir.resolve()
    venv = (args.venv or cache / "venv").resolve()
    cache.mkdir(parents=True, exist_ok=True)
    phases: dict[str, float] = {}

    started = time.perf_counter()
    console.print(f"resolving {len(requirements)} requirements ...")
    wheels, pip_skipped = await resolve_and_download(requirements, cache)
    how = "the resolution of an earlier run" if pip_skipped else "pip"
    console.print(f"  {len(wheels)} wheels, from {how}")
    phases["resolve + download"] = time.perf_counter() - started

    started = time.perf_counter()
    kept = await create_venv(venv, keep=args.keep_venv)
    phases["reuse venv" if kept else "create venv"] = time.perf_counter() - started

    started = time.perf_counter()
    with InstallDisplay(console, total=len(wheels)) as display:
        result = await asynclink.install_wheels(
            venv,
            wheels,
            mode=args.link_mode,
            jobs=args.jobs,
            cache_dir=cache / "unpacked",
            on_event=display,
        )
    phases["unpack + install (asynclink)"] = time.perf_counter() - started

    started = time.perf_counter()
    projects = {canonicalize_name(wheel.project) for wheel in result.wheels}
    imports = await check_imports(venv, await top_level_modules(venv, projects))
    phases["import every package"] = time.perf_counter() - started

    console.print(wheels_table(venv, result, imports))
    timing = Table(title="time per phase")
    timing.add_column("phase")
    timing.add_column("seconds", justify="right")
    for phase, seconds in phases.items():
        timing.add_row(phase, f"{seconds:.3f}")
    console.print(timing)
    console.print(summary(result, pip_skipped), highlight=False, soft_wrap=True)
    if result.conflicts:
        console.print(f"[yellow]{len(result.conflicts)} conflicts:[/]")
        for conflict in result.conflicts:
            console.print(f"  {conflict}")
    failed = [name for name, (status, _) in imports.items() if status != "ok"]
    if failed:
        console.print(f"[red]failed to import: {', '.join(failed)}[/]")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    sys.exit(anyio.run(main))
