"""A query that carries its facet counts (spec 8.1, `counts`): one request per partner for the web
Dataview's page and counts, equal to the two separate requests it replaces. Real nodes throughout;
a hostile partner is a real HTTPS server with its own identity."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

import pytest

from discnode import dataview, facets, handling
from discnode.home import today
from discnode.query import Query
from tests import hostile
from tests.hostile import HostilePeer, answer
from tests.nodes import audit_events, send, signed

QUERY, FACETS = "/v1/profiles/query", "/v1/profiles/facets"


def hostile_partner(network: Any, tmp_path: Any, a: Any) -> contextlib.AbstractContextManager[HostilePeer]:
    """A hostile peer in an active agreement with `a` (tests/hostile.py), stopped afterwards."""
    return hostile.hostile_partner(tmp_path / "hostiles", network.loop, a)


def ask(src, dst, path, payload):
    body, headers = signed(src.home.identity, dst, "POST", path, payload)
    return send(dst, "POST", path, body, headers)


def add(node, *args):
    return node.cli("profile", "add", *args, "--json").json


def served(node) -> list[dict[str, Any]]:
    """What the node's served entries say of the profile queries and counts it answered."""
    return [d for _, _, d in audit_events(node, "served") if d.get("what") in ("query", "facets")]


@pytest.fixture
def world(network):
    """B holds profiles of every kind; A has default terms with B (no ethnicity, no minors, no C
    grading), C has terms sharing ethnicity and minors."""
    a, b, c = network.node("A"), network.node("B"), network.node("C")
    network.agree(a, b)
    network.agree(c, b, "profiles", "images", "ethnicity", "minors")
    for i in range(7):
        add(b, "--first-name", f"Pat{i}", "--last-name", "Shared", "--gender", ("male", "female")[i % 2],
            "--ethnicity", ("IC1", "IC3", "IC9")[i % 3], "--build", ("slim", "medium")[i % 2],
            "--tag", ("shoplifting", "violence")[i % 2], "--tag", "drugs")
    add(b, "--first-name", "Kit", "--last-name", "Young", "--gender", "female", "--ethnicity", "IC1",
        "--dob", (handling.years_before(today(), 16)).isoformat(), "--minor-reason", "Repeat thefts")
    add(b, "--first-name", "Con", "--last-name", "Ditional", "--gender", "male", "--ethnicity", "IC3",
        "--grading", "2/B/C:refer-to-originator", "--tag", "violence")
    add(b, "--first-name", "Lee", "--last-name", "Localonly", "--gender", "male", "--local-only")
    return network, a, b, c


QUERIES = [{}, {"gender": ["female"]}, {"text": "Shared"}, {"tags": ["violence"], "build": ["medium"]},
           {"ethnicity": ["IC1"]}, {"text": "Young"}, {"text": "Ditional"}, {"sort": "created", "desc": True}]


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: ",".join(q) or "all")
def test_the_combined_reply_is_the_query_reply_and_the_facets_reply(world, query):
    _, a, b, c = world
    for asker in (a, c):  # ethnicity and minors withheld from A, shared with C
        page = {**query, "limit": 3}
        status, alone = ask(asker, b, QUERY, page)
        assert status == 200, alone
        status, counted = ask(asker, b, FACETS, query)
        assert status == 200, counted
        status, both = ask(asker, b, QUERY, {**page, "counts": True})
        assert status == 200, both
        assert both == {"records": alone["records"], "counts": counted}


