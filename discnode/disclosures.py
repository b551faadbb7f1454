"""The disclosure log: which of this node's records went to which partner, and when.

The record of a disclosure is the audit entry of the reply that carried it (spec section 9.1): a
`served` entry names the partner, and its `records` member the profiles served, each with the
revision it was at, as one string `"ID:REV ID:REV ..."`. One string rather than a list keeps the
cost per reply to a few microseconds (the hash chain canonicalises every entry; a list of 50 pairs
is 150 JSON values, a string is one) and the entry short (about 15 bytes a record).

To answer "who received profile X" without reading the whole log, an index of those entries by
profile. It is derived from the log, never the other way round: the serving path writes nothing but
its one audit entry, and `catch_up` indexes the entries written since it last ran (the daemon calls
it between deliveries; a profile's deletion calls it before asking). Readers (`of_profile`,
`recipients`) read the index and the entries not yet indexed, so they never miss a disclosure and
never write. It outlives the entries it indexes (auditarchive.py archives them). This module holds
the index's only reads and writes (and store.py's migrations, which create and convert it).

The index is three tables (migration 021):
- `disclosure_entries`: one row per indexed entry that disclosed a record (seq, partner, kind,
  time), appended in seq order; the partner by its number in `disclosure_peers`;
- `disclosure_terms`: a contentless FTS5 table (no text kept, `detail=none`: which entries hold a
  term, nothing more), one document per entry, rowid = the entry's seq, one term per record
  disclosed: `term(profile, revision)`. FTS5 gathers a transaction's terms in memory and writes them
  as one sorted segment, merging segments later, so indexing an entry of 50 records is nearly an
  append. The table it replaced, one B-tree row per (profile, entry) with the entry's partner, kind
  and time (~130 bytes), took each of those rows as an insert at a random place in the tree: at
  1.1 million rows, 1.0-1.2 ms of CPU per entry of 50 records against 0.06, 159 kB written to the
  WAL per entry against 1.3, and 124 MB against 2.2 (benchmarks/disclosure_index.py, README).
A profile's disclosures are then: its terms (one per revision disclosed, read from the FTS5
vocabulary by range), each term's entries (MATCH), and those entries' rows: ~9 ms of CPU for a
profile disclosed 5,500 times, where the old table took ~7.
"""

from __future__ import annotations

import itertools
import json
import operator
from typing import Iterable, Iterator, NamedTuple

from . import store

#: The audit event of a reply that disclosed records (server.py), and the detail member naming them.
SERVED = "served"
FIELD = "records"
#: An evidence export (evidence.py) discloses this node's own records too, to police, not to a
#: partner: indexed with no peer (so `recipients` never sends it a notice), in the same ID:REV form.
EVIDENCE = "evidence-exported"
EVIDENCE_FIELD = "disclosed"


class Disclosure(NamedTuple):
    """One reply that carried a profile (or one of its images) to a partner. A named tuple, not a
    frozen dataclass: a profile disclosed 5,000 times is 5,000 of them, and a frozen dataclass
    takes twice as long to make (3.5 ms against 1.6 for 5,500)."""

    peer: str       # the partner's node ID ("" for an evidence export)
    ts: str         # when (the audit entry's time)
    revision: int   # the profile's revision served (0: written before revisions)
    seq: int        # the audit entry's number
    what: str       # "query", "profile", "image-thumb", "image-full", "revealed", "evidence-export"


def encode(served: Iterable[tuple[str, int]]) -> str:
    """The `records` member of a served entry: "ID:REV" pairs, space-separated."""
    return " ".join(f"{pid}:{rev}" for pid, rev in served)


def decode(text: str) -> Iterator[tuple[str, int]]:
    """The pairs of a `records` member; a malformed pair (never written by this node) is skipped."""
    for pair in text.split():
        pid, _, rev = pair.partition(":")
        if pid and rev.isdigit():
            yield pid, int(rev)


#: Audit entries indexed per transaction by catch_up: its memory is one chunk's rows (50 entries
#: of 50 records: 50 documents of 50 terms), and the write lock, which the server's audit commits
#: wait for, is held for one chunk at a time (2.5 ms of CPU at a million rows; 56 before 021). A node serving 500 pages a second writes 15,000 such entries
#: between two runs of catch_up (750,000 rows; held all at once, about 100 MB).
CHUNK = 50


