"""Link unpacked wheels (directories, as a package manager's cache holds them) into a target.

    python examples/link_unpacked.py TARGET_SITE_PACKAGES UNPACKED_WHEEL... [--mode hardlink]

The smallest use of the core engine: one call, awaited, and a look at what it reports.
"""

from __future__ import annotations

import argparse

import anyio

import asynclink


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target")
    parser.add_argument("wheels", nargs="+")
    parser.add_argument("--mode", default=None, help="clone, hardlink, copy or symlink")
    args = parser.parse_args()

    result = await asynclink.link_wheels(args.target, args.wheels, mode=args.mode)
    for wheel in result.wheels:
        fallback = f" (fell back: {wheel.fallbacks[-1].reason})" if wheel.fallbacks else ""
        print(f"{wheel.wheel}: {wheel.files} files by {wheel.mode}{fallback}")
    for conflict in result.conflicts:
        print(f"conflict: {conflict}")
    print(f"{result.files} files in {result.elapsed:.3f}s")


if __name__ == "__main__":
    anyio.run(main)
