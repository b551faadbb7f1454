"""What one query costs a partner when it arrives alone, as each partner's does in a first page: this
checkout's code against --base's, in the same run, request by request.

    python benchmarks/lone_request.py --base main                  # 4 partnerships x 600, 300 requests each
    python benchmarks/lone_request.py --base main --fast           # 2 x 60, 20 requests (a smoke run)

A first page at 30 partnerships asks each partner for 10 records, once: every request arrives at a
node that has been idle since the last page, with its caches cold, and pays for every thread it
wakes. A stream of queries (dataview.py --serving-only) amortises that; this does not. Half the
partnerships run this checkout's `discnode serve`, half --base's (extracted with git archive, first
on PYTHONPATH); the searching node sends one first-round query at a time, alternating between the
two codes, and reads the partner's CPU (user + system, every thread: /proc/PID/task/*/schedstat,
nanoseconds) before the request and after a pause that follows the reply (so that work done after
the reply, the audit commit's tail, is counted). Median and quartiles of the per-request figures.
CPU time, not wall time: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import network  # noqa: E402  (examples/network.py)

from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

import dataview as bench  # noqa: E402  (node processes, the hub's client, code_tree)
from discnode import peers  # noqa: E402
from discnode.home import Home  # noqa: E402
from discnode.query import Query  # noqa: E402

console = Console(width=140)


def cpu_ns(pid: int) -> int:
    """The process's CPU time in nanoseconds, every thread (schedstat: exact, not in clock ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


async def measure(hub_path: Path, sides: dict[str, list[tuple[Path, int]]], requests: int, pause: float,
                  limit: int) -> dict[str, list[float]]:
    hub = Home.open(hub_path)
    known = {p.node_id: p for p in peers.all_peers(hub.db)}
    query = Query(sort="last-seen", desc=True, limit=limit).to_wire()
    spent: dict[str, list[float]] = {name: [] for name in sides}
    async with bench.HubClient(hub.identity, timeout=30, limit=200) as client:
        targets = {name: [(known[Home.open(path).node_id], pid) for path, pid in nodes] for name, nodes in sides.items()}
        for nodes in targets.values():  # open the connections, fill the caches
            for peer, _ in nodes:
                for _ in range(3):
                    if (await client.request(peer, "POST", "/v1/profiles/query", query)).status != 200:
                        raise RuntimeError(f"{peer.name} refused the warm-up query")
        names = list(targets)
        for i in range(requests):
            for name in names if i % 2 == 0 else names[::-1]:
                peer, pid = targets[name][i % len(targets[name])]
                before = cpu_ns(pid)
                reply = await client.request(peer, "POST", "/v1/profiles/query", query)
                if reply.status != 200:
                    raise RuntimeError(f"{peer.name} answered {reply.status}")
                await asyncio.sleep(pause)
                spent[name].append((cpu_ns(pid) - before) / 1000)
    return spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A partner's CPU for a query arriving alone, this code against --base")
    parser.add_argument("--base", default="main", help="git ref of the other code")
    parser.add_argument("--per-side", type=int, default=2, help="partnerships running each code")
    parser.add_argument("--profiles", type=int, default=600)
    parser.add_argument("--requests", type=int, default=300, help="requests to each code")
    parser.add_argument("--pause", type=float, default=0.03, help="seconds after each reply before reading the CPU")
    parser.add_argument("--limit", type=int, default=10, help="records asked for (a first round at 30 partnerships: 10)")
    parser.add_argument("--fast", action="store_true", help="2 partnerships x 60 profiles, 20 requests")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lone_request.json")
    args = parser.parse_args(argv)
    if args.fast:
        args.per_side, args.profiles, args.requests = 1, 60, 20
    with tempfile.TemporaryDirectory(prefix="discnode-lone-") as tmp:
        root = Path(tmp)
        count = 2 * args.per_side
        hub_path, paths = network.generate(root / "net", count, args.profiles, base_port=network.free_ports(count + 1))
        base = bench.code_tree(args.base, root / "base")
        codes = {"this": ROOT, f"base ({args.base})": base}
        procs = []
        try:
            sides: dict[str, list[tuple[Path, int]]] = {}
            with Progress(console=console, transient=True) as progress:
                for i, (name, code) in enumerate(codes.items()):
                    mine = paths[i * args.per_side:(i + 1) * args.per_side]
                    started = bench.start_nodes(mine, progress, code=code)
                    procs += started
                    sides[name] = [(path, proc.pid) for path, proc in zip(mine, started)]
            if not args.fast:  # the daemons' start-up over before measuring; fast mode's figures are never read
                time.sleep(2)
            spent = asyncio.run(measure(hub_path, sides, args.requests, args.pause, args.limit))
        finally:
            bench.stop_nodes(procs)
    rows = []
    for name, values in spent.items():
        values.sort()
        rows.append({"code": name, "requests": len(values), "median_us": round(statistics.median(values)),
                     "p25_us": round(values[len(values) // 4]), "p75_us": round(values[3 * len(values) // 4]),
                     "mean_us": round(statistics.mean(values))})
    table = Table(title=f"A partner's CPU per query arriving alone ({args.limit} records; {args.per_side} partnerships each)")
    for col in ("code", "requests", "median us", "p25", "p75", "mean"):
        table.add_column(col, justify="left" if col == "code" else "right")
    for r in rows:
        table.add_row(r["code"], str(r["requests"]), str(r["median_us"]), str(r["p25_us"]), str(r["p75_us"]),
                      str(r["mean_us"]))
    console.print(table)
    console.print(f"this / base, medians: {rows[0]['median_us'] / rows[1]['median_us']:.3f}  (load {os.getloadavg()[0]:.1f})")
    out = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(), "rows": rows,
           "command": "python benchmarks/lone_request.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    console.print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