def _served(db: store.DB, after: int, through: int | None = None) -> Iterator[tuple[int, str, str, str, str]]:
    """(seq, peer, what, ts, pairs) of every served entry after `after` (and up to `through`, if
    given) naming records: `pairs` is its records member, as encode() wrote it."""
    bound = "" if through is None else " AND seq <= ?"
    rows = db.execute(f"SELECT seq, ts, event, peer, detail FROM audit WHERE seq > ?{bound} AND event IN (?, ?) "
                      "ORDER BY seq", [after, *([] if through is None else [through]), SERVED, EVIDENCE])
    for seq, ts, event, peer, detail in rows:
        field = FIELD if event == SERVED else EVIDENCE_FIELD
        if f'"{field}"' not in detail:  # most entries (facets, audit heads) name no record: skip the parse
            continue
        try:
            parsed = json.loads(detail)
        except ValueError:
            continue
        text = parsed.get(field)
        if isinstance(text, str):
            yield seq, peer, str(parsed.get("what", "")) if event == SERVED else "evidence-export", ts, text


def _entries(db: store.DB, after: int, through: int | None = None) -> Iterator[tuple[str, int, str, int, str, str]]:
    """(profile, seq, peer, revision, what, ts) of every disclosure in served entries after `after`
    (and up to `through`, if given)."""
    for seq, peer, what, ts, text in _served(db, after, through):
        for pid, rev in decode(text):
            yield pid, seq, peer, rev, what, ts


def _prefix(profile_id: str) -> str:
    """The start of every term of a profile: its ID's UTF-8 bytes in hex, then "r". A profile ID
    is checked against `^[a-z2-7]{12}$` when it is written, but the index takes whatever a `records`
    member names: in hex, any ID is one token of the FTS5 `ascii` tokenizer (letters and digits
    only), case-free, and never FTS5 query syntax. "r" is no hex digit, so no other profile's terms
    share the prefix. (No entry holds a lone surrogate: the audit log's canonical JSON refuses it.)"""
    return profile_id.encode().hex() + "r"


def term(profile_id: str, revision: int) -> str:
    """The index's term for a profile disclosed at a revision."""
    return f"{_prefix(profile_id)}{revision}"


def _indexed_upto(db: store.DB) -> int:
    row = db.execute("SELECT upto FROM disclosures_indexed WHERE id = 1").fetchone()
    return int(row[0]) if row else 0


def catch_up(db: store.DB) -> int:
    """Index the served entries written since the last call, CHUNK entries per transaction;
    returns how many disclosures it added. Safe to call from several processes: the watermark
    moves in the same transaction as the rows it covers (readers add what lies past it)."""
    added = 0
    while True:
        with store.write(db) as conn:
            upto = _indexed_upto(db)
            last = db.execute("SELECT coalesce(max(seq), 0) FROM audit").fetchone()[0]
            if last <= upto:
                return added
            nth = db.execute("SELECT seq FROM audit WHERE seq > ? ORDER BY seq LIMIT 1 OFFSET ?",
                             [upto, CHUNK - 1]).fetchone()
            through = nth[0] if nth and nth[0] < last else last
            entries, documents = [], []
            peers = dict(db.execute("SELECT peer, id FROM disclosure_peers").fetchall())
            for seq, peer, what, ts, text in _served(db, upto, through):
                # The first pair naming a profile counts (as the old table's key kept it). decode()
                # and term(), inline: this loop is most of catch_up's cost.
                first: dict[str, int] = {}
                for pair in text.split():
                    pid, _, rev = pair.partition(":")
                    if pid and rev.isdigit() and pid not in first:
                        first[pid] = int(rev)
                if first:
                    if peer not in peers:
                        peers[peer] = conn.execute("INSERT INTO disclosure_peers (peer) VALUES (?)", [peer]).lastrowid
                    entries.append((seq, peers[peer], what, ts))
                    documents.append((seq, " ".join([f"{pid.encode().hex()}r{rev}" for pid, rev in first.items()])))
                    added += len(first)
            conn.executemany("INSERT INTO disclosure_entries (seq, peer, what, ts) VALUES (?, ?, ?, ?)", entries)
            conn.executemany("INSERT INTO disclosure_terms (rowid, records) VALUES (?, ?)", documents)
            conn.execute("UPDATE disclosures_indexed SET upto = ? WHERE id = 1", [through])


