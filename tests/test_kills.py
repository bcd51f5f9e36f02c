"""Killed at any moment, an install is undone or done: after ``recover()`` the target is
byte-identical to how it was before the install, or to how an uninterrupted install leaves it.

Real install processes are killed with ``SIGKILL`` in cold installs (empty cache), warm ones
(cache already filled) and upgrades (version 1.0 of a package installed, 2.0 replacing it),
either the main process alone (its helper processes live on and finish their piece first) or
its whole process group (the helpers die with it). Then ``await asynclink.recover(target)``
runs, and the target must equal, entry for entry (empty directories, modes, contents and
symlink targets included: :func:`tests.trees.snapshot`), either the target before the install
or the target an uninterrupted run of the same install left. Nothing of asynclink's may
remain (``.asynclink-journal``, ``.asynclink-lock``, ``.asynclink-tmp-*`` are in the snapshot
too), ``recover()`` must not fail, and the target must not change after it returns, once every
helper of the killed install has exited.

The kill point is chosen by counting, not timing. The child process installs an audit hook
(:func:`sys.addaudithook`) before it imports asynclink and numbers its own filesystem
operations as they start: ``os.mkdir``, ``os.rmdir``, ``os.link``, ``os.symlink``,
``os.rename`` (``os.replace`` too), ``os.remove``, ``os.chmod``, ``os.utime``, ``os.truncate``,
``open`` with flags that write, ``fcntl.flock``, and the start of each helper process
(``subprocess.Popen``). Each event belongs to a phase of the install: ``lock``, ``journal``,
``cache`` (unpacking), ``helpers``, ``directories``, ``files``, ``writes`` (scripts and
metadata), ``replacements``, ``stash``, ``removals`` (an upgrade's), ``mtime``, ``commit``
(see ``phase`` in :data:`CHILD`). The hook runs before the operation, so a kill from inside it
stops the install right there: every earlier operation has started, this one never does.

An uninterrupted run of each install (and of each event loop and link mode) counts its events
and gives the target it leaves. Then each phase of the install gets a trial that kills at a
random event of that phase, and the other trials kill at the k-th event of any phase, k
stratified over the whole run, then drawn at random. Trials take turns between asyncio and trio
and between hardlink and copy. A file helper is at work when about a quarter of the warm and
half of the upgrade kills land; an unpacking helper in most cold ones.

``KILL_TRIALS`` (default 16: the six tests take under a minute on two cores) is the number of
trials of each test, at least one per phase; ``KILL_TRIALS=300`` is the long run (1,800 kills,
about ten minutes). ``KILL_SEED`` draws other kill points. Each test prints its summary (``-s``
shows it; a failure has it as its message) and, if ``KILL_SUMMARY`` names a file, appends its
trials to it as a JSON line.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import anyio
import pytest

from asynclink import RollbackReport, Scheme, install_wheels, recover, unpack_wheels
from asynclink._helpers import HELPER_MIN_COPIES, HELPER_MIN_FILES, UNPACKER_MIN_BYTES
from tests.trees import make_tree, snapshot
from tests.wheels import build_wheel

KILL_TRIALS = int(os.environ.get("KILL_TRIALS", "16"))
KILL_SEED = os.environ.get("KILL_SEED", "asynclink")
#: A trial takes about half a second: a test whose trials take 10 s each is hung.
TIMEOUT = 60 + 10 * KILL_TRIALS

#: (event loop, link mode) of the trials, in turn.
CONFIGS = (("asyncio", "hardlink"), ("trio", "copy"), ("asyncio", "copy"), ("trio", "hardlink"))
#: Wheels in flight at once: more than one, or no helper process is started.
JOBS = 4
#: Room for one install's events in its trace (a sparse file: only what is written costs).
TRACE_BYTES = 16 << 20

Snapshot = dict[str, tuple[str, int, bytes | str]]
Config = tuple[str, str]

#: The install the child runs, killed from inside by its audit hook. ``argv[1]`` is a JSON
#: object: target, cache, wheels, mode, jobs, backend; trace (a file the hook maps and writes
#: each event into as a line: number, phase, event, details); phase and at (kill at the
#: ``at``-th event of ``phase``, or of any phase for ``"any"``; never for 0); and group (kill
#: the process group, which the child leads, rather than the child alone).
CHILD = r"""
import json, mmap, os, signal, sys, threading

