"""The daemon's SQLite access, off the event loop: one writer thread and a few reader threads, each
with its own connection.

SQLite lets one writer in at a time. While another process holds the write lock (an import, a CLI
command), a write waits in SQLite's busy handler; done on the event loop, that wait would stall every
connection the node holds. So the daemon never runs SQL on its loop: every write (the audit group
commit, consent documents, descriptors) queues for the one writer thread, and reads run on a small
pool. A WAL reader seldom waits, but it can (recovery after a crash), and a long query should not
hold the loop either; sqlite3 releases the GIL while SQLite works, so the loop keeps serving.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, TypeVar

from . import store

T = TypeVar("T")


class SqlThreads:
    def __init__(self, path: Path, readers: int = 4) -> None:
        self.path = path
        self._local = threading.local()
        self._opened: list[store.DB] = []
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sql-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="sql-reader")

    def _db(self) -> store.DB:
        db = getattr(self._local, "db", None)
        if db is None:
            # The writer tries for the lock every millisecond (store.write); readers never need it.
            writer = threading.current_thread().name.startswith("sql-writer")
            db = self._local.db = store.connect(self.path, eager=writer)
            with self._lock:
                self._opened.append(db)
        return db

    def _call(self, fn: Callable[[store.DB], T]) -> T:
        return fn(self._db())

    async def write(self, fn: Callable[[store.DB], T]) -> T:
        """Run fn(db) on the writer thread; fn opens its own transaction (store.write)."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, self._call, fn)

    async def read(self, fn: Callable[[store.DB], T]) -> T:
        """Run fn(db) on a reader thread. It must not write: writes belong to `write`."""
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._call, fn)

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._lock:
            for db in self._opened:
                db.conn.close()
            self._opened.clear()
