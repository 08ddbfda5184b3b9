"""The fault suite: what a user notices when the model, the platform or the database fails.

Run it alone with `pytest -m faults`. Every test drives a real adapter (Slack through
tests/slack_harness.py, Discord through tests/discord_world.py) with the real SDKs against the
loopback fakes, and checks what the user would see on the platform fake:

- one clear, friendly message saying what went wrong (the exact text);
- nothing the user said is lost: their message is in the store, or, when the database was
  down, they were told so and the platform's retry of the same event is answered normally;
- no duplicated reply: one reply per message, and a retry of an answered event adds nothing;
- once the fault clears, the next message gets a normal, complete reply from the same bot.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from bots.discord import render as discord_render
from bots.discord import reply as discord_reply
from bots.slack import render as slack_render
from bots.stream import MAX_RATE_LIMIT_RETRIES, STREAMING_INDICATOR
from core.coach import Coach
from core.llm import USER_TEXT, ErrorKind
from core.models import Identity, Role
from core.texts import INTERNAL_ERROR_TEXT, STORE_DOWN_AFTER_REPLY_TEXT, STORE_DOWN_TEXT
from tests.discord_world import World, discord_world
from tests.fakes.anthropic_api import (
    Behaviour,
    Drop,
    FakeAnthropic,
    HttpError,
    Reply,
    Stall,
    StreamError,
)
from tests.fakes.slack_api import USER_ID, dm_channel_id, message_event
from tests.slack_harness import Deployment, deployment
from tests.slack_harness import identity as slack_identity

pytestmark = [pytest.mark.faults, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

PLATFORMS = ["slack-native", "slack-edits", "discord"]
DM = dm_channel_id(USER_ID)
WITHIN = 10.0  # seconds: the most any wait here may take before the test fails


def coach_reply(body: dict[str, Any]) -> str:
    """The fake model's answer: names what it was told, in enough words to cut short."""
    said = body["messages"][-1]["content"]
    text = said if isinstance(said, str) else "".join(b.get("text", "") for b in said)
    return f"You said {text}, and that is a great start."


def first_words(text: str, count: int = 3) -> str:
    """What a user saw of `coach_reply(text)` when the model failed after `count` deltas."""
    return " ".join(coach_reply({"messages": [{"content": text}]}).split()[:count])


def whole_reply(text: str) -> str:
    return coach_reply({"messages": [{"content": text}]})


# --- One chat, on either platform ------------------------------------------------------------


@dataclass
class Said:
    """A user message as the platform delivered it: to find its replies, or deliver it again."""

    text: str
    event: dict[str, Any]


class Chat(Protocol):
    """A user talking to the running bot on one platform, as the tests see it."""

    @property
    def llm(self) -> FakeAnthropic: ...
    @property
    def coach(self) -> Coach: ...
    @property
    def identity(self) -> Identity: ...

    def note(self, user_text: str) -> str:
        """How the platform shows the coach's failure sentence."""
        ...

    async def say(self, text: str, *, replies: int = 1) -> Said:
        """Send a message and wait until the bot has finished `replies` replies to it."""
        ...

    async def send(self, text: str) -> Said:
        """Send a message and return at once."""
        ...

    async def resend(self, said: Said, *, replies: int) -> None:
        """The platform delivers the same event again; wait for `replies` replies in all."""
        ...

    async def settle(self, said: Said, *, replies: int = 1) -> None: ...

    def replies(self, said: Said) -> list[str]:
        """The final text of each bot reply to `said`, in order."""
        ...

    def refuse(self, write: str, status: int, times: int) -> None:
        """The platform answers the next `times` calls of `write` with HTTP `status`."""
        ...

    def refused(self) -> int:
        """How many writes the platform refused so far."""
        ...


