"""Keys to the coach: bearer tokens, one-time sign-in codes, and one-time link codes.

Only a key's SHA-256 is stored: a key is 32 random bytes, so no slow hash is needed to keep
a leaked database from yielding working keys. A token works until it is revoked; a sign-in
code works once, within its minutes, and is exchanged for a token (the link that `/coach
web` gives on Slack or Discord).

A calendar key (`/coach calendar`) is a token of its own kind: calendar apps cannot send a
header, so it rides in the feed's URL, and it opens that feed only, never the API. A new
one retires the previous one, so a leaked address is undone by asking again.

A link code (`/coach link`, core/linking.py) is typed by a person, so it is short: 8
characters from an alphabet without look-alikes (no 0/O, 1/I/L), about 40 bits. Guessing
one online is hopeless within its 10 minutes and single use; its digest in a leaked
database could be reversed offline, but by then it has been used or has expired.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from core.models import User
from core.turn_order import Clock

KEY_BYTES = 32
TOKEN_PREFIX = "mom_"  # so a leaked token is recognisable (secret scanners, logs)
CALENDAR_PREFIX = "cal_"
SIGN_IN_MINUTES = 10
LINK_MINUTES = 10
LINK_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
LINK_CODE_LENGTH = 8


class Purpose(StrEnum):
    SIGN_IN = "sign_in"
    LINK = "link"
    INSTALL_STATE = "install_state"  # an app install in progress (core/installs.py)


class KeyKind(StrEnum):
    API = "api"  # the REST API and the WebSocket
    CALENDAR = "calendar"  # the meetings feed only


class KeyStore(Protocol):
    async def add_token(self, digest: str, user_id: str, now: datetime, kind: KeyKind) -> None: ...
    async def token_user(self, digest: str, kind: KeyKind) -> str | None:
        """The user id of a token of this kind that was not revoked, else None."""

    async def revoke_tokens(self, user_id: str, kind: KeyKind | None = None) -> int:
        """Revoke every token of the user (of one kind, if given); how many were live."""

    async def add_pass(
        self, digest: str, user_id: str, purpose: Purpose, expires_at: datetime
    ) -> None: ...
    async def use_pass(self, digest: str, purpose: Purpose, now: datetime) -> str | None:
        """Consume a one-time pass (atomically: a second use finds nothing); its user id,
        or None if there is no such pass or it has expired."""


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def typed_link_code(text: str) -> str | None:
    """The link code in what a person typed (any case, spaces and dashes ignored), or None
    when it cannot be one."""
    code = "".join(text.split()).replace("-", "").upper()
    if len(code) != LINK_CODE_LENGTH or any(c not in LINK_CODE_ALPHABET for c in code):
        return None
    return code


class Keys:
    """Tokens, sign-in codes and link codes (the Coach's `keys` door; DESIGN.md rule 2)."""

    def __init__(self, store: KeyStore, clock: Clock) -> None:
        self.store, self.clock = store, clock

    async def new_token(self, user: User) -> str:
        return await self._issue(user.id)

    async def user_id(self, token: str) -> str | None:
        return await self.store.token_user(digest(token), KeyKind.API) if token else None

    async def calendar_key(self, user: User) -> str:
        """A new key for the user's meetings feed; the one given before stops working."""
        await self.store.revoke_tokens(user.id, KeyKind.CALENDAR)
        key = CALENDAR_PREFIX + secrets.token_urlsafe(KEY_BYTES)
        await self.store.add_token(digest(key), user.id, self.clock(), KeyKind.CALENDAR)
        return key

    async def calendar_user_id(self, key: str) -> str | None:
        return await self.store.token_user(digest(key), KeyKind.CALENDAR) if key else None

    async def revoke(self, user: User) -> int:
        return await self.store.revoke_tokens(user.id)

    async def sign_in_code(self, user: User) -> str:
        code = secrets.token_urlsafe(KEY_BYTES)
        expires = self.clock() + timedelta(minutes=SIGN_IN_MINUTES)
        await self.store.add_pass(digest(code), user.id, Purpose.SIGN_IN, expires)
        return code

    async def sign_in(self, code: str) -> str | None:
        """Exchange a sign-in code for a new token, once; None if it is unknown or stale."""
        user_id = await self.store.use_pass(digest(code), Purpose.SIGN_IN, self.clock())
        return None if user_id is None else await self._issue(user_id)

    async def link_code(self, user: User) -> str:
        """A new one-time code that joins whoever redeems it to `user`."""
        code = "".join(secrets.choice(LINK_CODE_ALPHABET) for _ in range(LINK_CODE_LENGTH))
        expires = self.clock() + timedelta(minutes=LINK_MINUTES)
        await self.store.add_pass(digest(code), user.id, Purpose.LINK, expires)
        return code

    async def link_maker(self, code: str) -> str | None:
        """Use a link code (as `typed_link_code` read it), once: the id of the user who made
        it; None if it is unknown, used or stale."""
        return await self.store.use_pass(digest(code), Purpose.LINK, self.clock())

    async def _issue(self, user_id: str) -> str:
        token = TOKEN_PREFIX + secrets.token_urlsafe(KEY_BYTES)
        await self.store.add_token(digest(token), user_id, self.clock(), KeyKind.API)
        return token
