"""`discnode report` across 30 partnerships x 600 profiles as a whole command, and statistics from
100 statistics-only partnerships, each against a single-database baseline in the same run.

    python benchmarks/report.py               # 100 partnerships x 600 profiles; report over the first 30
    python benchmarks/report.py --quick       # a small network (the test suite runs this; figures never asserted)

Every partnership is its own `discnode serve` process on loopback with its own SQLite file (built by
examples/network.py: synthetic people with incidents, real keys, real signed agreements). Two hubs:
one with a profiles agreement with the first 30 partnerships (the report), one with a
statistics-only agreement with all 100 (statistics). Baselines, in the same run and interleaved:
- report: the same command on a node whose one SQLite file holds the same 30 partnerships' records
  (re-signed as its own: the report over one central database, no network); and the report's pure
  part (report.compute) over those records in this process. The federated report's figures are
  asserted equal to the in-process baseline's on every run (all but the per-partnership names), and
  to the central command's except Level Two and partnerships (one database has one origin).
- statistics: each partnership's release computed in this process from its SQLite file, one after
  another (what a central database would answer), against asking all 100 nodes over HTTPS
  (statsask.ask: a signed request each, a signed reply verified). Figures asserted equal.
The machine is shared (2 cores, other sessions' test suites): every row carries the 1-minute load
average when it was measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import localnet  # noqa: E402
import network  # noqa: E402  (examples/network.py)
from localnet import DISCNODE, pct  # noqa: E402

from discnode import peers, report, statistics, statsask, store  # noqa: E402
from discnode.consent import Action, Terms, new_offer, new_response  # noqa: E402
from discnode.home import Config, Home, today  # noqa: E402
from discnode.signing import document_hash, sign_document  # noqa: E402

COMPARED = ("incidents", "by_tag", "by_week", "by_month", "repeat_people", "level_two", "exclusions_in_force",
            "new_id_sought_images")


def agree_statistics(hub: Home, node: Home) -> None:
    """A signed statistics-only agreement stored on both sides (as network.agree_offline does for
    profiles)."""
    for me, other in ((hub, node), (node, hub)):
        peers.remember(me.db, other.descriptor())
    offer = sign_document(new_offer(hub.node_id, node.node_id, Terms.default(today(), share=("statistics",)),
                                    hub.descriptor(), store.now_ts(), None), hub.identity)
    accept = sign_document(new_response(Action.ACCEPT, node.node_id, hub.node_id, document_hash(offer),
                                        store.now_ts()), node.identity)
    for me, other in ((hub, node), (node, hub)):
        for doc in (offer, accept):
            peers.add_document(me.db, other.node_id, doc, delivered=True, own=me.identity)


@contextlib.contextmanager
def running(root: Path, nodes: int, total: int, profiles: int, batch: int = 10) -> Iterator[localnet.Net]:
    """As localnet.running, but starting the daemons `batch` at a time, each batch up before the
    next: 100 `discnode serve` processes started at once on 2 shared cores can take longer than
    localnet's wait to open their ports."""
    base_port = network.free_ports(total + 2)
    hub_all, paths = network.generate(root / "net", total, profiles, base_port=base_port)
    hub_small = Home.create(root / "net" / "hub-small", Config(name="Report Hub BCRP", host="127.0.0.1",
                                                               port=base_port + total + 1))
    for path in paths[:nodes]:
        node = Home.open(path)
        network.agree_offline(hub_small, node)
        node.close()
    hub_small.close()
    procs: list[subprocess.Popen] = []
    try:
        for start in range(0, len(paths), batch):
            group = paths[start:start + batch]
            procs += [localnet._serve(path) for path in group]
            for path, proc in zip(group, procs[start:]):
                localnet._wait_for(path, proc, "port", timeout=900)
            print(f"  {len(procs)} partnerships serving (load {localnet.load()})", flush=True)
        yield localnet.Net(root, hub_small.path, hub_all, root, paths, procs)
    finally:
        localnet.stop(procs)


def shareable(path: Path, node_id: str) -> list[dict[str, Any]]:
    db = store.connect(path / "discnode.db")
    try:
        return [json.loads(r[0]) for r in db.execute(
            "SELECT record FROM profiles WHERE origin = ? AND local_only = 0 AND review_by >= ? AND batch IS NULL",
            [node_id, today().isoformat()])]
    finally:
        db.conn.close()


