"""The data Momentum keeps and passes around. All datetimes are timezone-aware UTC."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


def new_id() -> str:
    return uuid.uuid4().hex


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


def _require_aware(value: datetime) -> datetime:
    """Aware UTC at millisecond precision, which is what BSON keeps: both stores round-trip it."""
    if value.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _aware_if_set(value: datetime | None) -> datetime | None:
    return None if value is None else _require_aware(value)


class Platform(StrEnum):
    SLACK = "slack"
    DISCORD = "discord"
    CONSOLE = "console"
    WEB = "web"


class Phase(StrEnum):
    GOAL_SETTING = "goal_setting"
    TRACKING = "tracking"


class Identity(_Model):
    """Who is speaking, as the platform knows them. (platform, external_id) is unique."""

    platform: Platform
    external_id: str
    workspace_id: str | None = None
    display_name: str | None = None


class User(_Model):
    id: str = Field(default_factory=new_id)
    identity: Identity
    phase: Phase = Phase.GOAL_SETTING
    timezone: str | None = None
    created_at: datetime
    welcomed: bool = False

    _aware = field_validator("created_at")(_require_aware)


class GoalStatus(StrEnum):
    ACTIVE = "active"
    DONE = "done"
    DROPPED = "dropped"


class Goal(_Model):
    id: str = Field(default_factory=new_id)
    user_id: str
    text: str
    status: GoalStatus = GoalStatus.ACTIVE
    created_at: datetime
    closed_at: datetime | None = None

    _aware = field_validator("created_at", "closed_at")(_aware_if_set)


class ProposalKind(StrEnum):
    """What the model may propose (core/proposals.py); the values are its tools' names."""

    ADD_GOAL = "propose_goal"
    LOG_PROGRESS = "propose_progress"
    COMPLETE_GOAL = "propose_goal_done"
    SCHEDULE_MEETING = "propose_meeting"
    COMMITMENT_DONE = "propose_commitment_done"


class ProposalStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"  # claimed by a confirm, being carried out
    DECLINED = "declined"
    DONE = "done"
    FAILED = "failed"  # confirmed, but a rule refused it (result says which)
    EXPIRED = "expired"  # never stored: a pending one past its expires_at reads as this


class Proposal(_Model):
    """Something the model proposed to one user, shown with confirm and decline."""

    id: str = Field(default_factory=new_id)
    user_id: str
    kind: ProposalKind
    args: dict[str, Any]  # checked by core/proposals.py, goal ids resolved
    summary: str  # what the user confirms, phrased by code
    created_at: datetime
    expires_at: datetime
    status: ProposalStatus = ProposalStatus.PENDING
    decided_at: datetime | None = None
    result: str | None = None  # what carrying it out said

    _aware = field_validator("created_at", "expires_at", "decided_at")(_aware_if_set)


class CommitmentStatus(StrEnum):
    OPEN = "open"
    DONE = "done"


class Commitment(_Model):
    """Something the user said they would do, taken from a window's conversation when it
    closed (core/notes.py), kept until they report it done."""

    id: str = Field(default_factory=new_id)
    user_id: str
    text: str  # a phrase that follows "you said you would", e.g. "run 5 km on Wednesday"
    due: str | None = None  # when, in the user's words ("Wednesday 7am"), if they said
    created_at: datetime
    meeting_id: str | None = None  # the meeting whose window it was made in
    status: CommitmentStatus = CommitmentStatus.OPEN
    done_at: datetime | None = None

    _aware = field_validator("created_at", "done_at")(_aware_if_set)


class ProgressEntry(_Model):
    """One dated note of what the user did towards a goal (`/log 1 ran 3 km`)."""

    id: str = Field(default_factory=new_id)
    user_id: str
    goal_id: str
    text: str
    created_at: datetime

    _aware = field_validator("created_at")(_require_aware)


# A meeting's once-only flags set by a claim (`recap_sent` is no plain flag: the store's
# `finish_recap` sets it together with the recap's text).
MeetingFlag = Literal["reminder_sent"]


class MeetingStatus(StrEnum):
    """A meeting's window moves scheduled -> open -> closed; cancelled ends it early."""

    SCHEDULED = "scheduled"
    OPEN = "open"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class Meeting(_Model):
    id: str = Field(default_factory=new_id)
    user_id: str
    start: datetime
    duration_minutes: int
    series_id: str | None = None
    status: MeetingStatus = MeetingStatus.SCHEDULED
    # When the window closes, fixed at scheduling time: lets the store find live meetings by index.
    closes_at: datetime
    reminder_sent: bool = False
    recap_sent: bool = False
    recap: str | None = None
    # No process starts the recap before this: an attempt's lease, a failed one's back-off, or
    # (nothing to recap) the end of the catch-up. See scheduler.windows.
    recap_claimed_until: datetime | None = None

    _aware = field_validator("start", "closes_at")(_require_aware)
    _aware_or_none = field_validator("recap_claimed_until")(_aware_if_set)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(minutes=self.duration_minutes)


