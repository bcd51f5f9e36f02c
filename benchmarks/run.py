"""Benchmark asynclink against cp, uv, pip and pypa installer on a corpus of real wheels.

    python benchmarks/run.py                     # everything, on a tmpfs (/dev/shm), 5 rounds
    python benchmarks/run.py --rounds 9 --json results.json
    python benchmarks/run.py --root /var/tmp/bench --groups link,install
    python benchmarks/run.py --scaling           # the corpus x1, x2, x4
    python benchmarks/run.py --factor 4          # every group on the corpus x4

Every contestant runs as a separate process, the way a user runs it, with the real interpreter
(never a pyenv shim). Rounds are interleaved (every contestant once per round, in a shuffled
order), each into a fresh empty target or virtual environment whose creation is not timed.
The table shows medians of wall time, CPU time (user + system, the process and its children),
peak RSS and files per second, with ratios to ``cp`` (link only) and to uv (installs). Tools
that are missing are skipped with a note.

Groups:
  link     asynclink's core engine (link only) in each mode, against cp -al, cp -a, cp -as
           (and cp --reflink=always where the filesystem can clone)
  install  the asynclink CLI from a warm cache into a fresh venv, against uv with a warm cache,
           pip and installer, in hardlink and copy mode (and clone where the filesystem can
           clone); asynclink at --jobs 1 too
  cold     asynclink with an empty cache (unpack + install) against uv with an empty cache
  process  asynclink awaited inside a running interpreter (imports done and the code warmed
           by a first install elsewhere), against uv's whole process: warm hardlink, copy (and
           clone where the filesystem can clone), cold, and an install with nothing to do, one
           shot and in a session; with the worst lag of a 1 ms ticker
           running on the same event loop (uv's rows come along on their own when the
           install and cold groups are not run)
  cancel   an install awaited as above, cancelled at half of its own time: how long until the
           ``await`` returns with the venv as it was (hardlink and copy)
  life     the rest of an environment's life, each tool on an environment it installed the
           corpus into (untimed): the same install again (nothing to do), a sync to half of
           the corpus (the other half removed), an uninstall of every distribution
  startup  interpreter start-up with and without asyncio, anyio and asynclink's modules (and
           those modules with a dataclass decorator that generates no code, made after
           anyio's, to show what asynclink's decorators cost); importing pypa installer.
           Fractions of a second each: run many rounds of this group alone to see a change
  bounds   what limits asynclink, each measured on its own: the worst lag
           of a 1 ms ticker while every core runs a busy loop (no install); bare loops of
           os.link and of copies (small and large files) over the cached trees; link only
           without helper processes, with a second filesystem thread instead, and with one
           helper; inflating and hashing the corpus

``--baseline DIR`` (a checkout of another revision of asynclink) adds a twin of the rows a
change to asynclink's start-up or engine moves (the command's warm installs, the in-process
warm installs and the one with nothing to do, the sync and the uninstall of the ``life``
group, start-up with asynclink's modules), run with
that checkout first on ``PYTHONPATH``, interleaved with the others; each twin's ratio is to
the row it twins, so before and after are measured in the same rounds.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus.txt"
DOWNLOADS = Path.home() / ".cache" / "asynclink-bench"
#: The real interpreter behind ``sys.executable`` (a venv's python is a symlink to it; a pyenv
#: shim is a shell script that costs tens of milliseconds, so it must never be what we time).
PYTHON = sys.executable
BIN = Path(sys.executable).parent

#: ``uv`` followed by these and an interpreter: install the given wheels from uv's cache only.
UV_INSTALL = ["pip", "install", "--offline", "--no-deps", "--quiet", "--python"]

LINK_DRIVER = """
import sys, anyio, asynclink
target, mode, jobs, threads, processes, *trees = sys.argv[1:]
options = {"helper_processes": int(processes)} if processes != "default" else {}
result = anyio.run(lambda: asynclink.link_wheels(
    target, trees, mode=mode, jobs=int(jobs) or None, filesystem_threads=int(threads), **options))
print(result.elapsed)  # the engine's own time, without the interpreter's start-up
"""

#: The floor under a hardlink install: one thread, a ``mkdir`` per directory and an ``os.link``
#: per file over the same trees, listed before the clock starts; prints its own time.
BARE_LINKS = """
import os, sys, time
target, *trees = sys.argv[1:]
work = []
for tree in trees:
    for directory, _, names in os.walk(tree):
        relative = os.path.relpath(directory, tree)
        work.append((os.path.join(target, relative), [
            (os.path.join(directory, n), os.path.join(target, relative, n)) for n in names]))
started = time.perf_counter()
for directory, files in work:
    os.makedirs(directory, exist_ok=True)
    for source, destination in files:
        os.link(source, destination)
print(time.perf_counter() - started)
"""

#: The floor under a copy install: one thread, for files at least (``large``) or below
#: (``small``) 1 MiB, the calls a copy needs: two opens, fstat, sendfile, two closes.
BARE_COPIES = """
import os, sys, time
target, which, *trees = sys.argv[1:]
work = []
for number, tree in enumerate(trees):
    for directory, _, names in os.walk(tree):
        for name in names:
            path = os.path.join(directory, name)
            if (os.path.getsize(path) >= 1 << 20) == (which == "large"):
                work.append((path, os.path.join(target, f"{number}-{len(work)}")))
started = time.perf_counter()
for source, destination in work:
    fin = os.open(source, os.O_RDONLY)
    size = os.fstat(fin).st_size
    fout = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    offset = 0
    while offset < size:
        offset += os.sendfile(fout, fin, offset, size - offset)
    os.close(fout)
    os.close(fin)
