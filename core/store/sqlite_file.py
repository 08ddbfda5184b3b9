"""The SQLite file and the one connection the store shares: created private, opened with an
error an operator can act on, and reopened when a file that was read-only becomes writable.

SQLite opens a write-protected file read-only and keeps that connection read-only for good,
even after a `chmod`; so a write refused as read-only reopens the file and is tried once more.
SQLite also gives the -wal and -shm files it creates the database file's mode at the time, so
those made while it was read-only stay read-only (and keep every connection read-only, even
after a restart): they get the file's mode back when the file is writable again.
Every statement is one call on the connection's queue (`execute_fetchall`, or `execute` read
for its row count): a reopen between two calls of one statement cannot break it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from core.metrics import STORE_ERRORS
from core.store import StoreUnavailable

log = logging.getLogger(__name__)

WAL_SWITCH_ATTEMPTS = 20
WAL_SWITCH_BACKOFF_SECONDS = 0.02
PRIVATE_MODE = 0o600  # conversations are private; SQLite gives -wal and -shm the file's mode
MEMORY = ":memory:"
COMPANIONS = ("-wal", "-shm")

T = TypeVar("T")
Params = Sequence[Any] | Mapping[str, Any]  # `?` placeholders, or `:name` ones
Prepare = Callable[[aiosqlite.Connection], Awaitable[None]]


def _extended(error: sqlite3.Error) -> int:
    """SQLite's extended result code (SQLITE_READONLY_DIRECTORY...), -1 if none."""
    code: int = getattr(error, "sqlite_errorcode", -1)
    return code


def _code(error: sqlite3.Error) -> int:
    """SQLite's primary result code (SQLITE_READONLY, SQLITE_NOTADB...), -1 if none."""
    code = _extended(error)
    return code & 0xFF if code >= 0 else code


def _is_read_only(error: sqlite3.Error) -> bool:
    return _code(error) == sqlite3.SQLITE_READONLY


def _is_outage(error: sqlite3.Error) -> bool:
    """The database cannot serve this now (locked, read-only, full, unreadable), as opposed to
    a statement our code got wrong (IntegrityError, ProgrammingError), which should surface."""
    return isinstance(error, sqlite3.OperationalError) or type(error) is sqlite3.DatabaseError


def _target(path: str) -> str:
    """The URI to open `path` by, once the file exists (created private if it did not).

    mode=rw: a reopen must never create an empty file where the database vanished.
    """
    if path == MEMORY:
        return MEMORY
    _create_private(Path(path))
    _companions_follow(Path(path))
    return Path(path).absolute().as_uri() + "?mode=rw"


def _create_private(path: Path) -> None:
    """Create the file (and its directory) if missing, readable by its owner only. An existing
    file keeps its mode, and is not opened here: a read-only one is still readable."""
    if path.is_dir():
        raise StoreUnavailable(f"{path} is a directory; name a file inside it")
    if path.exists():
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE))
    except FileExistsError:
        pass  # another process created it a moment ago
    except OSError as error:
        where = error.filename or path
        raise StoreUnavailable(f"cannot create {where}: {error.strerror}") from error


def _companions_follow(path: Path) -> None:
    """Give -wal and -shm files left read-only the mode of the file, once it is writable."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if not mode & stat.S_IWUSR:
        return
    for suffix in COMPANIONS:
        companion = path.with_name(path.name + suffix)
        try:
            if not companion.stat().st_mode & stat.S_IWUSR:
                companion.chmod(mode)
                log.info("%s: made writable again, as %s is", companion, path)
        except OSError:
            pass  # missing, or not ours to change: SQLite says what it cannot do


def _explain(path: str, error: sqlite3.Error) -> str:
    """What is wrong with the file at `path`, for the operator who must fix it."""
    code = _code(error)
    if code == sqlite3.SQLITE_NOTADB:
        return f"{path} is not an SQLite database ({error})"
    # Which of the two SQLite reports for a directory it cannot create -wal/-shm in depends
    # on who asks (root is refused by the immutable flag, others by the directory's mode).
    if code == sqlite3.SQLITE_CANTOPEN or _extended(error) == sqlite3.SQLITE_READONLY_DIRECTORY:
        return (
            f"cannot open {path} ({error}); SQLite also needs to create {Path(path).name}-wal"
            f" and {Path(path).name}-shm beside it: is {Path(path).parent} writable?"
        )
    if code == sqlite3.SQLITE_READONLY:
        return (
            f"{path} is read-only, and must be written before it can serve (its tables created"
            f" or upgraded, or WAL mode set): make it writable ({error})"
        )
    if code == sqlite3.SQLITE_BUSY:
        return f"{path} is locked by another process ({error})"
    return f"cannot use {path}: {error}"


async def _use_wal(db: aiosqlite.Connection) -> None:
    """Switch to WAL. SQLite does not wait on a lock for this switch (no busy handler), so
    when several processes open a fresh file at once, a loser retries for a moment."""
    for attempt in range(1, WAL_SWITCH_ATTEMPTS + 1):
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == WAL_SWITCH_ATTEMPTS:
                raise
            await asyncio.sleep(WAL_SWITCH_BACKOFF_SECONDS * attempt)


async def _connect(
    target: str, busy_timeout: float, prepare: Prepare | None
) -> aiosqlite.Connection:
    """A ready connection. If any step fails, the connection and its worker thread are closed:
    aiosqlite's thread is not a daemon, so one left running keeps the process from exiting."""
    db = await aiosqlite.connect(target, timeout=busy_timeout, isolation_level=None, uri=True)
    try:
        db.row_factory = sqlite3.Row
        await _use_wal(db)
        await db.execute("PRAGMA synchronous=NORMAL")
        if prepare is not None:
            await prepare(db)
    except BaseException:
        await db.close()
        raise
    return db


