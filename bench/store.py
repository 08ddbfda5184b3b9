"""Store latency at scale: what a reply reads before the model is called, and history pages.

Issue 6 asks for "context build p50 <= 5 ms at 100k messages" on SQLite and on the MongoDB
wire emulator. `bench_store` seeds a fresh database and times the real code paths:

- `context_build_ms`: `Coach.build_context`, exactly what `Coach._turn` runs before the LLM
  (the last `history_context_messages`, the active goals, the system blocks and conversation);
- `history_page_ms` and `history_deep_page_ms`: `Coach.history(identity, page, 10)` for page 1
  and for `deep_page` (500, or the user's last page when they have fewer), reported apart.

Population: `messages` spread over up to 1,000 users (at least 100 messages each, so smoke
sizes get fewer users); one heavy user holds a fifth of all messages (20,000 at 100k) and is
the one measured: the worst case for every query. Messages come in user/assistant pairs at
random times over a year, inserted in time order, so a user's rows are scattered through the
table as in a real deployment. Each user has 5 active goals and 3 closed ones.

Seeding goes through the stores' own `add_messages` (documents and rows as the app writes
them). SQLite: straight into the file. The Mongo emulator: its wire `insert` command stores one
document at a time and checks each against every stored `_id`, so 100k inserts over the wire
take hours; the same `MongoStore.add_messages` therefore runs in-process against the emulator's
engine (mongoeco's PyMongo-compatible client), and everything measured goes over the wire
through pymongo's `AsyncMongoClient`, as in production. `seed_seconds` is the whole seed's wall
time (building the messages included). With `mongodb_uri`, a real server is seeded over the wire.

    python -m bench.store [--messages N] [--samples N] [--backend sqlite|mongo|both]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import re
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from concurrent.futures import Future
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

from bson.codec_options import CodecOptions

from core.coach import Coach
from core.config import Settings
from core.models import (
    Goal,
    GoalStatus,
    Identity,
    Message,
    MessageMeta,
    Platform,
    Role,
    Usage,
    User,
)
from core.persona import Persona
from core.store import Store, open_store

BACKENDS = ("sqlite", "mongo")
CONTEXT_TARGET_P50_MS = 5.0
MAX_USERS = 1_000
MIN_MESSAGES_PER_USER = 100
HEAVY_SHARE = 0.2  # of all messages, held by the one user who is measured
PAGE_SIZE = 10
DEEP_PAGE = 500
WARMUP_ROUNDS = 5
SEED_BATCH = 5_000
ACTIVE_GOALS, CLOSED_GOALS = 5, 3
SEED_START = datetime(2025, 1, 1, tzinfo=UTC)
SEED_SPAN = timedelta(days=365)
NOW = SEED_START + SEED_SPAN  # the benchmark's clock: just after the last message
CODEC: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True, tzinfo=UTC)
WORDS = (
    "goal week run plan habit sleep focus energy progress today tomorrow minutes meeting "
    "write read practice coach great keep going small step streak review next try again"
).split()

Log = Callable[[str], None]


@dataclass(frozen=True)
class Population:
    """How many messages each user holds; index 0 is the heavy user."""

    counts: list[int]

    @classmethod
    def for_total(cls, messages: int) -> Population:
        if messages < 2 * MIN_MESSAGES_PER_USER:
            raise ValueError(f"seed at least {2 * MIN_MESSAGES_PER_USER} messages")
        users = max(2, min(MAX_USERS, messages // MIN_MESSAGES_PER_USER))
        heavy = int(messages * HEAVY_SHARE)
        rest, extra = divmod(messages - heavy, users - 1)
        return cls([heavy] + [rest + (1 if i < extra else 0) for i in range(users - 1)])

    @property
    def heavy(self) -> int:
        return self.counts[0]


def identity_of(index: int) -> Identity:
    return Identity(platform=Platform.SLACK, external_id=f"U{index:05d}", workspace_id="T1")


def _text(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(low, high))).capitalize() + "."


def _texts(rng: random.Random, low: int, high: int, count: int = 500) -> list[str]:
    """A pool to pick from: making 100k texts word by word would double the seed time."""
    return [_text(rng, low, high) for _ in range(count)]


def _pair(
    user_id: str, at: datetime, rng: random.Random, pools: tuple[list[str], list[str]]
) -> tuple[Message, Message]:
    """One exchange: the user's message and the coach's reply a few seconds later."""
    asked = Message(
        user_id=user_id,
        role=Role.USER,
        text=rng.choice(pools[0]),
        created_at=at,
        meta=MessageMeta(platform=Platform.SLACK),
    )
    answer = Message(
        user_id=user_id,
        role=Role.ASSISTANT,
        text=rng.choice(pools[1]),
        created_at=at + timedelta(seconds=rng.uniform(2, 20)),
        meta=MessageMeta(
            platform=Platform.SLACK,
            model="claude-sonnet-5-5",
            usage=Usage(input_tokens=rng.randint(800, 3000), output_tokens=rng.randint(40, 400)),
            latency_ms=rng.randint(900, 6000),
            first_token_ms=rng.randint(300, 900),
            stop_reason="end_turn",
        ),
    )
    return asked, answer


def _conversations(users: list[User], counts: list[int], seed: int = 6) -> list[Message]:
    """Every user's messages as pairs at random times over the year, in time order."""
    rng = random.Random(seed)
    span = SEED_SPAN.total_seconds() - 60
    pools = (_texts(rng, 4, 50), _texts(rng, 30, 180))  # a user's line, the coach's reply
    messages: list[Message] = []
    for user, count in zip(users, counts, strict=True):
        for _ in range(count // 2):
            at = SEED_START + timedelta(seconds=rng.uniform(0, span))
            messages.extend(_pair(user.id, at, rng, pools))
        if count % 2:
            messages.append(_pair(user.id, SEED_START, rng, pools)[0])
    messages.sort(key=lambda m: m.created_at)  # stable: a reply stays after its question
    return messages


def _goals(user: User, rng: random.Random) -> list[Goal]:
    made = [
        Goal(
            user_id=user.id,
            text=_text(rng, 3, 10),
            created_at=SEED_START + timedelta(days=i),
            status=GoalStatus.ACTIVE if i < ACTIVE_GOALS else GoalStatus.DONE,
            closed_at=None if i < ACTIVE_GOALS else SEED_START + timedelta(days=30 + i),
        )
        for i in range(ACTIVE_GOALS + CLOSED_GOALS)
    ]
    rng.shuffle(made)
    return made


def _goals_and_messages(
    users: list[User], population: Population
) -> tuple[list[Goal], list[Message]]:
    rng = random.Random(7)
    goals = [goal for user in users for goal in _goals(user, rng)]
    return goals, _conversations(users, population.counts)


async def seed(store: Store, population: Population, log: Log) -> User:
    """Fill `store` through the Store port; returns the heavy user."""
    users = [
        (await store.get_or_create_user(identity_of(i), SEED_START))[0]
        for i in range(len(population.counts))
    ]
    goals, messages = _goals_and_messages(users, population)
    for goal in goals:
        await store.add_goal(goal)
    for start in range(0, len(messages), SEED_BATCH):
        await store.add_messages(messages[start : start + SEED_BATCH])
        if (start // SEED_BATCH) % 4 == 3:
            log(f"  {start + SEED_BATCH:,} / {len(messages):,} messages")
    return users[0]


# Timing


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    """p50/p95/p99 in ms (2 decimals), interpolated between the closest samples."""
    if len(samples_ms) < 2:
        raise ValueError("need at least 2 samples")
    cuts = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return {"p50": round(cuts[49], 2), "p95": round(cuts[94], 2), "p99": round(cuts[98], 2)}


async def time_calls(call: Callable[[], Awaitable[object]], samples: int) -> dict[str, float]:
    """Warm up (caches, prepared statements, pooled connections), then time each call."""
    for _ in range(WARMUP_ROUNDS):
        await call()
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        await call()
        timings.append((time.perf_counter() - started) * 1000)
    return percentiles(timings)


# Backends


@dataclass(frozen=True)
class Seeded:
    """A seeded store, its heavy user, and how the seed went."""

    store: Store
    heavy: User
    seconds: float
    server: str
    versions: dict[str, str]


@asynccontextmanager
async def _sqlite_store(population: Population, log: Log) -> AsyncIterator[Seeded]:
    with tempfile.TemporaryDirectory(prefix="momentum-bench-") as folder:
        store = await open_store(f"sqlite:///{Path(folder) / 'bench.db'}")
        try:
            started = time.perf_counter()
            heavy = await seed(store, population, log)
            seconds = time.perf_counter() - started
            versions = {
                "sqlite": sqlite3.sqlite_version,
                "aiosqlite": metadata.version("aiosqlite"),
            }
            yield Seeded(store, heavy, seconds, "sqlite (file, WAL)", versions)
        finally:
            await store.close()


@asynccontextmanager
async def _mongo_store(population: Population, log: Log, uri: str | None) -> AsyncIterator[Seeded]:
    database = f"bench_{uuid.uuid4().hex[:12]}"
    versions = {"pymongo": metadata.version("pymongo")}
    async with AsyncExitStack() as stack:
        if uri is None:
            from tests.fakes.mongo_server import MongoEmulator

            emulator = MongoEmulator()
            stack.callback(emulator.close)
            uri = emulator.start()
            store = await open_store(uri, mongodb_database=database)  # creates the indexes
            stack.push_async_callback(store.close)
            started = time.perf_counter()
            heavy_id = await _on_emulator(
                emulator, _seed_emulator_engine(emulator, database, population)
            )
            seconds = time.perf_counter() - started
            heavy = await store.get_user(heavy_id)
            assert heavy is not None
            versions["mongoeco"] = metadata.version("mongoeco")
            server = "mongoeco emulator (wire protocol, in-process thread)"
        else:
            store = await open_store(uri, mongodb_database=database)
            stack.push_async_callback(_drop_database, uri, database)
            stack.push_async_callback(store.close)
            started = time.perf_counter()
            heavy = await seed(store, population, log)
            seconds = time.perf_counter() - started
            server = "MongoDB server"
        yield Seeded(store, heavy, seconds, server, versions)


async def _seed_emulator_engine(emulator: Any, database: str, population: Population) -> str:
    """Insert MongoStore's own documents straight into the emulator's engine, in bulk; returns
    the heavy user's id. Runs on the emulator's loop (its engine is not thread-safe).

    Each document goes through BSON first, as PyMongo would send it: the engine compares a
    stored `StrEnum` by type and would never match the plain strings queries send."""
    import bson
    from mongoeco import AsyncMongoClient as EngineClient

    from core.store.mongo import _doc  # the documents MongoStore writes, field for field

    users = [
        User(identity=identity_of(i), created_at=SEED_START) for i in range(len(population.counts))
    ]
    goals, messages = _goals_and_messages(users, population)
    client = EngineClient(emulator._engine)
    try:
        db = client[database]
        for name, models in (("users", users), ("goals", goals), ("messages", messages)):
            documents = [bson.decode(bson.encode(_doc(model)), CODEC) for model in models]
            for start in range(0, len(documents), SEED_BATCH):
                await db[name].insert_many(documents[start : start + SEED_BATCH])
    finally:
        await client.close()
    return users[0].id


async def _on_emulator(emulator: Any, coroutine: Coroutine[Any, Any, str]) -> str:
    """Run on the emulator's own loop and thread, and wait for it without blocking ours."""
    future: Future[str] = asyncio.run_coroutine_threadsafe(coroutine, emulator._loop)
    return await asyncio.wrap_future(future)


async def _drop_database(uri: str, database: str) -> None:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
    try:
        await client.drop_database(database)
    finally:
        await client.close()


# The benchmark


async def bench_store(
    backend: str,
    messages: int,
    samples: int,
    *,
    log: Log = print,
    mongodb_uri: str | None = None,
) -> dict[str, Any]:
    """Seed `messages` into a fresh `backend` store and time context builds and history pages
    for the heaviest user, `samples` times each. See the module docstring for the shape."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if samples < 2:
        raise ValueError("need at least 2 samples")
    population = Population.for_total(messages)
    log(
        f"store bench [{backend}]: seeding {messages:,} messages for {len(population.counts):,}"
        f" users (heavy user: {population.heavy:,})"
    )
    opened = (
        _sqlite_store(population, log)
        if backend == "sqlite"
        else _mongo_store(population, log, mongodb_uri)
    )
    async with opened as seeded:
        log(f"  seeded in {seeded.seconds:.1f} s; timing {samples} samples of each call")
        measured = await _measure(seeded, population, samples)
    result = {
        "backend": backend,
        "server": seeded.server,
        "versions": {"python": platform.python_version(), **seeded.versions},
        "messages": messages,
        "users": len(population.counts),
        "samples": samples,
        "seed_seconds": round(seeded.seconds, 2),
        **measured,
    }
    log(
        f"  context build p50 {result['context_build_ms']['p50']} ms"
        f" (target <= {CONTEXT_TARGET_P50_MS} ms: {'met' if result['target_met'] else 'MISSED'})"
    )
    return result


async def _measure(seeded: Seeded, population: Population, samples: int) -> dict[str, Any]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, history_context_messages=10, max_active_goals_in_context=5
    )
    coach = Coach(seeded.store, None, Persona.load(), settings, clock=lambda: NOW)
    user, identity = seeded.heavy, seeded.heavy.identity
    # A broken seed must not produce figures: check it through the code paths measured.
    prompt = await coach.build_context(user, "How did my week go?", None)
    goal_lines = len(re.findall(r"^\d+\. ", prompt.system[1]["text"], re.M))  # "1. Run 5k"
    stored = await coach.history(identity, 1, PAGE_SIZE)
    if stored.total != population.heavy or goal_lines != ACTIVE_GOALS or len(prompt.messages) < 10:
        raise RuntimeError(
            f"seed check failed: the heavy user has {stored.total} messages (planned"
            f" {population.heavy}), {goal_lines} goals in context, {len(prompt.messages)} turns"
        )
    deep = min(DEEP_PAGE, stored.pages)
    context = await time_calls(
        lambda: coach.build_context(user, "How did my week go?", None), samples
    )
    first = await time_calls(lambda: coach.history(identity, 1, PAGE_SIZE), samples)
    deepest = await time_calls(lambda: coach.history(identity, deep, PAGE_SIZE), samples)
    return {
        "context_build_ms": context,
        "history_page_ms": first,
        "history_deep_page_ms": deepest,
        "deep_page": deep,
        "page_size": PAGE_SIZE,
        "heavy_user_messages": stored.total,
        "context_goals": goal_lines,
        "target_met": context["p50"] <= CONTEXT_TARGET_P50_MS,
    }


# CLI


def table(results: list[dict[str, Any]]) -> str:
    def cell(figures: dict[str, float]) -> str:
        return f"{figures['p50']:.2f} / {figures['p95']:.2f} / {figures['p99']:.2f}"

    head = ("backend", "messages", "seed s", "context build ms", "history p1 ms", "history deep ms")
    rows = [
        (
            r["backend"],
            f"{r['messages']:,}",
            f"{r['seed_seconds']:.1f}",
            cell(r["context_build_ms"]),
            cell(r["history_page_ms"]),
            f"{cell(r['history_deep_page_ms'])} (p{r['deep_page']})",
        )
        for r in results
    ]
    widths = [max(len(str(row[i])) for row in (head, *rows)) for i in range(len(head))]
    lines = [
        " | ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True))
        for row in (head, *rows)
    ]
    lines = [line.rstrip() for line in lines]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines) + "\n(p50 / p95 / p99)"


async def _main(args: argparse.Namespace) -> list[dict[str, Any]]:
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    return [await bench_store(b, args.messages, args.samples) for b in backends]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.store", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    results = asyncio.run(_main(parser.parse_args(argv)))
    print(table(results))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