config = json.loads(sys.argv[1])
sys.dont_write_bytecode = True  # imports write nothing: every event counted is the install's
TARGET, CACHE = config["target"], config["cache"]
LOCK = TARGET + "/.asynclink-lock"
JOURNAL = TARGET + "/.asynclink-journal"
KILL_PHASE, KILL_AT, GROUP = config["phase"], config["at"], config["group"]
if GROUP and os.getpgrp() != os.getpid():
    sys.exit("refusing to kill a process group this install does not lead")
WATCHED = frozenset({
    "os.mkdir", "os.rmdir", "os.link", "os.symlink", "os.rename", "os.remove", "os.chmod",
    "os.utime", "os.truncate", "open", "fcntl.flock", "subprocess.Popen",
})
WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# (path argument, its dir_fd argument or None) of each event; links and renames name both.
PATHS = {
    "os.mkdir": ((0, 2),), "os.rmdir": ((0, 1),), "os.remove": ((0, 1),),
    "os.chmod": ((0, 2),), "os.utime": ((0, 3),), "os.truncate": ((0, None),),
    "open": ((0, None),), "fcntl.flock": ((0, None),),
    "os.link": ((0, 2), (1, 3)), "os.rename": ((0, 2), (1, 3)), "os.symlink": ((1, 2),),
}

fd = os.open(config["trace"], os.O_RDWR)
trace = mmap.mmap(fd, 0)  # memory: writing it needs no syscall and keeps the GIL
os.close(fd)
lock = threading.Lock()
counts = {"any": 0}
offset = 0


def resolve(path, dir_fd):
    # Absolute, where the event says enough: "?/name" is relative to an unnamed descriptor.
    try:
        if isinstance(path, int):
            return os.readlink(f"/proc/self/fd/{path}")
        path = os.fsdecode(path)
        if path.startswith("/"):
            return path
        if dir_fd is not None and dir_fd >= 0:
            return os.readlink(f"/proc/self/fd/{dir_fd}") + "/" + path
    except (OSError, TypeError, ValueError):
        pass
    return "?/" + str(path)


def phase(event, paths):
    if event == "subprocess.Popen":
        return "helpers"
    path = paths[-1]
    if path == "/dev/null" or path.startswith("pipe:"):
        return "helpers"  # the standard streams of a helper being started
    if path == CACHE or path.startswith(CACHE + "/"):
        return "cache"
    if path == LOCK:
        return "commit" if event == "os.remove" else "lock"
    if path == JOURNAL or path.startswith(JOURNAL + "/"):
        if event in ("os.remove", "os.rmdir"):
            return "commit"
        return "stash" if "/stash/" in path else "journal"
    relative = path.startswith("?/")
    if not (relative or path == TARGET or path.startswith(TARGET + "/")):
        return "other"
    if event == "os.rename" or (event == "os.remove" and "/.asynclink-tmp-" in path):
        return "replacements"
    if event == "os.mkdir":
        return "directories"
    if event in ("os.remove", "os.rmdir"):
        return "removals"
    if event == "os.utime":
        return "mtime"
    if event == "open" and not relative:
        return "writes"
    return "files"


def describe(event, args, paths):
    if event == "subprocess.Popen":
        command = " ".join(map(str, args[1]))
        if "_bulk" in command:
            return "file helper"
        return "unpacker" if "serve_unpacks" in command else "process " + command[:60]
    text = " -> ".join(paths)
    if event == "open":
        text += f" flags={args[2]:#o}"
    elif event in ("os.mkdir", "os.chmod"):
        text += f" mode={args[1]:#o}"
    return text.replace(TARGET, "<target>").replace(CACHE, "<cache>")


def kill():
    if GROUP:
        os.killpg(os.getpgrp(), signal.SIGKILL)  # this process, its helpers, their children
    os.kill(os.getpid(), signal.SIGKILL)


