"""What an operator sees: /metrics after real replies through the web adapter, and the JSON
log of a real `momentum run` (tests/web_harness.py, tests/momentum_process.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.anthropic_api import FakeAnthropic, HttpError, StreamError
from tests.metrics import sample
from tests.momentum_process import momentum
from tests.test_web_run import free_port, new_token, web_env
from tests.web_harness import WebWorld, web_on

TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
async def web(tmp_path: Path, fake: FakeAnthropic) -> AsyncIterator[WebWorld]:
    async with web_on(tmp_path, fake.base_url, anthropic_max_retries=0) as world:
        yield world


def replies(outcome: str) -> float:
    return sample("momentum_replies_total", platform="web", outcome=outcome)


def tokens() -> dict[str, float]:
    return {kind: sample("momentum_tokens_total", kind=kind) for kind in TOKEN_KINDS}


async def scrape(web: WebWorld, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with web.http.get("/metrics", headers=headers) as response:
        return response.status, await response.text()


async def test_a_reply_counts_as_done_with_its_tokens_and_first_token_time(
    web: WebWorld,
) -> None:
    done, used = replies("done"), tokens()
    ttft = sample("momentum_time_to_first_token_seconds_count", platform="web")
    overhead = sample("momentum_reply_overhead_seconds_count", platform="web")
    status, body = await web.post("/api/v1/chat/send", await web.signed_in(), {"content": "hi"})
    assert status == 200 and body["content"] == "Coach: hi"
    assert replies("done") == done + 1
    now = tokens()
    assert now["input"] > used["input"] and now["output"] > used["output"]
    # The persona clears the caching minimum: the first reply writes the cache.
    assert now["cache_write"] + now["cache_read"] > used["cache_write"] + used["cache_read"]
    assert sample("momentum_time_to_first_token_seconds_count", platform="web") == ttft + 1
    assert sample("momentum_reply_overhead_seconds_count", platform="web") == overhead + 1
    status, text = await scrape(web)
    assert status == 200
    assert f'momentum_replies_total{{outcome="done",platform="web"}} {done + 1}' in text


async def test_a_model_failure_counts_an_error_by_kind(
    web: WebWorld, fake: FakeAnthropic
) -> None:
    headers = await web.signed_in()
    unavailable = sample("momentum_model_errors_total", kind="unavailable")
    interrupted = sample("momentum_model_errors_total", kind="interrupted")
    failed = replies("failed:unavailable")
    fake.enqueue(HttpError(529))
    status, _ = await web.post("/api/v1/chat/send", headers, {"content": "hi"})
    assert status == 503  # the model is unavailable: nothing was said
    fake.enqueue(StreamError(after=1))
    await web.post("/api/v1/chat/send", headers, {"content": "again"})
    assert sample("momentum_model_errors_total", kind="unavailable") == unavailable + 1
    assert sample("momentum_model_errors_total", kind="interrupted") == interrupted + 1
    assert replies("failed:unavailable") == failed + 1


async def test_a_repeat_and_a_refusal_count_as_what_they_are(web: WebWorld) -> None:
    headers = await web.signed_in()
    duplicate, denied = replies("duplicate"), replies("denied")
    send = {"content": "hi", "client_id": "c1"}
    await web.post("/api/v1/chat/send", headers, send)
    await web.post("/api/v1/chat/send", headers, send)
    await web.tracking(headers)  # the window is closed now
    await web.post("/api/v1/chat/send", headers, {"content": "still there?"})
    assert replies("duplicate") == duplicate + 1 and replies("denied") == denied + 1


async def test_metrics_token_guards_the_web_metrics(tmp_path: Path, fake: FakeAnthropic) -> None:
    async with web_on(tmp_path, fake.base_url, metrics_token="s3cret") as web:
        status, _ = await scrape(web)
        assert status == 401
        status, _ = await scrape(web, {"Authorization": "Bearer wrong"})
        assert status == 401
        status, text = await scrape(web, {"Authorization": "Bearer s3cret"})
        assert status == 200 and "momentum_replies_total" in text


async def test_json_logs_are_one_object_a_line_and_a_turn_names_user_and_event(
    tmp_path: Path,
) -> None:
    port, metrics_port = free_port(), free_port()
    async with FakeAnthropic() as fake:
        fake.enqueue(StreamError(after=1))  # a turn that logs: the model fails mid-reply
        env = {**web_env(fake, port), "LOG_FORMAT": "json", "METRICS_PORT": str(metrics_port)}
        async with momentum("run", tmp_path, env) as bot:
            await bot.wait_for_log(r"web on http://")
            headers = {"Authorization": f"Bearer {await new_token(tmp_path)}"}
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
                send = {"content": "hello", "client_id": "c42"}
                async with http.post("/api/v1/chat/send", headers=headers, json=send) as r:
                    assert r.status == 200 and (await r.json())["incomplete"] is True
            await bot.wait_for_log("LLM failed")
            async with aiohttp.ClientSession(f"http://127.0.0.1:{metrics_port}") as http:
                async with http.get("/metrics") as r:
                    scraped = await r.text()
            assert await bot.terminate() == 0
    lines = [json.loads(line) for line in bot.lines]  # every line is one JSON object
    assert any("Momentum status" in line["message"] for line in lines)
    (failed,) = [line for line in lines if line["message"].startswith("LLM failed")]
    assert failed["level"] == "WARNING" and failed["user_id"] == "web:ada"
    assert failed["event_id"].startswith("web:") and failed["event_id"].endswith(":c42")
    assert 'momentum_model_errors_total{kind="interrupted"} 1.0' in scraped
    assert 'momentum_replies_total{outcome="failed:interrupted",platform="web"} 1.0' in scraped
