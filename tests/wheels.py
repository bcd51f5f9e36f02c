"""Build real ``.whl`` files for the tests: valid ones, and ones that break one rule each."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import stat
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asynclink import UnpackedWheel, unpack_wheels

DEFAULT = object()


def record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


@dataclass
class WheelSpec:
    """A wheel to build. Every part can be replaced or removed to make a broken wheel."""

    name: str = "demo"
    version: str = "1.0"
    files: Mapping[str, bytes | str] = field(default_factory=dict)
    executable: Iterable[str] = ()
    entry_points: str | None = None
    tag: str = "py3-none-any"
    root_is_purelib: bool = True
    wheel_text: object = DEFAULT
    """WHEEL contents; ``None`` leaves WHEEL out."""
    metadata_text: object = DEFAULT
    dist_info: str | None = None
    """The .dist-info directory name; default ``<name>-<version>.dist-info``."""
    filename: str | None = None
    record: object = DEFAULT
    """RECORD contents; ``None`` leaves RECORD out; a callable edits the generated rows."""
    extra: list[tuple[zipfile.ZipInfo | str, bytes]] = field(default_factory=list)
    """Members added after everything else, outside RECORD (duplicates, symlinks, ...)."""

    @property
    def info(self) -> str:
        return self.dist_info or f"{self.name}-{self.version}.dist-info"

    def build(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        filename = self.filename or f"{self.name}-{self.version}-{self.tag}.whl"
        path = directory / filename
        members: dict[str, bytes] = {
            name: data.encode() if isinstance(data, str) else data
            for name, data in self.files.items()
        }
        members[f"{self.info}/METADATA"] = (
            f"Metadata-Version: 2.1\nName: {self.name}\nVersion: {self.version}\n".encode()
            if self.metadata_text is DEFAULT
            else str(self.metadata_text).encode()
        )
        if self.wheel_text is DEFAULT:
            purelib = "true" if self.root_is_purelib else "false"
            members[f"{self.info}/WHEEL"] = (
                f"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: {purelib}\n"
                f"Tag: {self.tag}\n"
            ).encode()
        elif self.wheel_text is not None:
            members[f"{self.info}/WHEEL"] = str(self.wheel_text).encode()
        if self.entry_points is not None:
            members[f"{self.info}/entry_points.txt"] = self.entry_points.encode()
        rows = [[name, record_hash(data), str(len(data))] for name, data in members.items()]
        rows.append([f"{self.info}/RECORD", "", ""])
        if callable(self.record):
            edit: Callable[[list[list[str]]], list[list[str]]] = self.record
            rows = edit(rows)
        if self.record is None:
            record_text = None
        elif isinstance(self.record, str):
            record_text = self.record
        else:
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\n").writerows(rows)
            record_text = buffer.getvalue()
        executable = set(self.executable)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in members.items():
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                mode = 0o755 if name in executable else 0o644
                info.external_attr = (stat.S_IFREG | mode) << 16
                archive.writestr(info, data)
            if record_text is not None:
                archive.writestr(f"{self.info}/RECORD", record_text)
            with warnings.catch_warnings():  # duplicates are the point of some extras
                warnings.simplefilter("ignore")
                for info_or_name, data in self.extra:
                    archive.writestr(info_or_name, data)
        return path


def build_wheel(directory: Path, **spec: object) -> Path:
    """Shorthand: ``build_wheel(tmp_path, name="x", files={...})``."""
    return WheelSpec(**spec).build(directory)  # type: ignore[arg-type]


def patch_bytes(path: Path, old: bytes, new: bytes) -> None:
    """Replace bytes in an archive (names in headers, say) without rebuilding it."""
    data = path.read_bytes()
    assert old in data and len(old) == len(new)
    path.write_bytes(data.replace(old, new))


def set_declared_size(path: Path, member: str, size: int) -> None:
    """Make the central directory say ``member`` inflates to ``size`` bytes (a lie)."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        length = int.from_bytes(data[at + 28 : at + 30], "little")
        if data[at + 46 : at + 46 + length] == name:
            data[at + 24 : at + 28] = size.to_bytes(4, "little")
            path.write_bytes(bytes(data))
            return
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{member} is not in {path}")


async def unpack_one(path: Path, cache: Path, **options: Any) -> UnpackedWheel:
    """Unpack one archive into the cache at ``cache``."""
    (unpacked,) = await unpack_wheels([path], cache_dir=cache, **options)
    return unpacked
