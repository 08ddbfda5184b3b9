"""The loop every platform runs to finish the replies a crash cut off (core/in_flight.py):
once at start, then every half lease, so a reply left by another process that died is
finished soon after its lease runs out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from core.coach import Coach
from core.models import InFlight, Platform

log = logging.getLogger(__name__)

# Finishes one cut-off reply on the platform; returns the text the user had, if known.
Repair = Callable[[InFlight], Awaitable[str | None]]


async def repair_cut_replies(coach: Coach, platform: Platform, repair: Repair) -> int:
    """One round: every interrupted reply of the platform's; how many were finished."""
    try:
        records = await coach.interrupted_replies(platform)
    except Exception as error:  # the store is down: the next round tries again
        log.warning("looking for cut-off %s replies failed: %r", platform.value, error)
        return 0
    finished = 0
    for record in records:
        try:
            shown = await repair(record)
            await coach.repaired(record, shown)
        except Exception:  # its repair lease runs out, and a later round tries again
            log.warning("finishing cut-off reply %s failed", record.id, exc_info=True)
            continue
        log.info("finished %s reply %s, cut off by a restart", platform.value, record.id)
        finished += 1
    return finished


async def keep_repairing(coach: Coach, platform: Platform, repair: Repair) -> None:
    """Until cancelled."""
    while True:
        await repair_cut_replies(coach, platform, repair)
        await asyncio.sleep(coach.repair_every)
