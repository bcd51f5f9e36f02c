"""What a wheel says about itself: file name, WHEEL, METADATA and entry points (RECORD is
``_record``'s, and which paths a wheel may name is ``_confinement``'s).

Pure parsing and checking, shared by the unpacker (archives) and by installs of trees that
were unpacked elsewhere. Every rule breaks with :class:`InvalidWheelError` naming the wheel and
the entry; the rules are those of the binary distribution format and "recording installed
projects" specifications, and ``CONFORMANCE.md``.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable
from typing import NamedTuple

from ._confinement import is_file_name
from ._errors import InvalidWheelError, WheelVersionWarning
from ._record import RecordEntry, parse_record
from ._scripts import EntryPoint

__all__ = [
    "DistInfo",
    "WheelName",
    "check_dist_info_name",
    "check_metadata_name",
    "parse_entry_points",
    "parse_metadata",
    "parse_wheel_file",
    "read_dist_info",
    "same_version",
]

logger = logging.getLogger("asynclink")

_ENTRY_POINT = re.compile(r"^\s*(?P<module>[\w.]+)\s*(?::\s*(?P<attr>[\w.]+)\s*)?(?:\[.*\])?\s*$")


class WheelName(NamedTuple):
    """The parts of a wheel file name."""

    filename: str
    name: str
    """Canonical (PEP 503) distribution name."""
    version: str
    tags: tuple[str, ...]

    @classmethod
    def parse(cls, filename: str) -> WheelName:
        from packaging.utils import InvalidWheelFilename, parse_wheel_filename
        from packaging.version import InvalidVersion

        try:
            name, version, _build, tags = parse_wheel_filename(filename)
        except (InvalidWheelFilename, InvalidVersion) as error:
            raise InvalidWheelError(filename, f"not a valid wheel file name: {error}") from None
        return cls(filename, str(name), str(version), tuple(sorted(str(t) for t in tags)))


def check_dist_info_name(wheel: WheelName, top_level: set[str]) -> str:
    """The one ``<name>-<version>.dist-info`` directory, matching the file name."""
    infos = sorted(name for name in top_level if name.endswith(".dist-info"))
    if not infos:
        raise InvalidWheelError(wheel.filename, "no .dist-info directory")
    if len(infos) > 1:
        raise InvalidWheelError(wheel.filename, f"more than one .dist-info directory: {infos}")
    from packaging.utils import canonicalize_name

    info = infos[0]
    name, _, version = info[: -len(".dist-info")].rpartition("-")
    if canonicalize_name(name) != wheel.name or not same_version(version, wheel.version):
        raise InvalidWheelError(
            wheel.filename,
            f"the .dist-info directory {info} does not match the file name "
            f"({wheel.name} {wheel.version})",
            entry=info,
        )
    return info


def same_version(one: str, other: str) -> bool:
    """Whether two spellings name one version (``2.0-1`` is ``2.0.post1``)."""
    from packaging.version import Version

    try:
        return Version(one) == Version(other)
    except ValueError:  # InvalidVersion, or a number too long for int() (4,300 digits)
        return one == other


def check_metadata_name(wheel: WheelName, name: str, version: str, entry: str) -> None:
    """METADATA's ``Name`` and ``Version`` say what the file name says, as uv insists: a wheel
    must not install one project under the name of another."""
    from packaging.utils import canonicalize_name

    if canonicalize_name(name) != wheel.name or not same_version(version, wheel.version):
        raise InvalidWheelError(
            wheel.filename,
            f"METADATA says Name: {name}, Version: {version}, but the file name says "
            f"{wheel.name} {wheel.version}",
            entry=entry,
        )


class DistInfo(NamedTuple):
    """What a wheel's ``.dist-info`` says about it."""

    root_is_purelib: bool
    name: str
    version: str
    record: dict[str, RecordEntry]
    entry_points: tuple[EntryPoint, ...]


