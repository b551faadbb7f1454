"""The federated Dataview at London scale and beyond, against a centralised baseline in the same run.

    python benchmarks/dataview.py                 # 30 nodes x 600 profiles, scaling to 10/30/100 nodes
    python benchmarks/dataview.py --fast          # a small network, for the test suite (never asserts figures)

Each partnership is a separate `discnode serve` process on loopback with its own SQLite file; the
querying (hub) node has an agreement with each. The baseline is the same profiles in one SQLite file,
queried by the same query and merge code with no network: the floor that federation pays against.
Timings are wall-clock on a shared machine, so the table reports federated / baseline ratios from the
same run beside the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import network  # noqa: E402  (examples/network.py: the generator)

from discnode import store  # noqa: E402
from discnode.client import PeerClient  # noqa: E402
from discnode.dataview import merge, search  # noqa: E402
from discnode.home import Home, today  # noqa: E402
from discnode.images import read as read_image  # noqa: E402
from discnode.query import Query, apply_cursor  # noqa: E402
from discnode.dataview import next_cursor  # noqa: E402

console = Console()


@dataclass
class Result:
    name: str
    federated: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    note: str = ""

    @staticmethod
    def pct(values: list[float], p: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]

    def row(self) -> dict[str, Any]:
        f50, f95 = self.pct(self.federated, 50), self.pct(self.federated, 95)
        b50, b95 = self.pct(self.baseline, 50), self.pct(self.baseline, 95)
        return {"name": self.name, "runs": len(self.federated), "federated_p50_ms": round(f50, 2),
                "federated_p95_ms": round(f95, 2), "baseline_p50_ms": round(b50, 2),
                "baseline_p95_ms": round(b95, 2), "ratio_p50": round(f50 / b50, 1) if b50 else None,
                "note": self.note}


def start_nodes(paths: list[Path], progress: Progress) -> list[subprocess.Popen]:
    procs = []
    task = progress.add_task("starting node processes", total=len(paths))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        for path in paths:
            log = open(path / "serve.log", "w")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "discnode", "--home", str(path), "serve", "--no-advertise",
                 "--rate-limit", "1000000"], stdout=log, stderr=subprocess.STDOUT, env=env))
        for path, proc in zip(paths, procs):
            port = Home.open(path).config.port
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    tail = (path / "serve.log").read_text()[-500:]
                    raise RuntimeError(f"node {path.name} exited with {proc.returncode}: {tail}")
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.05)
            progress.advance(task)
    except BaseException:
        stop_nodes(procs)
        raise
    return procs


def stop_nodes(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def build_baseline(root: Path, paths: list[Path]) -> Any:
    """Every node's shareable profiles in one SQLite file: the centralised design's database."""
    db = store.connect(root / "baseline.db")
    store.migrate(db)
    for path in paths:
        node = store.connect(path / "discnode.db")
        rows = [json.loads(r[0]) for r in node.execute(
            "SELECT record FROM profiles WHERE local_only = 0 AND review_by >= ?", [today().isoformat()])]
        store.put_profiles(db, rows)
        node.conn.close()
    return db


async def timed(fn: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def timed_sync(fn: Callable[[], Any], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def baseline_page(db: Any, query: Query) -> list[dict[str, Any]]:
    page, _ = merge([store.search(db, query, today())], query)
    return page


def baseline_walk(db: Any, query: Query) -> int:
    n, cursor = 0, None
    while True:
        q = apply_cursor(query, cursor)
        page, more = merge([store.search(db, q, today())], q)
        n += len(page)
        cursor = next_cursor(page, more, query)
        if cursor is None:
            return n


async def federated_walk(hub: Home, client: PeerClient, query: Query, timeout: float) -> int:
    """Every page by the merged view's cursor (what `search --cursor` does page by page)."""
    n, cursor = 0, None
    while True:
        page = await search(hub, query, cursor=cursor, client=client, timeout=timeout)
        n += len(page.results)
        cursor = page.next_cursor
        if cursor is None:
            return n


