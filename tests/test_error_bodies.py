"""Platform errors that are not JSON: a proxy's text/plain 503, an HTML 502 page, a page
mislabelled as JSON (tests/fakes/proxy_pages.py), at every call Momentum makes to Slack and
Discord. Run with the fault suite (`pytest -m faults`).

What the SDKs make of such a body (tests/test_fake_slack.py and tests/test_fake_discord.py
show it): slack_sdk raises SlackApiError whose `response.data` is the text (text/plain), `{}`
(HTML), or whose `response` is aiohttp's ClientResponse (mislabelled); discord.py raises
HTTPException with the body as `text` and `code` 0, retries a 502 itself, and raises
JSONDecodeError for the mislabelled page. Whatever the body, an optional call (status,
users.info, typing) is skipped and the reply arrives whole, once; a write the reply needs is
retried with the newest text as any 5xx is; a call that cannot be done without ends in the
usual clear note. Each test checks what the user sees and that nothing they said is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from discord.gateway import DiscordWebSocket
from discord.http import Route
from slack_sdk.errors import SlackApiError

from bots.discord import render as discord_render
from bots.discord import reply as discord_reply
from bots.discord.ephemeral import SOMETHING_WENT_WRONG
from bots.discord.notify import discord_notifier
from bots.discord.render import EXPORT_FILENAME
from bots.slack.notify import SlackNotifier, web_client
from bots.slack.render import WARNING, our_text
from core.models import Identity, Platform, Role, User
from core.texts import INTERNAL_ERROR_TEXT
from scheduler.notify import Delivery, Notifiers
from tests.discord_world import discord_world
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.proxy_pages import PROXY_ANSWERS, ProxyAnswer
from tests.fakes.slack_api import (
    RESPONSE_URL,
    USER_ID,
    FakeSlack,
    app_home_opened_event,
    dm_channel_id,
    slash_command_body,
)
from tests.slack_harness import TOKEN, deployment
from tests.slack_harness import identity as slack_identity
from tests.support import T0, make_settings
from tests.test_faults import (
    WRITE_CASES,
    Chat,
    DiscordChat,
    SlackChat,
    answered_whole_once,
    chat_on,
    coach_reply,
    serves_again,
    stored,
    whole_reply,
)

pytestmark = [pytest.mark.faults, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

DM = dm_channel_id(USER_ID)


@pytest.fixture(params=list(PROXY_ANSWERS.values()), ids=list(PROXY_ANSWERS))
def answer(request: pytest.FixtureRequest) -> ProxyAnswer:
    """What the proxy in front of the platform says instead of the platform."""
    answer: ProxyAnswer = request.param
    return answer


def refuse(chat: Chat, call: str, answer: ProxyAnswer, *, after_applying: bool = False) -> None:
    """The next `call` (a Slack method, or Discord's `METHOD /path/pattern`) gets `answer`;
    `after_applying`: the platform carried the call out before the proxy answered."""
    args = answer.fail_args() | {"after_applying": after_applying}
    if isinstance(chat, SlackChat):
        chat.d.fake.fail_next(call, **args)
        return
    assert isinstance(chat, DiscordChat)
    method, path = call.split(" ")
    chat.w.discord.fail_next(method, path, **args)


async def hello_answered_whole_once(chat: Chat) -> None:
    """The user says hello: answered whole, once, both sides kept, the next one as usual."""
    await answered_whole_once(chat, await chat.say("hello"))


# --- Writes the reply needs: retried as any 5xx, with the newest text --------------------------


@pytest.mark.parametrize(("platform", "write"), WRITE_CASES)
async def test_a_refused_write_is_retried_whatever_the_body(
    tmp_path: Path, platform: str, write: str, answer: ProxyAnswer
) -> None:
    """chat.postMessage / chat.update (edits), chat.startStream / appendStream / stopStream
    (native: it hands over to edits), Discord's message POST and PATCH."""
    async with chat_on(platform, tmp_path, llm={"token_delay": 0.01}) as chat:
        refuse(chat, write, answer)
        await hello_answered_whole_once(chat)
        assert chat.refused() == 1


@pytest.mark.parametrize("platform", ["slack-edits", "discord"])
async def test_a_post_taken_before_a_proxy_page_is_shown_once(
    tmp_path: Path, platform: str, answer: ProxyAnswer
) -> None:
    """The platform made the post, then the proxy answered with its page: Slack's lookup
    (conversations.replies) or Discord's nonce finds that message, and the reply goes on in
    it instead of showing twice."""
    write = "chat.postMessage" if platform == "slack-edits" else "POST /channels/*/messages"
    async with chat_on(platform, tmp_path, llm={"token_delay": 0.01}) as chat:
        refuse(chat, write, answer, after_applying=True)
        await hello_answered_whole_once(chat)


async def test_a_failed_lookup_after_a_5xx_posts_again(
    tmp_path: Path, answer: ProxyAnswer
) -> None:
    """A post met a 5xx (not taken); the lookup for it (conversations.replies) meets the
    proxy's page: the post is made again, and the user sees the reply once."""
    async with chat_on("slack-edits", tmp_path, llm={"token_delay": 0.01}) as chat:
        assert isinstance(chat, SlackChat)
        chat.d.fake.fail_next("chat.postMessage", "internal_error", status=503)
        refuse(chat, "conversations.replies", answer)
        await hello_answered_whole_once(chat)
        lookup = chat.d.fake.calls_to("conversations.replies")[0]
        assert lookup.status == answer.status


# --- Optional calls: skipped, and the reply arrives whole, once --------------------------------


@pytest.mark.parametrize("platform", ["slack-native", "slack-edits"])
async def test_a_refused_status_is_skipped(
    tmp_path: Path, platform: str, answer: ProxyAnswer
) -> None:
    """assistant.threads.setStatus ("is thinking…") is a courtesy."""
    async with chat_on(platform, tmp_path) as chat:
        assert isinstance(chat, SlackChat)
        refuse(chat, "assistant.threads.setStatus", answer)
        await hello_answered_whole_once(chat)
        statuses = chat.d.fake.calls_to("assistant.threads.setStatus")
        assert statuses[0].status == answer.status and statuses[1].status == 200


async def test_a_refused_users_info_is_skipped_and_tried_again(
    tmp_path: Path, answer: ProxyAnswer
) -> None:
    """users.info (the user's Slack timezone) is a courtesy; a passing refusal is asked
    again at the next message, so the timezone is adopted after all."""
    async with chat_on("slack-native", tmp_path) as chat:
        assert isinstance(chat, SlackChat)
        chat.d.fake.add_user(USER_ID, tz="Asia/Kolkata")
        refuse(chat, "users.info", answer)
        said = await chat.say("hello")
        assert chat.replies(said) == [whole_reply("hello")]
        assert (await chat.coach.user(chat.identity)).timezone is None
        await serves_again(chat, unanswered="")
        assert (await chat.coach.user(chat.identity)).timezone == "Asia/Kolkata"
        assert [c.status for c in chat.d.fake.calls_to("users.info")] == [answer.status, 200]


async def test_refused_typing_is_skipped(tmp_path: Path, answer: ProxyAnswer) -> None:
    """Discord's "typing…" is a courtesy (discord.py itself waits out a 502 and tries again)."""
    async with chat_on("discord", tmp_path) as chat:
        refuse(chat, "POST /channels/*/typing", answer)
        await hello_answered_whole_once(chat)
        assert isinstance(chat, DiscordChat)
        typing = [c.status for c in chat.w.discord.calls if c.path.endswith("/typing")]
        assert typing[0] == answer.status


@pytest.mark.parametrize("native", [True, False], ids=["native", "edits"])
async def test_a_refused_welcome_opens_the_reply_instead(
    tmp_path: Path, native: bool, answer: ProxyAnswer
) -> None:
    """The welcome is posted once per user, before the first reply. Refused, it is not lost
    and does not cost the reply: it opens the reply."""
    llm = FakeAnthropic(reply=coach_reply)
    async with deployment(tmp_path, llm=llm, slack_native_streaming=native) as d:
        d.fake.fail_next("chat.postMessage", **answer.fail_args())
        chat = SlackChat(d)
        said = await chat.say("hello")
        welcome = our_text(d.coach.persona.welcome)
        assert chat.replies(said) == [f"{welcome}\n\n{whole_reply('hello')}"]
        assert await stored(chat) == [
            (Role.USER, "hello", True),
            (Role.ASSISTANT, whole_reply("hello"), True),
        ]
        await serves_again(chat)  # welcomed once: no second welcome


# --- Calls that cannot be done without: the usual clear note -----------------------------------


async def test_a_refused_export_dm_ends_in_the_usual_note(
    tmp_path: Path, answer: ProxyAnswer
) -> None:
    """/coach export opens our DM (conversations.open): refused, the user is told, nothing
    of theirs is touched, and the export works once Slack answers again."""
    async with deployment(tmp_path) as d:
        await d.command("goal add Run 5k")
        d.fake.fail_next("conversations.open", **answer.fail_args())
        told = await d.command("export")
        assert told["text"] == f"{WARNING} {INTERNAL_ERROR_TEXT}"
        assert d.fake.messages(DM) == []
        assert [goal.text for goal in await d.coach.goals(slack_identity())] == ["Run 5k"]
        again = await d.command("export")
        assert again["text"] == "Your data export is in our DM (1 message)."
        assert "Run 5k" in d.fake.messages(DM)[0].text


async def test_a_refused_response_url_is_tried_again_then_logged(
    tmp_path: Path, answer: ProxyAnswer, caplog: pytest.LogCaptureFixture
) -> None:
    """A /coach answer goes through the response_url, whose refusals slack_sdk returns
    rather than raises: a passing one is tried again; one that stays is logged."""
    async with deployment(tmp_path) as d:
        d.fake.fail_next(RESPONSE_URL, **answer.fail_args())
        shown = await d.command("goal add Run 5k")
        assert "Saved: Run 5k" in str(shown["blocks"])
        d.fake.fail_next(RESPONSE_URL, **answer.fail_args(), times=2)
        body = slash_command_body(
            "/coach", "goals", response_url=d.fake.response_url("lost"), user=USER_ID
        )
        with caplog.at_level(logging.WARNING, logger="bots.slack"):
            await d.deliver(body)
        assert d.fake.responses("lost") == []
        assert f"answer to /coach goals through its response_url: HTTP {answer.status}" in (
            caplog.text
        )
        assert [goal.text for goal in await d.coach.goals(slack_identity())] == ["Run 5k"]


async def test_a_refused_home_tab_is_logged_and_published_next_time(
    tmp_path: Path, answer: ProxyAnswer, caplog: pytest.LogCaptureFixture
) -> None:
    """views.publish refused: logged with the user, nothing crashes, the next opening of the
    Home tab publishes it, and messages are answered meanwhile."""
    async with chat_on("slack-native", tmp_path) as chat:
        assert isinstance(chat, SlackChat)
        d = chat.d
        d.fake.fail_next("views.publish", **answer.fail_args())
        with caplog.at_level(logging.ERROR, logger="bots.slack"):
            await d.deliver(app_home_opened_event())
        assert d.fake.home_views == {}
        assert f"home:{USER_ID}" in caplog.text
        await d.deliver(app_home_opened_event())
        assert "Your Momentum" in str(d.fake.home_views[USER_ID]["blocks"])
        await hello_answered_whole_once(chat)


# --- The scheduler's notifiers: the error propagates, and the delivery retries it -------------


def slack_user() -> User:
    return User(identity=slack_identity(), created_at=T0)


@pytest.mark.parametrize("call", ["conversations.open", "chat.postMessage"])
async def test_a_slack_notification_is_retried_whatever_the_body(
    call: str, answer: ProxyAnswer
) -> None:
    async with FakeSlack() as fake:
        settings = make_settings(slack_bot_token=TOKEN, slack_api_url=fake.base_url)
        notifier = SlackNotifier(web_client(settings, retry_rate_limits=True))
        fake.fail_next(call, **answer.fail_args())
        with pytest.raises(SlackApiError):  # a platform error, not an AttributeError
            await notifier.notify(slack_user(), "Your window is open.")
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)

        delivery = Delivery(Notifiers({Platform.SLACK: notifier}), delays=(0.5,), sleep=sleep)
        fake.fail_next(call, **answer.fail_args())
        assert await delivery.send(slack_user(), "Your window is open.")
        assert waits == [0.5]
        assert [m.text for m in fake.messages(DM)] == ["Your window is open."]


