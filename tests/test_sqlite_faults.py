"""The SQLite file as an operator can get it wrong: not a database, a directory, a read-only
directory or file. Opening fails with a message that says what is wrong, and leaves no
connection thread behind (aiosqlite's is not a daemon: one left running hangs the exit). A
file that was read-only serves writes again once it is writable, without a restart. The file
and its -wal/-shm companions are private to their owner."""

from __future__ import annotations

import asyncio
import io
import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bots.console import Console
from core.models import Goal, Role
from core.store import StoreUnavailable
from core.store.sqlite import SQLiteStore
from core.texts import STORE_DOWN_TEXT
from tests.fakes.anthropic_api import FakeAnthropic
from tests.metrics import sample
from tests.read_only import ReadOnly
from tests.support import T0, coach_on, person

pytestmark = pytest.mark.faults

THREAD_EXIT_SECONDS = 2.0
CONCURRENT_WRITES = 8
CONCURRENT_SECONDS = 10.0


def connection_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}


@contextmanager
def no_thread_left_running() -> Iterator[None]:
    """Every aiosqlite connection thread started in the block has ended soon after it."""
    before = connection_threads()
    yield
    deadline = time.monotonic() + THREAD_EXIT_SECONDS
    for thread in connection_threads() - before:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not connection_threads() - before, "a connection thread is still running"


async def refused(path: Path, match: str) -> StoreUnavailable:
    with no_thread_left_running(), pytest.raises(StoreUnavailable, match=match) as raised:
        await SQLiteStore.open(str(path))
    return raised.value


async def a_database(path: Path) -> str:
    """A database with one user in it, closed again; the user's id."""
    store = await SQLiteStore.open(str(path))
    user, _ = await store.get_or_create_user(person(), T0)
    await store.close()
    return user.id


def goal(user_id: str, text: str) -> Goal:
    return Goal(user_id=user_id, text=text, created_at=T0)


async def writes_and_reads(store: SQLiteStore, user_id: str, texts: list[str]) -> list[object]:
    """A goal added per text and as many reads, all at once; each one's result or error."""
    async with asyncio.timeout(CONCURRENT_SECONDS):  # a connection closed twice hangs
        return await asyncio.gather(
            *(store.add_goal(goal(user_id, text)) for text in texts),
            *(store.get_user(user_id) for _ in texts),
            return_exceptions=True,
        )


# Opening


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "momentum.db"
    path.write_text("my shopping list: eggs, milk, a new notebook\n")
    error = await refused(path, "is not an SQLite database")
    assert str(path) in str(error)
    assert path.read_text().startswith("my shopping list")  # left as it was


async def test_a_directory_at_the_path_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "momentum.db"
    path.mkdir()
    await refused(path, f"{path} is a directory")