def test_what_each_partner_is_counted_follows_its_terms(world):
    _, a, b, c = world
    _, to_a = ask(a, b, QUERY, {"counts": True, "limit": 1})
    _, to_c = ask(c, b, QUERY, {"counts": True, "limit": 1})
    # A: 7 adults graded P; never the minor, the C-graded record or the local-only one; no ethnicity.
    assert to_a["counts"]["total"] == 7 and to_a["counts"]["facets"]["ethnicity"] == {}
    # C: the minor too (minors shared); still not the C-graded record (no conditions agreed).
    assert to_c["counts"]["total"] == 8 and sum(to_c["counts"]["facets"]["ethnicity"].values()) == 8
    _, filtered = ask(a, b, QUERY, {"counts": True, "ethnicity": ["IC1"]})
    assert filtered == {"records": [], "counts": {"total": 0, "facets": {f: {} for f in facets.FIELDS}}}


def test_counts_false_and_counts_absent_are_the_same_query(world):
    _, a, b, _ = world
    _, absent = ask(a, b, QUERY, {"limit": 4})
    _, false = ask(a, b, QUERY, {"limit": 4, "counts": False})
    assert absent == false and "counts" not in false


def test_a_malformed_counts_member_is_refused_with_400_and_nothing_served(world):
    _, a, b, _ = world
    before = len(served(b))
    status, body = ask(a, b, QUERY, {"counts": "yes"})
    assert status == 400 and "counts" in body["error"]["message"]
    assert len(served(b)) == before


def test_the_partner_writes_one_entry_naming_the_records_and_the_count(world):
    _, a, b, _ = world
    before = len(served(b))
    _, both = ask(a, b, QUERY, {"counts": True, "limit": 2, "gender": ["male"]})
    entries = served(b)[before:]
    assert len(entries) == 1
    (entry,) = entries
    assert entry["what"] == "query" and entry["count"] == 2 and entry["counted"] == both["counts"]["total"] == 4
    revisions = {r["id"]: r.get("revision", 0) for r in both["records"]}
    assert entry["records"] == " ".join(f"{i}:{n}" for i, n in revisions.items())


def search(network, node, query: Query, **kw: Any) -> dataview.Page:
    return network.loop.run(dataview.search(node.home, query, **kw))


@pytest.mark.parametrize("query", [Query(limit=3), Query(gender=("female",)), Query(text="Shared", limit=2),
                                   Query(ethnicity=("IC1",)), Query(tags=("violence",), sort="created", desc=True)],
                         ids=lambda q: ",".join(q.to_wire()))
def test_a_page_with_counts_equals_the_page_and_the_counts_asked_apart(world, query):
    network, a, b, _ = world
    add(a, "--first-name", "Own", "--last-name", "Shared", "--gender", "female", "--tag", "violence")
    before = len(served(b))
    page = search(network, a, query, counts=True)
    assert len(served(b)) == before + 1  # one request to B, not two
    alone = search(network, a, query)
    own = (a.home.node_id, a.home.config.name, facets.count(a.home.db, query, today(), origin=a.home.node_id))

    async def apart() -> tuple[facets.Counts, list[facets.SourceCounts]]:
        from discnode.client import PeerClient
        async with PeerClient(a.home.identity) as client:
            return await facets.across(own, dataview.active_peers(a.home), query, client, 3.0,
                                       withheld=lambda p: dataview.withheld_by(a.home, p))
    counts, sources = network.loop.run(apart())
    assert page.results == alone.results and page.next_cursor == alone.next_cursor
    assert page.counts == counts
    assert [(s.node_id, s.status, s.total, s.withheld) for s in page.counted] == \
        [(s.node_id, s.status, s.total, s.withheld) for s in sources]
    assert page.to_json() == {**alone.to_json(), "peers": page.to_json()["peers"]}
    assert [p.to_json().keys() for p in page.peers] == [p.to_json().keys() for p in alone.peers]


