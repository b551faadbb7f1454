"""Replay protection: the (key, nonce) pairs of accepted requests, until their signatures expire.

A signed request captured on its way could otherwise be sent again, and be answered again, while its
signature is fresh (at most 60 s plus clock skew). Kept in memory for the check, and in the `nonces`
table so that a restart does not forget them: a replay in the seconds after a restart is refused
like any other. The one module that writes that table.
"""

from __future__ import annotations

from collections import deque

from . import store

Key = tuple[str, str]  # (key ID, nonce)


class Nonces:
    """Nonces seen, each with the time after which its signature can no longer pass the freshness
    checks. Forgetting is amortised O(1) per request: entries leave from the front of a queue."""

    def __init__(self) -> None:
        #: Requests signed (`created`) before this are refused: set after a restore (refuse_before).
        self.floor = 0.0
        self._seen: set[Key] = set()
        self._order: deque[tuple[float, Key]] = deque()
        self.unsaved: list[tuple[str, str, float]] = []
        #: One copy of each key ID: every request brings its own, and a node answering 500 requests
        #: a second remembers 75,000 nonces (the key ID was a third of each one's ~250 bytes).
        self._key_ids: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: object) -> bool:
        return key in self._seen

    def seen(self, key_id: str, nonce: str, forget_after: float, now: float) -> bool:
        """True if this is a replay; otherwise remember it (and queue it for saving)."""
        order = self._order
        while order and order[0][0] < now:
            self._seen.discard(order.popleft()[1])
        key_id = self._key_ids.setdefault(key_id, key_id)  # only verified partners' keys get here
        key = (key_id, nonce)
        if key in self._seen:
            return True
        self._remember(key, forget_after)
        self.unsaved.append((key_id, nonce, forget_after))
        return False

    def _remember(self, key: Key, forget_after: float) -> None:
        self._seen.add(key)
        self._order.append((forget_after, key))

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
            book._remember((book._key_ids.setdefault(key_id, key_id), nonce), forget_after)
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
