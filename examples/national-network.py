"""A national network: N partnerships and a national hub (run by the NBCS or a police force), the hub
just another partner under the same bilateral rules. Each partnership chooses what it shares with
the hub: its profiles, its statistics only, or nothing. The script then asks the hub's own view
and checks that it covers exactly the partnerships that consented, each as far as it consented.

    python examples/national-network.py                      # 100 partnerships, 4 profiles each
    python examples/national-network.py --partnerships 6     # the fast mode the tests run

Every node is real: its own home (keys, TLS certificate, SQLite), its own peer API over HTTPS on
loopback. To start 101 of them cheaply they share one process and one event loop (as the tests'
nodes do) instead of 101 `discnode serve` daemons; the agreements are real signed offers and
accepts, written into both nodes' databases directly (as examples/network.py does) rather than
sent, so that the network is ready in seconds. The hub's view is taken by the real `discnode report`
in its own process, over the network (on a discnode without `report`: `discnode search --all` and
the statistics client), and each figure is checked against a direct count at the partnership.
Synthetic people only (Faker).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from discnode import handling, peers, profiles, server, statistics, statsask, store
from discnode.consent import Action, Terms, new_offer, new_response
from discnode.home import Config, Home, today
from discnode.query import Query
from discnode.signing import document_hash, sign_document
from discnode.synthetic import People

#: What each partnership shares with the hub, in turn.
CHOICES = ("profiles", "statistics", "nothing")
#: A partnership that shares profiles shares them whole: with ethnicity and minors (spec 8.9), so that
#: the hub is served every shareable record, as a direct count at the partnership counts them.
SHARES = {"profiles": ("profiles", "images", "ethnicity", "minors"), "statistics": ("statistics",)}


def choice_of(index: int) -> str:
    return CHOICES[index % len(CHOICES)]


class Ports:
    """Loopback ports for the nodes, below Linux's ephemeral range (32768 up), where the kernel never
    hands out ports to outgoing connections or to port-0 binds: a free port taken from the
    ephemeral range can be someone else's by the time 101 servers start. Each is checked free."""

    def __init__(self) -> None:
        self.next = 22000 + (os.getpid() % 40) * 250

    def take(self) -> int:
        while self.next < 32768:
            port, self.next = self.next, self.next + 1
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
        raise SystemExit("no free loopback port below 32768")


def make_node(path: Path, name: str, port: int, count: int, seed: int) -> Home:
    """A node with `count` synthetic profiles, and one more whose incidents cluster on one recent day
    at one place, so that its statistics release has counts (a count under 5 is never released)."""
    home = Home.create(path, Config(name=name, host="127.0.0.1", port=port))
    people = People(seed)
    now = store.now_ts()
    day = (today() - dt.timedelta(days=10)).isoformat()
    records = []
    for n in range(count + 1):
        fields = people.fields()
        fields["local_only"] = False
        if n == count:
            fields["incidents"] = [{"date": day, "place": "Market Street", "type": "theft",
                                    "summary": "Left without paying"}] * (5 + seed % 5)
            fields["last_seen"] = day
        records.append(sign_document(profiles.build_record(fields, home.node_id, now=now), home.identity))
    store.put_profiles(home.db, records, identity=home.identity)  # with their withheld views (spec 8.9)
    return home


def direct_count(home: Home, kind: str, period: dict[str, Any] | None) -> int:
    """What the hub should see of this partnership, counted at the partnership itself: the records
    it serves (or, for a report, their incidents in the report's period), or its released total."""
    if kind == "profiles":
        hub = next(p.node_id for p in peers.all_peers(home.db))
        audience = handling.Audience.of_agreement(peers.agreement(home.db, home.node_id, hub, today()))
        served = store.search(home.db, Query(limit=200), today(), served_by=home.node_id, audience=audience)
        if period is None:
            return len(served)
        return sum(1 for r in served for i in r["incidents"] if period["since"] <= i["date"] <= period["until"])
    window = statistics.Window.ending_before(today())
    return statistics.release(statistics.own_incidents(home.db, home.node_id, today(), window), window).total


