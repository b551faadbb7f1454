"""A first page in two rounds (dataview.round_two): each partner asked first for its share of the
page, then, only where the page used all it sent, for the rest. Exactly the page, cursor and `more`
of asking every partner for the whole page: a property test of the pure part against the one-round
merge, then real nodes over HTTPS against the central baseline (one SQLite file of everyone's
records), with hostile and hung partners."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings, strategies as st

from discnode import store
from discnode.dataview import (Answer, answered, first_round_size, may_hold_more, merge, next_cursor, round_two,
                               search)
from discnode.home import today
from discnode.profiles import build_record
from discnode.query import Query, sort_key
from discnode.signing import sign_document
from discnode.store import write
from tests.nodes import audit_events

# --- the pure part, against the one-round merge ---------------------------------------------------


def _record(origin: int, n: int, value: int, sort: str) -> dict[str, Any]:
    """Just what sort_key reads, with sort values from a small range: ties across sources."""
    return {"origin": f"o{origin:02d}", "id": f"{n:04d}", "last_name": f"n{value:02d}", "first_name": "",
            "incidents": [0] * value, "created": f"2026-01-{value % 28 + 1:02d}", "last_seen": f"2026-02-{value:02d}"}


@st.composite
def worlds(draw: st.DrawFn) -> tuple[Query, list[list[dict[str, Any]]], list[int], set[str]]:
    """A query (any sort, either direction, maybe a cursor mid-way), each source's records after
    it in order, how many the first round asks each source for, and which records `accept` refuses."""
    sort = draw(st.sampled_from(["name", "last-seen", "incidents", "created"]))
    desc = draw(st.booleans())
    limit = draw(st.integers(1, 40))
    sources = draw(st.integers(1, 8))
    shape = draw(st.sampled_from(["spread", "one source holds all", "one source holds the first page", "ties"]))
    records: list[list[dict[str, Any]]] = []
    n = 0
    for s in range(sources):
        if shape == "one source holds all" and s != 1 % sources:
            count = 0
        else:
            count = draw(st.integers(0, 2 * limit + 3))
        values = []
        for _ in range(count):
            if shape == "ties":
                value = draw(st.integers(0, 2))
            elif shape == "one source holds the first page":
                # Source 0 sorts first whichever the direction: low values ascending, high descending.
                value = draw(st.integers(0, 9)) if (s == 0) != desc else draw(st.integers(10, 19))
            else:
                value = draw(st.integers(0, 19))
            values.append(value)
        records.append([_record(s, (n := n + 1), v, sort) for v in values])
    everything = sorted((r for rs in records for r in rs), key=lambda r: sort_key(r, sort), reverse=desc)
    after = None
    if everything and draw(st.booleans()):  # a cursor mid-way: the key of some record, or between two
        pick = draw(st.sampled_from(everything))
        after = sort_key(pick, sort)
        if draw(st.booleans()):
            after = (after[0], after[1], after[2] + "~")
    query = Query(sort=sort, desc=desc, limit=limit, after=after)

    def in_order(rs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        key = (lambda r: sort_key(r, sort))
        rs = [r for r in rs if after is None or (key(r) < after if desc else key(r) > after)]
        return sorted(rs, key=key, reverse=desc)

    lists = [in_order(rs) for rs in records]
    if draw(st.booleans()):
        asked = [limit] + [first_round_size(limit, sources - 1)] * (sources - 1)
    else:  # any first-round sizes: the argument holds for every one
        asked = [limit] + [draw(st.integers(1, limit)) for _ in range(sources - 1)]
    refused = set()
    if draw(st.integers(0, 3)) == 0:
        ids = [r["id"] for r in everything]
        refused = set(draw(st.lists(st.sampled_from(ids), max_size=6))) if ids else set()
    return query, lists, asked, refused


def _two_rounds(query: Query, lists: list[list[dict[str, Any]]], asked: list[int], accept: Any
                ) -> tuple[list[dict[str, Any]], bool, int, list[Answer]]:
    """What search() does, on sources that answer from these lists: (page, more, how many sources
    were asked again, the final answers)."""
    answers = [Answer(rs[:k], k, len(rs[:k])) for rs, k in zip(lists, asked)]
    page, more = merge([a.records for a in answers], query, accept)
    again = round_two(answers, page, query)
    for a in again:
        assert a.after == sort_key(answers[a.source].records[-1], query.sort)  # from its last key
        assert 0 < a.limit <= query.limit - answers[a.source].asked
        rest = [r for r in lists[a.source] if (sort_key(r, query.sort) < a.after if query.desc
                                               else sort_key(r, query.sort) > a.after)][: a.limit]
        answers[a.source] = answered(answers[a.source], a, rest, len(rest))
    if again:
        page, more = merge([a.records for a in answers], query, accept)
    return page, may_hold_more(answers, more), len(again), answers


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_two_rounds_give_exactly_the_one_round_page_cursor_and_more(world):
    query, lists, asked, refused = world
    accept = (lambda r: r["id"] not in refused) if refused else None
    one, one_more = merge([rs[: query.limit] for rs in lists], query, accept)  # every source for the page
    two, two_more, _, answers = _two_rounds(query, lists, asked, accept)
    assert [r["id"] for r in two] == [r["id"] for r in one]
    if refused:
        assert two_more or not one_more  # never loses a page; may offer an empty one
    else:
        assert two_more == one_more
        assert next_cursor(two, two_more, query) == next_cursor(one, one_more, query)
        # ... and that is the central answer: everything, in order, cut to the page.
        everything = sorted((r for rs in lists for r in rs), key=lambda r: sort_key(r, query.sort), reverse=query.desc)
        assert [r["id"] for r in two] == [r["id"] for r in everything[: query.limit]]
    assert round_two(answers, two, query) == []  # two rounds always suffice: a third would ask nobody


def test_a_source_holding_the_whole_first_page_is_asked_again_once_for_the_rest():
    query = Query(sort="incidents", limit=20)
    lists = [[], [_record(1, i, 0, "incidents") for i in range(30)]] + [
        [_record(s, 100 * s + i, 1, "incidents") for i in range(30)] for s in range(2, 7)]
    asked = [20] + [first_round_size(20, 6)] * 6
    assert asked[1] == 10
    page, more, again, answers = _two_rounds(query, lists, asked, None)
    # Round one's page: o01's 10, then o02's 10, whose last record is the cutoff. o01 is asked for
    # the other 10 of the page; o02 for one, to learn whether there is more (there is).
    assert again == 2 and answers[1].asked == 20 and answers[2].asked == 11 and answers[3].asked == 10
    assert [r["origin"] for r in page] == ["o01"] * 20 and more


def test_spread_records_need_no_second_round():
    query = Query(sort="name", limit=50)
    lists = [[]] + [[_record(s, 1000 * s + i, i % 20, "name") for i in range(60)] for s in range(1, 31)]
    lists = [sorted(rs, key=lambda r: sort_key(r, "name")) for rs in lists]
    asked = [50] + [first_round_size(50, 30)] * 30
    page, _, again, _ = _two_rounds(query, lists, asked, None)
    assert again == 0 and len(page) == 50


@pytest.mark.parametrize("holds", [10, 11])
def test_a_source_whose_last_record_ends_the_page_is_asked_for_one_more_to_settle_more(holds):
    """Its next record cannot be on the page, but whether it has one decides `more` (and so whether
    there is a next cursor) exactly as one round would."""
    query = Query(sort="incidents", limit=20)
    first = sorted([_record(1, i, 0, "incidents") for i in range(10)], key=lambda r: sort_key(r, "incidents"))
    second = [_record(2, 100 + i, 5, "incidents") for i in range(holds)]
    lists = [[], first, second]
    page, more, again, answers = _two_rounds(query, lists, [20, 10, 10], None)
    one, one_more = merge([rs[:20] for rs in lists], query)
    assert [r["id"] for r in page] == [r["id"] for r in one] and page[-1]["origin"] == "o02"
    assert answers[2].asked == 11 and more == one_more == (holds > 10)
    assert (next_cursor(page, more, query) is None) == (holds == 10)


def test_a_refused_record_that_hides_its_sources_next_one_still_leaves_a_cursor():
    """A source's last record, beyond the page, fails checks: the merge sees nothing after the page,
    but the source sent all it was asked for, so there may be more (one round saw its next record)."""
    query = Query(sort="incidents", limit=4)
    lists = [[_record(0, 1, 1, "incidents"), _record(0, 2, 2, "incidents"), _record(0, 3, 3, "incidents")],
             [_record(1, 4, 0, "incidents"), _record(1, 5, 9, "incidents"), _record(1, 6, 10, "incidents")]]
    accept = (lambda r: r["id"] != "0005")
    page, more, again, _ = _two_rounds(query, lists, [4, 2], accept)
    one, one_more = merge([rs[:4] for rs in lists], query, accept)
    assert again == 0 and [r["id"] for r in page] == [r["id"] for r in one] == ["0004", "0001", "0002", "0003"]
    assert one_more and more and next_cursor(page, more, query) == next_cursor(one, one_more, query)


def test_a_source_whose_refused_records_fill_the_page_is_asked_again_only_once():
    """A hostile source sends records that will not verify, where the page would show them: they
    count as its records, it is asked again (once) and the page is made of everyone else's."""
    query = Query(sort="name", limit=20)
    junk = [_record(1, i, 0, "name") for i in range(10)]
    good = [_record(2, 100 + i, 1 + i % 5, "name") for i in range(30)]
    lists = [[], junk + [_record(1, 50 + i, 0, "name") for i in range(10)], sorted(good, key=lambda r: sort_key(r, "name"))]
    lists[1] = sorted(lists[1], key=lambda r: sort_key(r, "name"))
    bad = {r["id"] for r in lists[1]}  # every record it sends is refused
    page, more, again, answers = _two_rounds(query, lists, [20, 10, 10], lambda r: r["id"] not in bad)
    assert again == 2 and answers[1].asked == 20
    assert [r["id"] for r in page] == [r["id"] for r in lists[2][:20]] and more
    assert round_two(answers, page, query) == []


