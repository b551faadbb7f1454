"""The disclosure index (two tables since migration 021) answers `of_profile` and `recipients`
exactly as a plain reading of every served entry does, whatever was served, whenever it caught up,
whatever was archived; a node indexed in the old layout answers the same once migrated; and no
profile ID, however hostile, is read as FTS5 query syntax."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from discnode import audit, auditarchive, disclosures, store
from discnode.home import Config, Home

#: IDs a partner's reply or an old import could never carry, but the index must take as plain words:
#: FTS5 syntax (quotes, operators, column filters, prefixes, NEAR), case twins, non-ASCII.
HOSTILE = ['"', 'a"b', "a OR b", "NEAR(x", "*", "x*", "records", "records:x", "^x", "-", "AND", "NOT",
           "a'b", ")", "(", "P1", "p1", "ÄÖ", "日本", "abcdefghijkl", "a+b", "{records}", "r", "0r"]
PEERS = ["", "PEER-A", "PEER-B", "PEER-C"]
WHATS = ["query", "profile", "image-thumb", "image-full", "revealed"]
#: Pairs no node writes (decode skips them), mixed in to show they are skipped the same way.
MALFORMED = ["x:", ":3", "nocolon", "a:b:3", "x:-1", "x:1.5"]


def _node(path: Path) -> Home:
    return Home.create(path / "node", Config(name="Node", host="127.0.0.1", port=1))


def _reference(log: list[tuple], profile_id: str) -> list[disclosures.Disclosure]:
    """Every disclosure of the profile read straight from the entries (each entry's first pair naming
    it), oldest first: what the index must answer."""
    out = []
    for seq, ts, event, peer, detail in log:
        parsed = json.loads(detail)
        text = parsed.get(disclosures.FIELD if event == disclosures.SERVED else disclosures.EVIDENCE_FIELD)
        if event not in (disclosures.SERVED, disclosures.EVIDENCE) or not isinstance(text, str):
            continue
        what = str(parsed.get("what", "")) if event == disclosures.SERVED else "evidence-export"
        for pair in text.split():
            pid, _, rev = pair.partition(":")
            if pid and pid == profile_id and rev.isdigit():
                out.append(disclosures.Disclosure(peer, ts, int(rev), seq, what))
                break
    return out


pairs = st.lists(st.one_of(st.tuples(st.sampled_from(HOSTILE[:8]) | st.text(min_size=1, max_size=6) | st.sampled_from(HOSTILE),
    st.integers(0, 4)), st.sampled_from(MALFORMED)), max_size=8)
served = st.tuples(st.just("serve"), st.lists(st.tuples(st.sampled_from(PEERS[1:]), st.sampled_from(WHATS), pairs,
                                                         st.booleans()), min_size=1, max_size=6))
steps = st.lists(st.one_of(served, st.tuples(st.just("evidence"), pairs), st.tuples(st.just("catch_up"),
                 st.integers(1, 5)), st.tuples(st.just("ask_while_writing"), st.integers(1, 5)),
                 st.just(("archive",))), min_size=1, max_size=12)


def _text(items: list) -> str:
    return " ".join(x if isinstance(x, str) else f"{x[0]}:{x[1]}" for x in items)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps)
def test_the_index_answers_as_the_served_entries_do(steps):
    with tempfile.TemporaryDirectory() as tmp:
        home = _node(Path(tmp))
        db = home.db
        log: list[tuple] = []  # every entry written, kept here as archiving takes them from the table
        chunk = disclosures.CHUNK
        try:
            for step in steps:
                before = audit.head(db)[0]
                if step[0] == "serve":
                    audit.append_many(db, [("served", peer, {"what": what, "count": len(items), "status": 200,
                                                             **({"records": _text(items)} if named else {})})
                                           for peer, what, items, named in step[1]])
                elif step[0] == "evidence":
                    audit.append(db, disclosures.EVIDENCE, "", file="/x", **{disclosures.EVIDENCE_FIELD: _text(step[1])})
                elif step[0] == "archive":
                    auditarchive.archive(home, "9999-01-01T00:00:00Z")  # every entry but the last
                else:
                    disclosures.CHUNK = step[1]
                    if step[0] == "catch_up":
                        disclosures.catch_up(db)
                    else:  # as a profile's deletion does: catch up and ask in one transaction
                        with store.write(db):
                            disclosures.catch_up(db)
                            for pid in HOSTILE[:6]:
                                assert disclosures.of_profile(db, pid) == _reference(log, pid)
                log += db.execute("SELECT seq, ts, event, peer, detail FROM audit WHERE seq > ? ORDER BY seq",
                                  [before]).fetchall()
            named = {pair.partition(":")[0] for *_, detail in log for pair in
                     str(json.loads(detail).get("records", json.loads(detail).get("disclosed", ""))).split()}
            for pid in sorted(named | set(HOSTILE)):
                want = _reference(log, pid)
                assert disclosures.of_profile(db, pid) == want, pid
                assert disclosures.recipients(db, pid) == {d.peer for d in want if d.peer}
            upto = disclosures._indexed_upto(db)
            assert disclosures.indexed(db) == sorted(
                (pid, d.seq, d.peer, d.revision, d.what, d.ts) for pid in named for d in _reference(log, pid)
                if d.seq <= upto)
        finally:
            disclosures.CHUNK = chunk
            home.close()


def _old_catch_up(db: store.DB) -> None:
    """The index as main wrote it before migration 021 (one pass, the same rows)."""
    with store.write(db) as conn:
        upto = disclosures._indexed_upto(db)
        last = db.execute("SELECT coalesce(max(seq), 0) FROM audit").fetchone()[0]
        conn.executemany("INSERT OR IGNORE INTO disclosures (profile_id, seq, peer, revision, what, ts) "
                         "VALUES (?, ?, ?, ?, ?, ?)", list(disclosures._entries(db, upto, last)))
        conn.execute("UPDATE disclosures_indexed SET upto = ? WHERE id = 1", [last])


def _old_of_profile(db: store.DB, pid: str) -> list[disclosures.Disclosure]:
    upto = disclosures._indexed_upto(db)
    out = [disclosures.Disclosure(peer, ts, rev, seq, what) for seq, peer, rev, what, ts in db.execute(
        "SELECT seq, peer, revision, what, ts FROM disclosures WHERE profile_id = ? AND seq <= ? ORDER BY seq",
        [pid, upto])]
    return out + [disclosures.Disclosure(peer, ts, rev, seq, what) for p, seq, peer, rev, what, ts
                  in disclosures._entries(db, upto) if p == pid]


def test_a_node_indexed_in_the_old_layout_answers_the_same_once_migrated(tmp_path, monkeypatch):
    everything = list(store.MIGRATIONS)
    monkeypatch.setattr(store, "MIGRATIONS", [m for m in everything if m[0] != "021_disclosure_entries"])
    home = _node(tmp_path)
    db = home.db
    pids = ["abcdefghijkl", "mnopqrstuvwx", "P1", "p1", 'a"b', "ÄÖ"]
    for n in range(40):
        items = [(pids[(n + i) % len(pids)], (n + i) % 4) for i in range(n % 5 + 1)]
        audit.append_many(db, [("served", f"PEER{n % 3}", {"what": "query", "count": len(items),
                                                         "records": disclosures.encode(items)})])
        if n == 24:
            _old_catch_up(db)
            # The indexed entries leave the live table, as archiving does (its own code is 021's).
            with store.write(db) as conn:
                conn.execute("INSERT INTO audit_archives (upto, first, head, file, checkpoint, created) "
                             "VALUES (?, 1, '', 'x', '{}', '')", [n])
                audit.drop_archived(conn, n)
    before = {pid: _old_of_profile(db, pid) for pid in pids}
    assert all(before.values()) and any(d.seq <= 24 for d in before["P1"])
    monkeypatch.setattr(store, "MIGRATIONS", everything)
    assert store.migrate(db) == ["021_disclosure_entries"]
    assert not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'disclosures'").fetchone()
    for pid in pids:
        assert disclosures.of_profile(db, pid) == before[pid]
    disclosures.catch_up(db)  # and the entries past the old watermark, indexed in the new layout
    for pid in pids:
        assert disclosures.of_profile(db, pid) == before[pid]
    home.close()


def test_hostile_profile_ids_are_words_not_fts5_syntax(tmp_path):
    home = _node(tmp_path)
    db = home.db
    words = [pid for pid in HOSTILE if " " not in pid and ":" not in pid]  # what a `records` pair can name
    items = [(pid, 1) for pid in words]
    audit.append_many(db, [("served", "PEER-A", {"what": "query", "count": len(items),
                                                 "records": disclosures.encode(items)})])
    disclosures.catch_up(db)
    for pid in words:
        (only,) = disclosures.of_profile(db, pid)  # found, once, and no error from FTS5's parser
        assert only.revision == 1 and only.peer == "PEER-A"
    held = {name for (name,) in db.execute("SELECT term FROM disclosure_vocabulary")}
    assert held == {disclosures.term(pid, 1) for pid in words}  # letters and digits only, one term each
    assert all(name.isascii() and name.isalnum() for name in held)
    for absent in ['"', "a", "OR", "*", "records", "NEAR", "日", "p", "P", "a b"]:
        if absent not in words:
            assert disclosures.of_profile(db, absent) == []
    home.close()