def read_dist_info(wheel: str, dist_info: str, text: Callable[[str], str | None]) -> DistInfo:
    """Check and read WHEEL, METADATA, RECORD and entry_points.txt; ``text(name)`` gives a
    file of the dist-info directory (``None`` if it is missing)."""
    root_is_purelib = parse_wheel_file(wheel, text("WHEEL"))
    name, version = parse_metadata(wheel, text("METADATA"))
    record_text = text("RECORD")
    if record_text is None:
        raise InvalidWheelError(wheel, f"missing {dist_info}/RECORD")
    return DistInfo(
        root_is_purelib=root_is_purelib,
        name=name,
        version=version,
        record=parse_record(wheel, record_text),
        entry_points=tuple(parse_entry_points(wheel, text("entry_points.txt"))),
    )


def parse_wheel_file(wheel: str, text: str | None) -> bool:
    """Check ``WHEEL``; return whether the root is purelib (``Root-Is-Purelib``)."""
    if text is None:
        raise InvalidWheelError(wheel, "missing .dist-info/WHEEL")
    headers = _headers(text)
    declared = headers.get("wheel-version")
    if declared is None:
        raise InvalidWheelError(wheel, "WHEEL has no Wheel-Version", entry="WHEEL")
    try:
        major, minor = (int(part) for part in declared.strip().split(".")[:2])
    except ValueError:
        raise InvalidWheelError(
            wheel, f"malformed Wheel-Version {declared!r}", entry="WHEEL"
        ) from None
    if major > 1:
        raise InvalidWheelError(
            wheel, f"Wheel-Version {declared} is not supported (only up to 1.x)", entry="WHEEL"
        )
    if major == 1 and minor > 0:  # 0.x: older than the format's first version; pip takes it
        message = f"{wheel}: Wheel-Version {declared} is newer than 1.0; installing it anyway"
        logger.warning(message)
        warnings.warn(message, WheelVersionWarning, stacklevel=2)
    return headers.get("root-is-purelib", "").strip().lower() == "true"


def parse_metadata(wheel: str, text: str | None) -> tuple[str, str]:
    """``Name`` and ``Version`` from ``METADATA``."""
    if text is None:
        raise InvalidWheelError(wheel, "missing .dist-info/METADATA")
    headers = _headers(text)
    name, version = headers.get("name"), headers.get("version")
    if not name or not version:
        raise InvalidWheelError(wheel, "METADATA has no Name or no Version", entry="METADATA")
    return name.strip(), version.strip()


def _headers(text: str) -> dict[str, str]:
    """RFC 822 style headers up to the first blank line, keys lower-cased, first one wins."""
    headers: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        if line[0] in " \t":
            continue  # a folded continuation: nothing we read is folded
        key, sep, value = line.partition(":")
        if sep:
            headers.setdefault(key.strip().lower(), value.strip())
    return headers


def parse_entry_points(wheel: str, text: str | None) -> list[EntryPoint]:
    """Console and GUI scripts from ``entry_points.txt``; extras are ignored."""
    if not text:
        return []
    import configparser

    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text)
    except configparser.Error as error:
        raise InvalidWheelError(wheel, f"entry_points.txt is malformed: {error}") from None
    found: list[EntryPoint] = []
    for section, kind in (("console_scripts", "console"), ("gui_scripts", "gui")):
        if not parser.has_section(section):
            continue
        for name, value in parser.items(section):
            if not is_file_name(name):
                raise InvalidWheelError(
                    wheel, f"entry point name {name!r} is not a file name", entry=name
                )
            match = _ENTRY_POINT.match(value)
            if match is None or match.group("attr") is None:
                raise InvalidWheelError(
                    wheel,
                    f"entry point {name} = {value!r} is not 'module:callable'",
                    entry=name,
                )
            found.append(EntryPoint(name, match.group("module"), match.group("attr"), kind))
    return found