def test_a_partner_that_does_not_list_query_counts_is_asked_twice(network, monkeypatch):
    a = network.node("A")
    monkeypatch.setattr("discnode.home.FEATURES", ())  # B's descriptor, as an older node's, lacks it
    b = network.node("B")
    network.agree(a, b)
    monkeypatch.undo()
    assert not dataview.asks_counts(dataview.active_peers(a.home)[0])
    for i in range(4):
        add(b, "--first-name", f"Old{i}", "--last-name", "Node", "--gender", ("male", "female")[i % 2])
    page = search(network, a, Query(limit=2), counts=True)
    asked = served(b)
    assert [e["what"] for e in asked] == ["query", "facets"] or [e["what"] for e in asked] == ["facets", "query"]
    assert all("counted" not in e for e in asked)
    assert page.counts is not None and page.counts.total == 4 and page.counts.facets["gender"] == {"male": 2, "female": 2}
    assert [s.status for s in page.counted] == ["ok", "ok"] and len(page.results) == 2


BAD_COUNTS = {
    "missing": None,
    "total-as-text": {"total": "9", "facets": {f: {} for f in facets.FIELDS}},
    "total-fractional": {"total": 2.5, "facets": {f: {} for f in facets.FIELDS}},
    "total-true": {"total": True, "facets": {f: {} for f in facets.FIELDS}},
    "total-huge": {"total": 10 ** 15, "facets": {f: {} for f in facets.FIELDS}},
    "total-negative": {"total": -3, "facets": {f: {} for f in facets.FIELDS}},
    "count-as-list": {"total": 1, "facets": {**{f: {} for f in facets.FIELDS}, "gender": {"male": [1]}}},
    "unknown-code": {"total": 1, "facets": {**{f: {} for f in facets.FIELDS}, "gender": {"<script>": 1}}},
    "unknown-field": {"total": 1, "facets": {**{f: {} for f in facets.FIELDS}, "shoe_size": {}}},
    "a-list": [1, 2, 3],
}


@pytest.mark.parametrize("bad", list(BAD_COUNTS), ids=str)
def test_a_hostile_partners_bad_counts_are_reported_invalid_and_the_page_stands(network, tmp_path, bad):
    a = network.node("A")
    add(a, "--first-name", "Own", "--last-name", "Record", "--gender", "female")
    with hostile_partner(network, tmp_path, a) as h:
        record = h.add_profile(gender="male")
        reply: dict[str, Any] = {"records": [record]}
        if BAD_COUNTS[bad] is not None:
            reply["counts"] = BAD_COUNTS[bad]
        h.routes[("POST", QUERY)] = answer(reply)
        page = search(network, a, Query(), counts=True)
        (status,) = [s for s in page.peers if s.node_id == h.node_id]
        assert status.status == "ok" and [r["id"] for r in page.results if r["origin"] == h.node_id] == [record["id"]]
        (counted,) = [s for s in page.counted if s.node_id == h.node_id]
        assert counted.status == "invalid" and counted.total is None and "counts" in counted.error
        assert page.counts is not None and page.counts.total == 1  # only A's own: nothing of H's added
        assert h.hits_on("POST", QUERY) == 1 and h.hits_on("POST", FACETS) == 0


def test_counts_a_hostile_partner_sends_unasked_are_ignored(network, tmp_path):
    a = network.node("A")
    with hostile_partner(network, tmp_path, a) as h:
        h.routes[("POST", QUERY)] = answer({"records": [], "counts": {"total": 10 ** 6, "facets": {}}})
        page = search(network, a, Query())
        assert page.counts is None and page.counted == [] and [s.status for s in page.peers] == ["ok", "ok"]


def test_a_partner_that_fails_the_page_fails_its_counts_the_same_way(world):
    network, a, b, _ = world
    b.stop()
    page = search(network, a, Query(), counts=True, timeout=2.0)
    (status,) = [s for s in page.peers if s.node_id != a.home.node_id]
    (counted,) = [s for s in page.counted if s.node_id != a.home.node_id]
    assert status.status == counted.status == "unreachable" and counted.total is None


