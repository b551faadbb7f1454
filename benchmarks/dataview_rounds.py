"""A first page in two rounds (dataview.round_two) against one round (every partner asked for the
whole page), in the same run, on the same network.

    python benchmarks/dataview_rounds.py --fast                       # 4 partnerships x 60, a smoke run
    python benchmarks/dataview_rounds.py --dir /tmp/net --scale 10,30,100 --profiles 600

Two parts:

1. How often the second round happens: the round rule run on the network's own databases (each
   partnership's records as it serves them, no network), for every sort in both directions, with
   and without filters, and for the first five pages of each (cursors mid-way), at each scale;
   then again with the same records gathered into partnerships of very unequal size (one holding
   a quarter of everything, the smallest 1/60th). Every page is checked equal, with its `more`, to
   the one-round merge's.
2. What a first page costs, from real `discnode serve` processes over HTTPS: records parsed and
   bytes received by the searching node, its CPU per page (process time), the partners' CPU
   summed (each node's own accounting, /proc), requests sent. One round and two rounds alternate
   batch by batch (`first_round_size` set to the whole page is exactly the one-round search), and
   every two-round page is checked equal to the one-round page of the same batch pair.

Wall-clock times are not reported: the machine is shared, and CPU and counts are what changed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import heapq
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import network  # noqa: E402  (examples/network.py)

from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

import dataview as bench  # noqa: E402  (benchmarks/dataview.py: node processes, the hub's client, /proc)
from discnode import dataview, store  # noqa: E402
from discnode.dataview import Answer, _after, answered, first_round_size, may_hold_more, merge, round_two  # noqa: E402
from discnode.handling import Audience  # noqa: E402
from discnode.home import Home, today  # noqa: E402
from discnode.query import Query, sort_key  # noqa: E402

console = Console(width=160)
EVERYTHING = Audience(ethnicity=True, minors=True)  # what the generated agreements share


def shapes(surname: str) -> dict[str, Query]:
    out = {}
    for sort in ("last-seen", "name", "incidents", "created"):
        for desc in (False, True):
            out[f"{sort}{' desc' if desc else ''}"] = Query(sort=sort, desc=desc)
    out["gender+build+ethnicity, last-seen desc"] = Query(gender=("male",), build=("slim", "medium"),
                                                         ethnicity=("IC1",), sort="last-seen", desc=True)
    out["status identified, tag theft, name"] = Query(status=("identified",), tags=("theft",))
    out[f"text {surname!r}"] = Query(text=surname)
    return out


# --- 1. how often: the round rule on the network's own data ------------------------------------


def simulate(query: Query, lists: list[list[dict[str, Any]]]) -> tuple[int, int, int]:
    """Two rounds on sources answering from `lists` (each its first `limit` records after the
    cursor): (sources asked again, records sent in all, records one round sends). Raises if the
    page or `more` differs from one round's."""
    k = first_round_size(query.limit, len(lists))
    answers = [Answer(rs[:k], k, len(rs[:k])) for rs in lists]
    page, more = merge([a.records for a in answers], query)
    again = round_two(answers, page, query)
    for a in again:
        rest = [r for r in lists[a.source] if _after(sort_key(r, query.sort), a.after, query.desc)][: a.limit]
        answers[a.source] = answered(answers[a.source], a, rest, len(rest))
    if again:
        page, more = merge([a.records for a in answers], query)
    one, one_more = merge(lists, query)
    if [r["id"] for r in page] != [r["id"] for r in one] or may_hold_more(answers, more) != one_more:
        raise AssertionError(f"two rounds differ from one: {query}")
    return len(again), sum(a.sent for a in answers), sum(len(rs) for rs in lists)