def hook(event, args):
    global offset
    if event not in WATCHED:
        return
    if event == "open" and not (args[2] or 0) & WRITING:
        return
    with lock:  # held while killing: no other thread gets past its own event meanwhile
        try:
            paths = [] if event == "subprocess.Popen" else [
                resolve(args[p], None if d is None else args[d]) for p, d in PATHS[event]
            ]
            name = phase(event, paths)
            counts["any"] += 1
            counts[name] = counts.get(name, 0) + 1
            line = f"{counts['any']}\t{name}\t{event}\t{describe(event, args, paths)}\n"
        except Exception as error:  # raising would stop the operation: say so, go on
            name, line = "", f"0\thook-error\t{event}\t{error!r}\n"
        data = line.encode("utf-8", "backslashreplace")
        if offset + len(data) <= len(trace):
            trace[offset : offset + len(data)] = data
            offset += len(data)
        if KILL_AT and KILL_PHASE in (name, "any") and counts.get(KILL_PHASE) == KILL_AT:
            kill()


import anyio

if config["backend"] == "trio":
    import trio  # its import runs ldconfig, a process that is not the install's
sys.addaudithook(hook)
import asynclink


async def install():
    await asynclink.install_wheels(
        asynclink.Scheme.for_directory(TARGET),
        config["wheels"],
        cache_dir=CACHE,
        mode=config["mode"],
        jobs=config["jobs"],
    )


anyio.run(install, backend=config["backend"])
"""


# -- what is installed --------------------------------------------------------------------------


def many_files_wheel(directory: Path) -> Path:
    """A few hundred small files in a dozen directories (their bulk goes to a file helper,
    linked or copied), an entry point, and two ``.data/scripts`` files, one of them
    ``#!python`` (rewritten, so written rather than linked)."""
    files: dict[str, bytes | str] = {"many/__init__.py": "def main():\n    pass\n"}
    files.update(
        {f"many/sub{d:02}/mod{f:02}.py": f"# {d} {f}\n" for d in range(12) for f in range(25)}
    )
    files["many-1.0.data/scripts/many-rewritten"] = "#!python\nprint('many')\n"
    files["many-1.0.data/scripts/many-plain"] = "#!/bin/sh\necho many\n"
    assert len(files) >= max(HELPER_MIN_FILES, HELPER_MIN_COPIES)
    return build_wheel(
        directory,
        name="many",
        files=files,
        executable=["many-1.0.data/scripts/many-plain"],
        entry_points="[console_scripts]\nmany = many:main\n",
    )


def big_wheel(directory: Path) -> Path:
    """Over a megabyte of data that does not compress, and a header: in a cold install an
    unpacking helper unpacks it while the other wheel is unpacked in a thread."""
    blob = random.Random("big").randbytes(UNPACKER_MIN_BYTES + 4096)
    files = {"big/__init__.py": "", "big/blob.bin": blob, "big-1.0.data/headers/big.h": "int b;\n"}
    path = build_wheel(directory, name="big", files=files)
    assert path.stat().st_size >= UNPACKER_MIN_BYTES
    return path


def demo_wheel(directory: Path, version: str) -> Path:
    """``demo`` 1.0, or 2.0, which changes ``__init__.py`` and ``olddir/kept.py``, drops
    ``old.py``, the directories ``sub`` and ``olddir/deep``, the header and the scripts
    ``demo-old`` and ``oldtool``, and adds ``new.py`` and the directories ``newdir/deeper``."""
    if version == "1.0":
        files: dict[str, bytes | str] = {
            "demo/__init__.py": "VERSION = 1\ndef main():\n    pass\n",
            "demo/old.py": "OLD = 1\n",
            "demo/sub/gone.py": "",
            "demo/olddir/deep/x.py": "X = 1\n",
            "demo/olddir/kept.py": "KEPT = 1\n",
            "demo-1.0.data/scripts/oldtool": "#!/bin/sh\necho old\n",
            "demo-1.0.data/headers/demo.h": "int d;\n",
        }
        entry_points = "[console_scripts]\ndemo = demo:main\ndemo-old = demo:main\n"
    else:
        files = {
            "demo/__init__.py": "VERSION = 2\ndef main():\n    pass\n",
            "demo/new.py": "NEW = 2\n",
            "demo/olddir/kept.py": "KEPT = 2\n",
            "demo/newdir/deeper/n.py": "N = 2\n",
        }
        entry_points = "[console_scripts]\ndemo = demo:main\n"
    return build_wheel(
        directory / version,
        name="demo",
        version=version,
        files=files,
        executable=[name for name in files if "/scripts/" in name],
        entry_points=entry_points,
    )


