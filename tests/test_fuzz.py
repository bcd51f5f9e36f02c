"""Fuzz: whatever bytes a ``.whl`` holds, unpacking it either works or is refused with
:class:`~asynclink.InvalidWheelError`, writes nothing outside the cache, and leaves no trace
in the cache when refused.

Everything that parses wheel input is reached through the public ``unpack_wheels``: the zip
reader (central directory, local headers, the mapped-archive inflate path), RECORD, WHEEL,
METADATA and entry_points.txt. Examples start from real wheels: seeds built here (nested
packages, a 200 kB deflated member, a stored one, ``.data/scripts``, entry points) and, when
the checkout sits beside it, pip's own test wheels in ``../shared/testdata/pip-wheels``. Three
kinds of damage are drawn: raw byte edits aimed at the headers and the central directory,
rewritten dist-info files, and hostile member names.

Any other exception (``BufferError``, ``RecursionError``, ``LinkError``, ``struct.error``,
...) is a bug, and so is a changed file outside the cache or a leftover in it.

CI runs a small search: ``FUZZ_EXAMPLES`` examples (default 50) per test and backend, new ones
each run. ``FUZZ_EXAMPLES=20000 pytest tests/test_fuzz.py`` runs a long one. Hypothesis'
example database is off, so a local run never steers CI's; a failure prints the
``@reproduce_failure`` blob that replays it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from asynclink import InvalidWheelError, unpack_wheels
from tests.trees import make_tree, snapshot
from tests.wheels import build_wheel, record_hash

if TYPE_CHECKING:
    from hypothesis.vendor.pretty import RepresentationPrinter

    from asynclink._manifest import Manifest

pytestmark = [
    pytest.mark.anyio,
    # Both are documented outcomes of an accepted wheel, not failures (pytest makes every
    # warning an error): a newer minor Wheel-Version, and __pycache__ files left out.
    pytest.mark.filterwarnings("ignore::asynclink.WheelVersionWarning"),
    pytest.mark.filterwarnings("ignore:.*under __pycache__/ shipped in the wheel:UserWarning"),
]

PIP_WHEELS = Path(__file__).resolve().parents[2] / "shared/testdata/pip-wheels"

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "50")),
    deadline=None,
    database=None,
    print_blob=True,
    # No explain phase: rerunning variants of a failure 4,000 directories deep costs minutes.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


# --- Zip archives, member by member ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    """One archive member as raw as the format has it: the name is bytes, not text."""

    name: bytes
    data: bytes
    method: int = zipfile.ZIP_DEFLATED
    mode: int = stat.S_IFREG | 0o644
    """The Unix mode kept in the high half of the external attributes."""
    utf8: bool = True
    """Whether the name is flagged as UTF-8 (bit 11); without it readers take cp437."""
    listed_as: bytes | None = None
    """The path RECORD lists the member under (usually its name); ``None``: not listed."""


_LOCAL = struct.Struct("<4s5H3I2H")
_CENTRAL = struct.Struct("<4s6H3I5H2I")
_END = struct.Struct("<4s4H2IH")
_DOS_TIME, _DOS_DATE = 0, (2020 - 1980) << 9 | 1 << 5 | 1


def write_zip(members: Sequence[Member]) -> bytes:
    """A zip archive of ``members``, written field by field so that nothing (NUL bytes, odd
    modes, names that are not UTF-8) is cleaned up on the way, as ``zipfile`` would."""
    body, central = bytearray(), bytearray()
    for member in members:
        packed = member.data
        if member.method == zipfile.ZIP_DEFLATED:
            deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
            packed = deflater.compress(member.data) + deflater.flush()
        flags = 0x800 if member.utf8 else 0
        crc = zlib.crc32(member.data)
        sizes = (crc, len(packed), len(member.data), len(member.name))
        offset = len(body)
        body += _LOCAL.pack(
            b"PK\x03\x04", 20, flags, member.method, _DOS_TIME, _DOS_DATE, *sizes, 0
        )
        body += member.name + packed
        central += _CENTRAL.pack(
            b"PK\x01\x02",
            3 << 8 | 20,  # made by Unix, so readers take the mode from the external attributes
            20,
            flags,
            member.method,
            _DOS_TIME,
            _DOS_DATE,
            *sizes,
            0,
            0,
            0,
            0,
            member.mode << 16,
            offset,
        )
        central += member.name
    count = len(members)
    end = _END.pack(b"PK\x05\x06", 0, 0, count, count, len(central), len(body), 0)
    return bytes(body + central + end)


def read_members(data: bytes) -> list[Member] | None:
    """The members of an archive ``zipfile`` can read, each listed in RECORD under its own
    name if RECORD lists it; ``None`` for an archive it cannot read."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            contents = [archive.read(info) for info in infos]
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    members = [
        Member(
            name=info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437"),
            data=content,
            method=info.compress_type,
            mode=info.external_attr >> 16 or stat.S_IFREG | 0o644,
            utf8=bool(info.flag_bits & 0x800),
        )
        for info, content in zip(infos, contents, strict=True)
    ]
    listed = set(_record_paths(members))
    return [replace(m, listed_as=m.name if m.name in listed else None) for m in members]


