"""A burst from one user, through the real adapters: twenty messages within a second, each
answered once, in the order sent, stored in that order, and each request to the model
carrying every earlier turn. On Slack the bot's own calls before a reply (the "thinking…"
status, users.info) answer in random order, as a busy Slack does: before the fix, the first
of them to come back went first (the model saw 5, 6, 7, 2, 3, 4, 8, 1, …)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from core.models import Role
from tests.test_faults import PLATFORMS, Chat, DiscordChat, SlackChat, chat_on, whole_reply

pytestmark = [pytest.mark.faults, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

BURST = 20
SETTINGS: dict[str, Any] = {"history_context_messages": 2 * BURST}


def slow_and_shuffled(chat: Chat) -> None:
    """Slack answers the calls made before each reply after 0-80 ms, in no set order."""
    if isinstance(chat, SlackChat):
        rng = random.Random(5)
        for method in ("assistant.threads.setStatus", "users.info"):
            chat.d.fake.latency[method] = lambda: rng.uniform(0, 0.08)
        chat.d.fake.add_user(chat.identity.external_id, tz="Europe/Paris")


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_burst_is_answered_in_order_with_every_earlier_turn(
    tmp_path: Path, platform: str
) -> None:
    async with chat_on(platform, tmp_path, llm={"token_delay": 0.002}, **SETTINGS) as chat:
        slow_and_shuffled(chat)
        texts = [f"message {n}" for n in range(1, BURST + 1)]
        loop = asyncio.get_running_loop()
        began = loop.time()
        burst = [await chat.send(text) for text in texts]
        assert loop.time() - began < 1.0  # twenty messages within a second
        for said in burst:
            await chat.settle(said)
        # Each message has exactly its own reply, under it.
        assert [chat.replies(said) for said in burst] == [[whole_reply(t)] for t in texts]
        # The model was asked in the order sent, and saw every earlier turn each time.
        requests = chat.llm.requests
        assert [r.last_user_text for r in requests] == texts
        for n, request in enumerate(requests):
            earlier = [part for t in texts[:n] for part in (t, whole_reply(t))]
            assert [m["content"] for m in request.body["messages"]] == [*earlier, texts[n]]
        # History reads message, reply, message, reply.
        user = await chat.coach.user(chat.identity)
        history = await chat.coach.store.messages_between(user.id)
        assert [(m.role, m.text) for m in history] == [
            pair for t in texts for pair in ((Role.USER, t), (Role.ASSISTANT, whole_reply(t)))
        ]
        if isinstance(chat, DiscordChat):  # Discord replies reference their own message
            assert all(chat._reply_messages(said) for said in burst)


async def test_a_new_users_burst_is_welcomed_under_the_first_message(tmp_path: Path) -> None:
    """Only the first message waits for users.info (the Slack timezone, once per user): the
    welcome still opens the first reply, not whichever message got ahead meanwhile."""
    from tests.slack_harness import deployment

    async with deployment(tmp_path) as d:
        chat = SlackChat(d)
        slow_and_shuffled(chat)
        burst = [await chat.send(f"message {n}") for n in range(1, 6)]
        for said in burst:
            await chat.settle(said, replies=2 if said is burst[0] else 1)
        first, *rest = [chat.replies(said) for said in burst]
        assert first[0].startswith("👋") and first[1] == "Coach: message 1"
        assert all(len(replies) == 1 and "👋" not in replies[0] for replies in rest)
