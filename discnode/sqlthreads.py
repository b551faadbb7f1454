"""The daemon's SQLite access, off the event loop: one writer thread and a few reader threads, each
with its own connection.

SQLite lets one writer in at a time. While another process holds the write lock (an import, a CLI
command), a write waits in SQLite's busy handler; done on the event loop, that wait would stall every
connection the node holds. So the daemon never runs SQL on its loop: every write (the audit group
commit, consent documents, descriptors) queues for the one writer thread, and reads run on a small
pool (except a query's read, which rides in the group commit that writes its audit entry, on the
writer: server.NodeState.read_and_audit) (the hand-off itself is `_Threads`, below). A WAL reader seldom waits, but it can (recovery after a crash), and a long query should not
hold the loop either; sqlite3 releases the GIL while SQLite works, so the loop keeps serving.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from pathlib import Path
from typing import Any, Callable, TypeVar

from . import store

T = TypeVar("T")

_STOP = object()


class _Threads:
    """Up to `size` threads taking calls from one queue, each answering on the caller's loop.

    What `loop.run_in_executor(ThreadPoolExecutor)` does, less its layers: that makes a concurrent
    Future, a work item and an asyncio Future chained to it by callbacks, about 27 us of the event
    loop's CPU a trip (uvloop; 31-44 us on asyncio's loop), where an asyncio Future set through
    call_soon_threadsafe costs 14 (20): measured with benchmarks/serving_stages.py's reasoning, a
    served query makes two trips and a fifth of a third. Same contract: a call cancelled before a
    thread takes it does not run; threads start as calls find none idle; close() runs what is queued.
    """

    def __init__(self, size: int, name: str, call: Callable[[Callable[[store.DB], Any]], Any]) -> None:
        self.size, self.name, self.call = size, name, call
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []

    def submit(self, fn: Callable[[store.DB], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, future, loop))
        if not self._idle.acquire(timeout=0) and len(self._threads) < self.size:
            thread = threading.Thread(target=self._work, name=f"{self.name}_{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            fn, future, loop = item
            del item
            if not future.cancelled():  # read across threads: at worst a cancelled call runs, as a started one would
                try:
                    result, error = self.call(fn), None
                except BaseException as exc:  # noqa: BLE001 - handed to the caller, as an executor does
                    result, error = None, exc
                try:
                    loop.call_soon_threadsafe(_settle, future, result, error)
                except RuntimeError:  # the loop is closed: nobody waits for the answer
                    pass
                del result, error
            del fn, future, loop  # nothing held while idle
            self._idle.release()

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join()
        self._threads.clear()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


#: Each SQL thread's page cache, in KiB (SQLite's default is 2,000 KiB a connection). A served
#: page's working set is 256-384 KiB (measured: a 50-record page costs the same at 384 KiB as at
#: 2,000, and 1.8x at 256 when nothing else wrote in between); and every commit by another
#: connection (the audit writer commits all the time under load) empties a WAL reader's cache at
#: its next read anyway. Five connections at 2 MB were up to 10 MB of a serving node's resident
#: memory for pages read again at once (benchmarks/README.md, "Serving RSS").
CACHE_KIB = 512


class SqlThreads:
    def __init__(self, path: Path, readers: int = 4) -> None:
        self.path = path
        self._local = threading.local()
        self._opened: list[store.DB] = []
        self._lock = threading.Lock()
        self._writer = _Threads(1, "sql-writer", self._call)
        self._readers = _Threads(readers, "sql-reader", self._call)
        #: Asked on the loop as each write is handed over: a function to run on the writer thread
        #: before it, in the same trip, or None. Its owner's (server.NodeState: the nonces it has
        #: accepted and not yet saved, so that no request's change reaches the disk before its nonce).
        self.first: Callable[[], Callable[[store.DB], Any] | None] = lambda: None

    def _db(self) -> store.DB:
        db = getattr(self._local, "db", None)
        if db is None:
            # The writer tries for the lock every millisecond (store.write); readers never need it.
            writer = threading.current_thread().name.startswith("sql-writer")
            db = self._local.db = store.connect(self.path, eager=writer)
            db.conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            with self._lock:
                self._opened.append(db)
        return db

    def _call(self, fn: Callable[[store.DB], T]) -> T:
        return fn(self._db())

    async def write(self, fn: Callable[[store.DB], T]) -> T:
        """Run fn(db) on the writer thread, after `first`'s function if any; fn opens its own
        transaction (store.write)."""
        first = self.first()
        if first is None:
            return await self._writer.submit(fn)

        def both(db: store.DB) -> T:
            first(db)
            return fn(db)
        return await self._writer.submit(both)

    async def read(self, fn: Callable[[store.DB], T]) -> T:
        """Run fn(db) on a reader thread. It must not write: writes belong to `write`."""
        return await self._readers.submit(fn)

    def close(self) -> None:
        self._writer.close()
        self._readers.close()
        with self._lock:
            for db in self._opened:
                db.conn.close()
            self._opened.clear()
