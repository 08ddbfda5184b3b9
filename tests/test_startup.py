"""What an operator sees when `momentum run`, `momentum scheduler` or `momentum discord-sync`
start with a rejected token, no network or a bad setting: real processes (`python -m bots`)
against the loopback fakes. Each failed start ends within seconds, with exit code 1 (2 for a
setting that does not parse) and one last line naming the setting to fix, never a traceback;
a network error is tried again a bounded number of times, with a log line each.

The in-process tests below them check the same start-up code where a process cannot show
it: that Slack requests never wait on auth.test once the bot has started.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bots.__main__ import StartupError, open_coach, setup_failure
from bots.discord.connect import DiscordSetupError
from bots.slack.app import SlackBot
from bots.slack.notify import SlackSetupError
from bots.slack.serve import SlackServer
from bots.startup import MAX_RETRY_SECONDS, Retries, SetupError, reach
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.slack_api import USER_ID, FakeSlack, dm_channel_id, message_event
from tests.momentum_process import Momentum, momentum
from tests.slack_harness import SECRET, deployment, settings_for

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# Small, so a test waits tenths of a second between tries, never the production seconds.
FAST_RETRIES = {"STARTUP_RETRIES": "2", "STARTUP_RETRY_SECONDS": "0.05"}
TRIES = 3  # the first try and STARTUP_RETRIES more
FAILS_WITHIN = 15.0  # seconds: a cold interpreter, three tries, and slack_sdk's own retries
SLACK_BOT_REJECTED = (
    "Slack rejected SLACK_BOT_TOKEN (invalid_auth): copy the Bot User OAuth Token (xoxb-…) "
    "from the app's Install App page."
)
DISCORD_REJECTED = (
    "Discord rejected DISCORD_BOT_TOKEN (401 Unauthorized): copy the token from the Developer "
    "Portal (your application → Bot → Reset Token)."
)


def closed_url(path: str) -> str:
    """A loopback URL where nothing listens: connecting is refused, as with no network."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def slack_http(fake: FakeSlack | None = None) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_PORT": "0",
        "SLACK_API_URL": fake.base_url if fake else closed_url("/api/"),
        **FAST_RETRIES,
    }


def slack_socket(fake: FakeSlack) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_APP_TOKEN": "xapp-1-test",
        "SLACK_API_URL": fake.base_url,
        **FAST_RETRIES,
    }


def discord(fake: FakeDiscord | None = None, token: str | None = None) -> dict[str, str]:
    return {
        "DISCORD_BOT_TOKEN": token or (fake.token if fake else "any-token"),
        "DISCORD_API_URL": fake.api_url if fake else closed_url("/api/v10"),
        **FAST_RETRIES,
    }


