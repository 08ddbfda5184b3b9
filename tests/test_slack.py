"""The Slack adapter end to end: real Bolt and slack_sdk against FakeSlack, the real anthropic
SDK against FakeAnthropic, a real Coach on SQLite. Every event arrives as a signed HTTP request
at the bot's own endpoint; `wait_idle()` replaces guessing with sleeps."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bots.slack.render import ACTION_CANCEL, ACTION_CONFIRM, ACTION_HISTORY_PAGE, escape
from bots.stream import STREAMING_INDICATOR
from core.llm import USER_TEXT
from core.models import Message, MessageMeta, Platform, Role
from core.safety import SAFETY_REPLY
from core.zones import format_day, format_local
from tests.fakes.anthropic_api import FakeAnthropic, StreamError
from tests.fakes.slack_api import (
    BOT_USER_ID,
    USER_ID,
    FakeSlack,
    app_home_opened_event,
    app_mention_event,
    block_actions_body,
    dm_channel_id,
    message_event,
    slash_command_body,
)
from tests.metrics import rate_limited
from tests.slack_harness import Deployment, block_texts, deployment, identity

DM = dm_channel_id(USER_ID)
LONG_REPLY = " ".join(f"word{n}" for n in range(120))  # ~120 deltas, several appends/edits

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def reply_in(d: Deployment, event: dict[str, object], channel: str = DM) -> str:
    """The coach's reply in the thread under `event` (the last message there)."""
    ts = str(event["ts"])
    thread = [m for m in d.fake.messages(channel, thread_ts=ts) if m.ts != ts]
    assert thread, "no reply in the thread"
    return thread[-1].text


def methods(d: Deployment) -> list[str]:
    return [call.method for call in d.fake.calls]


