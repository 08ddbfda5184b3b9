"""Every setting Momentum reads, in one place. Each field is an environment variable
(or a line in `.env`) of the same name in upper case; `.env.example` documents them all."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.caching import Prices, cache_min_tokens
from core.zones import WhenError, resolve_timezone

log = logging.getLogger(__name__)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The bot scopes of slack/manifest.json (a test keeps them equal): what "Add to Slack" asks.
SLACK_BOT_SCOPES = (
    "app_mentions:read,assistant:write,chat:write,commands,im:history,im:write,users:read"
)


class Settings(BaseSettings):
    # Empty values (as copied from .env.example) mean "not set".
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
    )

    # Storage: sqlite:///path.db (embedded default) or mongodb://... / mongodb+srv://...
    database_url: str = "sqlite:///momentum.db"
    mongodb_database: str = "momentum"
    # How long a database call waits for the database (SQLite: a lock held by another
    # connection; MongoDB: a reachable server) before the user is told it is unavailable.
    # None keeps the backend's default: SQLite 10 s, MongoDB 5 s.
    database_timeout_seconds: float | None = Field(None, gt=0)

    # The model
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    anthropic_model: str = "claude-sonnet-5-5"
    anthropic_max_tokens: int = Field(1024, ge=64, le=16_000)
    anthropic_max_retries: int = Field(2, ge=0, le=10)
    # A whole reply must finish within this many seconds (the SDK's timeout is per read).
    llm_deadline_seconds: float = Field(90.0, gt=0)
    # No new token for this long means the stream has stalled.
    llm_stall_seconds: float = Field(20.0, gt=0)
    # Not sent: the API rejects it since 2026-10-21. Read only to warn that it is ignored,
    # so any value is accepted (an old deployment must not fail to start over it).
    anthropic_temperature: str | None = None
    # The model's list prices, US dollars per million tokens, for cost figures (bench/caching.py).
    # Defaults: Anthropic's published Sonnet-class prices (input 3, output 15; a 5-minute cache
    # write 1.25x input, a cache read 0.1x input). Set them to your model's and contract's.
    anthropic_price_input_per_mtok: float = Field(3.0, ge=0)
    anthropic_price_output_per_mtok: float = Field(15.0, ge=0)
    anthropic_price_cache_write_per_mtok: float = Field(3.75, ge=0)
    anthropic_price_cache_read_per_mtok: float = Field(0.30, ge=0)
    # The shortest prompt prefix (tools + persona) the model caches; unset: by the model's
    # family (core/caching.py: Haiku 2,048 tokens, others 1,024).
    anthropic_cache_min_tokens: int | None = Field(None, ge=1)

    # The coach
    persona_path: Path | None = None
    history_context_messages: int = Field(10, ge=0, le=100)
    max_active_goals_in_context: int = Field(5, ge=0, le=20)
    # What the coach remembers of a user (core/notes.py): at most this many notes, each at
    # most this many characters, rewritten by the model after each window.
    memory_max_notes: int = Field(12, ge=0, le=50)
    memory_note_chars: int = Field(200, ge=20, le=1000)
    # The prompt of a turn is kept under this many tokens (estimated, core/context.py): the
    # oldest history goes first, then the oldest notes; never the persona or the new message.
    context_token_budget: int = Field(12_000, ge=1000, le=200_000)
    max_input_chars: int = Field(4000, ge=1)
    default_timezone: str = "UTC"

    # Meeting windows: open N minutes before the start, close N minutes after the end.
    window_opens_before_minutes: int = Field(30, ge=0)
    window_closes_after_minutes: int = Field(60, ge=0)
    meeting_default_minutes: int = Field(45, ge=1)
    meeting_min_minutes: int = Field(10, ge=1)
    meeting_max_minutes: int = Field(240, ge=1)
    weekly_occurrences: int = Field(8, ge=1, le=52)

    # Platform retries are deduplicated by event id for this long.
    dedupe_ttl_hours: int = Field(24, ge=1)
    # One reply at a time per user, across processes: the turn's lease in the database is
    # renewed while a reply streams; a process that dies frees its users after this long
    # (and its cut-off replies are finished by another process, or at its next start).
    turn_lease_seconds: float = Field(15.0, ge=0.3, le=600)
    # On SIGTERM, replies in flight get this long to finish; the rest end with a note. Keep it
    # under what the host allows before SIGKILL (Heroku: 30 s), so the rest of shutdown runs.
    shutdown_grace_seconds: float = Field(20.0, ge=0, le=300)

    # Slack
    slack_bot_token: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_api_url: str | None = None
    slack_port: int = 3000
    slack_native_streaming: bool = True
    # "Add to Slack" for any workspace (bots/slack/oauth.py): on with both of these, in HTTP
    # mode. Each workspace's tokens are then kept in the database, encrypted with
    # SLACK_INSTALL_ENCRYPTION_KEY (a Fernet key; several, comma-separated, to rotate).
    slack_client_id: str | None = None
    slack_client_secret: SecretStr | None = None
    slack_scopes: str = SLACK_BOT_SCOPES
    slack_install_encryption_key: SecretStr | None = None
    # Where Slack reaches this app (https://…): the redirect URL is this + /slack/oauth_redirect.
    slack_public_url: str = ""
    # Tokens with rotation on are refreshed when they expire within this many minutes.
    slack_token_rotation_minutes: int = Field(120, ge=1, le=720)

    # Discord
    discord_bot_token: SecretStr | None = None
    discord_api_url: str | None = None
    discord_gateway_url: str | None = None
    discord_channel_ids: Annotated[list[int], NoDecode] = []
    discord_allow_dms: bool = True
    discord_message_content_intent: bool = False
    # Requests per second Discord allows this bot in all (50 unless Discord raised it).
    discord_global_rate_limit: int = Field(50, ge=1)
    # Shards (large bots): how many the bot has in all, and the ones this process runs
    # (unset: all). Processes sharing the token split the global limit above; unset, their
    # number is DISCORD_SHARD_COUNT / how many shards this process runs, rounded up.
    discord_shard_count: int | None = Field(None, ge=1)
    discord_shard_ids: Annotated[list[int], NoDecode] = []
    discord_processes_sharing_token: int | None = Field(None, ge=1)

    # The web (bots/web/): the chat API, its WebSocket and the page, served by `momentum run`.
    web_enabled: bool = False
    web_host: str = "127.0.0.1"
    web_port: int = Field(8000, ge=1, le=65535)
    # Where people open the page (sign-in links); unset: http://localhost:<WEB_PORT>.
    web_public_url: str = ""
    # Requests one token may make: a burst of WEB_RATE_BURST, then WEB_RATE_PER_MINUTE.
    web_rate_per_minute: int = Field(60, ge=1)
    web_rate_burst: int = Field(20, ge=1)
    # Seconds between pings to a WebSocket (and to wait for its pong): idle sockets stay
    # open through proxies that close quiet connections, and a dead peer is noticed.
    web_ping_seconds: float = Field(20.0, gt=0)

    # How long a proposal of the coach (a goal, progress, a meeting) can be confirmed.
    proposal_minutes: int = Field(60, ge=1, le=7 * 24 * 60)

    # Scheduler
    scheduler_enabled: bool = True
    scheduler_refresh_seconds: int = Field(60, ge=5)
    scheduler_misfire_grace_seconds: int = Field(3600, ge=1)
    # A window message is tried at once, then again after each of these waits, in one go.
    notify_retry_seconds: Annotated[list[float], NoDecode] = [1.0, 5.0, 30.0]
    # What still fails is kept and tried again after these waits (the last repeats), from any
    # scheduler process and across restarts, until delivered or no longer true.
    notice_backoff_seconds: Annotated[list[float], NoDecode] = [60.0, 300.0, 1800.0]

    # Start-up: a platform that cannot be reached is tried again this many times, waiting
    # STARTUP_RETRY_SECONDS, then twice as long each time (at most 30 s), before giving up.
    startup_retries: int = Field(5, ge=0, le=20)
    startup_retry_seconds: float = Field(1.0, gt=0, le=60)

    log_level: str = "INFO"
    # text: one readable line each; json: one JSON object per line, for a log pipeline.
    log_format: Literal["text", "json"] = "text"
    # Prometheus metrics (/metrics): a port of their own in `momentum run` and `momentum
    # scheduler` (unset: none; the web app serves /metrics when WEB_ENABLED), and a bearer
    # token the web app's /metrics asks for when set.
    metrics_port: int | None = Field(None, ge=1, le=65535)
    metrics_token: SecretStr | None = None

    @field_validator("discord_channel_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        """Accept `123,456` as well as a JSON list: people type the former."""
        if isinstance(value, str):
            parts = [part for part in value.replace(" ", "").split(",") if part]
            if not all(part.isdigit() for part in parts):
                raise ValueError("channel ids are numbers, separated by commas: 123,456")
            return [int(part) for part in parts]
        return value

    @field_validator("discord_shard_ids", mode="before")
    @classmethod
    def _split_shard_ids(cls, value: object) -> object:
        """`0,1` as well as a JSON list."""
        if isinstance(value, str):
            parts = [part for part in value.replace(" ", "").split(",") if part]
            if not all(part.isdigit() for part in parts):
                raise ValueError("shard ids are numbers from 0, separated by commas: 0,1")
            return [int(part) for part in parts]
        return value

    @model_validator(mode="after")
    def _shards_that_exist(self) -> Settings:
        """Shard ids only with a count, each in 0..count-1, none twice."""
        count, ids = self.discord_shard_count, self.discord_shard_ids
        if ids and count is None:
            raise ValueError(
                "DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT (how many shards the bot has in all)"
            )
        if count is not None:
            if outside := sorted({i for i in ids if not 0 <= i < count}):
                raise ValueError(
                    f"DISCORD_SHARD_IDS {','.join(map(str, outside))}: with "
                    f"DISCORD_SHARD_COUNT={count} shard ids run from 0 to {count - 1}"
                )
            if len(set(ids)) != len(ids):
                raise ValueError("DISCORD_SHARD_IDS names a shard twice")
        return self

    @property
    def discord_sharded(self) -> bool:
        return self.discord_shard_count is not None

    @property
    def discord_processes(self) -> int:
        """How many processes share the bot's token, so its global limit: as set, else the
        shard count over the shards this process runs (rounded up: never above the limit)."""
        if self.discord_processes_sharing_token is not None:
            return self.discord_processes_sharing_token
        count = self.discord_shard_count
        if count is None or not self.discord_shard_ids:
            return 1
        return -(-count // len(self.discord_shard_ids))

    @field_validator("notify_retry_seconds", "notice_backoff_seconds", mode="before")
    @classmethod
    def _split_seconds(cls, value: object) -> object:
        """`1,5,30` as well as a JSON list."""
        if isinstance(value, str):
            return [float(part) for part in value.replace(" ", "").split(",") if part]
        return value

    @field_validator("notify_retry_seconds")
    @classmethod
    def _waits(cls, value: list[float]) -> list[float]:
        if any(wait < 0 for wait in value):
            raise ValueError("waits cannot be negative")
        return value

    @field_validator("notice_backoff_seconds")
    @classmethod
    def _backoff(cls, value: list[float]) -> list[float]:
        if not value or any(wait <= 0 for wait in value):
            raise ValueError("give at least one wait, each above 0 (e.g. 60,300,1800)")
        return value

    @field_validator("anthropic_temperature", mode="before")
    @classmethod
    def _any_temperature(cls, value: object) -> object:
        return value if value is None else str(value)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        """`debug` works as well as `DEBUG`; a typo is a clear error, not a traceback."""
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"not a log level: use one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        """Checked here: an unknown zone used to pass and break the first /schedule."""
        try:
            return resolve_timezone(value).key
        except WhenError as error:
            raise ValueError(str(error)) from None

    @model_validator(mode="after")
    def _bookable_meetings(self) -> Settings:
        """Meeting lengths that leave something to book (else every booking is refused)."""
        low, default, high = (
            self.meeting_min_minutes,
            self.meeting_default_minutes,
            self.meeting_max_minutes,
        )
        if low > high:
            raise ValueError(
                f"MEETING_MIN_MINUTES ({low}) is above MEETING_MAX_MINUTES ({high}): "
                "no meeting could be booked"
            )
        if not low <= default <= high:
            raise ValueError(
                f"MEETING_DEFAULT_MINUTES ({default}) must lie between MEETING_MIN_MINUTES "
                f"({low}) and MEETING_MAX_MINUTES ({high})"
            )
        return self

    @model_validator(mode="after")
    def _page_on_the_port(self) -> Settings:
        """An unset WEB_PUBLIC_URL follows WEB_PORT: a fixed :8000 sent sign-in links to
        nowhere once the port was changed."""
        if not self.web_public_url:
            self.web_public_url = f"http://localhost:{self.web_port}"
        return self

    @property
    def window_before(self) -> timedelta:
        return timedelta(minutes=self.window_opens_before_minutes)

    @property
    def window_after(self) -> timedelta:
        return timedelta(minutes=self.window_closes_after_minutes)

    @property
    def slack_oauth(self) -> bool:
        """"Add to Slack" is on: an OAuth client, served over HTTP (Socket Mode has no
        redirect for Slack to send the installer back to)."""
        return (
            self.slack_client_id is not None
            and self.slack_client_secret is not None
            and self.slack_app_token is None
        )

    @property
    def slack_configured(self) -> bool:
        return self.slack_bot_token is not None or self.slack_oauth

    @property
    def discord_configured(self) -> bool:
        return self.discord_bot_token is not None

    @property
    def llm_configured(self) -> bool:
        return self.anthropic_api_key is not None

    @property
    def prices(self) -> Prices:
        return Prices(
            input=self.anthropic_price_input_per_mtok,
            output=self.anthropic_price_output_per_mtok,
            cache_write=self.anthropic_price_cache_write_per_mtok,
            cache_read=self.anthropic_price_cache_read_per_mtok,
        )

    @property
    def cache_min_tokens(self) -> int:
        if self.anthropic_cache_min_tokens is not None:
            return self.anthropic_cache_min_tokens
        return cache_min_tokens(self.anthropic_model)

    def warn_about_ignored(self) -> None:
        """Old deployments may still set a temperature: say it is ignored instead of failing."""
        if self.anthropic_temperature is not None:
            log.warning(
                "ANTHROPIC_TEMPERATURE=%s is ignored: the Messages API no longer accepts it",
                self.anthropic_temperature,
            )


def settings_problems(error: ValidationError) -> list[str]:
    """One line per bad setting, named as the operator set it (LOG_LEVEL, not log_level),
    without pydantic's error codes and links. Secret values are never echoed."""
    fields = Settings.model_fields
    lines = []
    for problem in error.errors(include_url=False):
        message = problem["msg"].removeprefix("Value error, ")
        loc = problem["loc"]
        if not loc:  # a rule across settings: its message names them
            lines.append(message)
            continue
        name = str(loc[0])
        field = fields.get(name)
        secret = field is not None and "SecretStr" in str(field.annotation)
        value = "" if secret else f"={problem['input']}"
        lines.append(f"{name.upper()}{value}: {message}")
    return lines
