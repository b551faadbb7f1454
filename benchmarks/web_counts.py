"""The web Dataview's page and facet counts: one request per partner (the query carrying `counts`)
against two (a query and a facets request), in CPU time, interleaved in one run.

    python benchmarks/web_counts.py              # 30 partnerships x 600 profiles, 10 batches of 5 pages each way
    python benchmarks/web_counts.py --fast       # 3 x 40, 2 batches of 2 (tests/test_benchmarks.py runs it)

Every partnership is its own `discnode serve` process; the hub's side runs in this process, as the
daemon runs the web page: one warm PeerClient, the page's query (the web Dataview's first page, 50
faces; and a filtered one) and its counts from every partnership. "two requests" is the web page's
code before this change (dataview.search beside facets.across), "one request" is
dataview.search(counts=True). Not timed: the HTML rendering and the hub's audit entry, the same on
both paths. CPU: the partners' user + system time from /proc/PID/stat, summed over every partner
daemon, around each batch of pages (the kernel counts in ticks of 10 ms, hence batches), and this
process's own time (time.process_time) for the hub. Batches alternate which path goes first.
Every page of both paths is checked equal (results, cursor, counts, each source's total).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import localnet  # noqa: E402
from localnet import network  # noqa: E402

from discnode import dataview, facets  # noqa: E402
from discnode.client import PeerClient  # noqa: E402
from discnode.home import Home, today  # noqa: E402
from discnode.query import Query  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_ms(pids: list[int]) -> float:
    """User + system CPU of these processes so far, in ms (fields 14 and 15 of /proc/PID/stat)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total * 1000 / TICK


async def two_requests(home: Home, query: Query, client: PeerClient, timeout: float) -> tuple[Any, Any]:
    """The web page's way before: the page and, beside it, the counts by POST /v1/profiles/facets."""
    targets = dataview.active_peers(home)
    own = (home.node_id, home.config.name, facets.count(home.db, query, today(), origin=home.node_id))
    page, counted = await asyncio.gather(
        dataview.search(home, query, timeout=timeout, partnerships=set(), client=client),
        facets.across(own, targets, query, client, timeout, withheld=lambda p: dataview.withheld_by(home, p)))
    return page, counted


async def one_request(home: Home, query: Query, client: PeerClient, timeout: float) -> tuple[Any, Any]:
    page = await dataview.search(home, query, timeout=timeout, partnerships=set(), client=client, counts=True)
    return page, (page.counts, page.counted)


def same(a: tuple[Any, Any], b: tuple[Any, Any]) -> None:
    (pa, (ca, sa)), (pb, (cb, sb)) = a, b
    if [r["id"] for r in pa.results] != [r["id"] for r in pb.results] or pa.next_cursor != pb.next_cursor:
        raise SystemExit("the two paths gave different pages")
    if ca != cb or [(s.node_id, s.status, s.total) for s in sa] != [(s.node_id, s.status, s.total) for s in sb]:
        raise SystemExit("the two paths gave different counts")
    if any(s.status != "ok" for s in sa) or any(s.status != "ok" for s in pa.peers):
        raise SystemExit(f"a partnership failed: {[(s.name, s.status, s.error) for s in sa if s.status != 'ok']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--profiles", type=int, default=600)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--pages", type=int, default=5, help="pages per batch")
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--out", type=Path, default=localnet.ROOT / "benchmarks" / "results" / "web_counts.json")
    args = parser.parse_args(argv)
    if args.fast:
        args.nodes, args.profiles, args.batches, args.pages = 3, 40, 2, 2
    queries = {"first page": Query(), "gender=female, tag=shoplifting": Query(gender=("female",), tags=("shoplifting",))}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="discnode-web-counts-") as tmp:
        base = network.free_ports(args.nodes + 1)
        started = time.monotonic()
        hub_path, paths = network.generate(Path(tmp) / "net", args.nodes, args.profiles, base_port=base)
        print(f"built {args.nodes} partnerships x {args.profiles} profiles in {time.monotonic() - started:.0f} s")
        procs = [localnet._serve(p) for p in paths]
        try:
            for path, proc in zip(paths, procs):
                localnet._wait_for(path, proc, "port")
            pids = [p.pid for p in procs]
            home = Home.open(hub_path)
            rows = asyncio.run(measure(home, pids, queries, args))
            home.close()
        finally:
            localnet.stop(procs)
    report = {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_at_end": localnet.load()},
        "network": {"partnerships": args.nodes, "profiles_per_partnership": args.profiles},
        "batches": args.batches, "pages_per_batch": args.pages, "rows": rows,
        "command": "python benchmarks/web_counts.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    print(f"\nweb Dataview page + counts, {args.nodes} partnerships x {args.profiles}: CPU ms per page, "
          f"median of {args.batches} batches of {args.pages} (ratio: one / two)")
    print(f"{'query':<34} {'path':<14} {'requests':>8} {'partners':>9} {'hub':>7} {'total':>7}")
    for r in rows:
        print(f"{r['query']:<34} {r['path']:<14} {r['requests_per_page']:>8} {r['partners_cpu_ms']:>9} "
              f"{r['hub_cpu_ms']:>7} {r['total_cpu_ms']:>7}" + (f"   ratio {r['ratio_total']}" if "ratio_total" in r else ""))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"JSON: {args.out}")
    return 0