@dataclass
class SlackChat:
    d: Deployment
    identity: Identity = field(default_factory=slack_identity)

    @property
    def llm(self) -> FakeAnthropic:
        return self.d.llm

    @property
    def coach(self) -> Coach:
        return self.d.coach

    def note(self, user_text: str) -> str:
        return slack_render.failure_note(user_text)

    async def send(self, text: str) -> Said:
        envelope = message_event(text)
        response = await self.d.send(envelope)
        assert response.status == 200  # acked at once, whatever fails later
        return Said(text, envelope)

    async def say(self, text: str, *, replies: int = 1) -> Said:
        said = await self.send(text)
        await self.settle(said, replies=replies)
        return said

    async def resend(self, said: Said, *, replies: int) -> None:
        response = await self.d.send(said.event, retry_num=1)
        assert response.status == 200
        await self.settle(said, replies=replies)

    async def settle(self, said: Said, *, replies: int = 1) -> None:
        async with asyncio.timeout(WITHIN):
            await self.d.bot.wait_idle()
        assert len(self.replies(said)) == replies, self.replies(said)

    def replies(self, said: Said) -> list[str]:
        # FakeSlack keeps only the bot's messages (a bot ts may equal the user's, so no filter)
        return [m.text for m in self.d.fake.messages(DM, thread_ts=said.event["event"]["ts"])]

    def refuse(self, write: str, status: int, times: int) -> None:
        if status == 429:
            self.d.fake.fail_next(write, status=429, retry_after=0, times=times)
        else:
            self.d.fake.fail_next(write, "internal_error", status=status, times=times)

    def refused(self) -> int:
        return sum(1 for call in self.d.fake.calls if call.status != 200)


@dataclass
class DiscordChat:
    w: World

    @property
    def llm(self) -> FakeAnthropic:
        return self.w.llm

    @property
    def coach(self) -> Coach:
        return self.w.coach

    @property
    def identity(self) -> Identity:
        return self.w.identity(self.w.alice)

    def note(self, user_text: str) -> str:
        return discord_render.failure_note(user_text)

    async def send(self, text: str) -> Said:
        payload = self.w.discord.message_create(text)
        await self.w.discord.dispatch("MESSAGE_CREATE", payload)
        return Said(text, payload)

    async def say(self, text: str, *, replies: int = 1) -> Said:
        said = await self.send(text)
        await self.settle(said, replies=replies)
        return said

    async def resend(self, said: Said, *, replies: int) -> None:
        await self.w.discord.dispatch("MESSAGE_CREATE", said.event)
        await self.settle(said, replies=replies)

    async def settle(self, said: Said, *, replies: int = 1) -> None:
        def finished() -> bool:
            texts = self._reply_messages(said)
            return len(texts) >= replies and not texts[-1][-1].endswith(STREAMING_INDICATOR)

        await self.w.discord.wait_for(finished, WITHIN)
        assert len(self.replies(said)) == replies, self.replies(said)

    def _reply_messages(self, said: Said) -> list[list[str]]:
        """Each reply to `said` as its messages' contents: a reply starts with a message
        referencing `said`, and continues in the bot's messages that reference nothing."""
        replies: list[list[str]] = []
        current: list[str] | None = None
        for message in self.w.bot_messages():
            reference = message.data.get("message_reference", {}).get("message_id")
            if reference is not None:
                current = [message.content] if reference == said.event["id"] else None
                if current is not None:
                    replies.append(current)
            elif current is not None:
                current.append(message.content)
        return replies

    def replies(self, said: Said) -> list[str]:
        return ["".join(parts) for parts in self._reply_messages(said)]

    def refuse(self, write: str, status: int, times: int) -> None:
        method, path = write.split(" ")
        if status == 429:
            self.w.discord.rate_limit_next(method, path, retry_after=0.01, times=times)
        else:
            self.w.discord.fail_next(
                method, path, status=status, code=0, message="Server error", times=times
            )

    def refused(self) -> int:
        return sum(1 for call in self.w.discord.calls if call.status >= 400)


