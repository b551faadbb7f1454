"""Giving freed memory back to the operating system (glibc's malloc_trim).

A serving node's resident memory is what an administrator sizes its machine by. Some of its work
allocates a lot briefly and frees it: compiling a schema validator at start (about 5 MB for a few
milliseconds, of which 0.5 MB is kept), indexing a busy spell's disclosures, a burst of requests.
glibc keeps what was freed in its heap for reuse, so the process stays as large as its largest
moment. malloc_trim(0) returns the free pages at the top and in the middle of the heap; no
library wraps it, so it is called through ctypes. Elsewhere than glibc (musl, macOS) it does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Callable


@functools.cache
def _trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release() -> bool:
    """Return freed heap memory to the system; True if there was any to return."""
    trim = _trim()
    return bool(trim(0)) if trim is not None else False
