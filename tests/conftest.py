import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# numba compiles on first call: a hypothesis deadline would fail whichever example happens to compile.
# Tests that set their own max_examples keep it; the others (the reference-matcher differential test)
# run the profile's count: ``ci`` by default, ``pytest --hypothesis-profile nightly`` for the long run, ``dev`` for a quick one.
# ``ci`` is derandomized: the same examples every run, so a CI result is reproducible and a rare
# counterexample cannot fail one run and pass the next; ``nightly`` explores at random.
settings.register_profile("ci", deadline=None, max_examples=2000, derandomize=True)
settings.register_profile("nightly", deadline=None, max_examples=50000)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile("ci")

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo.toml"


@pytest.fixture
def demo_config_path() -> Path:
    return DEMO


@pytest.fixture
def run_cli():
    """Run the installed console script as a user would; returns CompletedProcess."""
    import subprocess

    def run(*args, cwd=None, timeout=600):
        exe = Path(sys.executable).with_name("stockbridge")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "stockbridge.cli"]
        env = dict(os.environ, COLUMNS="160")
        return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)

    return run


@pytest.fixture(autouse=True)
def _every_fill_log_is_possible(monkeypatch):
    """Every backtest a test runs in-process has its fill and order logs checked against the raw rows
    of its store by tests/fill_invariants.py (an independent model of what could have filled)."""
    import backtest.runner as runner

    real = runner.run_backtest

    def checked(cfg, config_path, data_dir, out_dir, **kw):
        summary, replay = real(cfg, config_path, data_dir, out_dir, **kw)
        _assert_possible(cfg, data_dir, replay)
        return summary, replay

    monkeypatch.setattr(runner, "run_backtest", checked)


def _assert_possible(cfg, data_dir, replay) -> None:
    import numpy as np
    from fill_invariants import check_fills

    from backtest.runner import _apply_depegs
    from data.reader import clock_offsets, read_merged
    from stockbridge.instruments import to_ns

    fills = replay.fills_frame()
    if fills.height == 0:
        return
    chunks = list(read_merged(data_dir, cfg.venue_ids(), cfg.instrument_ids(), clock_offset_ms=clock_offsets(cfg)))
    events = np.concatenate(chunks)
    _apply_depegs(events, cfg)
    never = np.iinfo(np.int64).max
    halts = [(s.venue, to_ns(s.at), to_ns(s.until) if s.until else never) for s in cfg.backtest.scenarios if s.kind == "halt"]
    defaults = [(s.venue, to_ns(s.at)) for s in cfg.backtest.scenarios if s.kind == "default"]
    problems = check_fills(events, fills, replay.orders_frame(), venues=list(cfg.venues), instruments=list(cfg.instruments),
                           halts=halts, defaults=defaults)
    assert problems == [], "impossible fills:\n" + "\n".join(problems[:20])
