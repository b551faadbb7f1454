"""Generate a synthetic network: N partnership nodes x M profiles each (with drawn portraits and
thumbnails), and a hub node with an active agreement with every one of them.

    python examples/network.py --dir /tmp/net --nodes 30 --profiles 600

Agreements are real signed offer and accept documents, written into both nodes' databases
directly (the generator holds every node's keys), so that a 100-node network is ready in seconds
rather than 200 HTTP round trips. Everything else is what `discnode init` and `profile import` make.
Used by benchmarks/dataview.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

from discnode import images, profiles, store
from discnode.consent import Action, Terms, new_offer, new_response
from discnode.home import Config, Home, today
from discnode import peers
from discnode.signing import document_hash, sign_document
from discnode.synthetic import People, portrait

PORTRAITS = 48  # distinct drawn faces, reused: images are content-addressed, so repeats cost nothing


def _portraits(seed: int) -> list[images.ProcessedImage]:
    return [images.process(portrait(seed * 7919 + i)) for i in range(PORTRAITS)]


def make_node(root: Path, index: int, name: str, port: int, count: int, seed: int) -> Path:
    """One node with `count` synthetic profiles, each with a primary image, in one transaction."""
    home = Home.create(root / f"node{index:03d}", Config(name=name, host="127.0.0.1", port=port))
    people = People(seed + index)
    faces = _portraits(seed + index)
    for face in faces:
        images.save(home.images_root, face)
    records, links = [], []
    now = store.now_ts()
    for i in range(count):
        face = faces[i % len(faces)]
        record = profiles.build_record(people.fields(), home.node_id, now=now)
        record["image"] = face.sha256
        records.append(sign_document(record, home.identity))
        links.append((record["id"], face))
    with store.write(home.db) as conn:
        store.put_profiles(home.db, records, identity=home.identity)  # with their withheld views
        for profile_id, face in links:
            store.add_image_row(conn, profile_id, face.sha256, face.meta)
    home.close()
    return home.path



def free_ports(count: int) -> int:
    """A first port from which `count` loopback ports are free now, below Linux's ephemeral range
    (32768 up), where the kernel never hands ports to outgoing connections; other processes (and
    other benchmark runs) may be using any fixed range."""
    import random
    import socket
    for _ in range(200):
        base = random.randrange(12000, 32000 - count)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise SystemExit(f"no {count} free loopback ports in a row below 32000")

def agree_offline(hub: Home, node: Home) -> None:
    """A complete, signed A<->B agreement, stored on both sides, without the network."""
    for me, other in ((hub, node), (node, hub)):
        peers.remember(me.db, other.descriptor())
    # A full agreement: ethnicity (the Dataview filters on it) and minors (synthetic people include
    # 16- and 17-year-olds), so that a hub's view holds every shareable profile, as the baselines do.
    terms = Terms.default(today(), share=("profiles", "images", "ethnicity", "minors"))
    offer = sign_document(new_offer(hub.node_id, node.node_id, terms, hub.descriptor(),
                                    store.now_ts(), None), hub.identity)
    accept = sign_document(new_response(Action.ACCEPT, node.node_id, hub.node_id, document_hash(offer),
                                        store.now_ts()), node.identity)
    for me, other in ((hub, node), (node, hub)):
        for doc in (offer, accept):
            peers.add_document(me.db, other.node_id, doc, delivered=True, own=me.identity)


def generate(root: Path, nodes: int, per_node: int, *, base_port: int = 21000, seed: int = 1,
             hub_profiles: int = 0, progress: Callable[[int], None] | None = None, workers: int | None = None
             ) -> tuple[Path, list[Path]]:
    root.mkdir(parents=True, exist_ok=True)
    hub_path = make_node(root, 0, "Hub BCRP", base_port, hub_profiles, seed)
    paths: list[Path] = []
    with ProcessPoolExecutor(max_workers=workers or min(os.cpu_count() or 1, 4)) as pool:
        futures = [pool.submit(make_node, root, i, f"Partnership {i:03d}", base_port + i, per_node, seed)
                   for i in range(1, nodes + 1)]
        for future in futures:
            paths.append(future.result())
            if progress:
                progress(1)
    hub = Home.open(hub_path)
    for path in paths:
        node = Home.open(path)
        agree_offline(hub, node)
        node.close()
    hub.close()
    return hub_path, paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--profiles", type=int, default=600)
    parser.add_argument("--base-port", type=int, default=21000)
    args = parser.parse_args()
    if args.dir.exists() and any(args.dir.iterdir()):
        print(f"{args.dir} is not empty", file=sys.stderr)
        return 2
    hub, nodes = generate(args.dir, args.nodes, args.profiles, base_port=args.base_port)
    print(f"hub: {hub}\n{len(nodes)} nodes x {args.profiles} profiles under {args.dir}")
    print(f"start each with: discnode --home DIR serve --no-advertise; search from the hub: "
          f"discnode --home {hub} search")
    return 0


if __name__ == "__main__":
    sys.exit(main())