def test_over_review_records_leave_the_counts_as_they_leave_the_page(world, monkeypatch):
    network, a, b, _ = world
    add(b, "--first-name", "Over", "--last-name", "Due", "--gender", "female",
        "--review-by", (today() + dt.timedelta(days=1)).isoformat())
    _, now = ask(a, b, QUERY, {"counts": True, "gender": ["female"], "limit": 200})
    assert now["counts"]["total"] == len(now["records"]) == 4
    monkeypatch.setattr("discnode.server.today", lambda: today() + dt.timedelta(days=2))
    _, later = ask(a, b, QUERY, {"counts": True, "gender": ["female"], "limit": 200})
    assert later["counts"]["total"] == len(later["records"]) == 3


# --- the web Dataview ------------------------------------------------------------------------


def web_login(net) -> Any:
    import aiohttp

    from tests.web_fixtures import get

    async def make_jar() -> aiohttp.CookieJar:
        return aiohttp.CookieJar(unsafe=True)
    jar = net.network.loop.run(make_jar())
    status, _, _ = get(net, net.login_url().removeprefix(net.origin), jar=jar)
    assert status == 303
    return jar


def web_page(net, jar, path: str) -> dict[str, Any]:
    import json

    from tests.web_fixtures import get
    status, _, body = get(net, path, jar=jar)
    assert status == 200, body[:300]
    return json.loads(body)


def test_the_web_dataview_asks_each_partner_once_and_pages_on_the_counts_it_has(network, tmp_path):
    from tests.web_fixtures import build, stop
    net = build(network, tmp_path, a_people=3, b_people=8)
    try:
        jar = web_login(net)
        before = len(served(net.b))
        first = web_page(net, jar, "/dataview.json?limit=5")
        asked = served(net.b)[before:]
        assert [(e["what"], e["counted"]) for e in asked] == [("query", 8)]  # one request, page and counts
        assert first["total"] == 11 and len(first["results"]) == 5 and first["next"]
        sources = {s["node_id"]: s for s in first["partnerships"]}
        assert (sources[net.b.node_id]["total"], sources[net.b.node_id]["facets_status"]) == (8, "ok")
        assert sum(r["count"] for r in first["facets"]["gender"]) == 11
        second = web_page(net, jar, "/dataview.json" + first["next"])
        asked = served(net.b)[before:]
        assert len(asked) == 2 and "counted" not in asked[1]  # the next page reuses the counts
        def shown(page: dict[str, Any]) -> dict[str, Any]:
            return {name: [(r["code"], r["count"]) for r in rows] for name, rows in page["facets"].items()}
        assert second["total"] == 11 and shown(second) == shown(first)
        assert {r["id"] for r in first["results"]}.isdisjoint({r["id"] for r in second["results"]})
    finally:
        stop(net)


def test_the_web_dataview_asks_a_partner_without_query_counts_twice_and_shows_the_same(network, tmp_path,
                                                                                        monkeypatch):
    from tests.web_fixtures import build, stop
    monkeypatch.setattr("discnode.home.FEATURES", ())  # every descriptor as an older node's
    net = build(network, tmp_path, a_people=3, b_people=8)
    monkeypatch.undo()
    try:
        jar = web_login(net)
        before = len(served(net.b))
        first = web_page(net, jar, "/dataview.json?limit=5&gender=male")
        asked = served(net.b)[before:]
        assert sorted(e["what"] for e in asked) == ["facets", "query"] and all("counted" not in e for e in asked)
        males = 1 + sum(1 for i in range(7) if i % 3 != 0) + 1  # A's one man; B's men and the <script> one
        assert first["total"] == males and {r["code"]: r["count"] for r in first["facets"]["gender"]} == {"male": males}
        sources = {s["node_id"]: s for s in first["partnerships"]}
        assert sources[net.b.node_id]["facets_status"] == "ok" and sources[net.b.node_id]["status"] == "ok"
    finally:
        stop(net)


