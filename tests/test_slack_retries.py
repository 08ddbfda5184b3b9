"""Slack writes retried without showing the reply twice: above all a post answered with a
5xx that Slack had carried out all the same (a proxy's 503 after the write). chat.postMessage
has no idempotency key, so the bot marks every post and looks for it before posting again
(bots/slack/stream.py). These tests run the real bot against FakeSlack, whose
`fail_next(..., after_applying=True)` takes the write and then answers the error, through the
fault suite's `chat_on` helpers."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bots.slack.edits import MESSAGE_LIMIT
from bots.stream import STREAMING_INDICATOR
from core.models import Role
from tests.fakes.anthropic_api import Reply
from tests.fakes.slack_api import FakeSlack
from tests.test_faults import WITHIN, SlackChat, chat_on, serves_again, stored, whole_reply

pytestmark = [pytest.mark.faults, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

# Long enough for two messages in edit mode (a message holds MESSAGE_LIMIT characters).
TWO_PART_REPLY = " ".join(f"word{i}" for i in range(MESSAGE_LIMIT // 6))
NO_HISTORY_SCOPE = "chat:write,users:read,commands,assistant:write"  # no im:history


def slack(chat: object) -> SlackChat:
    assert isinstance(chat, SlackChat)
    return chat


def refused_with(chat: SlackChat, status: int) -> int:
    return sum(1 for call in chat.d.fake.calls if call.status == status)


@pytest.mark.parametrize("part", [0, 1], ids=["first-message", "continuation"])
async def test_a_post_taken_before_a_503_is_shown_once(tmp_path: Path, part: int) -> None:
    """Slack posts a message of the reply, then answers 503. The bot finds that message in
    the thread and finishes it, instead of posting the part again: the user sees the reply
    once, whole, it is stored once, and the next message is answered as usual."""
    text = TWO_PART_REPLY if part else whole_reply("hello")
    async with chat_on("slack-edits", tmp_path) as chat:
        fake = slack(chat).d.fake
        chat.llm.enqueue(Reply(text))
        fake.fail_next(
            "chat.postMessage", "internal_error", status=503, after_applying=True, skip=part
        )
        said = await chat.send("hello")
        await chat.settle(said, replies=part + 1)
        messages = chat.replies(said)
        assert " ".join(messages).split() == text.split()  # whole, nothing twice
        assert not any(m.endswith(STREAMING_INDICATOR) for m in messages)
        assert refused_with(slack(chat), 503) == 1
        assert len(fake.calls_to("chat.postMessage")) == part + 1  # not posted again
        assert len(fake.calls_to("conversations.replies")) == 1
        assert await stored(chat) == [(Role.USER, "hello", True), (Role.ASSISTANT, text, True)]
        await serves_again(chat)


@pytest.mark.parametrize("status", [429, 503])
async def test_a_post_slack_did_not_take_is_posted_once_after_the_retry(
    tmp_path: Path, status: int
) -> None:
    """A 503 that Slack did not act on: the bot looks, finds nothing, and posts. A 429 is
    never acted on: the bot posts again without looking."""
    async with chat_on("slack-edits", tmp_path) as chat:
        fake = slack(chat).d.fake
        error = None if status == 429 else "internal_error"
        fake.fail_next("chat.postMessage", error, status=status, retry_after=0)
        said = await chat.say("hello")
        assert chat.replies(said) == [whole_reply("hello")]
        assert refused_with(slack(chat), status) == 1
        assert len(fake.calls_to("chat.postMessage")) == 2
        assert len(fake.calls_to("conversations.replies")) == (1 if status == 503 else 0)
        assert await stored(chat) == [
            (Role.USER, "hello", True),
            (Role.ASSISTANT, whole_reply("hello"), True),
        ]
        await serves_again(chat)


async def test_a_rate_limited_lookup_is_waited_out(tmp_path: Path) -> None:
    """Slack took the post, answered 503, then rate-limits the look-up: the bot waits and
    looks again, and still finds the message instead of posting it twice."""
    async with chat_on("slack-edits", tmp_path) as chat:
        fake = slack(chat).d.fake
        fake.fail_next("chat.postMessage", "internal_error", status=503, after_applying=True)
        fake.fail_next("conversations.replies", status=429, retry_after=0)
        said = await chat.say("hello")
        assert chat.replies(said) == [whole_reply("hello")]
        assert len(fake.calls_to("conversations.replies")) == 2
        assert len(fake.calls_to("chat.postMessage")) == 1
        await serves_again(chat)


@pytest.mark.parametrize("lookup", ["lookup-503", "missing-scope"])
async def test_a_failing_lookup_still_gets_the_reply_out(
    tmp_path: Path, lookup: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The search for the post fails (Slack is still failing, or the app lacks the history
    scope): the bot posts again. The user may see the first words twice, but gets the whole
    reply, and the failure is logged."""
    fake_slack = FakeSlack(scopes=NO_HISTORY_SCOPE) if lookup == "missing-scope" else FakeSlack()
    async with chat_on("slack-edits", tmp_path, fake=fake_slack) as chat:
        fake = slack(chat).d.fake
        fake.fail_next("chat.postMessage", "internal_error", status=503, after_applying=True)
        if lookup == "lookup-503":
            fake.fail_next("conversations.replies", "internal_error", status=503)
        said = await chat.say("hello", replies=2)
        taken, reply = chat.replies(said)
        assert whole_reply("hello").startswith(taken.removesuffix(STREAMING_INDICATOR))
        assert reply == whole_reply("hello")
        [call] = fake.calls_to("conversations.replies")
        assert call.error == ("internal_error" if lookup == "lookup-503" else "missing_scope")
        assert "could not check whether Slack took a post" in caplog.text
        assert await stored(chat) == [
            (Role.USER, "hello", True),
            (Role.ASSISTANT, whole_reply("hello"), True),
        ]
        await serves_again(chat)


