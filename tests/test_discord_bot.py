"""The Discord adapter's conversations end to end: stock discord.py against the loopback fake
Discord, the real Coach and anthropic SDK against the fake Anthropic (tests/discord_world.py).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bots.commands import run_command
from bots.discord.bot import in_coaching_channel, strip_mention
from bots.discord.render import MESSAGE_LIMIT
from bots.stream import STREAMING_INDICATOR
from core.models import Role
from core.safety import SAFETY_REPLY
from tests.discord_world import FAST_EDITS, World, discord_world
from tests.fakes.anthropic_api import HttpError, StreamError
from tests.metrics import rate_limited
from tests.support import T0

WRITE_GAP = FAST_EDITS[1] / FAST_EDITS[0]
WRITE_SLACK = 0.02  # arrival jitter at the fake


def words(count: int, stem: str = "word") -> str:
    return " ".join(f"{stem}{i}" for i in range(count))


def last_user_text(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content)


def echo_then_words(count: int) -> Any:
    """A reply naming what the user said, then `count` words: long enough to stream."""
    return lambda body: f"Coach: {last_user_text(body)}. " + words(count)


def channel_writes(world: World, channel_id: int) -> list[float]:
    """Arrival times of message creates and edits in one channel (its rate-limit bucket)."""
    prefix = f"/channels/{channel_id}/messages"
    return [
        c.time
        for c in world.discord.calls
        if c.path.startswith(prefix) and c.method in ("POST", "PATCH") and c.status == 200
    ]


def writes_are_spaced(times: list[float]) -> bool:
    """Paced by the channel's bucket: n writes span at least n - 1 gaps. (Measured over the
    whole run, so one write that reached the fake late cannot fail it.)"""
    return len(times) > 2 and times[-1] - times[0] >= (len(times) - 1) * WRITE_GAP - WRITE_SLACK


async def stored(world: World, user_id: int) -> list[tuple[Role, str, bool]]:
    user = await world.coach.user(world.identity(user_id))
    messages = await world.coach.store.messages_between(user.id)
    return [(m.role, m.text, m.complete) for m in messages]


# --- A conversation in a coaching channel -------------------------------------------------


async def test_channel_message_is_streamed_as_a_silent_reply(tmp_path: Path) -> None:
    reply = words(40)
    async with discord_world(tmp_path, llm_options={"reply": reply, "token_delay": 0.005}) as w:
        asked = await w.say("How do I start?")
        (answer,) = await w.final_answer(asked, lambda text: text.endswith(reply))
        history = await stored(w, w.alice)

    channel_posts = [c for c in w.discord.calls if c.method == "POST" and "/channels/" in c.path]
    assert channel_posts[0].path == f"/channels/{w.coaching_channel}/typing"  # typing first
    assert answer.data["message_reference"]["message_id"] == str(asked)
    # sent with the first text, then edited as tokens came, coalesced, always a final edit
    first = channel_posts[1]
    assert first.path == f"/channels/{w.coaching_channel}/messages" and answer.silent
    assert first.body["content"].endswith(STREAMING_INDICATOR)
    assert first.body["allowed_mentions"] == {"parse": [], "replied_user": True}
    assert 2 <= len(answer.edits) < 40
    assert all(edit["allowed_mentions"] == {"parse": []} for edit in answer.edits)
    assert answer.edits[-1]["content"] == answer.content and reply in answer.content
    assert "/coach goal add" in answer.content  # the welcome, in Discord's command names
    assert writes_are_spaced(channel_writes(w, w.coaching_channel))
    assert history == [(Role.USER, "How do I start?", True), (Role.ASSISTANT, reply, True)]


async def test_typing_is_refreshed_until_the_first_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model takes a while to start: "typing…" is triggered again every refresh (0.1 s
    here, 8 s in production) so the bot does not look dead, and never after the first text."""
    refresh = 0.1
    monkeypatch.setattr("bots.discord.reply.TYPING_REFRESH_SECONDS", refresh)
    options = {"reply": words(20), "ttft": 6 * refresh, "token_delay": 0.01}
    async with discord_world(tmp_path, llm_options=options) as w:
        user = await w.coach.user(w.identity(w.alice))
        await w.coach.store.update_user(user.id, welcomed=True)  # a welcome would show at once
        asked = await w.say("hello")
        await w.final_answer(asked, lambda text: text.endswith("word19"))
        await asyncio.sleep(3 * refresh)  # a refresh still running would type again by now
    channel = f"/channels/{w.coaching_channel}"
    typing = [c.time for c in w.discord.calls if c.path == f"{channel}/typing"]
    first_text = next(
        c.time for c in w.discord.calls if c.method == "POST" and c.path == f"{channel}/messages"
    )
    assert len(typing) >= 4  # at once, then about every 0.1 s while the model is silent
    assert typing[-1] - typing[0] >= (len(typing) - 1) * refresh - WRITE_SLACK  # not faster
    assert typing[-1] < first_text


