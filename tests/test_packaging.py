"""Packaging as a user installing the wheel meets it: every module the code imports is a
declared dependency, and the installed `momentum` runs from any directory."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "bots", "scheduler")


def imported_top_levels() -> set[str]:
    names: set[str] = set()
    for package in PACKAGES:
        for source in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text(), str(source))):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - set(PACKAGES) - {"__future__"}


def canonical(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503): discord.py == Discord_Py."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {
        canonical(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0])
        for requirement in project["dependencies"]
    }


def test_every_imported_module_is_a_declared_dependency() -> None:
    owners = importlib.metadata.packages_distributions()  # import name -> distributions
    undeclared = {
        module: owners.get(module)
        for module in imported_top_levels()
        if not {canonical(d) for d in owners.get(module, [module])} & declared()
    }
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_the_wheel_installs_and_momentum_chat_runs_anywhere(tmp_path: Path) -> None:
    wheels, target, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(REPO)], check=True)
    [wheel] = wheels.glob("momentum-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("ANTHROPIC_", "SLACK_", "DISCORD_", "DATABASE_", "PERSONA_"))
    }  # fmt: skip
    done = subprocess.run(
        [str(target / "bin" / "momentum"), "chat"],
        cwd=elsewhere,
        env={**env, "PYTHONPATH": str(target), "XDG_STATE_HOME": str(tmp_path / "state")},
        input="/goal add Run 5k\n/goals\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "1. Run 5k" in done.stdout
    assert f"SQLite {elsewhere / 'momentum.db'}" in done.stderr
    assert (elsewhere / "momentum.db").exists()
    assert str(target) in subprocess.run(  # the wheel's code ran, not this checkout's
        [sys.executable, "-c", "import bots; print(bots.__file__)"],
        env={**env, "PYTHONPATH": str(target)}, cwd=elsewhere,
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