def agree(partnership: Home, hub: Home, share: tuple[str, ...]) -> None:
    """The partnership offers the hub `share`; the hub accepts. Signed, stored on both sides."""
    for me, other in ((partnership, hub), (hub, partnership)):
        peers.remember(me.db, other.descriptor())
    offer = sign_document(new_offer(partnership.node_id, hub.node_id, Terms.default(today(), share=share),
                                    partnership.descriptor(), store.now_ts(), None), partnership.identity)
    accept = sign_document(new_response(Action.ACCEPT, hub.node_id, partnership.node_id, document_hash(offer),
                                        store.now_ts()), hub.identity)
    for me, other in ((partnership, hub), (hub, partnership)):
        for doc in (offer, accept):
            peers.add_document(me.db, other.node_id, doc, delivered=True, own=me.identity)


class Servers:
    """Every node's peer API on one event loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="nodes")
        self.thread.start()
        self.running: list[server.Running] = []

    def start(self, homes: list[Home]) -> None:
        """Start them all; if any fails, the others are kept in `running` so that stop() ends them."""
        async def go() -> list[Any]:
            return list(await asyncio.gather(*(server.start(h) for h in homes), return_exceptions=True))
        started = asyncio.run_coroutine_threadsafe(go(), self.loop).result(300)
        self.running = [r for r in started if isinstance(r, server.Running)]
        failed = [r for r in started if isinstance(r, BaseException)]
        if failed:
            raise SystemExit(f"{len(failed)} node(s) did not start: {failed[0]}")

    def stop(self) -> None:
        async def go() -> None:
            await asyncio.gather(*(r.stop() for r in self.running), return_exceptions=True)
        asyncio.run_coroutine_threadsafe(go(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def discnode(home: Path, *args: str) -> Any:
    """The real command, in its own process, as the hub's administrator would run it."""
    done = subprocess.run([sys.executable, "-m", "discnode", "--home", str(home), *args, "--json"],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    if done.returncode != 0:
        raise SystemExit(f"discnode {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)


def shared_with(hub: Home, node_ids: list[str]) -> dict[str, tuple[str, ...]]:
    return {n: peers.agreement(hub.db, hub.node_id, n, today()).share for n in node_ids}


def has_report() -> bool:
    return importlib.util.find_spec("discnode.report") is not None


def hub_view(hub_path: Path, timeout: float) -> tuple[dict[str, dict[str, int]], dict[str, Any] | None]:
    """What the hub sees of each partnership, and the report period if any. With `discnode report`:
    the partnerships its report covers by kind (profiles: incidents in the period, from their
    records; statistics: the released total of their window). Without it: `discnode search --all`
    (profiles: records) and the statistics client (statistics: released totals)."""
    if has_report():
        report = discnode(hub_path, "report", "--timeout", str(timeout))
        ok = {kind: {s["node_id"] for s in report["sources"] if s["kind"] == kind and s["status"] == "ok"}
              for kind in ("profiles", "statistics")}
        counts = {r["node_id"]: r["count"] for r in report["by_partnership"]}
        totals = {r["node_id"]: r["window_total"] for r in report["statistics_partners"]}
        return ({"profiles": {n: counts.get(n, 0) for n in ok["profiles"]},
                 "statistics": {n: totals[n] for n in ok["statistics"]}}, report["period"])
    found = discnode(hub_path, "search", "--all", "--timeout", str(timeout))
    hub_id = discnode(hub_path, "id")["node_id"]
    seen = {p["node_id"]: 0 for p in found["peers"] if p["status"] == "ok" and p["node_id"] != hub_id}
    for record in found["results"]:
        if record["origin"] != hub_id:
            seen[record["origin"]] = seen.get(record["origin"], 0) + 1
    hub = Home.open(hub_path)
    try:
        replies = asyncio.run(statsask.ask(hub, timeout=timeout))
    finally:
        hub.close()
    counted = {r.node_id: r.tables.total for r in replies if r.status == "ok" and r.tables is not None}
    return {"profiles": seen, "statistics": counted}, None


def run(partnerships: int, per: int, root: Path, timeout: float, log: Any = print) -> dict[str, Any]:
    started = time.monotonic()
    ports = Ports()
    hub = make_node(root / "hub", "National Hub (NBCS)", ports.take(), per, 0)
    homes, choice, expected = [hub], {}, {"profiles": {}, "statistics": {}}
    for i in range(1, partnerships + 1):
        kind = choice_of(i)
        node = make_node(root / f"p{i:03d}", f"Partnership {i:03d}", ports.take(), per, i)
        choice[node.node_id] = kind
        if kind != "nothing":
            agree(node, hub, SHARES[kind])
        homes.append(node)
    log(f"built {partnerships} partnerships x {per + 1} profiles and a hub in {time.monotonic() - started:.1f} s")
    servers = Servers()
    try:
        servers.start(homes)
        log(f"started {len(homes)} nodes on one event loop")
        view, period = hub_view(hub.path, timeout)
        for node in homes[1:]:
            kind = choice[node.node_id]
            if kind != "nothing":
                expected[kind][node.node_id] = direct_count(node, kind, period)
    finally:
        servers.stop()
        for home in homes:
            home.close()
    chose = {kind: sum(1 for c in choice.values() if c == kind) for kind in CHOICES}
    nothing = {n for n, c in choice.items() if c == "nothing"}
    rows = {kind: {"chose": chose[kind], "covered": len(view[kind]),
                   "same_partnerships": set(view[kind]) == set(expected[kind]),
                   "figures_equal_direct_count": view[kind] == expected[kind],
                   "figure": sum(view[kind].values())} for kind in ("profiles", "statistics")}
    leaked = sorted(nothing & (set(view["profiles"]) | set(view["statistics"])))
    return {"partnerships": partnerships, "profiles_each": per + 1, "rows": rows,
            "by": "discnode report" if period else "discnode search --all and the statistics client",
            "nothing": {"chose": chose["nothing"], "seen_by_hub": len(leaked)},
            "exact": all(r["figures_equal_direct_count"] for r in rows.values()) and not leaked,
            "seconds": round(time.monotonic() - started, 1)}


def print_report(report: dict[str, Any]) -> None:
    print(f"\nThe hub's view of {report['partnerships']} partnerships ({report['profiles_each']} profiles each), "
          f"by {report['by']}:")
    print(f"  {'shares with the hub':22} {'chose':>6} {'hub sees':>9} {'figure':>8}  equal to a direct count")
    for kind, row in report["rows"].items():
        what = ("incidents in the report's period" if report["by"] == "discnode report" else "records") \
            if kind == "profiles" else "incidents released"
        print(f"  {kind:22} {row['chose']:>6} {row['covered']:>9} {row['figure']:>8}  "
              f"{'yes' if row['figures_equal_direct_count'] else 'NO'} ({what})")
    print(f"  {'nothing':22} {report['nothing']['chose']:>6} {report['nothing']['seen_by_hub']:>9}")
    print(("The hub's view covers exactly the partnerships that consented, each as far as it consented."
           if report["exact"] else "MISMATCH: the hub's view is not exactly what the partnerships consented to.")
          + f" ({report['seconds']} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partnerships", type=int, default=100)
    parser.add_argument("--profiles", type=int, default=4, help="Profiles per partnership.")
    parser.add_argument("--dir", type=Path, help="Keep the nodes in this new folder (default: a temporary one).")
    parser.add_argument("--timeout", type=float, default=20.0, help="Seconds the hub waits for each partnership.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 3 <= args.partnerships <= 300:
        parser.error("--partnerships must be 3 to 300")
    with tempfile.TemporaryDirectory(prefix="national-") as tmp:
        root = args.dir or Path(tmp)
        report = run(args.partnerships, args.profiles, root, args.timeout, log=(lambda _: None) if args.json else print)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0 if report["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
