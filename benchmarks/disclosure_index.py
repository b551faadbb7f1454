"""What the disclosure index (discnode/disclosures.py) costs to keep and to ask, in the layout of
migration 021 (an entry table and a contentless FTS5 table of terms) against the layout before it
(one B-tree row per profile and entry), on one audit log, in the same run.

    python benchmarks/disclosure_index.py              # 20,000 served entries of 50 records (1M rows)
    python benchmarks/disclosure_index.py --fast       # small; the test suite runs this (figures never asserted)
    python benchmarks/disclosure_index.py --entries 40000 --rounds 10 --out FILE.json

It writes one node's audit log (real hash chain, `served` entries of 50 records each drawn from
--profiles profiles; one "hot" profile in a quarter of them, so that at 20,000 entries it was
disclosed ~5,000 times), copies the database twice, and indexes it with each layout's catch_up
(the old one is main's code before 021, kept below). Then, --rounds times, the same --batch new
entries are appended to both copies and each copy's catch_up is timed, alternating which goes
first. Figures are process CPU time (the machine is shared): catch_up's CPU per served entry, the
longest and the median hold of the write lock by one catch_up chunk (the server's audit commits wait
for it), what catch_up writes to the WAL per entry (kB; each of those pages is written again by the
next checkpoint), `of_profile` of the hot profile (median of 20), and the index's size on disk (dbstat).
Both layouts' answers for every profile are asserted equal first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from discnode import audit, disclosures, store  # noqa: E402
from discnode.home import Config, Home  # noqa: E402

PEER = "dn1" + "x" * 49
PER_ENTRY = 50
ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


# --- the layout before migration 021 (main's disclosures.py, its table and its two queries) ----

OLD_TABLE = ("CREATE TABLE disclosures (profile_id TEXT NOT NULL, seq INTEGER NOT NULL, peer TEXT NOT NULL, "
             "revision INTEGER NOT NULL, what TEXT NOT NULL, ts TEXT NOT NULL, PRIMARY KEY (profile_id, seq)) "
             "WITHOUT ROWID")


def old_catch_up(db: store.DB) -> int:
    added = 0
    while True:
        with store.write(db) as conn:
            upto = disclosures._indexed_upto(db)
            last = db.execute("SELECT coalesce(max(seq), 0) FROM audit").fetchone()[0]
            if last <= upto:
                return added
            nth = db.execute("SELECT seq FROM audit WHERE seq > ? ORDER BY seq LIMIT 1 OFFSET ?",
                             [upto, disclosures.CHUNK - 1]).fetchone()
            through = nth[0] if nth and nth[0] < last else last
            rows = list(disclosures._entries(db, upto, through))
            conn.executemany("INSERT OR IGNORE INTO disclosures (profile_id, seq, peer, revision, what, ts) "
                             "VALUES (?, ?, ?, ?, ?, ?)", rows)
            conn.execute("UPDATE disclosures_indexed SET upto = ? WHERE id = 1", [through])
            added += len(rows)


def old_of_profile(db: store.DB, profile_id: str) -> list[disclosures.Disclosure]:
    upto = disclosures._indexed_upto(db)
    out = [disclosures.Disclosure(peer, ts, rev, seq, what) for seq, peer, rev, what, ts in db.execute(
        "SELECT seq, peer, revision, what, ts FROM disclosures WHERE profile_id = ? AND seq <= ? ORDER BY seq",
        [profile_id, upto])]
    out += [disclosures.Disclosure(peer, ts, rev, seq, what) for pid, seq, peer, rev, what, ts
            in disclosures._entries(db, upto) if pid == profile_id]
    return out


OLD_TABLES = ("disclosures",)
NEW_TABLES = ("disclosure_entries", "disclosure_peers", "disclosure_terms_data", "disclosure_terms_idx", "disclosure_terms_config")


# --- the run ----------------------------------------------------------------------------------

class Holds:
    """The wall-clock and CPU time of every write transaction (store.write) while it is active."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self._real = store.write

    @contextlib.contextmanager
    def _timed(self, db: store.DB) -> Iterator[Any]:
        outer = db.conn.in_transaction
        started, cpu = time.perf_counter(), time.thread_time()
        with self._real(db) as conn:
            yield conn
        if not outer:
            self.wall.append(time.perf_counter() - started)
            self.cpu.append(time.thread_time() - cpu)

    @contextlib.contextmanager
    def active(self) -> Iterator["Holds"]:
        store.write = self._timed  # type: ignore[assignment]
        try:
            yield self
        finally:
            store.write = self._real  # type: ignore[assignment]


