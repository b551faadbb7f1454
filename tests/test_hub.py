"""The national hub (issue 14): a node run by the NBCS or a police force is just another partner,
under the same bilateral rules. What partnership A shares with the hub, the hub cannot pass to a
third node C that has its own agreement with the hub: it serves only its own records."""

import pytest

from tests.nodes import send, signed


def _add(node, first, last, *args):
    return node.cli("profile", "add", "--first-name", first, "--last-name", last, "--tag", "shoplifting",
                    *args, "--json").json


@pytest.fixture
def hub_network(network, tmp_path):
    """A shares profiles and images with the hub; C has its own agreement with the hub; A and C
    have none. Each holds records of its own; A's has a photo."""
    from tests.conftest import jpeg_with_gps
    a, hub, c = network.node("A"), network.node("Hub"), network.node("C")
    a.cli("peer", "add", hub.url, "--expect", hub.node_id, "--share", "profiles", "--share", "images")
    hub.cli("peer", "accept", a.node_id)
    hub.cli("peer", "add", c.url, "--expect", c.node_id, "--share", "profiles", "--share", "images")
    c.cli("peer", "accept", hub.node_id)
    a_record = _add(a, "Alys", "Apartner", "--image", jpeg_with_gps(tmp_path / "a.jpg"))
    hub_record = _add(hub, "Harry", "Hubsown")
    _add(c, "Cara", "Cee")
    return a, hub, c, a_record, hub_record


def test_the_hub_sees_a_partnerships_profiles(hub_network):
    a, hub, c, a_record, _ = hub_network
    seen = {r["last_name"]: r["origin"] for r in hub.cli("search", "--all", "--timeout", "30", "--json").json["results"]}
    assert seen == {"Apartner": a.node_id, "Hubsown": hub.node_id, "Cee": c.node_id}


def test_the_hub_cannot_pass_a_partnerships_profiles_to_a_third_node(hub_network):
    a, hub, c, a_record, hub_record = hub_network
    # C's Dataview: its own and the hub's own records; none of A's, by page or by walk.
    for args in ((), ("--all",)):
        results = c.cli("search", *args, "--timeout", "30", "--json").json["results"]
        assert {r["last_name"] for r in results} == {"Cee", "Hubsown"}
        assert a.node_id not in {r["origin"] for r in results}
    # Asked directly, the hub serves C nothing of A's: not the record, not its photo, not a count.
    for method, path, payload in (("GET", f"/v1/profiles/{a_record['id']}", None),
                                  ("GET", f"/v1/images/{a_record['image']}?size=full", None)):
        status, _ = send(hub, method, path,
                         *signed(c.home.identity, hub, method, path, payload))
        assert status == 404, path
    status, body = send(hub, "POST", "/v1/profiles/facets",
                        *signed(c.home.identity, hub, "POST", "/v1/profiles/facets", {}))
    assert status == 200 and body["total"] == 1
    status, body = send(hub, "POST", "/v1/profiles/query",
                        *signed(c.home.identity, hub, "POST", "/v1/profiles/query", {"text": "Apartner"}))
    assert status == 200 and body["records"] == []
    # Nor can C reach A itself: no agreement between them.
    status, _ = send(a, "POST", "/v1/profiles/query", *signed(c.home.identity, a, "POST", "/v1/profiles/query", {}))
    assert status == 403
    # And C's evidence export holds nothing of A's, not even a reference.
    export = c.cli("export", c.cli.home.parent / "c-bundle.json", "--tag", "shoplifting", "--timeout", "30", "--json").json
    assert all(a.node_id not in ref for ref in export["records"] + export["references"])


def test_a_hub_that_kept_a_partnerships_records_still_never_serves_them(hub_network):
    """Were A's signed record in the hub's own database, the hub would not serve it: it serves only
    records whose origin is itself."""
    import datetime as dt
    from discnode import store
    from discnode.query import Query
    a, hub, c, a_record, _ = hub_network
    signed_record = store.search(a.home.db, Query(text="Apartner"), dt.date.today())[0]
    store.put_profiles(hub.home.db, [signed_record])  # a hub that kept what it received
    # The hub's own reply, as sent: only its own records.
    status, body = send(hub, "POST", "/v1/profiles/query",
                        *signed(c.home.identity, hub, "POST", "/v1/profiles/query", {"limit": 200}))
    assert status == 200 and {r["origin"] for r in body["records"]} == {hub.node_id}
    status, _ = send(hub, "GET", f"/v1/profiles/{a_record['id']}",
                     *signed(c.home.identity, hub, "GET", f"/v1/profiles/{a_record['id']}"))
    assert status == 404
    results = c.cli("search", "--all", "--timeout", "30", "--json").json
    assert a.node_id not in {r["origin"] for r in results["results"]}
    assert "Apartner" not in {r["last_name"] for r in results["results"]}


def test_the_hub_exports_a_partnerships_records_only_under_the_evidence_term(hub_network):
    a, hub, c, a_record, _ = hub_network
    path = hub.cli.home.parent / "hub-bundle.json"
    export = hub.cli("export", path, "--tag", "shoplifting", "--json").json
    assert f"{a.node_id}:{a_record['id']}" in export["references"]
    assert f"{a.node_id}:{a_record['id']}" not in export["records"]


