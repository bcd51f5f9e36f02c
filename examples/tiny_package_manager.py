"""A tiny async package manager built on ``asynclink.sync_wheels``: make a venv match a lock file.

    python examples/tiny_package_manager.py wheels.lock --venv .venv   # created if missing
    python examples/tiny_package_manager.py wheels.lock --venv .venv --backend trio

The lock file lists the wheels the environment must hold, one ``.whl`` file a line: a path
relative to the lock file's folder (or absolute), a bare file name for a wheel next to it.
``#`` starts a comment, to the end of its line; blank lines are ignored. No URLs, no hashes,
no resolver: whatever produced the wheels (``pip download``, ``uv``, a build) already decided::

    # wheels.lock
    wheels/attrs-24.2.0-py3-none-any.whl
    six-1.16.0-py2.py3-none-any.whl   # next to the lock file

One ``sync_wheels`` call then installs what is missing, replaces what differs (an upgrade
prints ``- name old`` and ``+ name new``, as uv does), skips what is installed already
(without touching a file) and removes every other distribution but pip, all as one
transaction: if anything fails, the environment is left as it was.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio

import asynclink
from asynclink import Action


def read_lock_file(text: str, folder: Path) -> list[Path]:
    """The wheels a lock file lists, as paths (relative ones are to ``folder``)."""
    wheels = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if not entry.endswith(".whl"):
            raise ValueError(f"line {number}: {entry!r} is not a .whl file")
        wheels.append(folder / entry)
    return wheels


def plural(count: int) -> str:
    return f"{count} package{'' if count == 1 else 's'}"


def report(result: asynclink.InstallResult) -> None:
    """What the sync did, grouped by what happened to each package."""
    for action in Action:
        wheels = sorted(
            (wheel for wheel in result.wheels if wheel.action is action),
            key=lambda wheel: wheel.project.lower(),
        )
        if not wheels:
            continue
        why = " (installed already)" if action is Action.SKIPPED else ""
        print(f"{action.value.capitalize()} {plural(len(wheels))}{why}")
        for wheel in wheels:
            if action is Action.SKIPPED:
                print(f" = {wheel.project} {wheel.version}")
                continue
            if wheel.replaced is not None:  # upgraded, downgraded or reinstalled
                print(f" - {wheel.project} {wheel.replaced}")
            print(f" + {wheel.project} {wheel.version}")
    if result.removed:
        print(f"Removed {plural(len(result.removed))}")
        for removed in sorted(result.removed, key=lambda removed: removed.name.lower()):
            print(f" - {removed.name} {removed.version}")


async def main(lock_file: Path, venv: Path) -> int:
    try:
        wheels = read_lock_file(await anyio.Path(lock_file).read_text(), lock_file.parent)
    except (OSError, ValueError) as error:
        print(f"error: {lock_file}: {error}", file=sys.stderr)
        return 2
    if not await anyio.Path(venv).exists():
        await anyio.run_process([sys.executable, "-m", "venv", "--without-pip", str(venv)])
        print(f"Created a virtual environment at {venv}")
    print(f"Syncing {venv} with the {len(wheels)} wheels of {lock_file}")
    try:
        result = await asynclink.sync_wheels(venv, wheels)
    except asynclink.AsyncLinkError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    report(result)
    print(f"Synced in {result.elapsed:.3f}s; {venv} now holds:")
    for distribution in await asynclink.installed(venv):
        installer = distribution.installer or "unknown installer"
        print(f"  {distribution.name:<20} {distribution.version:<12} {installer}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock_file", type=Path)
    parser.add_argument("--venv", type=Path, default=Path(".venv"))
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    sys.exit(anyio.run(main, args.lock_file, args.venv, backend=args.backend))