print(time.perf_counter() - started)
"""

#: The floor under a cold install: CPU time to inflate every member of every wheel
#: (``inflate``) or to SHA-256 the inflated bytes (``hash``), in one thread.
UNPACK_WORK = """
import hashlib, sys, time, zipfile
which, *wheels = sys.argv[1:]
spent = 0.0
for wheel in wheels:
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            started = time.process_time()
            data = archive.read(member)
            inflated = time.process_time()
            hashlib.sha256(data).digest()
            done = time.process_time()
            spent += inflated - started if which == "inflate" else done - inflated
print(spent)
"""

#: An install awaited in a running interpreter: a first install into a throwaway venv (from a
#: throwaway cache when the timed one is cold) loads and warms the code, then the timed one runs
#: beside a 1 ms ticker. Prints the worst lag the ticker saw, then the install's own time. With
#: ``session`` both run in one ``asynclink.Session`` and the first installs every wheel, as a
#: package manager's earlier call would. The warm-up's venv is removed before the timed install
#: (measured on a tmpfs: copies ran up to three times slower while gigabytes of earlier copies
#: were still held in memory). For ``cancel``, an untimed install of the same wheels
#: first measures how long one takes; the timed one is cancelled at half of that, and the time
#: printed runs from the cancel to the ``await`` returning, checked to have left the venv
#: exactly as it was but for the journal (whose trash a background ``rm`` is deleting), and
#: then, once that deletion has ended, exactly as it was.
IN_PROCESS = """
import os, shutil, subprocess, sys, time, anyio, asynclink, asynclink._transaction
venv, cache, mode, again, *wheels = sys.argv[1:]
def make(path):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", path], check=True)
def listing(path, journal=True):
    hidden = () if journal else (".asynclink-journal",)
    return sorted((d, sorted(set(names) - set(hidden)), sorted(files))
                  for d, names, files in os.walk(path) if not any(h in d for h in hidden))
async def main():
    if again == "session":  # a package manager's second call: helpers and manifests kept
        async with asynclink.Session():
            await measure()
    else:
        await measure()
async def measure():
    warm_cache = cache if not cache.endswith("cold-cache") else cache + "-warm-up"
    make(venv + "-warm-up")
    warm_up = wheels if again == "session" else wheels[:1]
    await asynclink.install_wheels(venv + "-warm-up", warm_up, cache_dir=warm_cache, mode=mode)
    shutil.rmtree(venv + "-warm-up")  # its files must not hold memory the timed install needs
    os.sync()  # on a disk, the warm-up's writes must not be flushed during the timed install
    if again == "again":
        await asynclink.install_wheels(venv, wheels, cache_dir=cache, mode=mode)
    if again == "cancel":
        make(venv + "-own")
        started = time.perf_counter()
        await asynclink.install_wheels(venv + "-own", wheels, cache_dir=cache, mode=mode)
        own = time.perf_counter() - started
        before = listing(venv)
    worst = 0.0
    async def ticker():
        nonlocal worst
        while True:
            before = time.perf_counter()
            await anyio.sleep(0.001)
            worst = max(worst, time.perf_counter() - before - 0.001)
    async with anyio.create_task_group() as group:
        group.start_soon(ticker)
        await anyio.sleep(0.01)
        started = time.perf_counter()
        if again == "cancel":
            with anyio.move_on_after(own / 2) as scope:
                await asynclink.install_wheels(venv, wheels, cache_dir=cache, mode=mode)
            elapsed = anyio.current_time() - scope.deadline
        else:
            await asynclink.install_wheels(venv, wheels, cache_dir=cache, mode=mode)
            elapsed = time.perf_counter() - started
        group.cancel_scope.cancel()
    if again == "cancel":
        if not scope.cancelled_caught:
            sys.exit("the install ended before the cancel")
        if listing(venv, journal=False) != before:
            sys.exit("a cancelled install did not leave the venv as it was")
        asynclink._transaction.finish_discards()  # what the rollback took out, deleted
        if listing(venv) != before:
            sys.exit("a cancelled install's journal was not deleted")
    print(worst)
    print(elapsed)
anyio.run(main)
"""

#: The floor under the loop lag on a machine whose cores are all busy: the same 1 ms ticker
#: as the in-process rows, for a second, beside one busy-looping process per core (as the
#: helpers are during copies and cold installs) and no install at all. Prints the worst lag,
#: then the second it ran.
LAG_FLOOR = """
import os, subprocess, sys, time, anyio
burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
           for _ in range(os.cpu_count() or 1)]
async def main():
    worst = 0.0
    started = time.perf_counter()
    while time.perf_counter() - started < 1.0:
        before = time.perf_counter()
        await anyio.sleep(0.001)
        worst = max(worst, time.perf_counter() - before - 0.001)
    print(worst)
    print(time.perf_counter() - started)
try:
    time.sleep(0.1)  # the burners are running
    anyio.run(main)
finally:
    for burner in burners:
        burner.kill()
        burner.wait()
"""

INSTALLER_LOOP = """
import sys, sysconfig
from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile
venv_python, *wheels = sys.argv[1:]
import subprocess, json
paths = json.loads(subprocess.check_output([venv_python, "-c",
    "import sysconfig, json; print(json.dumps(sysconfig.get_paths()))"]))
scheme = {k: paths[k] for k in ("purelib", "platlib", "scripts", "data")}
# a venv's headers go below it, as pip puts them (never into the base Python's include)
scheme["headers"] = paths["data"] + "/include/site/python%d.%d" % sys.version_info[:2]
destination = SchemeDictionaryDestination(scheme, interpreter=venv_python, script_kind="posix")
for wheel in wheels:
    with WheelFile.open(wheel) as source:
        install(source, destination, {})
