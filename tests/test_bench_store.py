"""bench/store.py at smoke size: it seeds what it says and reports figures that make sense."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from bench.store import ACTIVE_GOALS, Population, bench_store, percentiles, table

TIMINGS = ("context_build_ms", "history_page_ms", "history_deep_page_ms")


def check_result(result: dict[str, Any], backend: str, messages: int, samples: int) -> None:
    population = Population.for_total(messages)
    assert result["backend"] == backend
    assert result["messages"] == messages
    assert result["users"] == len(population.counts) == messages // 100
    assert result["heavy_user_messages"] == population.heavy == messages // 5  # as stored
    assert result["context_goals"] == ACTIVE_GOALS
    assert result["samples"] == samples
    assert result["deep_page"] == population.heavy // result["page_size"]  # the last page
    assert result["seed_seconds"] > 0
    for name in TIMINGS:
        figures = result[name]
        assert set(figures) == {"p50", "p95", "p99"}
        assert 0 < figures["p50"] <= figures["p95"] <= figures["p99"] < 10_000, (name, figures)
    assert result["target_met"] is (result["context_build_ms"]["p50"] <= 5.0)
    assert backend in table([result])


async def test_sqlite_at_smoke_size() -> None:
    result = await bench_store("sqlite", 2_000, 20, log=lambda line: None)

    check_result(result, "sqlite", 2_000, 20)
    assert result["versions"]["sqlite"] == sqlite3.sqlite_version


@pytest.mark.mongo_emulator
async def test_mongo_emulator_at_smoke_size() -> None:
    try:
        import mongoeco  # noqa: F401
    except ImportError:
        pytest.skip("the Mongo emulator needs mongoeco (Python >= 3.13, `make dev`)")
    # Smaller than SQLite's: every emulator query scans the collection in Python.
    result = await bench_store("mongo", 1_000, 10, log=lambda line: None)

    check_result(result, "mongo", 1_000, 10)
    assert {"pymongo", "mongoeco"} <= set(result["versions"])


def test_percentiles_are_ordered_and_rounded() -> None:
    figures = percentiles([float(n) for n in range(1, 101)])

    assert figures == {"p50": 50.5, "p95": 95.05, "p99": 99.01}


@pytest.mark.parametrize(
    ("backend", "messages", "samples"),
    [("oracle", 2_000, 20), ("sqlite", 100, 20), ("sqlite", 2_000, 1)],
)
async def test_refuses_what_it_cannot_measure(backend: str, messages: int, samples: int) -> None:
    with pytest.raises(ValueError):
        await bench_store(backend, messages, samples, log=lambda line: None)
