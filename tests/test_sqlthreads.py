"""The daemon's SQL threads (sqlthreads.py): what a call returns or raises comes back to the caller on
its loop, writes run one at a time on the one writer, reads side by side on the readers, a call
cancelled before a thread takes it never runs, and close() finishes what is queued. On both loops."""

from __future__ import annotations

import asyncio
import threading

import pytest

from discnode import loops, store
from discnode.errors import NotFound
from discnode.sqlthreads import SqlThreads


@pytest.fixture(params=loops.KINDS)
def run(request):
    return lambda coro: loops.run(coro, request.param)


@pytest.fixture
def sql(home):
    threads = SqlThreads(home.db_path)
    yield threads
    threads.close()


def test_reads_and_writes_return_what_the_call_returns_and_raise_what_it_raises(run, sql, home):
    def count(db: store.DB) -> int:
        return db.execute("SELECT count(*) FROM audit").fetchone()[0]

    def missing(db: store.DB) -> None:
        raise NotFound("no such thing")

    async def go() -> tuple[int, int, str, str]:
        read, written = await sql.read(count), await sql.write(count)
        with pytest.raises(NotFound) as r:
            await sql.read(missing)
        with pytest.raises(NotFound) as w:
            await sql.write(missing)
        return read, written, str(r.value), str(w.value)

    direct = count(home.db)
    assert run(go()) == (direct, direct, "no such thing", "no such thing")


def test_writes_run_one_at_a_time_in_order_on_the_one_writer(run, sql):
    seen: list[tuple[int, str]] = []
    running = [0, 0]  # now, most at once

    def write(i: int):
        def fn(db: store.DB) -> int:
            running[0] += 1
            running[1] = max(running)
            seen.append((i, threading.current_thread().name))
            threading.Event().wait(0.001)
            running[0] -= 1
            return i
        return fn

    async def go() -> list[int]:
        return list(await asyncio.gather(*(sql.write(write(i)) for i in range(20))))

    assert run(go()) == list(range(20))
    assert [i for i, _ in seen] == list(range(20))
    assert {name for _, name in seen} == {"sql-writer_0"}
    assert running[1] == 1


def test_reads_run_side_by_side_on_every_reader(run, home):
    sql = SqlThreads(home.db_path, readers=3)
    together = threading.Barrier(3, timeout=20)  # passes only if three reads run at once

    def read(db: store.DB) -> str:
        together.wait()
        return threading.current_thread().name

    async def go() -> list[str]:
        return list(await asyncio.gather(*(sql.read(read) for _ in range(3))))

    try:
        assert sorted(run(go())) == ["sql-reader_0", "sql-reader_1", "sql-reader_2"]
    finally:
        sql.close()


def test_a_call_cancelled_before_a_thread_takes_it_never_runs(run, sql):
    release, ran = threading.Event(), []

    def hold(db: store.DB) -> None:
        release.wait(20)

    def second(db: store.DB) -> None:
        ran.append("second")

    async def go() -> None:
        first = asyncio.ensure_future(sql.write(hold))
        await asyncio.sleep(0.05)  # the writer has taken it, and waits
        queued = asyncio.ensure_future(sql.write(second))
        await asyncio.sleep(0)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        release.set()
        await first
        await sql.write(lambda db: None)  # everything queued before this has been taken

    run(go())
    assert ran == []


def test_close_finishes_what_is_queued(run, home):
    sql = SqlThreads(home.db_path)
    done: list[int] = []
    release = threading.Event()

    async def go() -> None:
        sql._writer.submit(lambda db: release.wait(20))
        for i in range(5):
            sql._writer.submit(lambda db, i=i: done.append(i))

    run(go())
    release.set()
    sql.close()
    assert done == [0, 1, 2, 3, 4]


def test_every_sql_thread_keeps_a_page_cache_of_cache_kib(run, sql):
    """Not SQLite's 2 MB a connection: the readers' and the writer's caches are a serving node's
    resident memory (benchmarks/README.md, "Serving RSS")."""
    from discnode.sqlthreads import CACHE_KIB

    def cache(db: store.DB) -> int:
        return db.execute("PRAGMA cache_size").fetchone()[0]

    async def go() -> list[int]:
        return [await sql.write(cache), *await asyncio.gather(*(sql.read(cache) for _ in range(8)))]
    assert CACHE_KIB < 2000
    assert set(run(go())) == {-CACHE_KIB}