def test_a_hub_that_relays_a_partnerships_records_is_caught_by_the_third_node(hub_network, network, tmp_path):
    """A hub altered to relay: it answers C's queries with A's genuine signed record beside its own.
    C drops A's (its origin is not the node that sent it) and says so; the hub's own record stays."""
    import datetime as dt
    from aiohttp import web
    from discnode import store
    from discnode.query import Query
    from tests.hostile import HostilePeer
    a, _, c, _, _ = hub_network
    relay = HostilePeer(tmp_path / "relay", network.loop, "Relaying Hub")
    try:
        c.cli("peer", "add", relay.url, "--expect", relay.node_id)
        relay.accept_from(c)
        own = relay.add_profile(first_name="Rita", last_name="Relayown")
        a_signed = store.search(a.home.db, Query(text="Apartner"), dt.date.today())[0]

        async def relayed(request: web.Request) -> web.Response:
            return web.json_response({"records": sorted([a_signed, own], key=lambda r: r["last_name"].lower())})
        relay.routes[("POST", "/v1/profiles/query")] = relayed
        found = c.cli("search", "--all", "--json").json
        names = {r["last_name"] for r in found["results"]}
        assert "Relayown" in names and "Apartner" not in names
        [status] = [p for p in found["peers"] if p["node_id"] == relay.node_id]
        assert status["status"] == "invalid" and status["dropped"] == 1 and "another origin" in status["error"]
    finally:
        relay.stop()


def _incidents(node, profile_id, n, day, place="High Street Co-op"):
    args = [x for _ in range(n) for x in ("--incident", f"{day}|{place}|theft|Left without paying")]
    node.cli("profile", "edit", profile_id, *args)


def _statistics(node):
    """What `node` gets from each of its statistics-only partners (statsask, as the report asks)."""
    import asyncio
    from discnode import statsask
    from discnode.home import Home
    home = Home.open(node.cli.home)
    try:
        return {s.node_id: s for s in asyncio.run(statsask.ask(home, timeout=10))}
    finally:
        home.close()


def test_the_hub_cannot_pass_a_partnerships_statistics_to_a_third_node(network):
    """A shares only statistics with the hub, B its profiles; C has a statistics-only agreement
    with the hub. The hub gets A's counts and B's records, and answers C with counts of its own
    incidents only: none of A's, none of B's."""
    import datetime as dt
    a, b, hub, c = network.node("A"), network.node("B"), network.node("Hub"), network.node("C")
    a.cli("peer", "add", hub.url, "--expect", hub.node_id, "--share", "statistics")
    hub.cli("peer", "accept", a.node_id)
    b.cli("peer", "add", hub.url, "--expect", hub.node_id, "--share", "profiles")
    hub.cli("peer", "accept", b.node_id)
    hub.cli("peer", "add", c.url, "--expect", c.node_id, "--share", "statistics")
    c.cli("peer", "accept", hub.node_id)
    day = (dt.date.today() - dt.timedelta(days=14)).isoformat()  # inside the last complete weeks
    _incidents(a, _add(a, "Alys", "Apartner")["id"], 10, day)
    _incidents(b, _add(b, "Bryn", "Bpartner")["id"], 20, day)
    _incidents(hub, _add(hub, "Harry", "Hubsown")["id"], 5, day)

    at_hub = _statistics(hub)
    assert set(at_hub) == {a.node_id, c.node_id} and at_hub[a.node_id].status == "ok"
    assert at_hub[a.node_id].tables.total == 10
    assert {r["origin"] for r in hub.cli("search", "--all", "--json").json["results"]} == {hub.node_id, b.node_id}

    at_c = _statistics(c)
    assert set(at_c) == {hub.node_id} and at_c[hub.node_id].status == "ok"
    assert at_c[hub.node_id].tables.total == 5  # the hub's own incidents: not 15 with A's, nor 35 with B's
    # A statistics-only partner of the hub gets nothing else from it, and nothing from A or B.
    status, _ = send(hub, "POST", "/v1/profiles/query",
                     *signed(c.home.identity, hub, "POST", "/v1/profiles/query", {}))
    assert status == 403
    for origin in (a, b):
        status, _ = send(origin, "POST", "/v1/statistics", *signed(c.home.identity, origin, "POST",
                                                                   "/v1/statistics", {}))
        assert status == 403


def test_national_network_example_fast_mode(tmp_path):
    """examples/national-network.py with 6 partnerships: the hub's view covers exactly the two that
    share profiles and the two that share statistics, with figures equal to direct counts, and
    nothing of the two that share nothing."""
    import json
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parent.parent / "examples" / "national-network.py"
    done = subprocess.run([sys.executable, str(script), "--partnerships", "6", "--dir", str(tmp_path / "net"),
                           "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["exact"] is True
    for kind in ("profiles", "statistics"):
        row = report["rows"][kind]
        assert row["chose"] == row["covered"] == 2 and row["same_partnerships"] and row["figure"] > 0
    assert report["nothing"] == {"chose": 2, "seen_by_hub": 0}