class NoticeKind(StrEnum):
    """What a scheduler notice tells a user (its text is rendered from `NoticeFacts`)."""

    OPEN = "open"  # your window is open, until ...
    CONTINUES = "continues"  # the next meeting keeps the open window open
    STARTING = "starting"  # goal setting: your meeting is at ...
    CLOSING_SOON = "closing_soon"
    CLOSED = "closed"
    MISSED = "missed"  # the window opened and closed while no scheduler ran
    RECAP = "recap"


class NoticeState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DROPPED = "dropped"  # no longer true, given up, or no way to reach the user


class NoticeFacts(_Model):
    """What a notice's text is made of; rendered when it is sent, in the user's zone then."""

    start: datetime | None = None  # the meeting's start
    until: datetime | None = None  # when the window announced closes
    opened: datetime | None = None
    closed: datetime | None = None
    next_opens: datetime | None = None
    recap: str | None = None
    # The opening: the user's open commitments, "Last time you said you would ..."
    commitments: tuple[str, ...] | None = None

    _aware = field_validator("start", "until", "opened", "closed", "next_opens")(_aware_if_set)


class Notice(_Model):
    """One message the scheduler owes a user, kept until delivered or no longer worth sending
    (the outbox; see scheduler.outbox). `id` is the notice key, `<meeting id>:<step>`, so a
    meeting's step has one notice however many processes create it."""

    id: str
    user_id: str
    meeting_id: str
    kind: NoticeKind
    facts: NoticeFacts
    created_at: datetime
    # After this the notice is not sent any more (the window it announces closed, ...).
    expires_at: datetime
    state: NoticeState = NoticeState.PENDING
    # Tries claimed so far; a try's holder names it by this number (a fencing token).
    attempts: int = 0
    # No process tries before this: a try's lease, or a failed try's back-off.
    next_try_at: datetime
    last_error: str | None = None
    settled_at: datetime | None = None

    _aware = field_validator("created_at", "expires_at", "next_try_at")(_require_aware)
    _aware_or_none = field_validator("settled_at")(_aware_if_set)


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


class Usage(_Model):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class MessageMeta(_Model):
    """What we know about how a message was produced: for cost, latency and support."""

    platform: Platform
    model: str | None = None
    usage: Usage | None = None
    latency_ms: int | None = None
    first_token_ms: int | None = None
    stop_reason: str | None = None
    meeting_id: str | None = None
    error: str | None = None
    kind: Literal["chat", "safety", "recap"] = "chat"
    prompt_tokens_estimate: int | None = None  # the prompt's size by core/context.py's count


class Message(_Model):
    id: str = Field(default_factory=new_id)
    user_id: str
    role: Role
    text: str
    created_at: datetime
    # False when the model stopped mid-reply (outage, timeout): the text is what was said.
    complete: bool = True
    # False when the platform never showed the reply (it refused every write): the model is
    # not told it said what the user never read.
    delivered: bool = True
    meta: MessageMeta

    _aware = field_validator("created_at")(_require_aware)


class InFlight(_Model):
    """A reply being streamed to a platform, kept so that one cut off by a crash is finished
    at the next start (see core/in_flight.py)."""

    id: str  # the turn's ticket
    user_id: str
    platform: Platform
    owner: str  # the process streaming it (core.turn_order.Owner)
    event_key: str | None = None  # the message's dedupe claim, given back on repair
    place: dict[str, str]  # where the platform shows it: the adapter's own references
    text: str = ""  # what the model had said at the last renewal
    started_at: datetime
    expires_at: datetime  # renewed while it streams; past it, the streaming process is gone

    _aware = field_validator("started_at", "expires_at")(_require_aware)


class AccessReason(StrEnum):
    GOAL_SETTING = "goal_setting"
    IN_WINDOW = "in_window"
    OUTSIDE_WINDOW = "outside_window"
    NO_MEETING = "no_meeting"


class Access(_Model):
    """Whether a user may talk to the coach now, and why."""

    allowed: bool
    reason: AccessReason
    phase: Phase
    meeting: Meeting | None = None  # the meeting whose window is open now
    window_closes_at: datetime | None = None
    next_opens_at: datetime | None = None
    next_meeting: Meeting | None = None
