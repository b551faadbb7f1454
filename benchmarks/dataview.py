"""The federated Dataview at London scale and beyond, against centralised baselines in the same run.

    python benchmarks/dataview.py                 # 30 nodes x 600 profiles, scaling to 10/30/100 nodes
    python benchmarks/dataview.py --quick         # 30 x 600 without the 100-node scale, shorter load
    python benchmarks/dataview.py --fast          # a small network, for the test suite (never asserts figures)

Each partnership is a separate `discnode serve` process on loopback with its own SQLite file; the
querying (hub) node has an agreement with each. Two baselines: the same profiles in one SQLite file,
queried by the same query and merge code with no network (the floor federation pays against), and
the same again checking every returned record's schema and signature as the hub does (so that a
ratio against it is the network's cost alone). Every federated result is asserted equal to the
baseline's (same rows, same order) on every run. Federated and baseline runs are interleaved, run
by run, so that both meet the same machine. Serving is measured from the node's own accounting (its
CPU time over the load window, from /proc, divided by the queries it answered), which the load
generators sharing the cores do not distort; the connections are counted from /proc/net/tcp and the
node's RSS sampled through the load window.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

import aiohttp  # noqa: E402

from discnode import loops, peers, store  # noqa: E402
from discnode.client import PeerClient  # noqa: E402
from discnode.dataview import check_record, merge, next_cursor, search, walk  # noqa: E402
from discnode.errors import DiscnodeError  # noqa: E402
from discnode.home import Home, today  # noqa: E402
from discnode.images import read as read_image  # noqa: E402
from discnode.query import Query, apply_cursor  # noqa: E402

console = Console(width=160)


@dataclass
class Result:
    name: str
    federated: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    checked: list[float] = field(default_factory=list)
    #: CPU time of this (the searching) process for each federated run, ms: comparable between
    #: tables and phases of a run where wall-clock time, on a shared machine, is not.
    federated_cpu: list[float] = field(default_factory=list)
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
        c50, c95 = self.pct(self.checked, 50), self.pct(self.checked, 95)
        return {"name": self.name, "runs": len(self.federated), "federated_p50_ms": round(f50, 2),
                "federated_p95_ms": round(f95, 2), "baseline_p50_ms": round(b50, 2),
                "baseline_p95_ms": round(b95, 2), "checked_baseline_p50_ms": round(c50, 2),
                "checked_baseline_p95_ms": round(c95, 2), "ratio_p50": round(f50 / b50, 1) if b50 else None,
                "ratio_checked_p50": round(f50 / c50, 2) if c50 else None,
                "federated_cpu_p50_ms": round(self.pct(self.federated_cpu, 50), 2) if self.federated_cpu else None,
                "note": self.note}


def start_nodes(paths: list[Path], progress: Progress, code: Path = ROOT) -> list[subprocess.Popen]:
    """Every node a `discnode serve` process, running the discnode package found in `code`."""
    procs = []
    task = progress.add_task("starting node processes", total=len(paths))
    env = {**os.environ, "PYTHONPATH": str(code)}
    try:
        for path in paths:
            log = open(path / "serve.log", "w")
            # cwd "/": `python -m` puts the working directory first on sys.path, before PYTHONPATH,
            # so run from a checkout every node imported that checkout's discnode, --base's too.
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "discnode", "--home", str(path.resolve()), "serve", "--no-advertise",
                 "--rate-limit", "1000000"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd="/"))
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


def build_baseline(path: Path, node_paths: list[Path]) -> Any:
    """Every node's shareable profiles in one SQLite file: the centralised design's database."""
    db = store.connect(path)
    store.migrate(db)
    for node_path in node_paths:
        node = store.connect(node_path / "discnode.db")
        rows = [json.loads(r[0]) for r in node.execute(
            "SELECT record FROM profiles WHERE local_only = 0 AND review_by >= ?", [today().isoformat()])]
        store.put_profiles(db, rows)
        node.conn.close()
    return db


def rows_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records as the baseline holds them: without the name the Dataview adds."""
    return [{k: v for k, v in r.items() if k != "origin_name"} for r in records]


