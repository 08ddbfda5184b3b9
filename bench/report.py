"""The bench report: targets checked, a Markdown table, the JSON, and a chart of latency
over load. Pure functions of the results dict, apart from the two writers at the end."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bots.discord.bot import EDIT_WINDOW_SECONDS, EDITS_PER_WINDOW
from bots.slack.stream import APPENDS_PER_MINUTE

# The targets (2-core machine, loopback fakes).
OVERHEAD_P50_MS, OVERHEAD_P99_MS = 15.0, 60.0
HEAVY_LOAD, HEAVY_OVERHEAD_P99_MS, HEAVY_RSS_MB = 500, 250.0, 300.0
LAG_SLACK_MS = 100.0  # token-to-screen lag may exceed one edit interval by this much
CONTEXT_BUILD_P50_MS = 5.0
# One conversation's edit interval, as the bot paces it: Slack native appends (per workspace),
# Discord message writes (per channel).
_SLACK_MS = 60_000 / APPENDS_PER_MINUTE
_DISCORD_MS = EDIT_WINDOW_SECONDS * 1000 / EDITS_PER_WINDOW
# The web paces nothing (every model delta is a response_chunk frame of its own), so its lag
# target is the slack alone. Its other targets are Slack's; its "429s" are rate_limited frames.
EDIT_INTERVAL_MS = {
    "slack": _SLACK_MS, "discord": _DISCORD_MS, "discord-raised": _DISCORD_MS, "web": 0.0,
}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "os": platform.platform(terse=True),
    }


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with what was measured and whether it was met (None: not measured)."""
    checks: list[dict[str, Any]] = []

    def check(name: str, target: str, measured: Any, met: bool | None) -> None:
        checks.append({"target": name, "limit": target, "measured": measured, "met": met})

    for name, runs in results.get("platforms", {}).items():
        for run in runs:
            load, over = run["load"], run["overhead_ms"]
            if load < HEAVY_LOAD:
                check(
                    f"{name} overhead at {load}",
                    f"p50 <= {OVERHEAD_P50_MS:g} ms, p99 <= {OVERHEAD_P99_MS:g} ms",
                    f"p50 {over['p50']} ms, p99 {over['p99']} ms",
                    over["p50"] <= OVERHEAD_P50_MS and over["p99"] <= OVERHEAD_P99_MS,
                )
            else:
                check(
                    f"{name} at {load} concurrent",
                    f"overhead p99 < {HEAVY_OVERHEAD_P99_MS:g} ms, peak RSS < {HEAVY_RSS_MB:g} MB, "
                    "0 platform 429s, every reply complete",
                    f"p99 {over['p99']} ms, {run['peak_rss_mb']} MB, "
                    f"{run['platform_429s']} 429s, {run['complete']}/{run['conversations']}",
                    over["p99"] < HEAVY_OVERHEAD_P99_MS
                    and run["peak_rss_mb"] < HEAVY_RSS_MB
                    and run["platform_429s"] == 0
                    and run["complete"] == run["conversations"],
                )
            if load == 1:
                lag_limit = EDIT_INTERVAL_MS[name] + LAG_SLACK_MS
                check(
                    f"{name} token-to-screen lag, one conversation",
                    f"p95 <= {lag_limit:g} ms (one edit interval + {LAG_SLACK_MS:g} ms)",
                    f"p95 {run['token_lag_ms']['p95']} ms",
                    run["token_lag_ms"]["p95"] <= lag_limit,
                )
    for backend, figures in results.get("store", {}).items():
        if "context_build_ms" not in figures:
            check(f"{backend} context build", "measured", figures.get("skipped"), None)
            continue
        p50 = figures["context_build_ms"]["p50"]
        check(
            f"{backend} context build at {figures['messages']:,} messages",
            f"p50 <= {CONTEXT_BUILD_P50_MS:g} ms",
            f"p50 {p50} ms",
            p50 <= CONTEXT_BUILD_P50_MS,
        )
    if caching := results.get("caching"):
        later = len(caching["turns"]) - 1
        reading = caching["turns_reading_cache_from_2"]
        check(
            "prompt cache read from turn 2",
            "every turn after the first reads the tools + persona from the cache",
            f"{reading}/{later} turns, {caching['read_share_from_turn_2']:.0%} of input",
            reading == later > 0,
        )
    return checks