"""


@dataclass
class Run:
    wall: float
    cpu: float
    rss_mb: float
    engine: float | None = None
    """What the process itself reported as its working time (the link-only driver)."""
    lag: float | None = None
    """The worst event-loop lag it reported beside its work (the in-process driver)."""


@dataclass
class Contestant:
    group: str
    name: str
    command: list[str]
    """The command; ``{scratch}`` stands for a fresh directory made for each round."""
    setup: str = "venv"
    """Untimed set-up in the scratch directory: ``venv`` or ``target`` (an empty directory)."""
    before: list[str] | None = None
    """An untimed command run after the set-up (with ``{scratch}`` and :attr:`env` too)."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment, with ``{scratch}`` too."""
    reference: str | None = None
    files: int = 0
    runs: list[Run] = field(default_factory=list)
    failure: str | None = None

    def prepare(self, scratch: Path) -> tuple[list[str], dict[str, str]]:
        if self.setup == "venv":
            make_venv(scratch)
        else:
            (scratch / "target").mkdir()
        where = str(scratch)
        env = {key: value.replace("{scratch}", where) for key, value in self.env.items()}
        if self.before is not None:
            before = [part.replace("{scratch}", where) for part in self.before]
            subprocess.run(before, env={**os.environ, **env}, check=True, capture_output=True)
        return [part.replace("{scratch}", where) for part in self.command], env


#: A small process that starts every timed command. A child's peak RSS counts the memory of
#: the process it was spawned from (Linux keeps the high-water mark across fork and exec, and
#: posix_spawn shares the parent's memory until exec), so the spawner must stay small: the
#: benchmark itself grows while it reads wheels. Reads JSON [command, env] lines; answers
#: JSON [exit code, wall, cpu, peak RSS in KiB, stdout, stderr] lines.
SPAWNER = r"""
import json, os, sys, tempfile, time
for line in sys.stdin:
    command, env = json.loads(line)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        actions = [(os.POSIX_SPAWN_DUP2, out.fileno(), 1), (os.POSIX_SPAWN_DUP2, err.fileno(), 2)]
        started = time.perf_counter()
        pid = os.posix_spawnp(command[0], command, env, file_actions=actions)
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - started
        out.seek(0); err.seek(0)
        answer = [os.waitstatus_to_exitcode(status), wall, usage.ru_utime + usage.ru_stime,
                  usage.ru_maxrss, out.read().decode(errors="replace")[-4000:],
                  err.read().decode(errors="replace")[-4000:]]
    print(json.dumps(answer), flush=True)
"""


class Spawner:
    """The small process that runs the timed commands (see :data:`SPAWNER`)."""

    def __init__(self) -> None:
        # In /: a ``python -c`` row puts its working directory first on its path, and run from
        # a checkout's root it would import that checkout instead of what the row asks for
        # (the installed asynclink, or a ``--baseline``).
        self.process = subprocess.Popen(
            [PYTHON, "-S", "-c", SPAWNER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=os.path.abspath(os.sep),
        )

    def run(self, command: list[str], env: dict[str, str]) -> Run:
        """Wall time, CPU time and peak RSS of one process (and what it waited for)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps([command, {**os.environ, **env}]) + "\n")
        self.process.stdin.flush()
        code, wall, cpu, rss, output, error = json.loads(self.process.stdout.readline())
        if code != 0:
            raise RuntimeError(f"{command[0]} exited {code}: {error[-2000:]}")
        numbers: list[float] = []
        for line in output.strip().splitlines()[-2:]:
            with contextlib.suppress(ValueError):
                numbers.append(float(line))
        engine = numbers[-1] if numbers else None
        lag = numbers[0] if len(numbers) == 2 else None
        return Run(wall, cpu, rss / 1024, engine, lag)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait()


def download(corpus: Path) -> Path:
    """The corpus's wheels, downloaded once with pip into ~/.cache (never into the repo)."""
    text = corpus.read_text()
    key = hashlib.sha256(text.encode()).hexdigest()[:12]
    directory = DOWNLOADS / f"wheels-{key}"
    done = directory / ".complete"
    if not done.exists():
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                PYTHON,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.11",
                "--implementation",
                "cp",
                "--abi",
                "cp311",
                "--abi",
                "abi3",
                "--abi",
                "none",
                "--platform",
                "manylinux_2_28_x86_64",
                "--platform",
                "manylinux_2_17_x86_64",
                "--platform",
                "manylinux2014_x86_64",
                "--dest",
                str(directory),
                "-r",
                str(corpus),
            ],
            check=True,
        )
        done.touch()
    return directory


def copies(wheels: list[Path], factor: int, directory: Path) -> list[Path]:
    """The corpus ``factor`` times: copy k renames every distribution, module and script
    (``x`` -> ``x_ck``), so the copies install side by side without sharing a single path."""
    directory.mkdir(parents=True, exist_ok=True)
    result = list(wheels)
    for k in range(2, factor + 1):
        for wheel in wheels:
            result.append(_renamed(wheel, f"_c{k}", directory))
    return result


