"""An app installed into many workspaces ("Add to Slack"): each installation's record, kept
encrypted, and the one-time `state` of an install in progress.

The record (tokens, refresh tokens, scopes, ids) is JSON that the adapter writes and reads;
here it is encrypted with Fernet (AES-128-CBC + HMAC-SHA256) before it reaches the store,
so the database never holds a token in clear. Only the lookup keys (workspace, org, user)
are stored plain.

Keys rotate: the setting holds one key or several, comma-separated. The first encrypts;
any of them decrypts. A record still under an older key is saved again under the first one
when it is read, so after a while (or a reinstall) the old key can be dropped.

The state of an install (Slack's OAuth `state`) is a one-time pass (core/keys.py): only its
digest is stored, it works once, within STATE_MINUTES, in whichever process gets the redirect.
"""

from __future__ import annotations

import functools
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from core.errors import SetupError
from core.keys import KeyStore, Purpose, digest
from core.turn_order import Clock

log = logging.getLogger(__name__)

STATE_MINUTES = 10
KEY_HELP = (
    'make one with: python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())"'
)


@dataclass(frozen=True)
class InstallKey:
    """Where one record lives. `kind` is the adapter's ("bot", "installation"); an empty id
    stands for none (no org, or the workspace's latest installation, not one user's)."""

    kind: str
    enterprise_id: str
    team_id: str
    user_id: str = ""


class InstallStore(KeyStore, Protocol):
    async def save_install(self, key: InstallKey, data: str, now: datetime) -> None:
        """Insert or replace the record at `key`."""

    async def find_install(self, key: InstallKey) -> str | None:
        """The record at exactly `key`, or None."""

    async def delete_installs(
        self, kind: str | None, enterprise_id: str, team_id: str, user_id: str | None = None
    ) -> int:
        """Delete a workspace's records (of one kind, of one user, when given); how many."""


def install_keys(keys: str) -> list[Fernet]:
    """The keys of the setting, the one that encrypts first; a SetupError that says how to
    make a key when they are not Fernet keys."""
    parts = [part.strip() for part in keys.split(",") if part.strip()]
    if not parts:
        raise SetupError(f"SLACK_INSTALL_ENCRYPTION_KEY is empty: {KEY_HELP}.")
    try:
        return [Fernet(part) for part in parts]
    except (ValueError, TypeError):
        raise SetupError(
            f"SLACK_INSTALL_ENCRYPTION_KEY is not a Fernet key (32 url-safe base64 bytes): "
            f"{KEY_HELP}."
        ) from None


class Installs:
    """The encrypted records and install states, for an adapter's installation store."""

    def __init__(self, store: InstallStore, clock: Clock, keys: str | None) -> None:
        self.store, self.clock = store, clock
        self._keys = keys

    @functools.cached_property
    def _ciphers(self) -> list[Fernet]:
        """The keys, parsed once (the first encrypts; any opens): every request reads one."""
        if not self._keys:
            raise SetupError(f"SLACK_INSTALL_ENCRYPTION_KEY is not set: {KEY_HELP}.")
        return install_keys(self._keys)
    async def save(self, key: InstallKey, data: str) -> None:
        sealed = self._ciphers[0].encrypt(data.encode()).decode()
        await self.store.save_install(key, sealed, self.clock())

    async def find(self, key: InstallKey) -> str | None:
        """The record in clear; None when there is none, or when no key opens it (logged:
        the workspace then has to install again)."""
        sealed = await self.store.find_install(key)
        if sealed is None:
            return None
        keys = self._ciphers
        try:
            data = MultiFernet(keys).decrypt(sealed.encode()).decode()
        except InvalidToken:
            log.error(
                "the installation record %s of workspace %s opens with none of the keys in "
                "SLACK_INSTALL_ENCRYPTION_KEY: install the app there again",
                key.kind,
                key.team_id or key.enterprise_id,
            )
            return None
        if len(keys) > 1 and not _opens(keys[0], sealed):
            await self.save(key, data)  # under the first key from now on
        return data

    async def delete(
        self, kind: str | None, enterprise_id: str, team_id: str, user_id: str | None = None
    ) -> int:
        return await self.store.delete_installs(kind, enterprise_id, team_id, user_id)

    async def new_state(self) -> str:
        state = secrets.token_urlsafe(32)
        expires = self.clock() + timedelta(minutes=STATE_MINUTES)
        await self.store.add_pass(digest(state), "", Purpose.INSTALL_STATE, expires)
        return state

    async def use_state(self, state: str) -> bool:
        """True once for a state this app issued, within its minutes; False otherwise."""
        if not state:
            return False
        used = await self.store.use_pass(digest(state), Purpose.INSTALL_STATE, self.clock())
        return used is not None


def _opens(key: Fernet, sealed: str) -> bool:
    try:
        key.decrypt(sealed.encode())
    except InvalidToken:
        return False
    return True
