"""An event callback for the tests that counts how many wheels are being placed at once."""

from __future__ import annotations

from asynclink import Event, WheelFinished, WheelStarted


class Concurrency:
    """Pass as ``on_event``; ``peak`` is the most wheels started and not yet finished."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, WheelStarted):
            self.running += 1
            self.peak = max(self.peak, self.running)
        elif isinstance(event, WheelFinished):
            self.running -= 1