@pytest.fixture(params=[True, False], ids=["native", "edits"])
def native(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


# --- DMs ---------------------------------------------------------------------------------


async def test_a_dm_is_streamed_into_its_thread(tmp_path: Path, native: bool) -> None:
    llm = FakeAnthropic(reply=LONG_REPLY, token_delay=0.001)
    async with deployment(tmp_path, llm=llm, slack_native_streaming=native) as d:
        event = await d.dm("Help me plan my week")
        welcome, reply = d.fake.messages(DM, thread_ts=str(event["ts"]))
        assert "Momentum coach" in welcome.text
        assert reply.text == LONG_REPLY
        assert d.llm.last_request.last_user_text == "Help me plan my week"
        calls = methods(d)
        if native:
            assert calls.count("chat.startStream") == calls.count("chat.stopStream") == 1
            assert "chat.appendStream" in calls  # it streamed, not one write at the end
            assert "chat.update" not in calls and not reply.streaming
        else:
            assert not any("Stream" in c for c in calls)
            assert calls.count("chat.update") >= 2  # growing, then the final text without indicator
            assert STREAMING_INDICATOR not in reply.text
            assert reply.blocks == [{"type": "markdown", "text": LONG_REPLY}]


async def test_web_api_calls_reuse_kept_alive_connections(tmp_path: Path) -> None:
    """A new TCP (and, on slack.com, TLS) connection per call would add a round trip or
    three to every status, stream and edit call."""
    llm = FakeAnthropic(reply=LONG_REPLY, token_delay=0.001)
    async with deployment(tmp_path, llm=llm) as d:
        await d.dm("hi")
        await d.dm("and again")
        calls = [c for c in d.fake.calls if c.method != "auth.test"]
        assert len(calls) >= 6
        assert len({c.peer for c in calls}) <= 2


async def test_status_shows_thinking_before_the_first_token(tmp_path: Path) -> None:
    async with deployment(tmp_path, llm=FakeAnthropic(ttft=0.05)) as d:
        event = await d.dm("hi")
        [status] = d.fake.calls_to("assistant.threads.setStatus")
        assert status.args == {"channel_id": DM, "thread_ts": event["ts"], "status": "is thinking…"}
        llm_asked = d.llm.requests[0].received_at
        assert status.time < llm_asked  # shown before the model is even asked
        assert methods(d).index("assistant.threads.setStatus") < methods(d).index(
            "chat.startStream"
        )


async def test_model_output_cannot_ping_or_link(tmp_path: Path, native: bool) -> None:
    evil = "Hey <!channel> and <!here>, ask <@U0BOSS> & see <https://evil.example|your bank>"
    llm = FakeAnthropic(reply=evil)
    async with deployment(tmp_path, llm=llm, slack_native_streaming=native) as d:
        event = await d.dm("hi")
        text = reply_in(d, event)
        assert text == escape(evil)
        assert "<" not in text and ">" not in text


async def test_native_refused_falls_back_to_edits(tmp_path: Path) -> None:
    async with deployment(tmp_path, llm=FakeAnthropic(reply=LONG_REPLY)) as d:
        d.fake.fail_next("chat.startStream", "not_allowed_token_type")
        event = await d.dm("hi")
        assert reply_in(d, event) == LONG_REPLY
        assert d.fake.calls_to("chat.update")  # finished by edit streaming


async def test_a_stream_slack_closed_is_finished_with_chat_update(tmp_path: Path) -> None:
    fake = FakeSlack(stream_ttl=0.0)  # every stream is closed as soon as it starts
    llm = FakeAnthropic(reply=LONG_REPLY, token_delay=0.001)
    async with deployment(tmp_path, fake=fake, llm=llm) as d:
        event = await d.dm("hi")
        [stream] = d.fake.calls_to("chat.startStream")
        closed = [c for c in d.fake.calls if c.error == "message_not_in_streaming_state"]
        assert closed
        [reply] = [m for m in d.fake.messages(DM, str(event["ts"])) if m.text.startswith("word0")]
        assert reply.text == LONG_REPLY  # the stream's own message, completed
        assert d.fake.calls_to("chat.update")[-1].args["ts"] == reply.ts
        assert stream.time < closed[0].time


async def test_the_user_and_team_reach_the_coach_as_a_slack_identity(tmp_path: Path) -> None:
    async with deployment(tmp_path) as d:
        await d.dm("hi")
        user = await d.coach.user(identity())
        assert user.identity.platform is Platform.SLACK
        assert user.identity.workspace_id == identity().workspace_id


# --- Access ------------------------------------------------------------------------------


async def tracking_user_outside_window(d: Deployment) -> None:
    me = identity()
    await d.coach.add_goal(me, "Run 5k")
    await d.coach.schedule(me, "tomorrow 9am")
    await d.coach.start_tracking(me)


async def test_denied_answer_names_the_next_window_in_slack_timezone(
    tmp_path: Path, native: bool
) -> None:
    async with deployment(tmp_path, slack_native_streaming=native) as d:
        d.fake.add_user(USER_ID, tz="Asia/Kolkata")
        await tracking_user_outside_window(d)
        event = await d.dm("are you there?")
        assert (await d.coach.user(identity())).timezone == "Asia/Kolkata"  # from users.info
        access = (await d.coach.access(identity())).access
        assert access.next_opens_at is not None
        local = format_local(access.next_opens_at, ZoneInfo("Asia/Kolkata"))
        text = reply_in(d, event)
        assert "next window opens" in text and escape(local) in text
        assert d.llm.requests == []  # the model is never asked


async def test_a_chosen_timezone_is_not_overridden_by_slack(tmp_path: Path) -> None:
    async with deployment(tmp_path) as d:
        d.fake.add_user(USER_ID, tz="Asia/Kolkata")
        await d.coach.set_timezone(identity(), "Europe/Paris")
        await d.dm("hi")
        assert (await d.coach.user(identity())).timezone == "Europe/Paris"


async def test_crisis_language_gets_the_safety_reply_even_when_closed(
    tmp_path: Path, native: bool
) -> None:
    async with deployment(tmp_path, slack_native_streaming=native) as d:
        await tracking_user_outside_window(d)
        event = await d.dm("I want to kill myself")
        assert reply_in(d, event) == escape(SAFETY_REPLY)
        assert d.llm.requests == []


# --- Failures ----------------------------------------------------------------------------


async def test_llm_failure_mid_stream_ends_with_a_clear_note(tmp_path: Path, native: bool) -> None:
    llm = FakeAnthropic(reply=LONG_REPLY)
    llm.enqueue(StreamError(after=5))
    async with deployment(tmp_path, llm=llm, slack_native_streaming=native) as d:
        event = await d.dm("hi")
        text = reply_in(d, event)
        said = " ".join(LONG_REPLY.split()[:5])
        assert text.startswith(said)
        assert text.endswith(f"⚠️ _{escape(USER_TEXT['interrupted'])}_")
        assert STREAMING_INDICATOR not in text


async def test_llm_down_before_any_token_is_said_plainly(tmp_path: Path, native: bool) -> None:
    llm = FakeAnthropic()
    llm.enqueue(StreamError(after=0))
    async with deployment(tmp_path, llm=llm, slack_native_streaming=native) as d:
        event = await d.dm("hi")
        assert reply_in(d, event).startswith("⚠️ _")


@pytest.mark.parametrize("method", ["chat.appendStream", "chat.stopStream"])
async def test_429_while_streaming_natively_waits_and_completes(
    tmp_path: Path, method: str
) -> None:
    llm = FakeAnthropic(reply=LONG_REPLY, token_delay=0.001)
    async with deployment(tmp_path, llm=llm) as d:
        d.fake.fail_next(method, status=429, retry_after=0)
        event = await d.dm("hi")
        assert d.fake.rate_limited == 1
        assert reply_in(d, event) == LONG_REPLY
        assert "chat.update" not in methods(d)  # waited, did not give up on native
        if method == "chat.stopStream":
            assert methods(d).count(method) == 2  # the refused stop, then the one taken


async def test_stops_do_not_queue_for_the_workspace_append_budget(tmp_path: Path) -> None:
    """Ten native replies in one workspace with a tiny append budget (2 per 10 s): each ends
    as soon as its model does, instead of waiting its turn for an append slot to stop."""
    users = [f"U{n:07d}" for n in range(10)]
    llm = FakeAnthropic(reply="short and sweet", token_delay=0.001)
    async with deployment(tmp_path, llm=llm, budgets=((50, 60.0), (2, 10.0))) as d:
        for user in users:
            d.fake.add_user(user)
        envelopes = [message_event(f"hello from {user}", user=user) for user in users]
        started = time.monotonic()
        await asyncio.gather(*(d.send(envelope) for envelope in envelopes))
        await d.bot.wait_idle()
        assert time.monotonic() - started < 5.0  # queued stops would take 40 s
        for envelope, user in zip(envelopes, users, strict=True):
            assert reply_in(d, envelope["event"], channel=dm_channel_id(user)) == llm.reply
        assert d.fake.rate_limited == 0


async def test_429_while_editing_waits_and_completes(tmp_path: Path) -> None:
    llm = FakeAnthropic(reply=LONG_REPLY, token_delay=0.001)
    async with deployment(tmp_path, llm=llm, slack_native_streaming=False) as d:
        d.fake.fail_next("chat.update", status=429, retry_after=0, times=2)
        counted = rate_limited("slack")
        event = await d.dm("hi")
        assert d.fake.rate_limited == 2
        assert rate_limited("slack") == counted + 2  # what an operator's /metrics shows
        assert reply_in(d, event) == LONG_REPLY


async def test_slack_failing_mid_reply_still_ends_in_a_plain_note(tmp_path: Path) -> None:
    llm = FakeAnthropic(reply=LONG_REPLY, token_delay=0.001)
    async with deployment(tmp_path, llm=llm, slack_native_streaming=False) as d:
        d.fake.fail_next("chat.update", "internal_error", times=100)
        event = await d.dm("hi")
        assert reply_in(d, event).startswith("⚠️ Something went wrong on my side")


# --- Exactly once ------------------------------------------------------------------------


async def test_a_retried_event_is_answered_once(tmp_path: Path) -> None:
    envelope = message_event("hello", event_id="Ev0RETRY")
    async with deployment(tmp_path) as d:
        await d.deliver(envelope)
        for attempt in (1, 2, 3):
            await d.deliver(envelope, retry_num=attempt)
        assert len(d.llm.requests) == 1
        assert len(d.fake.calls_to("chat.startStream")) == 1
        assert len(d.fake.calls_to("assistant.threads.setStatus")) == 1  # retries show none
    # A new process on the same database (a restart) still knows it answered.
    async with deployment(tmp_path) as d:
        await d.deliver(envelope, retry_num=1)
        await d.deliver(envelope)
        assert d.llm.requests == [] and d.fake.messages(DM) == []


async def test_bots_edits_and_other_subtypes_are_ignored(tmp_path: Path) -> None:
    async with deployment(tmp_path) as d:
        bot = message_event("I am a bot")
        bot["event"]["bot_id"] = "B0OTHER"
        edited = message_event("edited")
        edited["event"]["subtype"] = "message_changed"
        joined = message_event("joined")
        joined["event"]["subtype"] = "channel_join"
        own = message_event("mine", user=BOT_USER_ID)
        channel = message_event("in a channel", channel="C0FAKECHAN", channel_type="channel")
        for envelope in (bot, edited, joined, own, channel):
            await d.deliver(envelope)  # still a 200: Slack must not retry
        assert d.llm.requests == []
        assert not [c for c in methods(d) if c.startswith(("chat.", "assistant."))]


async def test_bad_signature_is_refused_and_nothing_happens(tmp_path: Path) -> None:
    async with deployment(tmp_path) as d:
        response = await d.send(message_event("hi"), secret="not-the-secret")
        assert response.status == 401
        cmd = await d.send(message_event("hi"), secret="")
        assert cmd.status == 401
        await d.bot.wait_idle()
        # Only the sign-in at start: nothing for the refused requests.
        assert [c.method for c in d.fake.calls] == ["auth.test"] and d.llm.requests == []


async def test_app_mention_is_answered_in_a_thread(tmp_path: Path) -> None:
    async with deployment(tmp_path) as d:
        text = f"<@{BOT_USER_ID}> how do I start with <@U0BOB>?"
        envelope = app_mention_event(text, channel="C0TEAM")
        await d.deliver(envelope)
        assert d.llm.last_request.last_user_text == "how do I start with <@U0BOB>?"
        event = envelope["event"]
        answer = reply_in(d, event, channel="C0TEAM")
        assert answer == "Coach: how do I start with &lt;@U0BOB&gt;?"  # named, not pinged
        start = d.fake.calls_to("chat.startStream")[0].args
        assert (start["thread_ts"], start["recipient_user_id"]) == (event["ts"], USER_ID)


async def test_fifty_dms_in_one_workspace_share_the_update_budget(tmp_path: Path) -> None:
    users = [f"U{n:07d}" for n in range(50)]
    limit, window = 20, 0.25
    fake = FakeSlack(enforce_limits=True, limits={"chat.update": limit}, window=window)
    llm = FakeAnthropic(reply=" ".join(f"w{n}" for n in range(30)), token_delay=0.002)
    # The bot's budget is the platform's, with room for loopback jitter: the 0.25 s window
    # is tiny, where Slack's minute makes a few milliseconds of jitter irrelevant.
    budgets = ((limit, window * 1.6), (100, 0.5))
    async with deployment(
        tmp_path, fake=fake, llm=llm, budgets=budgets, slack_native_streaming=False
    ) as d:
        for user in users:
            d.fake.add_user(user)
        envelopes = [message_event(f"hello from {user}", user=user) for user in users]
        started = time.monotonic()
        responses = await asyncio.gather(*(d.send(envelope) for envelope in envelopes))
        assert all(r.status == 200 for r in responses)
        await d.bot.wait_idle()
        elapsed = time.monotonic() - started
        assert d.fake.rate_limited == 0
        updates = d.fake.calls_to("chat.update")
        writes = len(updates) + len(d.fake.calls_to("chat.postMessage"))
        assert writes > 2 * limit  # the budget was really put to the test…
        assert len(updates) <= limit * (elapsed / window + 1)  # …and never overspent
        for envelope, user in zip(envelopes, users, strict=True):
            text = reply_in(d, envelope["event"], channel=dm_channel_id(user))
            assert text == llm.reply


# --- /coach ------------------------------------------------------------------------------


async def test_slash_command_acks_fast_and_answers_ephemerally(tmp_path: Path) -> None:
    async with deployment(tmp_path) as d:
        started = time.monotonic()
        response = await d.send(
            slash_command_body("/coach", "help", response_url=d.fake.response_url("h"))
        )
        assert response.status == 200 and time.monotonic() - started < 3
        await d.bot.wait_idle()
        [answer] = d.fake.responses("h")
        assert answer["response_type"] == "ephemeral"
        assert "/coach goal add" in block_texts(answer["blocks"])


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", "/coach history"),
        ("help", "/coach schedule"),
        ("access", "goal setting"),
        ("history", "No conversation yet"),
        ("goals", "No active goals yet"),
        ("goal add Run a 5k <!channel>", "Run a 5k &lt;!channel&gt;"),
        ("schedule tomorrow 9am", "09:00 (UTC), 45 min. See all your meetings with /coach"),
        ("meetings", "No upcoming meetings"),
        ("cancel 1", "no meetings"),
        ("track", "To start tracking you need"),
        ("goalsetting", "Back to goal setting"),
        ("timezone Europe/Paris", "Timezone set to Europe/Paris"),
        ("timezone", "Your timezone"),
        ("nonsense", "I don't know /nonsense"),
    ],
)
async def test_each_command_answers(tmp_path: Path, line: str, expected: str) -> None:
    async with deployment(tmp_path) as d:
        answer = await d.command(line)
        assert answer["response_type"] == "ephemeral"
        assert expected in answer["text"] + block_texts(answer.get("blocks"))