async def streaming_walk(hub: Home, client: PeerClient, query: Query, timeout: float, ids: list[str],
                         workers: int | None = None, warm: bool = False) -> int:
    """Every match by the streaming merge, each peer paged from its own position (`search --all`);
    records checked in `workers` processes (None: one per CPU, as the CLI does; 0: in this one).
    warm: trust the hub's record of records checked by earlier walks, as the CLI does; otherwise
    check every record, as the very first walk does."""
    from discnode.dataview import walk
    results, statuses = await walk(hub, query, timeout=timeout, client=client, partnerships=ids, workers=workers,
                                   remember_checks=warm)
    bad = [s for s in statuses if s.status != "ok"]
    if bad:
        raise RuntimeError(f"walk: peers not ok: {bad[:3]}")
    return len(results)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory now (VmRSS) or at its peak (VmHWM). `discnode serve` execs the daemon in
    place, so the PID started is the PID serving."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb(pid: int) -> float:
    return rss_mb(pid, "VmHWM")


def throughput_worker(args: tuple[str, str, int, float]) -> list[float]:
    """One client process: `concurrency` coroutines sending signed first-page queries for `seconds`."""
    hub_path, target, concurrency, seconds = args

    async def run() -> list[float]:
        hub = Home.open(Path(hub_path))
        from discnode import peers
        peer = peers.get(hub.db, target)
        latencies: list[float] = []
        stop_at = time.monotonic() + seconds
        async with PeerClient(hub.identity, timeout=10, limit=concurrency) as client:
            async def loop() -> None:
                while time.monotonic() < stop_at:
                    started = time.perf_counter()
                    reply = await client.request(peer, "POST", "/v1/profiles/query", {"limit": 50})
                    if reply.status == 200:
                        latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.gather(*(loop() for _ in range(concurrency)))
        return latencies

    return asyncio.run(run())


