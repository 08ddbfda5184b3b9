"""Loopback fake of the Slack Web API, spoken to by the real slack_sdk and slack-bolt.

Point `AsyncWebClient(token="xoxb-...", base_url=fake.base_url)` at it; the SDK runs
unmodified, so tests exercise real request encoding, error handling and retries.

    async with FakeSlack() as fake:
        client = AsyncWebClient(token="xoxb-test", base_url=fake.base_url)
        await client.chat_postMessage(channel="D1", text="hi")
        assert fake.messages("D1")[0].text == "hi"

Wire facts this relies on (slack_sdk 3.47): every call is a POST to `<base_url><method>`
(users.info is a GET) with the token in `Authorization: Bearer`; arguments arrive as JSON
(chat.*, views.*, assistant.*) or as query parameters (auth.test, chat.delete,
conversations.open, users.info); form bodies are parsed too. Any non-200 status or
`ok: false` makes the SDK raise `SlackApiError`. A 429 is retried only when the client
was built with `retry_handlers=[AsyncRateLimitErrorRetryHandler()]`; the default handlers
retry connection errors only. The retry handler sleeps `int(Retry-After)` seconds, so
keep injected `retry_after` small in tests.

Socket Mode: `apps.connections.open` (with an app-level `xapp-` token, as Slack requires)
returns a one-use `ws://` URL on this server. The app connects, gets `hello`, and then
`await fake.deliver(payload)` pushes one envelope and returns the app's acknowledgement;
`disconnect_socket()` asks the app to reconnect, as Slack does every few hours.

    async with FakeSlack() as fake:                      # with the app running in Socket Mode
        await fake.wait_for_socket()
        ack = await fake.deliver(message_event("hi"))    # {"envelope_id": ...}

Message metadata (`metadata={"event_type": ..., "event_payload": {...}}` on chat.postMessage
and chat.update) is stored and returned by conversations.replies (the bot's only history
read) when called with `include_all_metadata`, as Slack does; it checks the history scope
of the conversation's type (im:history for a D… channel, channels:history for C…,
groups:history for G…) against `scopes` and answers `missing_scope` without it. The fake keeps
only the bot's messages, so a thread's parent (the user's message) is not among the replies.
`fail_next(..., after_applying=True)` carries the call out and then answers the error, as when
Slack (or a proxy in front of it) took a write but answered 5xx; `skip=n` lets `n` calls pass
first, to hit, say, the second chat.postMessage of a reply. `fail_next(..., body=...,
content_type=...)` answers with a body that is not Slack's JSON, as a proxy does (samples in
tests/fakes/proxy_pages.py); `fail_next(RESPONSE_URL, ...)` fails response_url POSTs.

Also here: request signing (`sign_request`) and builders for the payloads Slack delivers
to the app (Events API envelopes, slash commands, block_actions), over HTTP or the socket.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import WSMsgType, web

TEAM_ID = "T0FAKETEAM"
TEAM_DOMAIN = "fake-team"
APP_ID = "A0FAKEAPP"
BOT_ID = "B0FAKEBOT"
BOT_USER_ID = "U0FAKEBOT"
USER_ID = "U0FAKEUSER"

TEXT_LIMIT = 40_000  # chat.postMessage/update silently truncate `text` beyond this
MAX_BLOCKS = 50

# Slack tiers, per workspace and method: Tier 3 ~50/min for chat.update, Tier 4 ~100/min
# for chat.appendStream. Used when FakeSlack(enforce_limits=True).
DEFAULT_LIMITS: dict[str, int] = {"chat.update": 50, "chat.appendStream": 100}

SOCKET_PATH = "/link/"
RESPONSE_URL = "response_url"  # fail_next() of every response_url POST
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})  # the only ones an xapp- token may call

# The scope that reads a conversation's history, by the first letter of its id.
HISTORY_SCOPES = {"D": "im:history", "C": "channels:history", "G": "groups:history"}

_JSON_ARGS = ("blocks", "attachments", "chunks", "view", "metadata", "loading_messages")


def dm_channel_id(user_id: str) -> str:
    """The DM channel the fake uses for a user, so events and conversations.open agree."""
    return "D" + user_id[1:]


class SlackError(Exception):
    """An `ok: false` answer with Slack's error code (and any fields Slack adds to it)."""

    def __init__(self, error: str, **fields: Any) -> None:
        super().__init__(error)
        self.error = error
        self.fields = fields


@dataclass
class Call:
    """One Web API request as the fake received it (token stripped from args)."""

    method: str
    args: dict[str, Any]
    time: float  # time.monotonic() on arrival
    status: int = 200
    error: str | None = None  # Slack error code when the answer was ok: false
    peer: Any = None  # the client's (host, port): one per TCP connection
    token: str | None = None  # the token the call was made with