async def test_commands_work_together_in_the_users_timezone(tmp_path: Path) -> None:
    async with deployment(tmp_path) as d:
        d.fake.add_user(USER_ID, tz="America/New_York")
        await d.command("goal add Ship the beta")
        scheduled = await d.command("schedule tomorrow 9am for 30m")
        assert "9:00" in block_texts(scheduled["blocks"]) or "09:00" in block_texts(
            scheduled["blocks"]
        )
        [meeting] = await d.coach.meetings(identity())
        assert meeting.start.astimezone(ZoneInfo("America/New_York")).hour == 9
        tracked = await d.command("track")
        assert tracked["text"].startswith("⏸️ You're in tracking now: I'm available from 30")
        assert tracked["text"].count("tracking") == 1
        listed = await d.command("meetings")
        assert "30 min" in block_texts(listed["blocks"])
        cancelled = await d.command("cancel 1")
        assert "Cancelled" in block_texts(cancelled["blocks"])


async def test_export_arrives_in_the_dm(tmp_path: Path) -> None:
    async with deployment(tmp_path) as d:
        await d.command("goal add Learn <b>HTML</b> & CSS")
        answer = await d.command("export")
        assert "in our DM" in answer["text"]
        [export] = d.fake.messages(DM)
        assert export.text.startswith("```json\n") and export.text.endswith("```")
        assert "Learn &lt;b&gt;HTML&lt;/b&gt; &amp; CSS" in export.text