def same(name: str, federated: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> None:
    if rows_of(federated) != rows_of(baseline):
        ids = [(r["origin"][:7], r["id"][:8]) for r in federated[:3]], [(r["origin"][:7], r["id"][:8]) for r in baseline[:3]]
        raise AssertionError(f"{name}: federated ({len(federated)} rows) != baseline ({len(baseline)} rows): {ids}")


class Baseline:
    """The centralised design, with and without the record checks the hub makes."""

    def __init__(self, db: Any, hub: Home) -> None:
        self.db = db
        self.peers = {p.node_id: p for p in peers.all_peers(hub.db)}

    def check(self, record: dict[str, Any]) -> bool:
        check_record(record, self.peers[record["origin"]])
        return True

    def page(self, query: Query, checked: bool = False) -> list[dict[str, Any]]:
        page, _ = merge([store.search(self.db, query, today())], query, self.check if checked else None)
        return page

    def walk(self, query: Query, checked: bool = False) -> list[dict[str, Any]]:
        out, cursor = [], None
        while True:
            q = apply_cursor(query, cursor)
            page, more = merge([store.search(self.db, q, today())], q)
            if checked:
                for record in page:
                    self.check(record)
            out += page
            cursor = next_cursor(page, more, query)
            if cursor is None:
                return out


async def clock(fn: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = await fn()
    return (time.perf_counter() - started) * 1000, value


async def clock_cpu(fn: Callable[[], Awaitable[Any]]) -> tuple[float, float, Any]:
    """(wall ms, this process's CPU ms, value): the searching side's own CPU, all its threads."""
    cpu, started = time.process_time(), time.perf_counter()
    value = await fn()
    return (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000, value


def clock_sync(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return (time.perf_counter() - started) * 1000, value


async def streaming_walk(hub: Home, client: PeerClient, query: Query, timeout: float, ids: list[str],
                         workers: int | None = None, warm: bool = False) -> list[dict[str, Any]]:
    """Every match by the streaming merge, each peer paged from its own position (`search --all`);
    records checked in `workers` processes (None: one per CPU, as the CLI does; 0: in this one).
    warm: trust the hub's record of records checked by earlier walks, as the CLI does; otherwise
    check every record, as the very first walk does."""
    results, statuses = await walk(hub, query, timeout=timeout, client=client, partnerships=ids, workers=workers,
                                   remember_checks=warm)
    bad = [s for s in statuses if s.status != "ok"]
    if bad:
        raise RuntimeError(f"walk: peers not ok: {bad[:3]}")
    return results


async def federated_page(hub: Home, client: PeerClient, query: Query, timeout: float, ids: list[str]
                         ) -> list[dict[str, Any]]:
    page = await search(hub, query, client=client, timeout=timeout, partnerships=ids + [hub.node_id])
    bad = [p for p in page.peers if p.status != "ok"]
    if bad:
        raise RuntimeError(f"search: peers not ok: {bad[:3]}")
    return page.results


def load() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[0]


async def measure(hub_path: Path, node_paths: list[Path], baseline: Baseline, runs: int, walk_runs: int,
                  timeout: float) -> list[Result]:
    hub = Home.open(hub_path)
    ids = [Home.open(p).node_id for p in node_paths]
    surname = json.loads(store.connect(node_paths[0] / "discnode.db").execute(
        "SELECT record FROM profiles WHERE status = 'identified' LIMIT 1").fetchone()[0])["last_name"]
    shapes = {
        "1 first page, no filter, by last seen": Query(sort="last-seen", desc=True, limit=50),
        "2 first page, gender+build+ethnicity": Query(gender=("male",), build=("slim", "medium"),
                                                      ethnicity=("IC1",), sort="last-seen", desc=True, limit=50),
        f"3 text search for a surname ({surname})": Query(text=surname, limit=50),
    }
    results = []
    async with HubClient(hub.identity, timeout=timeout, limit=200) as client:
        await federated_page(hub, client, Query(), timeout, ids)  # warm the connections
        for name, query in shapes.items():
            r = Result(name)
            for _ in range(runs):  # interleaved: federated, baseline, checked baseline, in turn
                ms, cpu, fed = await clock_cpu(lambda: federated_page(hub, client, query, timeout, ids))
                r.federated.append(ms)
                r.federated_cpu.append(cpu)
                ms, base = clock_sync(lambda: baseline.page(query))
                r.baseline.append(ms)
                ms, checked = clock_sync(lambda: baseline.page(query, checked=True))
                r.checked.append(ms)
                same(name, fed, base)
                same(name, fed, checked)
            r.note = f"{len(fed)} rows, equal to both baselines on every run"
            results.append(r)

        walk_query = Query(sort="name", limit=200)
        first = Result("4 walk every match (search --all), first time: every record checked, worker processes")
        inproc = Result("4c as 4, every check in the one process")
        repeat = Result("4d as 4, again: records checked by an earlier walk not re-checked")
        await streaming_walk(hub, client, walk_query, timeout, ids, warm=True)  # the earlier walk, for 4d
        for _ in range(walk_runs):
            ms, fed = await clock(lambda: streaming_walk(hub, client, walk_query, timeout, ids))
            first.federated.append(ms)
            ms, fed_inproc = await clock(lambda: streaming_walk(hub, client, walk_query, timeout, ids, workers=0))
            inproc.federated.append(ms)
            ms, fed_repeat = await clock(lambda: streaming_walk(hub, client, walk_query, timeout, ids, warm=True))
            repeat.federated.append(ms)
            ms, base = clock_sync(lambda: baseline.walk(walk_query))
            ms_checked, checked = clock_sync(lambda: baseline.walk(walk_query, checked=True))
            for r in (first, inproc, repeat):
                r.baseline.append(ms)
                r.checked.append(ms_checked)
            for r, rows in ((first, fed), (inproc, fed_inproc), (repeat, fed_repeat)):
                same(r.name, rows, base)
                same(r.name, rows, checked)
        for r in (first, inproc, repeat):
            r.note = f"{len(base)} profiles, equal to both baselines on every run"
            results.append(r)

        page = await federated_page(hub, client, shapes["1 first page, no filter, by last seen"], timeout, ids)
        from discnode.dataview import thumbnails
        r = Result("5 thumbnails of one page (50)")
        paths = {Home.open(p).node_id: p for p in node_paths}

        def local_thumbs() -> dict[str, bytes]:
            return {rec["image"]: read_image(paths[rec["origin"]] / "images", rec["image"], thumb=True)
                    for rec in page}
        for _ in range(runs):
            ms, fed_thumbs = await clock(lambda: thumbnails(hub, page, client=client))
            r.federated.append(ms)
            ms, base_thumbs = clock_sync(local_thumbs)
            r.baseline.append(ms)
            if fed_thumbs != base_thumbs:
                raise AssertionError("thumbnails: federated bytes differ from the files")
        r.note = "parallel HTTPS vs local files; same bytes"
        results.append(r)
    return results


async def first_page_by_n(hub_path: Path, node_paths: list[Path], sizes: list[int], baselines: dict[int, Baseline],
                          runs: int, timeout: float) -> dict[int, dict[str, Any]]:
    hub = Home.open(hub_path)
    ids = [Home.open(p).node_id for p in node_paths]
    query = Query(sort="last-seen", desc=True, limit=50)
    times: dict[int, list[float]] = {n: [] for n in sizes}
    cpus: dict[int, list[float]] = {n: [] for n in sizes}
    base: dict[int, list[float]] = {n: [] for n in sizes}
    async with HubClient(hub.identity, timeout=timeout, limit=200) as client:
        for n in sizes:
            await federated_page(hub, client, query, timeout, ids[:n])  # warm
        for _ in range(runs):  # interleaved across sizes and with the baseline
            for n in sizes:
                ms, cpu, fed = await clock_cpu(lambda: federated_page(hub, client, query, timeout, ids[:n]))
                times[n].append(ms)
                cpus[n].append(cpu)
                ms, rows = clock_sync(lambda: baselines[n].page(query, checked=True))
                base[n].append(ms)
                same(f"first page at {n} nodes", fed, rows)
    return {n: {"runs": runs, "p50_ms": round(Result.pct(times[n], 50), 2),
                "p95_ms": round(Result.pct(times[n], 95), 2), "hub_cpu_p50_ms": round(Result.pct(cpus[n], 50), 2),
                "checked_baseline_p50_ms": round(Result.pct(base[n], 50), 2)} for n in sizes}


# --- serving: one node under real concurrent connections ------------------------------------


class HubClient(PeerClient):
    """The node's client, but letting an idle connection go after 5 s, before the node (15 s) does:
    between measurements the connections idle for longer than that, and a request sent on a
    connection at the instant its node closes it fails ("closed the connection"). The node's own
    client has the same 15 s race (see the report); it does not affect the figures."""

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, limit_per_host=20, ttl_dns_cache=300,
                                               keepalive_timeout=5), trust_env=False)
        return self._session


class LoadClient(PeerClient):
    """A PeerClient that opens as many connections to one peer as it has coroutines (the node's
    client keeps 20 a peer, which would cap the benchmark's connections instead of the node)."""

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, limit_per_host=self._limit, keepalive_timeout=5),
                trust_env=False)
        return self._session