@dataclass
class Message:
    """A message the bot posted; streamed messages have `streaming` set until stopped."""

    channel: str
    ts: str
    text: str = ""
    blocks: list[dict[str, Any]] | None = None
    thread_ts: str | None = None
    streaming: bool = False
    closed_error: str = "message_not_in_streaming_state"  # answer once a stream is closed
    chunks: list[dict[str, Any]] = field(default_factory=list)  # non-text stream chunks
    started: float = 0.0  # monotonic time of chat.startStream
    edits: int = 0  # chat.update / appendStream count
    metadata: dict[str, Any] | None = None  # {"event_type": ..., "event_payload": {...}}

    def as_json(self, *, metadata: bool = True) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "text": self.text,
            "ts": self.ts,
        }
        if self.blocks is not None:
            msg["blocks"] = self.blocks
        if self.thread_ts:
            msg["thread_ts"] = self.thread_ts
        if metadata and self.metadata is not None:
            msg["metadata"] = self.metadata
        return msg


@dataclass
class _SocketLink:
    """One Socket Mode connection; a retiring one was told to reconnect and gets nothing new."""

    ws: web.WebSocketResponse
    retiring: bool = False


@dataclass(frozen=True)
class RawBody:
    """An answer that is not Slack's JSON: what a proxy or load balancer in front of Slack
    sends (Envoy's text/plain 503, an HTML 502 page), with exactly this Content-Type."""

    text: str
    content_type: str


@dataclass
class _Failure:
    error: str
    status: int
    retry_after: int | None
    times: int
    after_applying: bool = False  # carry the call out, then answer the error
    skip: int = 0  # calls to let through before this failure applies
    raw: RawBody | None = None  # answer this instead of Slack's {"ok": false, ...}

    def answer(self) -> dict[str, Any] | RawBody:
        return self.raw if self.raw is not None else {"ok": False, "error": self.error}