async def test_mention_outside_coaching_channels(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        ignored = await w.say("just chatting", channel_id=w.other_channel)
        asked = await w.say("hello coach", channel_id=w.other_channel, mention_bot=True)
        await w.final_answer(asked, lambda text: "Coach: hello coach" in text, w.other_channel)
        assert w.answers_to(ignored, w.other_channel) == []
        assert [r.last_user_text for r in w.llm.requests] == ["hello coach"]  # mention stripped


async def test_mention_in_coaching_channel_is_stripped_too(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        asked = await w.say("plan my week", mention_bot=True)
        await w.final_answer(asked, lambda text: "Coach: plan my week" in text)


async def test_thread_in_a_coaching_channel_is_answered_in_the_thread(tmp_path: Path) -> None:
    reply = words(30)
    async with discord_world(tmp_path, llm_options={"reply": reply, "token_delay": 0.005}) as w:
        thread = await w.discord.create_thread(w.coaching_channel, name="my goals")
        asked = await w.say("How do I start?", channel_id=thread)
        (answer,) = await w.final_answer(asked, lambda text: text.endswith(reply), thread)
        assert w.bot_messages() == []  # nothing landed in the parent channel
    assert answer.channel_id == thread and answer.silent and answer.edits
    assert answer.data["message_reference"]["message_id"] == str(asked)
    assert f"/channels/{thread}/typing" in [c.path for c in w.discord.calls]
    assert writes_are_spaced(channel_writes(w, thread))  # a thread is its own bucket


async def test_thread_outside_coaching_channels_needs_a_mention(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        thread = await w.discord.create_thread(w.other_channel)
        ignored = await w.say("just chatting", channel_id=thread)
        asked = await w.say("hello coach", channel_id=thread, mention_bot=True)
        await w.final_answer(asked, lambda text: "Coach: hello coach" in text, thread)
        assert w.answers_to(ignored, thread) == []
    assert [r.last_user_text for r in w.llm.requests] == ["hello coach"]


async def test_direct_message(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        await w.say("hi in private", dm=True)
        dm = w.discord.dm_channels[w.alice]
        await w.discord.wait_for(
            lambda: any("Coach: hi in private" in m.content for m in w.bot_messages(dm))
        )
        (answer,) = w.bot_messages(dm)
        assert answer.silent and "message_reference" not in answer.data


async def test_direct_messages_can_be_turned_off(tmp_path: Path) -> None:
    async with discord_world(tmp_path, discord_allow_dms=False) as w:
        await w.say("hi in private", dm=True)
        asked = await w.say("hi in public")
        await w.final_answer(asked, lambda text: "Coach: hi in public" in text)
        assert w.bot_messages(w.discord.dm_channels[w.alice]) == []
        assert len(w.llm.requests) == 1
    assert w.discord.intents is not None and not w.discord.intents & (1 << 12)  # DM_MESSAGES


async def test_without_message_content_intent_only_mentions_are_heard(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with discord_world(tmp_path, discord_message_content_intent=False) as w:
        with caplog.at_level(logging.WARNING, logger="bots.discord.bot"):
            unheard = await w.say("Discord blanks this one")
            asked = await w.say("but not this", mention_bot=True)
            await w.final_answer(asked, lambda text: "Coach: but not this" in text)
        assert w.answers_to(unheard) == []
    assert "DISCORD_MESSAGE_CONTENT_INTENT" in caplog.text
    assert w.discord.intents is not None and not w.discord.intents & (1 << 15)


async def test_long_reply_continues_in_new_messages_with_code_fences_kept(tmp_path: Path) -> None:
    code = "\n".join(f"step_{i} = do_something({i})  # and keep going" for i in range(90))
    reply = f"Here is your plan:\n\n```python\n{code}\n```\n\nNow go!"
    assert len(reply) > 2 * MESSAGE_LIMIT
    async with discord_world(tmp_path, llm_options={"reply": reply}) as w:
        asked = await w.say("write me a plan")
        answer = await w.final_answer(asked, lambda text: text.endswith("Now go!"))
    assert len(answer) >= 3  # the welcome, then the reply
    assert all(len(m.content) <= MESSAGE_LIMIT for m in answer)
    assert all(m.content.count("```") % 2 == 0 for m in answer)  # every part renders whole
    cut = next(i for i, m in enumerate(answer) if "```python" in m.content)
    assert answer[cut].content.endswith("```")  # closed where the message ends...
    assert answer[cut + 1].content.startswith("```python\n")  # ...and reopened in the next
    # Nothing in the text pings; only the first part, a reply, may notify the one answered.
    assert all(m.silent and (m.allowed_mentions or {}).get("parse") == [] for m in answer)
    assert not any({"users", "roles"} & set(m.allowed_mentions or {}) for m in answer)
    text = "".join(m.content for m in answer)
    assert all(f"step_{i} = do_something({i})" in text for i in range(90))


async def test_two_users_in_one_channel_at_once(tmp_path: Path) -> None:
    options = {"reply": echo_then_words(25), "token_delay": 0.01}
    async with discord_world(tmp_path, llm_options=options) as w:
        alice_asked, bob_asked = await asyncio.gather(
            w.say("alpha plan", author_id=w.alice), w.say("beta plan", author_id=w.bob)
        )
        alice, bob = await asyncio.gather(
            w.final_answer(alice_asked, lambda text: text.endswith("word24")),
            w.final_answer(bob_asked, lambda text: text.endswith("word24")),
        )
        alice_history, bob_history = await stored(w, w.alice), await stored(w, w.bob)

    assert "Coach: alpha plan." in alice[0].content and "beta" not in alice[0].content
    assert "Coach: beta plan." in bob[0].content and "alpha" not in bob[0].content
    for request in w.llm.requests:  # neither model call saw the other person
        prompt = str(request.body["messages"])
        assert ("alpha" in prompt) != ("beta" in prompt)
    assert [t for r, t, _ in alice_history if r is Role.USER] == ["alpha plan"]
    assert [t for r, t, _ in bob_history if r is Role.USER] == ["beta plan"]
    # both streamed at the same time, through the one bucket of their channel
    assert alice[0].edits and bob[0].edits
    assert writes_are_spaced(channel_writes(w, w.coaching_channel))


async def test_many_channels_at_once_stay_under_the_global_limit(tmp_path: Path) -> None:
    """Four channels answered at once by a bot Discord allows 3 requests/s in all (the fake
    refuses the 4th in any second): no 429, every reply whole, and "typing…" only where a
    slot was free, since queued replies need the slots for their text."""
    channels = [1100000000000000210 + n for n in range(4)]
    users = [1100000000000000310 + n for n in range(4)]
    discord_options = {"channel_ids": channels, "user_ids": users, "global_limit": (3, 1.0)}
    async with discord_world(
        tmp_path, discord_options=discord_options, discord_channel_ids=channels,
        discord_global_rate_limit=3, llm_options={"reply": "Short and sweet."},
    ) as w:
        # The login's own requests count too (at Discord's 50/s they fit in the headroom).
        await asyncio.sleep(1.0)
        asked = await asyncio.gather(*(
            w.say(f"hello {n}", channel_id=c, author_id=u)
            for n, (c, u) in enumerate(zip(channels, users, strict=True))
        ))
        for channel, message_id in zip(channels, asked, strict=True):
            await w.final_answer(
                message_id, lambda text: text.endswith("Short and sweet."), channel, within=15.0
            )
        typing = [c for c in w.discord.calls if c.path.endswith("/typing")]
    assert w.discord.rate_limited == 0
    assert 1 <= len(typing) < len(channels)


# --- Access and safety ----------------------------------------------------------------------


async def test_denied_access_names_the_next_window_in_discord_time(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        alice = w.identity(w.alice)
        for line in ("goal add Run 5 km", "schedule tomorrow 9am", "track"):
            await run_command(w.coach, alice, line)
        opens = int((T0 + timedelta(days=1) - timedelta(minutes=30)).timestamp())

        asked = await w.say("can we talk?")
        (answer,) = await w.final_answer(asked, lambda text: "next window" in text)
        assert f"<t:{opens}:F>" in answer.content  # every client shows it in local time

        await run_command(w.coach, alice, "timezone Europe/Paris")
        asked = await w.say("and now?")
        (answer,) = await w.final_answer(asked, lambda text: "next window" in text)
        assert "09:30 (Europe/Paris)" in answer.content and "<t:" not in answer.content
    assert w.llm.requests == []


async def test_crisis_message_gets_the_safety_reply(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        alice = w.identity(w.alice)
        for line in ("goal add Run 5 km", "schedule tomorrow 9am", "track"):
            await run_command(w.coach, alice, line)  # even with the window closed
        asked = await w.say("honestly I want to die")
        (answer,) = await w.final_answer(asked, lambda text: SAFETY_REPLY in text)
    assert w.llm.requests == [] and answer.content.endswith(SAFETY_REPLY)


# --- Faults -------------------------------------------------------------------------------


async def test_429_during_streaming_is_waited_out(tmp_path: Path) -> None:
    options = {"reply": words(30), "token_delay": 0.01}
    async with discord_world(tmp_path, llm_options=options) as w:
        w.discord.rate_limit_next(
            "PATCH", f"/channels/{w.coaching_channel}/messages/*", retry_after=0.1
        )
        counted = rate_limited("discord")
        asked = await w.say("go")
        (answer,) = await w.final_answer(asked, lambda text: text.endswith("word29"))
    patches = [c for c in w.discord.calls if c.method == "PATCH"]
    assert w.discord.rate_limited == 1 and patches[0].status == 429
    assert rate_limited("discord") == counted + 1  # waited out by discord.py, still counted
    assert patches[1].time - patches[0].time >= 0.1
    assert answer.content.endswith("word29")  # the edit after the wait carried the newest text


async def test_channel_bucket_headers_keep_the_bot_under_the_limit(tmp_path: Path) -> None:
    options = {"reply": words(30), "token_delay": 0.005}
    async with discord_world(
        tmp_path, llm_options=options, discord_options={"message_bucket": (3, 0.3)}
    ) as w:
        asked = await w.say("go")
        await w.final_answer(asked, lambda text: text.endswith("word29"))
    assert w.discord.rate_limited == 0


@pytest.mark.parametrize("said", [4, 0], ids=["mid-stream", "before-any-text"])
async def test_llm_failure_ends_the_message_with_a_note(tmp_path: Path, said: int) -> None:
    async with discord_world(tmp_path, llm_options={"reply": words(20)}) as w:
        await w.say("warm-up")  # the welcome goes with the first reply, not this one
        await w.discord.wait_for(lambda: len(w.llm.requests) == 1 and w.llm.requests[0].finished_at)
        w.llm.enqueue(StreamError(after=said) if said else HttpError(529))
        asked = await w.say("go")
        (answer,) = await w.final_answer(asked, lambda text: "⚠️" in text)
        history = await stored(w, w.alice)
    kept = words(said)
    assert answer.content.startswith(kept) if said else answer.content.startswith("⚠️")
    assert "word5" not in answer.content and STREAMING_INDICATOR not in answer.content
    assert history[-1][0] is (Role.ASSISTANT if said else Role.USER)
    if said:
        assert history[-1] == (Role.ASSISTANT, kept, False)  # saved, marked incomplete


async def test_gateway_reconnect_mid_reply(tmp_path: Path) -> None:
    options = {"reply": echo_then_words(30), "token_delay": 0.01}
    async with discord_world(tmp_path, llm_options=options) as w:
        asked = await w.say("first")
        await w.discord.wait_for(lambda: w.answers_to(asked))
        await w.discord.drop_gateway(4000)  # mid-reply: REST writes go on
        missed = await w.say("while you were away", author_id=w.bob)  # replayed on RESUME
        await w.discord.wait_for(lambda: w.discord.resumes == 1)
        await w.final_answer(asked, lambda text: text.endswith("word29"))
        await w.final_answer(missed, lambda text: text.endswith("word29"))
        # Discord may deliver an event twice: the message id dedupes it
        duplicate = w.discord.message(missed).data | {"guild_id": str(w.discord.guild_id)}
        await w.discord.dispatch("MESSAGE_CREATE", duplicate)
        later = await w.say("after")
        await w.final_answer(later, lambda text: text.endswith("word29"))
        references = [m.data.get("message_reference", {}) for m in w.bot_messages()]
        assert [r.get("message_id") for r in references].count(str(missed)) == 1
    assert [r.last_user_text for r in w.llm.requests] == ["first", "while you were away", "after"]


async def test_bots_and_own_messages_are_ignored(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        from_bot = await w.say("beep boop", from_bot=True)
        asked = await w.say("hello")  # its reply is echoed back to the bot as MESSAGE_CREATE
        await w.final_answer(asked, lambda text: "Coach: hello" in text)
        later = await w.say("again")
        await w.final_answer(later, lambda text: "Coach: again" in text)
        echoes = [c for c in w.discord.calls if c.method == "POST"]
        assert w.answers_to(from_bot) == []
    assert [r.last_user_text for r in w.llm.requests] == ["hello", "again"]
    assert echoes  # the bot did write, and saw its own messages come back


# --- Pure routing -------------------------------------------------------------------------


def test_threads_inside_coaching_channels_count() -> None:
    coaching = frozenset({10})
    assert in_coaching_channel(10, None, coaching)
    assert in_coaching_channel(99, 10, coaching)  # a thread whose parent is a coaching channel
    assert not in_coaching_channel(99, 11, coaching)
    assert not in_coaching_channel(11, None, coaching)


def test_mentions_of_the_bot_are_stripped() -> None:
    assert strip_mention("<@42> hi <@!42> there", 42) == "hi   there"
    assert strip_mention("ask <@7> too", 42) == "ask <@7> too"


async def test_a_replayed_message_does_not_hold_up_the_next_reply(tmp_path: Path) -> None:
    """Discord replays a message (RESUME) as the user sends a new one. The replay is ignored,
    so its reply ends while its "typing…" request is still out; cutting that request off
    left discord.py's typing route waiting, and the new reply waited behind it (~30 s)."""
    async with discord_world(tmp_path) as w:
        first = w.discord.message_create("hello")
        await w.discord.dispatch("MESSAGE_CREATE", first)
        await w.final_answer(int(first["id"]), lambda text: "Coach: hello" in text)
        await w.discord.dispatch("MESSAGE_CREATE", first)  # the replay
        asked = await w.say("next")
        await w.final_answer(asked, lambda text: "Coach: next" in text, within=5.0)
        assert len(w.answers_to(int(first["id"]))) == 1
