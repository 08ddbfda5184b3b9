"""The Store contract: every backend runs this same suite through the `store` fixture.

A backend is done when it passes all of it. Times are fixed and timezone-aware; no test reads
the clock. Races run many tasks at once, split over two independent Store instances on the
same database, as two processes (bot and scheduler) would.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography.fernet import Fernet

from core.errors import SetupError
from core.installs import InstallKey, Installs
from core.keys import KeyKind, Purpose
from core.models import (
    Commitment,
    CommitmentStatus,
    Goal,
    GoalStatus,
    Identity,
    InFlight,
    Meeting,
    MeetingStatus,
    Message,
    MessageMeta,
    Notice,
    NoticeFacts,
    NoticeKind,
    NoticeState,
    Phase,
    Platform,
    ProgressEntry,
    Proposal,
    ProposalKind,
    ProposalStatus,
    Role,
    Usage,
)
from core.store import Store, open_store
from core.store.sqlite import MIGRATIONS
from tests.conftest import StoreTarget

API, CALENDAR = KeyKind.API, KeyKind.CALENDAR

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BERLIN_WINTER = timezone(timedelta(hours=1))
RACERS = 20

T = TypeVar("T")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def identity(external_id: str = "U1", platform: Platform = Platform.SLACK) -> Identity:
    return Identity(platform=platform, external_id=external_id, workspace_id="T1")


def message(user_id: str, minutes: float, text: str = "hi", role: Role = Role.USER) -> Message:
    return Message(
        user_id=user_id,
        role=role,
        text=text,
        created_at=at(minutes),
        meta=MessageMeta(platform=Platform.SLACK),
    )


def meeting(user_id: str, start_minutes: float, duration: int = 30) -> Meeting:
    start = at(start_minutes)
    return Meeting(
        user_id=user_id,
        start=start,
        duration_minutes=duration,
        closes_at=start + timedelta(minutes=duration),
    )


async def new_user(store: Store, external_id: str = "U1") -> str:
    user, _ = await store.get_or_create_user(identity(external_id), T0)
    return user.id


async def race(
    store_target: StoreTarget, store: Store, attempt: Callable[[Store], Awaitable[T]]
) -> list[T]:
    """Run `attempt` RACERS times at once, alternating between two Store instances."""
    other = await store_target.open()
    stores = (store, other)
    return await asyncio.gather(*(attempt(stores[i % 2]) for i in range(RACERS)))


# Users


async def test_get_or_create_user_creates_once(store: Store) -> None:
    user, created = await store.get_or_create_user(identity(), T0)
    assert created
    assert user.identity == identity()
    assert (user.phase, user.timezone, user.welcomed, user.created_at) == (
        Phase.GOAL_SETTING,
        None,
        False,
        T0,
    )

    again, created_again = await store.get_or_create_user(identity(), at(5))
    assert not created_again
    assert again == user  # created_at stays that of the first contact


async def test_identity_is_unique_per_platform_and_external_id(store: Store) -> None:
    slack, _ = await store.get_or_create_user(identity("U1", Platform.SLACK), T0)
    discord, _ = await store.get_or_create_user(identity("U1", Platform.DISCORD), T0)
    other, _ = await store.get_or_create_user(identity("U2", Platform.SLACK), T0)
    assert len({slack.id, discord.id, other.id}) == 3
    assert len(await store.list_users()) == 3


async def test_concurrent_first_contact_creates_one_user(
    store_target: StoreTarget, store: Store
) -> None:
    results = await race(store_target, store, lambda s: s.get_or_create_user(identity(), T0))
    assert len({user.id for user, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert len(await store.list_users()) == 1


async def test_get_update_and_list_users(store: Store) -> None:
    assert await store.get_user("nobody") is None
    assert await store.update_user("nobody", phase=Phase.TRACKING) is None
    second, _ = await store.get_or_create_user(identity("U2"), at(1))
    first, _ = await store.get_or_create_user(identity("U1"), T0)

    updated = await store.update_user(
        first.id, phase=Phase.TRACKING, timezone="Europe/Berlin", welcomed=True
    )
    assert updated is not None
    assert (updated.phase, updated.timezone, updated.welcomed) == (
        Phase.TRACKING,
        "Europe/Berlin",
        True,
    )
    assert await store.get_user(first.id) == updated
    assert await store.update_user(first.id) == updated  # nothing to change
    # Arguments left out are left alone.
    assert await store.update_user(first.id, welcomed=False) == updated.model_copy(
        update={"welcomed": False}
    )
    assert [user.id for user in await store.list_users()] == [first.id, second.id]


async def test_delete_user_removes_only_their_data(store: Store) -> None:
    gone, kept = await new_user(store, "U1"), await new_user(store, "U2")
    for user_id in (gone, kept):
        await store.add_message(message(user_id, 1))
        await store.add_goal(Goal(user_id=user_id, text="run", created_at=T0))
        await store.add_meetings([meeting(user_id, 60)])

    await store.delete_user(gone)

    assert await store.get_user(gone) is None
    assert await store.recent_messages(gone, 10) == []
    assert await store.list_goals(gone) == []
    assert await store.list_meetings(gone) == []
    assert await store.live_meetings(T0) == await store.list_meetings(kept)
    assert [u.id for u in await store.list_users()] == [kept]
    assert len(await store.recent_messages(kept, 10)) == 1
    assert len(await store.list_goals(kept)) == 1
    assert len(await store.list_meetings(kept)) == 1


# Commitments and memory notes (core/notes.py)


def promise(user_id: str, text: str, minutes: float = 0) -> Commitment:
    return Commitment(user_id=user_id, text=text, created_at=at(minutes))


async def test_commitments_round_trip_in_order_and_by_status(store: Store) -> None:
    user_id, other = await new_user(store, "U1"), await new_user(store, "U2")
    first = Commitment(
        user_id=user_id, text="run 5 km", due="Wednesday 7am", created_at=at(1), meeting_id="m1"
    )
    same_instant = [promise(user_id, "stretch", 1), promise(user_id, "sleep by 11", 1)]
    await store.add_commitments([first, *same_instant])
    await store.add_commitments([])
    await store.add_commitments([promise(other, "theirs")])

    assert await store.list_commitments(user_id) == [first, *same_instant]
    assert await store.list_commitments(user_id, CommitmentStatus.OPEN) == [first, *same_instant]
    assert await store.list_commitments(user_id, CommitmentStatus.DONE) == []
    assert [c.text for c in await store.list_commitments(other)] == ["theirs"]


async def test_close_commitment_once_and_only_by_its_user(store: Store) -> None:
    user_id, other = await new_user(store, "U1"), await new_user(store, "U2")
    commitment = promise(user_id, "run 5 km")
    await store.add_commitments([commitment])

    assert await store.close_commitment(other, commitment.id, at(5)) is None
    done = await store.close_commitment(user_id, commitment.id, at(5))
    assert done is not None
    assert (done.status, done.done_at, done.text) == (CommitmentStatus.DONE, at(5), "run 5 km")
    assert await store.close_commitment(user_id, commitment.id, at(6)) is None
    assert await store.list_commitments(user_id, CommitmentStatus.OPEN) == []
    assert await store.list_commitments(user_id, CommitmentStatus.DONE) == [done]


async def test_memory_notes_are_replaced_whole_and_compared_before_set(store: Store) -> None:
    user_id, other = await new_user(store, "U1"), await new_user(store, "U2")
    assert await store.memory_notes(user_id) == []
    # Nothing yet counts as "no notes" for a compare-and-set.
    assert await store.replace_memory_notes(user_id, ["runs for the kids"], at(1), expected=[])
    assert await store.replace_memory_notes(user_id, ["a", "b", "c"], at(2))
    assert await store.memory_notes(user_id) == ["a", "b", "c"]

    assert not await store.replace_memory_notes(user_id, ["x"], at(3), expected=["a", "b"])
    assert not await store.replace_memory_notes(user_id, ["x"], at(3), expected=[])
    assert await store.memory_notes(user_id) == ["a", "b", "c"]
    assert await store.replace_memory_notes(user_id, ["a", "c"], at(3), expected=["a", "b", "c"])
    assert await store.replace_memory_notes(user_id, [], at(4), expected=["a", "c"])
    assert await store.memory_notes(user_id) == []
    assert await store.replace_memory_notes(user_id, ["é ✓ 🏃"], at(5), expected=[])
    assert await store.memory_notes(user_id) == ["é ✓ 🏃"]
    assert await store.memory_notes(other) == []


async def test_concurrent_memory_updates_over_the_same_notes_have_one_winner(
    store_target: StoreTarget, store: Store
) -> None:
    user_id = await new_user(store)
    await store.replace_memory_notes(user_id, ["a", "b"], at(1))
    wins = await race(
        store_target,
        store,
        lambda s: s.replace_memory_notes(user_id, ["a"], at(2), expected=["a", "b"]),
    )
    assert wins.count(True) == 1


async def test_delete_user_removes_their_commitments_and_notes(store: Store) -> None:
    gone, kept = await new_user(store, "U1"), await new_user(store, "U2")
    for user_id in (gone, kept):
        await store.add_commitments([promise(user_id, "run")])
        await store.replace_memory_notes(user_id, ["likes mornings"], at(1))

    await store.delete_user(gone)

    assert await store.list_commitments(gone) == []
    assert await store.memory_notes(gone) == []
    assert len(await store.list_commitments(kept)) == 1
    assert await store.memory_notes(kept) == ["likes mornings"]


# Messages


async def test_recent_messages_are_the_last_ones_oldest_first(store: Store) -> None:
    user_id, other = await new_user(store, "U1"), await new_user(store, "U2")
    sent = [message(user_id, minute, f"m{minute}") for minute in range(5)]
    for item in reversed(sent):  # insertion order must not matter, created_at does
        await store.add_message(item)
    await store.add_message(message(other, 10, "not yours"))

    assert await store.recent_messages(user_id, 3) == sent[2:]
    assert await store.recent_messages(user_id, 50) == sent
    assert await store.recent_messages(user_id, 0) == []
    assert await store.recent_messages("nobody", 3) == []


async def test_messages_at_the_same_instant_keep_insertion_order(store: Store) -> None:
    user_id = await new_user(store)
    sent = [message(user_id, 1, f"m{i}", Role.USER if i % 2 else Role.ASSISTANT) for i in range(6)]
    for item in sent:
        await store.add_message(item)

    assert await store.recent_messages(user_id, 4) == sent[2:]
    assert await store.messages_between(user_id) == sent
    page, _ = await store.history_page(user_id, 1, 6)
    assert page == sent[::-1]


async def test_a_batch_of_messages_reads_as_that_many_single_inserts(store: Store) -> None:
    user_id, other = await new_user(store, "U1"), await new_user(store, "U2")
    # Over 1,000: a batch that spans two of the SQLite store's multi-row INSERTs (kept small:
    # the Mongo emulator inserts one document at a time, each checked against all the rest).
    # Three messages share each minute, so their order in the batch is the tie-break.
    sent = [message(user_id, i // 3, f"m{i}") for i in range(1_100)]
    theirs = message(other, 0, "not yours")
    await store.add_messages([*sent[:600], theirs, *sent[600:]])
    await store.add_messages([])

    assert await store.recent_messages(user_id, 4) == sent[-4:]
    assert await store.history_page(user_id, 1, 5) == (sent[::-1][:5], 1_100)
    assert await store.messages_between(user_id) == sent
    assert await store.messages_between(other) == [theirs]


async def test_history_pages_newest_first_with_total(store: Store) -> None:
    user_id = await new_user(store)
    sent = [message(user_id, minute, f"m{minute}") for minute in range(5)]
    for item in sent:
        await store.add_message(item)

    assert await store.history_page(user_id, 1, 2) == ([sent[4], sent[3]], 5)
    assert await store.history_page(user_id, 2, 2) == ([sent[2], sent[1]], 5)
    assert await store.history_page(user_id, 3, 2) == ([sent[0]], 5)
    assert await store.history_page(user_id, 4, 2) == ([], 5)
    assert await store.history_page("nobody", 1, 2) == ([], 0)


async def test_messages_between_includes_start_and_excludes_end(store: Store) -> None:
    user_id = await new_user(store)
    sent = [message(user_id, minute) for minute in range(5)]
    for item in sent:
        await store.add_message(item)

    assert await store.messages_between(user_id, at(1), at(3)) == sent[1:3]
    assert await store.messages_between(user_id, start=at(3)) == sent[3:]
    assert await store.messages_between(user_id, end=at(1)) == sent[:1]
    assert await store.messages_between(user_id) == sent
    assert await store.messages_between(user_id, at(2), at(2)) == []


async def test_clear_messages_counts_and_spares_others(store: Store) -> None:
    user_id, other = await new_user(store, "U1"), await new_user(store, "U2")
    for minute in range(3):
        await store.add_message(message(user_id, minute))
    await store.add_message(message(other, 0))

    assert await store.clear_messages(user_id) == 3
    assert await store.clear_messages(user_id) == 0
    assert await store.recent_messages(user_id, 10) == []
    assert len(await store.recent_messages(other, 10)) == 1


async def test_message_round_trips_with_its_metadata(store: Store) -> None:
    user_id = await new_user(store)
    sent = Message(
        user_id=user_id,
        role=Role.ASSISTANT,
        text="Let's look at your week. ✨",
        created_at=T0,
        complete=False,
        meta=MessageMeta(
            platform=Platform.DISCORD,
            model="claude-x",
            usage=Usage(input_tokens=12, output_tokens=34, cache_read_input_tokens=5),
            latency_ms=900,
            first_token_ms=120,
            stop_reason="max_tokens",
            meeting_id="m1",
            error="overloaded",
            kind="recap",
        ),
    )
    await store.add_message(sent)
    assert await store.recent_messages(user_id, 1) == [sent]


# Goals


async def test_goals_list_in_order_and_by_status(store: Store) -> None:
    user_id, other = await new_user(store, "U1"), await new_user(store, "U2")
    goals = [Goal(user_id=user_id, text=f"goal {i}", created_at=T0) for i in range(3)]
    done = Goal(
        user_id=user_id, text="old", status=GoalStatus.DONE, created_at=at(-60), closed_at=at(-1)
    )
    for goal in [*goals, done]:
        await store.add_goal(goal)
    await store.add_goal(Goal(user_id=other, text="theirs", created_at=T0))

    assert await store.list_goals(user_id) == [done, *goals]
    assert await store.list_goals(user_id, GoalStatus.ACTIVE) == goals
    assert await store.list_goals(user_id, GoalStatus.DONE) == [done]
    assert await store.list_goals(user_id, GoalStatus.DROPPED) == []


async def test_close_goal_only_from_active_and_only_by_its_user(store: Store) -> None:
    user_id, other = await new_user(store, "U1"), await new_user(store, "U2")
    goal = Goal(user_id=user_id, text="run 5k", created_at=T0)
    await store.add_goal(goal)

    assert await store.close_goal(other, goal.id, GoalStatus.DONE, at(1)) is None
    assert await store.close_goal(user_id, "no-such-goal", GoalStatus.DONE, at(1)) is None
    closed = await store.close_goal(user_id, goal.id, GoalStatus.DONE, at(1))
    assert closed == goal.model_copy(update={"status": GoalStatus.DONE, "closed_at": at(1)})
    assert await store.close_goal(user_id, goal.id, GoalStatus.DROPPED, at(2)) is None
    assert await store.list_goals(user_id) == [closed]


# Progress


def entry(user_id: str, goal_id: str, minutes: float, text: str = "ran") -> ProgressEntry:
    return ProgressEntry(user_id=user_id, goal_id=goal_id, text=text, created_at=at(minutes))


async def test_progress_lists_oldest_first_per_user_and_goal(store: Store) -> None:
    user_id, other = await new_user(store, "U1"), await new_user(store, "U2")
    later = entry(user_id, "g1", 60, "ran 5 km")
    first = entry(user_id, "g1", 1, "ran 3 km")
    same_instant = entry(user_id, "g1", 60, "stretched")  # after `later`: insertion order
    elsewhere = entry(user_id, "g2", 30, "read 10 pages")
    for each in (later, first, same_instant, elsewhere, entry(other, "g1", 5, "theirs")):
        await store.add_progress(each)

    assert await store.list_progress(user_id, "g1") == [first, later, same_instant]
    assert await store.list_progress(user_id) == [first, elsewhere, later, same_instant]
    assert await store.list_progress(user_id, "no-such-goal") == []
    assert [e.text for e in await store.list_progress(other)] == ["theirs"]


async def test_delete_user_removes_their_progress(store: Store) -> None:
    gone, kept = await new_user(store, "U1"), await new_user(store, "U2")
    await store.add_progress(entry(gone, "g1", 1))
    await store.add_progress(entry(kept, "g2", 1))

    await store.delete_user(gone)

    assert await store.list_progress(gone) == []
    assert len(await store.list_progress(kept)) == 1


# Meetings


async def test_meetings_get_and_list_by_start(store: Store) -> None:
    user_id, other = await new_user(store, "U1"), await new_user(store, "U2")
    later, sooner, past = meeting(user_id, 120), meeting(user_id, 60), meeting(user_id, -60)
    await store.add_meetings([later, sooner, past])
    await store.add_meetings([meeting(other, 30)])
    await store.add_meetings([])

    assert await store.get_meeting(sooner.id) == sooner
    assert await store.get_meeting("no-such-meeting") is None
    assert await store.list_meetings(user_id) == [past, sooner, later]
    # Strictly later: a window closing exactly now is over.
    assert await store.list_meetings(user_id, closing_after=past.closes_at) == [sooner, later]
    assert await store.list_meetings(user_id, closing_after=at(100)) == [later]


async def test_meeting_round_trips_every_field(store: Store) -> None:
    user_id = await new_user(store)
    sent = meeting(user_id, 60).model_copy(
        update={
            "series_id": "weekly",
            "status": MeetingStatus.OPEN,
            "reminder_sent": True,
            "recap_sent": True,
            "recap": "Good week.",
            "recap_claimed_until": at(95),
        }
    )
    await store.add_meetings([sent])
    assert await store.get_meeting(sent.id) == sent


async def test_live_meetings_span_users_and_skip_ended_ones(store: Store) -> None:
    first, second = await new_user(store, "U1"), await new_user(store, "U2")
    open_now = meeting(second, -10)
    scheduled = meeting(first, 60)
    cancelled, closed, over = meeting(first, 30), meeting(second, 90), meeting(first, -120)
    await store.add_meetings([scheduled, cancelled, over])
    await store.add_meetings([open_now, closed])
    await store.claim_transition(open_now.id, MeetingStatus.SCHEDULED, MeetingStatus.OPEN)
    await store.cancel_meetings(first, [cancelled.id])
    await store.claim_transition(closed.id, MeetingStatus.SCHEDULED, MeetingStatus.CLOSED)

    live = await store.live_meetings(T0)
    assert [m.id for m in live] == [open_now.id, scheduled.id]
    assert live[0].status == MeetingStatus.OPEN
    assert await store.live_meetings(scheduled.closes_at) == []


async def test_cancel_meetings_only_own_and_not_closed(store: Store) -> None:
    user_id, other = await new_user(store, "U1"), await new_user(store, "U2")
    scheduled, opened, closed = meeting(user_id, 60), meeting(user_id, -5), meeting(user_id, -90)
    theirs = meeting(other, 60)
    await store.add_meetings([scheduled, opened, closed, theirs])
    await store.claim_transition(opened.id, MeetingStatus.SCHEDULED, MeetingStatus.OPEN)
    await store.claim_transition(closed.id, MeetingStatus.SCHEDULED, MeetingStatus.CLOSED)

    ids = [scheduled.id, opened.id, closed.id, theirs.id, "no-such-meeting"]
    assert await store.cancel_meetings(user_id, ids) == 2
    assert await store.cancel_meetings(user_id, ids) == 0  # already cancelled
    assert await store.cancel_meetings(user_id, []) == 0

    status = {m.id: m.status for m in await store.list_meetings(user_id)}
    assert status == {
        scheduled.id: MeetingStatus.CANCELLED,
        opened.id: MeetingStatus.CANCELLED,
        closed.id: MeetingStatus.CLOSED,
    }
    assert (await store.list_meetings(other))[0].status == MeetingStatus.SCHEDULED


async def test_claim_transition_moves_once(store: Store) -> None:
    scheduled, opened, closed = MeetingStatus.SCHEDULED, MeetingStatus.OPEN, MeetingStatus.CLOSED
    user_id = await new_user(store)
    item = meeting(user_id, 0)
    await store.add_meetings([item])

    claimed = await store.claim_transition(item.id, scheduled, opened)
    assert claimed == item.model_copy(update={"status": opened})
    assert await store.claim_transition(item.id, scheduled, opened) is None
    assert await store.claim_transition(item.id, closed, opened) is None
    assert await store.claim_transition("no-such-meeting", scheduled, opened) is None
    ended = await store.claim_transition(item.id, opened, closed)
    assert ended is not None and ended.status == closed and ended.recap_claimed_until is None
    assert await store.get_meeting(item.id) == ended


async def test_claim_transition_can_claim_the_recap_in_the_same_update(store: Store) -> None:
    user_id = await new_user(store)
    item = meeting(user_id, 0)
    await store.add_meetings([item])
    closed = await store.claim_transition(
        item.id, MeetingStatus.SCHEDULED, MeetingStatus.CLOSED, recap_claimed_until=at(40)
    )
    assert closed == item.model_copy(
        update={"status": MeetingStatus.CLOSED, "recap_claimed_until": at(40)}
    )
    assert await store.get_meeting(item.id) == closed


async def test_concurrent_claim_transition_has_one_winner(
    store_target: StoreTarget, store: Store
) -> None:
    user_id = await new_user(store)
    item = meeting(user_id, 0)
    await store.add_meetings([item])

    results = await race(
        store_target,
        store,
        lambda s: s.claim_transition(item.id, MeetingStatus.SCHEDULED, MeetingStatus.OPEN),
    )
    assert [r.status for r in results if r is not None] == [MeetingStatus.OPEN]


async def test_claim_flag_once_per_flag(store: Store) -> None:
    user_id = await new_user(store)
    item = meeting(user_id, 0)
    await store.add_meetings([item])

    reminded = await store.claim_flag(item.id, "reminder_sent")
    assert reminded == item.model_copy(update={"reminder_sent": True})
    assert await store.claim_flag(item.id, "reminder_sent") is None
    assert await store.claim_flag("no-such-meeting", "reminder_sent") is None


async def test_concurrent_claim_flag_has_one_winner(
    store_target: StoreTarget, store: Store
) -> None:
    user_id = await new_user(store)
    item = meeting(user_id, 0)
    await store.add_meetings([item])

    results = await race(store_target, store, lambda s: s.claim_flag(item.id, "reminder_sent"))
    assert sum(r is not None for r in results) == 1


# Recaps: pending, claimed with an expiring lease, finished once


async def closed_meeting(store: Store, user_id: str, start_minutes: float) -> Meeting:
    item = meeting(user_id, start_minutes)
    await store.add_meetings([item])
    closed = await store.claim_transition(item.id, MeetingStatus.SCHEDULED, MeetingStatus.CLOSED)
    assert closed is not None
    return closed


async def test_pending_recaps_are_closed_unsent_recent_and_unclaimed(store: Store) -> None:
    first, second = await new_user(store, "U1"), await new_user(store, "U2")
    # Windows close 30 minutes after these starts; `now` is at(100), the look-back at(-100).
    later = await closed_meeting(store, second, 50)
    sooner = await closed_meeting(store, first, 10)
    too_old = await closed_meeting(store, first, -140)
    edge = await closed_meeting(store, first, -130)  # closes exactly at the look-back: out
    sent = await closed_meeting(store, first, 0)
    assert await store.finish_recap(sent.id, "Done.")
    held = await closed_meeting(store, first, 20)
    assert await store.claim_recap(held.id, expired_by=at(60), until=at(101))
    ran_out = await closed_meeting(store, second, 30)
    assert await store.claim_recap(ran_out.id, expired_by=at(60), until=at(100))
    live, cancelled = meeting(first, 40), meeting(first, 45)
    await store.add_meetings([live, cancelled])
    await store.cancel_meetings(first, [cancelled.id])

    pending = await store.pending_recaps(at(-100), at(100))
    assert [m.id for m in pending] == [sooner.id, ran_out.id, later.id]
    assert pending[1].recap_claimed_until == at(100)
    assert too_old.id not in {m.id for m in pending} and edge.id not in {m.id for m in pending}
    # A minute later the held claim has run out too.
    assert held.id in {m.id for m in await store.pending_recaps(at(-100), at(101))}


async def test_claim_recap_only_when_unclaimed_or_run_out(store: Store) -> None:
    user_id = await new_user(store)
    item = await closed_meeting(store, user_id, 0)

    claimed = await store.claim_recap(item.id, expired_by=at(30), until=at(40))
    assert claimed == item.model_copy(update={"recap_claimed_until": at(40)})
    assert await store.claim_recap(item.id, expired_by=at(39), until=at(49)) is None  # held
    # The holder hands its own claim back, earlier or later: its expiry is the condition.
    handed = await store.claim_recap(item.id, expired_by=at(40), until=at(35))
    assert handed is not None and handed.recap_claimed_until == at(35)
    taken = await store.claim_recap(item.id, expired_by=at(35), until=at(45))  # ran out
    assert taken is not None and taken.recap_claimed_until == at(45)
    # A stale holder (its claim ended at 40) cannot move the newer claim.
    assert await store.claim_recap(item.id, expired_by=at(40), until=at(100)) is None
    assert await store.get_meeting(item.id) == taken

    assert await store.claim_recap("no-such-meeting", expired_by=at(99), until=at(100)) is None
    live = meeting(user_id, 60)
    await store.add_meetings([live])
    assert await store.claim_recap(live.id, expired_by=at(99), until=at(100)) is None


async def test_finish_recap_once_stores_the_text_and_ends_the_claims(store: Store) -> None:
    user_id = await new_user(store)
    item = await closed_meeting(store, user_id, 0)
    assert await store.claim_recap(item.id, expired_by=at(30), until=at(40))

    finished = await store.finish_recap(item.id, "You ran twice.")
    assert finished is not None
    assert (finished.recap_sent, finished.recap) == (True, "You ran twice.")
    assert await store.finish_recap(item.id, "A second recap") is None
    assert await store.get_meeting(item.id) == finished
    assert await store.claim_recap(item.id, expired_by=at(99), until=at(100)) is None
    assert await store.pending_recaps(at(-100), at(100)) == []
    assert await store.finish_recap("no-such-meeting", "ignored") is None


async def test_concurrent_claim_recap_has_one_winner(
    store_target: StoreTarget, store: Store
) -> None:
    user_id = await new_user(store)
    item = await closed_meeting(store, user_id, 0)
    results = await race(
        store_target, store, lambda s: s.claim_recap(item.id, expired_by=at(30), until=at(40))
    )
    assert sum(r is not None for r in results) == 1


async def test_concurrent_finish_recap_has_one_winner(
    store_target: StoreTarget, store: Store
) -> None:
    user_id = await new_user(store)
    item = await closed_meeting(store, user_id, 0)
    texts = iter(range(RACERS))
    results = await race(store_target, store, lambda s: s.finish_recap(item.id, f"#{next(texts)}"))
    [winner] = [r for r in results if r is not None]
    assert await store.get_meeting(item.id) == winner


# Notices: the scheduler's outbox, one per meeting step, tried under an expiring claim


def notice(
    user_id: str, key: str = "m1:open", *, due: float = 0, kind: NoticeKind = NoticeKind.OPEN
) -> Notice:
    return Notice(
        id=key,
        user_id=user_id,
        meeting_id=key.split(":")[0],
        kind=kind,
        facts=NoticeFacts(until=at(90)),
        created_at=T0,
        expires_at=at(90),
        attempts=1,
        next_try_at=at(due),
    )


async def test_a_notice_is_added_once_per_key_and_round_trips(store: Store) -> None:
    user_id = await new_user(store)
    full = notice(user_id, kind=NoticeKind.MISSED).model_copy(
        update={
            "facts": NoticeFacts(
                start=at(30),
                until=at(90),
                opened=at(0),
                closed=at(90),
                next_opens=at(600),
                recap="You ran twice. ✨",
            ),
            "last_error": "platform down (503)",
            "settled_at": at(5),
            "state": NoticeState.DELIVERED,
            "attempts": 3,
        }
    )
    assert await store.add_notice(full)
    assert await store.get_notice(full.id) == full
    # A second process creating the same step's notice changes nothing.
    assert not await store.add_notice(notice(user_id))
    assert await store.get_notice(full.id) == full
    minimal = notice(user_id, "m2:recap", kind=NoticeKind.RECAP)
    assert await store.add_notice(minimal)
    assert await store.get_notice(minimal.id) == minimal
    assert await store.get_notice("no-such-notice") is None


async def test_concurrent_add_notice_has_one_winner(
    store_target: StoreTarget, store: Store
) -> None:
    user_id = await new_user(store)
    results = await race(store_target, store, lambda s: s.add_notice(notice(user_id)))
    assert sum(results) == 1


async def test_pending_notices_are_due_and_unsettled_longest_waiting_first(store: Store) -> None:
    user_id = await new_user(store)
    later, sooner = notice(user_id, "a:open", due=5), notice(user_id, "b:open", due=1)
    edge = notice(user_id, "c:open", due=10)  # due exactly at `now`: in
    ahead = notice(user_id, "d:open", due=10.001)
    delivered, dropped = notice(user_id, "e:open"), notice(user_id, "f:open")
    for item in (later, sooner, edge, ahead, delivered, dropped):
        assert await store.add_notice(item)
    assert await store.settle_notice(delivered.id, NoticeState.DELIVERED, at(1))
    assert await store.settle_notice(dropped.id, NoticeState.DROPPED, at(1), "window closed")

    assert await store.pending_notices(at(10), 10) == [sooner, later, edge]
    assert await store.pending_notices(at(10), 2) == [sooner, later]
    assert await store.pending_notices(at(10), 0) == []
    assert await store.pending_notices(at(0), 10) == []


async def test_claim_notice_only_when_pending_and_free(store: Store) -> None:
    user_id = await new_user(store)
    item = notice(user_id, due=10)
    await store.add_notice(item)

    assert await store.claim_notice(item.id, at(9), at(20)) is None  # backing off until 10
    claimed = await store.claim_notice(item.id, at(10), at(20))
    assert claimed == item.model_copy(update={"attempts": 2, "next_try_at": at(20)})
    assert await store.get_notice(item.id) == claimed
    assert await store.claim_notice(item.id, at(19), at(29)) is None  # held until 20
    taken = await store.claim_notice(item.id, at(20), at(30))  # that try's claim ran out
    assert taken is not None and (taken.attempts, taken.next_try_at) == (3, at(30))

    assert await store.settle_notice(item.id, NoticeState.DELIVERED, at(21))
    assert await store.claim_notice(item.id, at(99), at(100)) is None
    assert await store.claim_notice("no-such-notice", at(99), at(100)) is None


async def test_retry_notice_only_by_its_latest_try(store: Store) -> None:
    user_id = await new_user(store)
    item = notice(user_id)
    await store.add_notice(item)

    retried = await store.retry_notice(item.id, 1, at(1), "platform down (503)")
    assert retried == item.model_copy(
        update={"next_try_at": at(1), "last_error": "platform down (503)"}
    )
    second = await store.claim_notice(item.id, at(1), at(6))
    assert second is not None and second.attempts == 2
    # The first try, outliving its claim, cannot move the second try's.
    assert await store.retry_notice(item.id, 1, at(2), "late") is None
    assert await store.get_notice(item.id) == second
    again = await store.retry_notice(item.id, 2, at(30), "still down")
    assert again is not None and (again.next_try_at, again.last_error) == (at(30), "still down")

    assert await store.settle_notice(item.id, NoticeState.DROPPED, at(31), "window closed")
    assert await store.retry_notice(item.id, 2, at(40), "ignored") is None
    assert await store.retry_notice("no-such-notice", 1, at(40), "ignored") is None


async def test_settle_notice_once(store: Store) -> None:
    user_id = await new_user(store)
    sent, dropped = notice(user_id, "a:open"), notice(user_id, "b:open")
    await store.add_notice(sent)
    await store.add_notice(dropped)

    settled = await store.settle_notice(sent.id, NoticeState.DELIVERED, at(3))
    assert settled == sent.model_copy(update={"state": NoticeState.DELIVERED, "settled_at": at(3)})
    assert await store.settle_notice(sent.id, NoticeState.DROPPED, at(4), "late") is None
    assert await store.get_notice(sent.id) == settled
    gone = await store.settle_notice(dropped.id, NoticeState.DROPPED, at(4), "window closed")
    assert gone is not None and (gone.state, gone.last_error) == (
        NoticeState.DROPPED,
        "window closed",
    )
    assert await store.pending_notices(at(99), 10) == []
    assert await store.settle_notice("no-such-notice", NoticeState.DELIVERED, at(5)) is None


async def test_concurrent_claim_notice_has_one_winner(
    store_target: StoreTarget, store: Store
) -> None:
    user_id = await new_user(store)
    item = notice(user_id)
    await store.add_notice(item)
    results = await race(store_target, store, lambda s: s.claim_notice(item.id, at(1), at(6)))
    [winner] = [r for r in results if r is not None]
    assert winner.attempts == 2
    assert await store.get_notice(item.id) == winner


async def test_concurrent_settle_notice_has_one_winner(
    store_target: StoreTarget, store: Store
) -> None:
    user_id = await new_user(store)
    item = notice(user_id)
    await store.add_notice(item)
    results = await race(
        store_target, store, lambda s: s.settle_notice(item.id, NoticeState.DELIVERED, at(1))
    )
    assert sum(r is not None for r in results) == 1


async def test_delete_user_removes_their_notices(store: Store) -> None:
    gone, kept = await new_user(store, "U1"), await new_user(store, "U2")
    await store.add_notice(notice(gone, "a:open"))
    await store.add_notice(notice(kept, "b:open"))

    await store.delete_user(gone)

    assert await store.get_notice("a:open") is None
    assert [n.id for n in await store.pending_notices(at(99), 10)] == ["b:open"]


# Dedupe


async def test_claim_event_once_until_it_expires(store: Store) -> None:
    expires = at(10)
    assert await store.claim_event("evt-1", T0, expires)
    assert not await store.claim_event("evt-1", at(1), at(11))
    assert await store.claim_event("evt-2", at(1), at(11))  # keys are independent
    assert not await store.claim_event("evt-1", at(9.99), at(20))
    assert await store.claim_event("evt-1", expires, at(20))  # expired: fresh again
    assert not await store.claim_event("evt-1", at(15), at(25))


async def test_released_event_can_be_claimed_again(store: Store) -> None:
    """A turn that failed before keeping anything gives its key back for the retry."""
    assert await store.claim_event("evt-1", T0, at(10))
    assert await store.claim_event("evt-2", T0, at(10))
    await store.release_event("evt-1")
    await store.release_event("never-claimed")  # no-op
    assert await store.claim_event("evt-1", at(1), at(11))
    assert not await store.claim_event("evt-2", at(1), at(11))  # others stay claimed
    assert not await store.claim_event("evt-1", at(2), at(12))


async def test_concurrent_claim_event_has_one_winner(
    store_target: StoreTarget, store: Store
) -> None:
    results = await race(store_target, store, lambda s: s.claim_event("evt", T0, at(10)))
    assert sum(results) == 1
    # The same after expiry: exactly one racer reclaims the key.
    results = await race(store_target, store, lambda s: s.claim_event("evt", at(10), at(20)))
    assert sum(results) == 1


# Turn leases (core/turn_order.py): one holder at a time, the earliest waiting ticket next


def order(n: int) -> str:
    """A ticket order; larger n, later message."""
    return f"{n:020d}.000000000001"


async def test_turn_lease_is_held_by_one_ticket_until_released(store: Store) -> None:
    user_id = await new_user(store)
    assert await store.claim_turn(user_id, "a", order(1), T0, at(1))
    assert await store.claim_turn(user_id, "a", order(1), T0, at(1))  # its own: still its
    assert not await store.claim_turn(user_id, "b", order(2), T0, at(1))
    assert not await store.claim_turn(user_id, "c", order(0), at(0.5), at(1.5))  # even earlier
    await store.release_turn(user_id, "b")  # not b's: no effect
    assert not await store.claim_turn(user_id, "b", order(2), T0, at(1))
    await store.release_turn(user_id, "a")
    assert await store.claim_turn(user_id, "b", order(2), T0, at(1))
    other = await new_user(store, "U2")  # users' leases are independent
    assert await store.claim_turn(other, "z", order(9), T0, at(1))


async def test_turn_lease_runs_out_unless_renewed(store: Store) -> None:
    user_id = await new_user(store)
    assert await store.claim_turn(user_id, "a", order(1), T0, at(1))
    assert await store.renew_turn(user_id, "a", at(2))
    assert not await store.claim_turn(user_id, "b", order(2), at(1.5), at(3))  # renewed
    assert not await store.renew_turn(user_id, "b", at(9))  # only the holder renews
    assert await store.claim_turn(user_id, "b", order(2), at(2), at(3))  # ran out at 2
    assert not await store.renew_turn(user_id, "a", at(9))  # a lost it


async def test_the_earliest_waiting_ticket_takes_the_freed_lease(store: Store) -> None:
    user_id = await new_user(store)
    assert await store.claim_turn(user_id, "a", order(1), T0, at(5))
    for ticket, n in (("c", 3), ("b", 2), ("d", 4)):  # waiting, in any order of arrival
        await store.wait_turn(user_id, ticket, order(n), T0, at(1))
    await store.release_turn(user_id, "a")
    assert not await store.claim_turn(user_id, "c", order(3), T0, at(5))
    assert not await store.claim_turn(user_id, "d", order(4), T0, at(5))
    assert await store.claim_turn(user_id, "b", order(2), T0, at(5))
    await store.release_turn(user_id, "b")
    # b waits no more; c and d still do, and c is the earlier.
    assert not await store.claim_turn(user_id, "d", order(4), T0, at(5))
    assert await store.claim_turn(user_id, "c", order(3), T0, at(5))
    await store.release_turn(user_id, "c")
    assert await store.claim_turn(user_id, "d", order(4), T0, at(5))


async def test_a_waiting_ticket_that_stops_asking_is_passed_over(store: Store) -> None:
    user_id = await new_user(store)
    await store.wait_turn(user_id, "b", order(2), T0, at(1))
    assert not await store.claim_turn(user_id, "c", order(3), at(0.5), at(2))
    assert await store.claim_turn(user_id, "c", order(3), at(1), at(2))  # b's wait ran out
    await store.release_turn(user_id, "c")
    await store.wait_turn(user_id, "d", order(4), at(1), at(3))
    await store.release_turn(user_id, "d")  # d gave up waiting: its place goes too
    assert await store.claim_turn(user_id, "e", order(5), at(1), at(3))


async def test_concurrent_claim_turn_has_one_winner(
    store_target: StoreTarget, store: Store
) -> None:
    user_id = await new_user(store)
    tickets = iter(range(RACERS * 2))

    def attempt(s: Store) -> Awaitable[bool]:
        n = next(tickets)
        return s.claim_turn(user_id, f"t{n}", order(n), T0, at(1))

    assert sum(await race(store_target, store, attempt)) == 1
    # Once it runs out, again exactly one racer takes it over.
    later = iter(range(100, 100 + RACERS))

    def again(s: Store) -> Awaitable[bool]:
        n = next(later)
        return s.claim_turn(user_id, f"t{n}", order(n), at(1), at(2))

    assert sum(await race(store_target, store, again)) == 1


# Replies in flight (core/in_flight.py)


def in_flight(user_id: str, reply_id: str = "r1", minutes: float = 0) -> InFlight:
    return InFlight(
        id=reply_id,
        user_id=user_id,
        platform=Platform.SLACK,
        owner="host:123:abc",
        event_key="slack:C1:1.2",
        place={"channel": "D1", "thread_ts": "1.2"},
        started_at=at(minutes),
        expires_at=at(minutes + 1),
    )


async def test_replies_in_flight_are_kept_updated_and_removed(store: Store) -> None:
    user_id = await new_user(store)
    first, second = in_flight(user_id, "r1"), in_flight(user_id, "r2", minutes=1)
    await store.add_in_flight(second)
    await store.add_in_flight(first)
    assert await store.in_flight(Platform.SLACK) == [first, second]  # oldest first
    assert await store.in_flight(Platform.DISCORD) == []
    await store.update_in_flight("r1", place={"channel": "D1", "ts": "1.3"}, text="So far")
    await store.update_in_flight("r1", expires_at=at(3))
    assert (await store.in_flight(Platform.SLACK))[0] == first.model_copy(
        update={"place": {"channel": "D1", "ts": "1.3"}, "text": "So far", "expires_at": at(3)}
    )
    await store.remove_in_flight("r1")
    await store.remove_in_flight("never-there")
    assert await store.in_flight(Platform.SLACK) == [second]


async def test_a_reply_in_flight_is_taken_over_once_and_only_as_seen(
    store_target: StoreTarget, store: Store
) -> None:
    user_id = await new_user(store)
    record = in_flight(user_id)
    await store.add_in_flight(record)
    results = await race(store_target, store, lambda s: s.take_in_flight(record, "me", at(5)))
    (taken,) = [r for r in results if r is not None]
    assert taken == record.model_copy(update={"owner": "me", "expires_at": at(5)})
    # A record renewed since it was read is not taken: its process is alive.
    await store.update_in_flight(record.id, expires_at=at(9))
    assert await store.take_in_flight(taken, "other", at(10)) is None


async def test_welcome_is_claimed_once_and_delivery_marked(store: Store) -> None:
    user_id = await new_user(store)
    assert await store.claim_welcome(user_id)
    assert not await store.claim_welcome(user_id)
    assert (await store.get_user(user_id)).welcomed  # type: ignore[union-attr]
    reply = message(user_id, 1, "hello", Role.ASSISTANT)
    await store.add_message(reply)
    assert (await store.recent_messages(user_id, 1))[0].delivered
    await store.mark_undelivered(reply.id)
    assert not (await store.recent_messages(user_id, 1))[0].delivered


async def test_delete_user_takes_their_lease_and_replies_in_flight(store: Store) -> None:
    user_id = await new_user(store)
    keep = await new_user(store, "U2")
    await store.claim_turn(user_id, "a", order(1), T0, at(9))
    await store.add_in_flight(in_flight(user_id, "r1"))
    await store.add_in_flight(in_flight(keep, "r2"))
    await store.delete_user(user_id)
    assert [r.id for r in await store.in_flight(Platform.SLACK)] == ["r2"]
    assert await store.claim_turn(user_id, "b", order(2), T0, at(1))  # a's lease went too


# Datetimes


async def test_datetimes_come_back_as_equal_aware_utc(store: Store) -> None:
    """Any aware input zone and microseconds: the store gives back UTC at ms precision."""
    local = datetime(2026, 3, 2, 10, 0, 0, 123_456, tzinfo=BERLIN_WINTER)  # 09:00:00.123 UTC
    expected = datetime(2026, 3, 2, 9, 0, 0, 123_000, tzinfo=UTC)
    user, _ = await store.get_or_create_user(identity(), local)
    await store.add_message(message(user.id, 0).model_copy(update={"created_at": local}))
    goal = Goal(user_id=user.id, text="run", created_at=local)
    await store.add_goal(goal)
    closed = await store.close_goal(user.id, goal.id, GoalStatus.DONE, local)
    item = Meeting(
        user_id=user.id, start=local, duration_minutes=30, closes_at=local + timedelta(minutes=30)
    )
    await store.add_meetings([item])

    stored_user = await store.get_user(user.id)
    stored_message = (await store.recent_messages(user.id, 1))[0]
    stored_meeting = await store.get_meeting(item.id)
    assert stored_user is not None and stored_meeting is not None and closed is not None
    for value in (
        stored_user.created_at,
        stored_message.created_at,
        (await store.list_goals(user.id))[0].created_at,
        closed.closed_at,
        stored_meeting.start,
    ):
        assert value == expected
        assert value is not None and value.utcoffset() == timedelta(0)


async def test_query_bounds_may_be_in_any_zone(store: Store) -> None:
    """Bounds are instants: a non-UTC bound must compare by time, not by its text."""
    user_id = await new_user(store)
    sent = [message(user_id, minute) for minute in (0, 30, 90)]
    for item in sent:
        await store.add_message(item)
    early, late = meeting(user_id, 0, 30), meeting(user_id, 120, 30)
    await store.add_meetings([early, late])
    ahead = timezone(timedelta(hours=5))

    assert (
        await store.messages_between(user_id, at(15).astimezone(ahead), at(60).astimezone(ahead))
        == sent[1:2]
    )
    assert await store.list_meetings(user_id, closing_after=at(60).astimezone(ahead)) == [late]
    assert await store.live_meetings(at(60).astimezone(ahead)) == [late]
    assert await store.claim_event("k", T0, at(10).astimezone(ahead))
    assert await store.claim_event("k", at(15), at(30))  # expired, whatever the zones


# Backend-specific: the SQLite file


async def test_sqlite_file_is_created_versioned_and_reopened(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "momentum.db"
    store = await open_store(f"sqlite:///{path}")
    try:
        user, _ = await store.get_or_create_user(identity(), T0)
    finally:
        await store.close()
    assert path.exists()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    reopened = await open_store(f"sqlite:///{path}")
    try:
        assert await reopened.get_user(user.id) == user
    finally:
        await reopened.close()


async def test_sqlite_file_of_an_older_version_is_migrated(tmp_path: Path) -> None:
    """A database made before recap claims existed keeps its meetings, with no claim set."""
    path = tmp_path / "momentum.db"
    with sqlite3.connect(path) as db:
        db.executescript(MIGRATIONS[0])
        db.execute("PRAGMA user_version = 1")
        db.execute(
            "INSERT INTO meetings (id, user_id, start, duration_minutes, status, closes_at)"
            " VALUES ('m1', 'u1', '2026-03-02T09:00:00.000+00:00', 30, 'closed',"
            " '2026-03-02T10:30:00.000+00:00')"
        )
    store = await open_store(f"sqlite:///{path}")
    try:
        old = await store.get_meeting("m1")
        assert old is not None and old.recap_claimed_until is None and not old.recap_sent
        assert await store.pending_recaps(T0, at(120)) == [old]
    finally:
        await store.close()


async def test_sqlite_fresh_file_opened_by_several_processes_at_once(tmp_path: Path) -> None:
    """Bot and scheduler may start together on a new file: exactly one of them migrates."""
    url = f"sqlite:///{tmp_path / 'momentum.db'}"
    stores = await asyncio.gather(*(open_store(url) for _ in range(4)))
    try:
        users = await asyncio.gather(*(s.get_or_create_user(identity(), T0) for s in stores))
        assert len({user.id for user, _ in users}) == 1
    finally:
        for store in stores:
            await store.close()


async def test_unknown_database_url_is_refused() -> None:
    with pytest.raises(ValueError, match="DATABASE_URL"):
        await open_store("postgres://localhost/momentum")


# Web keys (core/keys.py)


async def test_a_token_names_its_user_until_revoked(store: Store) -> None:
    user_id, other = await new_user(store, "U1"), await new_user(store, "U2")
    await store.add_token("d1", user_id, T0, API)
    await store.add_token("d2", user_id, T0, API)
    await store.add_token("d3", other, T0, API)
    assert await store.token_user("d1", API) == user_id
    assert await store.token_user("nope", API) is None

    assert await store.revoke_tokens(user_id) == 2
    assert await store.token_user("d1", API) is None and await store.token_user("d2", API) is None
    assert await store.token_user("d3", API) == other  # another user's token is untouched
    assert await store.revoke_tokens(user_id) == 0


async def test_a_calendar_key_opens_the_feed_only_and_is_revoked_by_kind(store: Store) -> None:
    user_id = await new_user(store)
    await store.add_token("api", user_id, T0, API)
    await store.add_token("cal", user_id, T0, CALENDAR)
    assert await store.token_user("cal", CALENDAR) == user_id
    assert await store.token_user("cal", API) is None  # never a way into the API
    assert await store.token_user("api", CALENDAR) is None

    assert await store.revoke_tokens(user_id, CALENDAR) == 1
    assert await store.token_user("cal", CALENDAR) is None
    assert await store.token_user("api", API) == user_id  # the API token lives on


async def test_a_pass_works_once_and_only_before_it_expires(store: Store) -> None:
    user_id = await new_user(store)
    await store.add_pass("p1", user_id, Purpose.SIGN_IN, at(10))
    await store.add_pass("p2", user_id, Purpose.SIGN_IN, at(10))
    assert await store.use_pass("p1", Purpose.SIGN_IN, at(5)) == user_id
    assert await store.use_pass("p1", Purpose.SIGN_IN, at(5)) is None  # used
    assert await store.use_pass("p2", Purpose.SIGN_IN, at(10)) is None  # expired
    assert await store.use_pass("p2", Purpose.SIGN_IN, at(5)) is None  # and gone


async def test_a_pass_used_at_once_from_two_processes_works_once(
    store_target: StoreTarget, store: Store
) -> None:
    user_id = await new_user(store)
    await store.add_pass("p", user_id, Purpose.SIGN_IN, at(10))
    uses = await race(store_target, store, lambda s: s.use_pass("p", Purpose.SIGN_IN, at(1)))
    assert uses.count(user_id) == 1 and uses.count(None) == RACERS - 1


async def test_delete_user_removes_their_keys(store: Store) -> None:
    gone, kept = await new_user(store, "U1"), await new_user(store, "U2")
    await store.add_token("gone", gone, T0, API)
    await store.add_token("kept", kept, T0, API)
    await store.add_pass("p", gone, Purpose.SIGN_IN, at(10))

    await store.delete_user(gone)

    assert await store.token_user("gone", API) is None
    assert await store.token_user("kept", API) == kept
    assert await store.use_pass("p", Purpose.SIGN_IN, at(1)) is None


# Identities (core/linking.py): a user found by any of its identities, merged without
# transactions. A user's own (primary) identity is in its record; others are linked to it.


def discord(external_id: str = "D1") -> Identity:
    return Identity(platform=Platform.DISCORD, external_id=external_id, display_name="Ada")


async def test_a_linked_identity_finds_its_user(store: Store) -> None:
    user, _ = await store.get_or_create_user(identity(), T0)
    await store.add_identity(user.id, discord(), at(1))

    found, created = await store.get_or_create_user(discord(), at(2))

    assert (found, created) == (user, False)
    assert found.identity == identity()  # its own identity stays the primary one
    assert await store.list_identities(user.id) == [identity(), discord()]
    assert await store.list_users() == [user]


async def test_identities_list_primary_first_then_in_link_order(store: Store) -> None:
    user_id = await new_user(store)
    web = Identity(platform=Platform.WEB, external_id="ada")
    await store.add_identity(user_id, discord(), at(2))
    await store.add_identity(user_id, web, at(1))
    await store.add_identity(user_id, discord(), at(3))  # again: keeps its place
    assert await store.list_identities(user_id) == [identity(), web, discord()]
    assert await store.list_identities("nobody") == []


async def test_an_identity_linked_again_moves_to_the_new_user(store: Store) -> None:
    first, second = await new_user(store, "U1"), await new_user(store, "U2")
    await store.add_identity(first, discord(), T0)
    await store.add_identity(second, discord(), at(1))
    found, _ = await store.get_or_create_user(discord(), at(2))
    assert found.id == second
    assert await store.list_identities(first) == [identity("U1")]


async def test_remove_identity_takes_only_a_linked_one_of_that_user(store: Store) -> None:
    user_id, other = await new_user(store, "U1"), await new_user(store, "U2")
    await store.add_identity(user_id, discord(), T0)

    assert not await store.remove_identity(other, discord())  # not theirs
    assert not await store.remove_identity(user_id, identity("U1"))  # its own: not linked
    assert await store.remove_identity(user_id, discord())
    assert not await store.remove_identity(user_id, discord())  # gone already

    assert await store.list_identities(user_id) == [identity("U1")]
    alone, created = await store.get_or_create_user(discord(), at(1))
    assert created and alone.id not in (user_id, other)


async def test_set_primary_swaps_the_own_identity_with_a_linked_one(store: Store) -> None:
    user, _ = await store.get_or_create_user(identity(), T0)
    await store.add_identity(user.id, discord(), T0)

    assert await store.set_primary(user.id, discord(), at(1))

    swapped = await store.get_user(user.id)
    assert swapped == user.model_copy(update={"identity": discord()})
    assert await store.list_identities(user.id) == [discord(), identity()]
    for each in (identity(), discord()):
        assert (await store.get_or_create_user(each, at(2)))[0] == swapped
    assert await store.set_primary(user.id, discord(), at(3))  # already: nothing changes
    assert await store.list_identities(user.id) == [discord(), identity()]
    assert not await store.set_primary(user.id, identity("U9"), at(3))  # not linked to it
    assert not await store.set_primary("nobody", discord(), at(3))
    assert await store.list_users() == [swapped]


# Proposals (core/proposals.py)


def proposal(user_id: str, proposal_id: str = "p1", minutes: float = 0) -> Proposal:
    return Proposal(
        id=proposal_id,
        user_id=user_id,
        kind=ProposalKind.ADD_GOAL,
        args={"text": "Run 5k", "nested": {"n": 1}},
        summary="Add the goal “Run 5k”",
        created_at=at(minutes),
        expires_at=at(minutes + 60),
    )


async def test_a_proposal_is_decided_once_and_not_after_it_expires(store: Store) -> None:
    user_id = await new_user(store)
    await store.add_proposal(proposal(user_id, "p1"))
    await store.add_proposal(proposal(user_id, "p2"))
    assert await store.get_proposal("p1") == proposal(user_id, "p1")  # args round-trip
    assert await store.get_proposal("nope") is None
    decided = await store.decide_proposal("p1", ProposalStatus.CONFIRMED, at(5))
    assert decided is not None and decided.status is ProposalStatus.CONFIRMED
    assert decided.decided_at == at(5)
    assert await store.decide_proposal("p1", ProposalStatus.DECLINED, at(6)) is None  # once
    await store.finish_proposal("p1", ProposalStatus.DONE, "Goal added: Run 5k.")
    finished = await store.get_proposal("p1")
    assert finished is not None and finished.status is ProposalStatus.DONE
    assert finished.result == "Goal added: Run 5k."
    assert await store.decide_proposal("p2", ProposalStatus.CONFIRMED, at(60)) is None  # expired
    still = await store.get_proposal("p2")
    assert still is not None and still.status is ProposalStatus.PENDING


async def test_answers_racing_for_one_proposal_decide_it_once(store: Store) -> None:
    user_id = await new_user(store)
    await store.add_proposal(proposal(user_id))
    answers = await asyncio.gather(
        *(store.decide_proposal("p1", ProposalStatus.CONFIRMED, at(1)) for _ in range(8))
    )
    assert sum(answer is not None for answer in answers) == 1


async def test_delete_user_removes_their_proposals(store: Store) -> None:
    gone, kept = await new_user(store, "U1"), await new_user(store, "U2")
    await store.add_proposal(proposal(gone, "gone"))
    await store.add_proposal(proposal(kept, "kept"))
    await store.delete_user(gone)
    assert await store.get_proposal("gone") is None
    assert await store.get_proposal("kept") is not None


async def seed_everything(store: Store, user_id: str, minutes: float, tag: str) -> None:
    """One of each kind of data a user has, `tag` naming it, at `minutes`."""
    await store.add_message(message(user_id, minutes, f"{tag} says hi"))
    goal = Goal(user_id=user_id, text=f"{tag} goal", created_at=at(minutes))
    await store.add_goal(goal)
    await store.add_progress(
        ProgressEntry(user_id=user_id, goal_id=goal.id, text=f"{tag} ran", created_at=at(minutes))
    )
    await store.add_meetings([meeting(user_id, 600 + minutes)])
    await store.add_notice(notice(user_id, f"{tag}:open"))
    await store.add_in_flight(in_flight(user_id, f"{tag}-reply", minutes))
    await store.add_token(f"{tag}-token", user_id, at(minutes), API)
    await store.add_pass(f"{tag}-pass", user_id, Purpose.LINK, at(60))
    await store.add_proposal(proposal(user_id, f"{tag}-proposal", minutes))
    await store.add_commitments([promise(user_id, f"{tag} promise", minutes)])
    await store.replace_memory_notes(user_id, [f"{tag} note", "likes mornings"], at(minutes))


async def assert_merged(store: Store, into: str, gone: str) -> None:
    """Everything of `gone` (seeded at minute 1, tag "gone") is `into`'s, once."""
    assert await store.get_user(gone) is None
    assert [u.id for u in await store.list_users()] == [into]
    texts = [m.text for m in await store.messages_between(into)]
    assert texts == ["kept says hi", "gone says hi", "kept says later"]  # merged by time
    goals = await store.list_goals(into)
    assert [g.text for g in goals] == ["kept goal", "gone goal"]
    # Progress moves with its goal: still that goal's, now the user's it joined.
    assert [(e.text, e.goal_id) for e in await store.list_progress(into)] == [
        ("kept ran", goals[0].id),
        ("gone ran", goals[1].id),
    ]
    assert len(await store.list_meetings(into)) == 2
    moved_notice = await store.get_notice("gone:open")
    assert moved_notice is not None and moved_notice.user_id == into
    assert {r.id for r in await store.in_flight(Platform.SLACK) if r.user_id == into} == {
        "kept-reply",
        "gone-reply",
    }
    assert await store.token_user("gone-token", API) == into
    assert await store.use_pass("gone-pass", Purpose.LINK, at(2)) == into
    moved_proposal = await store.get_proposal("gone-proposal")
    assert moved_proposal is not None and moved_proposal.user_id == into
    assert await store.recent_messages(gone, 10) == []
    assert await store.list_goals(gone) == []
    assert await store.list_progress(gone) == []
    assert await store.list_meetings(gone) == []
    assert [c.text for c in await store.list_commitments(into)] == ["kept promise", "gone promise"]
    assert await store.list_commitments(gone) == []
    # Theirs after ours, without the ones we had already.
    assert await store.memory_notes(into) == ["kept note", "likes mornings", "gone note"]
    assert await store.memory_notes(gone) == []


