"""A sweep's results on disk: one row per finished run, safe to kill at any moment, resumable.

Layout of the sweep's output directory::

    results.parquet        every finished run compacted into one table (rewritten, never appended)
    parts/<run_id>.parquet one row per run finished since the last compaction
    curves/<run_id>.parquet the run's equity samples (ts, equity_raw, equity_haircut), for the page
    sweep.lock             held (flock) while a sweep writes here

Every file appears by write-to-temporary-then-rename (atomic on POSIX), so a sweep killed midway
leaves only whole files: a run is either recorded (its part file, or its row in results.parquet)
or it is not and runs again. Compaction writes the new results.parquet first and only then removes
the part files it holds; a kill between the two leaves a run in both places, and :meth:`load`
keeps one row per ``run_id`` (the one finished last). A run's curve is written before its row, so a
recorded run always has its curve.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from stockbridge.errors import StockbridgeError

RESULTS = "results.parquet"
PARTS = "parts"
CURVES = "curves"
LOCK = "sweep.lock"

# columns every row has, with fixed types (metric columns are Float64, swept keys are inferred)
BASE_SCHEMA = {
    "run_id": pl.String, "status": pl.String, "error": pl.String, "objective": pl.Float64, "seed": pl.Int64,
    "window": pl.Int64, "window_start": pl.String, "window_end": pl.String, "params": pl.String,
    "started_at": pl.Datetime("us", "UTC"), "finished_at": pl.Datetime("us", "UTC"),
    "run_seconds": pl.Float64, "replay_seconds": pl.Float64, "compile_seconds": pl.Float64,
    "worker": pl.String, "worker_run": pl.Int64, "sharpe_window_s": pl.Float64, "loop": pl.String,
    "loop_loads": pl.Int64, "worker_peak_rss_mb": pl.Float64,
}


class SweepLocked(StockbridgeError):
    """Another sweep is writing to the same output directory."""


class ResultStore:
    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.parts = self.out / PARTS
        self.curves = self.out / CURVES
        self._lock_fd: int | None = None

    # -- locking: one sweep writes a directory at a time --
    def lock(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.parts.mkdir(exist_ok=True)
        self.curves.mkdir(exist_ok=True)
        fd = os.open(self.out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SweepLocked(f"{self.out}: another sweep is writing here (it holds {self.out / LOCK}); "
                              "wait for it or use another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- writing --
    def record(self, row: dict[str, Any], curve: dict[str, np.ndarray] | None) -> None:
        """Make one finished run durable: its curve, then its one-row part file."""
        run_id = row["run_id"]
        if curve is not None:
            _atomic_parquet(pl.DataFrame(curve), self.curves / f"{run_id}.parquet")
        _atomic_parquet(row_frame(row), self.parts / f"{run_id}.parquet")

    def compact(self) -> pl.DataFrame:
        """Fold the part files into results.parquet (atomically); returns the whole table."""
        parts = sorted(self.parts.glob("*.parquet"))
        frame = self.frame(parts)
        if parts or not (self.out / RESULTS).exists():
            _atomic_parquet(frame, self.out / RESULTS)
            for p in parts:
                p.unlink(missing_ok=True)
        return frame

    # -- reading --
    def frame(self, parts: list[Path] | None = None) -> pl.DataFrame:
        """Every recorded run, one row per run_id (the last finished)."""
        frames = []
        if (self.out / RESULTS).exists():
            frames.append(pl.read_parquet(self.out / RESULTS))
        for p in sorted(self.parts.glob("*.parquet")) if parts is None else parts:
            try:
                frames.append(pl.read_parquet(p))
            except Exception:  # noqa: BLE001 - a part file can only be whole (rename), but never let one stop a resume
                continue
        if not frames:
            return pl.DataFrame(schema=BASE_SCHEMA)
        frame = pl.concat(frames, how="diagonal_relaxed")
        return (frame.sort("finished_at", nulls_last=False)
                .unique("run_id", keep="last", maintain_order=True)
                .sort("finished_at"))

    def load(self) -> dict[str, dict[str, Any]]:
        """run_id -> row of every recorded run."""
        return {r["run_id"]: r for r in self.frame().iter_rows(named=True)}

    def curve(self, run_id: str) -> pl.DataFrame | None:
        path = self.curves / f"{run_id}.parquet"
        return pl.read_parquet(path) if path.exists() else None


def row_frame(row: dict[str, Any]) -> pl.DataFrame:
    """One row as a frame: the base columns typed by BASE_SCHEMA, metrics as Float64, swept keys as
    given (a table or list value as its JSON text)."""
    cols: dict[str, pl.Series] = {}
    for key, value in row.items():
        if key in BASE_SCHEMA:
            cols[key] = pl.Series(key, [value], dtype=BASE_SCHEMA[key])
        elif "." in key:  # a swept config key
            if isinstance(value, (dict, list)):
                value = json.dumps(value, sort_keys=True)
            cols[key] = pl.Series(key, [value], dtype=pl.String if value is None else None)
        else:
            cols[key] = pl.Series(key, [value], dtype=pl.Float64)
    return pl.DataFrame(list(cols.values()))


def _atomic_parquet(frame: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.write_parquet(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
