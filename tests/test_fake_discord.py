"""Stock discord.py against tests/fakes/discord_api.py: proof that the fake is faithful enough.

Each test runs a real `discord.Client` (and `app_commands.CommandTree`) over loopback.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import discord
import pytest
from discord import app_commands

from tests.fakes.discord_api import EPHEMERAL, LOADING, FakeDiscord
from tests.fakes.proxy_pages import PROXY_ANSWERS, UPSTREAM_CONNECT_ERROR


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server


class QuickClient(discord.Client):
    """discord.py sleeps 5 s before every IDENTIFY but the first; its documented hook."""

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None


def make_client(*, message_content: bool = True) -> discord.Client:
    intents = discord.Intents.default()
    intents.message_content = message_content
    intents.members = True  # exercises the chunking decision: member_count must match
    return QuickClient(intents=intents, guild_ready_timeout=0.05)


def user_messages(client: discord.Client) -> asyncio.Queue[discord.Message]:
    """A queue of the non-bot messages `client` sees (its own echoes are skipped)."""
    queue: asyncio.Queue[discord.Message] = asyncio.Queue()

    @client.event
    async def on_message(message: discord.Message) -> None:
        if not message.author.bot:
            queue.put_nowait(message)

    return queue


async def test_logs_in_and_sees_the_guild(fake: FakeDiscord) -> None:
    client = make_client()
    async with fake.running(client):
        assert client.user is not None and client.user.id == fake.bot_id
        assert client.application_id == fake.app_id
        guild = client.get_guild(fake.guild_id)
        assert guild is not None
        assert [c.id for c in guild.text_channels] == fake.channel_ids
        member = guild.get_member(fake.user_ids[0])
        assert member is not None and [r.id for r in member.roles][1:] == [fake.role_id]
        assert guild.me is not None
    paths = [(c.method, c.path) for c in fake.calls]
    assert ("GET", "/users/@me") in paths and ("GET", "/oauth2/applications/@me") in paths
    assert fake.identifies == 1 and fake.intents is not None


async def test_bad_token_fails_login(fake: FakeDiscord) -> None:
    client = make_client()
    with fake.install(), pytest.raises(discord.LoginFailure):
        await client.start("wrong-token")
    await client.close()


async def test_reply_is_sent_then_edited(fake: FakeDiscord) -> None:
    client = make_client()

    @client.event
    async def on_message(message: discord.Message) -> None:
        if message.author.bot:
            return
        async with message.channel.typing():
            reply = await message.channel.send(
                "thinking", silent=True, allowed_mentions=discord.AllowedMentions.none()
            )
        await reply.edit(content=f"done: {message.content}")

    channel = fake.channel_ids[1]
    async with fake.running(client):
        await fake.dispatch("MESSAGE_CREATE", fake.message_create("hello", channel_id=channel))
        await fake.wait_for(lambda: [m for m in fake.messages_in(channel, by_bot=True)
                                     if m.content == "done: hello"])
    (reply,) = fake.messages_in(channel, by_bot=True)
    assert reply.silent and [e["content"] for e in reply.edits] == ["done: hello"]
    assert reply.allowed_mentions == {"parse": []}  # AllowedMentions.none()
    assert next(c.path for c in fake.calls if c.method == "POST") == f"/channels/{channel}/typing"


async def test_dm_reply_and_refused_dm(fake: FakeDiscord) -> None:
    client = make_client()
    seen = user_messages(client)
    async with fake.running(client):
        await fake.dispatch("MESSAGE_CREATE", fake.message_create("hi bot", dm=True))
        message = await asyncio.wait_for(seen.get(), 2)
        assert isinstance(message.channel, discord.DMChannel) and message.guild is None
        await message.channel.send("hi human")

        other = client.get_user(fake.user_ids[1])
        assert other is not None
        fake.fail_next("POST", "/channels/*/messages")
        with pytest.raises(discord.Forbidden) as refused:
            await other.send("are you there?")
        assert refused.value.code == 50007
    dm = fake.dm_channels[fake.user_ids[0]]
    assert [m.content for m in fake.messages_in(dm)] == ["hi bot", "hi human"]
    opened = [c.body for c in fake.calls if c.path == "/users/@me/channels"]
    assert opened == [{"recipient_id": fake.user_ids[1]}]


async def test_mentions_and_bots_arrive_as_built(fake: FakeDiscord) -> None:
    client = make_client(message_content=False)
    seen: asyncio.Queue[discord.Message] = asyncio.Queue()

    @client.event
    async def on_message(message: discord.Message) -> None:
        if message.author.id != fake.bot_id:
            seen.put_nowait(message)

    async with fake.running(client):
        for payload in (fake.message_create("plain"), fake.message_create("you", mention_bot=True),
                        fake.message_create("beep", from_bot=True)):
            await fake.dispatch("MESSAGE_CREATE", payload)
        plain, mention, bot = [await asyncio.wait_for(seen.get(), 2) for _ in range(3)]
    assert plain.content == ""  # no message-content intent, as on Discord
    assert client.user in mention.mentions and mention.content.endswith("you")
    assert bot.author.bot and bot.content == ""


async def test_thread_known_at_login_is_a_channel_of_its_own(fake: FakeDiscord) -> None:
    parent = fake.channel_ids[1]
    thread_id = await fake.create_thread(parent, name="week 1")  # before login: GUILD_CREATE
    client = make_client()

    @client.event
    async def on_message(message: discord.Message) -> None:
        if message.author.bot:
            return
        async with message.channel.typing():
            reply = await message.reply("thinking", silent=True)
        await reply.edit(content=f"done: {message.content}")

    async with fake.running(client):
        thread = client.get_channel(thread_id)
        assert isinstance(thread, discord.Thread)
        assert (thread.parent_id, thread.name) == (parent, "week 1")
        assert thread.owner_id == fake.user_ids[0]
        assert thread.parent is client.get_channel(parent) and not thread.archived
        await fake.dispatch("MESSAGE_CREATE", fake.message_create("hi", channel_id=thread_id))
        await fake.wait_for(lambda: [m for m in fake.messages_in(thread_id, by_bot=True)
                                     if m.content == "done: hi"])
    (reply,) = fake.messages_in(thread_id, by_bot=True)
    assert reply.data["message_reference"]["channel_id"] == str(thread_id)
    assert f"/channels/{thread_id}/typing" in [c.path for c in fake.calls]
    assert fake.messages_in(parent) == []
    listed = fake.guild_payload()["threads"][0]
    assert listed["message_count"] == 2 and listed["member_count"] == 2  # the bot joined


async def test_thread_started_while_connected_arrives_as_thread_create(
    fake: FakeDiscord,
) -> None:
    client = make_client()
    created: asyncio.Queue[discord.Thread] = asyncio.Queue()
    seen = user_messages(client)

    @client.event
    async def on_thread_create(thread: discord.Thread) -> None:
        created.put_nowait(thread)

    async with fake.running(client):
        thread_id = await fake.create_thread(name="check-in", owner_id=fake.user_ids[1])
        thread = await asyncio.wait_for(created.get(), 2)
        await fake.dispatch("MESSAGE_CREATE", fake.message_create(
            "in the thread", channel_id=thread_id, author_id=fake.user_ids[1]))
        message = await asyncio.wait_for(seen.get(), 2)
    assert thread.id == thread_id and thread.parent_id == fake.channel_ids[0]
    assert isinstance(message.channel, discord.Thread) and message.channel is thread
    assert message.guild is not None and message.guild.id == fake.guild_id
    assert isinstance(message.author, discord.Member) and message.content == "in the thread"


async def test_command_in_a_thread(fake: FakeDiscord) -> None:
    client = make_client()
    tree = app_commands.CommandTree(client)
    channels: list[object] = []

    @tree.command(name="streak", description="Your streak")
    async def streak(interaction: discord.Interaction) -> None:
        channels.append(interaction.channel)
        await interaction.response.send_message("3 days")

    thread_id = await fake.create_thread()
    async with fake.running(client):
        interaction = fake.command_interaction("streak", channel_id=thread_id)
        await fake.dispatch("INTERACTION_CREATE", interaction)
        await fake.wait_for(lambda: fake.original_response(interaction))
    (channel,) = channels
    assert isinstance(channel, discord.Thread) and channel.parent_id == fake.channel_ids[0]
    assert [m.content for m in fake.messages_in(thread_id)] == ["3 days"]


async def test_messages_need_an_existing_channel(fake: FakeDiscord) -> None:
    with pytest.raises(ValueError, match="create threads before"):
        fake.message_create("lost", channel_id=1234)
    with pytest.raises(ValueError, match="not a text channel"):
        await fake.create_thread(1234)


async def test_ephemeral_slash_command(fake: FakeDiscord) -> None:
    client = make_client()
    tree = app_commands.CommandTree(client)
    guild = discord.Object(fake.guild_id)

    @tree.command(name="ping", description="Ping", guild=guild)
    async def ping(interaction: discord.Interaction, times: int = 1) -> None:
        await interaction.response.send_message("pong " * times, ephemeral=True)
        await interaction.edit_original_response(content="pong!")

    async with fake.running(client):
        synced = await tree.sync(guild=guild)
        assert [c.name for c in synced] == ["ping"]
        interaction = fake.command_interaction("ping", {"times": 2})
        assert interaction["data"]["guild_id"] == str(fake.guild_id)
        await fake.dispatch("INTERACTION_CREATE", interaction)
        await fake.wait_for_call("PATCH", "/webhooks/*/messages/@original")
    (response,) = fake.responses_to(interaction)
    assert response.type == 4 and response.flags == EPHEMERAL
    assert response.data["content"] == "pong pong "
    original = fake.original_response(interaction)
    assert original is not None and original.ephemeral and original.content == "pong!"
    call = next(c for c in fake.calls if c.path.endswith("/callback"))
    assert call.query == {"with_response": "1"} and call.status == 200


async def test_command_in_dm(fake: FakeDiscord) -> None:
    client = make_client()
    tree = app_commands.CommandTree(client)
    users: list[discord.abc.User] = []

    @tree.command(name="streak", description="Your streak")
    async def streak(interaction: discord.Interaction) -> None:
        users.append(interaction.user)
        await interaction.response.send_message("3 days")

    async with fake.running(client):
        interaction = fake.command_interaction("streak", dm=True)
        await fake.dispatch("INTERACTION_CREATE", interaction)
        await fake.wait_for(lambda: fake.original_response(interaction))
    assert isinstance(users[0], discord.User) and users[0].id == fake.user_ids[0]
    dm = fake.dm_channels[fake.user_ids[0]]
    assert [m.content for m in fake.messages_in(dm)] == ["3 days"]


async def test_deferred_subcommand_with_followup(fake: FakeDiscord) -> None:
    client = make_client()
    tree = app_commands.CommandTree(client)
    coach = app_commands.Group(name="coach", description="Coach")
    goal = app_commands.Group(name="goal", description="Goals", parent=coach)
    done = asyncio.Event()

    @goal.command(name="set", description="Set a goal")
    async def set_goal(interaction: discord.Interaction, text: str, days: int) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send(f"{text} in {days} days")
        original = await interaction.original_response()
        await interaction.followup.send(f"also: {original.content}")
        done.set()

    tree.add_command(coach)
    async with fake.running(client):
        await tree.sync()
        interaction = fake.command_interaction(
            "coach", {"text": "run 5k", "days": 30}, group="goal", subcommand="set"
        )
        await fake.dispatch("INTERACTION_CREATE", interaction)
        await asyncio.wait_for(done.wait(), 3)
    assert [r.type for r in fake.responses_to(interaction)] == [5]
    original = fake.original_response(interaction)
    assert original is not None and original.content == "run 5k in 30 days"
    assert not original.flags & LOADING
    channel = fake.messages_in(fake.channel_ids[0], by_bot=True)
    assert [m.content for m in channel] == ["run 5k in 30 days", "also: run 5k in 30 days"]
    assert fake.commands[None][0]["name"] == "coach"


async def test_autocomplete(fake: FakeDiscord) -> None:
    client = make_client()
    tree = app_commands.CommandTree(client)

    @tree.command(name="habit", description="Pick a habit")
    async def habit(interaction: discord.Interaction, name: str) -> None:
        await interaction.response.send_message(name)

    @habit.autocomplete("name")
    async def names(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=n, value=n) for n in ("read", "run") if current in n]

    async with fake.running(client):
        interaction = fake.autocomplete_interaction("habit", {"name": "ru"}, focused="name")
        await fake.dispatch("INTERACTION_CREATE", interaction)
        await fake.wait_for(lambda: fake.responses_to(interaction))
    (response,) = fake.responses_to(interaction)
    assert response.type == 8 and response.data == {"choices": [{"name": "run", "value": "run"}]}


async def test_button_click_updates_message(fake: FakeDiscord) -> None:
    client = make_client()

    class Done(discord.ui.View):
        @discord.ui.button(label="Done", custom_id="done")
        async def done(
            self, interaction: discord.Interaction, button: discord.ui.Button[Done]
        ) -> None:
            await interaction.response.edit_message(content="Nice work!", view=None)

    async with fake.running(client):
        channel = client.get_channel(fake.channel_ids[0])
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send("Did you run today?", view=Done())
        interaction = fake.component_interaction(sent.id, "done")
        await fake.dispatch("INTERACTION_CREATE", interaction)
        await fake.wait_for(lambda: fake.message(sent.id).content == "Nice work!")
    (response,) = fake.responses_to(interaction)
    assert response.type == 7 and fake.message(sent.id).data["components"] == []


async def test_429_on_edit_is_waited_out(fake: FakeDiscord) -> None:
    client = make_client()
    fake.rate_limit_next("PATCH", "/channels/*/messages/*", retry_after=0.3)
    async with fake.running(client):
        channel = client.get_channel(fake.channel_ids[0])
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send("draft")
        await sent.edit(content="final")
        await sent.delete()
    patches = [c for c in fake.calls if c.method == "PATCH"]
    assert [c.status for c in patches] == [429, 200]
    assert patches[1].time - patches[0].time >= 0.3
    assert fake.rate_limited == 1 and fake.message(sent.id).content == "final"
    assert fake.message(sent.id).deleted and not fake.messages_in(fake.channel_ids[0])


async def test_a_nonce_with_enforce_nonce_creates_the_message_once(fake: FakeDiscord) -> None:
    """discord.py sends every message with a nonce and enforce_nonce. Discord takes a message
    but answers 503; the retry with the same nonce gets that message back (its text, not the
    retry's) and creates and echoes nothing. Without enforce_nonce a nonce dedupes nothing."""
    client = make_client()
    echoed: list[int] = []

    @client.event
    async def on_message(message: discord.Message) -> None:
        echoed.append(message.id)

    async with fake.running(client), aiohttp.ClientSession() as session:
        channel = client.get_channel(fake.channel_ids[0])
        assert isinstance(channel, discord.TextChannel)
        fake.fail_next(
            "POST", "/channels/*/messages", status=503, code=0, message="Server error",
            after_applying=True,
        )
        with pytest.raises(discord.DiscordServerError):
            await channel.send("draft", nonce="part-1")
        (taken,) = fake.messages_in(channel.id)
        again = await channel.send("newer draft", nonce="part-1")
        assert again.id == taken.id and again.content == "draft"
        await channel.send("next part", nonce="part-2")
        with pytest.raises(discord.HTTPException) as too_long:
            await channel.send("x", nonce="n" * 26)  # Discord allows 25 characters
        assert too_long.value.status == 400
        url = f"{fake.api_url}/channels/{channel.id}/messages"
        headers = {"Authorization": f"Bot {fake.token}"}
        body = {"content": "plain", "nonce": "part-3"}  # no enforce_nonce
        for _ in range(2):
            async with session.post(url, json=body, headers=headers) as response:
                assert response.status == 200
        await fake.wait_for(lambda: len(echoed) >= 4)
    shown = fake.messages_in(fake.channel_ids[0])
    assert [m.content for m in shown] == ["draft", "next part", "plain", "plain"]
    assert echoed == [m.id for m in shown]  # the answer that returned "draft" echoed nothing


async def test_channel_bucket_headers_pace_discord_py() -> None:
    async with FakeDiscord(message_bucket=(2, 0.4)) as fake:
        client = make_client()
        async with fake.running(client):
            channel = client.get_channel(fake.channel_ids[0])
            assert isinstance(channel, discord.TextChannel)
            for i in range(5):
                await channel.send(f"message {i}")
        posts = [c for c in fake.calls if c.method == "POST" and c.path.endswith("/messages")]
    assert [c.status for c in posts] == [200] * 5
    assert posts[-1].time - posts[0].time >= 0.7  # three windows of two
    assert fake.rate_limited == 0  # discord.py read X-RateLimit-* and waited pre-emptively


async def test_global_limit_refuses_the_request_past_the_budget_across_channels() -> None:
    async with FakeDiscord(global_limit=(3, 60.0)) as fake, aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bot {fake.token}"}
        statuses = []
        for channel in fake.channel_ids * 2:  # two channels: the budget is the bot's, not theirs
            url = f"{fake.api_url}/channels/{channel}/typing"
            async with session.post(url, headers=headers) as response:
                statuses.append(response.status)
                scope = response.headers.get("X-RateLimit-Global")
                body = await response.json() if response.status == 429 else {}
    assert statuses == [204, 204, 204, 429]
    assert scope == "true" and body["global"] is True
    assert fake.rate_limited == 1


@pytest.mark.parametrize(
    ("code", "resumable"), [(4000, True), (None, True), (4000, False)],
    ids=["close-4000", "abort", "invalid-session"],
)
async def test_gateway_drop_then_events_still_arrive(
    fake: FakeDiscord, code: int | None, resumable: bool
) -> None:
    client = make_client()
    seen = user_messages(client)
    async with fake.running(client):
        await fake.drop_gateway(code, resumable=resumable)
        if resumable:  # sent while down: Discord replays it on RESUME
            await fake.dispatch("MESSAGE_CREATE", fake.message_create("missed"))
            await fake.wait_for(lambda: fake.resumes == 1)
        else:
            await fake.wait_for(lambda: fake.identifies == 2)
            await fake.wait_for(client.is_ready)
        await fake.dispatch("MESSAGE_CREATE", fake.message_create("after"))
        contents = [(await asyncio.wait_for(seen.get(), 3)).content
                    for _ in range(2 if resumable else 1)]
    assert contents == (["missed", "after"] if resumable else ["after"])


async def test_unknown_route_is_a_json_404(fake: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fake.api_url}/no/such/route") as response:
            assert response.status == 404
            assert response.headers["Content-Type"] == "application/json"
            assert (await response.json())["message"].startswith("404")


async def test_a_proxy_answers_with_a_body_of_its_own(fake: FakeDiscord) -> None:
    """What discord.py 2.7.1 makes of error answers that are not Discord's JSON: the body
    becomes the HTTPException's `text`, with `code` 0; a 502 is retried by discord.py itself
    (after 1 s), a 503 raised at once; a page mislabelled `application/json` raises
    JSONDecodeError before discord.py looks at the status. (Webhooks and interaction
    callbacks read bodies the same way, and retry any 5xx: tests/test_error_bodies.py.)"""
    client = make_client()
    async with fake.running(client):
        channel = client.get_channel(fake.channel_ids[0])
        assert isinstance(channel, discord.TextChannel)
        fake.fail_next("POST", "/channels/*/messages", **PROXY_ANSWERS["text-503"].fail_args())
        with pytest.raises(discord.DiscordServerError) as text_503:
            await channel.send("one")
        assert (text_503.value.status, text_503.value.code) == (503, 0)
        assert text_503.value.text == UPSTREAM_CONNECT_ERROR

        fake.fail_next("POST", "/channels/*/messages", **PROXY_ANSWERS["html-502"].fail_args())
        sent = await channel.send("two")  # discord.py waited 1 s and tried again
        assert [c.status for c in fake.calls if c.method == "POST"][-2:] == [502, 200]

        fake.fail_next(
            "PATCH", "/channels/*/messages/*", **PROXY_ANSWERS["mislabelled-503"].fail_args()
        )
        with pytest.raises(json.JSONDecodeError):
            await sent.edit(content="three")
        fake.fail_next(
            "PATCH", "/channels/*/messages/*", status=403, body="<h1>Denied</h1>",
            content_type="text/html",
        )
        with pytest.raises(discord.Forbidden) as waf:
            await sent.edit(content="three")
        assert (waf.value.code, waf.value.text) == (0, "<h1>Denied</h1>")
        await sent.edit(content="three")
    assert [m.content for m in fake.messages_in(fake.channel_ids[0])] == ["three"]