def central_node(root: Path, records: list[dict[str, Any]]) -> Path:
    """One node holding every record as its own (re-signed): `discnode report` over one database."""
    home = Home.create(root / "central-own", Config(name="Central BCRP", host="127.0.0.1", port=1))
    own = [sign_document({**{k: v for k, v in r.items() if k not in ("sig", "origin_name")}, "origin": home.node_id},
                         home.identity) for r in records]
    store.put_profiles(home.db, own)
    home.close()
    return home.path


#: CPU milliseconds (user + system) of every command run, by row name: unlike wall-clock time on
#: this shared machine, it does not grow with other sessions' load.
CPU: dict[str, list[float]] = {}


def proc_cpu_ms(pids: list[int]) -> float:
    """CPU milliseconds used so far by these running processes and their reaped children (from
    /proc: the daemons are not this process's waited-for children until they exit)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return 1000 * total / tick


def run_json(argv: list[str], row: str = "", daemon: int | None = None) -> tuple[float, dict[str, Any]]:
    """A whole `discnode` command, as typed: wall-clock ms and its JSON output. Without `daemon`,
    the full CLI in its own process (DISCNODE_NO_DAEMON); with it (the running node's PID), the
    console script forwards the command to that node (fastpath.py), and the CPU counted is the
    command's plus the daemon's."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    daemon_before = proc_cpu_ms([daemon]) if daemon else 0.0
    started = time.perf_counter()
    env = dict(os.environ) if daemon else {**os.environ, "DISCNODE_NO_DAEMON": "1"}
    done = subprocess.run([DISCNODE, *argv], capture_output=True, env=env)
    ms = (time.perf_counter() - started) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    daemon_ms = proc_cpu_ms([daemon]) - daemon_before if daemon else 0.0
    CPU.setdefault(row, []).append(1000 * (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
                                   + daemon_ms)
    if done.returncode != 0:
        raise RuntimeError(f"discnode {' '.join(argv)} failed: {done.stderr.decode()[-400:]}")
    return ms, json.loads(done.stdout) if argv[-1] == "--json" else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=30, help="partnerships in the report")
    parser.add_argument("--stats-nodes", type=int, default=100, help="statistics-only partnerships")
    parser.add_argument("--profiles", type=int, default=600)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--weeks", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="3 + 6 partnerships x 40 profiles, 1 run")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "report.json")
    args = parser.parse_args(argv)
    if args.quick:
        # One run of each: every comparison with the baselines still made; figures never read.
        args.nodes, args.stats_nodes, args.profiles, args.runs = 3, 6, 40, 1
    total = max(args.nodes, args.stats_nodes)
    rows: list[dict[str, Any]] = []

    def record(name: str, times: list[float], loads: list[float], note: str = "", cpu: str = "") -> float:
        p50 = pct(times, 50)
        rows.append({"name": name, "runs": len(times), "p50_ms": round(p50, 1), "p95_ms": round(pct(times, 95), 1),
                     "cpu_p50_ms": round(pct(CPU[cpu], 50), 1) if cpu else None,
                     "load_1min": [round(min(loads), 1), round(max(loads), 1)], "note": note})
        print(f"  {name}: p50 {p50:.0f} ms over {len(times)} (load {min(loads):.1f}-{max(loads):.1f})"
              f"{f'; CPU p50 {pct(CPU[cpu], 50):.0f} ms' if cpu else ''}", flush=True)
        return p50

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="discnode-report-bench-") as tmp:
        with running(Path(tmp), args.nodes, total, args.profiles) as net:
            names = {}
            for path in net.partners:
                home = Home.open(path)
                names[home.node_id] = home.config.name
                home.close()
            ids = list(names)
            stats_hub = Home.create(Path(tmp) / "stats-hub", Config(name="Stats Hub BCRP", host="127.0.0.1", port=2))
            for path in net.partners[:args.stats_nodes]:
                node = Home.open(path)
                agree_statistics(stats_hub, node)
                node.close()
            records = []
            for path, node_id in zip(net.partners[:args.nodes], ids[:args.nodes]):
                records += [{**r, "origin_name": names[node_id]} for r in shareable(path, node_id)]
            central = central_node(Path(tmp), records)
            period = report.Period.choose(today(), weeks=args.weeks)
            hub = ["--home", str(net.hub_small), "report", "--weeks", str(args.weeks), "--json"]
            base = ["--home", str(central), "report", "--weeks", str(args.weeks), "--json"]
            print(f"ready in {time.monotonic() - started:.0f} s: {len(records):,} shareable profiles in the report, "
                  f"{sum(len(r['incidents']) for r in records):,} incidents", flush=True)

            # --- the report, whole commands, interleaved -------------------------------------
            first_ms, _ = run_json(hub, "first")  # the first walk checks every record's signature
            floor = [run_json(["--home", str(central), "id", "--json"], "floor")[0] for _ in range(args.runs)]
            fed, cen, inproc, loads = [], [], [], []
            sources = [{"node_id": n, "name": names[n], "kind": "profiles", "status": "ok", "error": ""}
                       for n in ids[:args.nodes]]
            for _ in range(args.runs):
                loads.append(os.getloadavg()[0])
                ms, got = run_json(hub, "fed")
                fed.append(ms)
                ms, central_got = run_json(base, "central")
                cen.append(ms)
                t = time.perf_counter()
                expected = report.compute(records, sources, [], period, today())
                inproc.append((time.perf_counter() - t) * 1000)
                for key in COMPARED:
                    assert got[key] == expected[key], f"federated {key} differs from the in-process baseline"
                for key in ("incidents", "by_tag", "by_week", "by_month"):
                    assert got[key] == central_got[key], f"federated {key} differs from the central report"
                for key in ("repeat_people", "exclusions_in_force", "new_id_sought_images"):
                    assert got[key]["count"] == central_got[key]["count"], f"federated {key} differs (central)"
                assert got["profiles_looked_at"] == len(records)
            loads.append(os.getloadavg()[0])
            note = (f"{len(records):,} profiles, {got['incidents']['count']} incidents in the period; "
                    "figures equal to both baselines")
            record("id --json (the floor: interpreter, imports, exit)", floor, loads, "", "floor")
            record(f"report --weeks {args.weeks} --json, first run (every record checked)", [first_ms], loads[:1], note,
                   "first")
            report_p50 = record(f"report --weeks {args.weeks} --json, federated, {args.nodes} partnerships (repeat)",
                                fed, loads, note, "fed")
            central_p50 = record(f"report --weeks {args.weeks} --json, one central SQLite file", cen, loads,
                                 "the same records re-signed as one node's own; Level Two and partnerships differ "
                                 "(one origin)", "central")
            compute_p50 = record("report.compute over the same records, in this process", inproc, loads,
                                 "the figures alone: no walk, no process start")

            # --- the same command answered by the hub's running daemon (fastpath -> forward.py) --
            hub_proc = localnet._serve(net.hub_small)
            try:
                localnet._wait_for(net.hub_small, hub_proc, "socket", timeout=300)
                run_json(hub, "daemon-warm", daemon=hub_proc.pid)  # its first: pinned connections opened
                served, dloads = [], []
                for _ in range(args.runs):
                    dloads.append(os.getloadavg()[0])
                    ms, got = run_json(hub, "daemon", daemon=hub_proc.pid)
                    served.append(ms)
                    for key in COMPARED:
                        assert got[key] == expected[key], f"daemon-served {key} differs from the in-process baseline"
                    assert got["profiles_looked_at"] == len(records)
                dloads.append(os.getloadavg()[0])
            finally:
                hub_proc.terminate()
                hub_proc.wait(30)
            daemon_p50 = record(f"report --weeks {args.weeks} --json, answered by the running node (repeat)", served,
                                dloads, "fast path: the command line goes over the node's Unix socket; CPU is "
                                "the command's and the daemon's", "daemon")

            # --- statistics from every statistics-only partner --------------------------------
            window = statistics.Window.ending_before(today())
            stats_home = Home.open(stats_hub.path)
            asked, local, sloads = [], [], []
            # Warm-up, not timed: each daemon's first statistics request compiles that message's
            # schema validators (a one-off per process; 100 at once on 2 shared cores is slow).
            warm = asyncio.run(statsask.ask(stats_home, timeout=120.0))
            print(f"  warm-up: {sum(g.status == 'ok' for g in warm)} of {len(warm)} ok", flush=True)
            source_pids = [p.pid for p in net.procs[:args.stats_nodes]]
            for _ in range(args.runs):
                sloads.append(os.getloadavg()[0])
                mine, theirs = resource.getrusage(resource.RUSAGE_SELF), proc_cpu_ms(source_pids)
                t = time.perf_counter()
                got_stats = asyncio.run(statsask.ask(stats_home, timeout=10.0))
                asked.append((time.perf_counter() - t) * 1000)
                done_self = resource.getrusage(resource.RUSAGE_SELF)
                CPU.setdefault("stats-sources", []).append(proc_cpu_ms(source_pids) - theirs)
                CPU.setdefault("stats-asker", []).append(
                    1000 * (done_self.ru_utime - mine.ru_utime + done_self.ru_stime - mine.ru_stime))
                t = time.perf_counter()
                direct = {}
                for path, node_id in zip(net.partners[:args.stats_nodes], ids[:args.stats_nodes]):
                    db = store.connect(path / "discnode.db")
                    direct[node_id] = statistics.release(statistics.own_incidents(db, node_id, today(), window), window)
                    db.conn.close()
                local.append((time.perf_counter() - t) * 1000)
                assert [g.status for g in got_stats] == ["ok"] * args.stats_nodes, [g.error for g in got_stats]
                assert all(g.tables == direct[g.node_id] for g in got_stats), "statistics differ from the local release"
            sloads.append(os.getloadavg()[0])
            released = sum(g.tables.total for g in got_stats if g.tables)
            stats_p50 = record(f"statistics from {args.stats_nodes} partnerships (statsask.ask, HTTPS, verified)",
                               asked, sloads, f"{released:,} incidents released in all; equal to the local release")
            record(f"  CPU of the {args.stats_nodes} sources' daemons in one such round (in CPU p50)", asked, sloads,
                   "each source's release is cached after the warm-up (server_statistics.py)", "stats-sources")
            record("  CPU of the asking process in one such round (in CPU p50)", asked, sloads, "", "stats-asker")
            stats_local = record(f"the same {args.stats_nodes} releases computed from their SQLite files, one process",
                                 local, sloads, "the central baseline: no network, no signatures")
            stats_argv = ["--home", str(stats_hub.path), "report", "--weeks", str(args.weeks), "--json"]
            stats_cmd_runs = [run_json(stats_argv, "stats-cmd")[0]
                              for _ in range(max(1 if args.quick else 2, args.runs // 2))]
            stats_cmd_p50 = record(f"report --weeks {args.weeks} --json on a hub with {args.stats_nodes} "
                                   "statistics-only partners (whole command)", stats_cmd_runs, [os.getloadavg()[0]],
                                   "", "stats-cmd")
            stats_home.close()
    out = {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_at_end": localnet.load()},
        "network": {"report_partnerships": args.nodes, "statistics_partnerships": args.stats_nodes,
                    "profiles_per_partnership": args.profiles, "weeks": args.weeks},
        "rows": rows,
        "targets": {"report_whole_command_ms": 2000, "statistics_100_ms": 1000},
        "ratios": {"report_federated_vs_central_command": round(report_p50 / central_p50, 2),
                   "report_daemon_vs_central_command": round(daemon_p50 / central_p50, 2),
                   "report_federated_vs_in_process_compute": round(report_p50 / compute_p50, 1),
                   "statistics_asked_vs_local": round(stats_p50 / stats_local, 2),
                   "statistics_command_vs_asked": round(stats_cmd_p50 / stats_p50, 2)},
        "command": "python benchmarks/report.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    print(f"\n`discnode report` and statistics ({args.nodes} report partnerships, {args.stats_nodes} statistics-only,"
          f" {args.profiles} profiles each; ms)")
    print(f"{'what':<96} {'runs':>4} {'p50':>8} {'p95':>8} {'CPU p50':>8} {'load':>10}")
    for r in rows:
        load = f"{r['load_1min'][0]}-{r['load_1min'][1]}"
        cpu = "" if r["cpu_p50_ms"] is None else r["cpu_p50_ms"]
        print(f"{r['name']:<96} {r['runs']:>4} {r['p50_ms']:>8} {r['p95_ms']:>8} {cpu:>8} {load:>10}")
    print(f"ratios: {out['ratios']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
