"""A one-line progress bar for writing archives (drawn only on a terminal)."""

from __future__ import annotations

import time
from typing import TextIO

MB = 1024 * 1024
WIDTH = 30
REDRAW_EVERY = 0.1  # seconds


class ProgressBar:
    """Counts bytes and redraws ``label [####    ]  42%  120/285 MB  95 MB/s`` in place."""

    def __init__(self, stream: TextIO, label: str, total: int) -> None:
        self.stream = stream
        self.label = label
        self.total = max(total, 1)
        self.done = 0
        self.started = time.monotonic()
        self._drawn_at = 0.0

    def __call__(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._drawn_at >= REDRAW_EVERY:
            self._draw(now)

    def _line(self, now: float) -> str:
        fraction = min(1.0, self.done / self.total)
        filled = int(fraction * WIDTH)
        rate = self.done / MB / max(now - self.started, 1e-6)
        return (
            f"\r{self.label} [{'#' * filled}{' ' * (WIDTH - filled)}] {fraction:4.0%} "
            f"{self.done / MB:.0f}/{self.total / MB:.0f} MB {rate:.0f} MB/s"
        )

    def _draw(self, now: float) -> None:
        self._drawn_at = now
        self.stream.write(self._line(now))
        self.stream.flush()

    def finish(self) -> None:
        self._draw(time.monotonic())
        self.stream.write("\n")
        self.stream.flush()
