"""A serving node's resident memory: what it keeps, and what it gives back.

A serving node's resident memory is what an administrator sizes its machine by. Some of its work
allocates a lot briefly and frees it: compiling a schema validator at start (about 5 MB for a few
milliseconds, of which 0.5 MB is kept), indexing a busy spell's disclosures, a burst of requests.
glibc keeps what was freed in its heap for reuse, so the process stays as large as its largest
moment. malloc_trim(0) returns the free pages at the top and in the middle of the heap; no
library wraps it, so it is called through ctypes (as mallopt below). Elsewhere than glibc (musl,
macOS) they do nothing.

SQLite keeps its own page cache per connection (2 MB by default), filled by whatever that
connection last read in bulk (start-up's checks, the disclosure index, a retention run) and kept
until the connection closes: `shrink` empties it, and what it frees goes back with `release`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sqlite3
from typing import Any

#: mallopt's parameter for the most malloc arenas (glibc's malloc.h).
M_ARENA_MAX = -8
#: The daemon's malloc arenas. Measured with 50 connections (benchmarks/README.md): a heap per
#: thread (glibc's default) ~1.8 MB more at the peak than two; one for all ~0.6 MB less than two, and
#: no difference in CPU per query that the noise showed. Two, so that the SQL threads, which
#: allocate without the GIL, need not all queue for the loop's heap.
ARENAS = 2


@functools.cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def release() -> bool:
    """Return freed heap memory to the system; True if there was any to return."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def limit_arenas(arenas: int) -> bool:
    """At most `arenas` malloc arenas for the whole process; True if glibc took it.

    glibc gives each new thread an arena of its own (up to 8 per core), and memory freed in one
    arena serves only the threads of that arena: a node's four SQL readers, its writer and its
    delivery thread each kept 0.8 to 2.6 MB mapped (6 arenas, 8 MB). Call it before those threads
    start (an arena, once made, stays)."""
    libc = _libc()
    return bool(libc.mallopt(M_ARENA_MAX, arenas)) if libc is not None else False


def shrink(conn: sqlite3.Connection) -> None:
    """Empty this connection's SQLite page cache (its pages can always be read again). Call it on
    the thread that uses the connection, between its transactions."""
    conn.execute("PRAGMA shrink_memory")
