"""What the model may propose, and the rules that turn a proposal into an action.

The model gets tools (TOOLS) to propose a goal, progress on a goal, a goal done, or a meeting
time. A tool call is only a proposal: `draft` checks it against the schema in code (unknown
tools and extra fields, such as another user's id or a phase, are refused), the pipeline
stores it for the asking user with an expiry, and the user's platform shows it with confirm
and decline. Nothing in a tool's input can name a user, a phase or an identity: the user is
always the one who asked (DESIGN.md rule 4), so a prompt that talks the model into acting
for someone else produces, at most, a proposal to the person who typed it.

`Proposals.decide` carries a confirmed proposal out through the same Session methods as the
commands, so every rule and message applies (the goal limit, past times, overlaps). A
decision is a claim in the store (pending -> decided, once): a double click, a second
process or a click on a stale copy after a restart finds it decided and is told so.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import CoachError
from core.models import (
    GoalStatus,
    Identity,
    Proposal,
    ProposalKind,
    ProposalStatus,
)
from core.progress import logged_text
from core.text import clean_text

if TYPE_CHECKING:  # core/session.py imports the pipeline, which imports this
    from core.session import Session

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_TEXT = 300  # a proposal's text is a goal or a progress line: short


class Identified(Protocol):
    @property
    def id(self) -> str: ...


class _Input(BaseModel):
    # Only the fields below: anything else (a user id, a phase) refuses the whole call.
    model_config = ConfigDict(extra="forbid", frozen=True)


class GoalInput(_Input):
    text: str = Field(min_length=1, max_length=MAX_TEXT)


class ProgressInput(_Input):
    goal_number: int = Field(ge=1, le=50)
    text: str = Field(min_length=1, max_length=MAX_TEXT)


class GoalDoneInput(_Input):
    goal_number: int = Field(ge=1, le=50)


class MeetingInput(_Input):
    when: str = Field(min_length=1, max_length=200)


class CommitmentDoneInput(_Input):
    commitment_number: int = Field(ge=1, le=500)


INPUTS: dict[ProposalKind, type[_Input]] = {
    ProposalKind.ADD_GOAL: GoalInput,
    ProposalKind.LOG_PROGRESS: ProgressInput,
    ProposalKind.COMPLETE_GOAL: GoalDoneInput,
    ProposalKind.SCHEDULE_MEETING: MeetingInput,
    ProposalKind.COMMITMENT_DONE: CommitmentDoneInput,
}

DESCRIPTIONS: dict[ProposalKind, str] = {
    ProposalKind.ADD_GOAL: (
        "Propose adding a goal the user has said they want to work on. The user sees it with "
        "Confirm and Decline buttons; nothing happens unless they confirm. Use a short goal "
        "in the user's words."
    ),
    ProposalKind.LOG_PROGRESS: (
        "Propose logging progress the user reported on one of their active goals (its "
        "number as listed in the context). The user confirms before it is logged."
    ),
    ProposalKind.COMPLETE_GOAL: (
        "Propose marking one of the user's active goals (its number as listed in the "
        "context) done, when they say they achieved it. The user confirms first."
    ),
    ProposalKind.SCHEDULE_MEETING: (
        "Propose booking a coaching meeting at a time the user agreed to. `when` uses the "
        "/schedule grammar, in the user's local time, e.g. 'tomorrow 9am for 30m', "
        "'friday 17:00 for 45m weekly'. The user confirms first."
    ),
    ProposalKind.COMMITMENT_DONE: (
        "Propose marking one of the user's open commitments (its number as listed in the "
        "context) done, when they tell you they did it. The user confirms first."
    ),
}


def _schema(kind: ProposalKind) -> dict[str, Any]:
    schema = INPUTS[kind].model_json_schema()
    schema.pop("title", None)
    for field in schema.get("properties", {}).values():
        field.pop("title", None)
    return schema


# Sorted and fixed, so the tool definitions are part of the prompt's stable, cached prefix.
TOOLS: list[dict[str, Any]] = [
    {"name": kind.value, "description": DESCRIPTIONS[kind], "input_schema": _schema(kind)}
    for kind in ProposalKind
]
TOOL_RESULT = (
    "Shown to the user with Confirm and Decline buttons. It is NOT done yet: it happens only "
    "if they confirm. Do not say it is done; finish your reply briefly."
)
REFUSED_RESULT = "Refused: that is not something you can propose. Carry on without it."


@dataclass(frozen=True)
class Draft:
    """A tool call that passed the schema: what to propose, not yet stored."""

    kind: ProposalKind
    args: dict[str, Any]


def draft(name: str, raw_input: Any) -> Draft | None:
    """The model's tool call as a proposal, or None when code refuses it (logged)."""
    try:
        kind = ProposalKind(name)
    except ValueError:
        log.warning("model called an unknown tool %r: refused", name)
        return None
    if isinstance(raw_input, str):
        try:
            raw_input = json.loads(raw_input)
        except ValueError:
            log.warning("tool %s: input is not JSON: refused", name)
            return None
    try:
        checked = INPUTS[kind].model_validate(raw_input)
    except ValidationError as error:
        log.warning("tool %s: input refused: %s", name, error.errors(include_url=False))
        return None
    args = checked.model_dump()
    for key, value in args.items():
        if isinstance(value, str):
            args[key] = " ".join(clean_text(value).split())
    return Draft(kind, args)


