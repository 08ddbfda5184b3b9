"""A database that cannot serve, as an operator meets it: `momentum chat` or `momentum run`
(real processes) end within seconds, exit non-zero, and say in one line, naming
DATABASE_URL, what is wrong. No traceback, and no hang on a connection thread left running."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.momentum_process import momentum
from tests.read_only import ReadOnly

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes"),
]

# Configured, so that `run` gets as far as the database; nothing is ever sent to this port.
SLACK_ENV = {
    "SLACK_BOT_TOKEN": "xoxb-test-token",
    "SLACK_SIGNING_SECRET": "test-signing-secret",
    "SLACK_API_URL": "http://127.0.0.1:1/api/",
    "SLACK_PORT": "0",
}
UNREACHABLE_MONGODB = "mongodb://127.0.0.1:1"  # nothing listens on port 1

Setup = Callable[[Path, ReadOnly], str]  # (folder, read_only) -> DATABASE_URL


def not_a_database(folder: Path, read_only: ReadOnly) -> str:
    (folder / "momentum.db").write_text("notes from the kick-off meeting\n")
    return f"sqlite:///{folder / 'momentum.db'}"


def a_directory(folder: Path, read_only: ReadOnly) -> str:
    (folder / "momentum.db").mkdir()
    return f"sqlite:///{folder / 'momentum.db'}"


def a_read_only_directory(folder: Path, read_only: ReadOnly) -> str:
    (folder / "data").mkdir()
    read_only.protect(folder / "data")
    return f"sqlite:///{folder / 'data' / 'momentum.db'}"


def mongodb_unreachable(folder: Path, read_only: ReadOnly) -> str:
    return UNREACHABLE_MONGODB


def unknown_scheme(folder: Path, read_only: ReadOnly) -> str:
    return "postgres://localhost/momentum"


CASES: list[tuple[Setup, str]] = [
    (not_a_database, "is not an SQLite database"),
    (a_directory, "is a directory"),
    (a_read_only_directory, "cannot create"),
    (mongodb_unreachable, "cannot reach MongoDB within 1 s"),
    (unknown_scheme, "must start with sqlite:/// or mongodb://"),
]


@pytest.mark.parametrize("command", ["chat", "run"])
@pytest.mark.parametrize(("setup", "problem"), CASES, ids=[setup.__name__ for setup, _ in CASES])
async def test_a_database_that_cannot_serve_ends_the_start_in_one_clear_line(
    tmp_path: Path, read_only: ReadOnly, command: str, setup: Setup, problem: str
) -> None:
    env = {
        **SLACK_ENV,
        "DATABASE_URL": setup(tmp_path, read_only),
        "DATABASE_TIMEOUT_SECONDS": "1",
    }
    async with momentum(command, tmp_path, env) as process:
        code = await process.exited()
    assert code != 0, process.log
    assert "Traceback" not in process.log, process.log
    named = [line for line in process.lines if "DATABASE_URL" in line]
    assert len(named) == 1, process.log
    assert named[0].startswith("DATABASE_URL") and problem in named[0], process.log