def test_a_scope_value_a_node_does_not_know_changes_nothing_for_it(network, monkeypatch):
    # As query-counts is to a node of the release before it: listed in B's descriptor, unknown to A.
    monkeypatch.setattr("discnode.home.FEATURES", ("query-counts", "some-later-feature"))
    b = network.node("B")
    monkeypatch.undo()
    a = network.node("A")
    add(b, "--first-name", "Only", "--last-name", "One", "--gender", "female")
    network.agree(a, b, "profiles", "images", "ethnicity")  # the offer is checked against B's scopes
    (peer,) = dataview.active_peers(a.home)
    assert "some-later-feature" in peer.descriptor["scopes"]
    page = search(network, a, Query(), counts=True)
    assert [r["first_name"] for r in page.results] == ["Only"] and page.counts.total == 1


def test_a_partner_gone_back_to_a_node_without_query_counts_is_asked_again_without_them(network, tmp_path):
    """Its descriptor as kept here still lists `query-counts`, but its node now refuses the member
    (400, as spec 13 says an older node does): the page comes from a query without it, and the counts
    from their own request, and nothing is reported invalid."""
    a = network.node("A")
    with hostile_partner(network, tmp_path, a) as h:
        assert dataview.asks_counts(dataview.active_peers(a.home)[0])
        record = h.add_profile(gender="male")
        asked: list[Any] = []

        async def older_node(request: Any) -> Any:
            from aiohttp import web
            body = await request.json()
            asked.append(sorted(body))
            if "counts" in body:
                return web.json_response({"error": {"code": "invalid", "message": "counts: unknown member"}}, status=400)
            return web.json_response({"records": [record]})
        h.routes[("POST", QUERY)] = older_node
        h.routes[("POST", FACETS)] = answer({"total": 1, "facets": {**{f: {} for f in facets.FIELDS}, "gender": {"male": 1}}})
        page = search(network, a, Query(), counts=True)
        (status,) = [s for s in page.peers if s.node_id == h.node_id]
        assert status.status == "ok" and [r["id"] for r in page.results if r["origin"] == h.node_id] == [record["id"]]
        (counted,) = [s for s in page.counted if s.node_id == h.node_id]
        assert counted.status == "ok" and counted.total == 1
        assert page.counts is not None and page.counts.total == 1 and page.counts.facets["gender"] == {"male": 1}
        assert len(asked) == 2 and "counts" in asked[0] and "counts" not in asked[1]
        assert h.hits_on("POST", FACETS) == 1


def test_a_partner_refusing_every_query_is_asked_once_more_and_reported_invalid(network, tmp_path):
    a = network.node("A")
    with hostile_partner(network, tmp_path, a) as h:
        h.routes[("POST", QUERY)] = answer({"error": {"code": "invalid", "message": "no"}}, status=400)
        h.routes[("POST", FACETS)] = answer({"error": {"code": "invalid", "message": "no"}}, status=400)
        page = search(network, a, Query(), counts=True)
        (status,) = [s for s in page.peers if s.node_id == h.node_id]
        (counted,) = [s for s in page.counted if s.node_id == h.node_id]
        assert (status.status, status.error) == ("invalid", "HTTP 400") and counted.status == "invalid"
        assert h.hits_on("POST", QUERY) == 2 and h.hits_on("POST", FACETS) == 1


def test_withheld_fields_from_the_agreement_in_hand_equal_those_read_partner_by_partner(world):
    """A search takes every partner's agreement from the one query that lists them
    (dataview._active_agreements) and gives it to withheld_by, where withheld_by used to read each
    partner's documents again: the same fields, for a partner that withholds some and one that does not."""
    _, a, b, c = world
    seen = []
    for node in (a, c):
        for peer, agreement in dataview._active_agreements(node.home):
            got = dataview.withheld_by(node.home, peer, agreement)
            assert got == dataview.withheld_by(node.home, peer)
            seen.append(tuple(got))
    assert ("ethnicity",) in [s[:1] for s in seen] and () in seen  # both kinds of partner were compared
