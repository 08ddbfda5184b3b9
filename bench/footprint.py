"""What a process costs before it does any work: start-up time, peak RSS at one conversation,
and which heavy libraries it imported. Two checkouts side by side, interleaved in one run.

    python -m bench.footprint                         # this checkout only
    python -m bench.footprint --before ../before      # and an older checkout, for the ratio

Each scenario is a real `python -m bots` process from the checkout under test (its PYTHONPATH,
a fresh working directory), against the loopback fakes (tests/fakes, from this checkout):
- `slack`: `momentum run` in Slack HTTP mode; ready at "Slack HTTP mode on".
- `discord`: `momentum run` on Discord's gateway; ready at "Discord: logged in as".
- `scheduler`: `momentum scheduler` notifying through Slack; ready at "scheduler started".
- `admin`: `momentum admin users`, a one-shot command; "ready" is its exit.
Start-up is from spawn to ready (the interpreter, the imports, settings, the store, the token
checks against the fake). Then the platform scenarios have one conversation (one message, one
streamed reply) and peak RSS (VmHWM) is read; `admin` reads it at exit from the kernel's accounting.
The libraries imported come from a separate run of each scenario under `-X importtime`.
Runs alternate between the checkouts so that the machine's noise falls on both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.load import base_env, peak_rss_mb, reply_for, seed_welcomed_users
from bench.screens import discord_screens, slack_screens
from core.models import Identity, Platform
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
from tests.momentum_process import (
    CLEAN_ENV,
    IMPORT_TIMES,
    Momentum,
    eventually,
    imported_packages,
    momentum,
)

HERE = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
SCENARIOS = ("slack", "discord", "scheduler", "admin")
# The libraries worth naming: the SDKs and drivers a process may or may not need.
HEAVY = (
    "slack_bolt", "slack_sdk", "discord", "aiohttp", "pymongo", "aiosqlite", "anthropic",
    "apscheduler", "pydantic",
)  # fmt: skip
SIGNING_SECRET = "footprint-secret"
SLACK_USER = "U0FOOTPRINT"
DISCORD_CHANNEL, DISCORD_USER = 1_100_000_000_030_000_000, 1_100_000_000_040_000_000
REPLY_SECONDS = 30.0


@dataclass
class Sample:
    startup_s: float
    peak_rss_mb: float


@dataclass
class World:
    """The fakes a scenario talks to, a fresh working directory, and the process's env."""

    slack: FakeSlack
    discord: FakeDiscord
    workdir: Path
    env: dict[str, str]


@asynccontextmanager
async def _world(scenario: str, code: Path) -> AsyncIterator[World]:
    llm = FakeAnthropic(reply=lambda body: reply_for("footprint", 30), ttft=0.05, token_delay=0.01)
    discord = FakeDiscord(channel_ids=[DISCORD_CHANNEL], user_ids=[DISCORD_USER])
    with tempfile.TemporaryDirectory(prefix="footprint-") as tmp:
        async with llm, FakeSlack() as slack, discord:
            slack.add_user(SLACK_USER)
            db = Path(tmp) / "momentum.db"
            await _seed(db, discord)
            yield World(slack, discord, Path(tmp), _env(scenario, llm, slack, discord, db, code))


def _env(
    scenario: str, llm: FakeAnthropic, slack: FakeSlack, discord: FakeDiscord, db: Path, code: Path
) -> dict[str, str]:
    env = base_env(llm, db) | {"PYTHONPATH": str(code), "LOG_LEVEL": "INFO"}
    if scenario in ("slack", "scheduler"):
        env |= {
            "SLACK_BOT_TOKEN": "xoxb-footprint",
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.base_url,
            "SLACK_PORT": "0",
        }
    if scenario == "discord":
        env |= {
            "DISCORD_BOT_TOKEN": discord.token,
            "DISCORD_API_URL": discord.api_url,
            "DISCORD_GATEWAY_URL": discord.gateway_url,
            "DISCORD_CHANNEL_IDS": str(DISCORD_CHANNEL),
            "DISCORD_MESSAGE_CONTENT_INTENT": "true",
        }
    return env


READY = {
    "slack": r"Slack HTTP mode on \S+:(\d+)",
    "discord": r"Discord: logged in as",
    "scheduler": r"scheduler started",
}
COMMAND = {
    "slack": ["run"],
    "discord": ["run"],
    "scheduler": ["scheduler"],
    "admin": ["admin", "users"],
}


async def _seed(db: Path, discord: FakeDiscord) -> None:
    await seed_welcomed_users(db, [
        Identity(platform=Platform.SLACK, external_id=SLACK_USER, workspace_id=TEAM_ID),
        Identity(platform=Platform.DISCORD, external_id=str(DISCORD_USER),
                 workspace_id=str(discord.guild_id)),
    ])  # fmt: skip


