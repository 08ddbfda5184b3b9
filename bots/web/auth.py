"""Who is asking: a bearer token, looked up once per request (or once per WebSocket), and
the token's request budget. No token, or a wrong or revoked one, is a 401."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from fastapi import HTTPException, Request

from bots.tasks import Background
from bots.web.limits import Limits
from core.coach import Coach
from core.config import Settings
from core.keys import digest
from core.models import User


@dataclass
class Web:
    """What the routes share (the app's state): the coach, the settings, the budgets, and
    the replies in flight (so shutdown lets them finish)."""

    coach: Coach
    settings: Settings
    limits: Limits
    background: Background


@dataclass(frozen=True)
class Caller:
    user: User
    key: str  # the token's digest: the rate limit's key, never the token itself


def web_of(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


def bearer(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def caller_for(web: Web, token: str | None) -> Caller | None:
    """The user a token names (None: no such token, revoked, or the user is gone)."""
    if not token:
        return None
    user_id = await web.coach.keys.user_id(token)
    user = await web.coach.user_by_id(user_id) if user_id else None
    return Caller(user, digest(token)) if user else None


def over_budget(web: Web, key: str) -> float:
    """0 if the key (a token's digest) may go on, else the seconds to wait (Retry-After)."""
    return web.limits.take(key, time.monotonic())


def within_budget(web: Web, key: str) -> None:
    """A 429 with Retry-After when the key has spent its budget."""
    if wait := over_budget(web, key):
        seconds = max(1, math.ceil(wait))
        raise HTTPException(
            429,
            f"Too many requests: try again in {seconds} s.",
            headers={"Retry-After": str(seconds)},
        )


async def caller(request: Request) -> Caller:
    """The FastAPI dependency of every authenticated route."""
    web = web_of(request)
    found = await caller_for(web, bearer(request.headers.get("authorization")))
    if found is None:
        raise HTTPException(
            401,
            "Sign in: send `Authorization: Bearer <token>` with a token from "
            "`momentum admin token create` or a sign-in link.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    within_budget(web, found.key)
    return found
