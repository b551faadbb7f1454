"""`discnode search` as a whole command, answered by the running node, against the same command
run cold and against `discnode profile list` on one central database, in the same run.

    python benchmarks/cli_search.py                 # 30 partnerships x 600 profiles
    python benchmarks/cli_search.py --fast          # a small network (the test suite runs this)

Every figure is a whole process (`discnode ...` started, output to /dev/null, exit), as an
administrator types it: interpreter start, imports, the query, the rendering. "served" is with
`discnode serve` running for the hub (the command is forwarded over its Unix socket); "cold" is the
same command with DISCNODE_NO_DAEMON=1 (the full CLI, fresh TLS connections: today's path). Also:
what keep-alive costs the partners (new audit entries while the hub idles) and whether an idle
hub's search is still warm after the 15 s in which partners close idle connections.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import localnet  # noqa: E402
from localnet import command_ms, pct  # noqa: E402


def audit_count(path: Path) -> int:
    from discnode import store
    db = store.connect(path / "discnode.db")
    try:
        return db.execute("SELECT count(*) FROM audit").fetchone()[0]
    finally:
        db.conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--profiles", type=int, default=600)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--walk-runs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idling before the warm-after-idle run")
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--out", type=Path, default=localnet.ROOT / "benchmarks" / "results" / "cli_search.json")
    args = parser.parse_args(argv)
    if args.fast:
        args.nodes, args.profiles, args.runs, args.walk_runs, args.idle = 3, 30, 3, 1, 1.0
    # At least 3 runs behind a measured p50; fast mode's figures are never read, so 1 will do there.
    least = 1 if args.fast else 3
    rows: list[dict[str, object]] = []

    def record(name: str, times: list[float], note: str = "") -> float:
        p50 = pct(times, 50)
        rows.append({"name": name, "runs": len(times), "p50_ms": round(p50, 1), "p95_ms": round(pct(times, 95), 1),
                     "note": note})
        print(f"  {name}: p50 {p50:.0f} ms over {len(times)} (load {localnet.load()})", flush=True)
        return p50

    with tempfile.TemporaryDirectory(prefix="discnode-cli-bench-") as tmp:
        with localnet.running(Path(tmp), args.nodes, args.nodes, args.profiles, quiet=not args.fast) as net:
            hub = ["--home", str(net.hub_small)]
            command_ms(hub + ["search"], 2)  # the daemon loads the CLI and opens its connections
            served = record("search, first page (served)", command_ms(hub + ["search"], args.runs))
            cold = record("search, first page (cold CLI)", command_ms(hub + ["search"], max(least, args.runs // 2),
                                                                      env={"DISCNODE_NO_DAEMON": "1"}))
            central = record("profile list, one central database", command_ms(
                ["--home", str(net.central), "profile", "list", "--sort", "name"], max(least, args.runs // 2)),
                f"{args.nodes * args.profiles:,} profiles in one SQLite file, no daemon")
            before = audit_count(net.partners[0])
            time.sleep(args.idle)
            after = audit_count(net.partners[0])
            idle = record(f"search after {args.idle:g} s idle (served)", command_ms(hub + ["search"], 1),
                          "keep-alive kept the partners' connections open")
            command_ms(hub + ["search", "--all", "--json"], 1)  # the first walk checks every record
            walk = record("search --all --json (served, repeat walk)",
                          command_ms(hub + ["search", "--all", "--json"], args.walk_runs))
            walk_cold = record("search --all --json (cold CLI, repeat walk)",
                               command_ms(hub + ["search", "--all", "--json"], max(1, args.walk_runs // 2),
                                          env={"DISCNODE_NO_DAEMON": "1"}))
    report = {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "load_at_end": localnet.load()},
        "network": {"partnerships": args.nodes, "profiles_per_partnership": args.profiles},
        "rows": rows,
        "ratios": {"served_search_vs_cold": round(served / cold, 3),
                   "served_search_vs_central_profile_list": round(served / central, 3),
                   "served_walk_vs_cold_walk": round(walk / walk_cold, 3)},
        "keepalive": {"partner_audit_entries_during_idle": after - before, "idle_seconds": args.idle,
                      "search_after_idle_ms": round(idle, 1)},
        "command": "python benchmarks/cli_search.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    print(f"\n`discnode search` at {args.nodes} partnerships x {args.profiles} (ms, whole commands)")
    print(f"{'what':<52} {'runs':>4} {'p50':>8} {'p95':>8}")
    for r in rows:
        print(f"{r['name']:<52} {r['runs']:>4} {r['p50_ms']:>8} {r['p95_ms']:>8}")
    print(f"ratios: {report['ratios']}")
    print(f"keep-alive: {report['keepalive']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