@asynccontextmanager
async def chat_on(
    platform: str, tmp_path: Path, *, llm: dict[str, Any] | None = None, **settings: Any
) -> AsyncIterator[Chat]:
    """The running bot on `platform`, its fake model answering `coach_reply`, and a user
    who has been welcomed already (the welcome is not what these tests are about)."""
    llm_options = {"reply": coach_reply, **(llm or {})}
    chat: Chat
    if platform == "discord":
        async with discord_world(tmp_path, llm_options=llm_options, **settings) as w:
            chat = DiscordChat(w)
            await welcomed(chat)
            yield chat
        return
    native = platform == "slack-native"
    async with deployment(
        tmp_path, llm=FakeAnthropic(**llm_options), slack_native_streaming=native, **settings
    ) as d:
        chat = SlackChat(d)
        await welcomed(chat)
        yield chat


async def welcomed(chat: Chat) -> None:
    user = await chat.coach.user(chat.identity)
    await chat.coach.store.update_user(user.id, welcomed=True)


async def stored(chat: Chat) -> list[tuple[Role, str, bool]]:
    """The user's conversation as the store has it: (role, text, complete)."""
    user = await chat.coach.user(chat.identity)
    return [(m.role, m.text, m.complete) for m in await chat.coach.store.messages_between(user.id)]


async def serves_again(chat: Chat, *, unanswered: str = "") -> str:
    """The fault has cleared: the next message gets a normal, complete reply, exactly once.

    A message the coach never answered (`unanswered`) is not forgotten: the model is asked
    about it together with the new one. Returns the reply."""
    before = len(chat.llm.requests)
    said = await chat.say("Back again")
    asked = f"{unanswered}\n\nBack again" if unanswered else "Back again"
    assert chat.llm.last_request.last_user_text == asked
    assert len(chat.llm.requests) == before + 1
    assert chat.replies(said) == [whole_reply(asked)]
    return whole_reply(asked)


async def answered_whole_once(chat: Chat, said: Said) -> None:
    """`said` was answered whole, once, both sides are kept, and the next message is
    answered as usual (without a second reply to `said`)."""
    assert chat.replies(said) == [whole_reply(said.text)]
    assert await stored(chat) == [
        (Role.USER, said.text, True),
        (Role.ASSISTANT, whole_reply(said.text), True),
    ]
    await serves_again(chat)
    assert chat.replies(said) == [whole_reply(said.text)]


@pytest.fixture(params=PLATFORMS)
def platform(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- The model fails ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFault:
    script: tuple[Behaviour, ...]
    kind: ErrorKind
    shown: int  # words of the reply the user saw before the failure
    requests: int  # requests the SDK made for the message (retries included)
    settings: dict[str, Any] = field(default_factory=dict)


MODEL_FAULTS = {
    # The SDK retries an overload twice, then gives up: the user is told, nothing half-said.
    "overloaded-529": ModelFault(
        (HttpError(529, retry_after=0.01),) * 3, "unavailable", 0, 3,
        {"anthropic_max_retries": 2},
    ),
    "rate-limited-429": ModelFault(
        (HttpError(429, retry_after=0.01),) * 3, "rate_limited", 0, 3,
        {"anthropic_max_retries": 2},
    ),
    "error-event-mid-stream": ModelFault((StreamError(after=3),), "interrupted", 3, 1),
    "dropped-connection": ModelFault((Drop(after=3),), "interrupted", 3, 1),
    "stall": ModelFault(
        (Stall(after=3, seconds=30),), "timeout", 3, 1, {"llm_stall_seconds": 0.3}
    ),
}


@pytest.mark.parametrize("fault", MODEL_FAULTS.values(), ids=MODEL_FAULTS.keys())
async def test_model_failure_is_told_once_and_the_bot_serves_again(
    tmp_path: Path, platform: str, fault: ModelFault
) -> None:
    async with chat_on(platform, tmp_path, **fault.settings) as chat:
        chat.llm.enqueue(*fault.script)
        said = await chat.say("hello")
        assert len(chat.llm.requests) == fault.requests
        seen = first_words("hello", fault.shown)
        note = chat.note(USER_TEXT[fault.kind])
        assert chat.replies(said) == [f"{seen}\n\n{note}" if seen else note]
        # Nothing the user said is lost; what the coach said is kept, marked incomplete.
        kept = [(Role.USER, "hello", True)]
        if seen:
            kept.append((Role.ASSISTANT, seen, False))
        assert await stored(chat) == kept
        # Slack (or Discord) delivering the event again must not answer it twice.
        await chat.resend(said, replies=1)
        assert len(chat.llm.requests) == fault.requests
        reply = await serves_again(chat, unanswered="" if seen else "hello")
        assert chat.replies(said) == [f"{seen}\n\n{note}" if seen else note]
        assert await stored(chat) == [
            *kept,
            (Role.USER, "Back again", True),
            (Role.ASSISTANT, reply, True),
        ]


async def test_a_rate_limit_within_the_retries_is_waited_out_unseen(
    tmp_path: Path, platform: str
) -> None:
    """A 429 with retry-after, then success: the SDK waits as told, the user sees one reply."""
    async with chat_on(platform, tmp_path, anthropic_max_retries=2) as chat:
        chat.llm.enqueue(HttpError(429, retry_after=0.3))
        said = await chat.say("hello")
        first, second = chat.llm.requests
        assert second.received_at - first.received_at >= 0.3
        assert chat.replies(said) == [whole_reply("hello")]
        assert [text for _, text, _ in await stored(chat)] == ["hello", whole_reply("hello")]


# --- The database goes away and comes back ------------------------------------------------------


def database_file(platform: str, tmp_path: Path) -> Path:
    """Where `chat_on` keeps the SQLite file on each platform."""
    return tmp_path / ("coach.db" if platform == "discord" else "momentum.db")


@contextmanager
def locked(path: Path) -> Iterator[sqlite3.Connection]:
    """Another process holds the SQLite file's write lock until the block ends."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        yield other
        other.execute("ROLLBACK")
    finally:
        other.close()


async def until(predicate: Callable[[], object], within: float = WITHIN) -> None:
    """Poll: what we wait for lives in a file or a fake, which signal nothing."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def claimed_events(path: Path) -> int:
    """Dedupe claims in the file (a read: WAL readers pass another process's write lock)."""
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])