@pytest.fixture
def discord_urls_restored() -> Iterator[None]:
    """The notifier points discord.py's class-level URLs at the fake: undo that."""
    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    yield
    Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved


@pytest.mark.parametrize(
    "call", ["POST /users/@me/channels", "POST /channels/*/messages"], ids=["open-dm", "send"]
)
async def test_a_discord_notification_is_retried_whatever_the_body(
    call: str, answer: ProxyAnswer, discord_urls_restored: None
) -> None:
    """discord.py waits out a 502 itself; a 503 and a mislabelled page reach the delivery,
    which tries again. The user is told once."""
    async with FakeDiscord() as fake:
        settings = make_settings(
            discord_bot_token=fake.token,
            discord_api_url=fake.api_url,
            discord_gateway_url=fake.gateway_url,
            discord_channel_ids=fake.channel_ids[:1],
        )
        notifier = discord_notifier(settings)
        assert notifier is not None
        user_id = fake.user_ids[0]
        user = User(
            identity=Identity(platform=Platform.DISCORD, external_id=str(user_id)), created_at=T0
        )
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)

        delivery = Delivery(Notifiers({Platform.DISCORD: notifier}), delays=(0.5,), sleep=sleep)
        method, path = call.split(" ")
        fake.fail_next(method, path, **answer.fail_args())
        try:
            assert await delivery.send(user, "Your window is open.")
        finally:
            await notifier.aclose()
        assert waits == ([] if answer.status == 502 and "html" in answer.content_type else [0.5])
        (sent,) = fake.messages_in(fake.dm_channels[user_id])
        assert sent.content == "Your window is open."