async def test_merge_user_moves_everything_and_removes_the_merged_user(store: Store) -> None:
    into, gone = await new_user(store, "U1"), await new_user(store, "U2")
    await seed_everything(store, into, 0, "kept")
    await seed_everything(store, gone, 1, "gone")
    await store.add_message(message(into, 2, "kept says later"))
    await store.add_identity(gone, discord(), T0)

    assert await store.merge_user(gone, into, at(5))

    await assert_merged(store, into, gone)
    # Linked ones by when they were first linked: D1 (to the merged user) before U2.
    assert await store.list_identities(into) == [identity("U1"), discord(), identity("U2")]
    for each in (identity("U1"), identity("U2"), discord()):
        assert (await store.get_or_create_user(each, at(6)))[0].id == into


async def test_merge_user_again_changes_nothing_and_never_into_nobody(store: Store) -> None:
    into, gone = await new_user(store, "U1"), await new_user(store, "U2")
    await seed_everything(store, into, 0, "kept")
    await seed_everything(store, gone, 1, "gone")
    await store.add_message(message(into, 2, "kept says later"))

    assert not await store.merge_user(gone, "nobody", at(5))  # would lose their data
    assert not await store.merge_user(gone, gone, at(5))
    assert len(await store.list_users()) == 2 and len(await store.list_goals(gone)) == 1

    assert await store.merge_user(gone, into, at(5))
    assert await store.merge_user(gone, into, at(6))  # idempotent: already done

    await assert_merged(store, into, gone)
    assert await store.list_identities(into) == [identity("U1"), identity("U2")]