def serve(dbs: list[store.DB], pids: list[str], entries: int, rng: random.Random) -> None:
    """`entries` served pages of PER_ENTRY records, written to the first database and copied as
    they are (times, hashes) to the others."""
    for start in range(0, entries, 500):
        batch = []
        for _ in range(min(500, entries - start)):
            page = rng.sample(pids[1:], PER_ENTRY)
            if rng.random() < 0.25:
                page[0] = pids[0]
            pairs = disclosures.encode((pid, rng.randint(1, 3)) for pid in page)
            batch.append(("served", PEER, {"method": "POST", "path": "/v1/profiles/query", "status": 200,
                                           "what": "query", "count": PER_ENTRY, "records": pairs}))
        first = audit.head(dbs[0])[0]
        audit.append_many(dbs[0], batch)
        rows = dbs[0].execute("SELECT * FROM audit WHERE seq > ? ORDER BY seq", [first]).fetchall()
        for db in dbs[1:]:
            with store.write(db) as conn:
                conn.executemany(f"INSERT INTO audit VALUES ({','.join('?' * len(rows[0]))})", rows)


def cpu_of(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.process_time()
    out = fn()
    return time.process_time() - started, out


def size_of(db: store.DB, tables: tuple[str, ...]) -> int:
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    marks = ",".join("?" * len(tables))
    # An index of a table (the entry table's rowid has none; FTS5's shadow tables have theirs) counts too.
    return int(db.execute(f"SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN ({marks}) OR name IN "
                          f"(SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN ({marks}))",
                          [*tables, *tables]).fetchone()[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The disclosure index: old layout against migration 021's")
    parser.add_argument("--entries", type=int, default=20_000, help="served entries indexed before timing")
    parser.add_argument("--profiles", type=int, default=600)
    parser.add_argument("--batch", type=int, default=200, help="entries appended per round")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--fast", action="store_true", help="a small log (for the test suite)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "disclosure_index.json")
    args = parser.parse_args(argv)
    if args.fast:
        args.entries, args.profiles, args.batch, args.rounds = 400, 80, 50, 3
    rng = random.Random(16)
    pids = ["".join(rng.choices(ALPHABET, k=12)) for _ in range(args.profiles)]
    with tempfile.TemporaryDirectory() as tmp:
        home = Home.create(Path(tmp) / "node", Config(name="Bench BCRP", host="127.0.0.1", port=8443))
        home.close()
        for side in ("old", "new"):
            shutil.copytree(Path(tmp) / "node", Path(tmp) / side)
        old, new = Home.open(Path(tmp) / "old"), Home.open(Path(tmp) / "new")
        with store.write(old.db):  # the old layout, as migration 013 made it
            old.db.execute("DROP TABLE disclosure_vocabulary")
            old.db.execute("DROP TABLE disclosure_vocabulary_instances")
            old.db.execute("DROP TABLE disclosure_terms")
            old.db.execute("DROP TABLE disclosure_entries")
            old.db.execute("DROP TABLE disclosure_peers")
            old.db.execute(OLD_TABLE)
        serve([old.db, new.db], pids, args.entries, rng)
        fill = {"old": cpu_of(lambda: old_catch_up(old.db))[0], "new": cpu_of(lambda: disclosures.catch_up(new.db))[0]}
        cpu: dict[str, list[float]] = {"old": [], "new": []}
        holds = {"old": Holds(), "new": Holds()}
        wal: dict[str, list[float]] = {"old": [], "new": []}  # bytes written to the WAL per entry
        for r in range(args.rounds):
            serve([old.db, new.db], pids, args.batch, rng)
            sides = [("old", lambda: old_catch_up(old.db)), ("new", lambda: disclosures.catch_up(new.db))]
            for name, fn in sides if r % 2 else reversed(sides):
                db = old.db if name == "old" else new.db
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the WAL empty, and no checkpoint inside
                db.execute("PRAGMA wal_autocheckpoint=0")
                with holds[name].active():
                    cpu[name].append(cpu_of(fn)[0] / args.batch)
                wal[name].append((Path(tmp) / name / "discnode.db-wal").stat().st_size / args.batch)
                db.execute("PRAGMA wal_autocheckpoint=1000")
        total = args.entries + args.rounds * args.batch
        # Same answer: every profile, both layouts (and the hot one's count).
        for pid in pids:
            assert old_of_profile(old.db, pid) == disclosures.of_profile(new.db, pid), pid
        hits = len(disclosures.of_profile(new.db, pids[0]))
        lookup = {"old": statistics.median(cpu_of(lambda: old_of_profile(old.db, pids[0]))[0] for _ in range(20)),
                  "new": statistics.median(cpu_of(lambda: disclosures.of_profile(new.db, pids[0]))[0] for _ in range(20))}
        disk = {"old": size_of(old.db, OLD_TABLES), "new": size_of(new.db, NEW_TABLES)}
        old.close()
        new.close()
    rows = {}
    for name in ("old", "new"):
        rows[name] = {"fill_ms_per_entry": round(fill[name] / args.entries * 1e3, 4),
                      "catch_up_ms_per_entry": round(statistics.median(cpu[name]) * 1e3, 4),
                      "chunk_hold_ms_median": round(statistics.median(holds[name].wall) * 1e3, 2),
                      "chunk_hold_ms_max": round(max(holds[name].wall) * 1e3, 2),
                      "chunk_cpu_ms_median": round(statistics.median(holds[name].cpu) * 1e3, 2),
                      "wal_kb_per_entry": round(statistics.median(wal[name]) / 1e3, 2),
                      "of_profile_ms": round(lookup[name] * 1e3, 2),
                      "index_mb": round(disk[name] / 1e6, 2),
                      "bytes_per_entry": round(disk[name] / total)}
    print(f"{total:,} served entries of {PER_ENTRY} records ({total * PER_ENTRY:,} rows), {args.profiles} profiles; "
          f"hot profile disclosed {hits:,} times; chunk = {disclosures.CHUNK} entries")
    print(f"{'layout':>6} {'fill':>8} {'catch_up':>9} {'chunk hold p50':>14} {'max':>7} {'chunk CPU':>9} "
          f"{'WAL kB':>7} {'of_profile':>10} {'index MB':>8} {'B/entry':>8}   (ms of CPU per served entry unless said)")
    for name, r in rows.items():
        print(f"{name:>6} {r['fill_ms_per_entry']:>8} {r['catch_up_ms_per_entry']:>9} {r['chunk_hold_ms_median']:>14} "
              f"{r['chunk_hold_ms_max']:>7} {r['chunk_cpu_ms_median']:>9} {r['wal_kb_per_entry']:>7} "
              f"{r['of_profile_ms']:>10} {r['index_mb']:>8} {r['bytes_per_entry']:>8}")
    ratios = {k: round(rows["new"][k] / rows["old"][k], 3) if rows["old"][k] else None for k in rows["old"]}
    print(f"{'ratio':>6} " + " ".join(f"{ratios[k]}" for k in rows["old"]) + "   (new / old)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"entries": total, "records_per_entry": PER_ENTRY, "profiles": args.profiles,
                                    "hot_profile_disclosures": hits, "chunk": disclosures.CHUNK, "rows": rows,
                                    "ratios": ratios}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
