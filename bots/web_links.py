"""Addresses of the web adapter that the other platforms hand out (`/coach web`,
`/coach calendar`), so the routes and the links that reach them are written once."""

from __future__ import annotations

from core.config import Settings

CALENDAR_FEED = "/api/v1/calendar/{key}.ics"  # the route in bots/web/api.py


def sign_in_url(settings: Settings, code: str) -> str:
    return f"{settings.web_public_url.rstrip('/')}/#sign-in={code}"


def calendar_feed_url(settings: Settings, key: str) -> str:
    return settings.web_public_url.rstrip("/") + CALENDAR_FEED.format(key=key)
