"""memory.release gives freed heap back to the system (glibc's malloc_trim), as a serving node does
after start-up and after each round of its delivery thread."""

from pathlib import Path

from discnode import memory


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_freed_heap_in_the_middle_of_the_heap_goes_back_to_the_system():
    # 64 MB in 4 kB blocks (malloc's, not Python's small-object arenas), every 32nd kept: the
    # free space is in holes below live blocks, which free() alone never returns.
    blocks = [bytes(4096) + bytes([i % 256]) for i in range(16_000)]
    kept = blocks[::32]
    del blocks
    before = _rss_kib()
    assert memory.release() is True
    after = _rss_kib()
    assert before - after > 20_000, f"released only {before - after} KiB of ~62 MB freed"
    assert len(kept) == 500


def _heaps_after_threads(limit: int | None) -> int:
    """malloc heaps (glibc's malloc_info) in a fresh interpreter once 4 threads have allocated, with
    or without memory.limit_arenas first."""
    import subprocess
    import sys
    code = f"""
import ctypes, tempfile, threading
from discnode import memory
if {limit!r} is not None:
    assert memory.limit_arenas({limit!r})
started, allocated = threading.Barrier(4), threading.Barrier(4)
def work():  # all 4 alive at once, as a node's SQL threads are
    started.wait()
    kept = [bytes(100_000) for _ in range(20)]  # malloc's, not Python's small-object arenas
    allocated.wait()
threads = [threading.Thread(target=work) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
with tempfile.NamedTemporaryFile() as out:
    f = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(f))
    libc.fclose(ctypes.c_void_p(f))
    print(open(out.name).read().count("<heap nr="))
"""
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def test_limit_arenas_keeps_the_threads_in_that_many_heaps():
    """glibc gives each new thread a heap of its own (what a thread frees serves only its own heap);
    limited as the daemon does it, 4 threads share the main heap and at most one more."""
    assert _heaps_after_threads(None) >= 4
    assert _heaps_after_threads(memory.ARENAS) <= memory.ARENAS
    assert _heaps_after_threads(1) == 1


def _sqlite_memory_used() -> int:
    """SQLite's own count of the memory it holds, from the SQLite library Python's sqlite3 uses."""
    import ctypes

    import _sqlite3
    lib = ctypes.CDLL(_sqlite3.__file__)  # its symbols, or those of the libsqlite3 it links
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return int(lib.sqlite3_memory_used())


def test_shrink_empties_a_connections_page_cache(tmp_path):
    """A connection that read a table in bulk keeps up to 2 MB of its pages (SQLite's default
    cache) until it closes; memory.shrink gives them back, and the data reads the same after."""
    import sqlite3
    conn = sqlite3.connect(tmp_path / "big.db", isolation_level=None)
    conn.execute("CREATE TABLE t (x BLOB)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t VALUES (?)", ((bytes([i % 256]) * 3000,) for i in range(2000)))  # ~6 MB
    conn.execute("COMMIT")
    conn.close()
    conn = sqlite3.connect(tmp_path / "big.db", isolation_level=None)
    before = _sqlite_memory_used()
    total = conn.execute("SELECT sum(length(x)) FROM t").fetchone()[0]
    filled = _sqlite_memory_used()
    assert filled - before > 1_500_000, "the read should have filled the page cache"
    memory.shrink(conn)
    assert filled - _sqlite_memory_used() > 1_500_000
    assert conn.execute("SELECT sum(length(x)) FROM t").fetchone()[0] == total == 6_000_000