def _renamed(wheel: Path, suffix: str, directory: Path) -> Path:
    name, version, rest = wheel.name.split("-", 2)
    target = directory / f"{name}{suffix}-{version}-{rest}"
    if target.exists():
        return target
    with zipfile.ZipFile(wheel) as source:
        tops = {info.filename.split("/", 1)[0] for info in source.infolist()}
        renames = {}
        for top in tops:
            if top.endswith((".dist-info", ".data")):
                project, _, tail = top.partition("-")
                renames[top] = f"{project}{suffix}-{tail}"
            else:
                renames[top] = _suffixed(top, suffix)

        def rename(path: str) -> str:
            top, sep, rest = path.partition("/")
            scheme, slash, inner = rest.partition("/")
            if top.endswith(".data") and slash:  # a scheme's files get new names too
                first, below, tail = inner.partition("/")
                if scheme in ("purelib", "platlib"):
                    inner = _suffixed(first, suffix) + below + tail
                else:
                    head, slash, name = inner.rpartition("/")
                    inner = head + slash + _suffixed(name, suffix)
                rest = f"{scheme}/{inner}"
            return renames.get(top, top) + sep + rest

        members: dict[str, tuple[zipfile.ZipInfo, bytes]] = {}
        for info in source.infolist():
            if info.is_dir():
                continue
            data = source.read(info)
            new = rename(info.filename)
            if new.endswith(".dist-info/METADATA"):
                data = b"\n".join(
                    f"Name: {name}{suffix}".encode() if line.startswith(b"Name: ") else line
                    for line in data.split(b"\n")
                )
            elif new.endswith(".dist-info/entry_points.txt"):
                data = b"\n".join(_renamed_entry_point(line, suffix) for line in data.split(b"\n"))
            members[new] = (info, data)
        record_name = next(n for n in members if n.endswith(".dist-info/RECORD"))
        rows = []
        for path, (_, data) in members.items():
            if path == record_name:
                continue
            digest = hashlib.sha256(data).digest()
            encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            rows.append(f"{path},sha256={encoded},{len(data)}")
        rows.append(f"{record_name},,")
        members[record_name] = (members[record_name][0], ("\n".join(rows) + "\n").encode())
    with zipfile.ZipFile(target, "w") as out:  # compressed as the original: inflated as much
        for path, (info, data) in members.items():
            copy = zipfile.ZipInfo(path, date_time=info.date_time)
            copy.external_attr = info.external_attr
            out.writestr(copy, data, compress_type=info.compress_type)
    return target


def _suffixed(name: str, suffix: str) -> str:
    stem, dot, ext = name.partition(".")
    return f"{stem}{suffix}{dot}{ext}"


def _renamed_entry_point(line: bytes, suffix: str) -> bytes:
    if b"=" not in line or line.startswith(b"["):
        return line
    name, _, value = line.partition(b"=")
    return name.rstrip() + suffix.encode() + b" =" + value


def make_venv(scratch: Path) -> None:
    subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(scratch / "venv")], check=True)


def asynclink_cli() -> list[str]:
    script = BIN / "asynclink"
    return [str(script)] if script.exists() else [PYTHON, "-m", "asynclink"]


def tool(name: str) -> str | None:
    found = BIN / name
    return str(found) if found.exists() else shutil.which(name)


@functools.cache  # one probe per root: the rows of several groups ask
def can_clone(root: Path) -> bool:
    probe = root / ".clone-probe"
    probe.write_bytes(b"x")
    done = subprocess.run(
        ["cp", "--reflink=always", str(probe), str(probe) + "2"], capture_output=True, check=False
    )
    for path in (probe, Path(str(probe) + "2")):
        path.unlink(missing_ok=True)
    return done.returncode == 0


def contestants(
    root: Path, wheels: list[Path], groups: set[str], notes: list[str]
) -> list[Contestant]:
    cache = root / "cache"
    trees = sorted(str(p) for p in cache.glob("wheels-v*/*/tree"))
    files = int((root / "files").read_text())
    wheel_args = [str(w) for w in wheels]
    uv = tool("uv")
    found: list[Contestant] = []
    if "link" in groups:
        found += link_rows(root, trees, notes)
    if "install" in groups:
        found += install_rows(root, uv, wheel_args, notes)
    if "cold" in groups:
        found += cold_rows(uv, wheel_args)
    if "process" in groups:
        if uv and "install" not in groups:  # the in-process rows' references, on their own
            found += [uv_warm(root, uv, mode, wheel_args) for mode in warm_modes(root)]
        if uv and "cold" not in groups:
            found.append(uv_cold(uv, wheel_args))
        found += in_process_rows(root, uv, wheel_args)
    if "life" in groups:
        found += life_rows(root, uv, wheel_args, notes)
    for contestant in found:
        contestant.files = files
    if "cancel" in groups:  # latencies, not installs: no files per second
        found.extend(cancel_rows(root, wheel_args))
    if "startup" in groups:  # parts of an install, not installs: no files per second
        found.extend(startup_rows(root, wheel_args))
    if "bounds" in groups:
        found.extend(bounds(trees, wheel_args))
    return found


VENV, VENV_PYTHON = "{scratch}/venv", "{scratch}/venv/bin/python"


def asynclink_install() -> list[str]:
    return [*asynclink_cli(), "install", "--quiet", "--venv", VENV, "--cache-dir"]


def uv_install(uv: str) -> list[str]:
    return [str(uv), *UV_INSTALL, VENV_PYTHON, "--link-mode"]


def link_rows(root: Path, trees: list[str], notes: list[str]) -> list[Contestant]:
    """Link only: cp against asynclink's engine on the cache's trees."""
    found: list[Contestant] = []
    modes = ["hardlink", "copy", "symlink"] + (["clone"] if can_clone(root) else [])
    if "clone" not in modes:
        notes.append(
            f"clone: {root} cannot clone (no reflink); cp --reflink and asynclink clone skipped"
        )
    copies_of = {"hardlink": "-al", "copy": "-a", "symlink": "-as", "clone": "-a --reflink=always"}
    sources = " ".join(tree + "/." for tree in trees)
    for mode in modes:
        name = "cp --reflink" if mode == "clone" else f"cp {copies_of[mode]}"
        command = f"cp {copies_of[mode]} {sources} {{scratch}}/target"
        found.append(Contestant("link", name, ["sh", "-c", command], setup="target"))
    for mode in modes:
        reference = "cp --reflink" if mode == "clone" else f"cp {copies_of[mode]}"
        for concurrency in ("0", "1"):
            found.append(
                Contestant(
                    "link",
                    f"asynclink link {mode}" + (" --jobs 1" if concurrency == "1" else ""),
                    [
                        *[PYTHON, "-c", LINK_DRIVER, "{scratch}/target"],
                        *[mode, concurrency, "1", "default", *trees],
                    ],
                    setup="target",
                    reference=reference,
                )
            )
    return found


