"""What the disclosure log (discnode/disclosures.py) costs a served reply, against the reply as it
was before (an audit entry with `count` only, the page read without IDs and revisions).

    python benchmarks/disclosures.py               # prints a table, writes benchmarks/results/disclosures.json
    python benchmarks/disclosures.py --runs 300 --out FILE.json

Per reply of N records it times, on a real node database of 2,000 profiles: reading the page
(search_raw before, search_served now, which also has SQLite join each record's ID and revision
into the `records` member), and appending the audit entry to the hash chain in a group commit of 20
entries (as the server's writer does under load), per entry. Process CPU time (the machine is
shared), median of --runs, before and after in the same run, alternating which goes first.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from discnode import audit, disclosures, profiles, store  # noqa: E402
from discnode.home import Config, Home  # noqa: E402
from discnode.query import Query  # noqa: E402
from discnode.signing import sign_document  # noqa: E402

PEER = "AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD"
BATCH = 20  # entries per group commit


def build(home: Home, count: int) -> None:
    records = [sign_document(profiles.build_record({"first_name": f"First{i}", "last_name": f"Last{i:05d}"},
                                                   home.node_id), home.identity) for i in range(count)]
    store.put_profiles(home.db, records, identity=home.identity)  # with their withheld views (handling.py)


def timed(fn: Callable[[], Any]) -> float:
    started = time.process_time()
    fn()
    return time.process_time() - started


def measure(home: Home, runs: int, limit: int) -> dict[str, float]:
    query = Query.from_wire({"limit": limit}).checked()
    today = dt.date.today()
    out: dict[str, list[float]] = {k: [] for k in ("read_before", "read_after", "encode", "audit_before",
                                                   "audit_after")}
    for run in range(runs):
        texts: list[str] = []
        served = ""

        def before_read() -> None:
            texts[:] = store.search_raw(home.db, query, today, served_by=home.node_id)

        def after_read() -> None:
            nonlocal served
            texts[:], served = store.search_served(home.db, query, today, home.node_id)

        reads = [("read_before", before_read), ("read_after", after_read)]
        for name, fn in reads if run % 2 else reversed(reads):  # alternate which goes first
            out[name].append(timed(fn))
        # search_served's string is what goes into the entry; the pairs are joined by SQLite (inside
        # read_after); encode() is what the one-profile and image replies use.
        pairs = list(disclosures.decode(served))
        out["encode"].append(timed(lambda: disclosures.encode(pairs)))
        encoded = [served]
        where = {"method": "POST", "path": "/v1/profiles/query", "status": 200}
        plain = [("served", PEER, {**where, "what": "query", "count": len(texts)})] * BATCH
        named = [("served", PEER, {**where, "what": "query", "count": len(texts), "records": encoded[0]})] * BATCH
        appends = [("audit_before", plain), ("audit_after", named)]
        for name, entries in appends if run % 2 else reversed(appends):
            out[name].append(timed(lambda: audit.append_many(home.db, entries)) / BATCH)
    return {k: statistics.median(v) * 1e6 for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cost of the disclosure log per served reply")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--profiles", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "disclosures.json")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Home.create(Path(tmp) / "node", Config(name="Bench BCRP", host="127.0.0.1", port=8443))
        build(home, args.profiles)
        for limit in (1, 50, 200):
            us = measure(home, args.runs, limit)
            before = us["read_before"] + us["audit_before"]
            after = us["read_after"] + us["audit_after"]
            rows.append({"records": limit, **{f"{k}_us": round(v, 1) for k, v in us.items()},
                         "before_us": round(before, 1), "after_us": round(after, 1),
                         "added_us": round(after - before, 1), "ratio": round(after / before, 2)})
        entry_bytes = home.db.execute("SELECT length(detail) FROM audit ORDER BY seq DESC LIMIT 1").fetchone()[0]
        home.close()
    print(f"{'records':>7} {'read before':>11} {'read after':>10} {'(encode)':>8} {'audit before':>12} "
          f"{'audit after':>11} {'before':>8} {'after':>8} {'added':>7} {'ratio':>5}   (µs of CPU per reply)")
    for r in rows:
        print(f"{r['records']:>7} {r['read_before_us']:>11} {r['read_after_us']:>10} {r['encode_us']:>8} "
              f"{r['audit_before_us']:>12} {r['audit_after_us']:>11} {r['before_us']:>8} {r['after_us']:>8} "
              f"{r['added_us']:>7} {r['ratio']:>5}")
    print(f"audit detail of a 200-record reply: {entry_bytes} bytes")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": args.runs, "profiles": args.profiles, "rows": rows,
                                    "detail_bytes_200": entry_bytes}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
