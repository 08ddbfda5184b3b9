"""Whose turn a log line belongs to: every line logged while a reply is worked on carries the
user and the event it answers, whichever module logs it.

The reply's own task (`Reply._run`) tags the turn as it starts, in that task's context: the
pipeline's lines carry it, and the adapter's task, which may go on to other turns, never does
(a ContextVar: concurrent turns in other tasks keep their own). `TurnFilter`, on the log
handler, copies the tag onto records.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class TurnTag:
    user_id: str  # the platform identity, "slack:U123": known at arrival, what support sees
    event_id: str  # the platform's event id, or the turn's own id when it sent none


_TURN: ContextVar[TurnTag | None] = ContextVar("momentum_turn", default=None)


def tag_turn(user_id: str, event_id: str) -> None:
    _TURN.set(TurnTag(user_id, event_id))


class TurnFilter(logging.Filter):
    """Adds `user_id` and `event_id` to every record (None outside a turn)."""

    def filter(self, record: logging.LogRecord) -> bool:
        tag = _TURN.get()
        record.user_id = tag.user_id if tag else None
        record.event_id = tag.event_id if tag else None
        return True
