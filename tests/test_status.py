"""The status block `momentum` prints at start: honest about half a set-up, and naming the
files it uses wherever it runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bots.status import platform_status
from core.config import Settings
from tests.support import make_settings


def status(**settings: object) -> dict[str, str]:
    lines = platform_status(make_settings(**settings)).splitlines()[1:]
    return {line.split()[0]: line.split(None, 1)[1] for line in lines}


def test_half_a_slack_set_up_says_what_is_missing() -> None:
    assert status(slack_bot_token="xoxb-1")["Slack"] == (
        "needs SLACK_APP_TOKEN or SLACK_SIGNING_SECRET"
    )
    assert status(slack_signing_secret="s")["Slack"] == (
        "needs SLACK_BOT_TOKEN (SLACK_SIGNING_SECRET set)"
    )
    assert status(slack_app_token="xapp-1", slack_signing_secret="s")["Slack"] == (
        "needs SLACK_BOT_TOKEN (SLACK_APP_TOKEN and SLACK_SIGNING_SECRET set)"
    )
    assert status(slack_bot_token="xoxb-1", slack_app_token="xoxb-2")["Slack"] == (
        "needs SLACK_APP_TOKEN to be an app-level token (xapp-…)"
    )
    assert status()["Slack"].startswith("off: set SLACK_BOT_TOKEN")


def test_a_whole_slack_set_up_names_its_mode() -> None:
    assert status(slack_bot_token="xoxb-1", slack_app_token="xapp-1")["Slack"] == (
        "configured (Socket Mode)"
    )
    assert status(slack_bot_token="xoxb-1", slack_signing_secret="s")["Slack"] == (
        "configured (HTTP mode on port 3000)"
    )


def test_discord_settings_without_a_token_or_channels_without_the_intent_are_named() -> None:
    assert status()["Discord"] == "off: set DISCORD_BOT_TOKEN"
    assert status(discord_channel_ids=[1])["Discord"] == (
        "needs DISCORD_BOT_TOKEN (other Discord settings are set)"
    )
    assert status(discord_bot_token="t")["Discord"] == "configured"
    assert status(discord_bot_token="t", discord_channel_ids=[1])["Discord"] == (
        "configured; the coaching channels hear only mentions until "
        "DISCORD_MESSAGE_CONTENT_INTENT=true"
    )
    heard = status(
        discord_bot_token="t", discord_channel_ids=[1], discord_message_content_intent=True
    )
    assert heard["Discord"] == "configured"


def test_the_files_it_uses_are_named_with_whole_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    shown = status(database_url="sqlite:///momentum.db")
    assert shown["storage"] == f"SQLite {tmp_path / 'momentum.db'}"
    assert shown["settings"] == f"the environment only: no .env found in {tmp_path}"
    (tmp_path / ".env").write_text("LOG_LEVEL=INFO\n")
    assert status()["settings"] == f"the environment and {tmp_path / '.env'}"
    assert status(database_url="sqlite:////srv/coach/m.db")["storage"] == "SQLite /srv/coach/m.db"
    assert status(database_url="sqlite://")["storage"].startswith("SQLite in memory")


def test_a_parent_directorys_env_is_not_read_and_the_status_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("LOG_LEVEL=DEBUG\n")
    below = tmp_path / "elsewhere"
    below.mkdir()
    monkeypatch.chdir(below)
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    assert Settings().log_level == "INFO"  # the documented rule: this directory's .env only
    assert status()["settings"] == f"the environment only: no .env found in {below}"


def test_no_database_credentials_in_the_status() -> None:
    shown = status(
        database_url="mongodb://me:s3cret@db1.example:27017,db2.example/app?authSource=admin",
        mongodb_database="coach",
    )
    assert shown["storage"] == "MongoDB db1.example:27017,db2.example, database coach"
    srv = status(database_url="mongodb+srv://me:s3cret@cluster0.example.net/?retryWrites=true")
    assert srv["storage"] == "MongoDB cluster0.example.net, database momentum"
    unknown = status(database_url="postgres://me:s3cret@db.example/app")["storage"]
    assert "s3cret" not in unknown and unknown == "unknown backend postgres:…"


def test_the_web_line_says_where_it_listens_and_where_the_page_is() -> None:
    assert status()["web"] == "off: set WEB_ENABLED=true"
    assert status(web_enabled=True, web_port=8080)["web"] == (
        "on 127.0.0.1:8080, page at http://localhost:8080"  # the page follows the port
    )
    assert status(web_enabled=True, web_public_url="https://coach.example")["web"] == (
        "on 127.0.0.1:8000, page at https://coach.example"
    )
