"""Shared fixtures. Sections are independent; add new ones below their own heading."""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from core.store import Store, open_store
from tests.read_only import ReadOnly, read_only_paths

# --- Stores ------------------------------------------------------------------------------
#
# `store` is an opened Store, once per backend ("sqlite", "mongo"). For races between
# processes, `store_target.open()` opens another independent instance on the same database.
# Mongo runs against MONGODB_URI when set, else against the loopback mongoeco emulator.


# Where MongoDB cannot be reached (Python < 3.13 has no mongoeco, and no MONGODB_URI is set),
# its tests are left out at collection and the summary says so in one line: 70 silent skips
# read as a pass. On Python >= 3.13 a missing mongoeco fails them instead (see mongo_uri).
MONGO_LEFT_OUT = pytest.StashKey[tuple[int, str]]()


def _needs_mongo(item: pytest.Item, uri_set: bool) -> bool:
    fixtures = getattr(item, "fixturenames", ())
    if "mongo_server" in fixtures or item.get_closest_marker("mongo_emulator"):
        return True  # the emulator itself, whatever MONGODB_URI says
    callspec = getattr(item, "callspec", None)
    on_mongo = callspec is not None and callspec.params.get("store_target") == "mongo"
    return not uri_set and (on_mongo or "mongo_uri" in fixtures)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if sys.version_info >= (3, 13) or importlib.util.find_spec("mongoeco") is not None:
        return
    uri_set = bool(os.environ.get("MONGODB_URI"))
    left_out = [item for item in items if _needs_mongo(item, uri_set)]
    if not left_out:
        return
    config.hook.pytest_deselected(items=left_out)
    items[:] = [item for item in items if not _needs_mongo(item, uri_set)]
    need = "Python >= 3.13 (mongoeco)" if uri_set else "MONGODB_URI, or Python >= 3.13 (mongoeco)"
    config.stash[MONGO_LEFT_OUT] = (
        len(left_out),
        f"they need {need}; this is Python {platform.python_version()}",
    )


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    if MONGO_LEFT_OUT in config.stash:
        count, why = config.stash[MONGO_LEFT_OUT]
        terminalreporter.write_line(
            f"MongoDB NOT TESTED: {count} tests left out ({why}).", yellow=True, bold=True
        )


@pytest.fixture(scope="session")
def mongo_uri() -> Iterator[str]:
    """A MongoDB URI for the whole session: the real server in MONGODB_URI, or the emulator."""
    if uri := os.environ.get("MONGODB_URI"):
        yield uri
        return
    try:
        from tests.fakes.mongo_server import MongoEmulator
    except ImportError as error:
        if sys.version_info >= (3, 13):
            # mongoeco is a dev dependency here: the Mongo run must never be silently skipped.
            pytest.fail(f"mongoeco is not importable ({error}); run `make dev` or set MONGODB_URI")
        pytest.skip("MongoDB tests need MONGODB_URI or Python >= 3.13 with mongoeco")
    with MongoEmulator() as uri:
        yield uri


class StoreTarget:
    """One database for one test: open any number of Store instances on it."""

    def __init__(self, backend: str, url: str, database: str = "momentum") -> None:
        self.backend = backend
        self.url = url
        self.database = database
        self._opened: list[Store] = []

    async def open(self) -> Store:
        store = await open_store(self.url, mongodb_database=self.database)
        self._opened.append(store)
        return store

    async def close_all(self) -> None:
        for store in self._opened:
            with suppress(Exception):  # the test may have closed it already
                await store.close()


@pytest.fixture(params=["sqlite", "mongo"])
async def store_target(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreTarget]:
    """A fresh, empty database per test: a SQLite file, or a uniquely named Mongo database."""
    if request.param == "sqlite":
        target = StoreTarget("sqlite", f"sqlite:///{tmp_path / 'momentum.db'}")
        yield target
        await target.close_all()
        return
    uri = request.getfixturevalue("mongo_uri")
    target = StoreTarget("mongo", uri, f"test_{uuid.uuid4().hex[:16]}")
    yield target
    await target.close_all()
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(uri)
    try:
        await client.drop_database(target.database)
    finally:
        await client.close()


@pytest.fixture
async def store(store_target: StoreTarget) -> Store:
    return await store_target.open()


# --- Read-only files -----------------------------------------------------------------------
#
# `read_only.protect(path)` makes a file or directory read-only for this process, root
# included (tests/read_only.py says how); `read_only.lift(path)` undoes it, and so does the
# end of the test.


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[ReadOnly]:
    with read_only_paths(tmp_path) as protection:
        yield protection
