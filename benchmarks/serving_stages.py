"""Where one signed first-page query's CPU goes on the serving node, without a profiler.

One node of --profiles profiles is served in this process (server.start, as `discnode serve`
does), with each stage wrapped in `time.thread_time_ns()` deltas of the thread it runs on; one
load process (dataview.load_worker, another core if there is one) sends signed first-page
queries for --seconds. Prints each stage's CPU per answered query (its own, less that of timed
stages inside it), and each thread's total (from /proc/self/task/*/schedstat); writes them to
benchmarks/results/serving-stages.json. What the stages leave of the event loop's total is asyncio's
scheduling (two trips to SQL threads a request: the verification's, the group commit's), aiohttp's request and response objects, the
middlewares' own lines and the socket system calls. Each wrapper costs about 1 us of the figures
(_unicode is recursive: ~13 calls a request, so its figure is mostly the wrappers').
A diagnostic, not a comparison: compare codes with dataview.py --serving-only --base.

    python benchmarks/serving_stages.py --profiles 600 --seconds 8
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import json
import multiprocessing
import os
import ssl
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import network  # noqa: E402

from discnode import audit, fairshare, replay, server, store, wirejson  # noqa: E402
from discnode.home import Home  # noqa: E402

SPENT: dict[str, list[int]] = defaultdict(lambda: [0, 0])
_depth = threading.local()


def timed(name: str, fn: Any) -> Any:
    """fn, with its own CPU (less that of timed calls inside it) added to SPENT[name]."""
    @functools.wraps(fn)
    def wrapper(*a: Any, **k: Any) -> Any:
        stack = getattr(_depth, "stack", None)
        if stack is None:
            stack = _depth.stack = []
        stack.append(0)
        t0 = time.thread_time_ns()
        try:
            return fn(*a, **k)
        finally:
            total = time.thread_time_ns() - t0
            inner = stack.pop()
            s = SPENT[name]
            s[0] += total - inner
            s[1] += 1
            if stack:
                stack[-1] += total
    return wrapper


def patch() -> None:
    server.verify_request = timed("verify_request (RFC 9421, reader)", server.verify_request)
    seen: dict[int, int] = {}

    def search_split(search: Any) -> Any:
        def split(db: Any, *a: Any, **k: Any) -> Any:
            # Split by whether another connection committed since this one last read (SQLite then
            # drops the connection's whole page cache and reads every page again). The page is
            # read on the writer thread now, in its group commit (NodeState.read_and_audit).
            version = db.execute("PRAGMA data_version").fetchone()[0]
            changed = seen.get(id(db)) != version
            seen[id(db)] = version
            name = ("store.search_served after a commit (SQL thread)" if changed
                    else "store.search_served, cache warm (SQL thread)")
            return timed(name, search)(db, *a, **k)
        return split
    store.search_served = search_split(store.search_served)
    store.search_served_bytes = search_split(store.search_served_bytes)
    server.NodeState._agreement_in = timed("agreement check (reader)", server.NodeState._agreement_in)
    server.SqlThreads._call = timed("reader/writer thread call, rest", server.SqlThreads._call)
    audit.append_many = timed("audit.append_many (writer)", audit.append_many)
    replay.write = timed("replay.write (writer)", replay.write)
    server.Nonces.seen = timed("replay cache seen (loop)", server.Nonces.seen)
    fairshare.FairShare.claim = timed("fair share claim (loop)", fairshare.FairShare.claim)
    server._unicode = timed("audit detail _unicode (loop)", server._unicode)
    server.wirejson.loads = timed("wirejson.loads request body (loop)", wirejson.loads)
    server.Query.from_wire = timed("Query.from_wire (loop)", server.Query.from_wire.__func__)
    server.Query.from_wire = classmethod(server.Query.from_wire)
    server.web.Response.__init__ = timed("web.Response build (loop)", server.web.Response.__init__)
    ssl.SSLObject.read = timed("TLS decrypt SSLObject.read (loop)", ssl.SSLObject.read)
    ssl.SSLObject.write = timed("TLS encrypt SSLObject.write (loop)", ssl.SSLObject.write)
    from discnode import peers, signing
    import nacl.signing
    peers.public_key = timed("peers.public_key (key lookup SQL, reader)", peers.public_key)
    peers.consent_hashes = timed("peers.consent_hashes (agreement cache key SQL, reader)", peers.consent_hashes)
    signing._discnode_rules = timed("signing._discnode_rules (reader)", signing._discnode_rules)
    signing._fast_target = timed("signing._fast_target URL regex (reader)", signing._fast_target)
    signing.signature_base = timed("signing.signature_base (reader)", signing.signature_base)
    nacl.signing.VerifyKey.verify = timed("Ed25519 verify, libsodium (reader)", nacl.signing.VerifyKey.verify)
    import aiohttp.web_protocol as wp
    wp.RequestHandler.data_received = timed("aiohttp data_received/parse (loop)", wp.RequestHandler.data_received)
    import aiohttp.web_response as wr
    for name in ("_prepare_headers", "_write_headers"):
        if hasattr(wr.StreamResponse, name):
            setattr(wr.StreamResponse, name, timed(f"aiohttp {name} (loop)", getattr(wr.StreamResponse, name)))


def thread_ns() -> dict[str, int]:
    out: dict[str, int] = {}
    names = {t.native_id: t.name for t in threading.enumerate()}
    for task in Path("/proc/self/task").iterdir():
        try:
            ns = int((task / "schedstat").read_text().split()[0])
        except OSError:
            continue
        name = names.get(int(task.name), "other")
        key = "event loop" if name == "MainThread" else name.rsplit("_", 1)[0]
        out[key] = out.get(key, 0) + ns
    return out


async def serve(node_path: Path, partner_path: Path, seconds: float, connections: int, out_path: Path) -> None:
    import dataview
    home = Home.open(node_path)
    running = await server.start(home, server.Limits(rate=1_000_000, burst=2_000_000))
    loop = asyncio.get_running_loop()
    ctx = multiprocessing.get_context("spawn")
    start = time.time() + 4.0
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        fut = loop.run_in_executor(pool, dataview.load_worker,
                                   (str(partner_path), home.node_id, connections, start, seconds,
                                    1 if (os.cpu_count() or 1) >= 2 else None))
        while time.time() < start:
            await asyncio.sleep(0.01)
        SPENT.clear()
        t0, p0, o0 = thread_ns(), time.process_time_ns(), os.times()
        await asyncio.sleep(seconds)
        t1, p1, o1 = thread_ns(), time.process_time_ns(), os.times()
        spent = {k: list(v) for k, v in SPENT.items()}
        result = await fut
    await running.stop()
    n = len(result["latencies"])
    out = {"queries": n, "seconds": seconds, "failed": result["failures"],
           "process_us_per_query": round((p1 - p0) / n / 1000, 1),
           "user_us_per_query": round((o1.user - o0.user) / n * 1e6, 1),
           "system_us_per_query": round((o1.system - o0.system) / n * 1e6, 1),
           "threads_us_per_query": {k: round((t1[k] - t0.get(k, 0)) / n / 1000, 1) for k in sorted(t1)
                                    if t1[k] - t0.get(k, 0) > 0},
           "stages_us_per_query": {k: {"us": round(ns / n / 1000, 1), "calls": round(calls / n, 2)}
                                   for k, (ns, calls) in sorted(spent.items(), key=lambda kv: -kv[1][0])}}
    print(f"answered {n} queries in {seconds} s ({n / seconds:.0f}/s), failed {result['failures']}")
    print(f"process CPU {out['process_us_per_query']} us/query: user {out['user_us_per_query']}, "
          f"system {out['system_us_per_query']}")
    for k, us in out["threads_us_per_query"].items():
        print(f"  thread {k:52s} {us:8.1f} us/query")
    for k, v in out["stages_us_per_query"].items():
        print(f"  {k:59s} {v['us']:8.1f} us/query  ({v['calls']:.2f} calls/query)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=2))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--profiles", type=int, default=600)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--readers", type=int, default=0, help="SQL reader threads (0: the node's default)")
    p.add_argument("--mmap", type=int, default=0, help="PRAGMA mmap_size of every connection (experiment)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serving-stages.json")
    p.add_argument("--no-stages", action="store_true", help="no wrappers: the totals alone")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default=None,
                   help="the event loop (default: the daemon's, loops.kind())")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="discnode-stages-") as tmp:
        root = Path(tmp)
        base = network.free_ports(3)
        _, paths = network.generate(root / "net", 1, args.profiles, base_port=base)
        import dataview
        partner = dataview.load_partners(root / "net", paths[0], 1, base + 2)[0]
        if not args.no_stages:
            patch()
        if args.mmap:
            connect = store.connect

            def mapped(*a: Any, **k: Any) -> Any:
                db = connect(*a, **k)
                db.execute(f"PRAGMA mmap_size={args.mmap}")
                return db
            store.connect = mapped
        if args.readers:
            init = server.SqlThreads.__init__
            server.SqlThreads.__init__ = lambda self, path, readers=4: init(self, path, args.readers)
        if (os.cpu_count() or 1) >= 2:
            os.sched_setaffinity(0, {0})
        from discnode import loops
        print(f"event loop: {args.loop or loops.kind()}")
        loops.run(serve(paths[0], partner, args.seconds, args.connections, args.out), args.loop)


if __name__ == "__main__":
    main()