@dataclass(frozen=True)
class Scenario:
    name: str
    template: Path
    """The target before the install: each run starts from a copy of it."""
    wheels: tuple[Path, ...]
    warm_cache: Path | None = None
    """The cache all runs share, filled beforehand; ``None``: each run gets an empty one."""
    warm_snapshot: Snapshot = field(default_factory=dict, repr=False)
    """The warm cache's snapshot: no trial may change it."""


def unrelated_target(root: Path) -> Path:
    """A site-packages holding only what no install may touch: a file, an empty directory."""
    make_tree(root, {"keep/me.txt": "not asynclink's\n"})
    (root / "keep" / "empty").mkdir()
    return root


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Scenario]:
    """The three installs. Wheels, warm cache and starting targets are all made here, in the
    test process: no kill can land while the state before an install is set up."""
    root = tmp_path_factory.mktemp("kills")
    many, big = many_files_wheel(root / "dist"), big_wheel(root / "dist")
    old, new = demo_wheel(root / "dist", "1.0"), demo_wheel(root / "dist", "2.0")
    warm = root / "warm-cache"
    anyio.run(lambda: unpack_wheels([many, big, old, new], cache_dir=warm))
    fresh = unrelated_target(root / "fresh" / "site-packages")
    installed = unrelated_target(root / "installed" / "site-packages")
    scheme = Scheme.for_directory(installed)
    anyio.run(lambda: install_wheels(scheme, [old], cache_dir=warm, mode="copy"))
    assert (installed / "demo-1.0.dist-info").is_dir()
    cache = snapshot(warm)
    return {
        "cold": Scenario("cold", fresh, (many, big)),
        "warm": Scenario("warm", fresh, (many, big), warm, cache),
        "upgrade": Scenario("upgrade", installed, (new, many), warm, cache),
    }


def prepare(scenario: Scenario, directory: Path) -> Path:
    """``directory/site-packages``: a fresh copy of the scenario's target before the install."""
    directory.mkdir(parents=True)
    target = directory / "site-packages"
    shutil.copytree(scenario.template, target, symlinks=True)
    return target


# -- running an install -------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One filesystem operation (or helper start) of the child, as its audit hook saw it."""

    number: int
    phase: str
    name: str
    details: str

    def __str__(self) -> str:
        return f"#{self.number} {self.phase}: {self.name} {self.details}"


@dataclass(frozen=True)
class KillPoint:
    phase: str
    """A phase, or ``"any"``."""
    at: int
    """Kill at this event of ``phase``, counting from 1."""

    def __str__(self) -> str:
        return f"event {self.at} of {self.phase}"


@dataclass(frozen=True)
class Run:
    pid: int
    """The child's, and so its process group's."""
    returncode: int
    events: list[Event]
    stderr: str


def run_install(
    scenario: Scenario, directory: Path, config: Config, kill: KillPoint | None, group: bool
) -> Run:
    """Run the scenario's install into ``directory/site-packages`` (prepared already) in a child
    process leading a process group of its own, killed at ``kill``; wait for the child (not for
    its helpers) and say what it did."""
    backend, mode = config
    trace = directory / "trace"
    with trace.open("wb") as handle:
        handle.truncate(TRACE_BYTES)
    cache = scenario.warm_cache or directory / "cache"
    arguments = {
        "target": str(directory / "site-packages"),
        "cache": str(cache),
        "wheels": [str(wheel) for wheel in scenario.wheels],
        "mode": mode,
        "jobs": JOBS,
        "backend": backend,
        "trace": str(trace),
        "phase": kill.phase if kill else "any",
        "at": kill.at if kill else 0,
        "group": group,
    }
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(arguments)],
        cwd=directory,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # a group of its own: killing it never reaches pytest
    )
    try:
        _, stderr = process.communicate()
    except BaseException:  # pytest-timeout, ^C: leave nothing running
        stop_group(process.pid)
        raise
    return Run(process.pid, process.returncode, read_trace(trace), stderr.decode(errors="replace"))


