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
sent, so that the network is ready in seconds. The hub's view is taken by the real `discnode`
command, in its own process, over the network. Synthetic people only (Faker).
"""

from __future__ import annotations

import argparse
import asyncio
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

from discnode import consent, peers, profiles, server, store
from discnode.consent import Action, Terms, new_offer, new_response
from discnode.home import Config, Home, today
from discnode.signing import document_hash, sign_document
from discnode.synthetic import People

#: What each partnership shares with the hub, in turn.
CHOICES = ("profiles", "statistics", "nothing")
SHARES = {"profiles": ("profiles", "images"), "statistics": ("statistics",)}


def choice_of(index: int) -> str:
    return CHOICES[index % len(CHOICES)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_node(path: Path, name: str, port: int, count: int, seed: int) -> Home:
    home = Home.create(path, Config(name=name, host="127.0.0.1", port=port))
    people = People(seed)
    now = store.now_ts()
    records = []
    for _ in range(count):
        fields = people.fields()
        fields["local_only"] = False
        records.append(sign_document(profiles.build_record(fields, home.node_id, now=now), home.identity))
    store.put_profiles(home.db, records)
    return home


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
            peers.add_document(me.db, other.node_id, doc, delivered=True, own_key=me.identity.public_key)


class Servers:
    """Every node's peer API on one event loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="nodes")
        self.thread.start()
        self.running: list[server.Running] = []

    def start(self, homes: list[Home]) -> None:
        async def go() -> list[server.Running]:
            return list(await asyncio.gather(*(server.start(h) for h in homes)))
        self.running = asyncio.run_coroutine_threadsafe(go(), self.loop).result(300)

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


def hub_view(hub_path: Path, timeout: float) -> dict[str, set[str]]:
    """Which partnerships the hub's own view covers, by what: profiles (records in its Dataview)."""
    found = discnode(hub_path, "search", "--all", "--timeout", str(timeout))
    hub_id = discnode(hub_path, "id")["node_id"]
    answered = {p["node_id"] for p in found["peers"] if p["status"] == "ok" and p["node_id"] != hub_id}
    origins = {r["origin"] for r in found["results"]} - {hub_id}
    return {"profiles": answered | origins}


def run(partnerships: int, per: int, root: Path, timeout: float, log: Any = print) -> dict[str, Any]:
    started = time.monotonic()
    if "statistics" not in consent.SHARE_KINDS:
        raise SystemExit("this discnode has no statistics scope")
    hub = make_node(root / "hub", "National Hub (NBCS)", free_port(), per, 0)
    homes, choice = [hub], {}
    for i in range(1, partnerships + 1):
        node = make_node(root / f"p{i:03d}", f"Partnership {i:03d}", free_port(), per, i)
        choice[node.node_id] = choice_of(i)
        if choice_of(i) != "nothing":
            agree(node, hub, SHARES[choice_of(i)])
        homes.append(node)
    log(f"built {partnerships} partnerships x {per} profiles and a hub in {time.monotonic() - started:.1f} s")
    servers = Servers()
    try:
        servers.start(homes)
        log(f"started {len(homes)} nodes")
        view = hub_view(hub.path, timeout)
    finally:
        servers.stop()
        for home in homes:
            home.close()
    expected = {kind: {n for n, c in choice.items() if c == kind} for kind in ("profiles", "statistics")}
    report = {"partnerships": partnerships, "profiles_each": per,
              "chose": {kind: sum(1 for c in choice.values() if c == kind) for kind in CHOICES},
              "covered": {kind: len(view.get(kind, ())) for kind in expected},
              "exact": all(view.get(kind, set()) == expected[kind] for kind in view),
              "seconds": round(time.monotonic() - started, 1)}
    return report


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
    print(json.dumps(report, indent=2) if args.json else report)
    return 0 if report["exact"] else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
