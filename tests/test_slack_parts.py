"""The Slack adapter's smaller parts: mode choice, Socket Mode, the notifier, the wiring into
`momentum run` and the scheduler, and the pure text rules."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bots.__main__ import configured_services, notifier_factories, open_coach
from bots.slack.app import SlackBot
from bots.slack.events import is_user_speaking
from bots.slack.notify import SlackNotifier, SlackSetupError, slack_notifier
from bots.slack.render import SLASH_COMMAND, escape, our_text, slack_commands
from bots.slack.serve import SlackServer, slack_mode
from core.config import Settings
from core.models import Identity, Platform, User
from scheduler.notify import Notifiers
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.slack_api import USER_ID, FakeSlack, dm_channel_id, message_event
from tests.slack_harness import settings_for

DM = dm_channel_id(USER_ID)


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


# --- Which mode ----------------------------------------------------------------------------


def test_mode_follows_the_tokens() -> None:
    assert slack_mode(settings(slack_bot_token="xoxb-1", slack_app_token="xapp-1")) == "socket"
    assert slack_mode(settings(slack_bot_token="xoxb-1", slack_signing_secret="s")) == "http"
    both = settings(slack_bot_token="xoxb-1", slack_app_token="xapp-1", slack_signing_secret="s")
    assert slack_mode(both) == "socket"
    with pytest.raises(SlackSetupError, match=r"SLACK_APP_TOKEN .* or SLACK_SIGNING_SECRET"):
        slack_mode(settings(slack_bot_token="xoxb-1"))
    with pytest.raises(SlackSetupError, match="xapp-"):
        slack_mode(settings(slack_bot_token="xoxb-1", slack_app_token="xoxb-wrong"))


def test_momentum_run_starts_slack_when_its_token_is_set() -> None:
    assert [name for name, _ in configured_services(settings())] == []
    names = [name for name, _ in configured_services(settings(slack_bot_token="xoxb-1"))]
    assert names[0] == "slack" and "scheduler" in names


# --- Socket Mode, end to end ---------------------------------------------------------------


async def test_socket_mode_answers_a_dm(tmp_path: Path) -> None:
    async with FakeSlack() as fake, FakeAnthropic() as llm:
        config = settings_for(
            fake, llm, tmp_path / "m.db", slack_app_token="xapp-1-test", slack_signing_secret=None
        )
        async with open_coach(config) as coach:
            bot = SlackBot(coach, config)
            running = asyncio.create_task(SlackServer(bot).run())
            ack = await fake.deliver(message_event("hello over the socket"), envelope_id="env-1")
            assert ack == {"envelope_id": "env-1"}
            await bot.wait_idle()
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
        replies = [m.text for m in fake.messages(DM)]
        assert replies[-1] == "Coach: hello over the socket"
        status = fake.calls_to("assistant.threads.setStatus")
        assert status, "a first Socket Mode delivery (retry_attempt 0) is not a retry"
        assert fake.calls_to("apps.connections.open")[0].status == 200


# --- The notifier --------------------------------------------------------------------------


def slack_user(user_id: str = USER_ID) -> User:
    identity = Identity(platform=Platform.SLACK, external_id=user_id, workspace_id="T1")
    return User(identity=identity, created_at=datetime.now(UTC))


async def test_notifier_sends_a_dm_without_any_event_connection(tmp_path: Path) -> None:
    async with FakeSlack() as fake, FakeAnthropic() as llm:
        config = settings_for(fake, llm, tmp_path / "m.db", slack_signing_secret=None)
        notifier = slack_notifier(config)
        assert isinstance(notifier, SlackNotifier)
        await notifier.notify(slack_user(), "Your window is *open*: see /meetings <!here>")
        [message] = fake.messages(DM)
        assert message.text == "Your window is *open*: see /coach meetings &lt;!here&gt;"
        assert [c.method for c in fake.calls] == ["conversations.open", "chat.postMessage"]

        fake.fail_next("chat.postMessage", "channel_not_found")
        with pytest.raises(Exception, match="channel_not_found"):  # the scheduler retries
            await notifier.notify(slack_user(), "again")
        discord_user = User(
            identity=Identity(platform=Platform.DISCORD, external_id="1"),
            created_at=datetime.now(UTC),
        )
        with pytest.raises(ValueError, match="not a Slack user"):
            await notifier.notify(discord_user, "hi")


def test_the_scheduler_gets_a_slack_notifier_only_when_slack_is_configured() -> None:
    assert slack_notifier(settings()) is None
    assert Platform.SLACK not in notifier_factories(settings())
    on = settings(slack_bot_token="xoxb-1")
    notifiers = Notifiers.from_factories(on, notifier_factories(on))
    assert isinstance(notifiers.get(Platform.SLACK), SlackNotifier)


async def test_notifier_waits_out_a_rate_limit(tmp_path: Path) -> None:
    async with FakeSlack() as fake, FakeAnthropic() as llm:
        notifier = slack_notifier(settings_for(fake, llm, tmp_path / "m.db"))
        assert notifier is not None
        fake.fail_next("chat.postMessage", status=429, retry_after=0)
        await notifier.notify(slack_user(), "window open")
        assert fake.messages(DM)[0].text == "window open"


# --- Pure rules ----------------------------------------------------------------------------


@given(st.text())
def test_escaped_text_can_never_hold_a_slack_control_sequence(text: str) -> None:
    safe = escape(text)
    assert "<" not in safe and ">" not in safe
    assert safe.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "").count("&") == 0
    assert (
        safe.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == text
    )  # nothing lost


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Try /goal add <goal>", "Try /coach goal add <goal>"),
        ("see /goals and /goalsetting", "see /coach goals and /coach goalsetting"),
        ("`/history 2`", "`/coach history 2`"),
        ("https://example.com/help", "https://example.com/help"),
        ("a/track b", "a/track b"),
        ("/coach help", "/coach help"),
        ("/unknown", "/unknown"),
    ],
)
def test_grammar_commands_are_spelled_the_slack_way(text: str, expected: str) -> None:
    assert slack_commands(text) == expected


def test_our_text_rewrites_then_escapes() -> None:
    assert our_text("/goal add <x> & go") == "/coach goal add &lt;x&gt; &amp; go"


@pytest.mark.parametrize(
    ("event", "speaking"),
    [
        ({"user": "U1", "text": "hi"}, True),
        ({"user": "U1", "text": "hi", "subtype": "file_share"}, True),
        ({"user": "U1", "text": "hi", "subtype": "thread_broadcast"}, True),
        ({"user": "U1", "text": "hi", "subtype": "message_changed"}, False),
        ({"user": "U1", "subtype": "message_deleted", "hidden": True}, False),
        ({"user": "U1", "text": "hi", "subtype": "channel_join"}, False),
        ({"user": "U1", "text": "hi", "bot_id": "B1"}, False),
        ({"text": "no user", "subtype": "bot_message"}, False),
    ],
)
def test_only_people_writing_are_answered(event: dict[str, Any], speaking: bool) -> None:
    assert is_user_speaking(event) is speaking


# --- The app manifest ----------------------------------------------------------------------

MANIFEST = Path(__file__).resolve().parents[1] / "slack" / "manifest.json"


def test_the_manifest_asks_for_what_the_adapter_uses() -> None:
    manifest = json.loads(MANIFEST.read_text())
    features = manifest["features"]
    assert features["app_home"]["home_tab_enabled"] and features["app_home"]["messages_tab_enabled"]
    assert features["agent_view"]["agent_description"]
    assert [c["command"] for c in features["slash_commands"]] == [SLASH_COMMAND]
    settings_ = manifest["settings"]
    assert set(settings_["event_subscriptions"]["bot_events"]) == {
        "message.im",
        "app_mention",
        "app_home_opened",
        "app_uninstalled",  # Add to Slack: the workspace's tokens are deleted
        "tokens_revoked",
    }
    assert settings_["interactivity"]["is_enabled"]  # the history and confirmation buttons
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == {
        "chat:write",
        "im:history",
        "im:write",
        "app_mentions:read",
        "users:read",
        "assistant:write",
        "commands",
    }