def load_worker(args: tuple[str, str, int, float, float, int | None]) -> dict[str, Any]:
    """One load process, as one partner (the node at `partner_path`): `concurrency` connections,
    each sending signed first-page queries back to back from `start` (wall clock, shared by all load
    processes) for `seconds`. What was not answered 200 is counted by status (or by the error, for a
    request that got no reply)."""
    partner_path, target, concurrency, start, seconds, cpu = args
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})

    async def run() -> dict[str, Any]:
        partner = Home.open(Path(partner_path))
        peer = peers.get(partner.db, target)
        latencies: list[float] = []
        failures: dict[str, int] = {}
        async with LoadClient(partner.identity, timeout=30, limit=concurrency) as client:
            await asyncio.gather(*(client.request(peer, "POST", "/v1/profiles/query", {"limit": 1})
                                   for _ in range(concurrency)))  # open every connection first
            await asyncio.sleep(max(0.0, start - time.time()))
            stop_at = start + seconds
            cpu_at_start = time.process_time()

            async def loop() -> None:
                while time.time() < stop_at:
                    started = time.perf_counter()
                    try:
                        status = (await client.request(peer, "POST", "/v1/profiles/query", {"limit": 50})).status
                    except DiscnodeError as exc:
                        status = type(exc).__name__
                    if status == 200:
                        if time.time() <= stop_at:
                            latencies.append((time.perf_counter() - started) * 1000)
                    else:
                        failures[str(status)] = failures.get(str(status), 0) + 1
            await asyncio.gather(*(loop() for _ in range(concurrency)))
            cpu = time.process_time() - cpu_at_start
        return {"latencies": latencies, "failures": failures, "cpu": cpu}

    return asyncio.run(run())