@pytest.mark.xfail(
    strict=True,
    reason="chat.startStream takes no metadata and its 5xx gives no ts: a stream Slack "
    "started cannot be found again (see bots/slack/stream.py)",
)
async def test_a_stream_started_before_a_503_is_shown_once(tmp_path: Path) -> None:
    """Known gap: Slack starts the native stream, then answers 503. The bot hands over to
    edits, which post the reply, and the started stream stays with its first words."""
    async with chat_on("slack-native", tmp_path) as chat:
        fake = slack(chat).d.fake
        fake.fail_next("chat.startStream", "internal_error", status=503, after_applying=True)
        said = await chat.send("hello")
        async with asyncio.timeout(WITHIN):
            await slack(chat).d.bot.wait_idle()
        assert chat.replies(said) == [whole_reply("hello")]


async def test_posts_found_twice_keep_one_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two tries of the same part both taken, both answered 503: the bot goes on in the first
    and deletes the second, so the user still sees one message."""
    async with chat_on("slack-edits", tmp_path) as chat:
        fake = slack(chat).d.fake
        fake.fail_next(
            "chat.postMessage", "internal_error", status=503, after_applying=True, times=2
        )
        fake.fail_next("conversations.replies", "internal_error", status=503)
        caplog.set_level(logging.INFO, logger="bots.slack.stream")
        said = await chat.say("hello")
        assert chat.replies(said) == [whole_reply("hello")]
        assert len(fake.calls_to("chat.delete")) == 1
        assert "Slack took a post it answered with a 5xx" in caplog.text
        await serves_again(chat)


async def test_a_closed_stream_is_still_finished_after_a_429(tmp_path: Path) -> None:
    """Slack closes the native stream at once, and refuses the first edit that takes it over
    with a 429: the retry edits that same message instead of posting the reply again."""
    async with chat_on("slack-native", tmp_path, fake=FakeSlack(stream_ttl=0.0)) as chat:
        fake = slack(chat).d.fake
        fake.fail_next("chat.update", status=429, retry_after=0)
        said = await chat.say("hello")
        assert chat.replies(said) == [whole_reply("hello")]
        assert fake.rate_limited == 1
        assert fake.calls_to("chat.postMessage") == []