def warm_modes(root: Path) -> list[str]:
    return ["hardlink", "copy", *(["clone"] if can_clone(root) else [])]


def uv_warm(root: Path, uv: str, mode: str, wheel_args: list[str]) -> Contestant:
    """uv's whole process from its warm cache: the reference of the warm installs."""
    return Contestant(
        "install",
        f"uv {mode}",
        [*uv_install(uv), mode, *wheel_args],
        env={"UV_CACHE_DIR": str(root / "uv-cache")},
    )


def uv_cold(uv: str, wheel_args: list[str]) -> Contestant:
    """uv's whole process from an empty cache: the reference of the cold installs."""
    return Contestant(
        "cold",
        "uv cold",
        [*uv_install(uv), "hardlink", *wheel_args],
        env={"UV_CACHE_DIR": "{scratch}/uv-cold"},
    )


def install_rows(
    root: Path, uv: str | None, wheel_args: list[str], notes: list[str]
) -> list[Contestant]:
    """Warm installs through each tool's command line."""
    found: list[Contestant] = []
    cache = root / "cache"
    for mode in warm_modes(root):
        if uv:
            found.append(uv_warm(root, uv, mode, wheel_args))
        for jobs in ([], ["--jobs", "1"]):
            found.append(
                Contestant(
                    "install",
                    f"asynclink {mode}" + (" --jobs 1" if jobs else ""),
                    [*asynclink_install(), str(cache), "--link-mode", mode, *jobs, *wheel_args],
                    reference=f"uv {mode}" if uv else None,
                )
            )
    found.append(  # pip's --target: a plain directory, checked against this interpreter's tags
        Contestant(
            "install",
            "asynclink hardlink --target",
            [
                *asynclink_cli(),
                *("install", "--quiet", "--target", "{scratch}/target", "--cache-dir"),
                *(str(cache), "--link-mode", "hardlink", *wheel_args),
            ],
            setup="target",
            reference="uv hardlink" if uv else None,
        )
    )
    if not uv:
        notes.append("uv: not installed (pip install uv); uv rows and ratios skipped")
    pip = [PYTHON, "-m", "pip", "--python", VENV_PYTHON, "install", "--quiet", "--no-deps"]
    found.append(
        Contestant(
            "install",
            "pip",
            [*pip, "--no-index", "--no-compile", *wheel_args],
            env={"PIP_DISABLE_PIP_VERSION_CHECK": "1"},
            reference="uv hardlink" if uv else None,
        )
    )
    if importlib.util.find_spec("installer") is not None:
        found.append(
            Contestant(
                "install",
                "installer (loop)",
                [PYTHON, "-c", INSTALLER_LOOP, VENV_PYTHON, *wheel_args],
                reference="uv hardlink" if uv else None,
            )
        )
    else:
        notes.append("installer: not installed (pip install installer); skipped")
    return found


def cold_rows(uv: str | None, wheel_args: list[str]) -> list[Contestant]:
    """Installs from empty caches."""
    found = [uv_cold(uv, wheel_args)] if uv else []
    found.append(
        Contestant(
            "cold",
            "asynclink cold",
            [*asynclink_install(), "{scratch}/cold-cache", "--link-mode", "hardlink", *wheel_args],
            reference="uv cold" if uv else None,
        )
    )
    found.append(  # what python-isal wins: the same, inflating with the standard library
        Contestant(
            "cold",
            "asynclink cold, zlib",
            [*asynclink_install(), "{scratch}/cold-cache", "--link-mode", "hardlink", *wheel_args],
            env={"ASYNCLINK_INFLATER": "zlib"},
            reference="asynclink cold",
        )
    )
    return found


def in_process_rows(root: Path, uv: str | None, wheel_args: list[str]) -> list[Contestant]:
    """``await install_wheels(...)`` in a running interpreter, against uv's whole process
    (the same rows as the install and cold groups: uv's is the reference)."""
    found: list[Contestant] = []
    cache = str(root / "cache")
    cases = [
        ("hardlink", cache, "fresh", "uv hardlink"),
        ("copy", cache, "fresh", "uv copy"),
        *([("clone", cache, "fresh", "uv clone")] if can_clone(root) else []),
        ("hardlink", "{scratch}/cold-cache", "fresh", "uv cold"),
        ("hardlink", cache, "again", "uv install again"),
        ("hardlink", cache, "session", "uv hardlink"),
        ("copy", cache, "session", "uv copy"),
    ]
    for mode, where, again, reference in cases:
        what = {"fresh": mode, "again": "nothing to do", "session": f"{mode}, session"}[again]
        if where != cache:
            what = "cold"
        found.append(
            Contestant(
                "process",
                f"asynclink in-process {what}",
                [PYTHON, "-c", IN_PROCESS, VENV, where, mode, again, *wheel_args],
                reference=reference if uv else None,
            )
        )
    return found