def rss_mb(pid: int) -> float:
    """Resident memory now. `discnode serve` execs the daemon in place, so the PID started is the
    PID serving."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """The process's user + system CPU time (all its threads), from the kernel's own accounting."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of the process's event loop (its main thread) and of its other
    threads together (SQL readers and writer, the delivery thread): Python names no threads to
    the kernel, so the split by thread ID is all /proc can give."""
    out = {"event loop": 0.0, "other threads": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            key = "event loop" if task.name == str(pid) else "other threads"
            out[key] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def established(port: int) -> int:
    """TCP connections established to a local port, by the kernel's table."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if int(parts[1].rsplit(":", 1)[1], 16) == port and parts[3] == "01":
                    count += 1
    return count


def serve_under_load(partner_paths: list[Path], target: str, pid: int, port: int, processes: int,
                     connections: int, seconds: float, pin: bool = False) -> dict[str, Any]:
    """`connections` real connections from `processes` load processes for `seconds`, while this
    process samples the node's RSS and connections, and reads its CPU time either side. Load
    process i speaks as partner i (modulo the partners given): a partner is one identity, with its
    own fair share of the node (fairshare.py: 8 requests served at once in all, 16 more waiting per
    partner, past that 429), so 50 connections are 50 real ones only from enough partners.
    pin: the node on CPU 0 and the load process(es) on CPU 1 (the node's core still shared with
    whatever else the machine runs)."""
    from concurrent.futures import ProcessPoolExecutor
    per = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
    start = time.time() + 3.0 + 0.02 * connections  # every load process connected and waiting by then
    all_cpus = os.sched_getaffinity(pid)
    if pin:
        os.sched_setaffinity(pid, {0})
    try:
        with ProcessPoolExecutor(processes) as pool:
            futures = [pool.submit(load_worker, (str(partner_paths[i % len(partner_paths)]), target, n, start,
                                                 seconds, 1 if pin else None))
                       for i, n in enumerate(per)]
            rss_before = rss_mb(pid)
            while time.time() < start:
                time.sleep(0.005)
            cpu0, threads0, rss, conns, load_at = cpu_seconds(pid), thread_cpu(pid), [], [], load()
            while time.time() < start + seconds:
                rss.append(rss_mb(pid))
                if len(rss) % 10 == 1:
                    conns.append(established(port))
                time.sleep(0.02)
            cpu1, threads1 = cpu_seconds(pid), thread_cpu(pid)
            parts = [f.result() for f in futures]
    finally:
        os.sched_setaffinity(pid, all_cpus)
    latencies = [x for part in parts for x in part["latencies"]]
    answered = len(latencies)
    failures: dict[str, int] = {}
    for part in parts:
        for status, n in part["failures"].items():
            failures[status] = failures.get(status, 0) + n
    per_thread = {name: round((threads1.get(name, 0.0) - threads0.get(name, 0.0)) * 1000 / answered, 3)
                  for name in threads1} if answered else {}
    return {"load_processes": processes, "connections": connections, "seconds": seconds, "pinned": pin,
            "partners": min(processes, len(partner_paths)),
            "connections_established_min": min(conns), "connections_established_max": max(conns),
            "queries": answered, "failed": sum(failures.values()), "failed_by_status": failures,
            "queries_per_second": round(answered / seconds, 1),
            "p50_ms": round(Result.pct(latencies, 50), 2), "p99_ms": round(Result.pct(latencies, 99), 2),
            "node_cpu_seconds": round(cpu1 - cpu0, 3),
            "node_cpu_share": round((cpu1 - cpu0) / seconds, 3),
            "node_cpu_ms_per_query": round((cpu1 - cpu0) * 1000 / answered, 3) if answered else None,
            "node_cpu_ms_per_query_by_thread": per_thread,
            # what one core would serve at that cost, if the node had it to itself
            "node_capacity_per_core_qps": round(answered / (cpu1 - cpu0)) if cpu1 > cpu0 else None,
            "load_cpu_ms_per_query": round(sum(p["cpu"] for p in parts) * 1000 / answered, 3) if answered else None,
            "rss_mb_before": round(rss_before, 1), "rss_mb_peak_under_load": round(max(rss), 1),
            "rss_mb_median_under_load": round(Result.pct(rss, 50), 1), "rss_samples": len(rss),
            "loadavg_at_start": load_at}