class FakeSlack:
    """An aiohttp server on 127.0.0.1 that answers like slack.com/api for one workspace."""

    def __init__(
        self,
        *,
        enforce_limits: bool = False,
        limits: dict[str, int] | None = None,
        window: float = 60.0,
        stream_ttl: float = 300.0,
        team_id: str = TEAM_ID,
        bot_user_id: str = BOT_USER_ID,
        bot_id: str = BOT_ID,
        scopes: str = "chat:write,im:history,users:read,commands,assistant:write",
    ) -> None:
        self.team_id, self.bot_user_id, self.bot_id, self.scopes = (
            team_id, bot_user_id, bot_id, scopes,
        )
        # Per-method call budgets within `window` seconds (shared by the whole workspace).
        self.limits: dict[str, int] = dict(DEFAULT_LIMITS) if enforce_limits else {}
        self.limits.update(limits or {})
        self.window = window
        self.stream_ttl = stream_ttl  # Slack closes streams after about 5 minutes

        self.calls: list[Call] = []
        # method -> seconds to wait before answering each call (e.g. random: a slow Slack)
        self.latency: dict[str, Callable[[], float]] = {}
        self.rate_limited = 0  # number of 429 answers sent
        self.ephemerals: list[dict[str, Any]] = []
        self.home_views: dict[str, dict[str, Any]] = {}  # user id -> published view
        self.users: dict[str, dict[str, Any]] = {}
        self._messages: dict[str, dict[str, Message]] = {}  # channel -> ts -> message
        self._responses: dict[str, list[dict[str, Any]]] = {}  # response_url tag -> posts
        self._failures: dict[str, deque[_Failure]] = {}
        self._recent: dict[str, deque[float]] = {}  # method -> accepted call times
        # Bot ts: the current second, then a count from .500001 (never a user event's ts,
        # which count from .000001), so they follow time like Slack's and never go back.
        self._ts_second = 0
        self._ts_seq = 0
        self.acks: list[dict[str, Any]] = []  # Socket Mode acknowledgements, in arrival order
        self.sockets_opened = 0
        self._tickets: set[str] = set()  # issued by apps.connections.open, each usable once
        self._links: list[_SocketLink] = []
        self._ack_waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._socket_news = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""
        # "Add to Slack" (oauth.v2.access): codes and refresh tokens a test hands out, each
        # good once, and the tokens issued per workspace; an uninstall revokes them.
        self._codes: dict[str, str] = {}  # code -> team id
        self._refresh: dict[str, str] = {}  # refresh token -> team id
        self.tokens: dict[str, str] = {}  # issued bot token -> team id
        self.revoked: set[str] = set()
        self.expires_in: int | None = None  # set: tokens rotate (refresh_token, expires_in)
        self._handlers = {
            "apps.connections.open": self._connections_open,
            "auth.test": self._auth_test,
            "oauth.v2.access": self._oauth_access,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.delete": self._delete,
            "chat.startStream": self._start_stream,
            "chat.appendStream": self._append_stream,
            "chat.stopStream": self._stop_stream,
            "assistant.threads.setStatus": self._set_status,
            "conversations.open": self._conversations_open,
            "conversations.replies": self._conversations_replies,
            "users.info": self._users_info,
            "views.publish": self._views_publish,
        }

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{tag}", self._response_url)
        app.router.add_get(SOCKET_PATH, self._socket_link)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def close(self) -> None:
        for link in list(self._links):
            await link.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """What `AsyncWebClient(base_url=...)` expects."""
        return f"{self.url}/api/"

    # -- test controls and inspection ------------------------------------------------

    def response_url(self, tag: str = "default") -> str:
        """A response_url (as in slash-command payloads) whose POSTs land in `responses(tag)`."""
        return f"{self.url}/response/{tag}"

    def responses(self, tag: str = "default") -> list[dict[str, Any]]:
        return self._responses.get(tag, [])

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def messages(self, channel: str, thread_ts: str | None = None) -> list[Message]:
        """Live messages in a channel, oldest first; with thread_ts, only that thread's replies."""
        msgs = sorted(self._messages.get(channel, {}).values(), key=lambda m: float(m.ts))
        return [m for m in msgs if thread_ts is None or m.thread_ts == thread_ts]

    def message(self, channel: str, ts: str) -> Message:
        return self._messages[channel][ts]

    def text(self, channel: str, ts: str) -> str:
        """The text a user would see now (streamed text included)."""
        return self.message(channel, ts).text

    def add_user(self, user_id: str, *, tz: str = "UTC", **fields: Any) -> dict[str, Any]:
        """Register a user for users.info; unknown users answer `user_not_found`."""
        offset = datetime.now(ZoneInfo(tz)).utcoffset()
        name = fields.pop("name", user_id.lower())
        user = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "real_name": fields.pop("real_name", name.title()),
            "deleted": False,
            "is_bot": False,
            "tz": tz,
            "tz_label": tz,
            "tz_offset": int(offset.total_seconds()) if offset else 0,
            "profile": {"display_name": name},
            **fields,
        }
        self.users[user_id] = user
        return user

    def fail_next(
        self,
        method: str,
        error: str | None = None,
        *,
        status: int = 200,
        retry_after: int | None = None,
        times: int = 1,
        after_applying: bool = False,
        skip: int = 0,
        body: str | None = None,
        content_type: str = "text/plain",
    ) -> None:
        """Make the next `times` calls to `method` fail. status=429 means `ratelimited`.

        With `after_applying`, each of those calls is carried out first (a message is posted,
        a text changed) and then answered with the error: Slack took it, its answer was lost
        to a 5xx. `skip` lets that many calls to `method` succeed before the first failure.
        With `body`, the answer is that text with that `content_type` instead of Slack's
        JSON: a proxy's `upstream connect error` (text/plain), an HTML error page
        (text/html), or a page mislabelled as application/json. `method` may also be
        `RESPONSE_URL`: the POSTs of every response_url then fail the same way.
        """
        if status == 429:
            error = error or "ratelimited"
            retry_after = 1 if retry_after is None else retry_after
        raw = RawBody(body, content_type) if body is not None else None
        failure = _Failure(
            error or "internal_error", status, retry_after, times, after_applying, skip, raw
        )
        self._failures.setdefault(method, deque()).append(failure)

    def expire_stream(
        self, channel: str, ts: str, error: str = "message_not_in_streaming_state"
    ) -> None:
        """Close a stream server-side, as Slack does after ~5 min or when the user stops it
        (error="stopped_by_user"); later append/stop calls answer `error`."""
        msg = self.message(channel, ts)
        msg.streaming, msg.closed_error = False, error

    # -- HTTP plumbing ---------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args, token = await _read_args(request)
        if method == "oauth.v2.access":  # slack_sdk sends the client id and secret as Basic
            args["_basic"] = request.headers.get("Authorization", "").startswith("Basic ")
        if (latency := self.latency.get(method)) is not None:
            await asyncio.sleep(latency())  # a slow Slack: answers in another order
        now = time.monotonic()
        status, body, headers = self._answer(method, args, token, now)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        code = body.get("error") if isinstance(body, dict) else None
        self.calls.append(Call(method, args, now, status, code, peer, token))
        if status == 429:
            self.rate_limited += 1
        headers["X-OAuth-Scopes"] = self.scopes
        if isinstance(body, RawBody):
            return _raw_response(body, status, headers)
        return web.json_response(body, status=status, headers=headers)

    def _answer(
        self, method: str, args: dict[str, Any], token: str | None, now: float
    ) -> tuple[int, dict[str, Any] | RawBody, dict[str, str]]:
        if method == "oauth.v2.access":  # the app's client id and secret, not a token
            return 200, self._apply(method, args, now), {}
        if not token:
            return 200, {"ok": False, "error": "not_authed"}, {}
        if token in self.revoked:
            return 200, {"ok": False, "error": "token_revoked"}, {}
        if (method in APP_TOKEN_METHODS) != token.startswith("xapp-"):
            return 200, {"ok": False, "error": "not_allowed_token_type"}, {}
        failure = self._take_failure(method)
        if failure is not None:
            if failure.after_applying:
                self._apply(method, args, now)
            headers = {}
            if failure.retry_after is not None:
                headers["Retry-After"] = str(failure.retry_after)
            return failure.status, failure.answer(), headers
        retry_after = self._over_limit(method, now)
        if retry_after is not None:
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)}
        if method == "auth.test":  # who the token is: its workspace's bot
            return 200, self._apply(method, {**args, "_token": token}, now), {}
        return 200, self._apply(method, args, now), {}

    def _take_failure(self, method: str) -> _Failure | None:
        failures = self._failures.get(method)
        if not failures:
            return None
        f = failures[0]
        if f.skip > 0:
            f.skip -= 1
            return None
        f.times -= 1
        if f.times <= 0:
            failures.popleft()
        return f

    def _apply(self, method: str, args: dict[str, Any], now: float) -> dict[str, Any]:
        """Carry a call out; the body of Slack's answer to it."""
        handler = self._handlers.get(method)
        if handler is None:
            return {"ok": False, "error": "unknown_method", "req_method": method}
        try:
            return {"ok": True, **handler(args, now)}
        except SlackError as e:
            return {"ok": False, "error": e.error, **e.fields}
        except KeyError as e:  # a required argument is missing
            return {"ok": False, "error": "invalid_arguments", "missing": str(e)}

    def _over_limit(self, method: str, now: float) -> int | None:
        """Sliding-window budget; returns Retry-After seconds when the call is refused."""
        limit = self.limits.get(method)
        if limit is None:
            return None
        recent = self._recent.setdefault(method, deque())
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        if len(recent) >= limit:
            return max(1, math.ceil(recent[0] + self.window - now))
        recent.append(now)
        return None

    async def _response_url(self, request: web.Request) -> web.Response:
        """Slack answers a response_url POST with a plain `ok` (errors are plain text too)."""
        failure = self._take_failure(RESPONSE_URL)
        if failure is not None:
            raw = failure.raw or RawBody(failure.error, "text/plain")
            return _raw_response(raw, failure.status, {})
        body = await request.json() if request.can_read_body else {}
        self._responses.setdefault(request.match_info["tag"], []).append(body)
        return web.Response(text="ok")

    # -- Socket Mode -----------------------------------------------------------------

    async def wait_for_socket(self, *, opened: int = 1, within: float = 5.0) -> None:
        """Until the app has opened `opened` sockets in all and one of them takes envelopes."""
        try:
            async with asyncio.timeout(within):
                while self.sockets_opened < opened or self._live_link() is None:
                    await self._socket_news.wait()
        except TimeoutError:
            raise TimeoutError(
                f"no Socket Mode connection within {within}s ({self.sockets_opened} opened)"
            ) from None

    async def deliver(
        self,
        payload: dict[str, Any],
        *,
        envelope_id: str | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
        within: float = 5.0,
    ) -> dict[str, Any]:
        """Send one envelope over the socket and return the app's ack (`envelope_id`, and
        `payload` when it answered with content). The envelope type follows the payload:
        an Events API envelope, a slash command's fields, or an interactive payload.
        `retry_attempt` >= 1 is how Slack marks a redelivery."""
        await self.wait_for_socket(within=within)
        link = self._live_link()
        assert link is not None
        envelope_id = envelope_id or str(uuid.uuid4())
        kind = _envelope_type(payload)
        waiter = asyncio.get_running_loop().create_future()
        self._ack_waiters[envelope_id] = waiter
        await link.ws.send_json({
            "envelope_id": envelope_id, "type": kind, "payload": payload,
            "accepts_response_payload": kind == "slash_commands"
            or payload.get("type") in ("view_submission", "block_suggestion"),
            "retry_attempt": retry_attempt, "retry_reason": retry_reason,
        })
        try:
            async with asyncio.timeout(within):
                return await waiter
        except TimeoutError:
            raise TimeoutError(
                f"the app did not acknowledge {kind} envelope {envelope_id} within {within}s"
            ) from None
        finally:
            self._ack_waiters.pop(envelope_id, None)

    async def disconnect_socket(self, reason: str = "refresh_requested") -> None:
        """Tell the connected app to reconnect (Slack's `disconnect` message); new envelopes
        wait for its next socket, which `wait_for_socket(opened=...)` can await."""
        for link in self._links:
            if not link.retiring:
                link.retiring = True
                await link.ws.send_json({
                    "type": "disconnect", "reason": reason, "debug_info": {"host": "fake-slack"},
                })
        self._socket_changed()

    def _live_link(self) -> _SocketLink | None:
        live = [link for link in self._links if not link.retiring and not link.ws.closed]
        return live[-1] if live else None

    def _socket_changed(self) -> None:
        self._socket_news.set()
        self._socket_news = asyncio.Event()

    def _connections_open(self, args: dict[str, Any], now: float) -> dict[str, Any]:
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        ws_url = self.url.replace("http://", "ws://", 1)
        return {"url": f"{ws_url}{SOCKET_PATH}?{urlencode({'ticket': ticket, 'app_id': APP_ID})}"}

    async def _socket_link(self, request: web.Request) -> web.StreamResponse:
        """The app's end of Socket Mode. aiohttp's autoping answers the SDK's pings."""
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=401, text="invalid or used ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({
            "type": "hello", "num_connections": len(self._links) + 1,
            "debug_info": {"host": "fake-slack", "approximate_connection_time": 18060},
            "connection_info": {"app_id": APP_ID},
        })
        link = _SocketLink(ws)
        self._links.append(link)
        self.sockets_opened += 1
        self._socket_changed()
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    self._acknowledged(json.loads(message.data))
        finally:
            self._links.remove(link)
            self._socket_changed()
        return ws

    def _acknowledged(self, ack: dict[str, Any]) -> None:
        self.acks.append(ack)
        waiter = self._ack_waiters.get(str(ack.get("envelope_id")))
        if waiter is not None and not waiter.done():
            waiter.set_result(ack)

    # -- methods ---------------------------------------------------------------------

    def _new_ts(self) -> str:
        second = int(time.time())
        if second > self._ts_second or self._ts_seq >= 999_999:
            self._ts_second, self._ts_seq = max(second, self._ts_second + 1), 500_000
        self._ts_seq += 1
        return f"{self._ts_second}.{self._ts_seq:06d}"

    def _find(self, args: dict[str, Any]) -> Message:
        msg = self._messages.get(args["channel"], {}).get(args["ts"])
        if msg is None:
            raise SlackError("message_not_found")
        return msg

    def install_code(self, team_id: str) -> str:
        """A code as Slack's authorize page sends the installer back with, for `team_id`."""
        code = "code-" + uuid.uuid4().hex[:12]
        self._codes[code] = team_id
        return code

    def uninstall(self, team_id: str) -> dict[str, Any]:
        """Revoke the workspace's tokens; the `app_uninstalled` envelope Slack then sends."""
        self.revoked.update(t for t, team in self.tokens.items() if team == team_id)
        event = {"type": "app_uninstalled", "event_ts": _event_ts()}
        return event_envelope(event, team_id=team_id)

    def _oauth_access(self, args: dict[str, Any], now: float) -> dict[str, Any]:
        """A code (or, with token rotation, a refresh token) for the workspace's bot token."""
        basic = args.pop("_basic", False)
        if not basic and not (args.get("client_id") and args.get("client_secret")):
            raise SlackError("invalid_client_id")
        if args.get("grant_type") == "refresh_token":
            team = self._refresh.pop(str(args.get("refresh_token")), None)
            if team is None:
                raise SlackError("invalid_refresh_token")
        else:
            team = self._codes.pop(str(args.get("code")), None)
            if team is None:
                raise SlackError("invalid_code")
        token = f"xoxb-{team}-{uuid.uuid4().hex[:8]}"
        self.tokens[token] = team
        answer: dict[str, Any] = {
            "app_id": APP_ID, "authed_user": {"id": USER_ID}, "scope": self.scopes,
            "token_type": "bot", "access_token": token, "bot_user_id": self.bot_user_id,
            "team": {"id": team, "name": f"Team {team}"}, "enterprise": None,
            "is_enterprise_install": False,
        }  # fmt: skip
        if self.expires_in is not None:
            refresh = "xoxe-" + uuid.uuid4().hex[:12]
            self._refresh[refresh] = team
            answer.update(refresh_token=refresh, expires_in=self.expires_in)
        return answer

    def _auth_test(self, args: dict[str, Any], now: float) -> dict[str, Any]:
        token = args.get("_token")
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": "Fake Team",
            "user": "momentum",
            "team_id": self.tokens.get(token or "", self.team_id),
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _post_message(self, args: dict[str, Any], now: float) -> dict[str, Any]:
        channel = args.get("channel")
        if not channel:
            raise SlackError("channel_not_found")
        text, blocks = _content(args)
        msg = Message(channel, self._new_ts(), text, blocks, args.get("thread_ts") or None)
        msg.metadata = _metadata(args)
        self._messages.setdefault(channel, {})[msg.ts] = msg
        return {"channel": channel, "ts": msg.ts, "message": msg.as_json()}

    def _update(self, args: dict[str, Any], now: float) -> dict[str, Any]:
        msg = self._find(args)
        text, blocks = _content(args)
        if "text" in args:
            msg.text = text
        if "blocks" in args:
            msg.blocks = blocks
        if "metadata" in args:
            msg.metadata = _metadata(args)
        msg.edits += 1
        return {"channel": msg.channel, "ts": msg.ts, "text": msg.text, "message": msg.as_json()}

    def _post_ephemeral(self, args: dict[str, Any], now: float) -> dict[str, Any]:
        text, blocks = _content(args)
        ts = self._new_ts()
        self.ephemerals.append(
            {"channel": args["channel"], "user": args["user"], "text": text,
             "blocks": blocks, "thread_ts": args.get("thread_ts"), "ts": ts}
        )
        return {"message_ts": ts}

    def _delete(self, args: dict[str, Any], now: float) -> dict[str, Any]:
        msg = self._find(args)
        del self._messages[msg.channel][msg.ts]
        return {"channel": msg.channel, "ts": msg.ts}

    def _start_stream(self, args: dict[str, Any], now: float) -> dict[str, Any]:
        channel, thread_ts = args["channel"], args["thread_ts"]
        msg = Message(channel, self._new_ts(), thread_ts=thread_ts, streaming=True, started=now)
        _append(msg, args)
        self._messages.setdefault(channel, {})[msg.ts] = msg
        return {"channel": channel, "ts": msg.ts}

    def _streaming(self, args: dict[str, Any], now: float) -> Message:
        msg = self._find(args)
        if msg.streaming and now - msg.started > self.stream_ttl:
            msg.streaming = False
        if not msg.streaming:
            raise SlackError(msg.closed_error)
        return msg

    def _append_stream(self, args: dict[str, Any], now: float) -> dict[str, Any]:
        msg = self._streaming(args, now)
        _append(msg, args)
        msg.edits += 1
        return {"channel": msg.channel, "ts": msg.ts}

    def _stop_stream(self, args: dict[str, Any], now: float) -> dict[str, Any]:
        msg = self._streaming(args, now)
        _append(msg, args)
        if args.get("blocks"):
            msg.blocks = args["blocks"]
        msg.streaming = False
        return {"channel": msg.channel, "ts": msg.ts, "message": msg.as_json()}

    def _set_status(self, args: dict[str, Any], now: float) -> dict[str, Any]:
        for required in ("channel_id", "thread_ts", "status"):
            if required not in args:
                raise SlackError("invalid_arguments")
        return {}

    def _conversations_open(self, args: dict[str, Any], now: float) -> dict[str, Any]:
        users = [u for u in str(args.get("users", "")).split(",") if u]
        if len(users) != 1:
            raise SlackError("users_list_not_supplied" if not users else "not_implemented")
        channel = dm_channel_id(users[0])
        return {"no_op": channel in self._messages, "channel": {"id": channel}}

    def _conversations_replies(self, args: dict[str, Any], now: float) -> dict[str, Any]:
        """A thread, oldest first: its parent (when it is a stored message), then its replies."""
        channel, ts = self._readable(args), str(args["ts"])
        known = self._messages.get(channel, {}).get(ts)
        parent = (known.thread_ts or ts) if known is not None else ts
        thread = [m for m in self.messages(channel) if parent in (m.ts, m.thread_ts)]
        return _page(thread, args, max_limit=1000)

    def _readable(self, args: dict[str, Any]) -> str:
        """The channel, if the token's scopes may read its history (else `missing_scope`)."""
        channel = str(args.get("channel") or "")
        if not channel:
            raise SlackError("channel_not_found")
        needed = HISTORY_SCOPES.get(channel[0], "channels:history")
        if needed not in self.scopes.split(","):
            raise SlackError("missing_scope", needed=needed, provided=self.scopes)
        return channel

    def _users_info(self, args: dict[str, Any], now: float) -> dict[str, Any]:
        user = self.users.get(args["user"])
        if user is None:
            raise SlackError("user_not_found")
        return {"user": user}

    def _views_publish(self, args: dict[str, Any], now: float) -> dict[str, Any]:
        view = {"id": "V" + uuid.uuid4().hex[:10].upper(), "team_id": self.team_id,
                **args["view"]}
        self.home_views[args["user_id"]] = view
        return {"view": view}


