"""The console adapter and the CLI, as a new user meets them: real processes, piped stdin."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bots.console import Console
from core.store.sqlite import SQLiteStore
from tests.fakes.anthropic_api import FakeAnthropic, StreamError
from tests.support import coach_on

MOMENTUM = [sys.executable, "-m", "bots"]
CLEAN_ENV = {
    key: value
    for key, value in os.environ.items()
    if not key.startswith(("ANTHROPIC_", "SLACK_", "DISCORD_", "DATABASE_", "PERSONA_"))
}


async def momentum(
    *args: str, cwd: Path, stdin: str = "", env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *MOMENTUM,
        *args,
        cwd=cwd,
        env={
            **CLEAN_ENV,
            "PYTHONPATH": os.getcwd(),
            "XDG_STATE_HOME": str(cwd / "state"),
            **(env or {}),
        },
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


async def test_bare_machine_chat_creates_database_and_explains_missing_key(tmp_path: Path) -> None:
    code, out, err = await momentum(
        "chat", cwd=tmp_path, stdin="/goal add Run 5k\nhello coach\n/goals\n"
    )
    assert code == 0, err
    assert "Slack     off: set SLACK_BOT_TOKEN" in err
    assert "Discord   off: set DISCORD_BOT_TOKEN" in err
    assert (tmp_path / "momentum.db").exists()
    assert "Saved: Run 5k" in out
    assert out.count("ANTHROPIC_API_KEY") == 1  # one clear line for the chat message
    assert "1. Run 5k" in out.splitlines()[-1]


async def test_chat_streams_replies_from_the_model(tmp_path: Path, fake: FakeAnthropic) -> None:
    env = {"ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": fake.base_url}
    code, out, err = await momentum("chat", cwd=tmp_path, stdin="Hi there\n/history\n", env=env)
    assert code == 0, err
    assert "Rally" in out  # the welcome
    assert "coach> Coach: Hi there" in out
    assert "Coach: Coach: Hi there" in out  # in /history


async def test_default_command_without_platforms_is_the_console(tmp_path: Path) -> None:
    code, out, _ = await momentum(cwd=tmp_path, stdin="/access\n")
    assert code == 0 and "goal setting" in out


async def test_run_without_platforms_says_what_to_set(tmp_path: Path) -> None:
    code, _, err = await momentum("run", cwd=tmp_path)
    assert code == 1
    assert "SLACK_BOT_TOKEN" in err and "DISCORD_BOT_TOKEN" in err and "momentum chat" in err
    assert "coach     off: set ANTHROPIC_API_KEY" in err


async def test_bad_database_url_is_a_clear_startup_error(tmp_path: Path) -> None:
    code, _, err = await momentum("chat", cwd=tmp_path, env={"DATABASE_URL": "postgres://x"})
    assert code == 1 and "DATABASE_URL must start with sqlite:/// or mongodb://" in err
    assert "Traceback" not in err


async def test_missing_persona_file_is_a_clear_startup_error(tmp_path: Path) -> None:
    code, _, err = await momentum("chat", cwd=tmp_path, env={"PERSONA_PATH": "nope.md"})
    assert code == 1 and "PERSONA_PATH" in err and "Traceback" not in err


async def test_console_marks_a_reply_cut_short(tmp_path: Path, fake: FakeAnthropic) -> None:
    fake.reply = "Let us plan your week in three small steps"
    fake.enqueue(StreamError(after=3))
    store = await SQLiteStore.open(str(tmp_path / "c.db"))
    out = io.StringIO()
    async with coach_on(store, fake.base_url) as coach:
        console = Console(coach, stdin=io.StringIO("plan my week\n"), stdout=out)
        await console.run()
    await store.close()
    lines = out.getvalue().splitlines()
    assert lines[-2] == "coach> Let us plan"
    assert lines[-1].startswith("⚠ The coach's AI service stopped in the middle")


async def test_run_with_a_half_configured_platform_says_what_is_missing(tmp_path: Path) -> None:
    code, _, err = await momentum("run", cwd=tmp_path, env={"SLACK_BOT_TOKEN": "xoxb-test"})
    assert code == 1 and "Traceback" not in err
    assert "SLACK_APP_TOKEN" in err and "SLACK_SIGNING_SECRET" in err


async def test_export_writes_a_file_and_says_where(tmp_path: Path) -> None:
    store = await SQLiteStore.open(str(tmp_path / "c.db"))
    out = io.StringIO()
    async with coach_on(store, None) as coach:
        script = io.StringIO("/goal add Run 5k\n/export\n")
        console = Console(coach, stdin=script, stdout=out, exports=tmp_path)
        await console.run()
    await store.close()
    said = out.getvalue().splitlines()[-1]
    assert said.startswith(f"Your data is in {tmp_path}/momentum-export-") and said.endswith(".")
    assert "Run 5k" in _contents(said.removeprefix("Your data is in ").removesuffix("."))


def _contents(path: str) -> str:
    return Path(path).read_text()


async def test_output_closed_early_ends_quietly(tmp_path: Path) -> None:
    """`momentum chat < script | head -1`: the reader leaves; no traceback, exit 0."""
    (tmp_path / "script").write_text("/help\n" * 2000)  # far more than a pipe holds
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        f'"{sys.executable}" -m bots chat < script | head -1; echo "exit ${{PIPESTATUS[0]}}" >&2',
        cwd=tmp_path,
        env={**CLEAN_ENV, "PYTHONPATH": os.getcwd(), "XDG_STATE_HOME": str(tmp_path)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert out.decode().startswith("Commands:")
    assert "Traceback" not in err.decode() and "BrokenPipe" not in err.decode()
    assert err.decode().splitlines()[-1] == "exit 0"


async def test_a_proposal_is_asked_after_the_reply_y_confirms_and_n_declines(
    tmp_path: Path, fake: FakeAnthropic
) -> None:
    from tests.fakes.anthropic_api import Reply, ToolUse

    for goal in ("Run a 5k", "Swim a mile"):
        fake.enqueue(ToolUse((("propose_goal", {"text": goal}),), text="Great."), Reply("Okay?"))
    store = await SQLiteStore.open(str(tmp_path / "c.db"))
    out = io.StringIO()
    async with coach_on(store, fake.base_url) as coach:
        script = io.StringIO("I want to run\ny\nI want to swim\nn\n/goals\n")
        await Console(coach, stdin=script, stdout=out).run()
    await store.close()
    said = out.getvalue()
    assert "Shall I? Add the goal “Run a 5k”. Nothing changes unless you confirm." in said
    assert "Goal added: Run a 5k." in said
    assert "Okay, left as it is: Add the goal “Swim a mile”" in said
    goals = said.split("Okay, left as it is")[1]
    assert "Run a 5k" in goals and "Swim a mile" not in goals.split("\n", 1)[1]
