"""The web adapter in `momentum run`, as an operator starts it: a real process, a token made
with `momentum admin token create`, requests by hand, SIGTERM, and a kill -9 mid-reply."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import aiohttp

from tests.fakes.anthropic_api import FakeAnthropic
from tests.momentum_process import CLEAN_ENV, MOMENTUM, REPO, momentum

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def web_env(fake: FakeAnthropic, port: int) -> dict[str, str]:
    return {
        "WEB_ENABLED": "true",
        "WEB_PORT": str(port),
        "ANTHROPIC_API_KEY": "k",
        "ANTHROPIC_BASE_URL": fake.base_url,
        "ANTHROPIC_MAX_RETRIES": "0",
    }


async def new_token(cwd: Path, user: str = "web:ada") -> str:
    process = await asyncio.create_subprocess_exec(
        *MOMENTUM, "admin", "token", "create", user,
        cwd=cwd, env={**CLEAN_ENV, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode().strip().splitlines()[-1]


async def test_run_serves_the_api_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    async with FakeAnthropic() as fake, momentum("run", tmp_path, web_env(fake, port)) as bot:
        await bot.wait_for_log(r"web on http://127\.0\.0\.1:\d+")
        headers = {"Authorization": f"Bearer {await new_token(tmp_path)}"}
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            async with http.post(
                "/api/v1/chat/send", headers=headers, json={"content": "hello"}
            ) as response:
                assert response.status == 200
                assert (await response.json())["content"] == "Coach: hello"
        assert await bot.terminate() == 0
        assert "Traceback" not in bot.log


async def test_a_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        async with FakeAnthropic() as fake, momentum("run", tmp_path, web_env(fake, port)) as bot:
            assert await bot.exited() == 1
    assert f"WEB_PORT: cannot listen on 127.0.0.1:{port}" in bot.log
    assert "Traceback" not in bot.log


async def test_a_reply_cut_by_kill_9_is_in_the_history_after_the_restart(tmp_path: Path) -> None:
    port = free_port()
    words = " ".join(f"word{n}" for n in range(200))
    async with FakeAnthropic(reply=words, token_delay=0.05) as fake:
        env = {**web_env(fake, port), "TURN_LEASE_SECONDS": "1"}
        async with momentum("run", tmp_path, env) as bot:
            await bot.wait_for_log(r"web on http://")
            headers = {"Authorization": f"Bearer {await new_token(tmp_path)}"}
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
                stream = {**headers, "Accept": "text/event-stream"}
                async with http.post(
                    "/api/v1/chat/send", headers=stream, json={"content": "go"}
                ) as response:
                    seen = ""
                    while "word20" not in seen:
                        seen += (await response.content.readline()).decode()
                    bot.process.send_signal(signal.SIGKILL)
                    await bot.process.wait()
        async with momentum("run", tmp_path, env) as bot:
            await bot.wait_for_log(r"web on http://")
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:

                async def repaired() -> list[dict[str, object]] | None:
                    async with http.get("/api/v1/chat/history", headers=headers) as response:
                        messages = (await response.json())["messages"]
                    return messages if len(messages) == 2 else None

                messages = await poll(repaired, 15)
            assert await bot.terminate() == 0
    reply = messages[0]
    assert reply["role"] == "coach" and reply["incomplete"] is True
    # What the last renewal before the kill recorded (every third of the turn's lease).
    assert str(reply["content"]).startswith("word0 word1 word2 word3 word4 word5")
    assert "word199" not in json.dumps(messages)


async def poll(
    check: Callable[[], Awaitable[T | None]], within: float
) -> T:
    """`check()` again and again until it returns something, within `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while (found := await check()) is None:
        assert asyncio.get_running_loop().time() < deadline, f"not within {within} s"
        await asyncio.sleep(0.2)
    return found
