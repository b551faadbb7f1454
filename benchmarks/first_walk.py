"""A first walk of the whole Dataview (every record checked, nothing remembered), in process: this
code against an earlier commit's, interleaved, with the CPU time each part of the machine spent.

    python benchmarks/first_walk.py --base main                   # 30 partnerships x 600 profiles
    python benchmarks/first_walk.py --base main --dir /tmp/net    # build the network there once, reuse it
    python benchmarks/first_walk.py --base main --fast            # a small network, for a quick look

One network (examples/network.py), every partnership a `discnode serve` process of this checkout.
Each side is one long-lived hub process (`--agent`) running `dataview.walk(remember_checks=False)`
with its own code first on PYTHONPATH (`--base` extracted with `git archive`), as the CLI's
`search --all` does in process, with its worker processes. The two sides take turns, walk by walk,
so both meet the same machine. For each walk: wall-clock time and, from the kernel's accounting,
the CPU of the hub process (all its threads), of its check workers (reaped children), and of the 30
partnerships' daemons. On a shared 2-core machine the wall-clock figures move with everyone else's
work; the CPU figures much less. Every walk of either side must return the same records in the
same order, every member equal (a digest of the whole rows), or the run stops.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def agent(hub: str) -> None:
    """One side's hub: a walk per line read ("walk"), its figures written back as one JSON line."""
    from discnode import dataview
    from discnode.client import PeerClient
    from discnode.home import Home
    from discnode.query import Query

    home = Home.open(Path(hub))

    async def run() -> None:
        client = PeerClient(home.identity, timeout=30)
        try:
            for line in sys.stdin:
                if line.strip() != "walk":
                    break
                own0, kids0 = time.process_time(), _children()
                started = time.perf_counter()
                rows, statuses = await dataview.walk(home, Query(), timeout=30, client=client,
                                                     remember_checks=False)
                wall = time.perf_counter() - started
                own = time.process_time() - own0
                deadline = time.monotonic() + 10
                while multiprocessing.active_children() and time.monotonic() < deadline:
                    time.sleep(0.01)  # the pool's workers, reaped: their CPU is then in RUSAGE_CHILDREN
                bad = [s.to_json() for s in statuses if s.status != "ok"]
                # Every row whole (every member, in order): the same records are not enough.
                digest = hashlib.sha256(json.dumps(rows, sort_keys=True, ensure_ascii=False).encode())
                print(json.dumps({"wall": wall, "hub": own, "workers": _children() - kids0, "records": len(rows),
                                  "digest": digest.hexdigest(), "bad": bad}), flush=True)
        finally:
            await client.close()

    asyncio.run(run())


def _children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _own_cpu(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def _network(root: Path, nodes: int, profiles: int) -> tuple[Path, list[Path]]:
    sys.path.insert(0, str(ROOT / "examples"))
    import network  # examples/network.py
    net = root / "net"
    if (net / "node000").is_dir():
        return net / "node000", sorted(p for p in net.iterdir() if p.is_dir() and p.name.startswith("node") and p.name != "node000")
    return network.generate(net, nodes, profiles, base_port=network.free_ports(nodes + 1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="the commit to compare against")
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--profiles", type=int, default=600)
    parser.add_argument("--runs", type=int, default=10, help="measured walks of each side")
    parser.add_argument("--dir", type=Path, help="where the network is (built there if absent)")
    parser.add_argument("--fast", action="store_true", help="3 partnerships x 30 profiles, 2 runs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "first_walk.json")
    parser.add_argument("--agent", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.agent:
        agent(args.agent)
        return 0
    if args.fast:
        args.nodes, args.profiles, args.runs = 3, 30, 2
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import localnet

    with tempfile.TemporaryDirectory(prefix="first-walk-") as tmp:
        root = args.dir or Path(tmp)
        hub, partners = _network(root, args.nodes, args.profiles)
        procs = [localnet._serve(p) for p in partners]
        sides: dict[str, subprocess.Popen[str]] = {}
        try:
            for path, proc in zip(partners, procs):
                localnet._wait_for(path, proc, "port")
            if not args.fast:  # fast mode's figures are never read: it need not wait for a quiet machine
                localnet.settle(limit=60)
            trees = {"this": ROOT, "base": localnet.code_tree(args.base, Path(tmp) / "base")}
            for label, code in trees.items():
                sides[label] = subprocess.Popen(
                    [sys.executable, __file__, "--agent", str(hub)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    text=True, env={**os.environ, "PYTHONPATH": str(code)}, cwd="/")
            pids = [p.pid for p in procs]
            figures: dict[str, list[dict[str, Any]]] = {label: [] for label in sides}
            digests: set[str] = set()
            for run in range(args.runs + 1):  # the first of each side warms its connections, not counted
                for label, side in (sides.items() if run % 2 == 0 else reversed(sides.items())):
                    assert side.stdin is not None and side.stdout is not None
                    partners0 = _own_cpu(pids)
                    side.stdin.write("walk\n")
                    side.stdin.flush()
                    got = json.loads(side.stdout.readline())
                    got["partners"] = _own_cpu(pids) - partners0
                    if got["bad"]:
                        raise SystemExit(f"{label}: sources not ok: {got['bad'][:3]}")
                    digests.add(got["digest"])
                    if len(digests) != 1:
                        raise SystemExit(f"{label}: the walk's rows differ from the other side's")
                    if run:
                        figures[label].append(got)
                    print(f"run {run} {label:4s}: {got['wall'] * 1000:7.0f} ms wall, hub {got['hub'] * 1000:5.0f} ms, "
                          f"workers {got['workers'] * 1000:5.0f} ms, partners {got['partners'] * 1000:5.0f} ms CPU "
                          f"(load {os.getloadavg()[0]:.1f})", flush=True)
        finally:
            for side in sides.values():
                if side.stdin:
                    side.stdin.close()
                side.wait(30)
            localnet.stop(procs)
    report = {"base": args.base, "nodes": args.nodes, "profiles": args.profiles, "runs": args.runs,
              "records": figures["this"][0]["records"], "sides": {}}
    print(f"\n{report['records']} records; p50 of {args.runs} walks each; CPU in ms; per record in us\n")
    print("| side | wall p50 | wall p95 | hub CPU | workers CPU | partners CPU | total CPU | total per record |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, walks in figures.items():
        def p50(key: str) -> float:
            return statistics.median(w[key] for w in walks) * 1000
        wall = sorted(w["wall"] * 1000 for w in walks)
        total = statistics.median((w["hub"] + w["workers"] + w["partners"]) for w in walks) * 1000
        row = {"wall_p50_ms": round(p50("wall")), "wall_p95_ms": round(wall[min(len(wall) - 1, round(0.95 * (len(wall) - 1)))]),
               "hub_cpu_ms": round(p50("hub")), "workers_cpu_ms": round(p50("workers")),
               "partners_cpu_ms": round(p50("partners")), "total_cpu_ms": round(total),
               "total_cpu_us_per_record": round(total * 1000 / report["records"], 1)}
        report["sides"][label] = row
        print(f"| {label if label == 'this' else args.base} | {row['wall_p50_ms']:,} | {row['wall_p95_ms']:,} | "
              f"{row['hub_cpu_ms']:,} | {row['workers_cpu_ms']:,} | {row['partners_cpu_ms']:,} | {row['total_cpu_ms']:,} | "
              f"{row['total_cpu_us_per_record']} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
