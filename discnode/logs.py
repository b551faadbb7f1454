"""Log lines that an attacker cannot multiply: the first of a kind per minute, then one count.

Anyone who can open a connection can make aiohttp log (a malformed request line is an "Error
handling request" with a 566-byte traceback) and asyncio log (failed TLS handshakes); a flood of
either once grew a node's log by ~88 MB in 80 s. `Summarise` lets the first record of each kind
through in a window, drops the rest, and says how many it dropped on the first record of the next
window. `OneLine` replaces the tracebacks of the HTTP server's "bad request" records with the
exception's one-line message: a peer's bad bytes are its problem, not a bug of ours.
"""

from __future__ import annotations

import logging
import threading
import time

WINDOW = 60.0


class Summarise(logging.Filter):
    def __init__(self, window: float = WINDOW) -> None:
        super().__init__()
        self.window = window
        self._lock = threading.Lock()
        self._kinds: dict[tuple[str, str], tuple[float, int]] = {}  # kind -> (window start, dropped)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.CRITICAL:
            return True
        kind = (record.name, str(record.msg))
        now = time.monotonic()
        with self._lock:
            start, dropped = self._kinds.get(kind, (-self.window, 0))
            if now - start < self.window:
                self._kinds[kind] = (start, dropped + 1)
                return False
            if len(self._kinds) > 1000:  # kinds are format strings, few; never grow without end
                self._kinds.clear()
            self._kinds[kind] = (now, 0)
        if dropped:
            record.msg = f"{record.msg} (and {dropped} more like it in the last {int(now - start)} s, not shown)"
        return True


class OneLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            detail = f"{type(exc).__name__}: {str(exc)[:200]!r}".replace("%", "%%")
            record.msg = f"{record.msg}: {detail}"
            record.exc_info = None
            record.exc_text = None
        return True


def guard(logger: logging.Logger, *, one_line: bool = False) -> logging.Logger:
    """Give `logger` (once) the summarising filter, and optionally the one-line one."""
    if not any(isinstance(f, Summarise) for f in logger.filters):
        logger.addFilter(Summarise())  # first: it counts kinds by the message before OneLine adds to it
        if one_line:
            logger.addFilter(OneLine())
    return logger
