"""The operator CLI (`momentum admin ...`), `momentum scheduler`, and how `run` adds the
scheduler, through `bots.__main__.main` on a real SQLite file."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from bots.__main__ import NOTHING_CONFIGURED, clock, configured_services, main
from core.config import Settings
from core.models import Phase, Platform
from core.persona import Persona
from core.store import open_store
from scheduler.notify import Notifiers
from tests.fakes.notifier import RecordingNotifier
from tests.scheduler_world import ALICE, BOB, make_settings

PLATFORM_ENV = (
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
    "DISCORD_BOT_TOKEN",
    "ANTHROPIC_API_KEY",
)


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty SQLite database as DATABASE_URL, no platform configured, no .env read."""
    monkeypatch.chdir(tmp_path)
    for name in PLATFORM_ENV:
        monkeypatch.delenv(name, raising=False)
    url = f"sqlite:///{tmp_path / 'momentum.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    yield url


def seed(url: str) -> dict[str, str]:
    """Alice (Slack, Paris) and Bob (Discord); their user ids by name."""
    from core.coach import Coach

    async def go() -> dict[str, str]:
        store = await open_store(url)
        try:
            coach = Coach(store, None, Persona.load(), make_settings())
            await coach.set_timezone(ALICE, "Europe/Paris")
            return {"alice": (await coach.user(ALICE)).id, "bob": (await coach.user(BOB)).id}
        finally:
            await store.close()

    return asyncio.run(go())


def phase_of(url: str, user_id: str) -> Phase:
    async def go() -> Phase:
        store = await open_store(url)
        try:
            user = await store.get_user(user_id)
            assert user is not None
            return user.phase
        finally:
            await store.close()

    return asyncio.run(go())


def test_admin_users_lists_every_user(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    ids = seed(database)
    assert main(["admin", "users"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "platform", "external", "id", "phase", "timezone"]
    alice = next(line for line in lines if line.startswith(ids["alice"]))
    assert alice.split() == [ids["alice"], "slack", "U_ALICE", "goal_setting", "Europe/Paris"]
    bob = next(line for line in lines if line.startswith(ids["bob"]))
    assert bob.split() == [ids["bob"], "discord", "1001", "goal_setting", "-"]
    assert lines[-1] == "2 users"


def test_admin_users_on_an_empty_database(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["admin", "users"]) == 0
    assert capsys.readouterr().out.strip() == "No users yet."


def test_admin_phase_sets_the_phase_and_warns_what_track_would_ask(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = seed(database)
    assert main(["admin", "phase", "slack:U_ALICE", "tracking"]) == 0
    out = capsys.readouterr().out
    assert f"User {ids['alice']} (slack U_ALICE): goal_setting -> tracking" in out
    assert "warning: the user has no active goal" in out
    assert "warning: the user has no upcoming meeting" in out
    assert phase_of(database, ids["alice"]) is Phase.TRACKING

    assert main(["admin", "phase", ids["alice"], "goal_setting"]) == 0
    assert "tracking -> goal_setting" in capsys.readouterr().out
    assert phase_of(database, ids["alice"]) is Phase.GOAL_SETTING


@pytest.mark.parametrize(
    ("ref", "message"),
    [("nope", "No user 'nope'"), ("discord:U_ALICE", "No user 'discord:U_ALICE'")],
)
def test_admin_phase_with_an_unknown_user_fails_clearly(
    database: str, capsys: pytest.CaptureFixture[str], ref: str, message: str
) -> None:
    seed(database)
    assert main(["admin", "phase", ref, "tracking"]) == 1
    assert message in capsys.readouterr().err


def test_admin_phase_rejects_an_unknown_phase(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["admin", "phase", "abcd", "sleeping"])
    assert "invalid choice: 'sleeping'" in capsys.readouterr().err


def test_run_without_a_platform_still_says_nothing_is_configured(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert configured_services(Settings(_env_file=None)) == []  # type: ignore[call-arg]
    assert main(["run"]) == 1
    assert NOTHING_CONFIGURED in capsys.readouterr().err


async def test_momentum_scheduler_runs_alone_and_says_nobody_can_be_told(
    database: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    with caplog.at_level(logging.INFO):
        task = asyncio.create_task(clock(settings))
        for _ in range(200):
            if "scheduler started" in caplog.text:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert "no platform notifier available" in caplog.text
    assert "scheduler started: 0 window jobs" in caplog.text


def test_notifiers_come_from_the_adapters_factories(caplog: pytest.LogCaptureFixture) -> None:
    slack = RecordingNotifier()

    def broken(settings: Settings) -> RecordingNotifier:
        raise RuntimeError("bad token")

    notifiers = Notifiers.from_factories(
        make_settings(),
        {
            Platform.SLACK: lambda s: slack,
            Platform.DISCORD: broken,
            Platform.CONSOLE: lambda s: None,
        },
    )
    assert notifiers.get(Platform.SLACK) is slack
    assert list(notifiers) == [Platform.SLACK]
    assert "building the discord notifier failed" in caplog.text
    assert notifiers.describe() == (
        "notifying users on slack; no notifier for discord, console, web "
        "(users there get no window messages)"
    )


@pytest.mark.parametrize(("enabled", "expected"), [(True, ["scheduler"]), (False, [])])
def test_run_adds_the_scheduler_last_beside_a_platform(enabled: bool, expected: list[str]) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, discord_bot_token="token", scheduler_enabled=enabled
    )
    names = [name for name, _ in configured_services(settings)]
    assert names[0] == "discord"
    assert names[1:] == expected


def token_user(url: str, token: str) -> str | None:
    """The user id the token names now (None: unknown or revoked)."""
    from core.coach import Coach

    async def go() -> str | None:
        store = await open_store(url)
        try:
            return await Coach(store, None, Persona.load(), make_settings()).keys.user_id(token)
        finally:
            await store.close()

    return asyncio.run(go())


def test_admin_token_create_prints_the_token_last_and_revoke_ends_it(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = seed(database)
    assert main(["admin", "token", "create", "slack:U_ALICE"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    token = out[-1]
    assert token.startswith("mom_") and ids["alice"] in out[0]
    assert token_user(database, token) == ids["alice"]

    assert main(["admin", "token", "revoke", ids["alice"]]) == 0
    assert capsys.readouterr().out.strip() == f"Revoked 1 token of user {ids['alice']}."
    assert token_user(database, token) is None


def test_admin_token_for_a_new_web_user_creates_them(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["admin", "token", "create", "web:ada"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["admin", "users"]) == 0
    [ada] = [line for line in capsys.readouterr().out.splitlines() if " web " in line]
    assert ada.split()[1:3] == ["web", "ada"]
    assert token_user(database, token) == ada.split()[0]


def test_admin_token_for_nobody_says_how_to_name_a_user(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["admin", "token", "create", "slack:U_NOBODY"]) == 1
    assert "No user 'slack:U_NOBODY'" in capsys.readouterr().err