async def test_a_brief_lock_is_waited_out_unseen(tmp_path: Path, platform: str) -> None:
    async with chat_on(platform, tmp_path, database_timeout_seconds=5.0) as chat:
        with locked(database_file(platform, tmp_path)):
            said = await chat.send("hello")
            await asyncio.sleep(0.3)
            assert chat.llm.requests == []  # waiting for the lock, not failing
            released = time.monotonic()
        await chat.settle(said)
        assert chat.llm.requests[0].received_at >= released
        assert chat.replies(said) == [whole_reply("hello")]
        assert await stored(chat) == [
            (Role.USER, "hello", True),
            (Role.ASSISTANT, whole_reply("hello"), True),
        ]


async def test_a_lock_longer_than_the_timeout_is_told_and_the_retry_answered(
    tmp_path: Path, platform: str
) -> None:
    async with chat_on(platform, tmp_path, database_timeout_seconds=0.3) as chat:
        note = chat.note(STORE_DOWN_TEXT)
        with locked(database_file(platform, tmp_path)):
            said = await chat.say("hello")
            assert chat.replies(said) == [note]
            assert chat.llm.requests == []
        # Nothing could be kept, and the user was told so. The platform's retry of the same
        # event (Slack re-sends it; Discord replays it on RESUME) is answered, not swallowed.
        assert await stored(chat) == []
        await chat.resend(said, replies=2)
        assert chat.replies(said) == [note, whole_reply("hello")]
        assert await stored(chat) == [
            (Role.USER, "hello", True),
            (Role.ASSISTANT, whole_reply("hello"), True),
        ]
        await serves_again(chat)
        assert len(chat.replies(said)) == 2


