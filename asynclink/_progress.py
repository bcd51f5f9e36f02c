"""What the command line shows while it works: built on the event channel, nothing private.

Three reporters: a ``rich`` progress display on a terminal (unless colour is turned off for
it), one plain line per change otherwise, and silence for ``--quiet``. ``rich`` is imported
only by the first, so a pipe or a CI log never pays for it. Each reporter takes events as they
come (one call per wheel step, not per file, so it cannot slow an install down) and prints the
summary at the end. Changes read as uv's do: ``+ tqdm 4.67.1`` for what arrives, ``- tqdm
4.66.0`` for what goes (an upgrade is both).
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import TYPE_CHECKING, Any, TextIO

from ._confinement import printable
from ._events import DistributionRemoved, Event, WheelFinished, WheelUnpacking
from ._results import Action, WheelResult

if TYPE_CHECKING:
    from ._dryrun import PlannedWheel
    from ._results import InstallResult, RemovedDistribution, UninstallResult

__all__ = [
    "PlainReporter",
    "QuietReporter",
    "Reporter",
    "change_lines",
    "make_reporter",
    "plan_lines",
    "removal_line",
    "summary_lines",
    "uninstall_lines",
]


class Reporter:
    """Hears the events of one call and prints what a person wants to see of them."""

    def start(self, total: int) -> None:
        """The call is about to begin with ``total`` wheels."""

    def __call__(self, event: Event) -> None:
        """One event of the call."""

    def finish(self, result: InstallResult) -> None:
        """The call succeeded."""

    def stop(self) -> None:
        """The call ended, one way or another: release the terminal."""


class QuietReporter(Reporter):
    """``--quiet``: nothing but errors, which the command line prints itself."""


class PlainReporter(Reporter):
    """A line per change and a summary: for logs, pipes and terminals without ``rich``.

    The changes are printed when the call has succeeded, as uv prints them: a batch that
    fails is rolled back, and a ``+ name`` line of it would announce what is not there.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.changes: list[str] = []

    def __call__(self, event: Event) -> None:
        self.changes += event_lines(event)

    def finish(self, result: InstallResult) -> None:
        for line in (*self.changes, *summary_lines(result)):
            print(line, file=self.stream)