async def _converse(
    scenario: str, process: Momentum, match: re.Match[str], slack: FakeSlack, discord: FakeDiscord
) -> None:
    """One message and its streamed reply, finished on the user's screen."""
    finished: Callable[[], bool]
    if scenario == "slack":
        raw = json_body(message_event("footprint", user=SLACK_USER))
        url = f"http://127.0.0.1:{match.group(1)}/slack/events"
        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=raw, headers=sign_request(SIGNING_SECRET, raw)) as r:
                r.raise_for_status()
        finished = lambda: slack_screens(slack).get(dm_channel_id(SLACK_USER), ([], False))[1]  # noqa: E731
    else:
        data = discord.message_create(
            "footprint", channel_id=DISCORD_CHANNEL, author_id=DISCORD_USER
        )
        await discord.dispatch("MESSAGE_CREATE", data)
        finished = lambda: discord_screens(discord).get(DISCORD_CHANNEL, ([], False))[1]  # noqa: E731
    await eventually(finished, REPLY_SECONDS, "the reply finished", process)


async def sample(scenario: str, code: Path) -> Sample:
    """One start of `scenario` from the checkout at `code`."""
    async with _world(scenario, code) as world:
        if scenario == "admin":
            return await _one_shot(world.env, world.workdir)
        started = time.monotonic()
        async with momentum(COMMAND[scenario][0], world.workdir, world.env) as process:
            match = await process.wait_for_log(READY[scenario], within=60.0)
            startup = time.monotonic() - started
            if scenario in ("slack", "discord"):
                await _converse(scenario, process, match, world.slack, world.discord)
            rss = peak_rss_mb(process.process.pid)
            await process.terminate(within=30.0)
            return Sample(startup, rss)


# Runs a command and prints its peak RSS (KiB) from the kernel's accounting of children.
PEAK_OF_CHILD = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
    "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


async def _one_shot(env: dict[str, str], workdir: Path) -> Sample:
    """`momentum admin users` to its exit; its peak RSS read by a small wrapper process."""
    command = [sys.executable, "-m", "bots", *COMMAND["admin"]]
    started = time.monotonic()
    wrapper = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PEAK_OF_CHILD, *command,
        cwd=workdir, env={**CLEAN_ENV, **env}, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await wrapper.communicate()
    if wrapper.returncode != 0:
        raise RuntimeError(f"momentum admin users failed ({wrapper.returncode})")
    return Sample(time.monotonic() - started, int(out) / 1024)


async def imported(scenario: str, code: Path) -> list[str]:
    """The HEAVY libraries a start of `scenario` imports (read from `-X importtime`)."""
    async with _world(scenario, code) as world:
        *before, command = COMMAND[scenario]
        launcher = [*IMPORT_TIMES, *before]
        async with momentum(command, world.workdir, world.env, launcher=launcher) as process:
            if scenario == "admin":
                await process.exited(60.0)
            else:
                await process.wait_for_log(READY[scenario], within=60.0)
                await process.terminate(within=30.0)
            names = imported_packages(process.log)
    return [name for name in HEAVY if name in names]


async def measure(codes: dict[str, Path], runs: int) -> dict[str, Any]:
    samples: dict[str, dict[str, list[Sample]]] = {c: {s: [] for s in SCENARIOS} for c in codes}
    for _ in range(runs):
        for scenario in SCENARIOS:
            for name, code in codes.items():  # alternate: noise falls on both alike
                samples[name][scenario].append(await sample(scenario, code))
    figures: dict[str, Any] = {}
    for name, code in codes.items():
        figures[name] = {}
        for scenario in SCENARIOS:
            got = samples[name][scenario]
            figures[name][scenario] = {
                "startup_s_median": round(statistics.median(s.startup_s for s in got), 3),
                "peak_rss_mb_median": round(statistics.median(s.peak_rss_mb for s in got), 1),
                "imports": await imported(scenario, code),
            }
    return figures


def report(figures: dict[str, Any], runs: int) -> str:
    names = list(figures)
    lines = [
        f"Footprint: median of {runs} starts per scenario and checkout, alternating; "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}.",
        "",
        "| scenario | "
        + " | ".join(f"{n} start-up s | {n} peak RSS MB | {n} imports" for n in names)
        + (" | start-up ratio | RSS ratio |" if len(names) == 2 else " |"),
        "|---" * (1 + 3 * len(names) + (2 if len(names) == 2 else 0)) + "|",
    ]
    for scenario in SCENARIOS:
        cells = []
        for n in names:
            f = figures[n][scenario]
            cells += [
                f"{f['startup_s_median']}",
                f"{f['peak_rss_mb_median']}",
                ", ".join(f["imports"]),
            ]
        if len(names) == 2:
            a, b = (figures[n][scenario] for n in names)
            cells += [
                f"{b['startup_s_median'] / a['startup_s_median']:.2f}",
                f"{b['peak_rss_mb_median'] / a['peak_rss_mb_median']:.2f}",
            ]
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.footprint", description=__doc__)
    parser.add_argument("--before", type=Path, help="an older checkout to compare against")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    codes = ({"before": args.before.resolve()} if args.before else {}) | {"after": HERE}
    figures = asyncio.run(measure(codes, args.runs))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "footprint.json").write_text(json.dumps(figures, indent=2) + "\n")
    text = report(figures, args.runs)
    (args.out / "footprint.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