async def test_a_new_database_in_a_read_only_directory_is_refused(
    tmp_path: Path, read_only: ReadOnly
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    read_only.protect(folder)
    await refused(folder / "momentum.db", f"cannot create {folder / 'momentum.db'}")
    assert list(folder.iterdir()) == []


async def test_a_database_in_a_read_only_directory_says_its_wal_needs_the_directory(
    tmp_path: Path, read_only: ReadOnly
) -> None:
    """Closed cleanly, the file has no -wal/-shm beside it, and SQLite cannot create them."""
    folder = tmp_path / "data"
    folder.mkdir()
    await a_database(folder / "momentum.db")
    read_only.protect(folder)
    await refused(folder / "momentum.db", f"is {folder} writable")


async def test_a_read_only_file_whose_tables_need_creating_is_refused(
    tmp_path: Path, read_only: ReadOnly
) -> None:
    path = tmp_path / "momentum.db"
    path.touch()  # empty: a database with no tables yet
    read_only.protect(path)
    await refused(path, "read-only, and must be written before it can serve")


# Writes while the file is read-only, and after


async def test_a_read_only_file_refuses_writes_then_serves_them_once_writable(
    tmp_path: Path, read_only: ReadOnly
) -> None:
    path = tmp_path / "momentum.db"
    user_id = await a_database(path)
    read_only.protect(path)
    store = await SQLiteStore.open(str(path))
    try:
        assert await store.get_user(user_id) is not None  # reads are served
        with pytest.raises(StoreUnavailable, match=r"read-?only"):
            await store.add_goal(goal(user_id, "Run 5k"))
        read_only.lift(path)
        await store.add_goal(goal(user_id, "Read 10 pages"))  # same store: no restart
        assert [g.text for g in await store.list_goals(user_id)] == ["Read 10 pages"]
    finally:
        await store.close()
    reopened = await SQLiteStore.open(str(path))
    try:
        assert [g.text for g in await reopened.list_goals(user_id)] == ["Read 10 pages"]
    finally:
        await reopened.close()


async def test_concurrent_writes_on_a_read_only_file_all_fail_plainly_then_all_succeed(
    tmp_path: Path, read_only: ReadOnly
) -> None:
    """Coroutines share the one connection; a write that reopens it must not pull it from
    under the others (a half-closed connection would fail them with other errors)."""
    path = tmp_path / "momentum.db"
    user_id = await a_database(path)
    read_only.protect(path)
    store = await SQLiteStore.open(str(path))
    try:
        texts = [f"goal {n}" for n in range(CONCURRENT_WRITES)]
        outcomes = await writes_and_reads(store, user_id, texts)
        writes, reads = outcomes[:CONCURRENT_WRITES], outcomes[CONCURRENT_WRITES:]
        assert all(isinstance(outcome, StoreUnavailable) for outcome in writes), writes
        assert all(getattr(user, "id", None) == user_id for user in reads), reads

        read_only.lift(path)
        before = connection_threads()
        outcomes = await writes_and_reads(store, user_id, texts)
        assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
        assert sorted(g.text for g in await store.list_goals(user_id)) == texts
        await asyncio.sleep(0.1)  # an old connection's thread ends just after it is closed
        assert len(connection_threads()) <= len(before), "an old connection was left open"
    finally:
        await store.close()


async def test_the_coach_says_nothing_was_saved_then_answers_once_writable(
    tmp_path: Path, read_only: ReadOnly
) -> None:
    """What a console user sees: a plain note while the file is read-only, and the next
    message, after it is writable again, answered and kept."""
    path = tmp_path / "momentum.db"
    await a_database(path)
    read_only.protect(path)
    store = await SQLiteStore.open(str(path))
    out = io.StringIO()
    try:
        async with FakeAnthropic() as fake, coach_on(store, fake.base_url) as coach:
            console = Console(coach, stdin=io.StringIO(), stdout=out)
            console.identity = person()
            errors = sample("momentum_store_errors_total", backend="sqlite")
            await console.handle("Help me plan my week")
            assert f"⚠ {STORE_DOWN_TEXT}" in out.getvalue()
            assert sample("momentum_store_errors_total", backend="sqlite") > errors  # /metrics
            assert fake.requests == []  # nothing was said that could not be kept

            read_only.lift(path)
            await console.handle("Shall we try again?")
            assert "coach> Coach: Shall we try again?" in out.getvalue()
            user = await coach.user(person())
            kept = await store.recent_messages(user.id, 10)
    finally:
        await store.close()
    assert [(m.role, m.text) for m in kept] == [
        (Role.USER, "Shall we try again?"),
        (Role.ASSISTANT, "Coach: Shall we try again?"),
    ]


async def test_a_command_from_a_new_user_while_read_only_is_told_plainly(
    tmp_path: Path, read_only: ReadOnly
) -> None:
    """A new user cannot even be created: the console says so and keeps going (it used to
    look the user up again to show the answer, and crashed on the same failure)."""
    path = tmp_path / "momentum.db"
    await a_database(path)
    read_only.protect(path)
    store = await SQLiteStore.open(str(path))
    out = io.StringIO()
    try:
        async with coach_on(store, None) as coach:
            console = Console(coach, stdin=io.StringIO(), stdout=out)
            console.identity = person("newcomer")
            await console.handle("/goal add Run 5k")
            read_only.lift(path)
            await console.handle("/goal add Run 5k")
    finally:
        await store.close()
    assert out.getvalue().splitlines() == [
        "I can't reach my memory right now. Please try again in a minute.",
        "Saved: Run 5k",
        "1. Run 5k",
    ]


# Privacy


async def test_the_file_and_its_wal_and_shm_are_readable_by_the_owner_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / "nested" / "momentum.db"
    umask = os.umask(0o022)  # the usual default, which would give 0644
    try:
        store = await SQLiteStore.open(str(path))
    finally:
        os.umask(umask)
    try:
        await store.get_or_create_user(person(), T0)
        files = [path, path.with_name("momentum.db-wal"), path.with_name("momentum.db-shm")]
        modes = {file.name: stat.S_IMODE(file.stat().st_mode) for file in files}
    finally:
        await store.close()
    assert modes == {file.name: 0o600 for file in files}
