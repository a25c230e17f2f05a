import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# numba compiles on first call: a hypothesis deadline would fail whichever example happens to compile
settings.register_profile("stockbridge", deadline=None)
settings.load_profile("stockbridge")

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