async def test_a_command_that_fails_on_slack_still_gets_an_answer(tmp_path: Path) -> None:
    async with deployment(tmp_path) as d:
        d.fake.fail_next("conversations.open", "internal_error")
        answer = await d.command("export")
        assert answer["text"].startswith("⚠️ Something went wrong on my side")


async def test_history_pages_with_buttons(tmp_path: Path) -> None:
    async with deployment(tmp_path) as d:
        user = await d.coach.user(identity())
        meta = MessageMeta(platform=Platform.SLACK)
        for n in range(15):
            await d.store.add_message(
                Message(
                    user_id=user.id,
                    role=Role.USER if n % 2 else Role.ASSISTANT,
                    text=f"message {n} <@U0X>",
                    created_at=datetime.fromtimestamp(1_700_000_000 + n, tz=UTC),
                    meta=meta,
                )
            )
        first = await d.command("history", tag="hist")
        page1 = block_texts(first["blocks"])
        assert "page 1 of 2" in page1 and "message 14" in page1 and "message 4" not in page1
        assert "&lt;@U0X&gt;" in page1
        [older] = first["blocks"][-1]["elements"]
        assert (older["action_id"], older["value"]) == (ACTION_HISTORY_PAGE, "2")
        click = block_actions_body(
            ACTION_HISTORY_PAGE, "2", response_url=d.fake.response_url("hist")
        )
        await d.deliver(click)
        second = d.fake.responses("hist")[-1]
        assert second["replace_original"] is True
        page2 = block_texts(second["blocks"])
        assert "page 2 of 2" in page2 and "message 0" in page2
        [newer] = second["blocks"][-1]["elements"]
        assert newer["value"] == "1"