def cancel_rows(root: Path, wheel_args: list[str]) -> list[Contestant]:
    """In-process installs cancelled at half of their own time: the time from the cancel to
    the ``await`` returning, the venv put back (a latency: no files per second, no uv)."""
    return [
        Contestant(
            "cancel",
            f"asynclink in-process {mode}, cancel at half",
            [PYTHON, "-c", IN_PROCESS, VENV, str(root / "cache"), mode, "cancel", *wheel_args],
        )
        for mode in ("hardlink", "copy")
    ]


def life_rows(
    root: Path, uv: str | None, wheel_args: list[str], notes: list[str]
) -> list[Contestant]:
    """Installing again, syncing to half of the corpus, uninstalling all of it: each tool on
    a venv it installed the whole corpus into itself, before the clock starts."""
    cache, uv_env = str(root / "cache"), {"UV_CACHE_DIR": str(root / "uv-cache")}
    half = wheel_args[: len(wheel_args) // 2]
    (root / "half.txt").write_text("".join(f"{wheel}\n" for wheel in half))
    names = [Path(wheel).name.split("-", 1)[0] for wheel in wheel_args]
    ours = [*asynclink_install(), cache, "--link-mode", "hardlink", *wheel_args]
    target = ["--venv", VENV, "--cache-dir", cache]
    found = [
        Contestant("life", "asynclink install again", ours, before=ours),
        Contestant(
            "life",
            "asynclink sync to half",
            [*asynclink_cli(), "sync", "--quiet", *target, "--keep-nothing", *half],
            before=ours,
        ),
        Contestant(
            "life",
            "asynclink uninstall all",
            [*asynclink_cli(), "uninstall", "--quiet", *target, *names],
            before=ours,
        ),
    ]
    if not uv:
        notes.append("uv: not installed; the life rows have no reference")
        return found
    theirs = [*uv_install(uv), "hardlink", *wheel_args]
    uv_rows = [
        Contestant("life", "uv install again", theirs, env=uv_env, before=theirs),
        Contestant(
            "life",
            "uv pip sync to half",
            [
                uv,
                "pip",
                "sync",
                "--offline",
                "--quiet",
                "--python",
                VENV_PYTHON,
                "--link-mode",
                "hardlink",
                str(root / "half.txt"),
            ],
            env=uv_env,
            before=theirs,
        ),
        Contestant(
            "life",
            "uv pip uninstall all",
            [uv, "pip", "uninstall", "--quiet", "--python", VENV_PYTHON, *names],
            env=uv_env,
            before=theirs,
        ),
    ]
    for ours_row, theirs_row in zip(found, uv_rows, strict=True):
        ours_row.reference = theirs_row.name
    return [*uv_rows, *found]


#: The rows a ``--baseline`` run twins.
BASELINE_ROWS = frozenset(
    {
        "asynclink hardlink",
        "asynclink hardlink --target",
        "asynclink nothing to do --target",
        "asynclink copy",
        "asynclink clone",
        "asynclink in-process hardlink",
        "asynclink in-process copy",
        "asynclink in-process clone",
        "asynclink in-process nothing to do",
        "asynclink sync to half",
        "asynclink uninstall all",
        "python: start + asyncio, anyio, asynclink",
    }
)


def baseline_twins(found: list[Contestant], baseline: Path) -> list[Contestant]:
    """The rows of :data:`BASELINE_ROWS` again, importing asynclink from ``baseline``."""
    return [
        Contestant(
            row.group,
            f"{row.name} (baseline)",
            row.command,
            setup=row.setup,
            before=row.before,
            env={**row.env, "PYTHONPATH": str(baseline)},
            reference=row.name,
            files=row.files,
        )
        for row in found
        if row.name in BASELINE_ROWS
    ]


def startup_rows(root: Path, wheel_args: list[str]) -> list[Contestant]:
    """What the command pays before it does anything: the interpreter and its imports; and
    the whole of a command with nothing to do (every wheel installed already), made of little
    else."""

    def started(name: str, code: str) -> Contestant:
        return Contestant("startup", name, [PYTHON, "-c", code], setup="target")

    return [
        started("python: start", "pass"),
        started("python: start + asyncio, anyio", "import anyio; anyio.run(anyio.sleep, 0)"),
        started(
            "python: start + asyncio, anyio, asynclink",
            "import anyio, asynclink._cli, asynclink._install; anyio.run(anyio.sleep, 0)",
        ),
        started(  # what asynclink's dataclass decorators cost: anyio's (22) are made first
            "python: start + asyncio, anyio, asynclink, no asynclink dataclass code",
            "import anyio; anyio.run(anyio.sleep, 0); import dataclasses; "
            "dataclasses.dataclass = lambda cls=None, **_: cls or (lambda c: c); "
            "import asynclink._cli, asynclink._install",
        ),
        started("python: start + import installer", "import installer"),
        Contestant(
            "startup",
            "asynclink nothing to do --target",
            again := [
                *asynclink_cli(),
                *("install", "--quiet", "--target", "{scratch}/target", "--cache-dir"),
                *(str(root / "cache"), "--link-mode", "hardlink", *wheel_args),
            ],
            setup="target",
            before=again,
        ),
    ]


def bounds(trees: list[str], wheels: list[str]) -> list[Contestant]:
    """The measurements behind the README's account of what limits asynclink."""
    target = "{scratch}/target"
    found = [
        Contestant(
            "bounds",
            "loop lag, every core busy, no install",
            [PYTHON, "-c", LAG_FLOOR],
            setup="target",
        ),
        Contestant(
            "bounds", "bare os.link loop", [PYTHON, "-c", BARE_LINKS, target, *trees], "target"
        ),
    ]
    for which in ("small", "large"):
        found.append(
            Contestant(
                "bounds",
                f"bare copy loop, {which} files",
                [PYTHON, "-c", BARE_COPIES, target, which, *trees],
                setup="target",
            )
        )
    for mode in ("hardlink", "copy"):  # what the helper processes win, and threads would not
        for label, threads, processes in (
            ("no helper", "1", "0"),
            ("2 threads, no helper", "2", "0"),
            ("1 helper", "1", "1"),
        ):
            found.append(
                Contestant(
                    "bounds",
                    f"asynclink link {mode}, {label}",
                    [PYTHON, "-c", LINK_DRIVER, target, mode, "0", threads, processes, *trees],
                    setup="target",
                    reference=f"asynclink link {mode}",
                )
            )
    for which in ("inflate", "hash"):
        found.append(
            Contestant(
                "bounds",
                f"{which} the corpus (CPU, one thread)",
                [PYTHON, "-c", UNPACK_WORK, which, *wheels],
                setup="target",
            )
        )
    return found


def warm(root: Path, wheels: list[Path], uv_too: bool = True) -> None:
    """Fill asynclink's and uv's caches, and count the corpus's files.

    asynclink's own modules are byte-compiled first, as ``pip install`` leaves them: from an
    editable install with ``PYTHONDONTWRITEBYTECODE`` set, every run would compile them anew.
    """
    subprocess.run(
        [
            PYTHON,
            "-c",
            "import asynclink, compileall, os; "
            "compileall.compile_dir(os.path.dirname(asynclink.__file__), quiet=1)",
        ],
        check=True,
    )
    with tempfile.TemporaryDirectory(dir=root) as scratch:
        make_venv(Path(scratch))
        subprocess.run(
            [
                *asynclink_cli(),
                "install",
                "--quiet",
                "--venv",
                f"{scratch}/venv",
                "--cache-dir",
                str(root / "cache"),
                *map(str, wheels),
            ],
            check=True,
        )
        files = sum(1 for _, _, names in os.walk(f"{scratch}/venv/lib") for _ in names)
        (root / "files").write_text(str(files))
    uv = tool("uv")
    if uv and uv_too:
        with tempfile.TemporaryDirectory(dir=root) as scratch:
            make_venv(Path(scratch))
            subprocess.run(
                [uv, *UV_INSTALL, f"{scratch}/venv/bin/python", *map(str, wheels)],
                env={**os.environ, "UV_CACHE_DIR": str(root / "uv-cache")},
                check=True,
            )


def run_rounds(root: Path, field_: list[Contestant], rounds: int, spawner: Spawner) -> None:
    """Every contestant once per round, in an order shuffled per round (seeded, so a rerun is
    the same run): the clean-up of one contestant's target can leave the filesystem work to do
    in the background (XFS reclaims inodes lazily), and no contestant should always follow the
    same one. Each clean-up is synced before the next command starts."""
    order = random.Random(20261125)
    for number in range(rounds):
        for contestant in order.sample(field_, len(field_)):
            if contestant.failure:
                continue
            scratch = Path(tempfile.mkdtemp(dir=root, prefix="round-"))
            try:
                command, env = contestant.prepare(scratch)
                os.sync()
                contestant.runs.append(spawner.run(command, env))
            except (RuntimeError, OSError, subprocess.CalledProcessError) as error:
                contestant.failure = str(error).splitlines()[0][:200]
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        print(f"  round {number + 1}/{rounds} done", file=sys.stderr)


def table(field_: list[Contestant]) -> tuple[str, list[dict[str, object]]]:
    """Medians; a contestant that reports its own working time (asynclink's link-only driver,
    which runs inside an interpreter started for it) is compared on that time, and the
    process's wall time is shown beside it."""
    medians: dict[str, float] = {}
    for c in field_:
        if c.runs:
            engines = [r.engine for r in c.runs if r.engine is not None]
            medians[c.name] = statistics.median(engines or [r.wall for r in c.runs])
    width = max([len("contestant"), *(len(c.name) for c in field_)])
    lines = [
        f"{'group':8} {'contestant':{width}} {'wall s':>7} {'engine s':>8} {'cpu s':>7} "
        f"{'rss MB':>7} {'files/s':>9} {'ratio':>22}"
    ]
    rows: list[dict[str, object]] = []
    for c in field_:
        if not c.runs:
            lines.append(f"{c.group:8} {c.name:{width}} skipped: {c.failure}")
            continue
        wall = statistics.median(r.wall for r in c.runs)
        engines = [r.engine for r in c.runs if r.engine is not None]
        engine = statistics.median(engines) if engines else None
        cpu = statistics.median(r.cpu for r in c.runs)
        rss = statistics.median(r.rss_mb for r in c.runs)
        timed = medians[c.name]
        ratio = timed / medians[c.reference] if c.reference in medians else None
        ratio_text = f"{ratio:.2f}x {c.reference}" if ratio is not None else ""
        engine_text = f"{engine:8.3f}" if engine is not None else f"{'':8}"
        lines.append(
            f"{c.group:8} {c.name:{width}} {wall:7.3f} {engine_text} {cpu:7.3f} {rss:7.1f} "
            f"{f'{c.files / timed:,.0f}' if c.files else '':>9} {ratio_text:>22}"
        )
        rows.append(
            {
                "group": c.group,
                "contestant": c.name,
                "wall": wall,
                "engine": engine,
                "cpu": cpu,
                "rss_mb": rss,
                "files": c.files,
                "files_per_second": c.files / timed if c.files else None,
                "reference": c.reference,
                "ratio": ratio,
                "walls": [r.wall for r in c.runs],
                "worst_loop_lag": max(lags) if (lags := [r.lag for r in c.runs if r.lag]) else None,
            }
        )
    return "\n".join(lines), rows


def scaling(
    root: Path, wheels: list[Path], rounds: int, spawner: Spawner
) -> tuple[str, list[dict[str, object]]]:
    """The corpus x1, x2, x4 by the CLI from a warm cache: time per file, peak memory."""
    rows: list[dict[str, object]] = []
    lines = [f"{'corpus':8} {'wheels':>7} {'files':>8} {'wall s':>8} {'us/file':>8} {'rss MB':>7}"]
    for factor in (1, 2, 4):
        batch = copies(wheels, factor, root / "copies")
        warm(root, batch, uv_too=False)
        files = int((root / "files").read_text())
        field_ = [
            Contestant(
                "scale",
                f"x{factor}",
                [
                    *asynclink_cli(),
                    "install",
                    "--quiet",
                    "--venv",
                    "{scratch}/venv",
                    "--cache-dir",
                    str(root / "cache"),
                    "--link-mode",
                    "hardlink",
                    *map(str, batch),
                ],
                files=files,
            )
        ]
        run_rounds(root, field_, rounds, spawner)
        runs = field_[0].runs
        wall = statistics.median(r.wall for r in runs)
        rss = max(r.rss_mb for r in runs)
        lines.append(
            f"x{factor:<7} {len(batch):7} {files:8,} {wall:8.3f} "
            f"{1e6 * wall / files:8.2f} {rss:7.1f}"
        )
        rows.append(
            {
                "factor": factor,
                "wheels": len(batch),
                "files": files,
                "wall": wall,
                "us_per_file": 1e6 * wall / files,
                "peak_rss_mb": rss,
            }
        )
    return "\n".join(lines), rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_root = "/dev/shm/asynclink-bench" if os.path.isdir("/dev/shm") else None
    parser.add_argument(
        "--root",
        type=Path,
        default=default_root,
        help="where caches and targets live (default: /dev/shm/asynclink-bench)",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--groups", default="link,install,cold,process,cancel,life,startup,bounds")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--wheels", type=Path, help="use these .whl files instead of the corpus")
    parser.add_argument("--scaling", action="store_true", help="also run the corpus x1, x2, x4")
    parser.add_argument(
        "--factor", type=int, default=1, help="run every group on the corpus this many times"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of another asynclink: twin the rows a change moves, run with it",
    )
    args = parser.parse_args()
    spawner = Spawner()  # first, while this process is small
    root = (args.root or Path(tempfile.gettempdir()) / "asynclink-bench").resolve()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    source = args.wheels or download(args.corpus)
    (root / "wheels").mkdir()
    for wheel in sorted(Path(source).glob("*.whl")):
        shutil.copy(wheel, root / "wheels" / wheel.name)
    wheels = sorted((root / "wheels").glob("*.whl"))
    if args.factor > 1:
        wheels = copies(wheels, args.factor, root / "wheels")
    print(
        f"{len(wheels)} wheels on {root} ({os.cpu_count()} cores); warming caches", file=sys.stderr
    )
    warm(root, wheels)
    notes: list[str] = []
    field_ = contestants(root, wheels, set(args.groups.split(",")), notes)
    baseline = None if args.baseline is None else args.baseline.resolve()
    if baseline is not None:
        field_ += baseline_twins(field_, baseline)
    run_rounds(root, field_, args.rounds, spawner)
    text, rows = table(field_)
    print(
        f"\n{len(wheels)} wheels, {max((c.files for c in field_), default=0):,} files, "
        f"{os.cpu_count()} cores, {root} ({_filesystem(root)}), medians of {args.rounds} rounds\n"
    )
    print(text)
    lags = [(row["contestant"], row["worst_loop_lag"]) for row in rows if row["worst_loop_lag"]]
    if lags:
        print("\nworst event-loop lag beside the install (1 ms ticker, worst of all rounds):")
        for name, lag in lags:
            print(f"  {name}: {1000 * float(lag):.1f} ms")  # type: ignore[arg-type]
    for note in notes:
        print(f"note: {note}")
    result: dict[str, object] = {
        "versions": versions(),
        "wheels": len(wheels),
        "root": str(root),
        "filesystem": _filesystem(root),
        "cores": os.cpu_count(),
        "rounds": args.rounds,
        "factor": args.factor,
        "baseline": None if baseline is None else baseline_revision(baseline),
        "results": rows,
        "notes": notes,
    }
    if args.scaling:
        scale_text, scale_rows = scaling(root, wheels, args.rounds, spawner)
        print("\nscaling (asynclink CLI, hardlink, warm cache):\n" + scale_text)
        result["scaling"] = scale_rows
    spawner.close()
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    shutil.rmtree(root, ignore_errors=True)
    return 0


def baseline_revision(baseline: Path) -> dict[str, str]:
    """Which asynclink the baseline rows ran: its (resolved) directory and, in a git checkout,
    its commit."""
    done = subprocess.run(
        ["git", "-C", str(baseline), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return {"path": str(baseline), "commit": done.stdout.strip()}


def versions() -> dict[str, str]:
    """What was measured: the interpreter, asynclink and the tools it is compared with."""
    found = {"python": sys.version.split()[0]}
    commands = {
        "asynclink": [
            PYTHON,
            "-c",
            "import importlib.metadata as m; print(m.version('asynclink'))",
        ],
        "pip": [PYTHON, "-m", "pip", "--version"],
        "uv": [tool("uv") or "uv", "--version"],
        "installer": [PYTHON, "-c", "import installer; print(installer.__version__)"],
    }
    for name, command in commands.items():
        with contextlib.suppress(OSError):
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode == 0:
                found[name] = done.stdout.split("from")[0].strip()
    return found


def _filesystem(path: Path) -> str:
    done = subprocess.run(
        ["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
