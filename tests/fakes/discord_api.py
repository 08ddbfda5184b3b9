"""Loopback fake of Discord's REST API and gateway, for stock discord.py (2.7).

discord.py runs unmodified against it once its two URLs point here (DESIGN.md, "Testing the
outside world")::

    async with FakeDiscord() as fake:
        async with fake.running(client):          # install() + start() + wait for READY
            await fake.dispatch("MESSAGE_CREATE", fake.message_create("hi"))
            await fake.wait_for(lambda: fake.messages_in(fake.channel_ids[0], by_bot=True))

`install()` alone sets `discord.http.Route.BASE` and `DiscordWebSocket.DEFAULT_GATEWAY` (and
restores them); `api_url` / `gateway_url` are the same values for settings-driven code.

Sharding: `guilds={guild_id: channel_ids, ...}` makes several guilds (their channels join
`channel_ids`; interactions stay in the first guild), and `shards=N` is what GET /gateway/bot
advises. A client that IDENTIFYs with `shard: [id, count]` gets a session of its own, told only
of the guilds with `(guild_id >> 22) % count == id`, and `dispatch` sends each event to the
session of its guild's shard (DMs to shard 0), as Discord does; `identified_shards` lists them.

The world is one guild (`guild_id`) with text channels `channel_ids`, members `user_ids` plus
another bot (`other_bot_id`), and the bot itself (`bot_id`, which is also the application id,
as for every modern Discord app). `await create_thread(parent_id)` adds a public thread to a
text channel: a channel of its own (messages, edits and typing go to the thread's id), listed
in GUILD_CREATE's `threads` for later sessions and announced by THREAD_CREATE to a live one.

The gateway sends text frames, or zlib-stream binary frames when the URL asks for them
(discord.py does on Python < 3.14 without `zstandard`). Dispatched events are kept per
session so a RESUME replays what the client missed, as Discord does.
When the client did not IDENTIFY with the message-content intent, guild messages that do not
mention the bot reach it with empty content, as on Discord. The bot's own messages are echoed
back as MESSAGE_CREATE / MESSAGE_UPDATE / MESSAGE_DELETE, as on Discord (`echo=False` to stop).
A message create with a `nonce` and `enforce_nonce: true` (discord.py sends both with every
send) returns the live message the same author created in that channel with that nonce in the
last `NONCE_WINDOW_SECONDS`, if any, and creates and echoes nothing. (Discord documents "the
same author" and "the past few minutes"; the channel, "live" and the window are this fake's.)
`fail_next(..., after_applying=True)` applies the write and then answers with the error, as
when Discord took a message but its answer was a 503; `fail_next(..., body=..., content_type=...)`
answers with a body that is not Discord's JSON, as a proxy does (tests/fakes/proxy_pages.py).

discord.py quirks this fake accommodates (see tests/test_fake_discord.py):

* REST bodies are parsed only if `Content-Type` is exactly `application/json` (no charset).
* A 429 is waited out only if it carries a `Via` header and a JSON `retry_after`.
* The interaction callback is called with `?with_response=1` and its JSON is parsed.
* INTERACTION_CREATE needs `attachment_size_limit`; members need `flags` and `roles`.
* A malformed event ends `client.start()`: `running()` awaits that task, `wait_for()` fails fast.
* Every IDENTIFY but the first waits 5 s in `Client.before_identify_hook`; override it in tests.
* With `intents.members`, discord.py chunks a guild unless `member_count` equals its members.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import math
import re
import secrets
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import discord
import yarl
from aiohttp import WSMsgType, web
from discord.gateway import DiscordWebSocket
from discord.http import Route

__all__ = [
    "EPHEMERAL",
    "LOADING",
    "SILENT",
    "Call",
    "FakeDiscord",
    "FakeMessage",
    "InteractionResponse",
]

JSON = dict[str, Any]

API_PREFIX = "/api/v10"
GATEWAY_PATH = "/gateway"
DISCORD_EPOCH_MS = 1_420_070_400_000
EPHEMERAL = 1 << 6  # message flag: only the invoking user sees it
LOADING = 1 << 7  # message flag: "Bot is thinking..." after a defer
PUBLIC_THREAD = 11  # channel type
THREAD_MEMBER_COUNT_CAP = 50  # Discord stops counting a thread's members at 50
SILENT = 1 << 12  # message flag: @silent, no push notification
MESSAGE_CONTENT_INTENT = 1 << 15
ATTACHMENT_LIMIT = 10 * 1024 * 1024
NONCE_MAX_LENGTH = 25
NONCE_WINDOW_SECONDS = 180.0  # "the past few minutes"
_EVERYONE_PERMISSIONS = str((discord.Permissions.general() | discord.Permissions.text()).value)
_MENTION = re.compile(r"<@!?(\d+)>")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response with the bare content type: discord.py ignores bodies with a charset."""
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={**(headers or {}), "Content-Type": "application/json"},
    )


def _raw(text: str, content_type: str, status: int, headers: dict[str, str]) -> web.Response:
    """A body that is not Discord's JSON (a proxy's page), with exactly this Content-Type."""
    return web.Response(
        body=text.encode(), status=status, headers={**headers, "Content-Type": content_type}
    )


def _error(status: int, message: str, code: int = 0) -> web.Response:
    return _json({"message": message, "code": code}, status)


async def _read_body(request: web.Request) -> Any:
    """JSON, or multipart `payload_json`; aiohttp caches the body, so re-reading is free."""
    if not request.body_exists:
        return None
    if request.content_type == "multipart/form-data":
        form = await request.post()
        body: JSON = json.loads(str(form.get("payload_json", "{}")))
        body["_files"] = [f.filename for k, f in form.items() if k.startswith("files[")
                          and isinstance(f, web.FileField)]
        return body
    raw = await request.read()
    return json.loads(raw) if raw else None


@dataclass
class Call:
    """One REST request as the fake saw it; `status` is 0 until it has been answered."""

    method: str
    path: str  # without the /api/v10 prefix
    body: Any
    query: dict[str, str]
    time: float  # loop.time() at arrival
    status: int = 0


@dataclass
class FakeMessage:
    """A message in the fake's store; `data` is the object Discord would return for it."""

    data: JSON
    allowed_mentions: JSON | None = None
    edits: list[JSON] = field(default_factory=list)  # PATCH bodies, oldest first
    deleted: bool = False
    interaction_token: str | None = None

    @property
    def id(self) -> int:
        return int(self.data["id"])

    @property
    def channel_id(self) -> int:
        return int(self.data["channel_id"])

    @property
    def author_id(self) -> int:
        return int(self.data["author"]["id"])

    @property
    def content(self) -> str:
        return str(self.data.get("content", ""))

    @property
    def flags(self) -> int:
        return int(self.data.get("flags", 0))

    @property
    def embeds(self) -> list[JSON]:
        return list(self.data.get("embeds", []))

    @property
    def silent(self) -> bool:
        return bool(self.flags & SILENT)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)


