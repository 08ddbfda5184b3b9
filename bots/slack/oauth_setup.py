"""What "Add to Slack" needs of the settings, without loading the Slack SDK (the status
block at start uses it too): a problem named in one line, and the URLs to give Slack."""

from __future__ import annotations

from core.config import Settings
from core.installs import install_keys

INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"


def oauth_problem(settings: Settings) -> str | None:
    """What an "Add to Slack" set-up still needs, or None when it can start."""
    if (settings.slack_client_id is None) != (settings.slack_client_secret is None):
        return "Add to Slack needs both SLACK_CLIENT_ID and SLACK_CLIENT_SECRET"
    if not settings.slack_oauth:
        return None
    if settings.slack_signing_secret is None:
        return "Add to Slack needs SLACK_SIGNING_SECRET (HTTP mode)"
    key = settings.slack_install_encryption_key
    try:
        install_keys(key.get_secret_value() if key else "")
    except Exception as error:
        return str(error).rstrip(".").replace("is empty", "is not set")
    if not settings.slack_public_url.startswith(("https://", "http://")):
        return (
            "Add to Slack needs SLACK_PUBLIC_URL, where Slack reaches this app "
            "(https://…; the redirect URL is it + /slack/oauth_redirect)"
        )
    return None


def redirect_url(settings: Settings) -> str:
    return settings.slack_public_url.rstrip("/") + REDIRECT_PATH


def install_url(settings: Settings) -> str:
    return settings.slack_public_url.rstrip("/") + INSTALL_PATH