class RichReporter(Reporter):
    """A live display: wheels done of total, files placed, bytes, elapsed time, and the wheels
    being unpacked right now."""

    def __init__(self, stream: TextIO, color: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(file=stream, no_color=not color, highlight=False)
        self.progress = Progress(
            TextColumn("[bold]installing"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} wheels"),
            TextColumn("{task.fields[files]:,} files"),
            TextColumn("{task.fields[size]}"),
            TextColumn("{task.fields[unpacking]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.task: Any = None
        self.changes: list[str] = []
        """The change lines, printed once the call has succeeded (see :class:`PlainReporter`)."""
        self.files = 0
        self.bytes = 0
        self.unpacking: set[str] = set()

    def start(self, total: int) -> None:
        self.task = self.progress.add_task(
            "install", total=total, files=0, size=_size(0), unpacking=""
        )
        self.progress.start()

    def __call__(self, event: Event) -> None:
        if isinstance(event, WheelUnpacking):
            self.unpacking.add(event.archive.rpartition("/")[2])
        elif isinstance(event, WheelFinished):
            self.files += event.result.files
            self.bytes += event.result.bytes
            if event.result.archive is not None:
                self.unpacking.discard(event.result.archive.rpartition("/")[2])
        elif not isinstance(event, DistributionRemoved):
            return
        self.changes += event_lines(event)
        shown = f"unpacking {len(self.unpacking)}" if self.unpacking else ""
        done = 1 if isinstance(event, WheelFinished) else 0
        self.progress.update(
            self.task, advance=done, files=self.files, size=_size(self.bytes), unpacking=shown
        )

    def finish(self, result: InstallResult) -> None:
        for line in self.changes:
            line = _plain(line).replace("  + ", "  [green]+[/] ", 1)
            self.console.print(line.replace("  - ", "  [red]-[/] ", 1))
        lines = [_plain(line) for line in summary_lines(result)]
        self.console.print(f"[bold green]{lines[0]}[/]")
        for line in lines[1:]:
            self.console.print(line)

    def stop(self) -> None:
        self.progress.stop()


def make_reporter(quiet: bool, color: bool = True, stream: TextIO = sys.stderr) -> Reporter:
    """Silence, a live display on a terminal, or plain lines."""
    if quiet:
        return QuietReporter()
    if stream.isatty():
        try:
            return RichReporter(stream, color)
        except ImportError:
            pass
    return PlainReporter(stream)


def event_lines(event: Event) -> list[str]:
    """The change lines an event adds: a wheel's ``+``/``-`` lines, a removal's ``-`` line."""
    if isinstance(event, WheelFinished):
        return change_lines(event.result)
    if isinstance(event, DistributionRemoved):
        return [removal_line(event.distribution)]
    return []


def change_lines(result: WheelResult) -> list[str]:
    """What a wheel changed: ``- old`` for the version it replaced, ``+ new`` for itself."""
    if result.action is Action.SKIPPED:
        return []
    name = result.project or result.wheel.removesuffix(f"-{result.version}")
    lines = [f"  - {name} {result.replaced}"] if result.replaced is not None else []
    text = f"  + {name} {result.version}: {result.files:,} files, {result.mode}"
    if result.cached:
        text += ", cached"
    if result.action is Action.REINSTALLED:
        text += ", reinstalled"
    return [printable(line) for line in (*lines, text)]


def removal_line(removed: RemovedDistribution) -> str:
    return printable(f"  - {removed.name} {removed.version}: {removed.files:,} files")


def summary_lines(result: InstallResult) -> list[str]:
    """The end of an install or sync in a few lines: what, how many, how, what to look at."""
    changed = result.changed
    what = (
        f"Installed {len(changed)} package{'s' if len(changed) != 1 else ''}"
        if not result.skipped
        else f"Checked {len(result.wheels)} packages, installed {len(changed)}"
    )
    if changed:
        what += f" ({result.files:,} files, {_size(result.bytes)})"
    if result.removed:
        what += f", removed {len(result.removed)}"
    lines = [f"{what} in {result.elapsed:.3f}s"]
    modes = Counter(w.mode.value for w in changed)
    if modes:
        lines.append("  link mode: " + ", ".join(f"{m} ({n})" for m, n in modes.most_common()))
    fell_back = [w for w in changed if w.fell_back]
    if fell_back:
        reasons = Counter(
            f"{w.requested_mode} -> {w.mode}: {w.fallbacks[-1].reason}" for w in fell_back
        )
        for reason, count in reasons.most_common():
            lines.append(f"  fell back: {reason} ({count} wheel{'s' if count != 1 else ''})")
    if result.compiled:
        lines.append(f"  compiled: {result.compiled:,} files to bytecode")
    if result.recovered:
        lines.append(f"  recovered {len(result.recovered)} interrupted install(s) first")
    if result.conflicts:
        lines.append(f"  conflicts: {len(result.conflicts)}")
        lines.extend(f"    {conflict}" for conflict in result.conflicts)
    return [printable(line) for line in lines]


def plan_lines(
    planned: list[PlannedWheel], removing: list[RemovedDistribution], each_file: bool
) -> list[str]:
    """A dry run of an install or sync: what would change, and (``each_file``) every file."""
    changing = [wheel for wheel in planned if wheel.action is not Action.SKIPPED]
    files = sum(len(wheel.files) for wheel in changing)
    what = f"Would install {len(changing)} package{'s' if len(changing) != 1 else ''}"
    if len(changing) != len(planned):
        what = f"Checked {len(planned)} packages, would install {len(changing)}"
    if removing:
        what += f", remove {len(removing)}"
    lines = [f"{what} ({files:,} files); nothing was written"]
    for wheel in changing:
        if wheel.replaced is not None:
            lines.append(f"  - {wheel.project} {wheel.replaced}")
        cached = ", cached" if wheel.cached else ""
        lines.append(f"  + {wheel.project} {wheel.version}: {len(wheel.files):,} files{cached}")
        if each_file:
            lines.extend(f"      {file.action:5} {file.destination}" for file in wheel.files)
    lines.extend(f"  - {removed.name} {removed.version}" for removed in removing)
    return [printable(line) for line in lines]


def uninstall_lines(result: UninstallResult, dry_run: bool) -> list[str]:
    count = len(result.removed)
    files = sum(removed.files for removed in result.removed)
    verb = "Would uninstall" if dry_run else "Uninstalled"
    lines = [
        f"{verb} {count} package{'s' if count != 1 else ''} ({files:,} files) "
        f"in {result.elapsed:.3f}s"
    ]
    lines.extend(removal_line(removed) for removed in result.removed)
    lines.extend(f"  not installed: {name}" for name in result.missing)
    return [printable(line) for line in lines]


def _plain(line: str) -> str:
    """``line`` for ``rich`` to print as it is: a ``[`` in a name is not markup."""
    from rich.markup import escape

    return escape(line)


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{count} B"
        size /= 1000
    raise AssertionError("unreachable")