@dataclass
class InteractionResponse:
    """A POST to /interactions/{id}/{token}/callback: callback `type` and its `data`."""

    interaction_id: int
    token: str
    type: int  # 4 message, 5 deferred, 6 deferred update, 7 update, 8 autocomplete, 9 modal
    data: JSON

    @property
    def flags(self) -> int:
        return int(self.data.get("flags", 0))

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)


@dataclass
class _Fault:
    method: str
    pattern: str
    status: int
    body: JSON | str  # a str is sent as is, with `content_type`
    headers: dict[str, str]
    times: int
    after_applying: bool = False  # the write happens; only its answer is the error
    content_type: str = "application/json"

    def response(self) -> web.Response:
        if isinstance(self.body, str):
            return _raw(self.body, self.content_type, self.status, self.headers)
        return _json(self.body, self.status, self.headers)


@dataclass
class _Interaction:
    id: int
    token: str
    type: int
    channel_id: int
    user: JSON
    message_id: int | None = None  # the message whose component was clicked
    original_id: int | None = None  # the message created by the callback


@dataclass
class _Thread:
    """A public thread inside one of the guild's text channels; its counts are derived."""

    id: int
    parent_id: int
    owner_id: int
    name: str
    created_at: str
    member_ids: set[int]


@dataclass
class _Session:
    """One gateway session: a shard's (0 of 1 when the client did not ask for shards)."""

    shard: tuple[int, int]
    session_id: str
    seq: int = 0
    sent: list[tuple[int, str, JSON]] = field(default_factory=list)  # for RESUME
    resumable: bool = True
    conn: _GatewayConn | None = None

    def owns(self, guild_id: int | None) -> bool:
        """Discord's routing: a guild's events go to shard (guild_id >> 22) % count."""
        shard_id, count = self.shard
        return (0 if guild_id is None else (guild_id >> 22) % count) == shard_id


@dataclass
class _Bucket:
    count: int = 0
    reset_at: float = 0.0