async def test_a_message_claimed_before_the_lock_is_not_lost(tmp_path: Path, platform: str) -> None:
    """The second message is claimed (dedupe) while the first is still streaming; then the
    file locks before the second is saved. Its claim cannot even be released while the lock
    lasts, yet the retry after the lock is answered instead of being taken for a duplicate."""
    path = database_file(platform, tmp_path)
    async with chat_on(
        platform, tmp_path, database_timeout_seconds=0.3, llm={"token_delay": 0.05}
    ) as chat:
        note = chat.note(STORE_DOWN_TEXT)
        unkept = chat.note(STORE_DOWN_AFTER_REPLY_TEXT)
        first = await chat.send("first")
        await until(lambda: chat.llm.requests and chat.llm.requests[0].deltas)
        second = await chat.send("second")
        await until(lambda: claimed_events(path) == 2)  # waits its turn behind the first
        with locked(path):
            await chat.settle(first)
            await chat.settle(second)
            # The first reply was shown whole but could not be saved: the user is told.
            assert chat.replies(first) == [f"{whole_reply('first')}\n\n{unkept}"]
            assert chat.replies(second) == [note]
            assert len(chat.llm.requests) == 1
        await chat.resend(second, replies=2)
        asked = "first\n\nsecond"  # the first reply was never kept: the model sees both
        assert chat.llm.last_request.last_user_text == asked
        assert chat.replies(second) == [note, whole_reply(asked)]
        assert await stored(chat) == [
            (Role.USER, "first", True),
            (Role.USER, "second", True),
            (Role.ASSISTANT, whole_reply(asked), True),
        ]
        await chat.resend(second, replies=2)  # answered now: a further retry adds nothing
        await serves_again(chat)
        assert len(chat.replies(second)) == 2 and len(chat.replies(first)) == 1


@pytest.fixture
def mongo_server() -> Iterator[Any]:
    """A MongoDB emulator of this test's own, which it may stop and restart (the session's
    `mongo_uri` is shared, or a real server). Needs mongoeco, hence Python >= 3.13."""
    try:
        from tests.fakes.mongo_server import MongoEmulator
    except ImportError as error:
        if sys.version_info >= (3, 13):
            pytest.fail(f"mongoeco is not importable ({error}); run `make dev`")
        pytest.skip("the MongoDB outage test needs Python >= 3.13 with mongoeco")
    emulator = MongoEmulator()
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.close()


async def test_mongodb_stopped_is_told_in_bounded_time_and_the_bot_serves_on_restart(
    tmp_path: Path, mongo_server: Any
) -> None:
    async with chat_on(
        "slack-native",
        tmp_path,
        database_url=mongo_server.uri,
        mongodb_database="faults",
        database_timeout_seconds=1.0,
    ) as chat:
        note = chat.note(STORE_DOWN_TEXT)
        await serves_again(chat)  # warm: connections open, as in a running bot
        mongo_server.stop()
        started = time.monotonic()
        said = await chat.say("hello")
        assert time.monotonic() - started < 5.0  # a few server-selection timeouts at most
        assert chat.replies(said) == [note]
        mongo_server.start()
        await chat.resend(said, replies=2)
        assert chat.replies(said) == [note, whole_reply("hello")]
        assert [text for _, text, _ in await stored(chat)][-2:] == ["hello", whole_reply("hello")]
        await serves_again(chat)


# --- The platform refuses writes ---------------------------------------------------------------

# The writes each adapter makes for one reply (Slack native streaming, Slack edits, Discord).
WRITES = {
    "slack-native": ["chat.startStream", "chat.appendStream", "chat.stopStream"],
    "slack-edits": ["chat.postMessage", "chat.update"],
    "discord": ["POST /channels/*/messages", "PATCH /channels/*/messages/*"],
}
WRITE_CASES = [(platform, write) for platform, writes in WRITES.items() for write in writes]
STORM = MAX_RATE_LIMIT_RETRIES  # consecutive 429s on one write: the most a reply waits out


@pytest.mark.parametrize("status", [429, 500, 502, 503])
@pytest.mark.parametrize(("platform", "write"), WRITE_CASES)
async def test_refused_writes_are_retried_into_one_complete_reply(
    tmp_path: Path, platform: str, write: str, status: int
) -> None:
    """A storm of 429s, or a few 5xx, on a write the reply needs: the user still gets the
    whole reply, once, and the next message is answered as usual."""
    times = STORM if status == 429 else 2
    async with chat_on(platform, tmp_path, llm={"token_delay": 0.01}) as chat:
        chat.refuse(write, status, times)
        said = await chat.say("hello")
        # Slack's native stream hands over to edits at the first error that is not a 429.
        handed_over = platform == "slack-native" and status != 429
        assert chat.refused() == (1 if handed_over else times)
        await answered_whole_once(chat, said)


