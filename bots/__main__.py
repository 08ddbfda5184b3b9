"""The composition root and CLI: settings -> store -> llm -> coach -> adapters.

momentum            the console chat when no platform is configured, else `run`
momentum chat       talk to the coach in this terminal
momentum run        every configured platform plus the scheduler, in one process
momentum scheduler  the meeting-window scheduler alone (the Procfile's clock process)
momentum admin      operator commands: `admin users`, `admin phase <user-id> <phase>`
momentum discord-sync [--guild ID]  register the /coach commands with Discord

`run` and `scheduler` stop cleanly on SIGTERM (what Procfile platforms send) and SIGINT, exit 0.
Settings, credentials and the network are checked at start: what cannot work is one line
naming the setting, and exit code 1 (2 for settings that do not parse); never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from bots import admin
from bots.logs import setup_logging
from bots.status import platform_status
from core.coach import Coach
from core.config import Settings, settings_problems
from core.errors import SetupError
from core.models import Platform
from core.persona import Persona, PersonaError
from core.store import StoreUnavailable, open_store
from scheduler.notify import NotifierFactory, Notifiers

if TYPE_CHECKING:
    from core.anthropic_llm import AnthropicLLM

# A process imports only the SDKs and the driver its settings turn on (the platforms below,
# the Anthropic SDK, APScheduler, pymongo in core/store): each is imported where it is used.

log = logging.getLogger("momentum")

NOTHING_CONFIGURED = (
    "No chat platform is configured, so there is nothing for `momentum run` to start.\n"
    "Set SLACK_BOT_TOKEN (with SLACK_APP_TOKEN or SLACK_SIGNING_SECRET) for Slack, or\n"
    "DISCORD_BOT_TOKEN for Discord, or WEB_ENABLED=true for the web chat, in the\n"
    "environment or .env (see .env.example).\n"
    "To try the coach locally, run `momentum chat`."
)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
CONSOLE_LOG, CONSOLE_HISTORY = "console.log", "console_history"


class StartupError(Exception):
    """Configuration that cannot work; the message says what to change."""


def build_llm(settings: Settings) -> AnthropicLLM | None:
    if settings.anthropic_api_key is None:
        return None
    from core.anthropic_llm import AnthropicLLM

    return AnthropicLLM(
        api_key=settings.anthropic_api_key.get_secret_value(),
        model=settings.anthropic_model,
        max_tokens=settings.anthropic_max_tokens,
        base_url=settings.anthropic_base_url,
        max_retries=settings.anthropic_max_retries,
        deadline_seconds=settings.llm_deadline_seconds,
        stall_seconds=settings.llm_stall_seconds,
    )


@asynccontextmanager
async def open_coach(settings: Settings, *, model: bool = True) -> AsyncIterator[Coach]:
    """Build the coach from settings, and close what it opened on the way out. Without
    `model` (commands that never ask it: admin, discord-sync) no model client is made."""
    settings.warn_about_ignored()
    try:
        persona = Persona.load(settings.persona_path)
    except PersonaError as error:
        raise StartupError(f"PERSONA_PATH: {error}") from error
    try:
        store = await open_store(
            settings.database_url,
            mongodb_database=settings.mongodb_database,
            timeout_seconds=settings.database_timeout_seconds,
        )
    except (StoreUnavailable, ValueError, OSError) as error:
        problem = str(error)  # open_store's own ValueError names the setting already
        raise StartupError(
            problem if problem.startswith("DATABASE_URL") else f"DATABASE_URL: {problem}"
        ) from error
    llm = build_llm(settings) if model else None
    try:
        yield Coach(store, llm, persona, settings)
    finally:
        if llm is not None:
            await llm.aclose()
        await store.close()


async def chat(settings: Settings, state: Path | None) -> None:
    async with open_coach(settings) as coach:
        print(platform_status(settings), file=sys.stderr)
        if state is not None:
            print(f"  logs      {state / CONSOLE_LOG}", file=sys.stderr)
        if not settings.llm_configured:
            print("Set ANTHROPIC_API_KEY to chat; commands work without it.\n", file=sys.stderr)
        from bots.console import Console

        await Console(coach, history=state / CONSOLE_HISTORY if state else None).run()


def console_state() -> Path | None:
    """Where the console keeps its log and line history (the XDG state directory), or None
    when it cannot be made (a read-only home): then logs go to stderr, history to memory."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    folder = Path(base) / "momentum"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONSOLE_LOG).touch()
    except OSError:
        return None
    return folder