def throughput(hub_path: Path, target: str, clients: int, seconds: float) -> tuple[float, float, int]:
    from concurrent.futures import ProcessPoolExecutor
    processes = 2
    with ProcessPoolExecutor(processes) as pool:
        parts = list(pool.map(throughput_worker, [(str(hub_path), target, clients // processes, seconds)] * processes))
    latencies = [x for part in parts for x in part]
    return len(latencies) / seconds, Result.pct(latencies, 99), len(latencies)


async def measure(hub_path: Path, node_paths: list[Path], baseline_db: Any, runs: int, walk_runs: int,
                  timeout: float) -> list[Result]:
    hub = Home.open(hub_path)
    surname = json.loads(store.connect(node_paths[0] / "discnode.db").execute(
        "SELECT record FROM profiles WHERE status = 'identified' LIMIT 1").fetchone()[0])["last_name"]
    shapes = {
        "1 first page, no filter, by last seen": Query(sort="last-seen", desc=True, limit=50),
        "2 first page, gender+build+ethnicity": Query(gender=("male",), build=("slim", "medium"),
                                                      ethnicity=("IC1",), sort="last-seen", desc=True, limit=50),
        f"3 text search for a surname ({surname})": Query(text=surname, limit=50),
    }
    results = []
    async with PeerClient(hub.identity, timeout=timeout, limit=200) as client:
        await search(hub, Query(), client=client, timeout=timeout)  # warm the connections
        for name, query in shapes.items():
            r = Result(name)
            r.federated = await timed(lambda: search(hub, query, client=client, timeout=timeout), runs)
            r.baseline = timed_sync(lambda: baseline_page(baseline_db, query), runs)
            page = await search(hub, query, client=client, timeout=timeout)
            bad = [p for p in page.peers if p.status != "ok"]
            r.note = f"{len(page.results)} rows" + (f"; {len(bad)} peers not ok" if bad else "")
            results.append(r)
        walk_query = Query(sort="name", limit=200)
        ids = [Home.open(p).node_id for p in node_paths] + [hub.node_id]
        r = Result("4 walk every match, streaming (search --all), every record checked")
        total = await streaming_walk(hub, client, walk_query, timeout, ids)
        r.federated = await timed(lambda: streaming_walk(hub, client, walk_query, timeout, ids), walk_runs)
        r.baseline = timed_sync(lambda: baseline_walk(baseline_db, walk_query), walk_runs)
        r.note = f"{total} profiles"
        results.append(r)
        r = Result("4b walk every page by cursor (200 a page)")
        paged = await federated_walk(hub, client, walk_query, timeout)
        r.federated = await timed(lambda: federated_walk(hub, client, walk_query, timeout), max(1, walk_runs // 2))
        r.baseline = timed_sync(lambda: baseline_walk(baseline_db, walk_query), max(1, walk_runs // 2))
        r.note = f"{paged} profiles"
        results.append(r)
        r = Result("4c walk, streaming, every check in the one process")
        r.federated = await timed(lambda: streaming_walk(hub, client, walk_query, timeout, ids, workers=0), walk_runs)
        r.baseline = timed_sync(lambda: baseline_walk(baseline_db, walk_query), walk_runs)
        r.note = "no worker processes"
        results.append(r)
        r = Result("4d walk, streaming, again: records checked by an earlier walk are not re-checked")
        await streaming_walk(hub, client, walk_query, timeout, ids, warm=True)  # the earlier walk
        r.federated = await timed(lambda: streaming_walk(hub, client, walk_query, timeout, ids, warm=True), walk_runs)
        r.baseline = timed_sync(lambda: baseline_walk(baseline_db, walk_query), walk_runs)
        r.note = "what a daily walk costs"
        results.append(r)
        page = await search(hub, shapes["1 first page, no filter, by last seen"], client=client, timeout=timeout)
        from discnode.dataview import thumbnails
        r = Result("5 thumbnails of one page (50)")
        r.federated = await timed(lambda: thumbnails(hub, page.results, client=client), runs)
        paths = {Home.open(p).node_id: p for p in node_paths}

        def local_thumbs() -> None:
            for rec in page.results:
                read_image(paths[rec["origin"]] / "images", rec["image"], thumb=True)
        r.baseline = timed_sync(local_thumbs, runs)
        r.note = "parallel HTTPS vs local files"
        results.append(r)
    return results


async def first_page_by_n(hub_path: Path, node_paths: list[Path], sizes: list[int], runs: int, timeout: float
                          ) -> dict[int, dict[str, float]]:
    hub = Home.open(hub_path)
    ids = [Home.open(p).node_id for p in node_paths]
    query = Query(sort="last-seen", desc=True, limit=50)
    out = {}
    async with PeerClient(hub.identity, timeout=timeout, limit=200) as client:
        for n in sizes:
            chosen = ids[:n]
            await search(hub, query, client=client, timeout=timeout, partnerships=chosen)
            times = await timed(lambda: search(hub, query, client=client, timeout=timeout, partnerships=chosen),
                                runs)
            out[n] = {"p50_ms": round(Result.pct(times, 50), 2), "p95_ms": round(Result.pct(times, 95), 2)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Federated Dataview benchmark")
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--profiles", type=int, default=600)
    parser.add_argument("--scale", default="10,30,100", help="node counts for first-page latency")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--walk-runs", type=int, default=5)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--fast", action="store_true", help="tiny network, few runs (the test suite uses it)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "dataview.json")
    parser.add_argument("--dir", type=Path, default=None, help="where to build the network (default: temporary)")
    args = parser.parse_args(argv)
    if args.fast:
        args.nodes, args.profiles, args.scale, args.runs, args.walk_runs = 3, 30, "2,3", 3, 1
        args.clients, args.seconds = 4, 1.0
    scale = sorted({int(x) for x in args.scale.split(",")})
    total_nodes = max([args.nodes, *scale])

    with tempfile.TemporaryDirectory(prefix="discnode-bench-", dir=args.dir) as tmp:
        root = Path(tmp)
        # Below Linux's ephemeral range (32768+), where outgoing connections take their local ports.
        base_port = 20000 + (os.getpid() % 100) * 120
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"building {total_nodes} nodes x {args.profiles} profiles", total=total_nodes)
            started = time.monotonic()
            hub_path, paths = network.generate(root / "net", total_nodes, args.profiles, base_port=base_port,
                                               progress=lambda n: progress.advance(task, n))
            build_s = time.monotonic() - started
            baseline_db = build_baseline(root, paths[: args.nodes])
            procs = start_nodes(paths, progress)
        try:
            main_paths = paths[: args.nodes]
            ids = [Home.open(p).node_id for p in main_paths]
            # Restrict the main measurements to the first --nodes partnerships.
            results = asyncio.run(_measure_subset(hub_path, main_paths, ids, baseline_db, args))
            scaling = asyncio.run(first_page_by_n(hub_path, paths, scale, args.runs, args.timeout))
            target = ids[0]
            before_load = rss_mb(procs[0].pid)
            qps, p99, served = throughput(hub_path, target, args.clients, args.seconds)
            rss = peak_rss_mb(procs[0].pid)
            rss_all = [peak_rss_mb(p.pid) for p in procs]
        finally:
            stop_nodes(procs)

    report = {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "network": {"nodes": args.nodes, "profiles_per_node": args.profiles,
                    "profiles": args.nodes * args.profiles, "build_seconds": round(build_s, 1)},
        "queries": [r.row() for r in results],
        "first_page_by_nodes": scaling,
        "serving": {"clients": args.clients, "seconds": args.seconds, "queries": served,
                    "queries_per_second": round(qps, 1), "p99_ms": round(p99, 2),
                    "rss_mb_before_load": round(before_load, 1),
                    "peak_rss_mb_one_node": round(rss, 1),
                    "peak_rss_mb_max_any_node": round(max(rss_all), 1)},
        "command": "python benchmarks/dataview.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    print_report(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"JSON: {args.out}")
    return 0


async def _measure_subset(hub_path: Path, main_paths: list[Path], ids: list[str], baseline_db: Any,
                          args: argparse.Namespace) -> list[Result]:
    # measure() searches every active peer; the hub's agreements with nodes beyond --nodes are revoked
    # for the main measurements by restricting through `partnerships` in a wrapper of search.
    import discnode.dataview as dv
    original = dv.search

    async def restricted(home: Home, query: Query, **kw: Any) -> Any:
        kw.setdefault("partnerships", ids + [home.node_id])
        return await original(home, query, **kw)

    globals()["search"] = restricted
    try:
        return await measure(hub_path, main_paths, baseline_db, args.runs, args.walk_runs, args.timeout)
    finally:
        globals()["search"] = original


def print_report(report: dict[str, Any]) -> None:
    net = report["network"]
    t = Table(title=f"Dataview: {net['nodes']} nodes x {net['profiles_per_node']} profiles "
                    f"= {net['profiles']:,} profiles (ms; ratio = federated p50 / baseline p50)")
    for col in ("query", "runs", "fed p50", "fed p95", "base p50", "base p95", "ratio", "note"):
        t.add_column(col, justify="left" if col in ("query", "note") else "right")
    for q in report["queries"]:
        t.add_row(q["name"], str(q["runs"]), f"{q['federated_p50_ms']:.1f}", f"{q['federated_p95_ms']:.1f}",
                  f"{q['baseline_p50_ms']:.2f}", f"{q['baseline_p95_ms']:.2f}", f"{q['ratio_p50']}x", q["note"])
    console.print(t)
    s = Table(title="First page (50, by last seen) by number of nodes")
    s.add_column("nodes", justify="right")
    s.add_column("p50 ms", justify="right")
    s.add_column("p95 ms", justify="right")
    for n, v in report["first_page_by_nodes"].items():
        s.add_row(str(n), f"{v['p50_ms']:.1f}", f"{v['p95_ms']:.1f}")
    console.print(s)
    sv = report["serving"]
    console.print(f"One node serving signed first-page queries, {sv['clients']} concurrent clients for "
                  f"{sv['seconds']:g}s: {sv['queries_per_second']:.0f} queries/s, p99 {sv['p99_ms']:.1f} ms; "
                  f"RSS before it {sv['rss_mb_before_load']:.1f} MB, peak RSS {sv['peak_rss_mb_one_node']:.1f} MB (max of any node {sv['peak_rss_mb_max_any_node']:.1f} MB)")


if __name__ == "__main__":
    sys.exit(main())