# --- real nodes --------------------------------------------------------------------------------------

LIMIT = 40  # with 4 partners, first_round_size(40, 4) == 30
SLOW = 30.0  # a deadline no partner misses on a loaded machine: what is asserted is the page, not speed


def _fill(node: Any, last_names: list[str]) -> None:
    """Signed profiles of this node, written at once (synthetic names; no minors, no images)."""
    home = node.home
    records = [sign_document(build_record({"first_name": f"F{i:03d}", "last_name": name, "status": "identified",
                                           "local_only": False}, home.node_id), home.identity)
               for i, name in enumerate(last_names)]
    store.put_profiles(home.db, records, identity=home.identity)


def _central(nodes: list[Any], query: Query) -> list[tuple[str, str]]:
    """The central baseline: everyone's shareable records in one SQLite database, one query."""
    db = store.connect(":memory:")
    store.migrate(db)
    for node in nodes:
        rows = [json.loads(r[0]) for r in node.home.db.execute("SELECT record FROM profiles WHERE local_only = 0")]
        store.put_profiles(db, rows)
    return [(r["origin"], r["id"]) for r in store.search(db, dataclasses.replace(query, limit=100_000), today())]


def _queries(partner: Any) -> list[int]:
    """How many records each query request to this partner was served, from its audit log."""
    return [d["count"] for e, _, d in audit_events(partner, "served") if d.get("what") == "query"]