Service = Callable[[Coach, Settings], Coroutine[Any, Any, None]]


def notifier_factories(
    settings: Settings, coach: Coach | None = None
) -> dict[Platform, NotifierFactory]:
    """The Web API notifier factory (Settings -> Notifier | None) of each platform these
    settings turn on. The scheduler notifies through these in `run` and alone, with no
    gateway connection. Slack with OAuth finds each workspace's token through the coach."""
    factories: dict[Platform, NotifierFactory] = {}
    if settings.slack_configured:
        from bots.slack.notify import slack_notifier

        installs = coach.installs if coach is not None else None
        factories[Platform.SLACK] = lambda settings: slack_notifier(settings, installs)
    if settings.discord_bot_token is not None:
        from bots.discord.notify import discord_notifier

        factories[Platform.DISCORD] = discord_notifier
    return factories


async def scheduler(coach: Coach, settings: Settings, *, verify: bool = False) -> None:
    """The meeting-window scheduler, notifying users through their platforms' Web APIs.

    With `verify` (the scheduler alone), the notifiers' tokens are checked first; in `run`
    the platform services check the same tokens.
    """
    from scheduler.service import run_scheduler

    notifiers = Notifiers.from_factories(settings, notifier_factories(settings, coach))
    if verify and not len(notifiers):  # in `run` the scheduler's own start line says so
        log.warning(
            "no platform notifier available: windows still open and close, but nobody is told"
        )
    try:
        if verify:
            await notifiers.verify()
        await run_scheduler(coach, settings, notifiers)
    finally:
        await notifiers.aclose()


async def slack(coach: Coach, settings: Settings) -> None:
    from bots.slack.serve import serve_slack

    await serve_slack(coach, settings)


async def discord(coach: Coach, settings: Settings) -> None:
    from bots.discord.run import run_discord

    await run_discord(coach, settings)


async def web(coach: Coach, settings: Settings) -> None:
    from bots.web.serve import serve_web

    await serve_web(coach, settings)


def configured_services(settings: Settings) -> list[tuple[str, Service]]:
    """The long-running parts `momentum run` starts for these settings."""
    services: list[tuple[str, Service]] = []
    if settings.slack_configured:
        services.append(("slack", slack))
    if settings.discord_configured:
        services.append(("discord", discord))
    if settings.web_enabled:
        services.append(("web", web))
    # Keep this last: the scheduler serves the platforms above and is no reason to run alone
    # (that is `momentum scheduler`), so `run` with no platform still says nothing is configured.
    if services and settings.scheduler_enabled:
        services.append(("scheduler", scheduler))
    return services


def announce_status(settings: Settings) -> None:
    """The status block on stderr; with LOG_FORMAT=json, a log line like every other."""
    if settings.log_format == "json":
        log.info("%s", platform_status(settings))
    else:
        print(platform_status(settings), file=sys.stderr)


def serve_metrics(settings: Settings) -> None:
    """METRICS_PORT: prometheus_client's own server (a thread) for /metrics."""
    if settings.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port)
        log.info("metrics on port %d (/metrics)", settings.metrics_port)


async def run(settings: Settings) -> None:
    announce_status(settings)
    services = configured_services(settings)
    if not services:
        raise StartupError(NOTHING_CONFIGURED)
    serve_metrics(settings)
    async with open_coach(settings) as coach:
        try:
            async with asyncio.TaskGroup() as group:
                for name, service in services:
                    log.info("starting %s", name)
                    group.create_task(service(coach, settings), name=name)
        except ExceptionGroup as failed:
            # The task group wraps a service's setup error; the operator needs its message.
            # (Not `except*`: on Python 3.11.0-3.11.3 what it raises arrives wrapped in a
            # group again, and main() would print a traceback.)
            raise setup_failure(failed) from None


