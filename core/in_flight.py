"""Replies in flight, kept in the store so that one cut off by a crash is finished later.

While a reply streams, its record says where the platform shows it (`InFlight.place`: the
adapter's own references, e.g. a Slack channel and message ts, or a Discord message id) and
what the model had said at the last renewal. It goes when the turn ends, however it ends:
only a process that died mid-reply (`kill -9`, a lost machine) leaves one behind.

A record is *interrupted* once its process is known to be gone (it ran on this host and runs
no more) or its lease ran out without a renewal (any host). The platform's adapter takes each
interrupted record of its platform (an atomic take-over, so two processes never repair one
reply), finishes the message on the platform (a note that a restart cut it off, the streaming
indicator taken off, a Slack stream stopped) and hands it back to the Coach, which stores
the reply as incomplete and gives back the message's dedupe claim, so a redelivery of the
message is answered rather than taken for a duplicate.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Protocol

from core.models import InFlight, Platform
from core.turn_order import Clock, owner_gone, this_process

log = logging.getLogger(__name__)

# A record no process could repair for this long (the platform kept refusing) is given up.
REPAIR_PATIENCE = timedelta(hours=24)
REPAIR_LEASE = timedelta(minutes=2)  # a repairing process holds the record this long


class InFlightStore(Protocol):
    async def add_in_flight(self, reply: InFlight) -> None: ...

    async def update_in_flight(
        self,
        reply_id: str,
        *,
        place: Mapping[str, str] | None = None,
        text: str | None = None,
        expires_at: datetime | None = None,
    ) -> None: ...

    async def remove_in_flight(self, reply_id: str) -> None: ...

    async def in_flight(self, platform: Platform) -> list[InFlight]:
        """Every record of the platform's, oldest first."""
        ...

    async def take_in_flight(self, seen: InFlight, owner: str, until: datetime) -> InFlight | None:
        """Make `owner` the record's owner until `until`, if it is still as `seen` (same owner
        and expiry: nobody renewed or took it meanwhile); None otherwise."""
        ...


def interrupted(record: InFlight, now: datetime) -> bool:
    """Its process is gone: known dead on this host, or silent past the record's expiry."""
    return record.expires_at <= now or owner_gone(record.owner)


class RepliesInFlight:
    """The Coach's side of the records: begin, point at the platform's message, renew, end."""

    def __init__(self, store: InFlightStore, clock: Clock, lease: timedelta) -> None:
        self.store, self.clock, self.lease = store, clock, lease

    async def begin(
        self,
        reply_id: str,
        user_id: str,
        platform: Platform,
        place: Mapping[str, str],
        event_key: str | None,
    ) -> None:
        now = self.clock()
        await self.store.add_in_flight(
            InFlight(
                id=reply_id,
                user_id=user_id,
                platform=platform,
                owner=str(this_process()),
                event_key=event_key,
                place=dict(place),
                started_at=now,
                expires_at=now + self.lease,
            )
        )

    async def shown_at(self, reply_id: str, place: Mapping[str, str]) -> None:
        await self.store.update_in_flight(reply_id, place=place)

    async def renew(self, reply_id: str, text: str) -> None:
        await self.store.update_in_flight(
            reply_id, text=text, expires_at=self.clock() + self.lease
        )

    async def end(self, reply_id: str) -> None:
        await self.store.remove_in_flight(reply_id)

    async def take_interrupted(self, platform: Platform) -> list[InFlight]:
        """The platform's interrupted replies, each now held by this process for repair;
        records past REPAIR_PATIENCE are dropped with a log line instead."""
        now = self.clock()
        taken = []
        for record in await self.store.in_flight(platform):
            if not interrupted(record, now):
                continue
            if now - record.started_at > REPAIR_PATIENCE:
                log.error("reply %s of user %s could not be repaired: given up", record.id,
                          record.user_id)
                await self.store.remove_in_flight(record.id)
                continue
            mine = await self.store.take_in_flight(record, str(this_process()), now + REPAIR_LEASE)
            if mine is not None:
                taken.append(mine)
        return taken
