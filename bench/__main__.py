"""`make bench`: real `momentum run` processes under load against the loopback fakes, plus the
store at 100k messages; writes results.json, results.md and latency.png.

    python -m bench                  # the full run (several minutes), into bench/results/
    python -m bench --smoke          # small loads and store, under a minute (CI runs this)
    python -m bench --platforms discord --loads 1,500 --profile   # pyinstrument the bot
    python -m bench --sections caching --out /tmp/caching   # prompt caching's tokens and cost
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench import report
from bench.caching import run_caching
from bench.load import RAISED_GLOBAL_LIMIT, LoadConfig, run_discord, run_slack
from bench.web_load import run_web

RESULTS = Path(__file__).parent / "results"
FULL_LOADS = (1, 10, 100, 500)
FULL_PLATFORMS = "slack,discord,discord-raised,web"
SMOKE_PLATFORMS = "slack,discord,web"
SMOKE_LOADS = (1, 10)
# (messages, samples) by backend. The Mongo emulator is a pure-Python server that scans
# every document per query (bench/STORE_PROFILE.md): fewer samples keep it to minutes.
FULL_STORE = {"sqlite": (100_000, 200), "mongo": (100_000, 20)}
SMOKE_STORE = {"sqlite": (2_000, 20), "mongo": (1_000, 10)}
FULL_CACHING_TURNS, SMOKE_CACHING_TURNS = 20, 6  # one user's turns; a second user adds 3
SECTIONS = ("platforms", "store", "caching")
SMOKE_CONFIG = LoadConfig(
    ttft=0.2, delta_interval=0.02, reply_words=20, ramp=0.3, timeout=30, min_conversations=5
)

RUNNERS: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
    "slack": run_slack,
    "discord": run_discord,
    "discord-raised": functools.partial(run_discord, global_limit=RAISED_GLOBAL_LIMIT),
    "web": run_web,
}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small and fast, for CI")
    parser.add_argument("--platforms",
                        help="discord-raised: Discord with a global limit of 500/s, as Discord "
                        "grants large bots; it shows Momentum's own overhead at 500")
    parser.add_argument("--loads", help="concurrent conversations, e.g. 1,10,100,500")
    parser.add_argument("--store", default="sqlite,mongo", help="store backends ('' for none)")
    parser.add_argument("--store-messages", type=int)
    parser.add_argument("--ttft", type=float, help="the model's time to first token, s")
    parser.add_argument("--delta-interval", type=float, help="seconds between model deltas")
    parser.add_argument("--profile", action="store_true",
                        help="run the bot under pyinstrument; profiles land next to the results")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results[/smoke])")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"which parts to run, of {','.join(SECTIONS)}")
    parser.add_argument("--caching-turns", type=int, help="one user's turns in the caching run")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    config = SMOKE_CONFIG if args.smoke else LoadConfig()
    config = replace(
        config,
        ttft=config.ttft if args.ttft is None else args.ttft,
        delta_interval=config.delta_interval if args.delta_interval is None
        else args.delta_interval,
    )
    loads = [int(n) for n in args.loads.split(",")] if args.loads else (
        SMOKE_LOADS if args.smoke else FULL_LOADS
    )
    platforms = args.platforms or (SMOKE_PLATFORMS if args.smoke else FULL_PLATFORMS)
    out: Path = args.out or (RESULTS / "smoke" if args.smoke else RESULTS)
    profiles = out / "profiles" if args.profile else None
    sections = set(filter(None, args.sections.split(",")))
    if unknown := sections - set(SECTIONS):
        raise SystemExit(f"unknown section(s) {', '.join(sorted(unknown))}: use {SECTIONS}")
    if "platforms" not in sections:
        platforms = ""
    if "store" not in sections:
        args.store = ""
    results: dict[str, Any] = {
        "taken_at": report.stamp(),
        "mode": "smoke" if args.smoke else "full",
        "machine": report.machine(),
        "config": asdict(config),
        "platforms": {},
        "store": {},
    }
    for name in filter(None, platforms.split(",")):
        runs = results["platforms"][name] = []
        for load in loads:
            print(f"{name}: {load} concurrent conversations ...", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(prefix="momentum-bench-") as workdir:
                profile = profiles / f"{name}-{load}.txt" if profiles else None
                figures = await RUNNERS[name](load, config, Path(workdir), profile=profile)
            runs.append({"load": load, **figures})
    for backend in filter(None, args.store.split(",")):
        messages, samples = (SMOKE_STORE if args.smoke else FULL_STORE)[backend]
        print(f"store: {backend} ...", file=sys.stderr, flush=True)
        results["store"][backend] = await store_figures(
            backend, args.store_messages or messages, samples
        )
    if "caching" in sections:
        turns = args.caching_turns or (SMOKE_CACHING_TURNS if args.smoke else FULL_CACHING_TURNS)
        print(f"caching: {turns} turns ...", file=sys.stderr, flush=True)
        results["caching"] = await run_caching(turns)
    results["targets"] = report.targets(results)
    for path in report.write(results, out):
        print(f"wrote {path}", file=sys.stderr)
    return results


async def store_figures(backend: str, messages: int, samples: int) -> dict[str, Any]:
    from bench.store import bench_store

    try:
        figures: dict[str, Any] = await bench_store(
            backend, messages, samples, log=lambda line: print(line, file=sys.stderr)
        )
    except ModuleNotFoundError as missing:  # the Mongo emulator needs Python >= 3.13
        return {"skipped": f"{missing.name} is not installed"}
    return figures


def main(argv: list[str] | None = None) -> None:
    results = asyncio.run(run(parse(sys.argv[1:] if argv is None else argv)))
    print(report.markdown(results))


if __name__ == "__main__":
    main()
