"""`discnode demo`: the white paper's network, live on loopback.

Three partnerships, each a real node (its own SQLite file, keys, HTTPS server), with synthetic
profiles and drawn portraits. Agreements A<->B and B<->C are made through the real protocol. Then
each administrator's Dataview is shown, and what each cannot see.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.panel import Panel

from . import output, profiles
from .client import PeerClient
from .consent import Action, Terms
from .contactsheet import render
from .dataview import search, thumbnails
from .home import Config, Home, today
from .peering import add_peer, respond
from .query import Query
from .server import Running, start
from .synthetic import People, portrait

PARTNERSHIPS = [("A", "Northtown BCRP"), ("B", "Midcity BCRP"), ("C", "Southport BCRP")]
#: One person known in all three towns: what a shared view is for ("Level Two" offenders).
LEVEL_TWO = {"first_name": "Dale", "last_name": "Wanderer", "gender": "male", "ethnicity": "IC1",
             "build": "slim", "dob": "1988-05-17", "tags": ["shoplifting", "abuse-to-staff"],
             "marks": "spider web tattoo on right elbow", "last_seen": None}


@dataclass
class DemoNode:
    letter: str
    home: Home
    running: Running | None = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(root: Path, per_node: int, seed: int = 2026) -> list[DemoNode]:
    nodes = []
    people = People(seed)
    for n, (letter, name) in enumerate(PARTNERSHIPS):
        home = Home.create(root / letter, Config(name=name, host="127.0.0.1", port=_free_port()))
        for i in range(per_node):
            fields = people.fields()
            fields["local_only"] = i == 0  # every node keeps one profile to itself
            if letter == "B" and i == 1:
                # Midcity's intelligence came with a condition: Northtown's agreement accepts it,
                # Southport's does not, so Southport never sees this profile.
                fields["grading"] = CONDITIONAL_GRADING
            profiles.add(home, fields, image_data=[portrait(seed * 1000 + n * 100 + i)])
        level_two = {**LEVEL_TWO, "last_seen": f"2026-0{n + 7}-1{n}"}
        profiles.add(home, level_two, image_data=[portrait(7)])
        nodes.append(DemoNode(letter, home))
    return nodes


#: Northtown and Midcity signed a full data sharing agreement: special category data (ethnicity),
#: children's profiles, and records graded C under "refer to originator". Midcity and Southport
#: share profiles, photos and children's profiles only: each withholds ethnicity from the other.
FULL_TERMS = {"share": ("profiles", "images", "ethnicity", "minors", "conditional"),
              "handling_conditions": ("refer-to-originator",)}
BASIC_TERMS = {"share": ("profiles", "images", "minors")}
CONDITIONAL_GRADING = "2/B/C:refer-to-originator"


async def agree(offerer: DemoNode, accepter: DemoNode, terms: dict[str, Any]) -> None:
    async with PeerClient(offerer.home.identity) as client:
        await add_peer(offerer.home, accepter.home.config.url, accepter.home.node_id,
                       Terms.default(today(), **terms), client)
    await respond(accepter.home, offerer.home.node_id, Action.ACCEPT)


async def show(nodes: list[DemoNode], root: Path, query: Query) -> dict[str, Any]:
    from .cli import print_page

    summary: dict[str, Any] = {}
    for node in nodes:
        page = await search(node.home, query)
        print_page(node.home.config.name, page)
        everything = await search(node.home, Query(limit=200))
        origins = sorted({r["origin_name"] for r in everything.results})
        output.console.print(f"  {output.safe(node.home.config.name)} sees profiles from: "
                             f"{output.safe(', '.join(origins))}")
        sheet = root / f"contact-sheet-{node.letter}.png"
        if page.results:
            render(page.results, await thumbnails(node.home, page.results), sheet)
        summary[node.letter] = {"sees": origins, "rows": len(everything.results), "contact_sheet": str(sheet),
                                "ethnicity_withheld_by": sorted(p.name for p in everything.peers if p.withheld)}
        output.console.print()
    return summary


async def run(root: Path, per_node: int, wait: bool, temporary: bool = False) -> dict[str, Any]:
    con = output.console
    con.print(Panel.fit("[bold]discnode demo[/]: three partnerships, each its own node on this machine.\n"
                        "Agreements: Northtown <-> Midcity and Midcity <-> Southport. Nothing else.",
                        border_style="cyan"))
    with con.status("Creating three nodes with synthetic profiles and drawn portraits..."):
        nodes = await asyncio.to_thread(build, root, per_node)
    for node in nodes:
        node.running = await start(node.home)
        con.print(f"  {node.letter}: [bold]{node.home.config.name}[/] {node.home.node_id} at {node.home.config.url}")
    try:
        a, b, c = nodes
        with con.status("Making the agreements through the real protocol (signed offers and accepts)..."):
            await agree(a, b, FULL_TERMS)
            await agree(b, c, BASIC_TERMS)
        con.print("Agreements made: A<->B (profiles, photos, ethnicity, children, records graded C under "
                  "refer-to-originator), B<->C (profiles, photos, children: no ethnicity). A and C have none.\n")
        summary = await show(nodes, root, Query(sort="last-seen", desc=True, limit=12))

        # What A cannot see: C is not in A's view, and C refuses A outright.
        a_view = await search(a.home, Query(limit=200))
        c_rows = [r for r in a_view.results if r["origin"] == c.home.node_id]
        from .peers import verify_descriptor
        async with PeerClient(a.home.identity) as client:
            c_peer = verify_descriptor(c.home.descriptor())
            reply = await client.request(c_peer, "POST", "/v1/profiles/query", {})
        con.print(Panel.fit(
            f"Non-transitive: {a.home.config.name}'s Dataview holds {len(c_rows)} of "
            f"{c.home.config.name}'s profiles, though Midcity shares with both.\n"
            f"A query straight from Northtown to Southport gets HTTP {reply.status} (refused, and "
            f"logged in Southport's audit).\nLocal-only profiles (one per node) appear only in their own "
            f"node's view.\nSouthport sees Midcity's profiles without ethnicity (their agreement does not "
            f"share it), and not the one Midcity graded C.", title="What Northtown cannot see",
            border_style="yellow"))
        from .leveltwo import sweep
        found, _, looked_at = await sweep(b.home)
        for group in found:
            con.print(f"Level Two (`discnode level-two`): from {looked_at} identified profiles, Midcity finds "
                      f"{group.name} (born {group.dob}) known to {len(group.partnerships)} partnerships: "
                      f"{', '.join(group.partnerships)}.")
        note = " (removed when the demo stops; use --dir to keep them)" if temporary else ""
        con.print(f"Contact sheets: {', '.join(s['contact_sheet'] for s in summary.values())}{note}")
        summary["a_to_c_status"] = reply.status
        summary["level_two"] = [g.to_json() for g in found]
        summary["a_sees_c_rows"] = len(c_rows)
        if wait:
            # Handlers first: a Ctrl-C the moment the prompt appears must still stop cleanly.
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            con.print("\nThe three nodes are running. Try, in another terminal:\n"
                      f"  discnode --home {b.home.path} search --gender male\n"
                      f"  discnode --home {a.home.path} peer list\n"
                      f"  discnode --home {c.home.path} audit\n"
                      "Press Ctrl-C to stop them and remove the demo.")
            await stop.wait()
        return summary
    finally:
        for node in nodes:
            if node.running:
                await node.running.stop()
            node.home.close()


def main(directory: Path | None, per_node: int, wait: bool) -> dict[str, Any]:
    root = directory or Path(tempfile.mkdtemp(prefix="discnode-demo-"))
    if directory and directory.exists() and any(directory.iterdir()):
        from .errors import Conflict
        raise Conflict(f"{directory} is not empty; the demo makes its nodes in a new folder")
    try:
        return asyncio.run(run(root, per_node, wait, temporary=directory is None))
    finally:
        if directory is None:
            with contextlib.suppress(OSError):
                shutil.rmtree(root)
        output.console.print("Demo stopped; nothing left running." if wait else "")