class _GatewayConn:
    """One websocket; compression state and a lock so frames go out in sequence order."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, zlib_stream: bool) -> None:
        self.ws = ws
        self.request = request
        self._zlib = zlib.compressobj() if zlib_stream else None
        self._lock = asyncio.Lock()
        self.session: _Session | None = None  # known once it IDENTIFYs or RESUMEs

    async def send(self, payload: JSON) -> None:
        text = json.dumps(payload)
        async with self._lock:
            if self._zlib is None:
                await self.ws.send_str(text)
            else:
                data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                await self.ws.send_bytes(data)


class FakeDiscord:
    """Discord on 127.0.0.1: REST under /api/v10 and the gateway websocket at /gateway.

    The first of `user_ids` owns the guild and holds `role_id`; `users` maps every id to its
    user object (the other bot included). Builders return event data and remember what
    they built (messages, interaction tokens) so the bot's answers land in the right place.
    """

    app_id = bot_id = 1100000000000000001
    guild_id = 1100000000000000100
    role_id = 1100000000000000400
    other_bot_id = 1100000000000000399

    def __init__(
        self,
        *,
        token: str = "fake-token",
        channel_ids: Sequence[int] = (1100000000000000200, 1100000000000000201),
        user_ids: Sequence[int] = (1100000000000000300, 1100000000000000301),
        message_bucket: tuple[int, float] | None = None,
        global_limit: tuple[int, float] | None = None,
        heartbeat_interval_ms: int = 41_250,
        echo: bool = True,
        guilds: dict[int, Sequence[int]] | None = None,
        shards: int = 1,
    ) -> None:
        """`message_bucket=(5, 5.0)` enforces 5 message writes per 5 s per channel;
        `global_limit=(50, 1.0)` Discord's 50 requests per second per bot (interaction
        callbacks exempt), over a sliding window."""
        self.token = token
        self.guilds = {g: list(c) for g, c in (guilds or {self.guild_id: channel_ids}).items()}
        self.guild_id = next(iter(self.guilds))
        self.channel_ids = [c for channels in self.guilds.values() for c in channels]
        self.shards = shards
        self.user_ids = list(user_ids)
        self.message_bucket = message_bucket
        self.global_limit = global_limit
        self._global_recent: deque[float] = deque()  # accepted requests, for global_limit
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.echo = echo

        self.calls: list[Call] = []
        self.interaction_responses: list[InteractionResponse] = []
        self.commands: dict[int | None, list[JSON]] = {}  # guild id (None: global) -> commands
        self.rate_limited = 0  # 429s served
        self.identifies = 0
        self.resumes = 0
        self.intents: int | None = None  # from the last IDENTIFY

        self.bot = self._user(self.bot_id, "momentum", bot=True)
        self.users: dict[int, JSON] = {
            uid: self._user(uid, f"user{i}") for i, uid in enumerate(self.user_ids)
        }
        self.users[self.other_bot_id] = self._user(self.other_bot_id, "otherbot", bot=True)
        self.dm_channels: dict[int, int] = {}  # user id -> DM channel id
        self._threads: dict[int, _Thread] = {}

        self._messages: dict[int, FakeMessage] = {}
        self._interactions: dict[str, _Interaction] = {}
        self._faults: list[_Fault] = []
        self._buckets: dict[int, _Bucket] = {}
        self._last_id = 0
        self._conns: set[_GatewayConn] = set()
        self._sessions: dict[int, _Session] = {}  # by shard id
        self._changed = asyncio.Event()
        self._client_tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ---- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> FakeDiscord:
        app = web.Application(middlewares=[self._middleware])
        self._add_routes(app)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for conn in list(self._conns):
            await conn.ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{GATEWAY_PATH}"

    @contextlib.contextmanager
    def install(self) -> Iterator[None]:
        """Point discord.py's class-level URLs here; they are read when a request is built."""
        old = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
        Route.BASE = self.api_url
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = old

    @contextlib.asynccontextmanager
    async def running(
        self, client: discord.Client, *, within: float = 5.0
    ) -> AsyncIterator[discord.Client]:
        """Start `client` here, wait until it is ready; on exit close it and await `start()`."""
        with self.install():
            task = asyncio.create_task(client.start(self.token))
            self._client_tasks.append(task)
            try:
                await self.wait_for(client.is_ready, within)
                yield client
            finally:
                await client.close()
                self._client_tasks.remove(task)
                await task  # surfaces whatever ended start() early

    async def wait_for(self, predicate: Callable[[], Any], within: float = 5.0) -> Any:
        """Wait until `predicate()` is truthy (re-checked on every request and gateway op)."""
        try:
            async with asyncio.timeout(within):
                while not (result := predicate()):
                    self._raise_if_client_died()
                    with contextlib.suppress(TimeoutError):  # also poll: not all news is ours
                        await asyncio.wait_for(self._changed.wait(), 0.02)
        except TimeoutError:
            recent = [f"{c.method} {c.path} -> {c.status}" for c in self.calls[-5:]]
            raise TimeoutError(f"not true within {within}s; last calls: {recent}") from None
        return result

    async def wait_for_call(
        self, method: str, pattern: str, *, count: int = 1, within: float = 5.0
    ) -> Call:
        """The `count`-th answered call matching `method` and glob `pattern` (e.g. /channels/*)."""

        def found() -> Call | None:
            hits = [c for c in self.calls if c.status and self._matches(c, method, pattern)]
            return hits[count - 1] if len(hits) >= count else None

        result: Call = await self.wait_for(found, within)
        return result

    def _raise_if_client_died(self) -> None:
        for task in self._client_tasks:
            if task.done():
                exc = None if task.cancelled() else task.exception()
                raise RuntimeError("client.start() ended while waiting") from exc

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # ---- world -----------------------------------------------------------------------------

    def _new_id(self) -> int:
        """A snowflake for now, strictly increasing (discord.py derives created_at from it)."""
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        self._last_id = max(self._last_id + 1, ms << 22)
        return self._last_id

    @staticmethod
    def _user(user_id: int, name: str, *, bot: bool = False) -> JSON:
        return {
            "id": str(user_id), "username": name, "discriminator": "0", "global_name": name,
            "avatar": None, "bot": bot, "public_flags": 0, "flags": 0,
        }

    def _member(self, user_id: int, *, with_user: bool = True) -> JSON:
        member: JSON = {
            "roles": [str(self.role_id)] if user_id in self.user_ids[:1] else [],
            "nick": None, "avatar": None, "joined_at": "2026-01-01T00:00:00+00:00",
            "premium_since": None, "deaf": False, "mute": False, "flags": 0, "pending": False,
            "communication_disabled_until": None,
        }
        if with_user:
            member["user"] = self.bot if user_id == self.bot_id else self.users[user_id]
        return member

    def _text_channel(self, channel_id: int, position: int) -> JSON:
        return {
            "id": str(channel_id), "type": 0, "guild_id": str(self._guild_of(channel_id)),
            "name": f"channel-{position}", "position": position, "permission_overwrites": [],
            "topic": None, "nsfw": False, "last_message_id": None, "rate_limit_per_user": 0,
            "parent_id": None, "flags": 0,
        }

    def _dm_channel(self, user_id: int) -> JSON:
        if user_id not in self.dm_channels:
            self.dm_channels[user_id] = self._new_id()
        return {
            "id": str(self.dm_channels[user_id]), "type": 1, "last_message_id": None,
            "flags": 0, "recipients": [self.users[user_id]],
        }

    def _thread_channel(self, thread: _Thread) -> JSON:
        """A public thread as Discord sends it (`Thread._from_data` reads the required keys)."""
        everything = [m for m in self._messages.values() if m.channel_id == thread.id]
        live = [m for m in everything if not m.deleted]
        return {
            "id": str(thread.id), "type": PUBLIC_THREAD,
            "guild_id": str(self._guild_of(thread.parent_id)),
            "parent_id": str(thread.parent_id), "owner_id": str(thread.owner_id),
            "name": thread.name, "last_message_id": str(live[-1].id) if live else None,
            "message_count": len(live), "total_message_sent": len(everything),
            "member_count": min(len(thread.member_ids), THREAD_MEMBER_COUNT_CAP),
            "rate_limit_per_user": 0, "flags": 0, "applied_tags": [],
            "thread_metadata": {
                "archived": False, "auto_archive_duration": 1440, "locked": False,
                "archive_timestamp": thread.created_at, "create_timestamp": thread.created_at,
            },
        }

    async def create_thread(
        self, parent_id: int | None = None, *, name: str = "thread", owner_id: int | None = None
    ) -> int:
        """A public thread in a text channel (default: the first), started by `owner_id`
        (default: the first user); returns its id, which `message_create(channel_id=...)`
        takes. A live session gets THREAD_CREATE, as when someone starts a thread."""
        parent = parent_id or self.channel_ids[0]
        if parent not in self.channel_ids:
            raise ValueError(f"{parent} is not a text channel of the guild")
        owner = owner_id or self.user_ids[0]
        thread = _Thread(self._new_id(), parent, owner, name, _now_iso(), {owner})
        self._threads[thread.id] = thread
        if self._sessions:
            await self.dispatch("THREAD_CREATE", self._thread_channel(thread) | {
                "newly_created": True,
            })
        return thread.id

    def _joined(self, channel_id: int, user_id: int) -> None:
        """Posting in a thread makes the author a member of it, as on Discord."""
        if (thread := self._threads.get(channel_id)) is not None:
            thread.member_ids.add(user_id)

    def _channel(self, channel_id: int) -> JSON | None:
        if (guild_id := self._guild_of(channel_id)) is not None and channel_id not in self._threads:
            return self._text_channel(channel_id, self.guilds[guild_id].index(channel_id))
        if channel_id in self._threads:
            return self._thread_channel(self._threads[channel_id])
        for user_id, dm_id in self.dm_channels.items():
            if dm_id == channel_id:
                return self._dm_channel(user_id)
        return None

    def _role(self, role_id: int, name: str, position: int, permissions: str) -> JSON:
        return {
            "id": str(role_id), "name": name, "color": 0, "hoist": False, "icon": None,
            "unicode_emoji": None, "position": position, "permissions": permissions,
            "managed": False, "mentionable": False, "flags": 0,
        }

    def guild_payload(self, guild_id: int | None = None) -> JSON:
        """GUILD_CREATE data (default: the first guild); member_count matches members, so
        discord.py never chunks. Every member is in every guild."""
        guild = guild_id or self.guild_id
        channels = self.guilds[guild]
        threads = [t for t in self._threads.values() if t.parent_id in channels]
        member_ids = [self.bot_id, *self.users]
        return {
            "id": str(guild), "name": "Momentum Test Guild", "icon": None,
            "owner_id": str(self.user_ids[0]), "unavailable": False, "large": False,
            "joined_at": "2026-01-01T00:00:00+00:00", "member_count": len(member_ids),
            "roles": [
                self._role(guild, "@everyone", 0, _EVERYONE_PERMISSIONS),
                self._role(self.role_id, "coach-admin", 1, str(discord.Permissions.all().value)),
            ],
            "channels": [self._text_channel(c, i) for i, c in enumerate(channels)],
            "members": [self._member(m) for m in member_ids],
            "threads": [self._thread_channel(t) for t in threads],
            "features": [], "emojis": [], "stickers": [], "presences": [],
            "voice_states": [], "stage_instances": [], "guild_scheduled_events": [],
            "soundboard_sounds": [], "premium_tier": 0, "preferred_locale": "en-US",
            "system_channel_id": None, "afk_channel_id": None, "verification_level": 0,
            "default_message_notifications": 0, "explicit_content_filter": 0, "mfa_level": 0,
            "nsfw_level": 0, "application_id": None, "max_members": 500_000,
        }

    def _guild_of(self, channel_id: int) -> int | None:
        if (thread := self._threads.get(channel_id)) is not None:
            channel_id = thread.parent_id
        return next((g for g, channels in self.guilds.items() if channel_id in channels), None)

    def _author(self, user_id: int) -> JSON:
        return self.bot if user_id == self.bot_id else self.users[user_id]

    # ---- messages --------------------------------------------------------------------------

    def _message_data(self, channel_id: int, author_id: int, body: JSON) -> JSON:
        """A message object as REST returns it (no guild_id/member: the gateway adds those)."""
        content = str(body.get("content") or "")
        mentioned = [int(m) for m in _MENTION.findall(content)]
        data: JSON = {
            "id": str(self._new_id()), "channel_id": str(channel_id),
            "author": self._author(author_id), "content": content, "timestamp": _now_iso(),
            "edited_timestamp": None, "tts": bool(body.get("tts", False)),
            "mention_everyone": False, "mention_roles": [], "pinned": False,
            "mentions": [self._author(m) for m in mentioned if m == self.bot_id or m in self.users],
            "attachments": self._attachments(body), "embeds": body.get("embeds") or [],
            "components": body.get("components") or [], "flags": int(body.get("flags") or 0),
            "type": 0,
        }
        if (nonce := body.get("nonce")) is not None:
            data["nonce"] = nonce
        if ref := body.get("message_reference"):
            data["type"] = 19
            data["message_reference"] = {
                "type": 0, "message_id": str(ref["message_id"]),
                "channel_id": str(ref.get("channel_id") or channel_id),
            }
        return data

    def _attachments(self, body: JSON) -> list[JSON]:
        """Attachment objects for the `attachments` stubs discord.py sends with its files."""
        out = []
        for stub in body.get("attachments") or []:
            if "url" in stub:  # an attachment kept from before an edit
                out.append(stub)
                continue
            url = f"http://127.0.0.1:{self.port}/attachments/{self._new_id()}/{stub['filename']}"
            out.append({"id": str(self._new_id()), "filename": stub["filename"], "size": 0,
                        "url": url, "proxy_url": url})
        return out

    def _to_gateway(self, data: JSON) -> JSON:
        """The gateway form: guild messages carry guild_id and the author's member."""
        out = dict(data)
        author_id = int(data["author"]["id"])
        if (guild_id := self._guild_of(int(data["channel_id"]))) is not None:
            out["guild_id"] = str(guild_id)
            if author_id == self.bot_id or author_id in self.users:
                out["member"] = self._member(author_id, with_user=False)
            mentions_bot = any(int(u["id"]) == self.bot_id for u in data.get("mentions", []))
            if (
                self.intents is not None
                and not self.intents & MESSAGE_CONTENT_INTENT
                and author_id != self.bot_id
                and not mentions_bot
            ):
                out.update(content="", embeds=[], attachments=[], components=[])
        return out

    def _store(self, data: JSON, **extra: Any) -> FakeMessage:
        message = FakeMessage(data=data, **extra)
        self._messages[message.id] = message
        return message

    def messages_in(self, channel_id: int, *, by_bot: bool | None = None) -> list[FakeMessage]:
        """Live messages in a channel, oldest first, with their current (edited) state."""
        return [
            m for m in self._messages.values()
            if m.channel_id == channel_id and not m.deleted
            and (by_bot is None or (m.author_id == self.bot_id) == by_bot)
        ]

    def message(self, message_id: int) -> FakeMessage:
        return self._messages[message_id]

    def message_create(
        self,
        content: str,
        *,
        channel_id: int | None = None,
        author_id: int | None = None,
        dm: bool = False,
        mention_bot: bool = False,
        from_bot: bool = False,
        reply_to: int | None = None,
    ) -> JSON:
        """MESSAGE_CREATE data from a user (default: first user in the first channel).

        `channel_id` may be a thread's (see `create_thread`); `dm` puts it in that user's DM
        channel, `mention_bot` prefixes `<@bot>`, `from_bot` makes another bot the author.
        The message is stored, so the bot can reply to it.
        """
        author = self.other_bot_id if from_bot else (author_id or self.user_ids[0])
        if dm:
            channel_id = int(self._dm_channel(author)["id"])
        channel = channel_id or self.channel_ids[0]
        if self._channel(channel) is None:
            raise ValueError(f"no channel {channel}: create threads before messages in them")
        if mention_bot:
            content = f"<@{self.bot_id}> {content}"
        body: JSON = {"content": content}
        if reply_to is not None:
            body["message_reference"] = {"message_id": reply_to}
        data = self._message_data(channel, author, body)
        self._store(data)
        self._joined(channel, author)
        return self._to_gateway(data)

    def _edit(self, message: FakeMessage, body: JSON) -> None:
        empty: JSON = {"content": "", "embeds": [], "components": [], "flags": 0}
        for key, blank in empty.items():
            if key in body:
                message.data[key] = blank if body[key] is None else body[key]
        if "attachments" in body:
            message.data["attachments"] = self._attachments(body)
        if "allowed_mentions" in body:
            message.allowed_mentions = body["allowed_mentions"]
        message.data["edited_timestamp"] = _now_iso()
        message.edits.append(body)

    async def _echo(self, event: str, message: FakeMessage) -> None:
        """Discord tells the bot about its own public messages over the gateway too."""
        if not self.echo or not self._sessions or message.ephemeral:
            return
        if event == "MESSAGE_DELETE":
            data: JSON = {"id": str(message.id), "channel_id": str(message.channel_id)}
            if (guild_id := self._guild_of(message.channel_id)) is not None:
                data["guild_id"] = str(guild_id)
        else:
            data = self._to_gateway(message.data)
        await self.dispatch(event, data)

    # ---- interactions ----------------------------------------------------------------------

    def _interaction(
        self, type_: int, data: JSON, *, channel_id: int | None, user_id: int | None, dm: bool,
        message: JSON | None = None,
    ) -> JSON:
        user = user_id or self.user_ids[0]
        channel = int(self._dm_channel(user)["id"]) if dm else (channel_id or self.channel_ids[0])
        token = secrets.token_urlsafe(24)
        record = _Interaction(self._new_id(), token, type_, channel, self.users[user])
        payload: JSON = {
            "id": str(record.id), "application_id": str(self.app_id), "type": type_,
            "data": data, "token": token, "version": 1, "locale": "en-US",
            "channel_id": str(channel), "channel": self._channel(channel),
            "app_permissions": _EVERYONE_PERMISSIONS, "entitlements": [],
            "attachment_size_limit": ATTACHMENT_LIMIT,
        }
        if dm:
            payload.update(user=self.users[user], context=1,
                           authorizing_integration_owners={"0": "0"})  # "0": the bot's DM
        else:
            member = self._member(user) | {"permissions": _EVERYONE_PERMISSIONS}
            payload.update(guild_id=str(self.guild_id), guild_locale="en-US", member=member,
                           context=0, authorizing_integration_owners={"0": str(self.guild_id)})
        if message is not None:
            payload["message"] = message
            record.message_id = int(message["id"])
        self._interactions[token] = record
        return payload

    def _command_data(self, name: str, options: list[JSON]) -> JSON:
        """Application command data; a command synced to the guild carries its guild_id."""
        data: JSON = {"name": name, "type": 1, "options": options}
        for guild_id in (self.guild_id, None):
            for command in self.commands.get(guild_id, []):
                if command["name"] == name:
                    data["id"] = command["id"]
                    if guild_id is not None:
                        data["guild_id"] = str(guild_id)
                    return data
        data["id"] = str(self._new_id())
        return data

    @staticmethod
    def _options(
        values: dict[str, Any], subcommand: str | None, group: str | None, focused: str | None
    ) -> list[JSON]:
        """Nest option values under subcommand (type 1) and group (type 2), like Discord."""

        def kind(value: Any) -> int:
            if isinstance(value, bool):
                return 5
            if isinstance(value, int):
                return 4
            return 10 if isinstance(value, float) else 3

        options: list[JSON] = []
        for name, value in values.items():
            option: JSON = {"name": name, "type": kind(value), "value": value}
            if name == focused:
                option.update(focused=True, type=3, value=str(value))
            options.append(option)
        if subcommand is not None:
            options = [{"name": subcommand, "type": 1, "options": options}]
        if group is not None:
            options = [{"name": group, "type": 2, "options": options}]
        return options

    def command_interaction(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        subcommand: str | None = None,
        group: str | None = None,
        channel_id: int | None = None,
        user_id: int | None = None,
        dm: bool = False,
    ) -> JSON:
        """INTERACTION_CREATE data for `/name [group] [subcommand] opt:value ...`."""
        opts = self._options(options or {}, subcommand, group, None)
        return self._interaction(2, self._command_data(name, opts), channel_id=channel_id,
                                 user_id=user_id, dm=dm)

    def autocomplete_interaction(
        self,
        name: str,
        options: dict[str, Any],
        focused: str,
        *,
        subcommand: str | None = None,
        group: str | None = None,
        channel_id: int | None = None,
        user_id: int | None = None,
    ) -> JSON:
        """INTERACTION_CREATE (type 4) while the user types into option `focused`."""
        opts = self._options(options, subcommand, group, focused)
        return self._interaction(4, self._command_data(name, opts), channel_id=channel_id,
                                 user_id=user_id, dm=False)

    def component_interaction(
        self,
        message_id: int,
        custom_id: str,
        *,
        component_type: int = 2,
        values: Sequence[str] | None = None,
        user_id: int | None = None,
    ) -> JSON:
        """INTERACTION_CREATE (type 3): a click on a button (or select) of a stored message."""
        message = self._messages[message_id]
        data: JSON = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = list(values)
        dm = self._guild_of(message.channel_id) is None
        return self._interaction(
            3, data, channel_id=message.channel_id, user_id=user_id, dm=dm,
            message=self._to_gateway(message.data),
        )

    def original_response(self, interaction: JSON) -> FakeMessage | None:
        """The message an interaction's callback (or first follow-up) created, if any."""
        original_id = self._interactions[interaction["token"]].original_id
        return None if original_id is None else self._messages[original_id]

    def responses_to(self, interaction: JSON) -> list[InteractionResponse]:
        return [r for r in self.interaction_responses if r.token == interaction["token"]]

    def _interaction_message(self, record: _Interaction, body: JSON) -> FakeMessage:
        data = self._message_data(record.channel_id, self.bot_id, body)
        data["type"] = 20 if record.type == 2 else 0
        data["webhook_id"] = str(self.app_id)
        data["application_id"] = str(self.app_id)
        data["interaction_metadata"] = {
            "id": str(record.id), "type": record.type, "user": record.user,
            "authorizing_integration_owners": {"0": str(self.guild_id)},
        }
        return self._store(data, allowed_mentions=body.get("allowed_mentions"),
                           interaction_token=record.token)

    # ---- gateway ---------------------------------------------------------------------------

    @property
    def identified_shards(self) -> list[tuple[int, int]]:
        """The `[id, count]` of every live session, by shard id."""
        return [self._sessions[k].shard for k in sorted(self._sessions)]

    async def dispatch(self, event: str, data: JSON) -> int:
        """Send a DISPATCH (op 0) to the session of the event's guild (DMs: shard 0); kept
        for replay if the socket is down. Returns its `s`."""
        guild_id = int(data["guild_id"]) if data.get("guild_id") else None
        session = next((s for s in self._sessions.values() if s.owns(guild_id)), None)
        if session is None:
            raise RuntimeError(f"no gateway session for guild {guild_id}: start a client first")
        return await self._dispatch_to(session, event, data)

    async def _dispatch_to(self, session: _Session, event: str, data: JSON) -> int:
        session.seq += 1
        session.sent.append((session.seq, event, data))
        await self._send_dispatch(session, session.seq, event, data)
        return session.seq

    async def _send_dispatch(self, session: _Session, seq: int, event: str, data: JSON) -> None:
        if session.conn is None:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await session.conn.send({"op": 0, "t": event, "s": seq, "d": data})

    async def drop_gateway(
        self, code: int | None = 4000, *, resumable: bool = True, shard: int = 0
    ) -> None:
        """Close a shard's socket (None: abort the TCP connection) so the client reconnects.

        discord.py resumes after 4000 or an abort; with `resumable=False` the RESUME gets an
        INVALID_SESSION and the client identifies afresh.
        """
        session = self._sessions.get(shard)
        if session is None:
            return
        conn, session.conn = session.conn, None
        session.resumable = resumable
        if conn is None:
            return
        if code is None:
            transport = conn.request.transport
            if transport is not None:
                transport.abort()
        else:
            await conn.ws.close(code=code)

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _GatewayConn(ws, request, request.query.get("compress") == "zlib-stream")
        self._conns.add(conn)
        try:
            await conn.send({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._gateway_op(conn, json.loads(msg.data))
        except ConnectionError:
            pass
        finally:
            self._conns.discard(conn)
            if conn.session is not None and conn.session.conn is conn:
                conn.session.conn = None
            self._notify()
        return ws

    async def _gateway_op(self, conn: _GatewayConn, payload: JSON) -> None:
        op, data = payload.get("op"), payload.get("d") or {}
        if op == 1:  # heartbeat
            await conn.send({"op": 11})
        elif op == 2:  # identify
            if data["token"] != self.token:
                await conn.ws.close(code=4004)  # authentication failed
                return
            await self._identify(conn, data)
        elif op == 6:  # resume
            await self._resume(conn, data)
        elif op == 8 and conn.session is not None:  # request guild members
            guild_id = int(data.get("guild_id") or self.guild_id)
            await self._dispatch_to(conn.session, "GUILD_MEMBERS_CHUNK", {
                "guild_id": str(guild_id), "chunk_index": 0, "chunk_count": 1,
                "members": self.guild_payload(guild_id)["members"], "nonce": data.get("nonce"),
            })
        self._notify()

    async def _identify(self, conn: _GatewayConn, data: JSON) -> None:
        self.identifies += 1
        self.intents = data.get("intents")
        shard_id, count = data.get("shard") or (0, 1)
        session = _Session((shard_id, count), secrets.token_hex(16), conn=conn)
        self._sessions[shard_id] = conn.session = session
        guilds = [g for g in self.guilds if session.owns(g)]
        ready: JSON = {
            "v": 10, "user": self.bot | {"verified": True, "mfa_enabled": False},
            "guilds": [{"id": str(g), "unavailable": True} for g in guilds],
            "session_id": session.session_id, "resume_gateway_url": self.gateway_url,
            "session_type": "normal", "private_channels": [], "relationships": [],
            "presences": [], "guild_join_requests": [], "geo_ordered_rtc_regions": [],
            "application": {"id": str(self.app_id), "flags": 0},
        }
        if "shard" in data:
            ready["shard"] = data["shard"]
        await self._dispatch_to(session, "READY", ready)
        for guild_id in guilds:
            await self._dispatch_to(session, "GUILD_CREATE", self.guild_payload(guild_id))

    async def _resume(self, conn: _GatewayConn, data: JSON) -> None:
        session = next(
            (s for s in self._sessions.values() if s.session_id == data.get("session_id")), None
        )
        if session is None or not session.resumable:
            await conn.send({"op": 9, "d": False})  # invalid session, not resumable
            return
        self.resumes += 1
        conn.session, session.conn = session, conn
        for seq, event, event_data in session.sent:
            if seq > (data.get("seq") or 0):
                await self._send_dispatch(session, seq, event, event_data)
        await self._dispatch_to(session, "RESUMED", {})

    # ---- REST plumbing ---------------------------------------------------------------------

    def rate_limit_next(
        self, method: str, path_pattern: str, *, retry_after: float = 0.2, times: int = 1
    ) -> None:
        """Answer the next `times` matching requests with a 429 discord.py will wait out."""
        headers = self._ratelimit_headers(1, 0, retry_after, "injected") | {
            "Retry-After": str(max(1, round(retry_after))), "X-RateLimit-Scope": "user",
        }
        body = {"message": "You are being rate limited.", "retry_after": retry_after,
                "global": False}
        self._faults.append(_Fault(method, path_pattern, 429, body, headers, times))

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        *,
        status: int = 403,
        code: int = 50007,
        message: str = "Cannot send messages to this user",
        times: int = 1,
        after_applying: bool = False,
        body: str | None = None,
        content_type: str = "text/plain",
    ) -> None:
        """Answer the next `times` matching requests with a Discord error body; with
        `after_applying`, each request is carried out first (a 5xx after the write). With
        `body`, the answer is that text with that `content_type` instead of Discord's JSON
        (`code` and `message` unused): a proxy's text/plain 503, Cloudflare's HTML 502."""
        answer: JSON | str = {"message": message, "code": code} if body is None else body
        self._faults.append(
            _Fault(method, path_pattern, status, answer, {}, times, after_applying, content_type)
        )

    def clear_faults(self) -> None:
        """Discord is well again: every injected fault still pending is dropped."""
        self._faults.clear()

    @staticmethod
    def _ratelimit_headers(limit: int, remaining: int, reset_after: float, bucket: str
                           ) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}", "X-RateLimit-Bucket": bucket,
            "Via": "1.1 google",  # discord.py treats a 429 without Via as a Cloudflare ban
        }

    @staticmethod
    def _matches(call: Call, method: str, pattern: str) -> bool:
        return call.method == method.upper() and fnmatch.fnmatchcase(call.path, pattern)

    def _take_fault(self, call: Call) -> _Fault | None:
        for fault in self._faults:
            if self._matches(call, fault.method, fault.pattern):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _bucket(self, call: Call) -> tuple[web.Response | None, dict[str, str]]:
        """The per-channel message-write bucket: a 429 when spent, else headers to add."""
        match = re.fullmatch(r"/channels/(\d+)/messages(/\d+)?", call.path)
        if self.message_bucket is None or call.method == "GET" or match is None:
            return None, {}
        limit, window = self.message_bucket
        now = asyncio.get_running_loop().time()
        bucket = self._buckets.setdefault(int(match[1]), _Bucket())
        if now >= bucket.reset_at:
            bucket.count, bucket.reset_at = 0, now + window
        reset_after = bucket.reset_at - now
        if bucket.count >= limit:
            headers = self._ratelimit_headers(limit, 0, reset_after, "channel-messages")
            headers |= {"Retry-After": str(max(1, round(reset_after))), "X-RateLimit-Scope": "user"}
            body = {"message": "You are being rate limited.", "retry_after": round(reset_after, 3),
                    "global": False}
            return _json(body, 429, headers), {}
        bucket.count += 1
        return None, self._ratelimit_headers(limit, limit - bucket.count, reset_after,
                                             "channel-messages")

    def _global(self, call: Call) -> web.Response | None:
        """A global 429 when the bot has spent its requests for the window (global_limit)."""
        if self.global_limit is None or call.path.startswith("/interactions/"):
            return None
        limit, window = self.global_limit
        recent = self._global_recent
        while recent and recent[0] <= call.time - window:
            recent.popleft()
        if len(recent) < limit:
            recent.append(call.time)
            return None
        retry_after = recent[0] + window - call.time
        headers = {"Retry-After": str(max(1, math.ceil(retry_after))), "X-RateLimit-Global": "true",
                   "X-RateLimit-Scope": "global", "Via": "1.1 google"}
        body = {"message": "You are being rate limited.", "retry_after": round(retry_after, 3),
                "global": True}
        return _json(body, 429, headers)

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        """Record every REST call, inject faults and rate limits, turn aiohttp errors to JSON."""
        if not request.path.startswith(API_PREFIX):
            return await handler(request)  # type: ignore[no-any-return]
        body = await _read_body(request)
        call = Call(request.method, request.path[len(API_PREFIX):], body, dict(request.query),
                    asyncio.get_running_loop().time())
        self.calls.append(call)
        response: web.StreamResponse
        extra: dict[str, str] = {}
        if fault := self._take_fault(call):
            if fault.after_applying:
                with contextlib.suppress(web.HTTPException):
                    await handler(request)  # Discord did it; the bot hears only the error
            response = fault.response()
        elif (refused := self._global(call)) is not None:
            response = refused
        else:
            limited, extra = self._bucket(call)
            if limited is not None:
                response = limited
            else:
                try:
                    response = await handler(request)
                except web.HTTPException as exc:
                    response = _error(exc.status, f"{exc.status}: {exc.reason}")
        response.headers.update(extra)
        if response.status == 429:
            self.rate_limited += 1
        call.status = response.status
        self._notify()
        return response

    def _add_routes(self, app: web.Application) -> None:
        p = API_PREFIX
        app.router.add_get(GATEWAY_PATH, self._gateway)
        app.router.add_get(f"{p}/users/@me", self._get_me)
        app.router.add_get(f"{p}/oauth2/applications/@me", self._get_application)
        app.router.add_get(f"{p}/gateway", self._get_gateway)
        app.router.add_get(f"{p}/gateway/bot", self._get_gateway)
        app.router.add_post(f"{p}/users/@me/channels", self._open_dm)
        app.router.add_get(f"{p}/channels/{{cid}}", self._get_channel)
        app.router.add_post(f"{p}/channels/{{cid}}/typing", self._no_content)
        app.router.add_post(f"{p}/channels/{{cid}}/messages", self._create_message)
        msg = f"{p}/channels/{{cid}}/messages/{{mid}}"
        app.router.add_get(msg, self._get_message)
        app.router.add_patch(msg, self._edit_message)
        app.router.add_delete(msg, self._delete_message)
        app.router.add_put(f"{msg}/reactions/{{emoji}}/@me", self._no_content)
        app.router.add_post(f"{p}/interactions/{{iid}}/{{token}}/callback", self._callback)
        hook = f"{p}/webhooks/{{app}}/{{token}}"
        app.router.add_post(hook, self._followup)
        app.router.add_get(f"{hook}/messages/{{mid}}", self._get_webhook_message)
        app.router.add_patch(f"{hook}/messages/{{mid}}", self._edit_webhook_message)
        app.router.add_delete(f"{hook}/messages/{{mid}}", self._delete_webhook_message)
        for path in (f"{p}/applications/{{app}}/commands",
                     f"{p}/applications/{{app}}/guilds/{{gid}}/commands"):
            app.router.add_get(path, self._get_commands)
            app.router.add_put(path, self._put_commands)
            app.router.add_post(path, self._post_command)

    # ---- REST handlers ---------------------------------------------------------------------

    async def _get_me(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bot {self.token}":
            return _error(401, "401: Unauthorized")
        return _json(self.bot)

    async def _get_application(self, request: web.Request) -> web.Response:
        return _json({
            "id": str(self.app_id), "name": "Momentum", "description": "", "icon": None,
            "bot_public": False, "bot_require_code_grant": False, "verify_key": "0" * 64,
            "owner": self.users[self.user_ids[0]], "team": None, "flags": 0, "summary": "",
            "bot": self.bot, "redirect_uris": [], "interactions_endpoint_url": None,
        })

    async def _get_gateway(self, request: web.Request) -> web.Response:
        return _json({"url": self.gateway_url, "shards": self.shards, "session_start_limit": {
            "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}})

    async def _no_content(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _open_dm(self, request: web.Request) -> web.Response:
        user_id = int((await _read_body(request))["recipient_id"])
        if user_id not in self.users:
            return _error(400, "Invalid Recipient(s)", 50033)
        return _json(self._dm_channel(user_id))

    async def _get_channel(self, request: web.Request) -> web.Response:
        channel = self._channel(int(request.match_info["cid"]))
        return _error(404, "Unknown Channel", 10003) if channel is None else _json(channel)

    def _find_message(self, request: web.Request) -> FakeMessage | None:
        message = self._messages.get(int(request.match_info["mid"]))
        if message is None or message.deleted:
            return None
        if message.channel_id != int(request.match_info["cid"]):
            return None
        return message

    async def _create_message(self, request: web.Request) -> web.Response:
        channel_id = int(request.match_info["cid"])
        if self._channel(channel_id) is None:
            return _error(404, "Unknown Channel", 10003)
        body: JSON = (await _read_body(request)) or {}
        if not (body.get("content") or body.get("embeds") or body.get("_files")
                or body.get("components") or body.get("sticker_ids")):
            return _error(400, "Cannot send an empty message", 50006)
        nonce = body.get("nonce")
        if nonce is not None and len(str(nonce)) > NONCE_MAX_LENGTH:
            return _error(400, "Invalid Form Body", 50035)
        if nonce is not None and body.get("enforce_nonce") and (
            earlier := self._nonced(channel_id, str(nonce))
        ):
            return _json(earlier.data)  # already created: no new message, no echo
        message = self._store(self._message_data(channel_id, self.bot_id, body),
                              allowed_mentions=body.get("allowed_mentions"))
        self._joined(channel_id, self.bot_id)
        await self._echo("MESSAGE_CREATE", message)
        return _json(message.data)

    def _nonced(self, channel_id: int, nonce: str) -> FakeMessage | None:
        """The bot's live message in the channel created with `nonce` within the window."""
        since_ms = (time.time() - NONCE_WINDOW_SECONDS) * 1000 - DISCORD_EPOCH_MS
        return next((
            m for m in self._messages.values()
            if m.channel_id == channel_id and m.author_id == self.bot_id and not m.deleted
            and "nonce" in m.data and str(m.data["nonce"]) == nonce
            and (m.id >> 22) >= since_ms
        ), None)

    async def _get_message(self, request: web.Request) -> web.Response:
        message = self._find_message(request)
        return _error(404, "Unknown Message", 10008) if message is None else _json(message.data)

    async def _edit_message(self, request: web.Request) -> web.Response:
        message = self._find_message(request)
        if message is None:
            return _error(404, "Unknown Message", 10008)
        if message.author_id != self.bot_id:
            return _error(403, "Cannot edit a message authored by another user", 50005)
        self._edit(message, (await _read_body(request)) or {})
        await self._echo("MESSAGE_UPDATE", message)
        return _json(message.data)

    async def _delete_message(self, request: web.Request) -> web.Response:
        message = self._find_message(request)
        if message is None:
            return _error(404, "Unknown Message", 10008)
        message.deleted = True
        await self._echo("MESSAGE_DELETE", message)
        return web.Response(status=204)

    async def _callback(self, request: web.Request) -> web.Response:
        """Record the response; answer like `?with_response=1` (discord.py parses this)."""
        record = self._interactions.get(request.match_info["token"])
        if record is None or str(record.id) != request.match_info["iid"]:
            return _error(404, "Unknown interaction", 10062)
        if any(r.token == record.token for r in self.interaction_responses):
            return _error(400, "Interaction has already been acknowledged.", 40060)
        body: JSON = (await _read_body(request)) or {}
        kind, data = int(body["type"]), body.get("data") or {}
        self.interaction_responses.append(InteractionResponse(record.id, record.token, kind, data))
        message: FakeMessage | None = None
        if kind in (4, 5):  # a new message, or its "thinking..." placeholder
            content = data if kind == 4 else {"flags": (data.get("flags", 0) & EPHEMERAL) | LOADING}
            message = self._interaction_message(record, content)
            record.original_id = message.id
            await self._echo("MESSAGE_CREATE", message)
        elif kind == 7 and record.message_id is not None:  # edit the clicked message
            message = self._messages[record.message_id]
            self._edit(message, data)
            await self._echo("MESSAGE_UPDATE", message)
        answer: JSON = {"interaction": {
            "id": str(record.id), "type": record.type,
            "response_message_loading": kind == 5,
            "response_message_ephemeral": bool(message and message.ephemeral),
        }}
        if message is not None:
            answer["interaction"]["response_message_id"] = str(message.id)
            answer["resource"] = {"type": kind, "message": message.data}
        return _json(answer)

    def _webhook_message(
        self, request: web.Request
    ) -> tuple[_Interaction | None, FakeMessage | None]:
        record = self._interactions.get(request.match_info["token"])
        if record is None:
            return None, None
        mid = request.match_info["mid"]
        message_id = record.original_id if mid == "@original" else int(mid)
        message = self._messages.get(message_id) if message_id is not None else None
        if message is None or message.deleted or message.interaction_token != record.token:
            return record, None
        return record, message

    async def _followup(self, request: web.Request) -> web.Response:
        """A follow-up; the first one after a defer fills the "thinking..." message."""
        record = self._interactions.get(request.match_info["token"])
        if record is None:
            return _error(401, "Invalid Webhook Token", 50027)
        body: JSON = (await _read_body(request)) or {}
        original = self._messages.get(record.original_id) if record.original_id else None
        if original is not None and original.flags & LOADING:
            keep = original.flags & EPHEMERAL
            self._edit(original, body | {"flags": (body.get("flags", 0) & ~EPHEMERAL) | keep})
            await self._echo("MESSAGE_UPDATE", original)
            return _json(original.data)
        message = self._interaction_message(record, body)
        await self._echo("MESSAGE_CREATE", message)
        return _json(message.data)

    async def _get_webhook_message(self, request: web.Request) -> web.Response:
        _, message = self._webhook_message(request)
        return _error(404, "Unknown Message", 10008) if message is None else _json(message.data)

    async def _edit_webhook_message(self, request: web.Request) -> web.Response:
        _, message = self._webhook_message(request)
        if message is None:
            return _error(404, "Unknown Message", 10008)
        body: JSON = (await _read_body(request)) or {}
        flags = message.flags & ~LOADING  # editing @original ends "thinking..."
        self._edit(message, body | {"flags": flags})
        await self._echo("MESSAGE_UPDATE", message)
        return _json(message.data)

    async def _delete_webhook_message(self, request: web.Request) -> web.Response:
        _, message = self._webhook_message(request)
        if message is None:
            return _error(404, "Unknown Message", 10008)
        message.deleted = True
        await self._echo("MESSAGE_DELETE", message)
        return web.Response(status=204)

    def _command_scope(self, request: web.Request) -> int | None:
        gid = request.match_info.get("gid")
        return int(gid) if gid is not None else None

    def _command(self, body: JSON, scope: int | None, existing: JSON | None) -> JSON:
        command: JSON = {
            "type": 1, "options": [], "default_member_permissions": None, "nsfw": False,
            "description": "", **body,
            "id": existing["id"] if existing else str(self._new_id()),
            "application_id": str(self.app_id), "version": str(self._new_id()),
        }
        if scope is not None:
            command["guild_id"] = str(scope)
        return command

    async def _get_commands(self, request: web.Request) -> web.Response:
        return _json(self.commands.get(self._command_scope(request), []))

    async def _put_commands(self, request: web.Request) -> web.Response:
        """Bulk overwrite (what tree.sync() does); ids survive for commands kept by name."""
        scope = self._command_scope(request)
        old = {c["name"]: c for c in self.commands.get(scope, [])}
        self.commands[scope] = [self._command(b, scope, old.get(b["name"]))
                                for b in (await _read_body(request)) or []]
        return _json(self.commands[scope])

    async def _post_command(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        body: JSON = await _read_body(request)
        commands = self.commands.setdefault(scope, [])
        old = next((c for c in commands if c["name"] == body["name"]), None)
        command = self._command(body, scope, old)
        commands[:] = [c for c in commands if c is not old] + [command]
        return _json(command, 200 if old else 201)
