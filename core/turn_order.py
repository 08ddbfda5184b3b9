"""A user's turns, one at a time and in the order their messages arrived, across processes.

Two layers keep the order:

- `TurnLine`, in this process: a first-come line per speaker, joined synchronously the moment
  an event arrives (`Coach.reply` is a plain call that returns the reply to iterate later),
  so the awaits an adapter makes before it reads the reply (Slack's status and users.info,
  Discord's typing) cannot reorder a burst. Only the first of a speaker's line goes on.
- `TurnLease`, in the store: the first of each process's line takes the user's lease, an
  expiring claim renewed while the reply streams and released at its end, so two processes
  behind a load balancer never answer one user at once. A ticket that cannot take it waits
  in the store, and a free lease goes only to a ticket with no earlier one waiting (by
  `Ticket.order`: when the message was sent, as the platform stamps it), so the order holds
  between processes too. A holder that dies stops renewing: its lease runs out after
  `lease`, and so does a dead process's waiting ticket, and the user is served again.

The store's side is the `TurnStore` port below; both backends implement it with
single-record conditional updates (tests/test_store_contract.py, "Turn leases").
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

POLL_FIRST_SECONDS = 0.02  # a lease held by another process is asked for again after this,
POLL_MAX_SECONDS = 0.25  # doubling up to this: a handover between processes costs at most it
_ORDER_DIGITS = 18  # microseconds since year 1 fit for any datetime (year 9999: 3.2e17)
_ORDER_EPOCH = datetime(1, 1, 1, tzinfo=UTC)


class TurnStore(Protocol):
    """What turn order needs of the store: one lease record per user."""

    async def claim_turn(
        self, user_id: str, ticket: str, order: str, now: datetime, until: datetime
    ) -> bool:
        """Hold the user's lease for `ticket` until `until`, if it is free (or ran out by
        `now`, or is `ticket`'s already) and no other live ticket earlier than `order` waits
        for it; the ticket stops waiting once it holds it."""
        ...

    async def wait_turn(
        self, user_id: str, ticket: str, order: str, now: datetime, until: datetime
    ) -> None:
        """Record (or keep alive) `ticket` as waiting for the lease until `until`."""
        ...

    async def renew_turn(self, user_id: str, ticket: str, until: datetime) -> bool:
        """Extend `ticket`'s lease; False when it no longer holds it."""
        ...

    async def release_turn(self, user_id: str, ticket: str) -> None:
        """Give the lease back if `ticket` holds it, and stop its waiting (no-op else)."""
        ...


@dataclass(frozen=True)
class Owner:
    """A process streaming replies: host, pid and a nonce of its own (pids are reused)."""

    host: str
    pid: int
    nonce: str

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.nonce}"

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        host, _, rest = text.rpartition(":")
        host, _, pid = host.rpartition(":")
        return cls(host, int(pid), rest) if pid.isdecimal() and host else None


_owner: Owner | None = None


def this_process() -> Owner:
    """This process's Owner (a fresh one after a fork)."""
    global _owner
    if _owner is None or _owner.pid != os.getpid():
        _owner = Owner(socket.gethostname(), os.getpid(), secrets.token_hex(4))
    return _owner


