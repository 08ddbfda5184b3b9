"""The status block `momentum` prints at start: honest about half a set-up, and naming the
files it uses wherever it runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bots.__main__ import platform_status
from tests.support import make_settings


def status(**settings: object) -> dict[str, str]:
    lines = platform_status(make_settings(**settings)).splitlines()[1:]
    return {line.split()[0]: line.split(None, 1)[1] for line in lines}


def test_half_a_slack_set_up_says_what_is_missing() -> None:
    assert status(slack_bot_token="xoxb-1")["Slack"] == (
        "needs SLACK_APP_TOKEN or SLACK_SIGNING_SECRET"
    )
    assert status(slack_signing_secret="s")["Slack"].startswith("needs SLACK_BOT_TOKEN")
    assert status(slack_bot_token="xoxb-1", slack_app_token="xapp-1")["Slack"] == (
        "configured (Socket Mode)"
    )
    assert status(slack_bot_token="xoxb-1", slack_signing_secret="s")["Slack"] == (
        "configured (HTTP mode on port 3000)"
    )
    assert status()["Slack"].startswith("off: set SLACK_BOT_TOKEN")


def test_the_files_it_uses_are_named_with_whole_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    shown = status(database_url="sqlite:///momentum.db")
    assert shown["storage"] == f"SQLite {tmp_path / 'momentum.db'}"
    assert shown["settings"] == f"the environment only (no .env in {tmp_path})"
    (tmp_path / ".env").write_text("LOG_LEVEL=INFO\n")
    assert status()["settings"] == f"the environment and {tmp_path / '.env'}"


def test_no_database_credentials_in_the_status() -> None:
    shown = status(database_url="mongodb://me:secret@db.example:27017/momentum")
    assert shown["storage"] == "db.example:27017/momentum"


def test_the_web_line_says_where_it_listens() -> None:
    assert status()["web"] == "off: set WEB_ENABLED=true"
    assert status(web_enabled=True, web_port=8080)["web"].startswith("on 127.0.0.1:8080")