# --- Discord's /coach: the interaction callback and the follow-up webhook ---------------------


@pytest.mark.parametrize("step", ["callback", "followup"])
async def test_a_refused_command_answer_is_retried_or_ends_in_the_note(
    tmp_path: Path, step: str, answer: ProxyAnswer
) -> None:
    """discord.py retries a webhook or callback 5xx itself (after 1 s): the user gets the
    answer. A page mislabelled as JSON cannot be read at all: the user gets the usual note.
    Either way what they asked for was done: the goal is kept, the export can be had."""
    async with discord_world(tmp_path) as w:
        fake = w.discord
        if step == "callback":
            fake.fail_next("POST", "/interactions/*/*/callback", **answer.fail_args())
            _, message = await w.command({"goal": "Run 5k"}, group="goal", subcommand="add")
            done = "Saved: Run 5k"
        else:
            fake.fail_next("POST", "/webhooks/*/*", **answer.fail_args())
            _, message = await w.command({}, subcommand="export")
            done = "Here is everything I keep about you."
        readable = answer.content_type != "application/json"
        assert message.ephemeral
        assert (done in message.content) if readable else message.content == SOMETHING_WENT_WRONG
        if step == "callback":
            goals = await w.coach.goals(w.identity(w.alice))
            assert [goal.text for goal in goals] == ["Run 5k"]
        else:
            attachments = [a["filename"] for a in message.data["attachments"]]
            assert attachments == ([EXPORT_FILENAME] if readable else [])
            _, again = await w.command({}, subcommand="export")
            assert [a["filename"] for a in again.data["attachments"]] == [EXPORT_FILENAME]


@pytest.mark.parametrize("body", ["text-503", "mislabelled-503"])  # a 502 discord.py retries
async def test_a_refused_note_about_an_unfinished_reply_is_tried_again(
    tmp_path: Path, body: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The note telling a user their reply broke off meets the proxy too: logged with what
    came back (never an exception out of the message handler), and tried again until it
    lands."""
    monkeypatch.setattr(discord_reply, "NOTE_FIRST_WAIT_SECONDS", 0.01)
    async with discord_world(tmp_path) as w:
        channel = w.bot.get_partial_messageable(w.coaching_channel)
        w.discord.fail_next("POST", "/channels/*/messages", **PROXY_ANSWERS[body].fail_args())
        with caplog.at_level(logging.WARNING, logger="bots.discord.bot"):
            await discord_reply.tell_unfinished(channel, w.bot.global_budget)
        assert "refused the note about an unfinished reply" in caplog.text
        assert [m.content for m in w.bot_messages()] == [
            discord_render.failure_note(INTERNAL_ERROR_TEXT)
        ]
