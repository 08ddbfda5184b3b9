""" "Add to Slack" for any workspace: Bolt's OAuth flow on Momentum's own store.

Bolt serves `/slack/install` (a state cookie and a redirect to Slack's authorize page) and
`/slack/oauth_redirect` (the state checked against the cookie and consumed, then
`oauth.v2.access` for the workspace's tokens); the installation is saved here, through
`coach.installs` (core/installs.py), which encrypts the whole record before the store sees
it. Bolt's `authorize` then finds each request's token by its workspace, and refreshes it
first when the app has token rotation on (`AsyncTokenRotator`, saved back here).

The records follow slack-sdk's file store: per workspace, the bot, the latest installation,
and each installer's own installation. `app_uninstalled` and `tokens_revoked` (for the bot)
delete the workspace's records: its events then find no token and are not answered (Bolt
answers Slack 200 and logs "the AuthorizeResult ... was not found" as an error).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.notify import SlackSetupError
from bots.slack.oauth_setup import INSTALL_PATH, REDIRECT_PATH, oauth_problem, redirect_url
from core.config import Settings
from core.installs import InstallKey, Installs

log = logging.getLogger(__name__)

BOT, INSTALLATION = "bot", "installation"


def _key(
    kind: str, enterprise_id: str | None, team_id: str | None, user_id: str = ""
) -> InstallKey:
    return InstallKey(kind, enterprise_id or "", team_id or "", user_id)


def _team(team_id: str | None, is_enterprise_install: bool | None) -> str | None:
    return None if is_enterprise_install else team_id  # an org-wide install is the org's


class SlackInstallations(AsyncInstallationStore):
    """slack-sdk's installation store on Momentum's store, records encrypted (Installs)."""

    def __init__(self, installs: Installs) -> None:
        self.installs = installs

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_save(self, installation: Installation) -> None:
        team = _team(installation.team_id, installation.is_enterprise_install)
        record = json.dumps(installation.__dict__)
        await self.async_save_bot(installation.to_bot())
        await self.installs.save(_key(INSTALLATION, installation.enterprise_id, team), record)
        if installation.user_id:
            user_key = _key(INSTALLATION, installation.enterprise_id, team, installation.user_id)
            await self.installs.save(user_key, record)
        log.info("Slack: installed in %s (%s)", team or installation.enterprise_id,
                 installation.team_name)  # fmt: skip

    async def async_save_bot(self, bot: Bot) -> None:
        if bot.bot_token is None:
            return
        team = _team(bot.team_id, bot.is_enterprise_install)
        await self.installs.save(_key(BOT, bot.enterprise_id, team), json.dumps(bot.__dict__))

    async def async_find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        record = await self.installs.find(
            _key(BOT, enterprise_id, _team(team_id, is_enterprise_install))
        )
        return None if record is None else Bot(**json.loads(record))

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        team = _team(team_id, is_enterprise_install)
        record = await self.installs.find(_key(INSTALLATION, enterprise_id, team, user_id or ""))
        if record is None:
            return None
        installation = Installation(**json.loads(record))
        # A user's own installation carries the bot of its day: the latest bot wins.
        bot = await self.async_find_bot(
            enterprise_id=enterprise_id, team_id=team_id,
            is_enterprise_install=is_enterprise_install,
        )  # fmt: skip
        if bot is None:
            return None  # the bot was revoked: nothing of this install may act
        installation.bot_token, installation.bot_id = bot.bot_token, bot.bot_id
        installation.bot_user_id, installation.bot_scopes = bot.bot_user_id, bot.bot_scopes
        installation.bot_refresh_token = bot.bot_refresh_token
        installation.bot_token_expires_at = bot.bot_token_expires_at
        return installation

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self.installs.delete(BOT, enterprise_id or "", team_id or "")

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        await self.installs.delete(INSTALLATION, enterprise_id or "", team_id or "", user_id)

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        deleted = await self.installs.delete(None, enterprise_id or "", team_id or "")
        log.info("Slack: the tokens of %s deleted (%d records)", team_id or enterprise_id,
                 deleted)  # fmt: skip


class SlackInstallStates(AsyncOAuthStateStore):
    """Bolt's OAuth `state`, a one-time pass in Momentum's store: it works in whichever
    process gets the redirect, once, within core/installs.py STATE_MINUTES."""

    def __init__(self, installs: Installs) -> None:
        self.installs = installs

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        return await self.installs.new_state()

    async def async_consume(self, state: str) -> bool:
        used = await self.installs.use_state(state)
        if not used:
            log.warning("Slack install refused: unknown, used or expired state")
        return used


class WorkspaceTokens:
    """The bot token of a workspace, for work no request carries (the notifier, repairs):
    refreshed first when it rotates and is about to expire, as Bolt's authorize does."""

    def __init__(self, store: SlackInstallations, settings: Settings, client: AsyncWebClient):
        assert settings.slack_client_id is not None and settings.slack_client_secret is not None
        self.store, self.minutes = store, settings.slack_token_rotation_minutes
        self.rotator = AsyncTokenRotator(
            client_id=settings.slack_client_id,
            client_secret=settings.slack_client_secret.get_secret_value(),
            client=client,
        )

    async def bot_token(self, team_id: str | None) -> str | None:
        bot = await self.store.async_find_bot(enterprise_id=None, team_id=team_id)
        if bot is None:
            return None
        if bot.bot_refresh_token is not None:
            refreshed = await self.rotator.perform_bot_token_rotation(
                bot=bot, minutes_before_expiration=self.minutes
            )
            if refreshed is not None:
                await self.store.async_save_bot(refreshed)
                bot = refreshed
        return bot.bot_token