def _walk(hub: Any, query: Query) -> list[tuple[str, str]]:
    """Every page by cursor, as the Dataview pages."""
    out, page = [], asyncio.run(search(hub.home, query, timeout=SLOW))
    while True:
        assert all(p.status == "ok" for p in page.peers), page.peers
        out += [(r["origin"], r["id"]) for r in page.results]
        if page.next_cursor is None:
            return out
        page = asyncio.run(search(hub.home, cursor=page.next_cursor, timeout=SLOW))


@pytest.fixture
def hub_and_four(network):
    hub = network.node("Hub")
    partners = [network.node(name) for name in ("P1", "P2", "P3", "P4")]
    for partner in partners:
        network.agree(hub, partner)
    return hub, partners


def test_one_partner_holding_the_first_page_is_asked_twice_and_the_pages_equal_the_central_baseline(hub_and_four):
    hub, (p1, *others) = hub_and_four
    _fill(p1, [f"Abbot{i:03d}" for i in range(45)])  # the whole first page, and more
    for n, partner in enumerate(others):
        _fill(partner, [f"Zed{n}{i:03d}" for i in range(35)])
    query = Query(sort="name", limit=LIMIT)
    page = asyncio.run(search(hub.home, query, timeout=SLOW))
    assert all(p.status == "ok" for p in page.peers), page.peers
    assert [(r["origin"], r["id"]) for r in page.results] == _central([hub, p1, *others], query)[:LIMIT]
    assert {r["origin"] for r in page.results} == {p1.node_id}
    assert _queries(p1) == [30, 10]  # its share, then the rest of the page after its last key
    assert all(_queries(p) == [30] for p in others)  # not asked again, and never the whole page
    assert page.next_cursor is not None and all(p.status == "ok" for p in page.peers)
    # Every page after it, by cursor and in both directions, equals the baseline too.
    for q in (query, dataclasses.replace(query, desc=True), dataclasses.replace(query, sort="created")):
        assert _walk(hub, q) == _central([hub, p1, *others], q)


