"""The Slack fake, driven by the real slack_sdk and slack-bolt (nothing mocked)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from tests.fakes.proxy_pages import PROXY_ANSWERS, UPSTREAM_CONNECT_ERROR
from tests.fakes.slack_api import (
    BOT_ID,
    BOT_USER_ID,
    RESPONSE_URL,
    TEAM_ID,
    USER_ID,
    FakeSlack,
    app_home_opened_event,
    block_actions_body,
    block_actions_payload,
    dm_channel_id,
    json_body,
    message_event,
    sign_request,
    slash_command_body,
    slash_command_payload,
)

SECRET = "test-signing-secret"
APP_TOKEN = "xapp-1-A0FAKEAPP-1-test"
DM = dm_channel_id(USER_ID)


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def client_for(fake: FakeSlack, **kwargs: Any) -> AsyncWebClient:
    return AsyncWebClient(token="xoxb-test", base_url=fake.base_url, **kwargs)


async def test_auth_test_identifies_the_bot(fake: FakeSlack) -> None:
    resp = await client_for(fake).auth_test()
    assert (resp["user_id"], resp["bot_id"], resp["team_id"]) == (BOT_USER_ID, BOT_ID, TEAM_ID)
    assert "chat:write" in resp.headers["X-OAuth-Scopes"]  # Bolt reads bot scopes from here
    assert [c.method for c in fake.calls] == ["auth.test"]


async def test_post_then_update_changes_stored_text(fake: FakeSlack) -> None:
    client = client_for(fake)
    posted = await client.chat_postMessage(channel=DM, text="thinking…")
    assert posted["channel"] == DM and posted["message"]["text"] == "thinking…"
    await client.chat_update(channel=DM, ts=posted["ts"], text="Here is your plan.")
    [msg] = fake.messages(DM)
    assert (msg.text, msg.edits) == ("Here is your plan.", 1)
    assert fake.calls_to("chat.update")[0].args == {
        "channel": DM, "ts": posted["ts"], "text": "Here is your plan.",
    }
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel=DM, ts="1.000000", text="x")
    assert err.value.response["error"] == "message_not_found"


async def test_sdk_chat_stream_assembles_text_in_the_thread(fake: FakeSlack) -> None:
    stream = await client_for(fake).chat_stream(
        channel=DM, thread_ts="1700000000.000100", buffer_size=5
    )
    assert await stream.append(markdown_text="Hel") is None  # buffered, no call yet
    assert fake.calls == []
    await stream.append(markdown_text="lo wor")  # buffer >= 5: chat.startStream
    assert fake.message(DM, stream.ts or "").streaming
    await stream.append(markdown_text="ld")  # buffered again
    await stream.stop(markdown_text="!")  # chat.stopStream carries the rest
    assert [c.method for c in fake.calls] == ["chat.startStream", "chat.stopStream"]
    [msg] = fake.messages(DM, thread_ts="1700000000.000100")
    assert (msg.text, msg.streaming) == ("Hello world!", False)
    assert fake.text(DM, msg.ts) == "Hello world!"
    with pytest.raises(SlackRequestError):  # the SDK refuses client-side after stop()
        await stream.append(markdown_text="more")


async def test_closed_stream_answers_not_in_streaming_state(fake: FakeSlack) -> None:
    client = client_for(fake)
    started = await client.chat_startStream(channel=DM, thread_ts="1.0", markdown_text="a")
    await client.chat_appendStream(channel=DM, ts=started["ts"], markdown_text="b")
    await client.chat_stopStream(channel=DM, ts=started["ts"])
    assert fake.text(DM, started["ts"]) == "ab"
    for call in (client.chat_appendStream, client.chat_stopStream):
        with pytest.raises(SlackApiError) as err:
            await call(channel=DM, ts=started["ts"], markdown_text="c")
        assert err.value.response["error"] == "message_not_in_streaming_state"
    # Slack closing a stream itself (timeout, or the user pressed stop):
    other = await client.chat_startStream(channel=DM, thread_ts="2.0", markdown_text="x")
    fake.expire_stream(DM, other["ts"], error="stopped_by_user")
    with pytest.raises(SlackApiError) as err:
        await client.chat_appendStream(channel=DM, ts=other["ts"], markdown_text="y")
    assert err.value.response["error"] == "stopped_by_user"
    # ...after which the documented fallback is chat.update on the stream's ts.
    await client.chat_update(channel=DM, ts=other["ts"], text="x y")
    assert fake.text(DM, other["ts"]) == "x y"


async def test_stream_ttl_closes_old_streams() -> None:
    async with FakeSlack(stream_ttl=0.0) as fake:
        client = client_for(fake)
        started = await client.chat_startStream(channel=DM, thread_ts="1.0", markdown_text="a")
        await asyncio.sleep(0.01)
        with pytest.raises(SlackApiError) as err:
            await client.chat_appendStream(channel=DM, ts=started["ts"], markdown_text="b")
        assert err.value.response["error"] == "message_not_in_streaming_state"


async def test_fail_next_429_raises_with_retry_after(fake: FakeSlack) -> None:
    client = client_for(fake)
    fake.fail_next("chat.postMessage", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel=DM, text="hi")
    assert err.value.response.status_code == 429
    assert err.value.response["error"] == "ratelimited"
    assert err.value.response.headers["Retry-After"] == "7"
    assert fake.rate_limited == 1
    await client.chat_postMessage(channel=DM, text="hi")  # only the next call failed
    fake.fail_next("chat.update", "cant_update_message", times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError, match="cant_update_message"):
            await client.chat_update(channel=DM, ts="1.0", text="x")


async def test_retry_handler_retries_a_429(fake: FakeSlack) -> None:
    client = client_for(fake, retry_handlers=[AsyncRateLimitErrorRetryHandler()])
    fake.fail_next("chat.postMessage", status=429, retry_after=0)
    resp = await client.chat_postMessage(channel=DM, text="hi")  # sleeps 0 + random() s
    assert resp["ok"] and len(fake.calls_to("chat.postMessage")) == 2


async def test_enforced_limits_trip_after_the_configured_count() -> None:
    async with FakeSlack(enforce_limits=True, limits={"chat.update": 3}, window=0.5) as fake:
        assert fake.limits["chat.appendStream"] == 100
        client = client_for(fake)
        ts = (await client.chat_postMessage(channel=DM, text="0"))["ts"]
        for i in range(3):
            await client.chat_update(channel=DM, ts=ts, text=str(i))
        with pytest.raises(SlackApiError) as err:
            await client.chat_update(channel=DM, ts=ts, text="over")
        assert err.value.response.status_code == 429
        assert err.value.response.headers["Retry-After"] == "1"
        assert (fake.rate_limited, fake.text(DM, ts)) == (1, "2")
        await asyncio.sleep(0.5)  # the window slides on
        await client.chat_update(channel=DM, ts=ts, text="later")
        assert fake.text(DM, ts) == "later"


async def test_users_info_returns_tz(fake: FakeSlack) -> None:
    fake.add_user(USER_ID, tz="Asia/Kolkata", real_name="Asha")
    user = (await client_for(fake).users_info(user=USER_ID))["user"]
    assert (user["tz"], user["tz_offset"], user["real_name"]) == ("Asia/Kolkata", 19800, "Asha")
    with pytest.raises(SlackApiError, match="user_not_found"):
        await client_for(fake).users_info(user="U0NOBODY")


async def test_other_methods_and_wire_formats(fake: FakeSlack) -> None:
    client = client_for(fake)
    opened = await client.conversations_open(users=[USER_ID])
    assert opened["channel"]["id"] == DM
    eph = await client.chat_postEphemeral(channel=DM, user=USER_ID, text="only you")
    assert fake.ephemerals[0]["text"] == "only you" and eph["message_ts"]
    ts = (await client.chat_postMessage(channel=DM, text="bye"))["ts"]
    await client.chat_delete(channel=DM, ts=ts)
    assert fake.messages(DM) == []
    await client.views_publish(user_id=USER_ID, view={"type": "home", "blocks": []})
    assert fake.home_views[USER_ID]["type"] == "home"
    # Form-encoded call with blocks as a JSON string, as older code paths send it.
    blocks = '[{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]'
    await client.api_call("chat.postMessage", data={"channel": DM, "blocks": blocks})
    assert fake.messages(DM)[0].blocks == [
        {"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}
    ]
    with pytest.raises(SlackApiError, match="no_text"), pytest.warns(UserWarning):
        await client.chat_postMessage(channel=DM)
    with pytest.raises(SlackApiError, match="unknown_method"):
        await client.api_call("chat.nonsense")
    with pytest.raises(SlackApiError, match="not_authed"):
        await AsyncWebClient(base_url=fake.base_url).chat_postMessage(channel=DM, text="x")


def test_signed_request_verifies_with_slack_sdk() -> None:
    body = json_body(message_event("hello"))
    headers = sign_request(SECRET, body, retry_num=1)
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid_request(body, headers)
    assert not verifier.is_valid_request(body + b" ", headers)
    assert not SignatureVerifier("other").is_valid_request(body, headers)
    assert headers["X-Slack-Retry-Num"] == "1"
    assert headers["Content-Type"] == "application/json"


async def test_bolt_app_runs_against_the_fake(fake: FakeSlack) -> None:
    """Signed deliveries into a real AsyncApp whose client talks to the fake."""
    app = AsyncApp(client=client_for(fake), signing_secret=SECRET, process_before_response=True)

    @app.event("message")
    async def on_message(event: dict[str, Any], set_status: Any, say_stream: Any) -> None:
        await set_status("is thinking…")
        stream = await say_stream(buffer_size=4)
        for token in ("Good ", "morning", ", Asha"):
            await stream.append(markdown_text=token)
        await stream.stop()

    @app.event("app_home_opened")
    async def on_home(event: dict[str, Any], client: AsyncWebClient) -> None:
        await client.views_publish(user_id=event["user"], view={"type": "home", "blocks": []})

    @app.command("/coach")
    async def on_command(ack: Any, respond: Any, command: dict[str, Any]) -> None:
        await ack()
        await respond(f"you said {command['text']}")

    @app.action("done")
    async def on_done(ack: Any, body: dict[str, Any]) -> None:
        await ack()

    async def deliver(body: bytes) -> int:
        req = AsyncBoltRequest(body=body.decode(), headers=sign_request(SECRET, body))
        return (await app.async_dispatch(req)).status

    envelope = message_event("hi")
    assert await deliver(json_body(envelope)) == 200
    user_ts = envelope["event"]["ts"]
    [reply] = fake.messages(DM, thread_ts=user_ts)  # say_stream replies in the thread
    assert reply.text == "Good morning, Asha"
    status = fake.calls_to("assistant.threads.setStatus")[0].args
    assert (status["channel_id"], status["thread_ts"]) == (DM, user_ts)
    start = fake.calls_to("chat.startStream")[0].args
    assert (start["recipient_user_id"], start["recipient_team_id"]) == (USER_ID, TEAM_ID)
    assert [c.method for c in fake.calls if "Stream" in c.method] == [
        "chat.startStream", "chat.appendStream", "chat.appendStream", "chat.stopStream",
    ]

    assert await deliver(json_body(app_home_opened_event())) == 200
    assert USER_ID in fake.home_views

    cmd = slash_command_body("/coach", "plan my week", response_url=fake.response_url("c1"))
    assert await deliver(cmd) == 200
    assert fake.responses("c1")[0]["text"] == "you said plan my week"

    assert await deliver(block_actions_body("done", "goal-1")) == 200
    assert len(fake.calls_to("auth.test")) == 1  # Bolt caches it


async def test_connections_open_wants_an_app_level_token(fake: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as refused:
        await client_for(fake).apps_connections_open(app_token="xoxb-test")
    assert refused.value.response["error"] == "not_allowed_token_type"
    app_level = AsyncWebClient(token=APP_TOKEN, base_url=fake.base_url)
    with pytest.raises(SlackApiError) as refused:
        await app_level.chat_postMessage(channel=DM, text="hi")  # an xapp- token posts nothing
    assert refused.value.response["error"] == "not_allowed_token_type"
    url = (await client_for(fake).apps_connections_open(app_token=APP_TOKEN))["url"]
    assert url.startswith("ws://127.0.0.1:") and "ticket=" in url


async def test_bolt_app_over_socket_mode(fake: FakeSlack) -> None:
    """Envelopes pushed over the socket reach a real AsyncApp; its acks come back."""
    app = AsyncApp(client=client_for(fake), process_before_response=True)
    seen: list[tuple[str, list[str]]] = []

    @app.event("message")
    async def on_message(event: dict[str, Any], request: AsyncBoltRequest) -> None:
        seen.append((event["text"], request.headers["x-slack-retry-num"]))

    @app.command("/coach")
    async def on_command(ack: Any, command: dict[str, Any]) -> None:
        await ack(f"you said {command['text']}")

    @app.action("done")
    async def on_done(ack: Any) -> None:
        await ack()

    handler = AsyncSocketModeHandler(app, APP_TOKEN)
    await handler.connect_async()  # type: ignore[no-untyped-call]
    try:
        ack = await fake.deliver(message_event("hi"), envelope_id="env-1")
        assert ack == {"envelope_id": "env-1"}
        command = slash_command_payload("/coach", "plan", response_url=fake.response_url())
        assert (await fake.deliver(command))["payload"] == {"text": "you said plan"}
        assert set(await fake.deliver(block_actions_payload("done"))) == {"envelope_id"}

        await fake.disconnect_socket()  # Slack's periodic refresh: the SDK reconnects
        await fake.wait_for_socket(opened=2)
        await fake.deliver(message_event("again"), retry_attempt=1, retry_reason="timeout")
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]
    assert seen == [("hi", ["0"]), ("again", ["1"])]  # Bolt mirrors retry_attempt here
    assert len(fake.calls_to("apps.connections.open")) == 2  # every socket needs a fresh URL
    assert len(fake.acks) == 4 and fake.acks[0] == {"envelope_id": "env-1"}


async def test_socket_urls_are_single_use(fake: FakeSlack) -> None:
    url = (await client_for(fake).apps_connections_open(app_token=APP_TOKEN))["url"]
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:
            assert (await ws.receive_json())["type"] == "hello"
            await fake.wait_for_socket()
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(url)


# --- Message metadata, history reads, and writes taken before an error -------------------

MARK = {"event_type": "reply_post", "event_payload": {"post": "abc"}}


async def test_metadata_is_stored_and_read_back_only_when_asked(fake: FakeSlack) -> None:
    client = client_for(fake)
    posted = await client.chat_postMessage(channel=DM, thread_ts="1.0", text="a", metadata=MARK)
    assert posted["message"]["metadata"] == MARK
    with_all = await client.conversations_replies(channel=DM, ts="1.0", include_all_metadata=True)
    assert [m.get("metadata") for m in with_all["messages"]] == [MARK]
    plain = await client.conversations_replies(channel=DM, ts="1.0")
    assert "metadata" not in plain["messages"][0]
    with pytest.raises(SlackApiError, match="invalid_metadata_format"):
        await client.chat_postMessage(channel=DM, text="b", metadata={"event_type": "x"})


async def test_replies_read_like_slack(fake: FakeSlack) -> None:
    client = client_for(fake)
    top = await client.chat_postMessage(channel=DM, text="top")
    replies = [
        (await client.chat_postMessage(channel=DM, thread_ts=top["ts"], text=f"r{n}"))["ts"]
        for n in range(3)
    ]
    thread = await client.conversations_replies(channel=DM, ts=top["ts"])
    assert [m["text"] for m in thread["messages"]] == ["top", "r0", "r1", "r2"]  # oldest first
    newer = await client.conversations_replies(channel=DM, ts=top["ts"], oldest=replies[0])
    assert [m["text"] for m in newer["messages"]] == ["r1", "r2"]  # `oldest` is exclusive…
    same = await client.conversations_replies(
        channel=DM, ts=top["ts"], oldest=replies[0], inclusive=True
    )
    assert [m["text"] for m in same["messages"]] == ["r0", "r1", "r2"]  # …unless inclusive
    first = await client.conversations_replies(channel=DM, ts=top["ts"], limit=3)
    assert first["has_more"] and len(first["messages"]) == 3
    cursor = first["response_metadata"]["next_cursor"]
    rest = await client.conversations_replies(channel=DM, ts=top["ts"], cursor=cursor)
    assert [m["text"] for m in rest["messages"]] == ["r2"] and not rest["has_more"]


async def test_thread_reads_need_the_history_scope_of_the_conversation_type() -> None:
    async with FakeSlack(scopes="chat:write,im:history") as fake:
        client = client_for(fake)
        await client.conversations_replies(channel=DM, ts="1.0")
        for channel, needed in (("C0TEAM", "channels:history"), ("G0PRIV", "groups:history")):
            with pytest.raises(SlackApiError) as err:
                await client.conversations_replies(channel=channel, ts="1.0")
            assert (err.value.response["error"], err.value.response["needed"]) == (
                "missing_scope",
                needed,
            )


async def test_a_write_can_be_taken_and_still_answered_with_an_error(fake: FakeSlack) -> None:
    client = client_for(fake)
    fake.fail_next("chat.postMessage", status=503, after_applying=True, skip=1)
    await client.chat_postMessage(channel=DM, text="one")  # skipped: a normal answer
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel=DM, text="two", metadata=MARK)
    assert err.value.response.status_code == 503
    assert [m.text for m in fake.messages(DM)] == ["one", "two"]  # taken all the same
    assert fake.messages(DM)[1].metadata == MARK
    fake.fail_next("chat.postMessage", status=503)
    with pytest.raises(SlackApiError):
        await client.chat_postMessage(channel=DM, text="three")
    assert len(fake.messages(DM)) == 2  # a plain failure takes nothing


async def test_bot_ts_follow_the_clock_past_user_events(fake: FakeSlack) -> None:
    """A reply's ts is newer than the message it answers, as on Slack, also when a second
    has passed since the fake started (a search with `oldest` relies on it)."""
    first = (await client_for(fake).chat_postMessage(channel=DM, text="a"))["ts"]
    await asyncio.sleep(1.0 - time.time() % 1.0 + 0.01)  # into the next second
    asked = message_event("hi")["event"]["ts"]
    reply = (await client_for(fake).chat_postMessage(channel=DM, text="b"))["ts"]
    assert float(first) < float(asked) < float(reply)


async def test_a_proxy_answers_with_a_body_of_its_own(fake: FakeSlack) -> None:
    """What slack_sdk makes of error answers that are not Slack's JSON (slack_sdk 3.48): a
    text/plain body becomes a str `data` (so `.get()` on the response raises), an HTML page
    becomes `{}`, and a page mislabelled as JSON leaves aiohttp's ClientResponse as the
    error's `response` (a `.status`, no `.status_code`)."""
    client = client_for(fake)
    answers = PROXY_ANSWERS
    fake.fail_next("chat.update", **answers["text-503"].fail_args())
    with pytest.raises(SlackApiError) as text_503:
        await client.chat_update(channel=DM, ts="1.0", text="x")
    assert text_503.value.response.status_code == 503
    assert text_503.value.response.data == UPSTREAM_CONNECT_ERROR
    with pytest.raises(AttributeError):
        text_503.value.response.get("error")

    fake.fail_next("chat.postMessage", **answers["html-502"].fail_args(), after_applying=True)
    with pytest.raises(SlackApiError) as html_502:
        await client.chat_postMessage(channel=DM, text="taken")
    assert (html_502.value.response.status_code, html_502.value.response.data) == (502, {})
    assert [m.text for m in fake.messages(DM)] == ["taken"]  # after_applying works as ever

    fake.fail_next("users.info", **answers["mislabelled-503"].fail_args())
    with pytest.raises(SlackApiError, match="non-JSON") as mislabelled:
        await client.users_info(user=USER_ID)
    assert isinstance(mislabelled.value.response, aiohttp.ClientResponse)
    assert mislabelled.value.response.status == 503

    calls = fake.calls_to("chat.update") + fake.calls_to("users.info")
    assert [(c.status, c.error) for c in calls] == [(503, None), (503, None)]
    await client.chat_update(channel=DM, ts=fake.messages(DM)[0].ts, text="only the next")


async def test_a_response_url_can_fail_with_a_proxy_page(fake: FakeSlack) -> None:
    """slack_sdk's webhook client (Bolt's respond()) returns a refusal instead of raising."""
    fake.fail_next(RESPONSE_URL, **PROXY_ANSWERS["text-503"].fail_args())
    webhook = AsyncWebhookClient(fake.response_url("cmd"))
    refused = await webhook.send(text="hi")
    assert (refused.status_code, refused.body) == (503, UPSTREAM_CONNECT_ERROR)
    assert fake.responses("cmd") == []
    answered = await webhook.send(text="hi")
    assert (answered.status_code, answered.body) == (200, "ok")
    assert fake.responses("cmd") == [{"text": "hi"}]
