"""The Makefile as a newcomer meets it: the Python it builds .venv with (tools/pick-python.sh,
run against stand-in interpreters: the real one reporting another version), and every
`make X` the docs and the code tell people to run."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PICKER = REPO / "tools" / "pick-python.sh"
SHELL_TOOLS = ("sh", "ls", "awk", "sort", "head")  # what the picker runs besides Pythons


class Machine:
    """A machine with only the Pythons a test installs: on PATH, in pyenv, in the usual places."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path_dir, self.places, self.tools = root / "bin", root / "places", root / "tools"
        for folder in (self.path_dir, self.places, self.tools):
            folder.mkdir()
        for tool in SHELL_TOOLS:
            found = shutil.which(tool)
            assert found is not None, tool
            (self.tools / tool).symlink_to(found)

    def python(self, where: Path, name: str, version: tuple[int, int, int]) -> Path:
        """An interpreter answering as `version` (the picker reads sys.version_info)."""
        where.mkdir(parents=True, exist_ok=True)
        stand_in = where / name
        stand_in.write_text(
            f"#!/bin/sh\nexec {sys.executable} -c "
            f'"import sys; sys.version_info = {version}; exec(sys.argv[1])" "$2"\n'
        )
        stand_in.chmod(0o755)
        return stand_in

    def pyenv(self, version: str) -> Path:
        major, minor, patch = (int(part) for part in version.split("."))
        where = self.root / "pyenv" / "versions" / version / "bin"
        return self.python(where, "python3", (major, minor, patch))

    def pick(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.tools / "sh"), str(PICKER)],
            env={
                "PATH": f"{self.path_dir}:{self.tools}",
                "HOME": str(self.root),
                "PYENV_ROOT": str(self.root / "pyenv"),
                "PYTHON_PLACES": str(self.places),
            },
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path)


def test_python_3_13_is_picked_over_a_newer_one_and_the_reason_shown(machine: Machine) -> None:
    machine.python(machine.path_dir, "python3.14", (3, 14, 1))
    chosen = machine.python(machine.path_dir, "python3.13", (3, 13, 2))
    machine.python(machine.places, "python3.12", (3, 12, 8))
    picked = machine.pick()
    assert picked.returncode == 0, picked.stderr
    assert picked.stdout == f"{chosen}\n"
    assert picked.stderr.startswith(f"Using Python 3.13.2, {chosen}: 3.13 is preferred")
    assert "PYTHON=" in picked.stderr  # how to pick another


def test_any_3_13_that_pyenv_has_is_found_without_pyenv_on_path(machine: Machine) -> None:
    machine.python(machine.path_dir, "python3", (3, 11, 4))
    machine.pyenv("3.12.1")
    machine.pyenv("3.13.0")
    newest_313 = machine.pyenv("3.13.5")
    assert machine.pick().stdout == f"{newest_313}\n"


def test_a_pyenv_shim_whose_version_is_not_selected_is_passed_over(machine: Machine) -> None:
    shim = machine.path_dir / "python3.13"
    shim.write_text("#!/bin/sh\necho 'pyenv: python3.13: command not found' >&2\nexit 127\n")
    shim.chmod(0o755)
    real = machine.pyenv("3.13.0")
    assert machine.pick().stdout == f"{real}\n"


def test_without_3_13_the_newest_from_3_11_up_is_picked_and_the_cost_named(
    machine: Machine,
) -> None:
    machine.python(machine.path_dir, "python3", (3, 11, 9))
    machine.python(machine.path_dir, "python3.10", (3, 10, 14))
    newest = machine.python(machine.places, "python3.12", (3, 12, 3))
    machine.pyenv("3.12.1")
    picked = machine.pick()
    assert picked.stdout == f"{newest}\n"
    assert "no Python 3.13 found, so the newest >= 3.11" in picked.stderr
    assert "MongoDB tests will be skipped" in picked.stderr


def test_no_python_from_3_11_up_is_one_line_saying_what_to_do(machine: Machine) -> None:
    machine.python(machine.path_dir, "python3", (3, 10, 14))
    machine.pyenv("3.9.18")
    picked = machine.pick()
    assert picked.returncode == 1 and picked.stdout == ""
    assert picked.stderr.startswith("No Python >= 3.11 found on PATH, in pyenv or in")
    assert "name it with PYTHON=/path/to/python3" in picked.stderr


def mentioned_targets() -> set[str]:
    """Every `make X` that the README, the other docs and the code tell someone to run."""
    sources = [*REPO.glob("*.md"), REPO / ".env.example"]
    for package in ("core", "bots", "scheduler", "bench", "tests"):
        sources += (REPO / package).rglob("*.py")
    found: set[str] = set()
    for source in sources:
        found |= set(re.findall(r"`make ([a-z][\w-]*)", source.read_text()))
    return found


def test_every_make_target_the_docs_and_code_mention_exists() -> None:
    targets = mentioned_targets()
    assert {"run", "test", "dev"} <= targets  # the README's and the tests' own hints
    for target in sorted(targets):
        dry = subprocess.run(
            ["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert dry.returncode == 0, f"make {target}: {dry.stderr}"
        assert "Nothing to be done" not in dry.stdout, f"make {target} has no rule"  # a bare .PHONY


def test_make_test_runs_the_linters_first() -> None:
    dry = subprocess.run(["make", "-n", "test"], cwd=REPO, capture_output=True, text=True)
    commands = dry.stdout.splitlines()
    ruff, mypy, pytest_run = (
        next(i for i, line in enumerate(commands) if marker in line)
        for marker in ("ruff check", "mypy core", "-m pytest")
    )
    assert ruff < pytest_run and mypy < pytest_run