async def failed_start(command: str, tmp_path: Path, env: dict[str, str]) -> Momentum:
    """Run `momentum <command>` until it gives up by itself; check the way it gives up."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'momentum.db'}", **env}
    async with momentum(command, tmp_path, env) as process:
        code = await process.exited(within=FAILS_WITHIN)
    assert code == 1, process.log
    assert "Traceback" not in process.log, process.log
    return process


def last_line(process: Momentum) -> str:
    return process.lines[-1].rstrip("\n")


def tries_logged(process: Momentum, what: str) -> list[str]:
    return [line for line in process.lines if f"{what} unreachable (try " in line]


def assert_tried_then_gave_up(process: Momentum, what: str, setting: str) -> None:
    """A warning for each try but the last, then one line naming the setting to check."""
    logged = tries_logged(process, what)
    assert [f"(try {n} of {TRIES})" in line for n, line in enumerate(logged, 1)] == [True] * (
        TRIES - 1
    ), process.log
    assert all(" WARNING " in line for line in logged), process.log
    assert last_line(process).startswith(f"{what} is unreachable ("), process.log
    assert last_line(process).endswith(f"after {TRIES} tries: check {setting} (now "
                                       f"{setting_value(process, setting)}) and the network.")


def setting_value(process: Momentum, setting: str) -> str:
    """The URL the failed start reported for `setting` (the closed port of this test)."""
    line = last_line(process)
    return line.split(f"check {setting} (now ", 1)[1].split(")", 1)[0]


# --- Slack -------------------------------------------------------------------------------------


@pytest.mark.faults
@pytest.mark.parametrize("mode", ["http", "socket"])
async def test_a_rejected_slack_bot_token_stops_the_start(tmp_path: Path, mode: str) -> None:
    """HTTP mode used to start and serve with any token: the first user was the one to find out."""
    async with FakeSlack() as fake:
        fake.fail_next("auth.test", "invalid_auth")
        env = slack_http(fake) if mode == "http" else slack_socket(fake)
        process = await failed_start("run", tmp_path, env)
    assert last_line(process) == SLACK_BOT_REJECTED
    assert "Slack HTTP mode on" not in process.log and not fake.calls_to("apps.connections.open")
    assert [c.method for c in fake.calls] == ["auth.test"]  # refused once, not tried again


@pytest.mark.faults
async def test_a_rejected_slack_app_token_stops_the_start(tmp_path: Path) -> None:
    """Socket Mode used to retry apps.connections.open forever, a traceback every 10 s."""
    async with FakeSlack() as fake:
        fake.fail_next("apps.connections.open", "invalid_auth")
        process = await failed_start("run", tmp_path, slack_socket(fake))
    assert last_line(process) == (
        "Slack rejected SLACK_APP_TOKEN (invalid_auth): generate an app-level token with the "
        "connections:write scope under Basic Information → App-Level Tokens."
    )
    assert len(fake.calls_to("apps.connections.open")) == 1 and fake.sockets_opened == 0


@pytest.mark.faults
async def test_slack_unreachable_is_tried_a_few_times_then_named(tmp_path: Path) -> None:
    process = await failed_start("run", tmp_path, slack_http())
    assert_tried_then_gave_up(process, "Slack", "SLACK_API_URL")
    assert setting_value(process, "SLACK_API_URL").startswith("http://127.0.0.1:")


@pytest.mark.faults
async def test_a_slack_outage_at_start_is_ridden_out(tmp_path: Path) -> None:
    """A 503 from auth.test is Slack failing, not the token: the next try serves."""
    async with FakeSlack() as fake:
        fake.fail_next("auth.test", "service_unavailable", status=503)
        env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'momentum.db'}", **slack_http(fake)}
        async with momentum("run", tmp_path, env) as process:
            await process.wait_for_log(r"Slack HTTP mode on")
            assert len(tries_logged(process, "Slack")) == 1
            assert await process.terminate() == 0, process.log
    assert [c.status for c in fake.calls_to("auth.test")] == [503, 200]


# --- Discord -----------------------------------------------------------------------------------


@pytest.mark.faults
@pytest.mark.parametrize("command", ["run", "discord-sync"])
async def test_a_rejected_discord_token_stops_the_start(tmp_path: Path, command: str) -> None:
    async with FakeDiscord() as fake:
        process = await failed_start(command, tmp_path, discord(fake, token="not-the-token"))
        assert fake.identifies == 0
    assert last_line(process) == DISCORD_REJECTED


@pytest.mark.faults
@pytest.mark.parametrize("command", ["run", "discord-sync"])
async def test_discord_unreachable_is_tried_a_few_times_then_named(
    tmp_path: Path, command: str
) -> None:
    """It used to end in a 90-line traceback at the first refused connection."""
    process = await failed_start(command, tmp_path, discord())
    assert_tried_then_gave_up(process, "Discord", "DISCORD_API_URL")
    assert "Unclosed" not in process.log  # each try's HTTP session closed, not leaked


# --- The scheduler alone -----------------------------------------------------------------------


@pytest.mark.faults
async def test_the_scheduler_checks_the_tokens_it_notifies_with(tmp_path: Path) -> None:
    """`momentum scheduler` used to run on with a bad token and fail every notification."""
    async with FakeSlack() as fake:
        fake.fail_next("auth.test", "invalid_auth")
        env = {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_API_URL": fake.base_url}
        process = await failed_start("scheduler", tmp_path, {**env, **FAST_RETRIES})
    assert last_line(process) == SLACK_BOT_REJECTED
    assert "scheduler started" not in process.log

    async with FakeDiscord() as fake_discord:
        process = await failed_start("scheduler", tmp_path, discord(fake_discord, token="wrong"))
    assert last_line(process) == DISCORD_REJECTED


@pytest.mark.faults
async def test_the_scheduler_gives_up_on_an_unreachable_platform(tmp_path: Path) -> None:
    env = {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_API_URL": closed_url("/api/")}
    process = await failed_start("scheduler", tmp_path, {**env, **FAST_RETRIES})
    assert_tried_then_gave_up(process, "Slack", "SLACK_API_URL")


async def test_the_scheduler_starts_with_good_tokens(tmp_path: Path) -> None:
    async with FakeSlack() as slack, FakeDiscord() as fake_discord:
        env = {
            "SLACK_BOT_TOKEN": "xoxb-test-token",
            "SLACK_API_URL": slack.base_url,
            **discord(fake_discord),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'momentum.db'}",
        }
        async with momentum("scheduler", tmp_path, env) as process:
            await process.wait_for_log(r"scheduler started")
            assert "Slack notifier: signed in as momentum in Fake Team" in process.log
            assert "Discord notifier: logged in as" in process.log
            assert await process.terminate() == 0, process.log
        assert fake_discord.identifies == 0  # REST only: no gateway session


# --- Settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "env", "line"),
    [
        (
            "run",
            {"LOG_LEVEL": "loud"},
            "LOG_LEVEL=loud: not a log level: use one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        ),
        (
            "scheduler",
            {"DEFAULT_TIMEZONE": "Mars/Base"},
            "DEFAULT_TIMEZONE=Mars/Base: I don't know the timezone 'Mars/Base'. Use a name like "
            "'Europe/Paris' or 'America/New_York' (or 'UTC').",
        ),
        (
            "chat",
            {"MEETING_MIN_MINUTES": "60", "MEETING_MAX_MINUTES": "30"},
            "MEETING_MIN_MINUTES (60) is above MEETING_MAX_MINUTES (30): "
            "no meeting could be booked",
        ),
    ],
)
async def test_a_bad_setting_is_one_line_naming_it(
    tmp_path: Path, command: str, env: dict[str, str], line: str
) -> None:
    """Checked before anything starts: a log level in lower case used to be a traceback, an
    unknown zone broke the first /schedule, and min above max refused every booking."""
    async with momentum(command, tmp_path, {**env, "DISCORD_BOT_TOKEN": "t"}) as process:
        assert await process.exited() == 2, process.log
    assert process.lines == [f"Configuration error: {line}\n"]


async def test_any_case_log_level_and_an_old_temperature_still_start(tmp_path: Path) -> None:
    env = {
        "LOG_LEVEL": "debug",
        "ANTHROPIC_TEMPERATURE": "hot",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'momentum.db'}",
    }
    async with momentum("scheduler", tmp_path, env) as process:
        await process.wait_for_log(r"scheduler started")
        assert " DEBUG " in process.log
        ignored = [line for line in process.lines if "ANTHROPIC_TEMPERATURE" in line]
        assert len(ignored) == 1 and "WARNING" in ignored[0], process.log
        assert "ANTHROPIC_TEMPERATURE=hot is ignored" in ignored[0]
        assert await process.terminate() == 0, process.log


# --- Slack requests never wait on auth.test ------------------------------------------------------


async def test_no_slack_request_waits_on_auth_test(tmp_path: Path) -> None:
    """auth.test runs once, before the server listens, and Bolt takes its answer from there.
    Before, Bolt called it lazily: a burst of first requests each awaited it (one call per
    request) before reaching the listener, and their order was scrambled."""
    async with deployment(tmp_path) as d:
        [signed_in] = d.fake.calls_to("auth.test")
        responses = await asyncio.gather(
            *(d.send(message_event(f"message {n}", user=f"U{n}")) for n in range(5))
        )
        assert [r.status for r in responses] == [200] * 5
        await d.bot.wait_idle()
        assert d.fake.calls_to("auth.test") == [signed_in]
        assert signed_in.time < min(c.time for c in d.fake.calls if c.method != "auth.test")


async def test_bolt_learns_who_the_bot_is_from_the_one_sign_in(tmp_path: Path) -> None:
    """The sign-in gives Bolt the bot's user id (which drops the bot's own events and strips
    its @-mention), and a second sign-in asks Slack nothing."""
    async with FakeSlack() as fake, FakeAnthropic() as llm:
        config = settings_for(fake, llm, tmp_path / "m.db")
        async with open_coach(config) as coach:
            bot = SlackBot(coach, config)
            signed_in = await bot.sign_in()
            assert await bot.sign_in() is signed_in
        assert (signed_in.bot_user_id, signed_in.team_id) == (fake.bot_user_id, fake.team_id)
        assert signed_in.bot_token == config.slack_bot_token.get_secret_value()  # type: ignore[union-attr]
        assert len(fake.calls_to("auth.test")) == 1


# --- The retry rule and the task group's errors, in process ------------------------------------


@given(st.integers(0, 20), st.floats(0.01, 60))
def test_waits_double_up_to_a_cap_and_are_bounded(retries: int, first: float) -> None:
    delays = list(Retries(retries, first).delays())
    assert len(delays) == retries
    assert delays == sorted(delays) and all(0 < d <= MAX_RETRY_SECONDS for d in delays)


async def test_reach_tries_a_bounded_number_of_times_then_names_what_to_check(
    caplog: pytest.LogCaptureFixture,
) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(SetupError) as failed:
        await reach(refused, what="Slack", hint="check X", retries=Retries(2, 0.5, sleep))
    assert calls == 3 and slept == [0.5, 1.0]
    assert str(failed.value) == (
        "Slack is unreachable ([Errno 111] Connection refused) after 3 tries: check X."
    )
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "Slack unreachable (try 1 of 3)",
        "Slack unreachable (try 2 of 3)",
    ]

    async def rejected() -> None:
        raise PermissionError("a rejected token: not worth another try")

    with pytest.raises(PermissionError):
        await reach(
            rejected,
            what="Slack",
            hint="",
            retries=Retries(5, 1, sleep),
            passing=lambda error: isinstance(error, ConnectionError),
        )
    assert slept == [0.5, 1.0]  # no waiting for an error that would not pass


def test_a_task_groups_setup_errors_become_one_line_each() -> None:
    slack, discord_ = SlackSetupError("Slack: fix A."), DiscordSetupError("Discord: fix B.")
    failure = setup_failure(ExceptionGroup("services", [slack, ExceptionGroup("x", [discord_])]))
    assert isinstance(failure, StartupError) and str(failure) == "Slack: fix A.\nDiscord: fix B."
    twice = setup_failure(ExceptionGroup("services", [slack, SlackSetupError("Slack: fix A.")]))
    assert str(twice) == "Slack: fix A."
    bug = ExceptionGroup("services", [slack, RuntimeError("a bug")])
    assert setup_failure(bug) is bug  # a bug keeps its traceback


async def test_socket_mode_reconnects_with_the_app_token_after_the_start(tmp_path: Path) -> None:
    """Only the first Socket Mode URL is opened at start; when Slack asks for a reconnect the
    SDK opens the next itself, through Bolt's client (which carries no bot token now)."""
    async with FakeSlack() as fake, FakeAnthropic() as llm:
        config = settings_for(
            fake, llm, tmp_path / "m.db", slack_app_token="xapp-1-test", slack_signing_secret=None
        )
        async with open_coach(config) as coach:
            bot = SlackBot(coach, config)
            running = asyncio.create_task(SlackServer(bot).run())
            await fake.wait_for_socket()
            await fake.disconnect_socket()
            await fake.wait_for_socket(opened=2)
            ack = await fake.deliver(message_event("after the reconnect"), envelope_id="env-2")
            assert ack == {"envelope_id": "env-2"}
            await bot.wait_idle()
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
        assert [c.status for c in fake.calls_to("apps.connections.open")] == [200, 200]
        assert fake.messages(dm_channel_id(USER_ID))[-1].text == "Coach: after the reconnect"