def _raw_response(raw: RawBody, status: int, headers: dict[str, str]) -> web.Response:
    """`raw` with exactly its Content-Type (aiohttp's `text=` would add a charset)."""
    return web.Response(
        body=raw.text.encode(), status=status, headers={**headers, "Content-Type": raw.content_type}
    )


async def _read_args(request: web.Request) -> tuple[dict[str, Any], str | None]:
    """Merge query, JSON and form arguments the way Slack accepts them; pull out the token."""
    args: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        if request.content_type == "application/json":
            args.update(await request.json())
        else:
            form = await request.post()
            args.update({k: v for k, v in form.items() if isinstance(v, str)})
    for key in _JSON_ARGS:  # form-encoded calls send structured arguments as JSON strings
        value = args.get(key)
        if isinstance(value, str) and value[:1] in "[{":
            args[key] = json.loads(value)
    token = args.pop("token", None)
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        token = auth.removeprefix("Bearer ")
    return args, token


def _content(args: dict[str, Any]) -> tuple[str, list[dict[str, Any]] | None]:
    """Validate text/blocks like chat.postMessage does."""
    text, blocks = str(args.get("text") or args.get("markdown_text") or ""), args.get("blocks")
    if not text and not blocks and not args.get("attachments"):
        raise SlackError("no_text")
    if blocks is not None and (not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS):
        raise SlackError("invalid_blocks")
    return text[:TEXT_LIMIT], blocks