async def test_a_merge_cut_short_is_finished_by_the_next_lookup(store: Store) -> None:
    """A crash right after a merge's first step (the identity linked to the user it joins):
    its data is still on the user being merged, and the next lookup moves it."""
    into, gone = await new_user(store, "U1"), await new_user(store, "U2")
    await seed_everything(store, into, 0, "kept")
    await seed_everything(store, gone, 1, "gone")
    await store.add_message(message(into, 2, "kept says later"))
    await store.add_identity(into, identity("U2"), at(5))  # ... and then the crash

    found, created = await store.get_or_create_user(identity("U2"), at(6))

    assert (found.id, created) == (into, False)
    await assert_merged(store, into, gone)


async def test_lookups_racing_to_finish_a_merge_finish_it_once(
    store_target: StoreTarget, store: Store
) -> None:
    into, gone = await new_user(store, "U1"), await new_user(store, "U2")
    await seed_everything(store, into, 0, "kept")
    await seed_everything(store, gone, 1, "gone")
    await store.add_message(message(into, 2, "kept says later"))
    await store.add_identity(into, identity("U2"), at(5))

    found = await race(store_target, store, lambda s: s.get_or_create_user(identity("U2"), at(6)))

    assert {user.id for user, _ in found} == {into} and not any(c for _, c in found)
    await assert_merged(store, into, gone)