async def measure(home: Home, pids: list[int], queries: dict[str, Query], args: argparse.Namespace
                  ) -> list[dict[str, Any]]:
    timeout = 30.0  # a loaded 2-core machine: a page that times out would measure nothing
    client = PeerClient(home.identity, timeout=timeout)
    sent = 0
    request = client.request

    async def counting(*a: Any, **kw: Any) -> Any:
        nonlocal sent
        sent += 1
        return await request(*a, **kw)
    client.request = counting  # type: ignore[method-assign]
    paths: dict[str, Callable[..., Awaitable[tuple[Any, Any]]]] = {"two requests": two_requests,
                                                                    "one request": one_request}
    rows = []
    try:
        for label, query in queries.items():
            for path in paths.values():  # warm: connections, validators, the partners' caches
                await path(home, query, client, timeout)
            cpu: dict[str, dict[str, list[float]]] = {name: {"partners": [], "hub": []} for name in paths}
            requests: dict[str, int] = {name: 0 for name in paths}
            for batch in range(args.batches):
                order = list(paths) if batch % 2 == 0 else list(reversed(paths))
                answers = {}
                for name in order:
                    before_sent, before_p, before_h = sent, cpu_ms(pids), time.process_time()
                    for _ in range(args.pages):
                        answers[name] = await paths[name](home, query, client, timeout)
                    await asyncio.sleep(0.2)  # let the partners finish writing their audit entries
                    cpu[name]["hub"].append((time.process_time() - before_h) * 1000 / args.pages)
                    cpu[name]["partners"].append((cpu_ms(pids) - before_p) / args.pages)
                    requests[name] += sent - before_sent
                same(answers["two requests"], answers["one request"])
            for name in paths:
                partners, hub = statistics.median(cpu[name]["partners"]), statistics.median(cpu[name]["hub"])
                rows.append({"query": label, "path": name,
                             "requests_per_page": requests[name] / (args.batches * args.pages),
                             "partners_cpu_ms": round(partners, 1), "hub_cpu_ms": round(hub, 1),
                             "total_cpu_ms": round(partners + hub, 1),
                             "partners_batches": [round(x, 1) for x in cpu[name]["partners"]],
                             "hub_batches": [round(x, 1) for x in cpu[name]["hub"]]})
            two, one = rows[-2], rows[-1]
            for key in ("partners_cpu_ms", "hub_cpu_ms", "total_cpu_ms"):
                one["ratio_" + key.removesuffix("_cpu_ms")] = round(one[key] / two[key], 3) if two[key] else None
            print(f"  {label}: two {two['total_cpu_ms']} ms, one {one['total_cpu_ms']} ms CPU a page "
                  f"(load {localnet.load()})", flush=True)
    finally:
        await client.close()
    return rows


if __name__ == "__main__":
    sys.exit(main())
