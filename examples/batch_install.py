"""What an async package manager writes around asynclink: resolve, download, install, verify.

    python examples/batch_install.py                  # the ~20 packages of requirements-demo.txt
    python examples/batch_install.py rich "httpx<1"   # or any requirement strings
    python examples/batch_install.py -r my-requirements.txt --link-mode copy

Steps, each timed:
1. resolve and download wheels with ``pip download`` (pip's real resolver, run as a subprocess);
   the resolution is remembered, so a second run with the same requirements skips pip;
2. create a fresh virtual environment;
3. unpack and install every wheel at once with ``asynclink.install_wheels``, with a progress
   display built on asynclink's events (unpacked wheels are cached too);
4. import every installed top-level module inside the new environment.

Caches live in ``--cache-dir`` (default ``~/.cache/asynclink-example``); the environment is
recreated at ``--venv`` (default ``<cache-dir>/venv``) on every run.
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

import anyio
import anyio.to_thread
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import asynclink

HERE = Path(__file__).parent
DEFAULT_REQUIREMENTS = HERE / "requirements-demo.txt"

#: Run inside the new environment: import every top-level module of every distribution.
IMPORT_CHECK = """
import importlib, importlib.metadata as md, json, sys, time
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
    """Wheels for ``requirements`` and their dependencies; ``True`` if pip was not needed."""
    downloads = cache / "downloads"
    key = hashlib.sha256(
        json.dumps([sorted(requirements), sys.version, platform.platform()]).encode()
    ).hexdigest()[:16]
    resolved = anyio.Path(cache / f"resolved-{key}.json")
    if await resolved.exists():
        names = json.loads(await resolved.read_text())
        wheels = [downloads / name for name in names]
        if all([await anyio.Path(wheel).exists() for wheel in wheels]):
            return wheels, True
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
            str(downloads),
            *requirements,
        ],
        check=False,
    )
    output = done.stdout.decode()
    if done.returncode != 0:
        raise SystemExit(f"pip download failed:\n{output}\n{done.stderr.decode()}")
    names = set()
    for line in output.splitlines():
        for prefix in ("Saved ", "File was already downloaded "):
            if line.strip().startswith(prefix):
                names.add(line.strip()[len(prefix) :].rpartition("/")[2])
    wheels = [downloads / name for name in sorted(names) if name.endswith(".whl")]
    await resolved.write_text(json.dumps([wheel.name for wheel in wheels]))
    return wheels, False


async def create_venv(path: Path) -> None:
    await anyio.to_thread.run_sync(shutil.rmtree, path, True)
    await anyio.run_process([sys.executable, "-m", "venv", "--without-pip", str(path)])


def top_level_modules(result: asynclink.InstallResult) -> dict[str, list[str]]:
    """Each installed distribution's importable top-level names, read from its RECORD."""
    found: dict[str, list[str]] = {}
    for wheel in result.wheels:
        assert wheel.dist_info is not None
        modules: set[str] = set()
        for line in (Path(wheel.dist_info) / "RECORD").read_text().splitlines():
            path = line.split(",", 1)[0]
            top, _, rest = path.partition("/")
            if path.startswith("..") or top.endswith((".dist-info", ".data")):
                continue
            if rest == "__init__.py" and top.isidentifier():
                modules.add(top)
            elif not rest and top.endswith(".py") and top[:-3].isidentifier():
                modules.add(top[:-3])
        found[wheel.wheel.rpartition("-")[0]] = sorted(m for m in modules if not m.startswith("_"))[
            :3
        ]
    return found


async def check_imports(venv: Path, modules: dict[str, list[str]]) -> dict[str, list[object]]:
    done = await anyio.run_process(
        [str(venv / "bin" / "python"), "-c", IMPORT_CHECK, json.dumps(modules)]
    )
    result: dict[str, list[object]] = json.loads(done.stdout)
    return result


async def main() -> int:
    args = parse_arguments()
    console = Console(stderr=True)
    requirements = read_requirements(args)
    cache = args.cache_dir.resolve()
    venv = (args.venv or cache / "venv").resolve()
    cache.mkdir(parents=True, exist_ok=True)
    phases: dict[str, float] = {}

    started = time.perf_counter()
    console.print(f"resolving {len(requirements)} requirements with pip ...")
    wheels, pip_skipped = await resolve_and_download(requirements, cache)
    phases["resolve + download"] = time.perf_counter() - started

    started = time.perf_counter()
    await create_venv(venv)
    phases["create venv"] = time.perf_counter() - started

    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]asynclink"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[files]:,} files"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("install", total=len(wheels), files=0)
        files = 0

        def on_event(event: asynclink.Event) -> None:
            nonlocal files
            if isinstance(event, asynclink.WheelFinished):
                files += event.result.files
                progress.update(task, advance=1, files=files)

        result = await asynclink.install_wheels(
            venv,
            wheels,
            mode=args.link_mode,
            jobs=args.jobs,
            cache_dir=cache / "unpacked",
            on_event=on_event,
        )
    phases["unpack + install (asynclink)"] = time.perf_counter() - started

    started = time.perf_counter()
    modules = await anyio.to_thread.run_sync(top_level_modules, result)
    imports = await check_imports(venv, modules)
    phases["import every package"] = time.perf_counter() - started

    table = Table(title=f"{len(result.wheels)} packages in {venv}")
    for column in ("package", "version", "files", "mode", "unpacked", "import"):
        table.add_column(column, justify="right" if column == "files" else "left")
    for wheel in sorted(result.wheels, key=lambda w: w.wheel.lower()):
        name = wheel.wheel.rpartition("-")[0]
        status = imports.get(name, ["no module", 0])[0]
        table.add_row(
            name,
            wheel.version,
            f"{wheel.files:,}",
            wheel.mode.value,
            "cached" if wheel.cached else "now",
            "[green]ok[/]" if status == "ok" else f"[red]{status}[/]",
        )
    console.print(table)
    timing = Table(title="time per phase")
    timing.add_column("phase")
    timing.add_column("seconds", justify="right")
    for phase, seconds in phases.items():
        timing.add_row(phase, f"{seconds:.3f}")
    console.print(timing)
    cached = sum(w.cached for w in result.wheels)
    if pip_skipped and cached == len(result.wheels):
        console.print(
            f"second run: reused the resolution and {len(wheels)} downloaded wheels (no pip), "
            f"and all {cached} unpacked wheels from the cache"
        )
    else:
        console.print(
            f"first run: downloaded and unpacked {len(result.wheels) - cached} wheels; "
            "run again to see the caches at work"
        )
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
