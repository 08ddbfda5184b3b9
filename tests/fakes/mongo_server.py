"""A MongoDB wire-protocol server on loopback, backed by mongoeco's in-memory engine.

No real `mongod` can be installed on the CI machines, so the Mongo contract run talks to this
through the unmodified `pymongo.AsyncMongoClient`. mongoeco needs Python >= 3.13.

    with MongoEmulator() as uri:
        store = await MongoStore.open(uri, database="t1")

The server runs on its own thread and event loop: pymongo's async client is bound to the
test's loop and must never share one with the server it talks to.

`stop()` takes the server down like a crashed `mongod` (open connections are cut) but keeps
the data and the port; `start()` brings it back on the same port, so a client built with the
old URI reconnects by itself. `close()` ends it for good. The port is only re-bound at
`start()`: if another process grabbed it meanwhile, `start()` raises OSError.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from types import TracebackType
from typing import Any

from mongoeco.engines import MemoryEngine
from mongoeco.wire import AsyncMongoEcoProxyServer

TIMEOUT = 10.0


class MongoEmulator:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port  # 0 picks a free port at first start; later starts reuse it
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._engine: Any = None
        self._server: AsyncMongoEcoProxyServer | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> str:
        """Serve (again) and return the URI; a no-op while already serving."""
        if self._loop is None:
            self._start_loop()
        if self._server is None:
            self._run(self._serve())
        return self.uri

    def stop(self) -> None:
        """Stop serving and cut every connection; data and port are kept for `start()`."""
        if self._server is not None:
            self._run(self._server.close())
            self._server = None

    def restart(self) -> str:
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop for good: drop the data and end the server's thread."""
        self.stop()
        if self._loop is None or self._thread is None:
            return
        self._run(self._engine.disconnect())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(TIMEOUT)
        self._loop.close()
        self._loop = self._thread = self._engine = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _start_loop(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        # Daemon, so a test that forgets close() cannot hang the interpreter at exit.
        self._thread = threading.Thread(target=loop.run_forever, name="mongo-emulator", daemon=True)
        self._thread.start()
        self._engine = MemoryEngine()
        # Our own connection keeps the engine's data alive while servers come and go: the
        # memory engine clears itself when its last connection goes.
        self._run(self._engine.connect())

    async def _serve(self) -> None:
        server = AsyncMongoEcoProxyServer(engine=self._engine, host=self.host, port=self.port)
        address = await server.start()
        self.port = address.port
        self._server = server

    def _run(self, coroutine: Any) -> Any:
        assert self._loop is not None
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(TIMEOUT)
