"""Installation as a newcomer does it: a fresh clone, a fresh venv, the README's two commands.

The two tests that build venvs are slow (a few minutes: installing the dependencies, compiling the
numba kernels cold) and are marked ``install``: ``pytest`` leaves them out, ``pytest -m install``
runs them. CI runs the same sequence for real: ``.ci/run`` is exactly the README's commands in a
fresh venv (checked by the fast test below).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def quick_start_commands() -> list[str]:
    """The bash code blocks of the README's Quick start section, one command line each."""
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S) for line in block.splitlines() if line.strip()]


def test_ci_runs_exactly_the_readme_commands_in_a_fresh_venv():
    lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines[:3] == ["set -euo pipefail", 'cd "$(dirname "$0")/.."', "python3 -m venv .venv"]
    assert lines[3] == ". .venv/bin/activate"
    assert lines[4:] == quick_start_commands() == [
        "pip install . && stockbridge backtest configs/demo.toml --out demo-out",
        'pip install -e ".[dev]" && pytest',
    ]


def test_license_is_an_spdx_string_with_a_setuptools_that_reads_it():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in meta["build-system"]["requires"]  # the first setuptools to read SPDX strings


# -- the slow part: real venvs -------------------------------------------------------------------


def _fresh_clone(dest: Path) -> Path:
    """The working tree's tracked and new (not ignored) files, as a clone would have them."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _pip_cache() -> str:
    res = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True)
    return res.stdout.strip() if res.returncode == 0 else ""


class Venv:
    def __init__(self, tmp: Path):
        self.home = tmp / "home-cache"  # XDG_CACHE_HOME: where platformdirs puts numba's cache
        self.dir = tmp / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(self.dir)], check=True, timeout=120)
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("NUMBA_CACHE_DIR", "VIRTUAL_ENV", "PYTHONPATH") and not k.startswith("PYTEST_")}
        self.env.update(PATH=f"{self.dir / 'bin'}{os.pathsep}{os.environ['PATH']}", VIRTUAL_ENV=str(self.dir),
                        XDG_CACHE_HOME=str(self.home), COLUMNS="120")
        if cache := _pip_cache():
            self.env["PIP_CACHE_DIR"] = cache  # the local pip cache, not the test's empty XDG cache

    def sh(self, command: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
        res = subprocess.run(["bash", "-c", command], cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout)
        assert res.returncode == 0, f"$ {command}\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
        return res

    def site_packages(self) -> Path:
        return next(self.dir.glob("lib/python*/site-packages"))


@pytest.mark.install
def test_readme_commands_one_after_the_other_in_one_fresh_venv(tmp_path):
    """Item 1: after `pip install .` and the demo, `pip install -e ".[dev]"` works and imports the checkout."""
    src = _fresh_clone(tmp_path / "clone")
    venv = Venv(tmp_path)
    first, second = quick_start_commands()
    venv.sh(first, src, timeout=1200)
    assert (src / "demo-out" / "report.html").stat().st_size > 0
    site = venv.site_packages()
    compiled_in_site = [str(p) for p in site.rglob("*") if p.suffix in (".nbi", ".nbc")]
    assert compiled_in_site == [], compiled_in_site[:5]
    assert any(venv.home.glob("stockbridge/numba-*/**/*.nbi")), "numba's cache is not in the per-user cache dir"

    # the second command, on a quick subset of the suite (the whole suite is what CI runs)
    install, _ = second.split(" && ")
    venv.sh(install, src, timeout=900)
    for pkg in ("stockbridge", "strategies", "backtest", "data", "execution"):
        assert not (site / pkg).exists(), f"{site / pkg} left behind: it would shadow the editable install"
    venv.sh("stockbridge --help", src, timeout=120)
    where = venv.sh("cd / && python -c 'import stockbridge.core.session_clock as m, stockbridge.core.decide; print(m.__file__)'",
                    src, timeout=300)
    assert where.stdout.strip() == str(src / "stockbridge" / "core" / "session_clock.py")
    venv.sh("pytest -q -p no:cacheprovider tests/test_cli_help.py tests/test_config.py", src, timeout=900)


@pytest.mark.install
def test_dev_install_alone_in_a_fresh_venv_passes_the_plugin_test_without_license_warnings(tmp_path):
    """Items 2 and 3: the scaffold test's pip install works with a fresh venv's pip; no license deprecation."""
    src = _fresh_clone(tmp_path / "clone")
    venv = Venv(tmp_path)
    res = venv.sh('pip install -v -e ".[dev]"', src, timeout=900)
    assert "project.license" not in res.stdout + res.stderr
    venv.sh("pytest -q -p no:cacheprovider tests/test_plugin_scaffold.py", src, timeout=900)
