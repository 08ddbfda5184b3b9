"""One load run: a real `momentum run` process, N concurrent conversations, one platform.

Closed loop: N conversations in flight at once (the first N spread over the ramp), each
next one starting as soon as one finishes, until `conversations(N)` have been had, so that
even N=1 gives percentiles from many samples.

The bench process plays the outside world on loopback (tests/fakes): the platform (Slack's
Events API + Web API with its documented rate limits enforced, or Discord's gateway + REST
with the per-channel and global limits enforced) and Anthropic (a fixed time to first token,
then word-sized deltas at a fixed interval). Users are created welcomed beforehand, so each
conversation is one message and one streamed reply, timed from the moment its event is sent.
The web's runner (WebSocket clients, no platform fake) is bench/web_load.py; it shares
`drive`, `collect_conversations` and `figures` with these.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.measure import (
    Conversation,
    first_text_overhead,
    ms_summary,
    overhead,
    text_writes,
    token_lags,
)
from bench.screens import discord_screens, slack_screens
from bots.slack.serve import EVENTS_PATH
from core.models import Identity, Platform, User
from core.store.sqlite import SQLiteStore
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.slack_api import (
    TEAM_ID,
    FakeSlack,
    dm_channel_id,
    json_body,
    message_event,
    sign_request,
)
from tests.momentum_process import MOMENTUM, Momentum, momentum

SIGNING_SECRET = "bench-signing-secret"
DISCORD_CHANNEL_BASE = 1_100_000_000_010_000_000  # far from the fake's own ids
DISCORD_USER_BASE = 1_100_000_000_020_000_000
DISCORD_CHANNEL_LIMIT = (5, 5.0)  # message writes per channel (REFERENCE.md)
DISCORD_GLOBAL_LIMIT = 50  # requests/s per bot, unless Discord raised it for a large bot
RAISED_GLOBAL_LIMIT = 500  # a raised limit: shows Momentum's own overhead at 500
FILLER = (
    "Great question, let's make this week count. Pick the one habit that moves your goal "
    "most, block twenty minutes for it tomorrow morning, and tell me how it went. Small "
    "wins stack up fast when you show up for them, and you are already showing up today."
).split()


@dataclass(frozen=True)
class LoadConfig:
    ttft: float = 0.4  # the model's time to first token, seconds
    delta_interval: float = 0.05  # seconds between word-sized deltas (~25 tokens/s)
    reply_words: int = 40  # so a reply streams for about reply_words * delta_interval
    ramp: float = 2.0  # the first N conversations start spread over this many seconds
    timeout: float = 240.0  # give up waiting for the replies after this long
    min_conversations: int = 20  # per run, whatever N

    def conversations(self, n: int) -> int:
        return max(n, self.min_conversations)


def reply_for(key: str, words: int) -> str:
    """The model's reply to `key`: its words, then filler, `words` words in all."""
    filler = (FILLER * (words // len(FILLER) + 1))[:words]
    return " ".join([f"({key})", *filler])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size so far, MiB (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


async def seed_welcomed_users(db: Path, identities: list[Identity]) -> list[User]:
    """Known users: the bench times replies, not the one-off welcome."""
    store = await SQLiteStore.open(str(db))
    try:
        now, users = datetime.now(UTC), []
        for identity in identities:
            user, _ = await store.get_or_create_user(identity, now)
            await store.update_user(user.id, welcomed=True)
            users.append(user)
        return users
    finally:
        await store.close()


def base_env(llm: FakeAnthropic, db: Path) -> dict[str, str]:
    return {
        "ANTHROPIC_API_KEY": "bench-key",
        "ANTHROPIC_BASE_URL": llm.base_url,
        "ANTHROPIC_MAX_RETRIES": "0",
        "DATABASE_URL": f"sqlite:///{db}",
        "LOG_LEVEL": "WARNING",
    }


def launcher(profile: Path | None) -> list[str]:
    """`python -m bots`, or the same under pyinstrument writing a text profile at exit."""
    if profile is None:
        return list(MOMENTUM)
    profile.parent.mkdir(parents=True, exist_ok=True)
    return [sys.executable, "-m", "pyinstrument", "--renderer", "text", "--outfile",
            str(profile), "-m", "bots"]


async def run_slack(
    n: int, config: LoadConfig, workdir: Path, *, profile: Path | None = None
) -> dict[str, Any]:
    users = [f"U0BENCH{i:05d}" for i in range(config.conversations(n))]
    db = workdir / "slack.db"
    await seed_welcomed_users(
        db, [Identity(platform=Platform.SLACK, external_id=u, workspace_id=TEAM_ID) for u in users]
    )
    async with (
        FakeSlack(enforce_limits=True) as slack,
        anthropic_fake(config) as llm,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
    ):
        for user in users:
            slack.add_user(user)
        env = base_env(llm, db) | {
            "SLACK_BOT_TOKEN": "xoxb-bench",
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.base_url,
            "SLACK_PORT": "0",
            "LOG_LEVEL": "INFO",  # the bound port is logged at INFO
        }
        async with momentum("run", workdir, env, launcher=launcher(profile)) as process:
            port = (await process.wait_for_log(r"Slack HTTP mode on \S+:(\d+)")).group(1)
            url = f"http://127.0.0.1:{port}{EVENTS_PATH}"

            async def send(i: int) -> tuple[str, float]:
                key = f"slack c{i}"
                raw = json_body(message_event(key, user=users[i]))
                headers = sign_request(SIGNING_SECRET, raw)
                sent_at = time.monotonic()
                async with http.post(url, data=raw, headers=headers) as response:
                    response.raise_for_status()
                return key, sent_at

            def finished() -> set[int]:
                screens = slack_screens(slack)
                return {
                    i for i, u in enumerate(users) if screens.get(dm_channel_id(u), ([], 0))[1]
                }

            sent, usage = await drive(process, n, config, send, finished)
            screens = slack_screens(slack)
            by_key = {f"slack c{i}": dm_channel_id(u) for i, u in enumerate(users)}
            convs = collect_conversations(sent, llm, lambda key: screens.get(by_key[key]))
            return figures(convs, usage, slack.rate_limited, config)


async def run_discord(
    n: int,
    config: LoadConfig,
    workdir: Path,
    *,
    profile: Path | None = None,
    global_limit: int = DISCORD_GLOBAL_LIMIT,
) -> dict[str, Any]:
    channels = [DISCORD_CHANNEL_BASE + i for i in range(config.conversations(n))]
    users = [DISCORD_USER_BASE + i for i in range(config.conversations(n))]
    db = workdir / "discord.db"
    limits = {"message_bucket": DISCORD_CHANNEL_LIMIT, "global_limit": (global_limit, 1.0)}
    async with (
        FakeDiscord(channel_ids=channels, user_ids=users, **limits) as discord,
        anthropic_fake(config) as llm,
    ):
        await seed_welcomed_users(db, [
            Identity(platform=Platform.DISCORD, external_id=str(u),
                     workspace_id=str(discord.guild_id))
            for u in users
        ])
        env = base_env(llm, db) | {
            "DISCORD_BOT_TOKEN": discord.token,
            "DISCORD_API_URL": discord.api_url,
            "DISCORD_GATEWAY_URL": discord.gateway_url,
            "DISCORD_CHANNEL_IDS": ",".join(map(str, channels)),
            "DISCORD_MESSAGE_CONTENT_INTENT": "true",
            "DISCORD_GLOBAL_RATE_LIMIT": str(global_limit),
            "LOG_LEVEL": "INFO",  # "logged in" is logged at INFO
        }
        async with momentum("run", workdir, env, launcher=launcher(profile)) as process:
            await process.wait_for_log(r"Discord: logged in as", within=30.0)

            async def send(i: int) -> tuple[str, float]:
                key = f"discord c{i}"
                data = discord.message_create(key, channel_id=channels[i], author_id=users[i])
                sent_at = time.monotonic()
                await discord.dispatch("MESSAGE_CREATE", data)
                return key, sent_at

            def finished() -> set[int]:
                screens = discord_screens(discord)
                return {i for i, c in enumerate(channels) if screens.get(c, ([], 0))[1]}

            sent, usage = await drive(process, n, config, send, finished)
            screens = discord_screens(discord)
            by_key = {f"discord c{i}": c for i, c in enumerate(channels)}
            convs = collect_conversations(sent, llm, lambda key: screens.get(by_key[key]))
            return figures(convs, usage, discord.rate_limited, config)


def anthropic_fake(config: LoadConfig) -> FakeAnthropic:
    def reply(body: dict[str, Any]) -> str:
        messages = body.get("messages") or [{}]
        last = messages[-1].get("content")
        text = last if isinstance(last, str) else "".join(b.get("text", "") for b in last or [])
        return reply_for(text, config.reply_words)

    return FakeAnthropic(reply=reply, ttft=config.ttft, token_delay=config.delta_interval)


@dataclass
class Usage:
    """What the bot process spent during the load (not its start-up)."""

    wall_seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    total: int  # conversations the run was to have
    bench_cpu_seconds: float  # the fakes' process: near wall_seconds means it was the limit


async def drive(
    process: Momentum,
    n: int,
    config: LoadConfig,
    send: Callable[[int], Awaitable[tuple[str, float]]],
    finished: Callable[[], set[int]],
) -> tuple[list[tuple[str, float]], Usage]:
    """Hold N conversations in flight until all have been had; what the bot spent on them."""
    pid, total = process.process.pid, config.conversations(n)
    cpu_before, started = cpu_seconds(pid), time.monotonic()
    bench_before = time.process_time()
    done: dict[int, asyncio.Event] = {i: asyncio.Event() for i in range(total)}
    in_flight = asyncio.Semaphore(n)
    sent: list[tuple[str, float]] = []

    async def conversation(i: int) -> None:
        async with in_flight:
            if i < n:
                await asyncio.sleep(config.ramp * i / n)
            sent.append(await send(i))
            await done[i].wait()

    async def watch() -> None:
        """One reader of the fakes' logs for every conversation (rebuilding them is O(calls))."""
        while True:
            for i in finished():
                done[i].set()
            if process.process.returncode is not None:
                raise RuntimeError(f"momentum exited during the load:\n{process.log}")
            await asyncio.sleep(0.05)

    work = asyncio.ensure_future(asyncio.gather(*(conversation(i) for i in range(total))))
    watcher = asyncio.create_task(watch())
    # Replies still missing after the timeout count as incomplete; a dead bot ends the run.
    ended, _ = await asyncio.wait(
        {work, watcher}, timeout=config.timeout, return_when=asyncio.FIRST_COMPLETED
    )
    for task in (work, watcher):
        task.cancel()
    await asyncio.gather(work, watcher, return_exceptions=True)
    if watcher in ended:
        watcher.result()  # raises why the bot is gone
    usage = Usage(
        wall_seconds=time.monotonic() - started,
        cpu_seconds=cpu_seconds(pid) - cpu_before,
        peak_rss_mb=peak_rss_mb(pid),
        total=total,
        bench_cpu_seconds=time.process_time() - bench_before,
    )
    await process.terminate(within=30.0)
    return sent, usage


def collect_conversations(
    sent: list[tuple[str, float]],
    llm: FakeAnthropic,
    screen_of: Callable[[str], Any],
) -> list[Conversation]:
    requests = {r.last_user_text: r for r in llm.requests}
    convs = []
    for key, sent_at in sent:
        conv = Conversation(key, sent_at)
        if (request := requests.get(key)) is not None:
            conv.llm_received_at, conv.deltas = request.received_at, list(request.deltas)
        if (screen := screen_of(key)) is not None:
            conv.writes, conv.finished = screen
        convs.append(conv)
    return convs


def figures(
    convs: list[Conversation], usage: Usage, rate_limited: int, config: LoadConfig
) -> dict[str, Any]:
    complete = sum(c.complete for c in convs)
    return {
        "conversations": usage.total,  # the ones never sent count as incomplete
        "complete": complete,
        "overhead_ms": ms_summary(overhead(c) for c in convs),
        "first_text_overhead_ms": ms_summary(first_text_overhead(c) for c in convs),
        "token_lag_ms": ms_summary((lag for c in convs for lag in token_lags(c)), (50, 95)),
        "edits_per_reply": round(
            sum(max(0, text_writes(c) - 1) for c in convs) / max(1, len(convs)), 2
        ),
        "platform_429s": rate_limited,
        "wall_s": round(usage.wall_seconds, 2),
        "replies_per_s": round(complete / usage.wall_seconds, 2) if usage.wall_seconds else 0,
        "cpu_s_per_reply": round(usage.cpu_seconds / max(1, complete), 4),
        "peak_rss_mb": round(usage.peak_rss_mb, 1),
        "bot_cpu_share": round(usage.cpu_seconds / usage.wall_seconds, 2),
        "fakes_cpu_share": round(usage.bench_cpu_seconds / usage.wall_seconds, 2),
        "config": asdict(config),
    }