def load_partners(root: Path, served: Path, count: int, base_port: int) -> list[Path]:
    """`count` partner nodes without profiles, each with an agreement with the served node (only
    their identities are used: they never run)."""
    node = Home.open(served)
    out = []
    for i in range(count):
        path = network.make_node(root, 900 + i, f"Load partner {i}", base_port + i, 0, 1)
        partner = Home.open(path)
        network.agree_offline(partner, node)
        partner.close()
        out.append(path)
    node.close()
    return out


def code_tree(ref: str, into: Path) -> Path:
    import localnet  # this script's directory is first on sys.path
    return localnet.code_tree(ref, into)


def serving_only(args: argparse.Namespace) -> dict[str, Any]:
    """One node of `args.profiles` profiles serving, and nothing else: the pinned and the wide load,
    `args.rounds` times; with `args.base`, each round also with that commit's code serving the
    same database, the two alternating which goes first (same machine, same moment)."""
    rounds: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="discnode-serving-", dir=args.dir) as tmp:
        root = Path(tmp)
        base_port = network.free_ports(2 + args.partners)
        with Progress(console=console, transient=True) as progress:
            progress.add_task(f"building one node x {args.profiles} profiles", total=None)
            hub_path, paths = network.generate(root / "net", 1, args.profiles, base_port=base_port)
            partners = [hub_path] + load_partners(root / "net", paths[0], args.partners - 1, base_port + 2)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "discnode"], cwd=ROOT, capture_output=True,
                               text=True).stdout.strip()
        codes = [(f"this ({_commit('HEAD')}{'+' if dirty else ''})", ROOT)]
        if args.base:
            codes.append((f"base ({_commit(args.base)})", code_tree(args.base, root / "base")))
        node = Home.open(paths[0])
        target, port = node.node_id, node.config.port
        node.close()
        indexing: list[dict[str, Any]] = []
        for i in range(args.rounds):
            for label, code in (codes if i % 2 == 0 else codes[::-1]):
                # The disclosure index of what the last round served, here rather than in the next
                # node's first seconds (its delivery thread would do it then, inside the window):
                # the rows compare serving with serving, and the indexing is measured on its own.
                indexing.append(index_disclosures(paths[0]))
                with Progress(console=console, transient=True) as progress:
                    procs = start_nodes(paths[:1], progress, code)
                try:
                    pinned = serve_under_load(partners[:1], target, procs[0].pid, port, 1, args.pinned_connections,
                                              args.seconds, pin=(os.cpu_count() or 1) >= 2)
                    wide = serve_under_load(partners, target, procs[0].pid, port, args.load_processes,
                                            args.connections, args.seconds)
                finally:
                    stop_nodes(procs)
                rounds.setdefault(label, []).append({"serving_pinned": pinned, "serving": wide})
                console.print(f"round {i + 1} {label}: " + "; ".join(_serving_line(r) for r in (pinned, wide)))
        indexing.append(index_disclosures(paths[0]))
    entries = sum(x["entries"] for x in indexing)
    rounds["disclosure index"] = [{  # type: ignore[list-item]
        "entries": entries, "rows": sum(x["rows"] for x in indexing),
        "cpu_ms_per_served_entry": round(sum(x["cpu_s"] for x in indexing) * 1000 / entries, 3) if entries else None}]
    return rounds


