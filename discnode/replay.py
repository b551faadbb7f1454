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
from array import array
from collections import deque

from . import store

Key = tuple[str, str]  # (key ID, nonce)


class Nonces:
    """Nonces seen, each kept until the time after which its signature can no longer pass the
    freshness checks (rounded up to the second). Forgetting is amortised O(1) per request: whole
    seconds leave from the front of a queue.

    Each pair is held as a 64-bit keyed BLAKE2b digest, not as its strings: a node answering 1,300
    requests a second remembers ~200,000 nonces, ~250 bytes each as a pair of strings in a set and a
    queue (49 MB, most of the serving RSS). The key is random per process, so no partner can choose
    nonces that collide with another's; by chance, a genuine request is refused as a replay with
    probability ~N/2^64 (1e-14 at N = 200,000), and a refused partner signs again. The `nonces`
    table keeps the strings (a restart re-reads them).

    The digests live in flat arrays of machine words, not in a set of Python ints: a set costs
    ~86 bytes a nonce (a 32-byte int object, its slot, its place in a second's list), this ~28-40
    (8 in its second's array, 16-32 in the table). A compact hash set of plain integers with
    deletion is what no library here offers (`set` holds objects); written by hand, it is a linear
    probing table kept at most half full, deleting by backward shift so that no tombstones build up
    (Knuth, TAOCP vol. 3, 6.4, Algorithm R). 0 marks an empty slot, so a digest of 0 is stored as 1."""

    #: The table's smallest size (slots); it doubles past half full and halves below an eighth.
    MIN_SLOTS = 1024

    def __init__(self) -> None:
        #: Requests signed (`created`) before this are refused: set after a restore (refuse_before).
        self.floor = 0.0
        self._key = os.urandom(16)
        self._table = array("Q", bytes(8 * self.MIN_SLOTS))
        self._mask = self.MIN_SLOTS - 1
        self._count = 0
        #: Digests by the second after which they can be forgotten, and those seconds in arrival
        #: order. A second that arrives late is forgotten late (behind a later one), never early.
        self._by_second: dict[int, array[int]] = {}
        self._seconds: deque[int] = deque()
        self.unsaved: list[tuple[str, str, float]] = []

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: object) -> bool:
        if not (isinstance(key, tuple) and len(key) == 2):
            return False
        digest = self._digest(*key)
        return self._table[self._slot(digest)] == digest

    def _digest(self, key_id: str, nonce: str) -> int:
        data = key_id.encode("utf-8", "surrogatepass") + b"\x00" + nonce.encode("utf-8", "surrogatepass")
        return int.from_bytes(hashlib.blake2b(data, key=self._key, digest_size=8).digest(), "big") or 1

    def _slot(self, digest: int) -> int:
        """Where `digest` is, or the empty slot where it would go."""
        table, mask = self._table, self._mask
        i = digest & mask  # keyed BLAKE2b: the low bits are as uniform as any
        while True:
            held = table[i]
            if held == digest or held == 0:
                return i
            i = (i + 1) & mask

    def _add(self, digest: int) -> None:
        i = self._slot(digest)
        if self._table[i] == 0:
            self._table[i] = digest
            self._count += 1
            if 2 * self._count > len(self._table):
                self._resize(2 * len(self._table))

    def _delete(self, digest: int) -> None:
        table, mask = self._table, self._mask
        i = self._slot(digest)
        if table[i] != digest:
            return
        j = i
        while True:  # move back every later entry of the run that may no longer be found past i
            j = (j + 1) & mask
            held = table[j]
            if held == 0:
                break
            home = held & mask
            # It stays only if its home lies cyclically in (i, j]: probing from there never passes i.
            stays = (i < home <= j) if i <= j else (home > i or home <= j)
            if not stays:
                table[i] = held
                i = j
        table[i] = 0
        self._count -= 1

    def _resize(self, slots: int) -> None:
        self._table = array("Q", bytes(8 * slots))
        self._mask = slots - 1
        self._count = 0
        for bucket in self._by_second.values():
            for digest in bucket:
                self._add(digest)

    def _forget_before(self, now: float) -> None:
        seconds, by_second = self._seconds, self._by_second
        if not seconds or seconds[0] >= now:
            return
        while seconds and seconds[0] < now:
            for digest in by_second.pop(seconds.popleft()):
                self._delete(digest)
        if 8 * self._count < len(self._table) and len(self._table) > self.MIN_SLOTS:
            self._resize(max(self.MIN_SLOTS, len(self._table) // 2))  # give a burst's memory back

    def seen(self, key_id: str, nonce: str, forget_after: float, now: float) -> bool:
        """True if this is a replay; otherwise remember it (and queue it for saving)."""
        self._forget_before(now)
        digest = self._digest(key_id, nonce)
        if self._table[self._slot(digest)] == digest:
            return True
        self._remember(digest, forget_after)
        self.unsaved.append((key_id, nonce, forget_after))
        return False

    def _remember(self, digest: int, forget_after: float) -> None:
        second = math.ceil(forget_after)
        bucket = self._by_second.get(second)
        if bucket is None:
            bucket = self._by_second[second] = array("Q")
            self._seconds.append(second)
        if self._table[self._slot(digest)] != digest:  # the same digest twice (a reload) is held once
            bucket.append(digest)
            self._add(digest)

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
