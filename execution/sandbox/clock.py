"""The sandbox's replay clock: which moment of the recorded market is "now", and how it looks live.

The emulators replay a Parquet store. Data time (the rows' ``exch_ts``, ns UTC) is mapped to wall
time so that the timestamps the clients see look live: ``wall = wall_start + (data - data_start) /
speed``; or, with ``show_data_time`` (the live bot's in-process sandbox, whose trader core runs on the
replay's time), the venues show data time itself, so the bot and the venues share one clock as they
do live. ``speed`` 1 is real time, 60 a minute of market per second. A *stepped* clock does not move
by itself: a test moves it with :meth:`ReplayClock.step`, so a test decides exactly which rows have
happened. ``skew_ns`` (a fault) shifts every wall time the venue shows and checks against.
"""

from __future__ import annotations

import time


class ReplayClock:
    """Data time <-> wall time for one sandbox (all venues of a sandbox share one clock)."""

    def __init__(self, data_start_ns: int, speed: float = 1.0, stepped: bool = False, wall_start_ns: int | None = None,
                 show_data_time: bool = False):
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.data_start_ns = int(data_start_ns)
        self.speed = float(speed)
        self.stepped = stepped
        self.wall_start_ns = time.time_ns() if wall_start_ns is None else int(wall_start_ns)
        self._mono_start = time.monotonic_ns()
        self._stepped_data_ns = self.data_start_ns
        self.skew_ns = 0
        self.show_data_time = show_data_time

    def data_now(self) -> int:
        """The data time that is "now" (ns UTC of the recording)."""
        if self.stepped:
            return self._stepped_data_ns
        return self.data_start_ns + int((time.monotonic_ns() - self._mono_start) * self.speed)

    def step(self, seconds: float) -> int:
        """Move a stepped clock forward by ``seconds`` of data time; returns the new data time (ns)."""
        if not self.stepped:
            raise RuntimeError("step() needs a stepped clock (the sandbox runs with --speed)")
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._stepped_data_ns += int(round(seconds * 1e9))
        return self._stepped_data_ns

    def release(self, speed: float | None = None) -> None:
        """A stepped clock starts running, at ``speed`` (default its own), from the data time it has
        been stepped to: a test sets the scene on a stepped clock, then lets the market run."""
        if not self.stepped:
            raise RuntimeError("release() needs a stepped clock")
        if speed is not None:
            if not speed > 0:
                raise ValueError(f"speed must be > 0, got {speed}")
            self.speed = float(speed)
        self.data_start_ns = self._stepped_data_ns
        self.wall_start_ns = time.time_ns()
        self._mono_start = time.monotonic_ns()
        self.stepped = False

    def to_wall(self, data_ns: int) -> int:
        """The wall time (ns UTC, skew included) a venue shows for an event at data time ``data_ns``."""
        if self.show_data_time:
            return int(data_ns) + self.skew_ns
        return self.wall_start_ns + int((int(data_ns) - self.data_start_ns) / self.speed) + self.skew_ns

    def wall_now(self) -> int:
        """The venue's idea of the current wall time (ns UTC): the real clock plus the skew fault.

        Signature time windows are checked against this (clients sign with their real clock)."""
        return time.time_ns() + self.skew_ns

    def wall_ms(self, data_ns: int) -> int:
        return self.to_wall(data_ns) // 1_000_000