def groups_of(n: int) -> list[int]:
    """Partnership sizes, in nodes' worth of records: very unequal (roughly Zipf), summing to n."""
    sizes, left, size = [], n, max(1, n // 4)
    while left:
        take = min(size, left)
        sizes.append(take)
        left -= take
        size = max(1, size * 2 // 3)
    return sizes


def frequency(paths: list[Path], scale: list[int], pages: int) -> list[dict[str, Any]]:
    dbs = []
    for path in paths:
        home = Home.open(path)
        dbs.append((home.node_id, home.db))
    surname = json.loads(dbs[0][1].execute("SELECT record FROM profiles WHERE status = 'identified' LIMIT 1"
                                           ).fetchone()[0])["last_name"]
    rows = []
    for n in scale:
        for skewed in (False, True):
            sizes = groups_of(n) if skewed else [1] * n
            for name, base in shapes(surname).items():
                stats = {"pages": 0, "round_two": 0, "asked_again": 0, "sent": 0, "sent_one_round": 0}
                query = base
                for _ in range(pages):
                    per_node = [store.search(db, query, today(), served_by=origin, audience=EVERYTHING)
                                for origin, db in dbs[:n]]
                    lists, i = [], 0
                    for size in sizes:  # a partnership of `size` nodes' records: their merged order
                        key = (lambda r: sort_key(r, query.sort))
                        lists.append(list(heapq.merge(*per_node[i:i + size], key=key, reverse=query.desc)
                                          )[: query.limit])
                        i += size
                    again, sent, one = simulate(query, lists)
                    stats["pages"] += 1
                    stats["round_two"] += bool(again)
                    stats["asked_again"] += again
                    stats["sent"] += sent
                    stats["sent_one_round"] += one
                    page, more = merge(lists, query)
                    if not more or not page:
                        break
                    query = dataclasses.replace(query, after=sort_key(page[-1], query.sort))
                rows.append({"partnerships": len(sizes), "nodes": n, "skewed": skewed, "shape": name, **stats})
    return rows


# --- 2. what a first page costs, one round against two -----------------------------------------


@contextlib.contextmanager
def one_round() -> Iterator[None]:
    """The one-round search: every partner asked for the whole page (so never a second round)."""
    saved = dataview.first_round_size
    dataview.first_round_size = lambda limit, partners: limit
    try:
        yield
    finally:
        dataview.first_round_size = saved


class Counting(bench.HubClient):
    """The hub's client, counting query requests and the bytes of their replies."""

    requests = 0
    received = 0

    async def request(self, peer: Any, method: str, path: str, payload: Any = None, **kw: Any) -> Any:
        reply = await super().request(peer, method, path, payload, **kw)
        if path == "/v1/profiles/query":
            self.requests += 1
            self.received += len(reply.body)
        return reply


async def costs(hub_path: Path, paths: list[Path], pids: list[int], scale: list[int], runs: int, batch: int,
                timeout: float) -> list[dict[str, Any]]:
    hub = Home.open(hub_path)
    ids = [Home.open(p).node_id for p in paths]
    query_shapes = {"last-seen desc, no filter": Query(sort="last-seen", desc=True),
                    "gender+build+ethnicity": Query(gender=("male",), build=("slim", "medium"), ethnicity=("IC1",),
                                                    sort="last-seen", desc=True),
                    "incidents (ties: one partnership holds the page)": Query(sort="incidents")}
    rows = []
    async with Counting(hub.identity, timeout=timeout, limit=200) as client:
        for n in scale:
            for name, query in query_shapes.items():
                totals = {mode: {"pages": 0, "cpu_s": 0.0, "partners_cpu_s": 0.0, "records": 0, "bytes": 0,
                                 "requests": 0} for mode in ("one round", "two rounds")}
                for mode in ("one round", "two rounds"):  # warm both: connections, caches
                    with one_round() if mode == "one round" else contextlib.nullcontext():
                        await dataview.search(hub, query, client=client, timeout=timeout, partnerships=ids[:n])
                for run in range(runs):
                    order = ("one round", "two rounds") if run % 2 == 0 else ("two rounds", "one round")
                    results = {}
                    for mode in order:
                        t = totals[mode]
                        partners_before = sum(bench.cpu_seconds(pid) for pid in pids[:n])
                        requests, received = client.requests, client.received
                        with one_round() if mode == "one round" else contextlib.nullcontext():
                            cpu = time.process_time()
                            for _ in range(batch):
                                page = await dataview.search(hub, query, client=client, timeout=timeout,
                                                             partnerships=ids[:n])
                            t["cpu_s"] += time.process_time() - cpu
                        t["partners_cpu_s"] += sum(bench.cpu_seconds(pid) for pid in pids[:n]) - partners_before
                        bad = [p for p in page.peers if p.status != "ok"]
                        if bad:
                            raise RuntimeError(f"{mode}: partners not ok: {bad[:3]}")
                        t["pages"] += batch
                        t["records"] += batch * sum(p.count + p.dropped for p in page.peers[1:])
                        t["requests"] += client.requests - requests
                        t["bytes"] += client.received - received
                        results[mode] = ([(r["origin"], r["id"]) for r in page.results], page.next_cursor is None)
                    if results["one round"] != results["two rounds"]:
                        raise AssertionError(f"{name} at {n}: two rounds gave another page than one")
                for mode, t in totals.items():
                    pages = t["pages"]
                    rows.append({"partnerships": n, "shape": name, "mode": mode, "pages": pages,
                                 "records_parsed": round(t["records"] / pages, 1),
                                 "kb_received": round(t["bytes"] / pages / 1024, 1),
                                 "requests": round(t["requests"] / pages, 2),
                                 "cpu_ms": round(1000 * t["cpu_s"] / pages, 2),
                                 "partners_cpu_ms": round(1000 * t["partners_cpu_s"] / pages, 2)})
    return rows


def report(freq: list[dict[str, Any]], cost: list[dict[str, Any]]) -> None:
    table = Table(title="How often a second round happens (five pages of each query shape)")
    for col in ("partnerships", "data", "shape", "pages", "with round two", "asked again", "records sent",
                "one round sends", "ratio"):
        table.add_column(col, justify="left" if col in ("data", "shape") else "right")
    for r in freq:
        table.add_row(str(r["partnerships"]), "unequal" if r["skewed"] else "as generated", r["shape"], str(r["pages"]),
                      str(r["round_two"]), str(r["asked_again"]), str(r["sent"]), str(r["sent_one_round"]),
                      f"{r['sent'] / max(1, r['sent_one_round']):.2f}")
    console.print(table)
    for skewed in (False, True):
        for n in sorted({r["partnerships"] for r in freq if r["skewed"] == skewed}):
            sel = [r for r in freq if r["skewed"] == skewed and r["partnerships"] == n]
            pages, two = sum(r["pages"] for r in sel), sum(r["round_two"] for r in sel)
            console.print(f"{'unequal' if skewed else 'as generated'}, {n} partnerships: round two on {two} of "
                          f"{pages} pages; records sent {sum(r['sent'] for r in sel) / sum(r['sent_one_round'] for r in sel):.2f}"
                          " of one round's")
    table = Table(title="A first page: one round against two (per page; same run, batches alternating)")
    for col in ("partnerships", "shape", "mode", "pages", "records parsed", "KiB received", "requests",
                "hub CPU ms", "partners' CPU ms"):
        table.add_column(col, justify="left" if col in ("shape", "mode") else "right")
    for r in cost:
        table.add_row(str(r["partnerships"]), r["shape"], r["mode"], str(r["pages"]), str(r["records_parsed"]),
                      str(r["kb_received"]), str(r["requests"]), str(r["cpu_ms"]), str(r["partners_cpu_ms"]))
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A first page in two rounds against one")
    parser.add_argument("--profiles", type=int, default=600)
    parser.add_argument("--scale", default="10,30,100")
    parser.add_argument("--pages", type=int, default=5, help="pages of each shape for the frequency part")
    parser.add_argument("--runs", type=int, default=6, help="batch pairs for the cost part")
    parser.add_argument("--batch", type=int, default=5, help="pages per batch")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--fast", action="store_true", help="4 partnerships x 60 profiles, a smoke run")
    parser.add_argument("--dir", type=Path, default=None, help="build (or reuse) the network here")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "dataview_rounds.json")
    args = parser.parse_args(argv)
    if args.fast:
        args.profiles, args.scale, args.pages, args.runs, args.batch = 60, "4", 2, 2, 2
    scale = sorted({int(x) for x in args.scale.split(",")})
    with contextlib.ExitStack() as stack:
        root = args.dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="discnode-rounds-")))
        net = root / "net"
        if (net / "node000").exists():
            hub_path, paths = net / "node000", sorted(p for p in net.glob("node*") if p.name != "node000")
        else:
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task(f"building {max(scale)} nodes x {args.profiles}", total=max(scale))
                hub_path, paths = network.generate(net, max(scale), args.profiles,
                                                   base_port=network.free_ports(max(scale) + 1),
                                                   progress=lambda n: progress.advance(task, n))
        paths = paths[: max(scale)]
        started = time.monotonic()
        freq = frequency(paths, scale, args.pages)
        console.print(f"frequency part: {time.monotonic() - started:.0f} s")
        with Progress(console=console, transient=True) as progress:
            procs = bench.start_nodes(paths, progress)
        try:
            cost = asyncio.run(costs(hub_path, paths, [p.pid for p in procs], scale, args.runs, args.batch,
                                     args.timeout))
        finally:
            bench.stop_nodes(procs)
    report(freq, cost)
    out = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
           "profiles_per_node": args.profiles, "frequency": freq, "costs": cost,
           "command": "python benchmarks/dataview_rounds.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    console.print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
