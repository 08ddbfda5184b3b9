"""'Add to Slack' for any workspace, against the fake Slack: the install flow through real
HTTP requests, each workspace answered with its own token, an uninstall, a forged state."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.fernet import Fernet

from bots.slack.notify import NotInstalled, SlackSetupError, slack_notifier
from bots.slack.oauth_setup import INSTALL_PATH, REDIRECT_PATH
from bots.slack.serve import slack_mode
from bots.status import slack_state
from core.config import SLACK_BOT_SCOPES, Settings
from core.models import Identity, Platform, User
from tests.fakes.slack_api import FakeSlack, dm_channel_id
from tests.slack_harness import Deployment, deployment

T1, T2 = "T0TEAMONE", "T0TEAMTWO"
U1, U2 = "U0ONE", "U0TWO"
STATE_COOKIE = "slack-app-oauth-state"
CHAT = ("chat.postMessage", "chat.update", "chat.startStream", "chat.appendStream",
        "chat.stopStream", "assistant.threads.setStatus", "users.info")  # fmt: skip


def oauth(**more: Any) -> dict[str, Any]:
    return {
        "slack_bot_token": None,
        "slack_client_id": "111.222",
        "slack_client_secret": "client-secret",
        "slack_install_encryption_key": Fernet.generate_key().decode(),
        "slack_public_url": "https://coach.example.com",
        **more,
    }


async def install(app: Deployment, team: str, *, state: str | None = None) -> int:
    """Add to Slack: /slack/install, Slack's authorize page (its code), the redirect back."""
    async with app.http.get(app.url + INSTALL_PATH, allow_redirects=False) as started:
        assert started.status == 302, started.status
        authorize = urlsplit(started.headers["Location"])
        cookie = started.cookies[STATE_COOKIE].value
    query = parse_qs(authorize.query)
    assert authorize.netloc == "slack.com" and authorize.path == "/oauth/v2/authorize"
    assert query["client_id"] == ["111.222"] and query["scope"] == [SLACK_BOT_SCOPES]
    assert query["redirect_uri"] == ["https://coach.example.com" + REDIRECT_PATH]
    back = {"code": app.fake.install_code(team), "state": state or query["state"][0]}
    async with app.http.get(
        app.url + REDIRECT_PATH, params=back, headers={"Cookie": f"{STATE_COOKIE}={cookie}"}
    ) as finished:
        await finished.read()
        return finished.status


def tokens_used(fake: FakeSlack, user: str, since: int = 0) -> set[str | None]:
    """The tokens of the calls that answered `user` in their DM (after call number `since`)."""
    channel = dm_channel_id(user)
    return {
        c.token for c in fake.calls[since:]
        if c.method in CHAT and channel in (c.args.get("channel"), c.args.get("channel_id"))
    }  # fmt: skip


def team_token(fake: FakeSlack, team: str) -> str:
    [token] = [t for t, owner in fake.tokens.items() if owner == team and t not in fake.revoked]
    return token


async def test_two_workspaces_install_and_each_is_answered_with_its_own_token(
    tmp_path: Path,
) -> None:
    async with deployment(tmp_path, **oauth()) as app:
        assert await install(app, T1) == 200
        assert await install(app, T2) == 200
        one, two = team_token(app.fake, T1), team_token(app.fake, T2)

        # The store holds no token in clear, nor the record's JSON around it.
        with sqlite3.connect(tmp_path / "momentum.db") as db:
            rows = db.execute("SELECT team_id, data FROM installs").fetchall()
        assert {team for team, _ in rows} == {T1, T2}
        clear = [one, two, "bot_token", f"xoxb-{T1}", f"xoxb-{T2}"]
        assert not [data for _, data in rows if any(part in data for part in clear)]

        await app.dm("hi coach", user=U1, team_id=T1)
        await app.dm("hello coach", user=U2, team_id=T2)
        assert tokens_used(app.fake, U1) == {one}
        assert tokens_used(app.fake, U2) == {two}
        assert app.fake.messages(dm_channel_id(U1)) and app.fake.messages(dm_channel_id(U2))

        # Uninstalled from the first: its tokens go, its next message is not answered.
        await app.deliver(app.fake.uninstall(T1))
        with sqlite3.connect(tmp_path / "momentum.db") as db:
            teams = {row[0] for row in db.execute("SELECT team_id FROM installs")}
        assert teams == {T2}
        before, shown = len(app.fake.calls), len(app.fake.messages(dm_channel_id(U1)))
        await app.dm("still there?", user=U1, team_id=T1)
        assert tokens_used(app.fake, U1, before) == set()
        assert len(app.fake.messages(dm_channel_id(U1))) == shown
        await app.dm("and me?", user=U2, team_id=T2)  # the other workspace keeps working
        assert tokens_used(app.fake, U2, before) == {two}

        # The notifier finds each user's workspace token; an uninstalled one is an error.
        notifier = slack_notifier(app.bot.settings, app.coach.installs)
        assert notifier is not None
        before = len(app.fake.calls)
        await notifier.notify(slack_user(U2, T2), "Your window is open")
        assert {c.token for c in app.fake.calls[before:]} == {two}
        with pytest.raises(NotInstalled, match=T1):
            await notifier.notify(slack_user(U1, T1), "Your window is open")