class SQLiteFile:
    """One SQLite file, one connection shared by every coroutine of the store."""

    def __init__(self, path: str, target: str, busy_timeout: float, db: aiosqlite.Connection):
        self.path = path
        self._target = target
        self._busy_timeout = busy_timeout
        self._db = db
        self._reopening = asyncio.Lock()
        self._refused_writes = False

    @classmethod
    async def open(cls, path: str, *, busy_timeout: float, prepare: Prepare) -> SQLiteFile:
        """Open `path` (created if missing, mode 0600), run `prepare` (the migrations) on it;
        StoreUnavailable, with what to fix, if it cannot serve."""
        target = _target(path)
        try:
            db = await _connect(target, busy_timeout, prepare)
        except sqlite3.Error as error:
            raise StoreUnavailable(_explain(path, error)) from error
        if path != MEMORY and not os.access(path, os.W_OK):
            log.warning("%s is read-only: nothing can be saved until it is writable", path)
        return cls(path, target, busy_timeout, db)

    async def close(self) -> None:
        await self._db.close()

    async def fetch(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """The rows of one statement (a read, or a write with RETURNING)."""

        async def run(db: aiosqlite.Connection) -> list[sqlite3.Row]:
            return list(await db.execute_fetchall(sql, params))

        return await self._run(run)

    async def change(self, sql: str, params: Params = ()) -> int:
        """Run one write; how many rows it changed."""

        async def run(db: aiosqlite.Connection) -> int:
            cursor = await db.execute(sql, params)  # one queue call; rowcount needs no other
            return cursor.rowcount

        return await self._run(run)

    async def change_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)  # may be tried twice

        async def run(db: aiosqlite.Connection) -> None:
            await db.executemany(sql, rows)

        await self._run(run)

    async def _run(self, statement: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run on the current connection; a write refused as read-only is tried once more on
        a fresh connection (a refused statement changed nothing, so trying again is safe)."""
        db = self._db
        try:
            return await statement(db)
        except sqlite3.Error as error:
            if not _is_outage(error):
                raise
            if not (_is_read_only(error) and await self._reopen(db)):
                raise self._unavailable(error) from error
        try:
            result = await statement(self._db)
        except sqlite3.Error as error:
            if not _is_outage(error):
                raise
            raise self._unavailable(error) from error
        if self._refused_writes:
            self._refused_writes = False
            log.info("%s is writable again: saving resumes", self.path)
        return result

    def _unavailable(self, error: sqlite3.Error) -> StoreUnavailable:
        STORE_ERRORS.labels("sqlite").inc()
        if _is_read_only(error):
            self._refused_writes = True
            return StoreUnavailable(f"{self.path} is read-only, nothing can be saved ({error})")
        return StoreUnavailable(f"{self.path}: {error}")

    async def _reopen(self, failed: aiosqlite.Connection) -> bool:
        """Replace the connection `failed` on, unless another coroutine already did; True if
        there is a new connection to try. Calls already queued on the old one run before it
        closes (aiosqlite serves its queue in order), and new calls go to the new one."""
        if self._target == MEMORY:
            return False
        async with self._reopening:
            if self._db is not failed:
                return True
            await asyncio.to_thread(_companions_follow, Path(self.path))
            try:
                self._db = await _connect(self._target, self._busy_timeout, None)
            except sqlite3.Error as error:
                log.warning("cannot reopen %s: %s", self.path, error)
                return False
        try:
            await failed.close()
        except sqlite3.Error as error:
            log.warning("closing the old connection to %s: %s", self.path, error)
        return True