def oauth_settings(
    settings: Settings, installs: Installs, client: AsyncWebClient
) -> AsyncOAuthSettings:
    """Bolt's OAuth settings for these settings (a SlackSetupError when they cannot work)."""
    if (problem := oauth_problem(settings)) is not None:
        raise SlackSetupError(problem + ".")
    assert settings.slack_client_id is not None and settings.slack_client_secret is not None
    oauth = AsyncOAuthSettings(
        client_id=settings.slack_client_id,
        client_secret=settings.slack_client_secret.get_secret_value(),
        scopes=settings.slack_scopes,
        user_scopes=[],
        # Momentum asks for no user scopes: a request needs the workspace's bot alone, one
        # store read (not the latest installation, then the sender's own, each decrypted).
        installation_store_bot_only=True,
        redirect_uri=redirect_url(settings),
        install_path=INSTALL_PATH,
        install_page_rendering_enabled=False,  # straight to Slack's authorize page
        redirect_uri_path=REDIRECT_PATH,
        installation_store=SlackInstallations(installs),
        state_store=SlackInstallStates(installs),
        token_rotation_expiration_minutes=settings.slack_token_rotation_minutes,
        logger=log,
    )
    # Bolt's rotator would call slack.com whatever SLACK_API_URL says (GovSlack, the fake).
    rotator = getattr(oauth.authorize, "token_rotator", None)
    if rotator is not None:
        rotator.client = client
    return oauth


def listen_for_uninstalls(app: AsyncApp, store: SlackInstallations) -> None:
    """`app_uninstalled`, and `tokens_revoked` naming the bot: the workspace's tokens are
    deleted (all of them: everything here acts as the bot). Revoked user tokens go alone."""

    async def uninstalled(context: AsyncBoltContext) -> None:
        log.info("Slack: uninstalled from %s", context.team_id or context.enterprise_id)
        await store.async_delete_all(enterprise_id=context.enterprise_id, team_id=context.team_id)

    async def revoked(event: dict[str, Any], context: AsyncBoltContext) -> None:
        tokens = event.get("tokens") or {}
        if tokens.get("bot"):
            await uninstalled(context)
            return
        for user_id in tokens.get("oauth") or []:
            await store.async_delete_installation(
                enterprise_id=context.enterprise_id, team_id=context.team_id, user_id=user_id
            )

    app.event("app_uninstalled")(uninstalled)
    app.event("tokens_revoked")(revoked)
