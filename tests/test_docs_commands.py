"""Issue 8 item 11: every `stockbridge ...` command line in README.md and docs/*.md works.

- Command lines in fenced ``bash`` blocks are run verbatim, in document order, in a scratch
  directory whose ``configs/demo.toml`` is the demo cut to one fast synthetic day (the one mapping;
  the full demo is what the install tests and CI run), and where a ``stockbridge live`` run lasts
  ``--duration 2m`` it lasts 10 s here (the second mapping; tests/live runs the live bot at length).
  ``pip install`` of the project itself and the
  project's own ``pytest`` are what tests/test_install.py and ``.ci/run`` exercise; here they are the
  only lines not run. A plugin's ``pip install -e`` is run (offline: no build isolation, no
  dependency resolution, through pip's environment variables so the text stays verbatim) and
  uninstalled afterwards.
- Command templates in inline code (the CLI tour's ``FILE``, ``CONFIG``, ``[--days N]``) cannot
  run as written: their command path must exist and every ``--option`` they name must be in that
  command's ``--help``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FAST_DEMO = (ROOT / "configs" / "demo.toml").read_text().replace("days = 5", "days = 1").replace(
    "quote_interval_ms = 1000", "quote_interval_ms = 4000")
NOT_RUN_HERE = {'pip install .', 'pip install -e ".[dev]"', "pytest"}  # the install tests and CI run these


def fenced_commands() -> list[tuple[str, str]]:
    """(document, command) for every line of every fenced bash block, ``&&`` chains split, comments dropped."""
    out = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), re.S):
            for line in block.splitlines():
                line = line.split("  #")[0].strip()
                for part in filter(None, (p.strip() for p in line.split("&&"))):
                    out.append((doc.name, part))
    return out


def inline_commands() -> list[tuple[str, str]]:
    out = []
    for doc in DOCS:
        text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
        out += [(doc.name, m.replace("\\|", "|")) for m in re.findall(r"`(stockbridge(?: [^`]+)?)`", text)]
    return out


def test_the_docs_hold_the_commands_we_expect():
    fenced = [c for _, c in fenced_commands()]
    assert "stockbridge backtest configs/demo.toml --out demo-out" in fenced
    assert "stockbridge strategies new my_maker --dir ./my-maker" in fenced and "pip install -e ./my-maker" in fenced
    assert "stockbridge data inspect demo-out/data --config configs/demo.toml" in fenced
    assert any(c.startswith("stockbridge data validate") for _, c in inline_commands())


def _command_tree():
    import typer.main

    from stockbridge.cli import app

    return typer.main.get_command(app)


def _help_of(words: list[str], run_cli) -> str:
    res = run_cli(*words, "--help")
    assert res.returncode == 0, (words, res.stderr)
    return res.stdout


@pytest.mark.parametrize("doc,command", inline_commands(), ids=[f"{d}:{c}" for d, c in inline_commands()])
def test_inline_command_templates_name_real_commands_and_options(doc, command, run_cli):
    group, words = _command_tree(), []
    for token in shlex.split(command)[1:]:
        sub = getattr(group, "commands", {}).get(token)
        if sub is None:
            break
        group, words = sub, words + [token]
    help_text = _help_of(words, run_cli) + (_help_of([], run_cli) if words else "")  # --debug is global
    for option in re.findall(r"(?<![\w-])--[a-z][a-z-]*", command):
        assert option in help_text, f"{doc}: `{command}`: {option} is not an option of `stockbridge {' '.join(words)}`"


def test_fenced_command_lines_run_verbatim(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "demo.toml").write_text(FAST_DEMO)
    shutil.copy(ROOT / "configs" / "sweep_demo.toml", tmp_path / "configs")  # the README's sweep
    bindir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(PATH=f"{bindir}{os.pathsep}{env['PATH']}", COLUMNS="100",
               PIP_NO_BUILD_ISOLATION="0", PIP_NO_DEPS="1", PIP_NO_INDEX="1")  # offline plugin installs
    commands = [(doc, c) for doc, c in fenced_commands() if c not in NOT_RUN_HERE]
    assert commands
    installed = []
    try:
        for doc, command in commands:
            if command.startswith("pip install -e "):
                installed.append(command.split()[-1])
            run = command.replace("--duration 2m", "--duration 10s") if command.startswith("stockbridge live ") else command
            res = subprocess.run(run, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
            assert res.returncode == 0, f"{doc}: `{command}` exited {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
            if command.startswith("stockbridge strategies list"):
                assert all(re.search(r"\bmy_\w+", res.stdout) for _ in installed)
    finally:
        for path in installed:
            dist = f"stockbridge-strategy-{'my_maker' if 'my-maker' in path else path.rsplit('stockbridge-strategy-', 1)[-1]}"
            subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", dist], capture_output=True, timeout=300)
    assert (tmp_path / "demo-out" / "report.html").exists()