def test_spread_records_take_one_round_and_each_partner_sends_its_share(hub_and_four):
    hub, partners = hub_and_four
    for n, partner in enumerate(partners):
        _fill(partner, [f"Name{i:03d}{n}" for i in range(35)])  # interleaved: ~10 of each on a page
    query = Query(sort="name", limit=LIMIT)
    page = asyncio.run(search(hub.home, query, timeout=SLOW))
    assert all(p.status == "ok" for p in page.peers), page.peers
    assert [(r["origin"], r["id"]) for r in page.results] == _central([hub, *partners], query)[:LIMIT]
    assert all(_queries(p) == [30] for p in partners)  # one request each, for 30 records, not 40
    assert page.next_cursor is not None


def _forge(node: Any, last_name: str) -> str:
    """Alter a profile the partner serves (not its sort key) so that its signature fails."""
    db = node.home.db
    rid, record = db.execute("select id, record_withheld from profiles where json_extract(record, '$.last_name') = ?",
                             [last_name]).fetchone()
    with write(db):
        db.execute("update profiles set record_withheld = ? where id = ?",
                   [json.dumps({**json.loads(record), "build": "heavy"}), rid])
    return rid


@pytest.mark.parametrize("forged", ["Abbot005", "Abbot035"], ids=["in-round-one", "in-round-two"])
def test_forged_records_in_either_round_are_dropped_and_the_rest_of_the_page_is_exact(hub_and_four, forged):
    hub, (p1, *others) = hub_and_four
    _fill(p1, [f"Abbot{i:03d}" for i in range(45)])
    for n, partner in enumerate(others):
        _fill(partner, [f"Zed{n}{i:03d}" for i in range(35)])
    bad = _forge(p1, forged)
    query = Query(sort="name", limit=LIMIT)
    page = asyncio.run(search(hub.home, query, timeout=SLOW))
    # Asking everyone for the whole page: P1's first 40, less the forged one, then the next genuine record.
    central = _central([hub, p1, *others], query)
    sent_by_p1 = [k for k in central if k[0] == p1.node_id][:LIMIT]
    expected = [k for k in central if (k[0] != p1.node_id or k in sent_by_p1) and k[1] != bad][:LIMIT]
    assert expected[-1][0] != p1.node_id
    assert [(r["origin"], r["id"]) for r in page.results] == expected
    status = next(p for p in page.peers if p.node_id == p1.node_id)
    assert status.status == "invalid" and status.dropped == 1 and "signature" in status.error
    assert _queries(p1) == [30, 10]  # the forged record counted as one of its 30 or 10: no third round


