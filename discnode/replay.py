"""Replay protection: the (key, nonce) pairs of accepted requests, until their signatures expire.

A signed request captured on its way could otherwise be sent again, and be answered again, while its
signature is fresh (at most 60 s plus clock skew). Kept in memory for the check, and in the `nonces`
table so that a restart does not forget them: a replay in the seconds after a restart is refused
like any other. The one module that writes that table.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import deque

from . import store

Key = tuple[str, str]  # (key ID, nonce)


class Nonces:
    """Nonces seen, each kept until the time after which its signature can no longer pass the
    freshness checks (rounded up to the second). Forgetting is amortised O(1) per request: whole
    seconds leave from the front of a queue.

    Each pair is held as a 64-bit keyed BLAKE2b digest (a Python int), not as its strings: a node
    answering 1,300 requests a second remembers ~200,000 nonces, ~250 bytes each as a pair of
    strings in a set and a queue (49 MB, most of the serving RSS), ~80 bytes as a digest. The key is
    random per process, so no partner can choose nonces that collide with another's; by chance, a
    genuine request is refused as a replay with probability ~N/2^64 (1e-14 at N = 200,000), and a
    refused partner signs again. The `nonces` table keeps the strings (a restart re-reads them)."""

    def __init__(self) -> None:
        #: Requests signed (`created`) before this are refused: set after a restore (refuse_before).
        self.floor = 0.0
        self._key = os.urandom(16)
        self._seen: set[int] = set()
        #: Digests by the second after which they can be forgotten, and those seconds in arrival
        #: order. A second that arrives late is forgotten late (behind a later one), never early.
        self._by_second: dict[int, list[int]] = {}
        self._seconds: deque[int] = deque()
        self.unsaved: list[tuple[str, str, float]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and len(key) == 2 and self._digest(*key) in self._seen

    def _digest(self, key_id: str, nonce: str) -> int:
        data = key_id.encode("utf-8", "surrogatepass") + b"\x00" + nonce.encode("utf-8", "surrogatepass")
        return int.from_bytes(hashlib.blake2b(data, key=self._key, digest_size=8).digest(), "big")

    def _forget_before(self, now: float) -> None:
        seconds, by_second, seen = self._seconds, self._by_second, self._seen
        while seconds and seconds[0] < now:
            for digest in by_second.pop(seconds.popleft()):
                seen.discard(digest)

    def seen(self, key_id: str, nonce: str, forget_after: float, now: float) -> bool:
        """True if this is a replay; otherwise remember it (and queue it for saving)."""
        self._forget_before(now)
        digest = self._digest(key_id, nonce)
        if digest in self._seen:
            return True
        self._remember(digest, forget_after)
        self.unsaved.append((key_id, nonce, forget_after))
        return False

    def _remember(self, digest: int, forget_after: float) -> None:
        self._seen.add(digest)
        second = math.ceil(forget_after)
        bucket = self._by_second.get(second)
        if bucket is None:
            bucket = self._by_second[second] = []
            self._seconds.append(second)
        bucket.append(digest)

    @classmethod
    def load(cls, db: store.DB, now: float) -> "Nonces":
        """The nonces a previous run of this node accepted that are still within their window."""
        book = cls()
        with store.write(db) as conn:
            conn.execute("DELETE FROM nonces WHERE forget_after < ?", [now])
        for key_id, nonce, forget_after in db.execute(
                "SELECT key_id, nonce, forget_after FROM nonces ORDER BY forget_after"):
            if key_id == FLOOR:
                book.floor = max(book.floor, float(nonce))
                continue
            book._remember(book._digest(key_id, nonce), forget_after)
        return book

    def take_unsaved(self) -> list[tuple[str, str, float]]:
        """The nonces accepted since the last call, for the next group commit (on the loop)."""
        rows, self.unsaved = self.unsaved, []
        return rows

    def save(self, db: store.DB, now: float) -> None:
        """Write the queued nonces and drop the expired ones."""
        write(db, self.take_unsaved(), now)


def write(db: store.DB, rows: list[tuple[str, str, float]], now: float) -> None:
    """Write accepted nonces and drop expired ones: call inside the server's group commit (on its
    writer thread), so that it costs no transaction of its own."""
    with store.write(db) as conn:
        conn.executemany("INSERT OR IGNORE INTO nonces (key_id, nonce, forget_after) VALUES (?, ?, ?)", rows)
        conn.execute("DELETE FROM nonces WHERE forget_after < ?", [now])


#: The key ID of the row that holds the replay floor (never a node ID: those are never empty).
FLOOR = ""


def refuse_before(db: store.DB, when: float) -> None:
    """After a restore: refuse every request signed before `when`. The backup cannot know which
    nonces the node accepted after it was made, so a request captured then would otherwise be
    answered again while its signature is fresh. Kept only as long as such a request could be."""
    import math

    from .signing import CLOCK_SKEW, MAX_SIGNATURE_WINDOW
    # `created` is whole seconds: one signed in the restore's own second may have been signed
    # before it, so that second is refused too (a partner signing then is asked to sign again).
    floor = math.ceil(when)
    with store.write(db) as conn:
        conn.execute("INSERT OR REPLACE INTO nonces (key_id, nonce, forget_after) VALUES (?, ?, ?)",
                     [FLOOR, str(floor), floor + 2 * (MAX_SIGNATURE_WINDOW + CLOCK_SKEW)])
