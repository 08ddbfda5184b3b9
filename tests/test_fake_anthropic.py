"""The loopback Anthropic fake, driven by the real `anthropic` SDK.

These tests pin what the SDK really does against each scripted fault, since the core and
the adapters rely on those exception types.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import httpx2
import pytest
from anthropic.types import Message, MessageParam, TextBlock

from tests.fakes.anthropic_api import Drop, FakeAnthropic, HttpError, Reply, Stall, StreamError

MODEL = "claude-sonnet-5-5"
HELLO: list[MessageParam] = [{"role": "user", "content": "I finished the report"}]


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as server:
        yield server


def sdk(
    fake: FakeAnthropic, max_retries: int = 0, api_key: str = "test-key"
) -> anthropic.AsyncAnthropic:
    """The real SDK pointed at the fake; no retries unless a test is about them."""
    return anthropic.AsyncAnthropic(
        base_url=fake.base_url, api_key=api_key, max_retries=max_retries
    )


async def stream_text(client: anthropic.AsyncAnthropic, **params: Any) -> tuple[str, Message]:
    """Stream one reply the way the bot does; returns the text and the final message."""
    params = {"model": MODEL, "max_tokens": 256, "messages": HELLO, **params}
    parts: list[str] = []
    async with client.messages.stream(**params) as stream:
        async for text in stream.text_stream:
            parts.append(text)
        final = await stream.get_final_message()
    return "".join(parts), final


def text_of(message: Message) -> str:
    return "".join(block.text for block in message.content if isinstance(block, TextBlock))


async def test_stream_reassembles_text_usage_and_stop_reason(fake: FakeAnthropic) -> None:
    async with sdk(fake) as client:
        text, final = await stream_text(client, system="You are a coach.")

    assert text == "Coach: I finished the report"
    assert text_of(final) == text
    assert final.stop_reason == "end_turn"
    sent = fake.last_request
    assert final.usage.output_tokens == len(sent.deltas) == 5
    assert final.usage.input_tokens > 0
    assert final.usage.cache_creation_input_tokens == 0
    assert final.usage.cache_read_input_tokens == 0
    assert sent.headers["authorization"] == "Bearer test-key"
    assert sent.headers["anthropic-version"] == "2026-10-21"
    assert sent.body["stream"] is True
    assert sent.system_text == "You are a coach."
    assert sent.text == text
    assert sent.status == 200 and not sent.aborted


async def test_create_without_stream_returns_a_whole_message() -> None:
    async with FakeAnthropic(reply="Nice week: 3 wins.") as fake, sdk(fake) as client:
        message = await client.messages.create(model=MODEL, max_tokens=64, messages=HELLO)

    assert text_of(message) == "Nice week: 3 wins."
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 4
    assert fake.last_request.stream is False


async def test_default_reply_echoes_the_last_user_message(fake: FakeAnthropic) -> None:
    messages: list[MessageParam] = [
        {"role": "user", "content": "old"},
        {"role": "assistant", "content": "Coach: old"},
        {"role": "user", "content": [{"type": "text", "text": "new goal: run 5k"}]},
    ]
    async with sdk(fake) as client:
        text, _ = await stream_text(client, messages=messages)

    assert text == "Coach: new goal: run 5k"
    assert fake.last_request.last_user_text == "new goal: run 5k"


async def test_enqueued_behaviours_are_used_in_order_then_the_default(
    fake: FakeAnthropic,
) -> None:
    fake.enqueue(Reply("first"), Reply("second one"))
    async with sdk(fake) as client:
        texts = [(await stream_text(client))[0] for _ in range(3)]

    assert texts == ["first", "second one", "Coach: I finished the report"]
    assert fake.pending == 0


async def test_ttft_and_token_delay_shape_the_stream() -> None:
    async with FakeAnthropic(reply="one two three four", ttft=0.15, token_delay=0.03) as fake:
        async with sdk(fake) as client:
            text, _ = await stream_text(client)

    sent = fake.last_request
    assert text == "one two three four"
    assert sent.first_delta_at is not None
    assert sent.first_delta_at - sent.received_at >= 0.15
    gaps = [b[0] - a[0] for a, b in zip(sent.deltas, sent.deltas[1:], strict=False)]
    assert len(gaps) == 3 and min(gaps) >= 0.03


@pytest.mark.parametrize("param", ["temperature", "top_p", "top_k"])
async def test_sampling_params_are_rejected(fake: FakeAnthropic, param: str) -> None:
    sampling: dict[str, Any] = {param: 0.5}
    async with sdk(fake) as client:
        # The 2.x SDK has no such keyword: TypeError, and nothing reaches the wire.
        with pytest.raises(TypeError, match=param):
            await client.messages.create(model=MODEL, max_tokens=8, messages=HELLO, **sampling)
        assert fake.requests == []

        # Smuggled in anyway, the API answers 400.
        with pytest.raises(anthropic.BadRequestError) as caught:
            await client.messages.create(
                model=MODEL, max_tokens=8, messages=HELLO, extra_body=sampling
            )
    assert caught.value.type == "invalid_request_error"
    assert param in str(caught.value.api_message)
    assert fake.last_request.status == 400


async def test_missing_bearer_token_is_401_with_the_real_error_shape(fake: FakeAnthropic) -> None:
    body = {"model": MODEL, "max_tokens": 8, "messages": HELLO}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{fake.base_url}/v1/messages", json=body, headers={"anthropic-version": "2026-10-21"}
        ) as response,
    ):
        assert response.status == 401
        payload = await response.json()
    assert payload["type"] == "error"
    assert payload["error"]["type"] == "authentication_error"
    assert response.headers["request-id"] == payload["request_id"]


async def test_wrong_key_raises_authentication_error() -> None:
    async with FakeAnthropic(api_key="right") as fake, sdk(fake, api_key="wrong") as client:
        with pytest.raises(anthropic.AuthenticationError):
            await stream_text(client)


@pytest.mark.faults
@pytest.mark.parametrize(
    ("status", "error"),
    [
        (529, anthropic.OverloadedError),
        (500, anthropic.InternalServerError),
        (429, anthropic.RateLimitError),
        (400, anthropic.BadRequestError),
    ],
)
async def test_http_errors_map_to_sdk_exceptions(
    fake: FakeAnthropic, status: int, error: type[anthropic.APIStatusError]
) -> None:
    fake.enqueue(HttpError(status, message="scripted"))
    async with sdk(fake) as client:
        with pytest.raises(error) as caught:
            await stream_text(client)
    assert caught.value.status_code == status
    assert caught.value.request_id == fake.last_request.request_id


@pytest.mark.faults
async def test_overloaded_then_success_is_retried_by_the_sdk(fake: FakeAnthropic) -> None:
    fake.enqueue(HttpError(529))
    async with sdk(fake, max_retries=1) as client:
        text, _ = await stream_text(client)  # the SDK backs off ~0.5 s by itself

    assert text == "Coach: I finished the report"
    assert [r.status for r in fake.requests] == [529, 200]
    assert [r.headers["x-stainless-retry-count"] for r in fake.requests] == ["0", "1"]


@pytest.mark.faults
async def test_rate_limit_retry_after_is_honoured(fake: FakeAnthropic) -> None:
    fake.enqueue(HttpError(429, retry_after=0.3))
    async with sdk(fake, max_retries=1) as client:
        await stream_text(client)

    first, second = fake.requests
    assert first.status == 429 and second.status == 200
    assert second.received_at - first.received_at >= 0.3


@pytest.mark.faults
async def test_error_event_mid_stream_raises_api_status_error_without_retry(
    fake: FakeAnthropic,
) -> None:
    fake.enqueue(StreamError(after=2))
    received: list[str] = []
    async with sdk(fake, max_retries=2) as client:
        with pytest.raises(anthropic.APIStatusError) as caught:
            async with client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as s:
                async for text in s.text_stream:
                    received.append(text)

    assert type(caught.value) is anthropic.APIStatusError  # not OverloadedError: status is 200
    assert caught.value.status_code == 200
    assert caught.value.type == "overloaded_error"
    assert received == ["Coach:", " I"]
    assert len(fake.requests) == 1


@pytest.mark.faults
async def test_dropped_stream_raises_httpx2_remote_protocol_error(fake: FakeAnthropic) -> None:
    fake.enqueue(Drop(after=1))
    received: list[str] = []
    async with sdk(fake, max_retries=2) as client:
        with pytest.raises(httpx2.RemoteProtocolError) as caught:
            async with client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as s:
                async for text in s.text_stream:
                    received.append(text)

    # Mid-stream the SDK neither wraps nor retries: catch httpx2.TransportError too.
    assert not isinstance(caught.value, anthropic.APIError)
    assert received == ["Coach:"]
    assert len(fake.requests) == 1 and fake.last_request.aborted


@pytest.mark.faults
async def test_drop_before_a_non_streamed_response_is_an_api_connection_error(
    fake: FakeAnthropic,
) -> None:
    fake.enqueue(Drop())
    async with sdk(fake) as client:
        with pytest.raises(anthropic.APIConnectionError) as caught:
            await client.messages.create(model=MODEL, max_tokens=64, messages=HELLO)
    assert isinstance(caught.value.__cause__, httpx2.RemoteProtocolError)


@pytest.mark.faults
async def test_stall_is_caught_by_the_callers_deadline(fake: FakeAnthropic) -> None:
    fake.enqueue(Stall(after=1, seconds=30))
    received: list[str] = []
    started = time.monotonic()
    async with sdk(fake) as client:
        with pytest.raises(TimeoutError):
            async with (
                asyncio.timeout(0.3),
                client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as s,
            ):
                async for text in s.text_stream:
                    received.append(text)

    assert received == ["Coach:"]
    assert time.monotonic() - started < 1.0


@pytest.mark.faults
async def test_short_stall_then_the_stream_resumes(fake: FakeAnthropic) -> None:
    fake.enqueue(Stall(after=2, seconds=0.2))
    async with sdk(fake) as client:
        text, _ = await stream_text(client)
    deltas = fake.last_request.deltas
    assert text == "Coach: I finished the report"
    assert deltas[2][0] - deltas[1][0] >= 0.2


@pytest.mark.faults
async def test_exit_is_quick_even_with_a_stalled_stream_open() -> None:
    fake = FakeAnthropic()
    await fake.__aenter__()
    fake.enqueue(Stall(after=1, seconds=30))
    async with (
        sdk(fake) as client,
        client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as s,
    ):
        texts = s.text_stream
        assert await anext(texts) == "Coach:"
        started = time.monotonic()
        await fake.__aexit__(None, None, None)
        assert time.monotonic() - started < 1.0
        with pytest.raises(httpx2.RemoteProtocolError):
            await anext(texts)


async def test_long_cached_system_prefix_is_written_then_read(fake: FakeAnthropic) -> None:
    persona = "You are Momentum, a warm and direct coach. " * 120  # ~1300 tokens by chars/4
    system = [
        {"type": "text", "text": "Today is Monday."},
        {"type": "text", "text": persona, "cache_control": {"type": "ephemeral"}},
    ]
    async with sdk(fake) as client:
        _, first = await stream_text(client, system=system)
        _, second = await stream_text(client, system=system)
        _, short = await stream_text(
            client, system=[{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}]
        )

    assert (first.usage.cache_creation_input_tokens or 0) >= fake.cache_min_tokens
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.input_tokens == first.usage.input_tokens < 20
    assert (short.usage.cache_creation_input_tokens, short.usage.cache_read_input_tokens) == (0, 0)