def _metadata(args: dict[str, Any]) -> dict[str, Any] | None:
    """Validate message metadata like chat.postMessage does: an event_type and a payload."""
    metadata = args.get("metadata")
    if metadata is None:
        return None
    if not (
        isinstance(metadata, dict)
        and isinstance(metadata.get("event_type"), str)
        and metadata["event_type"]
        and isinstance(metadata.get("event_payload"), dict)
    ):
        raise SlackError("invalid_metadata_format")
    return {"event_type": metadata["event_type"], "event_payload": metadata["event_payload"]}


def _flag(value: Any) -> bool:
    """A boolean argument as slack_sdk sends it: True in JSON, "1"/"true" in a query."""
    return value is True or str(value).lower() in ("1", "true")


def _page(
    messages: list[Message], args: dict[str, Any], *, max_limit: int
) -> dict[str, Any]:
    """One page of conversations.replies: `oldest` and `latest`
    (exclusive unless `inclusive`), `limit`, and a cursor (here simply an offset)."""
    inclusive = _flag(args.get("inclusive"))
    oldest, latest = float(args.get("oldest") or 0), float(args.get("latest") or math.inf)

    def within(ts: float) -> bool:
        if inclusive:
            return oldest <= ts <= latest
        return oldest < ts < latest

    chosen = [m for m in messages if within(float(m.ts))]
    try:
        limit = min(max(1, int(args.get("limit") or max_limit)), max_limit)
        start = int(args.get("cursor") or 0)
    except ValueError as error:
        raise SlackError("invalid_cursor") from error
    page = chosen[start : start + limit]
    more = start + limit < len(chosen)
    metadata = _flag(args.get("include_all_metadata"))
    return {
        "messages": [m.as_json(metadata=metadata) for m in page],
        "has_more": more,
        "response_metadata": {"next_cursor": str(start + limit) if more else ""},
    }


