"""Build and read real trees of files for the tests."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path


def make_tree(
    root: Path,
    files: Mapping[str, bytes | str],
    *,
    executable: Iterable[str] = (),
    symlinks: Mapping[str, str] | None = None,
) -> Path:
    """Write ``files`` (relative path -> contents) under ``root``; return ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for relative, contents in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(contents.encode() if isinstance(contents, str) else contents)
        path.chmod(0o644)
    for relative in executable:
        (root / relative).chmod(0o755)
    for relative, target in (symlinks or {}).items():
        link = root / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
    return root


def wheel_tree(root: Path, name: str, files: Mapping[str, bytes | str], **kwargs: object) -> Path:
    """An unpacked wheel: ``files`` plus a ``<name>-1.0.dist-info`` with METADATA and RECORD."""
    info = f"{name}-1.0.dist-info"
    contents = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{info}/RECORD": "".join(f"{path},,\n" for path in files) + f"{info}/RECORD,,\n",
    }
    return make_tree(root, contents, **kwargs)  # type: ignore[arg-type]


def snapshot(root: Path) -> dict[str, tuple[str, int, bytes | str]]:
    """Every entry under ``root``: kind, permission bits, and contents or symlink target."""
    found: dict[str, tuple[str, int, bytes | str]] = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, root)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                found[relative] = ("symlink", 0, os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                found[relative] = ("dir", stat.S_IMODE(info.st_mode), b"")
            else:
                found[relative] = ("file", stat.S_IMODE(info.st_mode), Path(path).read_bytes())
    return found


def leftovers(root: Path) -> list[str]:
    """Temporary files an install may have left behind."""
    return [
        os.path.join(directory, name)
        for directory, dirnames, filenames in os.walk(root)
        for name in dirnames + filenames
        if name.startswith(".asynclink-tmp-")
    ]