DEADLINE, FIRST_ROUND_DELAY = 8.0, 4.0


def _hung_in_round_two(tmp_path: Any, network: Any, hub: Any, names: list[str]) -> Any:
    """A consenting partner (its own identity, its own signed records) that answers a first round
    and never answers a query from a key (a second round)."""
    from tests.hostile import HostilePeer, answer
    h = HostilePeer(tmp_path / "hostiles", network.loop, "Hung BCRP")
    h.routes[("POST", "/v1/consent")] = answer({"state": "pending"})
    hub.cli("peer", "add", h.url, "--expect", h.node_id)
    h.accept_from(hub)
    records = [h.add_profile(first_name=f"F{i:03d}", last_name=name) for i, name in enumerate(names)]
    served = {r["id"]: r for r in records}
    h.release = asyncio.Event()  # set when the test is done: the second round then gets its (late) answer

    async def query(request: web.Request) -> web.Response:
        wire = await request.json()
        if wire.get("after") is None:
            await asyncio.sleep(FIRST_ROUND_DELAY)  # slow in the first round: the deadline is part spent
        else:
            await h.release.wait()
        q = Query.from_wire(wire)
        rows = [served[r["id"]] for r in store.search(h.home.db, q, today()) if r["id"] in served]
        return web.json_response({"records": rows})
    h.routes[("POST", "/v1/profiles/query")] = query
    return h


def test_a_partner_hung_in_round_two_times_out_within_the_one_deadline_and_the_rest_is_exact(network, tmp_path):
    hub = network.node("Hub")
    others = [network.node(name) for name in ("P2", "P3", "P4")]
    for partner in others:
        network.agree(hub, partner)
    hung = _hung_in_round_two(tmp_path, network, hub, [f"Abbot{i:03d}" for i in range(45)])
    try:
        for n, partner in enumerate(others):
            _fill(partner, [f"Zed{n}{i:03d}" for i in range(35)])
        query = Query(sort="name", limit=LIMIT)
        started = time.monotonic()
        page = asyncio.run(search(hub.home, query, timeout=DEADLINE))
        elapsed = time.monotonic() - started
        assert hung.hits_on("POST", "/v1/profiles/query") == 2  # asked twice; the second never answered
    finally:
        network.loop.loop.call_soon_threadsafe(hung.release.set)
        hung.stop()
    status = {p.node_id: p for p in page.peers}
    assert status[hung.node_id].status == "timeout" and "second round" in status[hung.node_id].error
    # One deadline for both rounds: the second had only what the first (4 s or more) left of 8 s.
    given = float(re.search(r"within ([0-9.]+)s", status[hung.node_id].error).group(1))
    assert given <= DEADLINE - FIRST_ROUND_DELAY + 0.01, status[hung.node_id].error
    assert all(status[p.node_id].status == "ok" for p in others)
    # Its first answer (30 genuine records) stays; the rest of the page is exactly everyone else's next.
    rest = _central([hub, *others], query)
    got = [(r["origin"], r["id"]) for r in page.results]
    assert [k for k in got if k[0] == hung.node_id] == [(hung.node_id, r["id"]) for r in page.results[:30]]
    assert got[30:] == rest[:LIMIT - 30]
    assert page.next_cursor is not None  # it may hold more
    assert elapsed < DEADLINE + 1.5, elapsed


def test_the_rounds_benchmark_runs_in_its_fast_mode(tmp_path):
    """benchmarks/dataview_rounds.py end to end (figures not asserted: they belong in the report),
    so that it never rots; it checks every two-round page against one round's itself."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "rounds.json"
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "dataview_rounds.py"), "--fast", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads(out.read_text())
    assert sum(row["round_two"] for row in report["frequency"]) > 0  # `created` ties: one partnership's page
    modes = {(row["shape"], row["mode"]): row for row in report["costs"]}
    for shape in {s for s, _ in modes}:
        one, two = modes[(shape, "one round")], modes[(shape, "two rounds")]
        assert two["records_parsed"] <= one["records_parsed"] and one["pages"] == two["pages"] > 0