async def test_first_contacts_racing_a_link_end_as_the_linked_user(
    store_target: StoreTarget, store: Store
) -> None:
    """An identity's first messages and its link at once, from two processes: whichever user
    a first message created joins the linked one, at the latest at the next lookup."""
    into = await new_user(store, "U1")
    other = await store_target.open()
    lookups = [s.get_or_create_user(discord(), T0) for s in (store, other) * (RACERS // 2)]
    half = len(lookups) // 2

    await asyncio.gather(*lookups[:half], store.add_identity(into, discord(), T0), *lookups[half:])

    found, _ = await store.get_or_create_user(discord(), at(1))
    assert found.id == into
    assert [u.id for u in await store.list_users()] == [into]


async def test_delete_user_removes_their_identities(store: Store) -> None:
    gone, kept = await new_user(store, "U1"), await new_user(store, "U2")
    await store.add_identity(gone, discord("D1"), T0)
    await store.add_identity(kept, discord("D2"), T0)

    await store.delete_user(gone)

    assert not await store.remove_identity(gone, discord("D1"))  # no such link is left
    fresh, created = await store.get_or_create_user(discord("D1"), at(1))
    assert created and fresh.id != gone
    assert (await store.get_or_create_user(discord("D2"), at(1)))[0].id == kept


# --- App installations (core/installs.py) ---------------------------------------------


async def test_installs_are_saved_replaced_found_and_deleted_by_workspace(store: Store) -> None:
    bot_a, bot_b = InstallKey("bot", "", "TA"), InstallKey("bot", "", "TB")
    latest_a, ann = InstallKey("installation", "", "TA"), InstallKey("installation", "", "TA", "U1")
    for key, data in [(bot_a, "a1"), (bot_b, "b1"), (latest_a, "la"), (ann, "ann")]:
        await store.save_install(key, data, T0)
    await store.save_install(bot_a, "a2", at(1))  # a reinstall replaces
    assert [await store.find_install(k) for k in (bot_a, bot_b, latest_a, ann)] == [
        "a2", "b1", "la", "ann",
    ]
    assert await store.find_install(InstallKey("bot", "E1", "TA")) is None  # org is a key too
    assert await store.delete_installs("installation", "", "TA", "U1") == 1
    assert await store.find_install(ann) is None and await store.find_install(latest_a) == "la"
    assert await store.delete_installs(None, "", "TA") == 2  # the workspace's rest
    assert await store.find_install(bot_a) is None and await store.find_install(latest_a) is None
    assert await store.find_install(bot_b) == "b1"  # the other workspace keeps its install
    assert await store.delete_installs(None, "", "TA") == 0


async def test_an_install_reaches_the_store_encrypted_and_rotates_keys(store: Store) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    record, key = '{"bot_token": "xoxb-secret-1"}', InstallKey("bot", "", "TA")
    await Installs(store, lambda: T0, old).save(key, record)
    sealed = await store.find_install(key)
    assert sealed is not None and "xoxb" not in sealed and "secret" not in sealed
    assert await Installs(store, lambda: T0, old).find(key) == record

    rotated = Installs(store, lambda: T0, f"{new},{old}")
    assert await rotated.find(key) == record  # opened with the old key, saved under the new
    assert await Installs(store, lambda: T0, new).find(key) == record
    assert await Installs(store, lambda: T0, old).find(key) is None  # logged: reinstall
    with pytest.raises(SetupError, match="not a Fernet key"):
        await Installs(store, lambda: T0, "not-a-key").find(key)


async def test_an_install_state_works_once_and_expires(store: Store) -> None:
    now = [T0]
    installs = Installs(store, lambda: now[0], Fernet.generate_key().decode())
    state, late = await installs.new_state(), await installs.new_state()
    assert await installs.use_state(state) and not await installs.use_state(state)
    assert not await installs.use_state("made-up") and not await installs.use_state("")
    now[0] = at(11)
    assert not await installs.use_state(late)
