"""What the command line shows while it installs: built on the event channel, nothing private.

Three reporters: a ``rich`` progress display on a terminal, one plain line per wheel otherwise,
and silence for ``--quiet``. ``rich`` is imported only by the first, so a pipe or a CI log
never pays for it. Each reporter takes events as they come (one call per wheel step, not per
file, so it cannot slow an install down) and prints the summary at the end.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import TYPE_CHECKING, Any, TextIO

from ._events import Event, WheelFinished
from ._results import WheelResult

if TYPE_CHECKING:
    from ._results import InstallResult

__all__ = ["PlainReporter", "QuietReporter", "Reporter", "make_reporter", "summary_lines"]


class Reporter:
    """Hears the events of one install and prints what a person wants to see of them."""

    def start(self, total: int) -> None:
        """The install is about to begin with ``total`` wheels."""

    def __call__(self, event: Event) -> None:
        """One event of the install."""

    def finish(self, result: InstallResult) -> None:
        """The install succeeded."""

    def stop(self) -> None:
        """The install ended, one way or another: release the terminal."""


class QuietReporter(Reporter):
    """``--quiet``: nothing but errors, which the command line prints itself."""


class PlainReporter(Reporter):
    """One line per wheel and a summary: for logs, pipes and terminals without ``rich``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, event: Event) -> None:
        if isinstance(event, WheelFinished):
            print(f"  + {_describe(event.result)}", file=self.stream)

    def finish(self, result: InstallResult) -> None:
        for line in summary_lines(result):
            print(line, file=self.stream)


class RichReporter(Reporter):
    """A live display: wheels done of total, files placed, bytes, elapsed time."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(file=stream)
        self.progress = Progress(
            TextColumn("[bold]installing"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} wheels"),
            TextColumn("{task.fields[files]:,} files"),
            TextColumn("{task.fields[size]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.task: Any = None
        self.files = 0
        self.bytes = 0

    def start(self, total: int) -> None:
        self.task = self.progress.add_task("install", total=total, files=0, size=_size(0))
        self.progress.start()

    def __call__(self, event: Event) -> None:
        if isinstance(event, WheelFinished):
            self.files += event.result.files
            self.bytes += event.result.bytes
            self.progress.update(self.task, advance=1, files=self.files, size=_size(self.bytes))
            self.console.print(f"  [green]+[/] {_describe(event.result)}", highlight=False)

    def finish(self, result: InstallResult) -> None:
        lines = summary_lines(result)
        self.console.print(f"[bold green]{lines[0]}[/]", highlight=False)
        for line in lines[1:]:
            self.console.print(line, highlight=False)

    def stop(self) -> None:
        self.progress.stop()


def make_reporter(quiet: bool, stream: TextIO = sys.stderr) -> Reporter:
    """Silence, a live display on a terminal, or plain lines."""
    if quiet:
        return QuietReporter()
    if stream.isatty():
        try:
            return RichReporter(stream)
        except ImportError:
            pass
    return PlainReporter(stream)


def _describe(result: WheelResult) -> str:
    name = result.wheel.removesuffix(f"-{result.version}")
    text = f"{name} {result.version}: {result.files:,} files, {result.mode}"
    if result.cached:
        text += ", cached"
    return text


def summary_lines(result: InstallResult) -> list[str]:
    """The end of an install in a few lines: what, how many, how, what to look at."""
    lines = [
        f"Installed {len(result.wheels)} package{'s' if len(result.wheels) != 1 else ''} "
        f"({result.files:,} files, {_size(result.bytes)}) in {result.elapsed:.3f}s"
    ]
    modes = Counter(w.mode.value for w in result.wheels)
    if modes:
        lines.append("  link mode: " + ", ".join(f"{m} ({n})" for m, n in modes.most_common()))
    fell_back = [w for w in result.wheels if w.fell_back]
    if fell_back:
        reasons = Counter(
            f"{w.requested_mode} -> {w.mode}: {w.fallbacks[-1].reason}" for w in fell_back
        )
        for reason, count in reasons.most_common():
            lines.append(f"  fell back: {reason} ({count} wheel{'s' if count != 1 else ''})")
    if result.compiled:
        lines.append(f"  compiled: {result.compiled:,} files to bytecode")
    if result.conflicts:
        lines.append(f"  conflicts: {len(result.conflicts)}")
        lines.extend(f"    {conflict}" for conflict in result.conflicts)
    return lines


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{count} B"
        size /= 1000
    raise AssertionError("unreachable")