@pytest.mark.parametrize("what", ["clear", "forget"])
async def test_destructive_commands_ask_then_a_button_carries_them_out(
    tmp_path: Path, what: str
) -> None:
    async with deployment(tmp_path) as d:
        await d.dm("remember this")
        await d.command("goal add Keep me")
        question = await d.command(what, tag="ask")
        confirm, cancel = question["blocks"][-1]["elements"]
        assert (confirm["action_id"], confirm["value"]) == (ACTION_CONFIRM, f"{what} confirm")
        assert cancel["action_id"] == ACTION_CANCEL
        user = await d.coach.user(identity())
        assert await d.store.recent_messages(user.id, 10)  # nothing deleted by asking

        keep = block_actions_body(ACTION_CANCEL, "cancel", response_url=d.fake.response_url("ask"))
        await d.deliver(keep)
        assert "Nothing was deleted" in d.fake.responses("ask")[-1]["text"]
        assert await d.store.recent_messages(user.id, 10)

        click = block_actions_body(
            ACTION_CONFIRM, confirm["value"], response_url=d.fake.response_url("ask")
        )
        await d.deliver(click)
        done = d.fake.responses("ask")[-1]
        assert done["replace_original"] is True
        if what == "clear":
            assert "deleted" in done["text"]
            assert await d.store.recent_messages(user.id, 10) == []
            assert [g.text for g in await d.coach.goals(identity())] == ["Keep me"]
        else:
            assert "Everything is deleted" in done["text"]
            assert await d.store.list_users() == []  # and not re-created by the answer


