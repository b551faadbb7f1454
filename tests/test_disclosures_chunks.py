"""The disclosure index caught up in chunks holds exactly what one pass over the log gives, and
catching up after a busy spell holds one chunk in memory, not the spell."""

from __future__ import annotations

import tracemalloc

from discnode import audit, disclosures, store
from discnode.home import Config, Home


def _node(tmp_path) -> Home:
    return Home.create(tmp_path / "node", Config(name="Node", host="127.0.0.1", port=1))


def _serve(db: store.DB, entries: int, records: int, first: int = 0) -> None:
    """`entries` served pages of `records` records each (and, between them, entries naming none)."""
    batch = []
    for n in range(first, first + entries):
        pairs = disclosures.encode((f"P{(n * 7 + i) % 997:05d}", n % 3) for i in range(records))
        batch.append(("served", f"PEER{n % 5}", {"method": "POST", "path": "/v1/profiles/query", "status": 200,
                                                "what": "query", "count": records, "records": pairs}))
        if n % 4 == 0:
            batch.append(("served", "PEER1", {"what": "facets", "count": 3, "status": 200}))
            batch.append(("refused", "PEER2", {"status": 403, "reason": "no agreement"}))
    audit.append_many(db, batch)


def _expected(db: store.DB) -> list[tuple]:
    return sorted(set(disclosures._entries(db, 0)))


def _table(db: store.DB) -> list[tuple]:
    return disclosures.indexed(db)


def test_chunked_catch_up_indexes_exactly_what_one_pass_would(tmp_path, monkeypatch):
    home = _node(tmp_path)
    db = home.db
    monkeypatch.setattr(disclosures, "CHUNK", 7)
    _serve(db, 60, 5)
    added = disclosures.catch_up(db)
    assert added == 300 and _table(db) == _expected(db)
    assert disclosures._indexed_upto(db) == audit.head(db)[0]
    _serve(db, 23, 4, first=60)  # more since: indexed from the watermark on
    assert disclosures.catch_up(db) == 92 and _table(db) == _expected(db)
    assert disclosures.catch_up(db) == 0
    # A reader between two chunks sees every disclosure (index up to the watermark, the log after).
    _serve(db, 10, 3, first=83)
    for pid in {row[0] for row in _expected(db)}:
        want = sorted((r[2], r[5], r[3], r[1], r[4]) for r in _expected(db) if r[0] == pid)
        got = sorted((d.peer, d.ts, d.revision, d.seq, d.what) for d in disclosures.of_profile(db, pid))
        assert got == want


def _catch_up_traced(db: store.DB) -> tuple[int, int]:
    """catch_up's count, and the peak of memory Python allocated while it ran."""
    tracemalloc.start()
    try:
        added = disclosures.catch_up(db)
        return added, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_catching_up_after_a_busy_spell_holds_one_chunk_in_memory(tmp_path):
    """1,000 pages of 50 records (50,000 rows) are indexed with at most
    a few chunks' worth of memory (7.8 MB before it went by chunks)."""
    home = _node(tmp_path)
    db = home.db
    for start in range(0, 1000, 250):
        _serve(db, 250, 50, first=start)
    added, peak = _catch_up_traced(db)
    assert added == 50_000
    assert peak < 3_000_000, f"catch_up held {peak / 1e6:.1f} MB"


def test_catching_up_after_walks_of_wide_pages_holds_under_three_megabytes(tmp_path):
    """A walk's served entries name up to 1,000 records each (spec 8.1, wide pages): a chunk of 50
    of them is 50 index documents of ~1,000 terms each, held at once."""
    home = _node(tmp_path)
    db = home.db
    _serve(db, 60, 990)
    added, peak = _catch_up_traced(db)
    assert added == 60 * 990 and _table(db) == _expected(db) and disclosures._indexed_upto(db) == audit.head(db)[0]
    assert peak < 3_000_000, f"catch_up held {peak / 1e6:.1f} MB"