def _terms(db: store.DB, profile_id: str) -> Iterator[tuple[str, int]]:
    """(term, revision): the profile's terms in the index, one per revision disclosed. They lie
    between its prefix and the prefix with "s" for "r" (the vocabulary is read by range, not
    scanned). Each is hex and digits: quoted, one phrase of one token, never query syntax."""
    prefix = _prefix(profile_id)
    for (name,) in db.execute("SELECT term FROM disclosure_vocabulary WHERE term > ? AND term < ?",
                              [prefix, prefix[:-1] + "s"]).fetchall():
        rev = name[len(prefix):]
        if rev.isdigit():
            yield f'"{name}"', int(rev)


def _indexed(db: store.DB, profile_id: str, upto: int) -> list[Disclosure]:
    # FTS5 gives a term's entries in rowid (seq) order; the columns come in Disclosure's order.
    # CROSS JOIN keeps that order of the loops (SQLite's planner may not reorder it): the MATCH once,
    # never once per partner.
    runs = [list(map(Disclosure._make, db.execute(
        "SELECT p.peer, e.ts, ?, e.seq, e.what FROM disclosure_terms t CROSS JOIN disclosure_entries e ON e.seq = t.rowid "
        "CROSS JOIN disclosure_peers p ON p.id = e.peer WHERE disclosure_terms MATCH ? AND t.rowid <= ?",
        [rev, match, upto]))) for match, rev in _terms(db, profile_id)]
    if len(runs) == 1:
        return runs[0]
    return sorted(itertools.chain.from_iterable(runs), key=operator.itemgetter(3))  # by seq


def of_profile(db: store.DB, profile_id: str) -> list[Disclosure]:
    """Every disclosure of the profile (any revision, its images included), oldest first."""
    upto = _indexed_upto(db)
    out = _indexed(db, profile_id, upto)
    seen: set[int] = set()  # past the watermark (the index holds only entries up to it)
    for pid, seq, peer, rev, what, ts in _entries(db, upto):
        if pid == profile_id and seq not in seen:  # the first pair naming the profile counts
            seen.add(seq)
            out.append(Disclosure(peer, ts, rev, seq, what))
    return out


def indexed(db: store.DB) -> list[tuple[str, int, str, int, str, str]]:
    """Every (profile, seq, peer, revision, what, ts) the index holds, for checking it whole: it reads
    every term's every entry (tests)."""
    entries = {seq: (peer, what, ts) for seq, peer, what, ts in db.execute(
        "SELECT e.seq, p.peer, e.what, e.ts FROM disclosure_entries e JOIN disclosure_peers p ON p.id = e.peer")}
    out = []
    for name, seq in db.execute("SELECT term, doc FROM disclosure_vocabulary_instances"):
        hexed, _, rev = name.partition("r")
        peer, what, ts = entries[seq]
        out.append((bytes.fromhex(hexed).decode(), seq, peer, int(rev), what, ts))
    return sorted(out)


def recipients(db: store.DB, profile_id: str) -> set[str]:
    """The partners that received any revision of the profile, or any of its images (evidence
    exports, which went to police and not to a node, are not among them). The same as the peers of
    of_profile, without making a Disclosure of each (every edit of an imported record asks)."""
    upto = _indexed_upto(db)
    found = {peer for match, _ in _terms(db, profile_id) for (peer,) in db.execute(
        "SELECT DISTINCT p.peer FROM disclosure_terms t CROSS JOIN disclosure_entries e ON e.seq = t.rowid "
        "CROSS JOIN disclosure_peers p ON p.id = e.peer WHERE disclosure_terms MATCH ? AND t.rowid <= ?", [match, upto])}
    found.update(peer for pid, _, peer, _, _, _ in _entries(db, upto) if pid == profile_id)
    found.discard("")
    return found