# --- App Home ----------------------------------------------------------------------------


async def test_app_home_shows_phase_goals_next_meeting_and_reach(tmp_path: Path) -> None:
    async with deployment(tmp_path) as d:
        d.fake.add_user(USER_ID, tz="Europe/Berlin")
        await d.deliver(app_home_opened_event())
        first = block_texts(d.fake.home_views[USER_ID]["blocks"])
        assert "goal setting" in first and "Reachable now" in first and "None yet" in first

        await tracking_user_outside_window(d)
        await d.deliver(app_home_opened_event())
        view = d.fake.home_views[USER_ID]
        assert view["type"] == "home"
        text = block_texts(view["blocks"])
        assert "tracking" in text and "Not reachable right now" in text and "Run 5k" in text
        [meeting] = await d.coach.meetings(identity())
        assert format_local(meeting.start, ZoneInfo("Europe/Berlin")) in text


async def test_app_home_shows_each_goals_last_progress_and_streak(tmp_path: Path) -> None:
    async with deployment(tmp_path) as d:
        d.fake.add_user(USER_ID, tz="Europe/Berlin")
        await d.coach.add_goal(identity(), "Run 5k")
        await d.coach.add_goal(identity(), "Read 12 books")
        await d.coach.log_progress(identity(), "1", "ran 3 km <!channel>")
        await d.deliver(app_home_opened_event())

        text = block_texts(d.fake.home_views[USER_ID]["blocks"])
        day = format_day(d.coach.now(), ZoneInfo("Europe/Berlin"))
        shown = f"1. Run 5k\\n    ↳ last {day}: ran 3 km &lt;!channel&gt; · 🔥 1 week in a row"
        assert shown in text
        assert "2. Read 12 books\\n" in text and "/coach log &lt;number&gt;" in text


async def test_opening_the_messages_tab_publishes_nothing(tmp_path: Path) -> None:
    async with deployment(tmp_path) as d:
        await d.deliver(app_home_opened_event(tab="messages"))
        assert d.fake.home_views == {} and d.llm.requests == []


async def test_health_route(tmp_path: Path) -> None:
    async with deployment(tmp_path) as d, d.http.get(d.url + "/health") as response:
        assert response.status == 200
        assert (await response.json())["ok"] is True
