"""The status block `momentum` prints at start: what is configured, what half a set-up still
needs, and which files this process uses (it may run from any directory)."""

from __future__ import annotations

from pathlib import Path

from bots.slack.oauth_setup import install_url, oauth_problem
from core.config import Settings
from core.store import sqlite_path


def platform_status(settings: Settings) -> str:
    rows = {
        "coach": "configured" if settings.llm_configured else "off: set ANTHROPIC_API_KEY",
        "Slack": slack_state(settings),
        "Discord": discord_state(settings),
        "web": web_state(settings),
        "settings": settings_source(),
        "storage": storage_place(settings),
    }
    lines = [f"  {name:<9} {state}" for name, state in rows.items()]
    return "\n".join(["Momentum status:", *lines])


def slack_state(settings: Settings) -> str:
    """Half a Slack set-up is named as such (and `run` refuses it), not "configured" or "off"."""
    app_token, secret = settings.slack_app_token, settings.slack_signing_secret
    if (problem := oauth_problem(settings)) is not None:
        return f"needs: {problem}"
    if settings.slack_oauth:
        return (
            f"configured for any workspace (HTTP mode on port {settings.slack_port}; "
            f"Add to Slack at {install_url(settings)})"
        )
    if settings.slack_bot_token is None:
        named = {"SLACK_APP_TOKEN": app_token, "SLACK_SIGNING_SECRET": secret}
        given = [name for name, value in named.items() if value is not None]
        if given:
            return f"needs SLACK_BOT_TOKEN ({' and '.join(given)} set)"
        return "off: set SLACK_BOT_TOKEN (+ SLACK_APP_TOKEN or SLACK_SIGNING_SECRET)"
    if app_token is not None:
        if not app_token.get_secret_value().startswith("xapp-"):
            return "needs SLACK_APP_TOKEN to be an app-level token (xapp-…)"
        return "configured (Socket Mode)"
    if secret is None:
        return "needs SLACK_APP_TOKEN or SLACK_SIGNING_SECRET"
    return f"configured (HTTP mode on port {settings.slack_port})"


def discord_state(settings: Settings) -> str:
    """Coaching channels without the message-content intent hear only mentions: said here."""
    channels = settings.discord_channel_ids
    if settings.discord_bot_token is None:
        if channels or settings.discord_message_content_intent:
            return "needs DISCORD_BOT_TOKEN (other Discord settings are set)"
        return "off: set DISCORD_BOT_TOKEN"
    if channels and not settings.discord_message_content_intent:
        return (
            "configured; the coaching channels hear only mentions until "
            "DISCORD_MESSAGE_CONTENT_INTENT=true"
        )
    return "configured"


def web_state(settings: Settings) -> str:
    if not settings.web_enabled:
        return "off: set WEB_ENABLED=true"
    return f"on {settings.web_host}:{settings.web_port}, page at {settings.web_public_url}"


def settings_source() -> str:
    """Where Settings read: the environment, and the .env of the current directory only
    (pydantic-settings reads `env_file` relative to it; no parent, not the install folder)."""
    env_file = Settings.model_config.get("env_file")
    found = Path(str(env_file)) if env_file else None
    if found is not None and found.is_file():
        return f"the environment and {found.resolve()}"
    return f"the environment only: no {found or '.env'} found in {Path.cwd()}"


def storage_place(settings: Settings) -> str:
    """The database as an operator finds it: a whole file path, or hosts (no credentials)."""
    url = settings.database_url
    path = sqlite_path(url)
    if path == ":memory:":
        return "SQLite in memory (nothing is kept after exit)"
    if path is not None:
        return f"SQLite {Path(path).resolve()}"
    scheme, _, rest = url.partition("://")
    if scheme in ("mongodb", "mongodb+srv"):
        hosts = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]  # user:pass@ dropped
        return f"MongoDB {hosts}, database {settings.mongodb_database}"
    return f"unknown backend {scheme}:…"  # the start then fails, naming DATABASE_URL