def _record_paths(members: Sequence[Member]) -> list[bytes]:
    for member in members:
        if member.name.endswith(b".dist-info/RECORD"):
            rows = csv.reader(member.data.decode("utf-8", "replace").splitlines())
            return [row[0].encode() for row in rows if row]
    return []


def with_record(members: Sequence[Member]) -> list[Member]:
    """``members`` with a RECORD (where their dist-info has one) listing each member that is
    ``listed_as`` something, with its true hash and size."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    record = next((m for m in members if m.name.endswith(b".dist-info/RECORD")), None)
    for member in members:
        if member.listed_as is not None and member is not record:
            path = member.listed_as.decode("utf-8", "replace")
            writer.writerow([path, record_hash(member.data), len(member.data)])
    if record is None:
        return list(members)
    writer.writerow([record.name.decode("utf-8", "replace"), "", ""])
    new = replace(record, data=buffer.getvalue().encode())
    return [new if m is record else m for m in members]


# --- Seeds ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seed:
    """A real wheel: its file name (a valid wheel name, kept through every mutation), its
    bytes, its members when ``zipfile`` can read it, and whether asynclink takes it as it is
    (pip's test wheels include broken ones)."""

    filename: str
    data: bytes
    members: tuple[Member, ...] | None
    valid: bool

    def __repr__(self) -> str:  # examples print the seed by name, not 200 kB of it
        return f"<seed {self.filename}>"

    def _repr_pretty_(self, printer: RepresentationPrinter, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis prints dataclasses field by field otherwise


def _stored_member(path: str, data: bytes) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    return info, data


def _listing(path: str, data: bytes) -> Callable[[list[list[str]]], list[list[str]]]:
    return lambda rows: [[path, record_hash(data), str(len(data))], *rows]


def _built_seeds(directory: Path) -> list[Path]:
    big = "".join(f"line {n}: the quick brown fox jumps over the lazy dog\n" for n in range(4000))
    stored = bytes(range(256)) * 16
    rich = build_wheel(
        directory,
        name="fuzzseed",
        files={
            "fuzzseed/__init__.py": "from .sub.deeper import mod\n",
            "fuzzseed/sub/__init__.py": "",
            "fuzzseed/sub/deeper/__init__.py": "",
            "fuzzseed/sub/deeper/mod.py": "def main() -> None:\n    print('fuzz')\n",
            "fuzzseed/big.txt": big[: 200 * 1024],
            "fuzzseed-1.0.data/scripts/fuzz-shell": "#!/bin/sh\necho fuzz\n",
            "fuzzseed-1.0.data/scripts/fuzz-python": "#!python\nprint('fuzz')\n",
            "fuzzseed-1.0.data/data/share/fuzzseed/notes.txt": "notes\n",
        },
        executable=["fuzzseed-1.0.data/scripts/fuzz-shell"],
        entry_points=(
            "[console_scripts]\nfuzz = fuzzseed.sub.deeper.mod:main\n"
            "fuzz-extra = fuzzseed:main [extra]\n\n"
            "[gui_scripts]\nfuzz-gui = fuzzseed.sub.deeper.mod:main\n"
        ),
        extra=[_stored_member("fuzzseed/table.bin", stored)],
        record=_listing("fuzzseed/table.bin", stored),
    )
    tiny = build_wheel(directory, name="tiny", files={"tiny.py": "TINY = 1\n"})
    platlib = build_wheel(
        directory,
        name="plat_seed",
        version="2.0",
        root_is_purelib=False,
        files={"plat_seed/__init__.py": "", "plat_seed/_native.so": b"\x7fELF" + bytes(64)},
        entry_points="[console_scripts]\nplat = plat_seed:main\n",
    )
    return [rich, tiny, platlib]


def _seed(path: Path) -> Seed:
    data = path.read_bytes()
    members = read_members(data)
    return Seed(path.name, data, None if members is None else tuple(members), _unpacks(path))


def _unpacks(archive: Path) -> bool:
    """Whether ``unpack_wheels`` takes the archive; asked from a thread of its own, as seeds
    are loaded while hypothesis draws an example, which may be inside a test's event loop."""

    async def attempt() -> bool:
        with tempfile.TemporaryDirectory(prefix="asynclink-fuzz-seed-") as cache_dir:
            try:
                await unpack_wheels([archive], cache_dir=cache_dir)
            except InvalidWheelError:
                return False
            return True

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, attempt).result()


@cache
def built_seeds() -> tuple[Seed, ...]:
    with tempfile.TemporaryDirectory(prefix="asynclink-fuzz-seeds-") as directory:
        return tuple(_seed(path) for path in _built_seeds(Path(directory)))


@cache
def pip_seeds() -> tuple[Seed, ...]:
    """pip's test wheels (some broken on purpose); none where that folder is not there."""
    return tuple(_seed(path) for path in sorted(PIP_WHEELS.glob("*.whl")))


def seeds(valid: bool = False) -> st.SearchStrategy[Seed]:
    """A seed (with ``valid``: one asynclink takes as it is, to rewrite part of it); the built
    ones as often as pip's, which outnumber them."""

    def pick(found: tuple[Seed, ...]) -> st.SearchStrategy[Seed]:
        return st.sampled_from([seed for seed in found if seed.valid or not valid])

    return st.deferred(
        lambda: (
            st.one_of(pick(built_seeds()), pick(pip_seeds()))
            if any(seed.valid or not valid for seed in pip_seeds())
            else pick(built_seeds())
        )
    )


# --- The oracle -----------------------------------------------------------------------------


def _entries(root: Path, *, remove: bool = False) -> Iterator[int]:
    """The mode of every entry under ``root``; with ``remove``, each is removed after.

    Walked with one directory descriptor at a time and no recursion: a fuzzed wheel may nest
    thousands of directories, deeper than ``os.walk`` recurses and than a whole path can name.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    fd = os.open(root, flags)
    names: list[str] = []  # from root down to the directory ``fd`` is
    pending: list[list[str]] = []  # per level: subdirectories still to visit
    try:
        while True:
            subdirectories: list[str] = []
            with os.scandir(fd) as scan:
                for entry in scan:
                    mode = entry.stat(follow_symlinks=False).st_mode
                    yield mode
                    if stat.S_ISDIR(mode):
                        subdirectories.append(entry.name)
                    elif remove:
                        os.unlink(entry.name, dir_fd=fd)
            pending.append(subdirectories)
            while not pending[-1]:
                pending.pop()
                if not names:
                    if remove:
                        os.rmdir(root)
                    return
                parent = os.open("..", flags, dir_fd=fd)
                os.close(fd)
                fd = parent
                name = names.pop()
                if remove:
                    os.rmdir(name, dir_fd=fd)
            name = pending[-1].pop()
            child = os.open(name, flags, dir_fd=fd)
            os.close(fd)
            fd = child
            names.append(name)
    finally:
        os.close(fd)


def remove_tree(root: Path) -> None:
    if root.is_dir():
        for _ in _entries(root, remove=True):
            pass


def _listing_of(directory: Path) -> list[str]:
    return sorted(os.listdir(directory)) if directory.is_dir() else []


async def check_unpack(filename: str, data: bytes) -> bool:
    """Unpack ``data`` as a wheel named ``filename`` beside an unrelated folder and check every
    promise of the fuzz test; return whether it was unpacked (rather than refused)."""
    with tempfile.TemporaryDirectory(prefix="asynclink-fuzz-") as name:
        scratch = Path(name)
        cache_dir = scratch / "cache"
        try:
            archive = scratch / filename
            archive.write_bytes(data)
            make_tree(
                scratch / "outside",
                {"victim.txt": "must not change\n", "pkg/__init__.py": "KEEP = 1\n"},
            )
            before = snapshot(scratch)
            try:
                (unpacked,) = await unpack_wheels([archive], cache_dir=cache_dir)
            except InvalidWheelError:
                unpacked = None
            except Exception as error:
                raise AssertionError(
                    f"unpack_wheels raised {type(error).__name__}: {error} "
                    "(a wheel may only be refused with InvalidWheelError)"
                ) from error

            staging = _listing_of(cache_dir / "tmp")
            assert staging == [], f"extractions left in the cache's tmp/: {staging}"
            entries = [
                f"{wheels.name}/{entry}"
                for wheels in cache_dir.glob("wheels-v*")
                for entry in _listing_of(wheels)
            ]
            if unpacked is None:
                assert entries == [], f"a refused wheel left cache entries: {entries}"
            else:
                tree = Path(os.path.realpath(unpacked.tree))
                digest = hashlib.sha256(data).hexdigest()
                assert tree.is_relative_to(os.path.realpath(cache_dir)), tree
                assert [e.rpartition("/")[2] for e in entries] == [digest], entries
                odd = [
                    mode
                    for mode in _entries(tree)
                    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))
                ]
                assert odd == [], f"the unpacked tree holds entries of modes {odd}"

            remove_tree(cache_dir)
            assert snapshot(scratch) == before, "unpacking changed files outside the cache"
        finally:
            remove_tree(cache_dir)  # deep trees: more than tempfile's recursive clean-up can
        return unpacked is not None


# --- (1) Raw bytes --------------------------------------------------------------------------

#: Values that sizes, offsets, counts and signatures break on.
INTERESTING = [
    *(struct.pack("<I", v) for v in (0, 1, 0x7F, 0x80, 0xFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF)),
    *(struct.pack("<H", v) for v in (0, 1, 8, 12, 14, 0x800, 0xFFFF)),
    b"PK\x03\x04",
    b"PK\x01\x02",
    b"PK\x05\x06",
    b"PK\x06\x06",
    b"PK\x06\x07",
]

_SIGNATURES = re.compile(rb"PK(\x03\x04|\x01\x02|\x05\x06|\x06\x06|\x06\x07)")


def structure_offsets(data: bytes) -> list[int]:
    """Where the zip structure is: every header and end record, and where each member's
    compressed bytes start (edits are aimed near these more than anywhere else)."""
    found = {0, len(data)}
    for match in _SIGNATURES.finditer(data):
        found.add(match.start())
        start = match.start() + _LOCAL.size
        if match.group(1) == b"\x03\x04" and start <= len(data):
            name_length, extra_length = struct.unpack_from("<HH", data, start - 4)
            found.add(min(len(data), start + name_length + extra_length))
    return sorted(found)


@dataclass(frozen=True, slots=True)
class ByteEdit:
    kind: str
    """flip (xor ``payload``), overwrite, insert, delete (``length`` bytes), truncate, or bump
    (add ``length`` to the little-endian 32-bit number at ``offset``: sizes that lie by one)."""
    offset: int
    payload: bytes = b""
    length: int = 0

    def apply(self, data: bytearray) -> None:
        at = min(self.offset, len(data))
        if self.kind == "flip":
            for n, mask in enumerate(self.payload[: len(data) - at]):
                data[at + n] ^= mask
        elif self.kind == "overwrite":
            data[at : at + len(self.payload)] = self.payload
        elif self.kind == "insert":
            data[at:at] = self.payload
        elif self.kind == "delete":
            del data[at : at + self.length]
        elif self.kind == "truncate":
            del data[at:]
        elif self.kind == "bump" and at + 4 <= len(data):
            (value,) = struct.unpack_from("<I", data, at)
            struct.pack_into("<I", data, at, (value + self.length) % (1 << 32))


@cache
def byte_edits(seed: Seed) -> st.SearchStrategy[ByteEdit]:
    data = seed.data
    size = len(data)
    near_structure = st.builds(
        lambda anchor, delta: max(0, min(size, anchor + delta)),
        st.sampled_from(structure_offsets(data)),
        st.integers(-4, 60),
    )
    offsets = st.one_of(near_structure, st.integers(0, size))
    values = st.one_of(st.sampled_from(INTERESTING), st.binary(min_size=1, max_size=8))
    masks = st.integers(0, 7).map(lambda bit: bytes([1 << bit]))
    return st.one_of(
        st.builds(ByteEdit, st.just("flip"), offsets, masks),
        st.builds(ByteEdit, st.just("overwrite"), offsets, values),
        st.builds(ByteEdit, st.just("insert"), offsets, values | st.binary(max_size=64)),
        st.builds(ByteEdit, st.just("delete"), offsets, length=st.integers(1, 64)),
        st.builds(ByteEdit, st.just("bump"), offsets, length=st.integers(-3, 3)),
        st.builds(ByteEdit, st.just("truncate"), offsets),
    )


@dataclass(frozen=True, slots=True)
class DamagedArchive:
    seed: Seed
    edits: tuple[ByteEdit, ...]

    def build(self) -> bytes:
        data = bytearray(self.seed.data)
        for edit in self.edits:
            edit.apply(data)
        return bytes(data)


@st.composite
def damaged_archives(draw: st.DrawFn) -> DamagedArchive:
    seed = draw(seeds())
    edits = draw(st.lists(byte_edits(seed), min_size=1, max_size=3))
    return DamagedArchive(seed, tuple(edits))


# --- (2) Dist-info files --------------------------------------------------------------------

DIST_INFO_FILES = ("RECORD", "WHEEL", "METADATA", "entry_points.txt")

#: Bits of text the parsers split on, quote with, or choke on.
TOKENS = [
    b",",
    b'"',
    b"\n",
    b"\r\n",
    b"\r",
    b"=",
    b":",
    b"[",
    b"]",
    b" ",
    b"\t",
    b"#",
    b";",
    b"%",
    b"\\",
    b"/",
    b"../",
    b"\x00",
    b"\x0c",
    b"\x1c",
    "\u2028".encode(),
    "\x85".encode(),
    b"\xff",
    b"\xc3",
    b"\xef\xbb\xbf",
    b"sha256=",
    b"md5=",
    b"-1",
    b"99999999999999999999",
    "\u0661".encode(),
    b"[console_scripts]\n",
    b"Wheel-Version: 2.0\n",
    b"Name: other\n",
]

#: Replacements that keep a file almost right: an algorithm, a separator, a header changed.
SUBSTITUTIONS = [
    (b"sha256=", b"md5="),
    (b"sha256=", b"sha512="),
    (b"sha256=", b"SHA256="),
    (b"sha256=", b"sha3_256="),
    (b"sha256=", b"blake2b="),
    (b"sha256=", b"="),
    (b",", b""),
    (b",", b",,"),
    (b",", b'","'),
    (b"\n", b"\r\n"),
    (b"\n", b"\r"),
    (b"\n", b"\n\n"),
    (b"\n", b"\n "),
    (b": ", b":"),
    (b":", b"="),
    (b"=", b":"),
    (b" = ", b" =\n  "),
    (b"1.0", b"1.9"),
    (b"1.0", b"2.0"),
    (b"1.0", b"1"),
    (b"1.0", b"1.x"),
    (b"true", b"false"),
    (b"Name", b"name"),
    (b"Version", b"Versio"),
    (b"[console_scripts]", b"[console_scripts"),
    (b"[console_scripts]", b"[gui_scripts]"),
    (b"[console_scripts]", b"[console_scripts]\n[console_scripts]"),
    (b".dist-info/", b".dist-info//"),
    (b".dist-info/", b".dist-info/../"),
]

_NUMBER = re.compile(rb"-?\d+")
_DIGEST = re.compile(rb"(?<==)[A-Za-z0-9_-]{16,}")


@dataclass(frozen=True, slots=True)
class TextEdit:
    kind: str
    """insert ``new`` at ``at``; delete ``length`` bytes; duplicate-line or drop-line number
    ``at``; number or digest: replace the ``at``-th number or hash value with ``new``;
    substitute ``old`` with ``new`` everywhere."""
    at: int
    new: bytes = b""
    old: bytes = b""
    length: int = 0

    def apply(self, text: bytes) -> bytes:
        lines = text.splitlines(keepends=True)
        if self.kind == "insert":
            at = self.at % (len(text) + 1)
            return text[:at] + self.new + text[at:]
        if self.kind == "delete":
            at = self.at % (len(text) + 1)
            return text[:at] + text[at + self.length :]
        if self.kind in ("duplicate-line", "drop-line") and lines:
            at = self.at % len(lines)
            kept = [lines[at]] * 2 if self.kind == "duplicate-line" else []
            return b"".join([*lines[:at], *kept, *lines[at + 1 :]])
        if self.kind in ("number", "digest"):
            found = list((_NUMBER if self.kind == "number" else _DIGEST).finditer(text))
            if found:
                match = found[self.at % len(found)]
                return text[: match.start()] + self.new + text[match.end() :]
        if self.kind == "substitute":
            return text.replace(self.old, self.new)
        return text


NUMBERS = st.one_of(
    st.sampled_from([b"0", b"-1", b"", b" 5", b"1e3", b"0x10", "\u0661\u0660".encode()]),
    st.sampled_from([b"99999999999999999999", b"9" * 5000]),
    st.integers(-10, 10**7).map(lambda n: str(n).encode()),
)
DIGESTS = st.sampled_from(
    [b"", b"A", b"AAAA", b"!!==", record_hash(b"something else").partition("=")[2].encode()]
)

text_edits = st.one_of(
    st.builds(TextEdit, st.just("insert"), st.integers(0, 1 << 16), st.sampled_from(TOKENS)),
    st.builds(
        TextEdit, st.just("insert"), st.integers(0, 1 << 16), st.text(max_size=8).map(str.encode)
    ),
    st.builds(TextEdit, st.just("delete"), st.integers(0, 1 << 16), length=st.integers(1, 40)),
    st.builds(TextEdit, st.just("duplicate-line"), st.integers(0, 1 << 16)),
    st.builds(TextEdit, st.just("drop-line"), st.integers(0, 1 << 16)),
    st.builds(TextEdit, st.just("number"), st.integers(0, 1 << 16), NUMBERS),
    st.builds(TextEdit, st.just("digest"), st.integers(0, 1 << 16), DIGESTS),
    st.sampled_from(SUBSTITUTIONS).map(lambda pair: TextEdit("substitute", 0, pair[1], pair[0])),
)


def dist_info_of(members: Sequence[Member]) -> bytes:
    """The seed's ``.dist-info`` directory (the first, if a broken seed has more)."""
    tops = sorted({m.name.partition(b"/")[0] for m in members})
    return next((top for top in tops if top.endswith(b".dist-info")), b"x-1.0.dist-info")


@dataclass(frozen=True, slots=True)
class RewrittenFile:
    seed: Seed
    file: str
    """Which dist-info file: RECORD, WHEEL, METADATA or entry_points.txt."""
    contents: bytes | None
    """Its new bytes; ``None`` leaves it out."""
    listed: bool
    """Whether RECORD is written again to list the new contents (not for RECORD itself)."""

    def build(self) -> bytes:
        assert self.seed.members is not None
        name = dist_info_of(self.seed.members) + b"/" + self.file.encode()
        members = [m for m in self.seed.members if m.name != name]
        if self.contents is not None:
            old = next((m for m in self.seed.members if m.name == name), None)
            new = Member(name, self.contents, listed_as=name if self.file != "RECORD" else None)
            members.insert(len(members) if old is None else self.seed.members.index(old), new)
        return write_zip(with_record(members) if self.listed else members)


def rewritings(original: bytes) -> st.SearchStrategy[bytes | None]:
    """The file's text edited (mostly: a few edits), or text from scratch, or no file."""
    few = st.lists(text_edits, min_size=1, max_size=2)
    more = st.lists(text_edits, min_size=3, max_size=8)
    edited = st.one_of(few, more).map(lambda edits: _apply_all(original, edits))
    scratch = st.one_of(
        st.text(max_size=300).map(str.encode),
        st.binary(max_size=300).map(lambda raw: raw.decode("utf-8", "replace").encode()),
        st.none(),
    )
    return st.one_of(edited, scratch) if original else scratch


def _apply_all(text: bytes, edits: Sequence[TextEdit]) -> bytes:
    for edit in edits:
        text = edit.apply(text)
    return text


@st.composite
def rewritten_files(draw: st.DrawFn) -> RewrittenFile:
    seed = draw(seeds(valid=True))
    assert seed.members is not None
    file = draw(st.sampled_from(DIST_INFO_FILES))
    name = dist_info_of(seed.members) + b"/" + file.encode()
    original = next((m.data for m in seed.members if m.name == name), b"")
    contents = draw(rewritings(original))
    listed = file != "RECORD" and draw(st.booleans())
    return RewrittenFile(seed, file, contents, listed)


# --- (3) Member names -----------------------------------------------------------------------

#: Path components that break path rules, case folding, UTF-8 or the file system.
COMPONENTS = [
    b"..",
    b".",
    b"",
    b"...",
    b"__pycache__",
    b"a",
    b"A",
    b"\\",
    b"..\\..",
    b"C:",
    b"\x00",
    b"\x01",
    b"\x7f",
    b"\xff",
    b"\xc3\x28",
    b"\xed\xa0\x80",  # an encoded surrogate: not UTF-8
    "\u00e9".encode(),
    "e\u0301".encode(),
    "\u00df".encode(),
    b"SS",
    "\ufb01".encode(),
    "\u0130".encode(),
    "\u2028".encode(),
    b"\n",
    b" ",
    b"x" * 255,
    b"x" * 256,
    b"RECORD",
    b"RECORD.jws",
    b"WHEEL",
    b"other-1.0.dist-info",
    b"other-1.0.data",
    b"outside",
    b"victim.txt",
]

MODES = [
    stat.S_IFREG | 0o644,
    stat.S_IFREG | 0o755,
    stat.S_IFREG | 0o4755,
    stat.S_IFREG,
    stat.S_IFLNK | 0o777,
    stat.S_IFDIR | 0o755,
    stat.S_IFIFO | 0o644,
    stat.S_IFCHR | 0o644,
    0,
]


def member_names(members: Sequence[Member]) -> st.SearchStrategy[bytes]:
    """Names built from the seed's own path components (collisions between a file and a
    directory, or in case) and from hostile ones; deep, long, and escaping paths."""
    own = sorted({part for m in members for part in m.name.split(b"/")})
    dist_info = dist_info_of(members)
    data_dir = dist_info.removesuffix(b".dist-info") + b".data"
    component = st.one_of(
        st.sampled_from(own),
        st.sampled_from(COMPONENTS),
        st.text(min_size=1, max_size=8).map(str.encode),
    )
    relative = st.builds(
        lambda parts, separator: separator.join(parts),
        st.lists(component, min_size=1, max_size=4),
        st.sampled_from([b"/", b"/", b"/", b"\\", b"//", b"/./"]),
    )
    decorated = st.builds(
        lambda head, middle, tail: head + middle + tail,
        st.sampled_from([b"", b"", b"/", b"./", b"../", b"C:/", b"\\", dist_info + b"/"]),
        relative,
        st.sampled_from([b"", b"", b"", b"/", b".py", b"\x00.py"]),
    )
    schemes = st.sampled_from([b"scripts", b"purelib", b"platlib", b"headers", b"data", b"x", b""])
    in_data = st.builds(lambda key, rest: data_dir + b"/" + key + b"/" + rest, schemes, relative)
    nested = st.builds(lambda top, rest: top + b"/" + rest, st.sampled_from(own), relative)
    # Deeper than Python recurses (1,000 frames), than a whole path can name (4,096 bytes).
    depths = st.one_of(st.integers(1, 64), st.sampled_from([999, 1001, 2047, 2100, 4096]))
    deep = st.builds(lambda depth, leaf: b"d/" * depth + leaf, depths, component)
    escaping = st.builds(
        lambda up, separator, prefix: prefix + up * separator + b"outside/victim.txt",
        st.integers(1, 8),
        st.sampled_from([b"../", b"..\\", b"./../"]),
        st.sampled_from([b"", own[-1] + b"/", dist_info + b"/"]),
    )
    return st.one_of(nested, decorated, in_data, deep, escaping)


@dataclass(frozen=True, slots=True)
class NameEdit:
    kind: str
    """rename member ``index``; add a new member; duplicate member ``index`` under its own
    name, or under its name with the case swapped."""
    index: int
    name: bytes
    mode: int
    utf8: bool
    listed: bool
    """Whether RECORD lists the member under its new name (a renamed one that is not keeps
    its old row)."""
    method: int

    def __repr__(self) -> str:  # a 4,096-deep name prints as its first bytes and its length
        name = self.name if len(self.name) < 120 else self.name[:60] + b"..."
        return (
            f"NameEdit({self.kind!r}, index={self.index}, name={name!r} ({len(self.name)} "
            f"bytes), mode={self.mode:#o}, utf8={self.utf8}, listed={self.listed}, "
            f"method={self.method})"
        )

    def _repr_pretty_(self, printer: RepresentationPrinter, cycle: bool) -> None:
        printer.text(repr(self))

    def apply(self, members: list[Member]) -> None:
        at = self.index % len(members)
        old = members[at]
        if self.kind == "rename":
            listed_as = self.name if self.listed else old.listed_as
            members[at] = Member(
                self.name, old.data, self.method, self.mode, self.utf8, listed_as=listed_as
            )
        elif self.kind == "add":
            listed_as = self.name if self.listed else None
            members.append(
                Member(self.name, b"# added\n", self.method, self.mode, self.utf8, listed_as)
            )
        else:
            name = old.name if self.kind == "duplicate" else old.name.swapcase()
            listed_as = name if self.listed else None
            members.append(replace(old, name=name, data=b"# other\n", listed_as=listed_as))


@dataclass(frozen=True, slots=True)
class RenamedMembers:
    seed: Seed
    edits: tuple[NameEdit, ...]

    def build(self) -> bytes:
        assert self.seed.members is not None
        members = list(self.seed.members)
        for edit in self.edits:
            edit.apply(members)
        return write_zip(with_record(members))


@st.composite
def renamed_members(draw: st.DrawFn) -> RenamedMembers:
    seed = draw(seeds(valid=True))
    assert seed.members is not None
    edit = st.builds(
        NameEdit,
        kind=st.sampled_from(["rename", "rename", "add", "add", "duplicate", "case"]),
        index=st.integers(0, 1 << 16),
        name=member_names(seed.members),
        mode=st.one_of(st.just(stat.S_IFREG | 0o644), st.sampled_from(MODES)),
        utf8=st.booleans(),
        listed=st.one_of(st.just(True), st.booleans()),
        method=st.sampled_from([zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED]),
    )
    return RenamedMembers(seed, tuple(draw(st.lists(edit, min_size=1, max_size=4))))


# --- The tests ------------------------------------------------------------------------------


async def test_the_seeds_are_wheels_that_unpack() -> None:
    """The fuzz starts from valid wheels: the built seeds unpack as built and as this file's
    zip writer writes them again, and pip's wheels fare the same either way."""
    for seed in built_seeds():
        assert seed.members is not None
        assert await check_unpack(seed.filename, seed.data), seed
        assert await check_unpack(seed.filename, write_zip(seed.members)), seed
    for seed in pip_seeds():
        unpacked = await check_unpack(seed.filename, seed.data)
        if seed.members is not None:
            assert await check_unpack(seed.filename, write_zip(seed.members)) == unpacked, seed


@FUZZ
@given(case=damaged_archives())
async def test_an_archive_with_damaged_bytes_is_unpacked_or_refused_cleanly(
    case: DamagedArchive,
) -> None:
    """Bits flipped, bytes overwritten, inserted or deleted, the archive cut short: mostly in
    and around the local headers, the central directory and the end record."""
    note(f"{case!r}")  # anyio's hypothesis runner does not print the drawn arguments
    await check_unpack(case.seed.filename, case.build())


@FUZZ
@given(case=rewritten_files())
async def test_a_wheel_with_rewritten_dist_info_files_is_unpacked_or_refused_cleanly(
    case: RewrittenFile,
) -> None:
    """RECORD, WHEEL, METADATA or entry_points.txt edited (a separator, a row, a hash, a size,
    a header, bytes that are not UTF-8), written from scratch or left out."""
    note(f"{case!r}")  # anyio's hypothesis runner does not print the drawn arguments
    await check_unpack(case.seed.filename, case.build())


@FUZZ
@given(case=renamed_members())
async def test_a_wheel_with_hostile_member_names_is_unpacked_or_refused_cleanly(
    case: RenamedMembers,
) -> None:
    """Members renamed, added or duplicated: ``..``, absolute and backslashed paths, NUL and
    control characters, names that are not UTF-8 or differ only in case, components longer
    than a file name may be, paths thousands of directories deep, odd file modes."""
    note(f"{case!r}")  # anyio's hypothesis runner does not print the drawn arguments
    await check_unpack(case.seed.filename, case.build())


# --- The cache's manifests ------------------------------------------------------------------------


@cache
def seed_manifest() -> bytes:
    """A real manifest, of a wheel with root files, ``.data`` files and entry points."""
    from asynclink._cache import WheelCache
    from asynclink._manifest import MANIFEST_NAME

    with tempfile.TemporaryDirectory() as directory:
        wheel = build_wheel(
            Path(directory) / "dist",
            files={
                "demo/__init__.py": "",
                "demo/sub/mod.py": "X = 1\n",
                "demo-1.0.data/scripts/tool": "#!python\n",
                "demo-1.0.data/data/share/demo.txt": "data\n",
            },
            entry_points="[console_scripts]\ndemo = demo:main\n",
        )
        unpacked = WheelCache(Path(directory) / "cache").unpack(str(wheel))
        return (Path(unpacked.tree).parent / MANIFEST_NAME).read_bytes()


#: What an edit puts in place of a path's component: what a path that climbs is made of.
PATH_PARTS = st.sampled_from(
    ["..", "", ".", "/", "/etc", ".asynclink-journal", "a\x00b", "a\\..\\b", "C:", "\n"]
) | st.text(max_size=3)


@st.composite
def edited_fields(draw: st.DrawFn) -> dict[str, object]:
    """A manifest's fields with paths, names or whole fields replaced."""
    from asynclink._manifest import decode_fields

    fields = decode_fields(seed_manifest())
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        key = draw(st.sampled_from(["files", "dirs", "record", "dist_info", "top", "data",
                                    "entry_points", "name", "size"]))  # fmt: skip
        value = fields[key]
        if isinstance(value, str) and key != "name":
            lines = value.split("\n")
            line = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            parts = lines[line].split("/")
            parts[draw(st.integers(min_value=0, max_value=len(parts) - 1))] = draw(PATH_PARTS)
            lines[line] = "/".join(parts)
            fields[key] = "\n".join(lines)
        elif key in ("data", "entry_points", "top") and value:
            assert isinstance(value, list)
            at = draw(st.integers(min_value=0, max_value=len(value) - 1))
            item = value[at]
            if isinstance(item, list):
                item[0] = draw(PATH_PARTS) + "/" + item[0] if key == "data" else draw(PATH_PARTS)
            else:
                value[at] = draw(PATH_PARTS)
        else:
            fields[key] = draw(st.sampled_from([None, 1, -1, "", [], {}, True, ["x"]]))
    return fields


def assert_stays_in_the_tree(manifest: Manifest) -> None:
    """No path of ``manifest`` can lead out of the tree or onto asynclink's own files."""
    from asynclink._confinement import is_file_name

    paths = [*manifest.files, *manifest.dirs, *(entry.path for entry in manifest.data)]
    for path in [*paths, manifest.dist_info, *manifest.top]:
        parts = path.split("/")
        assert not path.startswith("/") and ".." not in parts and "\x00" not in path, path
        assert not any(part.startswith(".asynclink-") for part in parts), path
    assert "/" not in manifest.dist_info and not any("/" in name for name in manifest.top)
    assert all(is_file_name(entry_point.name) for entry_point in manifest.entry_points)


@FUZZ
@given(fields=edited_fields())
def test_a_manifest_with_edited_paths_is_read_as_one_that_stays_in_the_tree_or_refused(
    fields: dict[str, object],
) -> None:
    """A component of a path (or a name, or a field) replaced: reading the manifest gives one
    none of whose paths can lead out of the tree, or ``ValueError`` (``ManifestRefused`` is
    one); never another exception."""
    from asynclink._manifest import Manifest, encode_fields

    note(repr(fields))
    try:
        manifest = Manifest.from_bytes(encode_fields(fields))
    except ValueError:
        return
    assert_stays_in_the_tree(manifest)


#: What a byte edit puts into a manifest: pieces of paths and of the header's lengths.
MANIFEST_PIECES = st.sampled_from(
    [b"..", b"../", b"/", b"\n", b"\x00", b"\\", b".asynclink-", b'"', b"9", b"-1", b",", b"]"]
) | st.binary(max_size=4)


@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.integers(min_value=0), MANIFEST_PIECES, st.booleans()), min_size=1, max_size=6
    )
)
def test_a_manifest_with_edited_bytes_is_read_as_one_that_stays_in_the_tree_or_refused(
    edits: list[tuple[int, bytes, bool]],
) -> None:
    """Bytes overwritten or inserted anywhere in a manifest (its header's lengths too): as
    above."""
    from asynclink._manifest import Manifest

    data = bytearray(seed_manifest())
    for position, piece, insert in edits:
        at = position % (len(data) + 1)
        data[at : at if insert else at + len(piece)] = piece
    note(repr(bytes(data)))
    try:
        manifest = Manifest.from_bytes(bytes(data))
    except ValueError:
        return
    assert_stays_in_the_tree(manifest)
