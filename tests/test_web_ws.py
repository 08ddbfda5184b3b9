"""The WebSocket chat with the original backend's JSON protocol, through a real server and a
real WebSocket client (tests/web_harness.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bots.web.ws import MAX_FRAME_CHARS
from tests.fakes.anthropic_api import FakeAnthropic
from tests.support import T0, FakeClock
from tests.web_harness import WebWorld, web_on

WS = "/api/v1/chat/ws"


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(reply="one two three four", token_delay=0.02) as fake:
        yield fake


@pytest.fixture
async def web(tmp_path: Path, fake: FakeAnthropic) -> AsyncIterator[WebWorld]:
    async with web_on(tmp_path, fake.base_url) as world:
        yield world


async def frames_until(socket: aiohttp.ClientWebSocketResponse, last: str) -> list[dict[str, Any]]:
    """Frames received until one of type `last` (included)."""
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1]["type"] != last:
        seen.append(await asyncio.wait_for(socket.receive_json(), timeout=10))
    return seen


async def test_connect_talk_and_stream_a_reply(web: WebWorld, fake: FakeAnthropic) -> None:
    async with web.http.ws_connect(WS, headers=await web.signed_in()) as socket:
        connected = await socket.receive_json()
        assert connected["type"] == "connected"
        assert connected["user_phase"] == "goal_setting" and connected["meeting_id"] is None
        await socket.send_json({"type": "message", "content": "hi"})
        frames = await frames_until(socket, "response")
    kinds = [frame["type"] for frame in frames]
    assert kinds[0] == "typing" and frames[0]["content"] == "Coach is thinking..."
    assert "welcome" in kinds and kinds.count("response_chunk") >= 2
    chunks = [f for f in frames if f["type"] == "response_chunk"]
    assert all(f["is_complete"] is False for f in chunks)
    assert "".join(f["content"] for f in chunks) == fake.reply
    done = frames[-1]
    assert done["content"] == fake.reply and done["is_complete"] is True
    assert done["message_id"] and done["tokens_used"] > 0


async def test_the_token_may_come_in_the_query(web: WebWorld) -> None:
    token = await web.token()
    async with web.http.ws_connect(f"{WS}?token={token}") as socket:
        assert (await socket.receive_json())["type"] == "connected"


async def test_no_or_a_wrong_token_closes_with_4401(web: WebWorld) -> None:
    for url in (WS, f"{WS}?token=mom_wrong"):
        async with web.http.ws_connect(url) as socket:
            message = await asyncio.wait_for(socket.receive(), timeout=10)
            assert message.type is aiohttp.WSMsgType.CLOSE
            assert socket.close_code == 4401


async def test_bad_frames_get_an_error_and_the_socket_stays_open(web: WebWorld) -> None:
    async with web.http.ws_connect(WS, headers=await web.signed_in()) as socket:
        await socket.receive_json()  # connected
        for raw, error in (
            ("{not json", "bad_json"),
            (json.dumps({"type": "dance"}), "unknown_type"),
            (json.dumps([1, 2]), "unknown_type"),
            (json.dumps({"type": "message", "content": 7}), "bad_message"),
            ("x" * (MAX_FRAME_CHARS + 1), "too_large"),
        ):
            await socket.send_str(raw)
            frame = await asyncio.wait_for(socket.receive_json(), timeout=10)
            assert frame["type"] == "error" and frame["error"] == error and frame["content"]
        await socket.send_json({"type": "ping"})
        assert await asyncio.wait_for(socket.receive_json(), timeout=10) == {"type": "pong"}


async def test_a_refusal_is_an_error_frame_that_says_when(
    tmp_path: Path, fake: FakeAnthropic
) -> None:
    async with web_on(tmp_path, fake.base_url, FakeClock(T0)) as web:
        headers = await web.signed_in()
        await web.tracking(headers)
        async with web.http.ws_connect(WS, headers=headers) as socket:
            assert (await socket.receive_json())["user_phase"] == "tracking"
            await socket.send_json({"type": "message", "content": "hello"})
            frames = await frames_until(socket, "error")
        refusal = frames[-1]
        assert refusal["error"] == "window_closed" and "08:30" in refusal["content"]
        assert refusal["access"]["next_opening"]["utc"] == "2026-11-24T08:30:00Z"


async def test_a_burst_is_answered_in_order_across_the_socket_and_http(
    web: WebWorld, fake: FakeAnthropic
) -> None:
    fake.reply = None  # the fake echoes: "Coach: <message>"
    headers = await web.signed_in()
    async with web.http.ws_connect(WS, headers=headers) as socket:
        await socket.receive_json()
        for n in range(3):
            await socket.send_json({"type": "message", "content": f"ws {n}"})
        seen = await frames_until_count(socket, "typing", 3)  # all three have their place
        http = asyncio.create_task(web.post("/api/v1/chat/send", headers, {"content": "http"}))
        seen += await frames_until_count(socket, "response", 3 - _count(seen, "response"))
        replies = [f["content"] for f in seen if f["type"] == "response"]
        await http
    assert replies == ["Coach: ws 0", "Coach: ws 1", "Coach: ws 2"]
    _, history = await web.get("/api/v1/chat/history", headers)
    said = [m["content"] for m in reversed(history["messages"])]
    assert said == [
        "ws 0", "Coach: ws 0", "ws 1", "Coach: ws 1", "ws 2", "Coach: ws 2",
        "http", "Coach: http",
    ]  # fmt: skip


async def test_a_socket_closed_mid_reply_loses_nothing(web: WebWorld, fake: FakeAnthropic) -> None:
    headers = await web.signed_in()
    async with web.http.ws_connect(WS, headers=headers) as socket:
        await socket.receive_json()
        await socket.send_json({"type": "message", "content": "hi"})
        await frames_until(socket, "response_chunk")
    for _ in range(100):  # closed: the reply goes on, and is stored
        _, history = await web.get("/api/v1/chat/history", headers)
        if history["total"] == 2:
            break
        await asyncio.sleep(0.05)
    assert history["messages"][0]["content"] == fake.reply
    assert history["messages"][0]["incomplete"] is False


async def test_a_retried_message_with_the_same_client_id_is_answered_once(
    web: WebWorld, fake: FakeAnthropic
) -> None:
    headers = await web.signed_in()
    async with web.http.ws_connect(WS, headers=headers) as socket:
        await socket.receive_json()
        message = {"type": "message", "content": "hi", "client_id": "c-9"}
        await socket.send_json(message)
        await frames_until(socket, "response")
        await socket.send_json(message)
        repeat = await frames_until(socket, "error")
    assert repeat[-1]["error"] == "duplicate"
    assert len(fake.requests) == 1


async def frames_until_count(
    socket: aiohttp.ClientWebSocketResponse, kind: str, count: int
) -> list[dict[str, Any]]:
    """Frames received until `count` of type `kind` have come (all of them, in order)."""
    seen: list[dict[str, Any]] = []
    while _count(seen, kind) < count:
        seen.append(await asyncio.wait_for(socket.receive_json(), timeout=10))
    return seen


def _count(frames: list[dict[str, Any]], kind: str) -> int:
    return sum(frame["type"] == kind for frame in frames)


async def test_an_idle_socket_is_pinged_and_stays_open_while_it_answers(
    tmp_path: Path, fake: FakeAnthropic
) -> None:
    async with web_on(tmp_path, fake.base_url, web_ping_seconds=0.2) as web:
        # autoping off: the client sees the server's pings and answers them itself.
        async with web.http.ws_connect(WS, headers=await web.signed_in(), autoping=False) as socket:
            assert (await socket.receive_json())["type"] == "connected"
            for _ in range(3):  # well past one interval and its timeout, quiet but answering
                ping = await asyncio.wait_for(socket.receive(), timeout=5)
                assert ping.type == aiohttp.WSMsgType.PING
                await socket.pong(ping.data)
            await socket.send_json({"type": "message", "content": "still there?"})
            frames = await frames_until(socket, "response")
            assert frames[-1]["content"] == fake.reply


async def test_a_socket_that_stops_answering_pings_is_closed(
    tmp_path: Path, fake: FakeAnthropic
) -> None:
    async with web_on(tmp_path, fake.base_url, web_ping_seconds=0.2) as web:
        async with web.http.ws_connect(WS, headers=await web.signed_in(), autoping=False) as socket:
            assert (await socket.receive_json())["type"] == "connected"
            kinds = []
            while (message := await asyncio.wait_for(socket.receive(), timeout=5)).type not in (
                aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING
            ):
                kinds.append(message.type)  # pings, left unanswered
            assert kinds and set(kinds) == {aiohttp.WSMsgType.PING}


async def test_a_proposal_frame_is_confirmed_over_the_socket(
    web: WebWorld, fake: FakeAnthropic
) -> None:
    from tests.fakes.anthropic_api import Reply, ToolUse

    fake.enqueue(ToolUse((("propose_goal", {"text": "Run a 5k"}),), text="Yes!"), Reply("Ok?"))
    async with web.http.ws_connect(WS, headers=await web.signed_in()) as socket:
        await socket.receive_json()
        await socket.send_json({"type": "message", "content": "I want to run"})
        frames = await frames_until(socket, "response")
        [proposal] = [f for f in frames if f["type"] == "proposal"]
        assert proposal["summary"] == "Add the goal “Run a 5k”"
        assert "Nothing changes unless you confirm" in proposal["content"]
        await socket.send_json({"type": "confirm", "proposal_id": proposal["proposal_id"]})
        decision = await socket.receive_json()
        assert decision["type"] == "decision" and decision["acted"] is True
        assert decision["content"] == "Goal added: Run a 5k."
        await socket.send_json({"type": "decline", "proposal_id": proposal["proposal_id"]})
        again = await socket.receive_json()
        assert again["acted"] is False and "Already done" in again["content"]
        await socket.send_json({"type": "confirm"})
        assert (await socket.receive_json())["error"] == "bad_message"