def index_disclosures(node_path: Path) -> dict[str, Any]:
    """disclosures.catch_up (this checkout's) over the entries the node wrote since the last call:
    the work its delivery thread does every 30 s, off the serving path, per served page."""
    from discnode import disclosures
    db = store.connect(node_path / "discnode.db")
    try:
        before = disclosures._indexed_upto(db)
        served = db.execute("SELECT count(*) FROM audit WHERE seq > ? AND event = 'served'", [before]).fetchone()[0]
        started = time.process_time()
        rows = disclosures.catch_up(db)
        return {"entries": served, "rows": rows, "cpu_s": time.process_time() - started}
    finally:
        db.conn.close()


def _commit(ref: str) -> str:
    return subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()


def _serving_line(sv: dict[str, Any]) -> str:
    failed = ", ".join(f"{n} x {status}" for status, n in sorted(sv["failed_by_status"].items())) or "none"
    return (f"{sv['connections']} conn / {sv['partners']} partner(s): {sv['queries_per_second']:.0f} q/s, "
            f"node CPU {sv['node_cpu_ms_per_query']} ms/query, RSS peak {sv['rss_mb_peak_under_load']:.1f} MB, "
            f"failed {failed}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Federated Dataview benchmark")
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--profiles", type=int, default=600)
    parser.add_argument("--scale", default="10,30,100", help="node counts for first-page latency")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--walk-runs", type=int, default=20)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--load-processes", type=int, default=5)
    parser.add_argument("--pinned-connections", type=int, default=16,
                        help="connections from the one load process on the other core")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="30 x 600 without the 100-node scale; 5 s loads")
    parser.add_argument("--fast", action="store_true", help="tiny network, few runs (the test suite uses it)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "dataview.json")
    parser.add_argument("--dir", type=Path, default=None, help="where to build the network (default: temporary)")
    parser.add_argument("--partners", type=int, default=5,
                        help="partner identities the load processes speak as (each has its own fair share)")
    parser.add_argument("--serving-only", action="store_true",
                        help="one node serving, nothing else: the serving rows only, --rounds times")
    parser.add_argument("--rounds", type=int, default=3, help="with --serving-only: rounds of pinned + wide load")
    parser.add_argument("--base", default=None,
                        help="with --serving-only: also serve with this git commit's code, interleaved round by round")
    args = parser.parse_args(argv)
    if args.partners < 1:
        parser.error("--partners must be at least 1")
    if args.serving_only:
        if args.fast:
            args.profiles, args.connections, args.load_processes, args.pinned_connections = 30, 4, 2, 2
            args.seconds, args.rounds = 1.0, 1
        return serving_report(args, argv)
    if args.quick:
        args.scale, args.seconds = "10,30", 5.0
    if args.fast:
        args.nodes, args.profiles, args.scale, args.runs, args.walk_runs = 3, 30, "2,3", 3, 2
        args.connections, args.load_processes, args.pinned_connections, args.seconds = 4, 2, 2, 1.0
    scale = sorted({int(x) for x in args.scale.split(",")})
    total_nodes = max([args.nodes, *scale])
    started_all = time.monotonic()

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
            hub = Home.open(hub_path)
            baselines = {n: Baseline(build_baseline(root / f"baseline-{n}.db", paths[:n]), hub)
                         for n in sorted({args.nodes, *scale})}
            partners = [hub_path] + load_partners(root / "net", paths[0], args.partners - 1,
                                                  base_port + total_nodes + 1)
            procs = start_nodes(paths, progress)
        try:
            main_paths = paths[: args.nodes]
            if not args.fast:
                from localnet import settle  # beside this file
                console.print(f"settled: the CPUs {settle():.0%} idle over 2 s")
            loads = {"before": load()}
            # The searching side on the event loop `discnode search` and the daemon run on (loops.py:
            # uvloop where installed), so that the rows measure what ships.
            results = loops.run(measure(hub_path, main_paths, baselines[args.nodes], args.runs, args.walk_runs,
                                        args.timeout))
            loads["after_queries"] = load()
            scaling = loops.run(first_page_by_n(hub_path, paths, scale, baselines, max(args.runs, 20)
                                                if not args.fast else args.runs, args.timeout))
            loads["after_scaling"] = load()
            target, pid, port = Home.open(paths[0]).node_id, procs[0].pid, Home.open(paths[0]).config.port
            # Only the measured node need stay up now: the others would share its cores, idle or not.
            stop_nodes(procs[1:])
            pinned = serve_under_load(partners[:1], target, pid, port, 1, args.pinned_connections, args.seconds,
                                      pin=(os.cpu_count() or 1) >= 2)
            wide = serve_under_load(partners, target, pid, port, args.load_processes, args.connections, args.seconds)
            loads["after_serving"] = load()
        finally:
            stop_nodes(procs)

    report = {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_1min": loads, "searching_event_loop": loops.kind()},
        "network": {"nodes": args.nodes, "profiles_per_node": args.profiles,
                    "profiles": args.nodes * args.profiles, "build_seconds": round(build_s, 1)},
        "queries": [r.row() for r in results],
        "first_page_by_nodes": scaling,
        "serving_pinned": pinned,
        "serving": wide,
        "seconds": round(time.monotonic() - started_all, 1),
        "command": "python benchmarks/dataview.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    print_report(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"JSON: {args.out}")
    return 0


def serving_report(args: argparse.Namespace, argv: list[str] | None) -> int:
    started = time.monotonic()
    loads = {"before": load()}
    rounds = serving_only(args)
    loads["after"] = load()
    summary = {}
    indexing = rounds.pop("disclosure index")[0]
    for label, runs in rounds.items():
        summary[label] = {}
        for key in ("serving_pinned", "serving"):
            rows = [r[key] for r in runs]
            failed: dict[str, int] = {}
            for r in rows:
                for status, n in r["failed_by_status"].items():
                    failed[status] = failed.get(status, 0) + n
            summary[label][key] = {
                "rounds": len(rows),
                "node_cpu_ms_per_query_median": Result.pct([r["node_cpu_ms_per_query"] or float("inf") for r in rows], 50),
                "node_cpu_ms_per_query": [r["node_cpu_ms_per_query"] for r in rows],
                "queries_per_second": [r["queries_per_second"] for r in rows],
                "rss_mb_peak_under_load_max": max(r["rss_mb_peak_under_load"] for r in rows),
                "rss_mb_peak_under_load": [r["rss_mb_peak_under_load"] for r in rows],
                "failed_by_status": failed}
    report = {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_1min": loads},
        "profiles": args.profiles, "partners": args.partners, "summary": summary, "rounds": rounds,
        "disclosure_index": indexing,
        "seconds": round(time.monotonic() - started, 1),
        "command": "python benchmarks/dataview.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    t = Table(title=f"One node ({args.profiles} profiles) serving signed first-page queries (50 records): "
                    f"{args.rounds} rounds, medians; node CPU from /proc")
    for col in ("code", "load", "node CPU ms/query", "per round", "q/s per round", "RSS peak MB (max)", "failed"):
        t.add_column(col, justify="left" if col in ("code", "load", "failed") else "right")
    for label, rows in summary.items():
        for key, what in (("serving_pinned", f"pinned, {args.pinned_connections} conn, 1 partner"),
                          ("serving", f"{args.connections} conn, {args.load_processes} proc, "
                                      f"{min(args.partners, args.load_processes)} partners")):
            sv = rows[key]
            t.add_row(label, what, f"{sv['node_cpu_ms_per_query_median']:.3f}",
                      " ".join(str(x) for x in sv["node_cpu_ms_per_query"]),
                      " ".join(f"{x:.0f}" for x in sv["queries_per_second"]),
                      f"{sv['rss_mb_peak_under_load_max']:.1f}",
                      ", ".join(f"{n} x {s}" for s, n in sorted(sv["failed_by_status"].items())) or "none")
    console.print(t)
    console.print(f"Disclosure index (off the serving path, by the delivery thread every 30 s; measured here): "
                  f"{indexing['entries']} served entries, {indexing['rows']} rows, "
                  f"{indexing['cpu_ms_per_served_entry']} ms CPU per served entry")
    console.print(f"Load average (1 min): {loads}")
    out = args.out if args.out != ROOT / "benchmarks" / "results" / "dataview.json" else \
        ROOT / "benchmarks" / "results" / "dataview-serving.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"JSON: {out}")
    return 0


def print_report(report: dict[str, Any]) -> None:
    net = report["network"]
    t = Table(title=f"Dataview: {net['nodes']} nodes x {net['profiles_per_node']} profiles "
                    f"= {net['profiles']:,} profiles (ms; ratio = federated p50 / baseline p50)")
    for col in ("query", "runs", "fed p50", "fed p95", "hub CPU p50", "base p50", "checked p50", "ratio", "ratio checked",
                "note"):
        t.add_column(col, justify="left" if col in ("query", "note") else "right")
    for q in report["queries"]:
        cpu = q.get("federated_cpu_p50_ms")
        t.add_row(q["name"], str(q["runs"]), f"{q['federated_p50_ms']:.1f}", f"{q['federated_p95_ms']:.1f}",
                  f"{cpu:.1f}" if cpu is not None else "",
                  f"{q['baseline_p50_ms']:.2f}", f"{q['checked_baseline_p50_ms']:.2f}", f"{q['ratio_p50']}x",
                  f"{q['ratio_checked_p50']}x" if q["ratio_checked_p50"] else "", q["note"])
    console.print(t)
    s = Table(title="First page (50, by last seen) by number of nodes")
    for col in ("nodes", "runs", "p50 ms", "p95 ms", "hub CPU p50 ms", "checked baseline p50 ms"):
        s.add_column(col, justify="right")
    for n, v in report["first_page_by_nodes"].items():
        s.add_row(str(n), str(v["runs"]), f"{v['p50_ms']:.1f}", f"{v['p95_ms']:.1f}", f"{v.get('hub_cpu_p50_ms', float('nan')):.1f}",
                  f"{v['checked_baseline_p50_ms']:.2f}")
    console.print(s)
    for key in ("serving_pinned", "serving"):
        sv = report[key]
        console.print(
            f"One node serving signed first-page queries (50 records){' pinned to CPU 0, load on CPU 1' if sv['pinned'] else ''}: "
            f"{sv['connections']} connections ({sv['connections_established_min']}-{sv['connections_established_max']} "
            f"established) from {sv['load_processes']} load process(es) for {sv['seconds']:g}s: "
            f"{sv['queries_per_second']:.0f} queries/s, p50 {sv['p50_ms']:.1f} ms, p99 {sv['p99_ms']:.1f} ms; "
            f"node CPU {sv['node_cpu_ms_per_query']} ms per query ({sv['node_cpu_share']:.2f} of a core; "
            f"{sv['node_capacity_per_core_qps']} queries/s a core at that cost), load processes "
            f"{sv['load_cpu_ms_per_query']} ms per query; "
            f"RSS {sv['rss_mb_before']:.1f} MB before, peak {sv['rss_mb_peak_under_load']:.1f} MB under load "
            f"({sv['rss_samples']} samples); load average {sv['loadavg_at_start']}; from {sv['partners']} "
            f"partner(s); not answered: "
            + (", ".join(f"{n} x {s}" for s, n in sorted(sv["failed_by_status"].items())) or "none"))
    console.print(f"Load average (1 min) through the run: {report['machine']['loadavg_1min']}")


if __name__ == "__main__":
    sys.exit(main())