def setup_failure(failed: ExceptionGroup[Exception]) -> Exception:
    """What to raise for a task group's failures: its setup errors, as one StartupError
    (a line each), when that is all there is; the group itself when something else broke."""
    setup, other = failed.split(SetupError)
    if setup is None or other is not None:
        return failed
    lines = dict.fromkeys(str(error) for error in _leaves(setup))  # once each, in order
    return StartupError("\n".join(lines))


def _leaves(group: BaseExceptionGroup[Exception]) -> list[Exception]:
    found: list[Exception] = []
    for error in group.exceptions:
        found.extend(_leaves(error) if isinstance(error, BaseExceptionGroup) else [error])
    return found


async def clock(settings: Settings) -> None:
    """`momentum scheduler`: only the scheduler, e.g. beside `run` with SCHEDULER_ENABLED=false."""
    announce_status(settings)
    serve_metrics(settings)
    async with open_coach(settings) as coach:
        await scheduler(coach, settings, verify=True)


async def until_stopped(work: Coroutine[Any, Any, None]) -> None:
    """Run a long-lived command until SIGTERM or SIGINT, then return normally (exit code 0).

    The signal cancels this task, so every `finally` and `async with` on the way out runs in
    order: the services stop (the Slack server and the Discord client close, Slack replies in
    flight get their grace), then the store closes. Being asked to stop is not an error.
    """
    task = asyncio.current_task()
    assert task is not None
    stopping = False

    def stop(signum: signal.Signals) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            log.info("stopping (%s)", signum.name)
            task.cancel()

    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        with suppress(NotImplementedError):  # Windows: Ctrl-C stays a KeyboardInterrupt
            loop.add_signal_handler(signum, stop, signum)
    try:
        await work
    except asyncio.CancelledError:
        if not stopping:
            raise
        task.uncancel()
        log.info("stopped")


async def discord_sync(settings: Settings, guild_id: int | None) -> None:
    """`momentum discord-sync`: Discord caps command creation, so this never runs on start."""
    from bots.discord.run import sync_commands

    async with open_coach(settings, model=False) as coach:
        names = await sync_commands(coach, settings, guild_id)
    where = f"in guild {guild_id}" if guild_id is not None else "globally"
    print(f"Registered {', '.join('/' + name for name in names)} {where}.")


async def operator(settings: Settings, args: argparse.Namespace) -> None:
    async with open_coach(settings, model=False) as coach:
        print(await admin.run(coach, args))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="momentum", description="Momentum, an AI coach in chat.")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("chat", help="talk to the coach in this terminal")
    commands.add_parser("run", help="start every configured platform and the scheduler")
    commands.add_parser("scheduler", help="run the meeting-window scheduler alone")
    admin.add_parser(commands)
    sync = commands.add_parser("discord-sync", help="register the /coach commands with Discord")
    sync.add_argument("--guild", type=int, help="a server id: register there only, instantly")
    args = parser.parse_args(argv)

    try:
        settings = Settings()
    except ValidationError as error:
        for problem in settings_problems(error):
            print(f"Configuration error: {problem}", file=sys.stderr)
        return 2
    command = args.command or ("run" if configured_services(settings) else "chat")
    # The console logs to a file: a line on stderr would land in the middle of a reply.
    state = console_state() if command == "chat" else None
    setup_logging(
        settings.log_level if command not in ("chat", "admin") or state else logging.WARNING,
        settings.log_format,
        state / CONSOLE_LOG if state else None,
    )
    try:
        if command == "admin":
            asyncio.run(operator(settings, args))
        elif command == "discord-sync":
            asyncio.run(discord_sync(settings, args.guild))
        elif command == "chat":
            asyncio.run(chat(settings, state))
        else:
            asyncio.run(until_stopped({"run": run, "scheduler": clock}[command](settings)))
    except (StartupError, admin.AdminError, SetupError) as error:
        if settings.log_format == "json" and command in ("run", "scheduler"):
            log.error("%s", error)  # a log pipeline reads stderr: one JSON line, not raw text
        else:
            print(error, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)  # the shell's prompt on its own line, not after "^C"
        return 130
    if command == "chat" and not sys.stdout.closed and _reader_gone():
        # `momentum chat | head`: the reader left; say nothing more (no flush error at exit).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _reader_gone() -> bool:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    return False


if __name__ == "__main__":
    sys.exit(main())