async def test_a_storm_outlasting_the_patience_ends_in_a_plain_note(tmp_path: Path) -> None:
    """Slack refuses every edit for longer than a reply waits: the cut reply loses its "▌",
    the user is told in a note of its own, their message is kept, and once Slack takes edits
    again the bot answers as usual (the model is asked about the message whose reply never
    arrived). The model is slow (0.1 s a word) so that the reply is given up while it still
    streams, on any machine."""
    async with chat_on("slack-edits", tmp_path, llm={"token_delay": 0.1}) as chat:
        chat.refuse("chat.update", 429, MAX_RATE_LIMIT_RETRIES + 1)  # one more than it waits
        said = await chat.say("hello", replies=2)
        frozen, told = chat.replies(said)
        # Slack took no edit while the model streamed; once it took edits again, the
        # indicator came off, so the cut reply does not look like it is still coming.
        assert not frozen.endswith(STREAMING_INDICATOR)
        assert frozen and whole_reply("hello").startswith(frozen)
        assert told == f"{slack_render.WARNING} {INTERNAL_ERROR_TEXT}"
        assert chat.refused() == MAX_RATE_LIMIT_RETRIES + 1
        # What the model had said is kept, incomplete and marked as never delivered, so the
        # model is not told it said it: it is asked about "hello" again with the next one.
        (user_message, kept) = await chat.coach.store.messages_between(
            (await chat.coach.user(chat.identity)).id
        )
        assert (user_message.text, user_message.delivered) == ("hello", True)
        assert whole_reply("hello").startswith(kept.text)
        assert (kept.role, kept.complete, kept.delivered) == (Role.ASSISTANT, False, False)
        await serves_again(chat, unanswered="hello")
        assert len(chat.replies(said)) == 2


async def test_a_discord_storm_outlasting_the_patience_ends_in_a_plain_note(
    tmp_path: Path,
) -> None:
    """Discord refuses every edit for longer than discord.py (5 tries a call) and the renderer
    (MAX_RATE_LIMIT_RETRIES more) wait: the cut message loses its "▌" and is followed by a
    plain note, and once Discord takes edits again the bot answers as usual."""
    async with chat_on("discord", tmp_path, llm={"token_delay": 0.01}) as chat:
        chat.refuse("PATCH /channels/*/messages/*", 429, 5 * (MAX_RATE_LIMIT_RETRIES + 1))
        said = await chat.send("hello")
        note = chat.note(INTERNAL_ERROR_TEXT)
        await until(lambda: chat.replies(said) and chat.replies(said)[0].endswith(note), 20.0)
        (reply,) = chat.replies(said)
        frozen = reply.removesuffix(note).rstrip()
        # Discord took no edit while the model streamed, then one without the indicator.
        assert frozen and not frozen.endswith(STREAMING_INDICATOR.strip())
        assert whole_reply("hello").startswith(frozen)
        await said_but_not_delivered(chat, "hello")
        await serves_again(chat, unanswered="hello")


async def edits_refused_past_the_patience(chat: DiscordChat) -> Said:
    """Discord refuses every edit of the reply to "hello" until the bot gives up on it;
    returns once the reply's first message is posted (the note comes after it)."""
    chat.refuse("PATCH /channels/*/messages/*", 429, 5 * (MAX_RATE_LIMIT_RETRIES + 1))
    said = await chat.send("hello")
    await chat.w.discord.wait_for_call("POST", "/channels/*/messages", within=WITHIN)
    return said


async def said_but_not_delivered(chat: Chat, text: str) -> None:
    """The model's whole reply to `text` is kept, marked as never delivered."""
    user = await chat.coach.user(chat.identity)
    *_, asked, kept = await chat.coach.store.messages_between(user.id)
    assert (asked.text, kept.text) == (text, whole_reply(text))
    assert kept.complete and not kept.delivered