async def test_a_redirect_with_a_wrong_state_installs_nothing(tmp_path: Path) -> None:
    async with deployment(tmp_path, **oauth()) as app:
        assert await install(app, T1, state="forged-state") != 200
        assert not app.fake.calls_to("oauth.v2.access")
        await app.dm("hi", user=U1, team_id=T1)
        assert tokens_used(app.fake, U1) == set()


async def test_rotating_tokens_are_refreshed_before_they_are_used(tmp_path: Path) -> None:
    fake = FakeSlack()
    fake.expires_in = 60  # within SLACK_TOKEN_ROTATION_MINUTES: refreshed at the next use
    async with deployment(tmp_path, fake=fake, **oauth()) as app:
        assert await install(app, T1) == 200
        first = team_token(fake, T1)
        await app.dm("hi", user=U1, team_id=T1)
        grants = [c.args.get("grant_type") for c in fake.calls_to("oauth.v2.access")]
        assert "refresh_token" in grants
        [used] = tokens_used(fake, U1)
        assert used != first and fake.tokens[used] == T1


def slack_user(user: str, team: str) -> User:
    identity = Identity(platform=Platform.SLACK, external_id=user, workspace_id=team)
    return User(identity=identity, created_at=datetime.now(UTC))


def config(**values: Any) -> Settings:
    return Settings(_env_file=None, slack_signing_secret="s", **values)  # type: ignore[call-arg]


def test_add_to_slack_without_what_it_needs_is_a_clear_setup_error() -> None:
    no_key = config(**oauth(slack_install_encryption_key=None))
    with pytest.raises(SlackSetupError, match=r"SLACK_INSTALL_ENCRYPTION_KEY is not set.*Fernet"):
        slack_mode(no_key)
    assert "SLACK_INSTALL_ENCRYPTION_KEY" in slack_state(no_key)
    with pytest.raises(SlackSetupError, match="not a Fernet key"):
        slack_mode(config(**oauth(slack_install_encryption_key="abc")))
    with pytest.raises(SlackSetupError, match="SLACK_PUBLIC_URL"):
        slack_mode(config(**oauth(slack_public_url="")))
    with pytest.raises(SlackSetupError, match="both SLACK_CLIENT_ID and SLACK_CLIENT_SECRET"):
        slack_mode(config(slack_bot_token="xoxb-1", slack_client_id="111.222"))
    ready = config(**oauth())
    assert slack_mode(ready) == "http" and ready.slack_configured
    assert "https://coach.example.com/slack/install" in slack_state(ready)
    # A single pasted token is the mode it was; Socket Mode leaves Add to Slack off.
    assert not config(slack_bot_token="xoxb-1").slack_oauth
    socket = config(**oauth(slack_bot_token="xoxb-1", slack_app_token="xapp-1"))
    assert not socket.slack_oauth and slack_mode(socket) == "socket"


def test_the_default_scopes_are_the_manifests() -> None:
    import json

    manifest = json.loads(Path("slack/manifest.json").read_text())
    assert SLACK_BOT_SCOPES.split(",") == manifest["oauth_config"]["scopes"]["bot"]