def _envelope_type(payload: dict[str, Any]) -> str:
    """Which Socket Mode envelope carries `payload`."""
    if payload.get("type") == "event_callback":
        return "events_api"
    return "slash_commands" if "command" in payload else "interactive"


def _append(msg: Message, args: dict[str, Any]) -> None:
    """Apply a stream call's markdown_text and chunks to the message."""
    msg.text += args.get("markdown_text") or ""
    for chunk in args.get("chunks") or []:
        if chunk.get("type") == "markdown_text":
            msg.text += chunk.get("text", "")
        else:
            msg.chunks.append(chunk)


# -- what Slack sends to the app -------------------------------------------------------


def sign_request(
    signing_secret: str,
    body: bytes,
    timestamp: int | None = None,
    *,
    retry_num: int | None = None,
    retry_reason: str = "http_timeout",
    content_type: str | None = None,
) -> dict[str, str]:
    """Headers Slack sends with a request: v0 HMAC-SHA256 of `v0:timestamp:body`.

    Computed independently of slack_sdk so that verifying with its SignatureVerifier
    is a real check. `retry_num` adds the headers of Slack's redelivery attempts.
    """
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(
        signing_secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256
    ).hexdigest()
    if content_type is None:
        is_json = body.lstrip()[:1] == b"{"
        content_type = "application/json" if is_json else "application/x-www-form-urlencoded"
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason
    return headers