def read_trace(path: Path) -> list[Event]:
    events = []
    for line in path.read_bytes().partition(b"\0")[0].decode("utf-8").splitlines():
        number, phase, name, details = line.split("\t", 3)
        events.append(Event(int(number), phase, name, details))
    errors = [str(event) for event in events if event.phase == "hook-error"]
    assert not errors, f"the audit hook failed: {errors}"
    return events


def group_members(pgid: int) -> dict[int, str]:
    """The live (not zombie) processes of process group ``pgid``, each with its command line
    (or, for one that is exiting and has none left, its name and state)."""
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        name, _, rest = status.partition(" (")[2].rpartition(")")
        state, _, group = rest.split()[:3]
        if int(group) == pgid and state != "Z":
            line = command.replace(b"\0", b" ").decode(errors="replace").strip()
            found[int(entry)] = line or f"[{name}, state {state}]"
    return found


def wait_for_exit(pids: Iterable[int]) -> None:
    """Block until each process has exited (a pidfd works for processes that are not our
    children); a hang is pytest-timeout's to end."""
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            select.select([fd], [], [])
        finally:
            os.close(fd)


def stop_group(pgid: int) -> None:
    """Kill what is left of a child's process group, if anything is."""
    if group_members(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def helper_kind(command: str) -> str:
    if "_bulk" in command:
        return "file helper"
    return "unpacker" if "serve_unpacks" in command else command


# -- the reference: an uninterrupted run of each install ----------------------------------------


@dataclass(frozen=True)
class Reference:
    before: Snapshot
    after: Snapshot
    events: list[Event]

    @property
    def phases(self) -> Counter[str]:
        """How many events of each phase, in the order of their first event."""
        return Counter(event.phase for event in self.events)


class References:
    """An uninterrupted run of each scenario in each configuration, made once, in a scratch
    copy of the same starting target: its events, and the target it leaves."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._made: dict[tuple[str, Config], Reference] = {}

    def get(self, scenario: Scenario, config: Config) -> Reference:
        key = (scenario.name, config)
        if key not in self._made:
            directory = self._root / f"{scenario.name}-{'-'.join(config)}"
            target = prepare(scenario, directory)
            before = snapshot(target)
            run = run_install(scenario, directory, config, None, group=False)
            assert run.returncode == 0 and not run.stderr, run.stderr
            wait_for_exit(group_members(run.pid))
            after = snapshot(target)
            assert after != before
            elsewhere = [str(event) for event in run.events if event.phase == "other"]
            assert not elsewhere, f"the install wrote outside its target and cache: {elsewhere}"
            self._made[key] = Reference(before, after, run.events)
        return self._made[key]


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> References:
    return References(tmp_path_factory.mktemp("references"))


def kill_points(references: list[Reference], trials: int, rng: random.Random) -> list[KillPoint]:
    """A kill point for each trial (trial ``n`` runs in ``references[n % len(references)]``'s
    configuration): first a random event of each phase the install goes through, then the k-th
    event of any phase, half of them with k stratified over the whole run, half at random."""
    phases = list(references[0].phases)
    trials = max(trials, len(phases))
    strata = (trials - len(phases) + 1) // 2
    points = []
    for number in range(trials):
        reference = references[number % len(references)]
        total = len(reference.events)
        stratum = number - len(phases)
        if number < len(phases) and reference.phases[phases[number]]:
            phase = phases[number]
            points.append(KillPoint(phase, rng.randint(1, reference.phases[phase])))
        elif 0 <= stratum < strata:
            low = 1 + total * stratum // strata
            points.append(
                KillPoint("any", rng.randint(low, max(low, total * (stratum + 1) // strata)))
            )
        else:
            points.append(KillPoint("any", rng.randint(1, total)))
    return points


# -- a trial: kill, recover, judge --------------------------------------------------------------


@dataclass
class Trial:
    number: int
    config: Config
    kill: KillPoint
    event: Event | None = None
    """Where the kill landed: the operation that never happened; ``None`` if the install
    finished first."""
    helpers: list[str] = field(default_factory=list)
    """Helper processes started before the kill."""
    outcome: str = ""
    """``before``, ``after`` (as installed) or ``neither``."""
    left: list[str] = field(default_factory=list)
    """How the target differs from the nearer of the two, if it is neither."""
    survivors: list[str] = field(default_factory=list)
    """Helper processes still alive when ``recover()`` returned."""
    problems: list[str] = field(default_factory=list)
    """``recover()`` failing, or reporting what it could not undo; the target changing after
    it returned; the install failing by itself."""
    phases: dict[str, int] = field(default_factory=dict)
    """How many events of each phase the install went through, up to the kill."""

    @property
    def consistent(self) -> bool:
        return self.outcome in ("before", "after") and not self.problems


def run_trial(
    scenario: Scenario,
    directory: Path,
    trial: Trial,
    group: bool,
    reference: Reference,
) -> Trial:
    """Kill one install, wait for the killed process, recover, wait for every helper it left,
    and judge the target; see the module docstring."""
    target = prepare(scenario, directory)
    assert snapshot(target) == reference.before
    run = run_install(scenario, directory, trial.config, trial.kill, group)
    try:
        if run.returncode == -signal.SIGKILL:
            trial.event = run.events[-1]
        elif run.returncode != 0:
            trial.problems.append(f"the install failed by itself: {run.stderr.strip()}")
        trial.phases = dict(Counter(event.phase for event in run.events))
        started = run.events[:-1] if trial.event is not None else run.events
        trial.helpers = [e.details for e in started if e.name == "subprocess.Popen"]
        try:
            reports: list[RollbackReport] = anyio.run(recover, str(target), backend=trial.config[0])
        except Exception as error:
            reports = []
            trial.problems.append(f"recover() raised {error!r}")
        trial.problems += [problem for report in reports for problem in report.problems]
        recovered = snapshot(target)
        alive = group_members(run.pid)
        trial.survivors = [f"{helper_kind(command)} (pid {pid})" for pid, command in alive.items()]
        wait_for_exit(alive)
    finally:
        stop_group(run.pid)
    if snapshot(target) != recovered:
        trial.problems.append("the target changed after recover() returned")
    judge(trial, recovered, reference)
    if scenario.warm_cache is not None:
        assert snapshot(scenario.warm_cache) == scenario.warm_snapshot, (
            "the trial changed the warm cache: the next one would not start warm"
        )
    return trial


def judge(trial: Trial, found: Snapshot, reference: Reference) -> None:
    if found == reference.before:
        trial.outcome = "before"
    elif found == reference.after:
        trial.outcome = "after"
    else:
        trial.outcome = "neither"
        to_before = differences(found, reference.before)
        to_after = differences(found, reference.after)
        nearer, changes = ("before", to_before)
        if len(to_after) < len(to_before):
            nearer, changes = ("as installed", to_after)
        trial.left = [f"vs {nearer}: {change}" for change in changes]


def differences(found: Snapshot, expected: Snapshot) -> list[str]:
    """What ``found`` has and ``expected`` has not (``+``), lacks (``-``) or has otherwise
    (``~``); directories end in ``/``, empty ones are said to be."""

    def shown(path: str) -> str:
        kind, mode, _ = found[path]
        if kind != "dir":
            return f"{path} ({kind})"
        empty = not any(other.startswith(path + os.sep) for other in found)
        return f"{path}/ ({'empty ' if empty else ''}directory, mode {mode:o})"

    extra = [f"+{shown(path)}" for path in sorted(found.keys() - expected.keys())]
    missing = [f"-{path}" for path in sorted(expected.keys() - found.keys())]
    common = sorted(found.keys() & expected.keys())
    changed = [f"~{path}" for path in common if found[path] != expected[path]]
    return extra + missing + changed


def run_trials(
    scenario: Scenario,
    uninterrupted: list[Reference],
    group: bool,
    directory: Path,
    rng: random.Random,
) -> list[Trial]:
    """The trials of one test, with :func:`kill_points` and the configurations in turn.

    How many events a phase has can differ from run to run (whether an unpacking helper
    takes a wheel depends on how far the other unpack is), so a trial aimed at a phase that
    ended before the kill point is tried again, in the same configuration, at an event that
    the phase did reach in that run (up to three times).
    """
    queue = [
        (number % len(CONFIGS), point)
        for number, point in enumerate(kill_points(uninterrupted, KILL_TRIALS, rng))
    ]
    trials: list[Trial] = []
    retries = 0
    while queue:
        which, point = queue.pop(0)
        trial = Trial(len(trials), CONFIGS[which], point)
        where = directory / f"trial-{trial.number}"
        trials.append(run_trial(scenario, where, trial, group, uninterrupted[which]))
        if trial.consistent:
            shutil.rmtree(where)
        reached = trial.phases.get(point.phase, 0)
        if trial.event is None and point.phase != "any" and reached and retries < 3:
            retries += 1
            queue.insert(0, (which, KillPoint(point.phase, rng.randint(1, reached))))
    return trials


# -- the summary --------------------------------------------------------------------------------


def summarise(title: str, trials: list[Trial]) -> str:
    killed = [trial for trial in trials if trial.event is not None]
    good = Counter(trial.outcome for trial in trials if trial.consistent)
    lines = [
        f"{title}: {len(trials)} trials, {len(killed)} killed, "
        f"{sum(good.values())} consistent ({good['before']} as before, {good['after']} as "
        f"installed), {len(trials) - sum(good.values())} inconsistent"
    ]
    by_phase: dict[str, list[Trial]] = {}
    for trial in killed:
        assert trial.event is not None
        by_phase.setdefault(trial.event.phase, []).append(trial)
    counts = []
    for phase, group in by_phase.items():
        bad = sum(not trial.consistent for trial in group)
        counts.append(f"{phase} {len(group)}" + (f" ({bad} inconsistent)" if bad else ""))
    lines.append("  kills by phase: " + ", ".join(counts))
    helpers = Counter(kind for trial in trials for kind in set(trial.helpers))
    started = [f"{kind} in {count}" for kind, count in sorted(helpers.items())]
    lines.append(
        "  trials with a helper started before the kill: " + (", ".join(started) or "none")
    )
    for trial in trials:
        label = f"trial {trial.number} ({', '.join(trial.config)}, {trial.kill})"
        if trial.event is None:
            lines.append(f"  {label}: not killed, the install finished first")
        if not trial.consistent:
            lines.append(f"  INCONSISTENT {label}, killed at {trial.event}:")
            lines += [f"      {change}" for change in trial.left[:12]]
            if len(trial.left) > 12:
                lines.append(f"      ... and {len(trial.left) - 12} more")
            lines += [f"      problem: {problem}" for problem in trial.problems]
        if trial.survivors:
            lines.append(f"  {label}: alive after recover(): {', '.join(trial.survivors)}")
    return "\n".join(lines)


def record(test: str, trials: list[Trial]) -> None:
    path = os.environ.get("KILL_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            entry = {"test": test, "trials": [asdict(trial) for trial in trials]}
            handle.write(json.dumps(entry) + "\n")


# -- the property -------------------------------------------------------------------------------


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("kill", ["main-process", "process-group"])
@pytest.mark.parametrize("name", ["cold", "warm", "upgrade"])
def test_after_a_kill_at_any_point_recover_leaves_the_target_as_before_or_as_installed(
    name: str, kill: str, scenarios: Mapping[str, Scenario], references: References, tmp_path: Path
) -> None:
    scenario = scenarios[name]
    uninterrupted = [references.get(scenario, config) for config in CONFIGS]
    rng = random.Random(f"{KILL_SEED}-{name}-{kill}")
    trials = run_trials(scenario, uninterrupted, kill == "process-group", tmp_path, rng)
    summary = summarise(f"{name} install, kill {kill}", trials)
    print(summary)
    record(f"{name}-{kill}", trials)

    inconsistent = [trial.number for trial in trials if not trial.consistent]
    assert not inconsistent, summary
    reached = {trial.event.phase for trial in trials if trial.event is not None}
    missed = set(uninterrupted[0].phases) - reached
    assert not missed, f"no trial killed the install in {sorted(missed)}:\n{summary}"
