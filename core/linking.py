"""One person, one Momentum user, across Slack, Discord and the web.

`/coach link` on one platform gives a one-time code (core/keys.py: 8 characters, 10
minutes, used once); `/coach link CODE` typed by another identity joins that identity's user
to the user who made the code. The rules (code decides them, never the model):

- The code-maker's user stays: it keeps its id. The redeeming identity's user is merged into
  it and removed, with every identity it had: linking joins users, so an identity already
  linked with others brings them along (they are the same person) rather than being refused.
- Timezone: the code-maker's if it has one, else the other's.
- Phase: tracking if either user was tracking and the merged user has an upcoming meeting and
  an active goal (what `/track` asks); else goal setting.
- Goals: all kept (open and closed), listed in creation order. There may then be more active
  goals than `/goal add` allows; it refuses new ones until some are closed.
- Meetings: all kept. Overlapping ones are both kept, and the result names them: their
  windows run together as one (core/access.py), each meeting still gets its own notices,
  and `/meetings` and `/cancel` tidy up. (`/schedule` refuses an overlap as always.)
- History: one history, every message by its time.
- Commitments: all kept, open and done, by when they were made. The coach's notes: the
  code-maker's first, then the other's that differ (the next window's update bounds them).
- Welcomed: if either was.
- The user's own (primary) identity, the one the scheduler notifies, stays the code-maker's,
  unless only the other's platform can be notified (Slack, Discord; not the web, the
  console): then that one.
- Redeeming a code from the same user (the same identity, or one already linked) is an error,
  and so is a wrong, used or expired code: one message for all three, as the store cannot
  tell them apart once a code is gone.

`/coach unlink` takes the identity out: the user keeps its id, data and other identities (if
the leaving identity was the primary one, the first other identity the scheduler can notify
becomes primary, else the first other); the identity gets a fresh user of its own, carrying
only the timezone and the welcome (the same person). The last identity cannot leave.

The store has no transactions: a merge moves the identities first (so every new message
lands on the code-maker's user at once), then the data, then removes the user; run again
it finishes what a crash left, and a lookup of a half-merged identity runs it
(core/store/*_users.py). A message of the redeeming user that waited for its turn through
the merge is stored on the removed user and lost, as it would be through a `/forget`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from core.errors import CoachError
from core.keys import LINK_MINUTES, Keys, KeyStore, typed_link_code
from core.models import GoalStatus, Identity, Meeting, Phase, Platform, User
from core.session import Desk, MeetingsChanged, Session, SessionStore, overlaps

# Platforms the scheduler can message first (their adapters have a notifier).
NOTIFIED = frozenset({Platform.SLACK, Platform.DISCORD})

BAD_CODE_TEXT = (
    "That link code doesn't work: it may be mistyped, used already, or older than "
    f"{LINK_MINUTES} minutes. Get a new one with `/coach link` on your other account."
)
NOT_A_CODE_TEXT = (
    "A link code is 8 letters and digits, like `/coach link K7QM3XPA`. "
    "Get one with `/coach link` on your other account."
)
SAME_USER_TEXT = (
    "That code came from this account, or one already linked with it: nothing to link. "
    "Use it on your other account."
)
ONLY_IDENTITY_TEXT = (
    "This account isn't linked with any other, so there is nothing to unlink. "
    "(To delete your data, use `/forget`.)"
)
CHANGED_TEXT = "Your linked accounts changed just now. Please try again."


class LinkStore(SessionStore, KeyStore, Protocol):
    """What linking needs of the store besides a session's needs (the backends' shared
    rules: core/store/*_users.py, held by tests/test_store_contract.py)."""

    async def add_identity(self, user_id: str, identity: Identity, now: datetime) -> None:
        """From now on `identity` finds this user, wherever it pointed before. If it was
        another user's own identity, that user is being merged into this one."""

    async def remove_identity(self, user_id: str, identity: Identity) -> bool:
        """Unlink one of the user's linked (not primary) identities; False if it is none."""

    async def set_primary(self, user_id: str, identity: Identity, now: datetime) -> bool:
        """Make one of the user's linked identities its own, the old one linked instead;
        False if `identity` is not linked to the user (or the user changed meanwhile)."""

    async def merge_user(self, from_id: str, into_id: str, now: datetime) -> bool:
        """Move every identity and all data (messages, goals, commitments, meetings, notices,
        replies in flight, tokens, passes; memory notes appended to `into_id`'s, those it
        lacks) of `from_id` to `into_id`, then delete `from_id`. Idempotent:
        run again, it finishes what a crash left. False (nothing done) if `into_id` is gone."""


# The rules, pure


def same(a: Identity, b: Identity) -> bool:
    """The same account: an identity is its platform and external id (names change)."""
    return (a.platform, a.external_id) == (b.platform, b.external_id)


@dataclass(frozen=True)
class Settled:
    """The joined user's settings, from the two users' (see the module's rules)."""

    phase: Phase
    timezone: str | None
    welcomed: bool


def settle(maker: User, joiner: User, *, active_goal: bool, upcoming_meeting: bool) -> Settled:
    """`active_goal` and `upcoming_meeting`: whether the two have one between them."""
    tracking = Phase.TRACKING in (maker.phase, joiner.phase) and active_goal and upcoming_meeting
    return Settled(
        phase=Phase.TRACKING if tracking else Phase.GOAL_SETTING,
        timezone=maker.timezone or joiner.timezone,
        welcomed=maker.welcomed or joiner.welcomed,
    )


def primary_after_link(maker: Identity, joiner: Identity) -> Identity:
    if maker.platform not in NOTIFIED and joiner.platform in NOTIFIED:
        return joiner
    return maker


def primary_after_unlink(remaining: Sequence[Identity]) -> Identity:
    return next((i for i in remaining if i.platform in NOTIFIED), remaining[0])


def overlapping(
    ours: Sequence[Meeting], theirs: Sequence[Meeting]
) -> list[tuple[Meeting, Meeting]]:
    return [(a, b) for a in ours for b in theirs if overlaps(a, b)]


# The results


@dataclass(frozen=True)
class Linked:
    user: User  # the one user now: the code-maker's, which kept its id
    identities: list[Identity]  # all of its identities, its own (primary) first
    joined: User  # the redeeming identity's user as it was before (removed now)
    goals: int  # goals (open or closed) brought over from `joined`
    meetings: int  # upcoming meetings brought over
    messages: int  # messages brought over, now in the one history by their time
    # (the code-maker's, the joiner's) upcoming meetings that overlap: both kept
    overlaps: list[tuple[Meeting, Meeting]]


@dataclass(frozen=True)
class Unlinked:
    user: User  # the identity's own fresh user
    left: User  # the user it left, which keeps the goals, meetings and history
    remaining: list[Identity]  # `left`'s identities now, its own (primary) first


# The doing


class Linking:
    """The Coach's `link_code`, `link` and `unlink` (core/coach.py)."""

    def __init__(self, store: LinkStore, desk: Desk, keys: Keys) -> None:
        self.store, self.desk, self.keys = store, desk, keys

    async def identities(self, identity: Identity) -> list[Identity]:
        return await self.store.list_identities((await self._user(identity)).id)

    async def code(self, identity: Identity) -> str:
        return await self.keys.link_code(await self._user(identity))

    async def link(self, identity: Identity, typed: str) -> Linked:
        code = typed_link_code(typed)
        if code is None:
            raise CoachError(NOT_A_CODE_TEXT)
        joiner = await self._user(identity)
        maker_id = await self.keys.link_maker(code)
        if maker_id == joiner.id:
            raise CoachError(SAME_USER_TEXT)
        if maker_id is None:
            raise CoachError(BAD_CODE_TEXT)
        async with self.desk.replies.exclusive(identity, joiner):
            # Read under the turn: a reply that just finished may have changed them.
            maker = await self.store.get_user(maker_id)
            if maker is None:  # forgotten since making the code
                raise CoachError(BAD_CODE_TEXT)
            linked, brought = await self._merge(maker, await self._still(joiner.id))
        if brought:  # the scheduler re-plans them as the code-maker's
            moved = tuple(m for m in await self._upcoming(linked.user) if m.id in brought)
            self.desk.meetings_changed(MeetingsChanged(linked.user.id, added=moved))
        return linked

    async def _merge(self, maker: User, joiner: User) -> tuple[Linked, set[str]]:
        """Join `joiner` to `maker`; the result, and the ids of the meetings brought over."""
        now, store = self.desk.clock(), self.store
        ours, theirs = await self._upcoming(maker), await self._upcoming(joiner)
        goals = await store.list_goals(joiner.id)
        _, messages = await store.history_page(joiner.id, 1, 1)
        settled = settle(
            maker,
            joiner,
            active_goal=any(g.status is GoalStatus.ACTIVE for g in goals)
            or bool(await store.list_goals(maker.id, GoalStatus.ACTIVE)),
            upcoming_meeting=any(m.start > now for m in (*ours, *theirs)),
        )
        # The settings first: a crash after them leaves the merge for a lookup to finish.
        await store.update_user(
            maker.id,
            phase=settled.phase,
            timezone=settled.timezone,
            welcomed=settled.welcomed or None,
        )
        if not await store.merge_user(joiner.id, maker.id, now):
            raise CoachError(BAD_CODE_TEXT)  # the code-maker was forgotten meanwhile
        primary = primary_after_link(maker.identity, joiner.identity)
        if not same(primary, maker.identity):
            await store.set_primary(maker.id, primary, now)
        linked = Linked(
            user=await self._still(maker.id),
            identities=await store.list_identities(maker.id),
            joined=joiner,
            goals=len(goals),
            meetings=len(theirs),
            messages=messages,
            overlaps=overlapping(ours, theirs),
        )
        return linked, {m.id for m in theirs}

    async def unlink(self, identity: Identity) -> Unlinked:
        user = await self._user(identity)
        now = self.desk.clock()
        async with self.desk.replies.exclusive(identity, user):
            user = await self._still(user.id)
            identities = await self.store.list_identities(user.id)
            if len(identities) < 2:
                raise CoachError(ONLY_IDENTITY_TEXT)
            remaining = [i for i in identities if not same(i, identity)]
            if same(user.identity, identity):
                promoted = primary_after_unlink(remaining)
                if not await self.store.set_primary(user.id, promoted, now):
                    raise CoachError(CHANGED_TEXT)
            await self.store.remove_identity(user.id, identity)
            fresh, _ = await self.store.get_or_create_user(identity, now)
            carried = await self.store.update_user(
                fresh.id, timezone=user.timezone, welcomed=user.welcomed or None
            )
        left = await self._still(user.id)
        return Unlinked(carried or fresh, left, await self.store.list_identities(left.id))

    async def _user(self, identity: Identity) -> User:
        user, _ = await self.store.get_or_create_user(identity, self.desk.clock())
        return user

    async def _still(self, user_id: str) -> User:
        user = await self.store.get_user(user_id)
        if user is None:
            raise CoachError("I couldn't find you any more: were you just forgotten?")
        return user

    async def _upcoming(self, user: User) -> list[Meeting]:
        """Live meetings whose window has not closed (a Session's `meetings`)."""
        return await Session(self.desk, user.identity, user).meetings()