_event_seq = 0


def _event_ts() -> str:
    """A fresh, increasing message ts for user-side events."""
    global _event_seq
    _event_seq += 1
    return f"{int(time.time())}.{_event_seq:06d}"


def json_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def event_envelope(
    event: dict[str, Any], *, team_id: str = TEAM_ID, event_id: str | None = None
) -> dict[str, Any]:
    """Wrap an event as the Events API delivers it (event_id is the dedupe key)."""
    return {
        "token": "fake-verification-token",
        "team_id": team_id,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or "Ev" + uuid.uuid4().hex[:10].upper(),
        "event_time": int(time.time()),
        "authorizations": [{
            "enterprise_id": None, "team_id": team_id, "user_id": BOT_USER_ID,
            "is_bot": True, "is_enterprise_install": False,
        }],
        "is_ext_shared_channel": False,
    }


def message_event(
    text: str,
    *,
    user: str = USER_ID,
    channel: str | None = None,
    ts: str | None = None,
    thread_ts: str | None = None,
    channel_type: str = "im",
    team_id: str = TEAM_ID,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A user's `message` event (a DM by default: message.im)."""
    ts = ts or _event_ts()
    event: dict[str, Any] = {
        "type": "message",
        "user": user,
        "text": text,
        "ts": ts,
        "event_ts": ts,
        "channel": channel or dm_channel_id(user),
        "channel_type": channel_type,
        "team": team_id,
        "client_msg_id": str(uuid.uuid4()),
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event_envelope(event, team_id=team_id, event_id=event_id)


def app_mention_event(
    text: str,
    *,
    user: str = USER_ID,
    channel: str = "C0FAKECHAN",
    ts: str | None = None,
    thread_ts: str | None = None,
    team_id: str = TEAM_ID,
    event_id: str | None = None,
) -> dict[str, Any]:
    """An `app_mention` in a channel; `text` should contain `<@BOT_USER_ID>` as Slack's does."""
    ts = ts or _event_ts()
    event: dict[str, Any] = {
        "type": "app_mention", "user": user, "text": text, "ts": ts, "event_ts": ts,
        "channel": channel, "team": team_id, "client_msg_id": str(uuid.uuid4()),
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event_envelope(event, team_id=team_id, event_id=event_id)


def app_home_opened_event(
    *, user: str = USER_ID, tab: str = "home", team_id: str = TEAM_ID,
    event_id: str | None = None,
) -> dict[str, Any]:
    """`app_home_opened`; tab "messages" is how agent-mode DMs announce an opened DM."""
    event = {
        "type": "app_home_opened", "user": user, "channel": dm_channel_id(user),
        "tab": tab, "event_ts": _event_ts(),
    }
    return event_envelope(event, team_id=team_id, event_id=event_id)


def slash_command_body(
    command: str,
    text: str = "",
    *,
    response_url: str,
    user: str = USER_ID,
    channel: str | None = None,
    team_id: str = TEAM_ID,
) -> bytes:
    """Form-encoded slash command, as Slack POSTs it."""
    return urlencode(slash_command_payload(
        command, text, response_url=response_url, user=user, channel=channel, team_id=team_id,
    )).encode()


def slash_command_payload(
    command: str,
    text: str = "",
    *,
    response_url: str,
    user: str = USER_ID,
    channel: str | None = None,
    team_id: str = TEAM_ID,
) -> dict[str, str]:
    """A slash command's fields: the form body over HTTP, the envelope payload over a socket."""
    return {
        "token": "fake-verification-token",
        "team_id": team_id,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel or dm_channel_id(user),
        "channel_name": "directmessage",
        "user_id": user,
        "user_name": user.lower(),
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": uuid.uuid4().hex,
    }


def block_actions_body(
    action_id: str,
    value: str | None = None,
    *,
    user: str = USER_ID,
    channel: str | None = None,
    message_ts: str | None = None,
    view: dict[str, Any] | None = None,
    block_id: str = "actions",
    response_url: str | None = None,
    team_id: str = TEAM_ID,
) -> bytes:
    """A button click as Slack POSTs it: `payload=<json>`."""
    payload = block_actions_payload(
        action_id, value, user=user, channel=channel, message_ts=message_ts, view=view,
        block_id=block_id, response_url=response_url, team_id=team_id,
    )
    return urlencode({"payload": json.dumps(payload)}).encode()


def block_actions_payload(
    action_id: str,
    value: str | None = None,
    *,
    user: str = USER_ID,
    channel: str | None = None,
    message_ts: str | None = None,
    view: dict[str, Any] | None = None,
    block_id: str = "actions",
    response_url: str | None = None,
    team_id: str = TEAM_ID,
) -> dict[str, Any]:
    """A button click on a message (message_ts) or in App Home (view)."""
    if view is not None:
        container: dict[str, Any] = {"type": "view", "view_id": view.get("id", "V0FAKEVIEW")}
    else:
        container = {"type": "message", "message_ts": message_ts or _event_ts(),
                     "channel_id": channel or dm_channel_id(user), "is_ephemeral": False}
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team_id},
        "api_app_id": APP_ID,
        "token": "fake-verification-token",
        "container": container,
        "trigger_id": uuid.uuid4().hex,
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "is_enterprise_install": False,
        "actions": [{
            "type": "button", "action_id": action_id, "block_id": block_id,
            "text": {"type": "plain_text", "text": action_id}, "value": value,
            "action_ts": _event_ts(),
        }],
    }
    if view is not None:
        payload["view"] = view
    else:
        payload["channel"] = {"id": container["channel_id"], "name": "directmessage"}
        payload["message"] = {"type": "message", "ts": container["message_ts"], "text": ""}
    if response_url:
        payload["response_url"] = response_url
    return payload
