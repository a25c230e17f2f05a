import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# numba compiles on first call: a hypothesis deadline would fail whichever example happens to compile.
# Tests that set their own max_examples keep it; the others (the reference-matcher differential test)
# run the profile's count: ``ci`` by default, ``pytest --hypothesis-profile nightly`` for the long run, ``dev`` for a quick one.
settings.register_profile("ci", deadline=None, max_examples=2000)
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