async def test_a_discord_note_refused_too_is_tried_until_it_lands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The storm that made the bot give up on a reply refuses its note too (twice, past
    discord.py's own five tries each): the note is tried again, waiting longer each time,
    until it lands; the reply is kept as never delivered."""
    monkeypatch.setattr(discord_reply, "NOTE_FIRST_WAIT_SECONDS", 0.05)
    async with chat_on("discord", tmp_path, llm={"token_delay": 0.01}) as chat:
        assert isinstance(chat, DiscordChat)
        fake = chat.w.discord
        said = await edits_refused_past_the_patience(chat)
        chat.refuse("POST /channels/*/messages", 429, 5 * 2)  # the note's first two tries
        note = chat.note(INTERNAL_ERROR_TEXT)
        await until(lambda: chat.replies(said) and chat.replies(said)[0].endswith(note), 20.0)
        posts = [c for c in fake.calls if c.method == "POST" and c.path.endswith("/messages")]
        assert [c.status for c in posts] == [200] + [429] * 10 + [200]
        await said_but_not_delivered(chat, "hello")
        await serves_again(chat, unanswered="hello")


async def test_a_discord_note_is_given_up_after_its_patience(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A storm longer than the note's patience: the note is given up with an error in the
    log (bounded, not forever), and the bot serves again once Discord does."""
    monkeypatch.setattr(discord_reply, "NOTE_FIRST_WAIT_SECONDS", 0.05)
    monkeypatch.setattr(discord_reply, "NOTE_PATIENCE_SECONDS", 0.3)
    async with chat_on("discord", tmp_path, llm={"token_delay": 0.01}) as chat:
        assert isinstance(chat, DiscordChat)
        fake = chat.w.discord
        said = await edits_refused_past_the_patience(chat)
        chat.refuse("POST /channels/*/messages", 429, 5 * 100)
        await until(lambda: "giving up" in caplog.text, 20.0)
        fake.clear_faults()
        assert not chat.replies(said)[0].endswith(chat.note(INTERNAL_ERROR_TEXT))
        await said_but_not_delivered(chat, "hello")
        await serves_again(chat, unanswered="hello")


@pytest.mark.parametrize("part", [0, 1], ids=["first-message", "continuation"])
async def test_a_discord_post_taken_before_a_503_is_not_posted_twice(
    tmp_path: Path, part: int
) -> None:
    """Discord creates a message of the reply, then answers 503. The bot posts again (with
    newer text), but with the same nonce, so Discord returns the message it already has: the
    user sees the reply once, whole, and the next message is answered as usual."""
    long_text = whole_reply("hello") + " " + " ".join(f"word{i}" for i in range(300))
    text = long_text if part else whole_reply("hello")  # two messages, or one
    async with chat_on("discord", tmp_path, llm={"token_delay": 0.002}) as chat:
        assert isinstance(chat, DiscordChat)
        fake = chat.w.discord
        chat.llm.enqueue(Reply(text))
        if part:  # the first message went through; the continuation is the one taken
            said = await chat.send("hello")
            await fake.wait_for_call("POST", "/channels/*/messages", within=WITHIN)
        fake.fail_next(
            "POST",
            "/channels/*/messages",
            status=503,
            code=0,
            message="Server error",
            after_applying=True,
        )
        if not part:
            said = await chat.send("hello")
        # Until the bot's last message ends the reply (settle() could stop between parts).
        last_word = text.split()[-1]
        await fake.wait_for(
            lambda: (shown := chat.w.bot_messages()) and shown[-1].content.endswith(last_word),
            WITHIN,
        )
        assert chat.refused() == 1
        (messages,) = chat._reply_messages(said)
        assert len(messages) == part + 1 == len(chat.w.bot_messages())
        assert " ".join(messages).split() == text.split()  # whole, nothing twice
        assert await stored(chat) == [(Role.USER, "hello", True), (Role.ASSISTANT, text, True)]
        await serves_again(chat)