class ProposalStore(Protocol):
    async def add_proposal(self, proposal: Proposal) -> None: ...
    async def get_proposal(self, proposal_id: str) -> Proposal | None: ...
    async def decide_proposal(
        self, proposal_id: str, status: ProposalStatus, now: datetime
    ) -> Proposal | None:
        """Pending and not expired at `now` -> `status`, once; the proposal as it was
        claimed, or None if it was not pending (decided, expired, unknown)."""

    async def finish_proposal(self, proposal_id: str, status: ProposalStatus, result: str) -> None:
        """Record how a decided proposal ended (done, or failed with the reason)."""


@dataclass(frozen=True)
class Decision:
    """What happened when the user answered a proposal: `text` says it to them."""

    proposal: Proposal | None
    status: ProposalStatus | None  # None: no such proposal
    text: str
    acted: bool  # this answer carried the proposal out
    # Someone other than its user answered (a shared channel): tell them alone, change nothing.
    by_someone_else: bool = False


NOT_YOURS = "That proposal was made to someone else, so only they can answer it."
UNKNOWN = "I can't find that proposal any more."
Sessions = Callable[[Identity], Awaitable["Session"]]


class Proposals:
    """Stores what the model proposed, and carries out what the user confirms."""

    def __init__(self, store: ProposalStore, sessions: Sessions, minutes: int) -> None:
        self.store, self.sessions = store, sessions
        self.lifetime = timedelta(minutes=minutes)

    async def propose(self, identity: Identity, draft: Draft) -> Proposal:
        """Store `draft` for the user who asked; its summary is phrased here, by code."""
        session = await self.sessions(identity)
        args, summary = await self._resolved(session, draft)
        now = session.now()
        proposal = Proposal(
            user_id=session.user.id,
            kind=draft.kind,
            args=args,
            summary=summary,
            created_at=now,
            expires_at=now + self.lifetime,
        )
        await self.store.add_proposal(proposal)
        return proposal

    async def decide(self, identity: Identity, proposal_id: str, confirm: bool) -> Decision:
        session = await self.sessions(identity)
        # Ids are 32 hex digits: anything much longer is no id, and never reaches the store.
        found = await self.store.get_proposal(proposal_id) if len(proposal_id) <= 64 else None
        if found is None:
            return Decision(None, None, UNKNOWN, acted=False)
        if found.user_id != session.user.id:
            return Decision(found, found.status, NOT_YOURS, acted=False, by_someone_else=True)
        status = ProposalStatus.CONFIRMED if confirm else ProposalStatus.DECLINED
        claimed = await self.store.decide_proposal(proposal_id, status, session.now())
        if claimed is None:
            return self._already(await self.store.get_proposal(proposal_id) or found, session)
        if not confirm:
            return Decision(claimed, status, f"Okay, left as it is: {claimed.summary}", False)
        try:
            done = await self._carry_out(session, claimed)
        except CoachError as error:
            await self.store.finish_proposal(claimed.id, ProposalStatus.FAILED, error.user_text)
            return Decision(claimed, ProposalStatus.FAILED, error.user_text, acted=False)
        await self.store.finish_proposal(claimed.id, ProposalStatus.DONE, done)
        return Decision(claimed, ProposalStatus.DONE, done, acted=True)

    def _already(self, proposal: Proposal, session: Session) -> Decision:
        if proposal.status is ProposalStatus.PENDING:  # pending but past its time
            text = "That proposal expired, so nothing changed. Ask me again if you still want it."
            return Decision(proposal, ProposalStatus.EXPIRED, text, acted=False)
        said = {
            ProposalStatus.DECLINED: "You declined that one already, so nothing changed.",
            ProposalStatus.FAILED: f"That one could not be done: {proposal.result}",
        }.get(proposal.status, f"Already done: {proposal.result or proposal.summary}")
        return Decision(proposal, proposal.status, said, acted=False)

    async def _resolved(self, session: Session, draft: Draft) -> tuple[dict[str, Any], str]:
        """The args as they will be carried out, and the sentence the user confirms. A goal
        is pinned by its id: numbers shift when goals close, the goal meant must not."""
        args = dict(draft.args)
        match draft.kind:
            case ProposalKind.ADD_GOAL:
                return args, f"Add the goal “{args['text']}”"
            case ProposalKind.SCHEDULE_MEETING:
                return args, f"Book a coaching meeting: {args['when']}"
            case ProposalKind.COMMITMENT_DONE:
                commitment = _numbered(await session.commitments(), args.pop("commitment_number"),
                                       "commitment")  # fmt: skip
                args |= {"commitment_id": commitment.id, "commitment_text": commitment.text}
                return args, f"Mark your commitment to {commitment.text} done"
        goals = await session.goals()
        goal = _numbered(goals, args.pop("goal_number"), "goal")
        args |= {"goal_id": goal.id, "goal_text": goal.text}
        if draft.kind is ProposalKind.LOG_PROGRESS:
            return args, f"Log progress on “{goal.text}”: {args['text']}"
        return args, f"Mark the goal “{goal.text}” done"

    async def _carry_out(self, session: Session, proposal: Proposal) -> str:
        """Through the commands' own Session methods, so their rules and errors apply."""
        args = proposal.args
        match proposal.kind:
            case ProposalKind.ADD_GOAL:
                goal = await session.add_goal(args["text"])
                return f"Goal added: {goal.text}."
            case ProposalKind.SCHEDULE_MEETING:
                booked = await session.schedule(args["when"])
                first = booked[0]
                weekly = f" (weekly, {len(booked)} meetings)" if first.series_id else ""
                return f"Booked: {session.local(first.start)}{weekly}."
            case ProposalKind.COMMITMENT_DONE:
                ref = _number_of(await session.commitments(), args["commitment_id"], "commitment")
                done = await session.close_commitment(ref)
                return f"Done: {done.text}. That's a promise kept!"
        ref = _number_of(await session.goals(), args["goal_id"], "goal")
        if proposal.kind is ProposalKind.COMPLETE_GOAL:
            goal = await session.close_goal(ref, GoalStatus.DONE)
            return f"Goal done: {goal.text}. Well earned!"
        return logged_text(await session.log_progress(ref, args["text"]))


def _numbered(items: Sequence[T], number: int, noun: str) -> T:
    """The item the model numbered (as the context lists them); refused if there is none."""
    if number > len(items):
        raise CoachError(f"There is no {noun} {number}.")  # the model is told, not the user
    return items[number - 1]


def _number_of(items: Sequence[Identified], item_id: str, noun: str) -> str:
    """The number the item pinned by its id has now, as the command that acts on it reads it."""
    for number, item in enumerate(items, start=1):
        if item.id == item_id:
            return str(number)
    raise CoachError(f"That {noun} isn't open any more, so nothing changed.")
