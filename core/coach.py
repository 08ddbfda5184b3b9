"""The Coach facade: the one door that adapters and the scheduler use.

- `reply(identity, text, ...)`: answer a message, streamed as events (core/turn.py).
- `session(identity)`: one user's requests, the user looked up once (core/session.py):
  access, history, goals and their progress, commitments, the coach's notes, meetings,
  phase, timezone, their data.
- `windows`: the scheduler's hooks, meetings and their window steps (core/window_hooks.py).
- one person across platforms: `link_code`, `link`, `unlink`, `identities` (core/linking.py).
- `installs`: the app's encrypted installations per workspace, for "Add to Slack"
  (core/installs.py).
- for platforms: dedupe claims of their own actions, replies a crash cut off, the time.
- for the operator (`momentum admin`): every user, a phase set by hand.

Nothing outside core/ reaches past it to its store, model or persona.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from core import zones
from core.access import Standing, WindowPolicy
from core.caching import prefix_tokens, warn_if_uncached
from core.config import Settings
from core.context import Prompt
from core.installs import Installs, InstallStore
from core.keys import Keys
from core.linking import Linked, Linking, LinkStore, Unlinked
from core.llm import LLM, UnconfiguredLLM
from core.models import (
    Commitment,
    Goal,
    GoalStatus,
    Identity,
    InFlight,
    Meeting,
    Phase,
    Platform,
    User,
)
from core.notes import MemoryBounds
from core.persona import Persona
from core.progress import GoalProgress, ProgressLogged
from core.proposals import TOOLS, Decision, Proposals, ProposalStore
from core.reply import EventClaim, Prepare, Reply
from core.session import (
    Cancelled,
    Desk,
    HistoryPage,
    MeetingsChanged,
    MeetingsObserver,
    Session,
)
from core.turn import Replies
from core.turn_order import Clock
from core.window_hooks import WindowHooks, WindowStore

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class CoachStore(LinkStore, WindowStore, ProposalStore, InstallStore, Protocol):
    """What the Coach needs of the store: its sessions', the pipeline's, the windows', the
    web keys' and linking's needs, the platforms' installations, and the operator's list of
    users."""

    async def list_users(self) -> list[User]: ...


class Coach:
    def __init__(
        self,
        store: CoachStore,
        llm: LLM | None,
        persona: Persona,
        settings: Settings,
        *,
        clock: Clock = utc_now,
        on_meetings_changed: MeetingsObserver | None = None,
    ) -> None:
        self.store = store
        self.llm: LLM = llm or UnconfiguredLLM()
        self.persona = persona
        self.settings = settings
        self.policy = WindowPolicy(settings.window_before, settings.window_after)
        self.clock = clock
        # What the model proposes, carried out when the user confirms (core/proposals.py).
        self.proposals = Proposals(store, self.session, settings.proposal_minutes)
        if llm is not None:  # the persona and tools are the prompt's cached prefix
            warn_if_uncached(
                prefix_tokens(TOOLS, [{"type": "text", "text": persona.prompt}]),
                settings.cache_min_tokens,
                settings.anthropic_model,
            )
        self.replies = Replies(
            store, self.llm, persona, settings, self.policy, clock, self.proposals
        )
        memory = MemoryBounds(settings.memory_max_notes, settings.memory_note_chars)
        self.windows = WindowHooks(
            store, self.llm, persona, self.policy, clock, self.zone, memory
        )
        # Called after meetings change; the scheduler appends itself when it runs in-process.
        self.meeting_observers: list[MeetingsObserver] = (
            [on_meetings_changed] if on_meetings_changed else []
        )
        self.desk = Desk(store, self.replies, settings, self.policy, clock, self.meetings_changed)
        self.keys = Keys(store, clock)  # the web's tokens and sign-in codes, link codes
        self.linking = Linking(store, self.desk, self.keys)
        # The app's installations in many workspaces ("Add to Slack"), encrypted.
        key = settings.slack_install_encryption_key
        self.installs = Installs(store, clock, key.get_secret_value() if key else None)

    @property
    def chat_configured(self) -> bool:
        return self.replies.chat_configured

    # Users and time

    def now(self) -> datetime:
        """The coach's time (injected in tests): platforms time their own expiries by it."""
        return self.clock()

    async def user(self, identity: Identity) -> User:
        user, _ = await self.store.get_or_create_user(identity, self.clock())
        return user

    async def session(self, identity: Identity) -> Session:
        return Session(self.desk, identity, await self.user(identity))

    async def user_by_id(self, user_id: str) -> User | None:
        """A user a web token names (None: deleted meanwhile)."""
        return await self.store.get_user(user_id)

    def zone(self, user: User) -> ZoneInfo:
        return self.replies.zone(user)

    def local(self, user: User, when: datetime) -> str:
        return zones.format_local(when, self.zone(user))

    # One person across platforms (core/linking.py has the rules)

    async def link_code(self, identity: Identity) -> str:
        """A one-time code (`LINK_MINUTES`) that joins whoever redeems it to this user."""
        return await self.linking.code(identity)

    async def link(self, identity: Identity, code: str) -> Linked:
        """Join `identity`'s user to the user who made `code`; CoachError if it cannot."""
        return await self.linking.link(identity, code)

    async def unlink(self, identity: Identity) -> Unlinked:
        """Take `identity` out of its user, into a fresh one; CoachError if it is the last."""
        return await self.linking.unlink(identity)

    async def identities(self, identity: Identity) -> list[Identity]:
        """Every identity of `identity`'s user, its own (primary) first."""
        return await self.linking.identities(identity)

    # The reply

    def reply(
        self,
        identity: Identity,
        text: str,
        *,
        event_id: str | None = None,
        sent_at: datetime | None = None,
        place: Mapping[str, str] | None = None,
        prepare: Prepare | None = None,
        via: Platform | None = None,
    ) -> Reply:
        """Answer one user message: call this when the message arrives (it takes the message's
        place in line at once), then iterate the Reply. Never raises: every failure ends in a
        `Failed` event.

        `sent_at` is when the platform says the message was sent (ordering between
        processes; default: now). `place` is where the reply will be shown (the adapter's own
        references), kept while it streams so that a crash can be repaired at the next start.
        `prepare` is awaited before the user is looked up (its failure is logged and ignored).
        `via` is where the message came from when that is not the identity's own platform
        (the web, for a user known from Slack): the reply is stored and repaired as its.
        """
        return self.replies.reply(
            identity,
            text,
            event_id=event_id,
            sent_at=sent_at,
            place=place,
            prepare=prepare,
            via=via,
        )

    async def decide(self, identity: Identity, proposal_id: str, *, confirm: bool) -> Decision:
        """The user's answer to a proposal (`Proposed`): confirmed, it is carried out once,
        by the commands' own rules; the Decision's text says what happened, for the user
        (already decided, expired, not theirs, or what a rule refused)."""
        return await self.proposals.decide(identity, proposal_id, confirm)

    async def build_context(self, user: User, text: str, meeting: Meeting | None) -> Prompt:
        return await self.replies.contexts.build(user, text, meeting)

    # For the platforms

    async def claim_once(self, key: str) -> bool:
        """True the first time `key` is claimed (within the dedupe TTL), False after: for a
        platform action that may arrive twice, at whichever process is running (a
        confirmation button clicked twice, or again after a restart)."""
        return await self.replies.claim(key, self.clock())

    async def release_claim(self, key: str) -> None:
        """Give back a `claim_once` key whose action did not happen after all."""
        await self.replies.release(EventClaim(key=key))

    async def interrupted_replies(self, platform: Platform) -> list[InFlight]:
        """The platform's replies whose process died mid-stream, now this process's to repair:
        finish each on the platform, then hand it back with `repaired`."""
        return await self.replies.interrupted(platform)

    async def repaired(self, reply: InFlight, shown: str | None) -> None:
        """The platform shows `reply` finished with a note now: keep it as an incomplete reply
        (`shown`, the text the platform had, else the last renewal's), free the user's turn,
        and give the message's dedupe claim back so that a redelivery of it is answered."""
        await self.replies.repaired(reply, shown)

    @property
    def repair_every(self) -> float:
        """Seconds between two looks for cut-off replies: half a turn lease."""
        return self.settings.turn_lease_seconds / 2

    # For the operator

    async def users(self) -> list[User]:
        return await self.store.list_users()

    async def set_phase(self, user: User, phase: Phase) -> tuple[User, list[str]]:
        """Set a phase by hand, skipping `/track`'s checks; what those checks would have said."""
        updated = await self.store.update_user(user.id, phase=phase)
        if updated is None:
            raise LookupError(f"user {user.id} was deleted meanwhile")
        session = Session(self.desk, updated.identity, updated)
        warnings = []
        if phase is Phase.TRACKING:
            if not await session.goals():
                warnings.append("the user has no active goal")
            if not any(m.start > self.clock() for m in await session.meetings()):
                warnings.append(
                    "the user has no upcoming meeting, so the coach is unreachable until one "
                    "is scheduled"
                )
        return updated, warnings

    # Meetings changed: the scheduler re-plans

    def meetings_changed(self, change: MeetingsChanged) -> None:
        """Tell observers; their failure is logged, never the user's problem."""
        for observer in self.meeting_observers:
            try:
                observer(change)
            except Exception:
                log.exception("meetings observer %r failed", observer)

    # One-line requests by identity: each a session of its own (tests and scripts)

    async def access(self, identity: Identity) -> Standing:
        return await (await self.session(identity)).access()

    async def history(self, identity: Identity, page: int = 1, page_size: int = 10) -> HistoryPage:
        return await (await self.session(identity)).history(page, page_size)

    async def clear_history(self, identity: Identity) -> int:
        return await (await self.session(identity)).clear_history()

    async def goals(self, identity: Identity, *, include_closed: bool = False) -> list[Goal]:
        return await (await self.session(identity)).goals(include_closed=include_closed)

    async def add_goal(self, identity: Identity, text: str) -> Goal:
        return await (await self.session(identity)).add_goal(text)

    async def close_goal(self, identity: Identity, ref: str, status: GoalStatus) -> Goal:
        return await (await self.session(identity)).close_goal(ref, status)

    async def log_progress(self, identity: Identity, ref: str, text: str) -> ProgressLogged:
        """Note progress on the active goal numbered `ref` in `/goals`; CoachError if the
        number or the text will not do."""
        return await (await self.session(identity)).log_progress(ref, text)

    async def goals_progress(self, identity: Identity) -> list[GoalProgress]:
        return await (await self.session(identity)).goals_progress()

    async def commitments(self, identity: Identity) -> list[Commitment]:
        return await (await self.session(identity)).commitments()

    async def close_commitment(self, identity: Identity, ref: str) -> Commitment:
        return await (await self.session(identity)).close_commitment(ref)

    async def memory(self, identity: Identity) -> list[str]:
        return await (await self.session(identity)).memory()

    async def forget_memory(self, identity: Identity, ref: str) -> str:
        return await (await self.session(identity)).forget_memory(ref)

    async def meetings(self, identity: Identity) -> list[Meeting]:
        return await (await self.session(identity)).meetings()

    async def schedule(self, identity: Identity, text: str) -> list[Meeting]:
        return await (await self.session(identity)).schedule(text)

    async def cancel(self, identity: Identity, ref: str, *, series: bool = False) -> Cancelled:
        return await (await self.session(identity)).cancel(ref, series=series)

    async def start_tracking(self, identity: Identity) -> User:
        return await (await self.session(identity)).start_tracking()

    async def back_to_goal_setting(self, identity: Identity) -> User:
        return await (await self.session(identity)).back_to_goal_setting()

    async def set_timezone(self, identity: Identity, name: str) -> User:
        return await (await self.session(identity)).set_timezone(name)

    async def suggest_timezone(self, identity: Identity, name: str) -> None:
        await (await self.session(identity)).suggest_timezone(name)

    async def export(self, identity: Identity) -> dict[str, Any]:
        return await (await self.session(identity)).export()

    async def forget(self, identity: Identity) -> None:
        await (await self.session(identity)).forget()
