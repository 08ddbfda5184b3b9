"""The bench: its arithmetic on hand-made timelines, and its smoke run (what CI runs of it)
end to end: real `momentum run` processes, Slack, Discord and the web (real WebSocket clients),
the store at smoke size, and prompt caching's tokens and cost per turn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.measure import (
    Conversation,
    Write,
    first_text_overhead,
    overhead,
    percentile,
    token_lags,
)
from bench.report import markdown, targets
from bench.screens import web_screen
from tests.momentum_process import CLEAN_ENV, REPO

SMOKE_SECONDS = 60.0  # the budget for the CI smoke run


def conversation(writes: list[Write], *, finished: bool = True) -> Conversation:
    """Sent at 10.0; the model got it at 10.1 and wrote 'Hi', ' there', '!' from 10.5."""
    conv = Conversation("c0", sent_at=10.0, llm_received_at=10.1)
    conv.deltas = [(10.5, "Hi"), (10.6, " there"), (10.7, "!")]
    conv.writes, conv.finished = writes, finished
    return conv


def test_overhead_is_the_first_output_minus_the_models_own_wait() -> None:
    with_status = conversation([Write(10.004, None), Write(10.52, "Hi"), Write(10.9, "Hi there!")])
    assert overhead(with_status) == pytest.approx(0.004)  # the indicator owes nothing to the model
    # First text at 10.52: 0.52 s after the event, of which the model took 0.4 (10.1 -> 10.5).
    assert first_text_overhead(with_status) == pytest.approx(0.12)
    text_first = conversation([Write(10.52, "Hi"), Write(10.9, "Hi there!")])
    assert overhead(text_first) == pytest.approx(0.12)


def test_token_lag_is_until_that_text_first_shows() -> None:
    conv = conversation([Write(10.52, "Hi"), Write(11.0, "Hi there"), Write(11.3, "Hi there!")])
    assert token_lags(conv) == pytest.approx([0.02, 0.4, 0.6])


def test_a_reply_is_complete_only_when_finished_and_whole() -> None:
    whole = [Write(10.52, "Hi"), Write(11.3, "Hi there!")]
    assert conversation(whole).complete
    assert not conversation(whole, finished=False).complete
    assert not conversation([Write(10.52, "Hi there")]).complete
    cut_short = conversation([Write(10.52, "Hi")])
    assert token_lags(cut_short) == pytest.approx([0.02])  # text never shown has no lag


def test_a_web_screen_is_what_the_socket_received() -> None:
    frames = [
        (10.001, {"type": "typing", "content": "Coach is thinking..."}),
        (10.52, {"type": "response_chunk", "content": "Hi", "is_complete": False}),
        (10.61, {"type": "response_chunk", "content": " there", "is_complete": False}),
        (10.71, {"type": "response_chunk", "content": "!", "is_complete": False}),
    ]
    writes, finished = web_screen(frames)
    conv = conversation(writes, finished=finished)
    assert not conv.complete  # every word arrived, but not the end of the reply
    assert overhead(conv) == pytest.approx(0.001)
    assert token_lags(conv) == pytest.approx([0.02, 0.01, 0.01])
    done = {"type": "response", "content": "Hi there!", "is_complete": True, "message_id": "m"}
    writes, finished = web_screen([*frames, (10.72, done)])
    assert conversation(writes, finished=finished).complete
    refused = [(10.002, {"type": "error", "error": "rate_limited", "content": "wait"})]
    assert web_screen(refused) == ([], False)


def test_percentiles_are_measured_values() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert [percentile(values, p) for p in (50, 95, 99, 100)] == [3.0, 5.0, 5.0, 5.0]
    assert percentile([7.0], 99) == 7.0


def test_smoke_run_reports_every_platform_and_store(tmp_path: Path) -> None:
    out = tmp_path / "results"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=REPO,
        env={**CLEAN_ENV, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=SMOKE_SECONDS * 2,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == "smoke" and results["machine"]["cores"] == os.cpu_count()
    for name in ("slack", "discord", "web"):
        runs = results["platforms"][name]
        assert [r["load"] for r in runs] == [1, 10]
        for r in runs:
            assert r["complete"] == r["conversations"] >= 5, (name, r)
            assert r["platform_429s"] == 0
            assert r["overhead_ms"]["n"] == r["conversations"]
            assert 0 < r["overhead_ms"]["p50"] <= r["overhead_ms"]["p99"]
            assert 0 < r["token_lag_ms"]["p50"] <= r["token_lag_ms"]["p95"]
            assert r["cpu_s_per_reply"] > 0 and r["peak_rss_mb"] > 50
    assert results["store"]["sqlite"]["messages"] == 2_000
    assert results["store"]["sqlite"]["context_build_ms"]["p50"] > 0
    assert {t["target"] for t in results["targets"]} >= {
        "slack overhead at 1", "discord token-to-screen lag, one conversation",
        "web overhead at 10", "web token-to-screen lag, one conversation",
    }
    # The web paces nothing: every model delta reached the client as a frame of its own.
    words = results["config"]["reply_words"]
    assert all(r["edits_per_reply"] >= words for r in results["platforms"]["web"])
    # Prompt caching: the first turn writes the tools + persona, every later one (the second
    # user's first too) reads them, and the cache makes 100 turns cheaper.
    caching = results["caching"]
    turns = caching["turns"]
    assert [t["user"] for t in turns] == ["A"] * 6 + ["B"] * 3
    assert turns[0]["cache_write"] >= caching["cache_min_tokens"] and turns[0]["cache_read"] == 0
    assert all(t["cache_read"] >= caching["prefix_tokens"] for t in turns[1:])
    assert all(t["cache_write"] == 0 for t in turns[1:])
    assert caching["turns_reading_cache_from_2"] == len(turns) - 1
    assert 0.5 < caching["read_share_from_turn_2"] < 1
    cost = caching["cost_per_100_turns_usd"]
    assert 0 < cost["cached"] < cost["uncached"]
    assert "prompt cache read from turn 2" in {t["target"] for t in results["targets"] if t["met"]}
    assert "| 2 | A |" in (out / "results.md").read_text()
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "results.md").read_text() == markdown(results)


def test_targets_name_what_was_missed() -> None:
    run = {
        "load": 500, "overhead_ms": {"p50": 90.0, "p95": 200.0, "p99": 300.0},
        "peak_rss_mb": 120.0, "platform_429s": 0, "complete": 500, "conversations": 500,
    }
    (check,) = targets({"platforms": {"slack": [run]}})
    assert check["met"] is False and "p99 300.0 ms" in check["measured"]