def owner_gone(owner: str, me: Owner | None = None) -> bool:
    """True when `owner` ran on this host and runs no more: a crash whose leftovers can be
    repaired now rather than when their lease runs out. False when unsure (another host)."""
    me = me or this_process()
    them = Owner.parse(owner)
    if them is None or them.host != me.host or them == me:
        return False
    if them.pid == me.pid:  # our pid, not our nonce: an earlier life of this process's slot
        return True
    try:
        os.kill(them.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


@dataclass(frozen=True)
class Ticket:
    """A message's place in its speaker's line."""

    id: str
    speaker: str  # whose line: platform and external id (the user is not looked up yet)
    order: str  # sortable: when the message was sent, then arrival in this process


def order_key(sent_at: datetime, arrival: int) -> str:
    """A string that sorts as (sent_at, arrival), so stores compare tickets as text."""
    micros = (sent_at - _ORDER_EPOCH) // timedelta(microseconds=1)
    return f"{micros:0{_ORDER_DIGITS}d}.{arrival:012d}"


@dataclass
class _Place:
    ticket: Ticket
    reached: asyncio.Event = field(default_factory=asyncio.Event)


class TurnLine:
    """This process's lines, one per speaker; joining and leaving never wait."""

    def __init__(self) -> None:
        self._lines: dict[str, list[_Place]] = {}
        self._arrivals = itertools.count(1)

    def join(self, speaker: str, sent_at: datetime) -> Ticket:
        ticket = Ticket(secrets.token_hex(12), speaker, order_key(sent_at, next(self._arrivals)))
        line = self._lines.setdefault(speaker, [])
        line.append(_Place(ticket))
        if len(line) == 1:
            line[0].reached.set()
        return ticket

    async def reached(self, ticket: Ticket) -> None:
        """Until every ticket before this one in its line has left."""
        place = next((p for p in self._lines.get(ticket.speaker, []) if p.ticket == ticket), None)
        if place is None:
            raise RuntimeError(f"ticket {ticket.id} is not in line (it left already)")
        await place.reached.wait()

    def leave(self, ticket: Ticket) -> None:
        """Out of the line, wherever it stands (done, failed early, or given up)."""
        line = self._lines.get(ticket.speaker)
        if not line:
            return
        for i, place in enumerate(line):
            if place.ticket == ticket:
                del line[i]
                break
        else:
            return
        if line:
            line[0].reached.set()
        else:
            del self._lines[ticket.speaker]

    def waiting(self, speaker: str) -> int:
        return len(self._lines.get(speaker, []))


class TurnLease:
    """The store's lease on a user's turn, taken in ticket order."""

    def __init__(self, store: TurnStore, clock: Clock, lease: timedelta) -> None:
        self.store, self.clock, self.lease = store, clock, lease
        # Leases a failed turn could not give back (the store was down): given back before
        # this process asks for another, so they never hold a user up until they run out.
        self._unreleased: set[tuple[str, str]] = set()

    async def take(self, user_id: str, ticket: Ticket) -> None:
        await self._release_leftovers()
        delay = POLL_FIRST_SECONDS
        try:
            while True:
                now = self.clock()
                until = now + self.lease
                if await self.store.claim_turn(user_id, ticket.id, ticket.order, now, until):
                    return
                await self.store.wait_turn(user_id, ticket.id, ticket.order, now, until)
                await asyncio.sleep(delay)
                delay = min(delay * 2, POLL_MAX_SECONDS)
        except BaseException:
            await self.release(user_id, ticket)  # it waits no more
            raise

    async def renew(self, user_id: str, ticket: Ticket) -> bool:
        return await self.store.renew_turn(user_id, ticket.id, self.clock() + self.lease)

    async def release(self, user_id: str, ticket: Ticket) -> None:
        try:
            await self.store.release_turn(user_id, ticket.id)
        except Exception as error:  # the store is down: it runs out, or goes before the next
            log.warning("turn lease of user %s not given back yet: %r", user_id, error)
            self._unreleased.add((user_id, ticket.id))

    async def _release_leftovers(self) -> None:
        for user_id, ticket_id in list(self._unreleased):
            await self.store.release_turn(user_id, ticket_id)
            self._unreleased.discard((user_id, ticket_id))


class TurnOrder:
    """Both layers together: `async with order.turn(user_id, ticket):` runs in order."""

    def __init__(self, store: TurnStore, clock: Clock, lease: timedelta) -> None:
        self.line = TurnLine()
        self.lease = TurnLease(store, clock, lease)

    @asynccontextmanager
    async def turn(self, user_id: str, ticket: Ticket) -> AsyncIterator[None]:
        """Wait for the ticket's turn here and in the store; hold it for the block."""
        try:
            await self.line.reached(ticket)
            await self.lease.take(user_id, ticket)
            try:
                yield
            finally:
                await self.lease.release(user_id, ticket)
        finally:
            self.line.leave(ticket)
