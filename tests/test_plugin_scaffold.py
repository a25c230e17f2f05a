"""`stockbridge strategies new` writes a plugin that installs, shows up, and passes its own test.

The install goes into the running interpreter's environment (pip, no network: --no-deps and
--no-build-isolation use the setuptools the dev extra brings: a fresh venv's own is too old) and is
removed afterwards. The plugin's
name carries the process id so two test runs sharing an environment do not collide.
"""

import os
import subprocess
import sys
import tomllib

import pytest

from strategies import registry
from strategies.scaffold import ScaffoldError, new_plugin, plugin_names

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _pip(*args):
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture
def installed_plugin(tmp_path, run_cli):
    """Scaffold through the CLI, pip install -e, yield (name, root); always uninstall."""
    name = f"sc{os.getpid()}"
    root = tmp_path / "my-plugin"
    res = run_cli("strategies", "new", name, "--dir", root)  # --dir is the package directory itself
    assert res.returncode == 0, res.stderr
    dist, _ = plugin_names(name)
    assert res.stdout.splitlines()[:3] == [f"created {root}", "next:", f"  pip install -e {root}"]
    try:
        res = _pip("install", "--no-deps", "--no-build-isolation", "-q", "-e", str(root))
        assert res.returncode == 0, res.stdout + res.stderr
        yield name, root
    finally:
        _pip("uninstall", "-y", "-q", dist)


def test_plugin_package_layout_and_entry_point(tmp_path):
    root = new_plugin("layout_check", tmp_path / "pkg")
    dist, pkg = plugin_names("layout_check")
    assert root == tmp_path / "pkg"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        "README.md", "pyproject.toml", f"{pkg}/__init__.py", "tests/test_layout_check.py",
    ]
    meta = tomllib.loads((root / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "stockbridge-strategy-layout_check"
    assert meta["project"]["dependencies"] == ["stockbridge>=0.1.0"]
    assert meta["project"]["entry-points"][registry.GROUP] == {"layout_check": f"{pkg}:SPEC"}
    compile((root / pkg / "__init__.py").read_text(), "init", "exec")
    compile((root / "tests" / "test_layout_check.py").read_text(), "test", "exec")


def test_installed_plugin_is_listed_and_passes_its_own_test(installed_plugin, run_cli):
    name, root = installed_plugin
    dist, _ = plugin_names(name)
    listing = run_cli("strategies", "list")
    assert listing.returncode == 0, listing.stderr
    assert name in listing.stdout
    # the source: the distribution (whole, it is what pip knows) and its version, not built-in
    lines = listing.stdout.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(f"│ {name} "))
    assert f" {dist} " in lines[i] and "0.1.0" in lines[i] + lines[i + 1], lines[i:i + 2]
    for param in ("half_spread_bps", "std_mult", "skew_bps_per_token"):
        assert param in listing.stdout

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root)],
        capture_output=True, text=True, cwd=root, timeout=600, env=env,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "4 passed" in res.stdout


@pytest.mark.parametrize("bad", ["9lives", "my-strategy", "class", "naïve", ""])
def test_name_must_be_a_python_identifier(tmp_path, bad):
    with pytest.raises(ScaffoldError, match="must be an ASCII Python identifier"):
        new_plugin(bad, tmp_path / "pkg")
    assert not any(tmp_path.iterdir())


def test_refuses_a_builtin_name_and_an_existing_directory(tmp_path, run_cli):
    with pytest.raises(ScaffoldError, match="a strategy named 'glft' already exists \\(built-in\\)"):
        new_plugin("glft", tmp_path)
    root = new_plugin("twice", tmp_path / "twice")
    marker = root / "README.md"
    marker.write_text("mine")
    res = run_cli("strategies", "new", "twice", "--dir", root)
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: {root}: already exists and is not an empty directory; refusing to overwrite it"
    assert marker.read_text() == "mine"


def test_default_dir_is_the_distribution_name_in_the_current_directory(tmp_path, run_cli):
    res = run_cli("strategies", "new", "here", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "stockbridge-strategy-here" / "pyproject.toml").is_file()
    assert "  pip install -e stockbridge-strategy-here" in res.stdout.splitlines()


def test_an_empty_existing_directory_is_used(tmp_path):
    (tmp_path / "empty").mkdir()
    assert (new_plugin("into_empty", tmp_path / "empty") / "pyproject.toml").is_file()