def caching_markdown(caching: dict[str, Any]) -> list[str]:
    """Per turn tokens, then the cost per 100 turns with and without the cache."""
    p, cost = caching["prices_per_mtok"], caching["cost_per_100_turns_usd"]
    lines = [
        "",
        f"Prompt caching, {caching['model']}: the tools + persona prefix estimates "
        f"{caching['prefix_tokens']:,} tokens (the model caches from "
        f"{caching['cache_min_tokens']:,}). List prices per million tokens: input "
        f"${p['input']:g}, output ${p['output']:g}, cache write ${p['cache_write']:g}, "
        f"cache read ${p['cache_read']:g}.",
        "",
        "| turn | user | input | cache write | cache read | output | read share | cost $ |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in caching["turns"]:
        lines.append(
            f"| {r['turn']} | {r['user']} | {r['input']:,} | {r['cache_write']:,} "
            f"| {r['cache_read']:,} | {r['output']:,} | {r['read_share']:.0%} "
            f"| {r['cost_usd']:.5f} |"
        )
    lines += [
        "",
        f"From turn 2, {caching['read_share_from_turn_2']:.0%} of the input was read from the "
        f"cache. Cost per 100 turns: ${cost['cached']:.2f} with caching, "
        f"${cost['uncached']:.2f} without ({cost['saving']:.0%} less).",
    ]
    return lines


def _cell(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "–"
    return str(value)


def markdown(results: dict[str, Any]) -> str:
    """The tables the README shows."""
    m = results["machine"]
    lines = [
        f"Taken {results['taken_at']} ({results['mode']} run) on {m['cpu']}, {m['cores']} cores, "
        f"Python {m['python']}, {m['os']}.",
    ]
    if results.get("platforms"):
        lines += [
            "",
            "| platform | concurrent | complete | overhead p50/p95/p99 ms | first text p50/p99 ms "
            "| lag p50/p95 ms | edits/reply | 429s | replies/s | CPU s/reply | peak RSS MB |",
            "|---|---:|---:|---|---|---|---:|---:|---:|---:|---:|",
        ]
    for name, runs in results.get("platforms", {}).items():
        for r in runs:
            o, f, lag = r["overhead_ms"], r["first_text_overhead_ms"], r["token_lag_ms"]
            lines.append(
                f"| {name} | {r['load']} | {r['complete']}/{r['conversations']} "
                f"| {_cell(o['p50'])} / {_cell(o['p95'])} / {_cell(o['p99'])} "
                f"| {_cell(f['p50'])} / {_cell(f['p99'])} "
                f"| {_cell(lag['p50'])} / {_cell(lag['p95'])} | {r['edits_per_reply']} "
                f"| {r['platform_429s']} | {r['replies_per_s']} | {r['cpu_s_per_reply']} "
                f"| {r['peak_rss_mb']} |"
            )
    if results.get("store"):
        lines += [
            "",
            "| store | messages | context build p50/p95/p99 ms | history page 1, p50/p95/p99 ms "
            "| deep history page, p50/p95/p99 ms |",
            "|---|---:|---|---|---|",
        ]
        for backend, s in results["store"].items():
            if "context_build_ms" not in s:
                lines.append(f"| {backend} | – | skipped: {s.get('skipped')} | |")
                continue
            c, h, d = s["context_build_ms"], s["history_page_ms"], s["history_deep_page_ms"]
            lines.append(
                f"| {s.get('server', backend)} | {s['messages']:,} "
                f"| {c['p50']} / {c['p95']} / {c['p99']} | {h['p50']} / {h['p95']} / {h['p99']} "
                f"| page {s['deep_page']}: {d['p50']} / {d['p95']} / {d['p99']} |"
            )
    if results.get("caching"):
        lines += caching_markdown(results["caching"])
    lines += ["", "| target | limit | measured | met |", "|---|---|---|---|"]
    for t in results.get("targets", []):
        met = {True: "yes", False: "**no**", None: "–"}[t["met"]]
        lines.append(f"| {t['target']} | {t['limit']} | {t['measured']} | {met} |")
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], path: Path) -> None:
    """Latency over load, one panel per platform, log-log."""
    import matplotlib

    matplotlib.use("Agg")  # no screen here, and none needed
    import matplotlib.pyplot as plt

    platforms = results.get("platforms", {})
    fig, axes = plt.subplots(1, max(1, len(platforms)), figsize=(6 * max(1, len(platforms)), 4.2),
                             squeeze=False)
    series = [
        ("overhead_ms", "p50", "overhead p50"),
        ("overhead_ms", "p99", "overhead p99"),
        ("first_text_overhead_ms", "p99", "first text overhead p99"),
        ("token_lag_ms", "p95", "token-to-screen lag p95"),
    ]
    for ax, (name, runs) in zip(axes[0], platforms.items(), strict=False):
        loads = [r["load"] for r in runs]
        for key, p, label in series:
            ax.plot(loads, [max(r[key][p], 0.1) for r in runs], marker="o", label=label)
        ax.axhline(OVERHEAD_P99_MS, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(loads, [str(x) for x in loads])
        ax.set_xlabel("concurrent conversations")
        ax.set_ylabel("ms")
        ax.set_title(f"{name}: latency over load")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Momentum bench, {results['taken_at']} ({results['mode']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: dict[str, Any], out: Path) -> list[Path]:
    """results.json, results.md and latency.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json", out / "results.md", out / "latency.png"]
    paths[0].write_text(json.dumps(results, indent=2) + "\n")
    paths[1].write_text(markdown(results))
    chart(results, paths[2])
    return paths
