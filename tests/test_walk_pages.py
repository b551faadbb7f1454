"""Walks in pages of up to 1,000 (spec 8.1, the feature `query-limit-1000`): a partner that lists
the feature is asked for wide pages, any other for pages of 200, and the walk's result is the same
records, in the same order, byte for byte, either way. Real nodes on real HTTPS throughout: one
hub, a partner of this release and a partner started as an older node (its descriptor without the
feature, so it serves at most 200, as such a node does); a hostile partner is a real server."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import sys
from typing import Any, Iterator

import pytest

from discnode import consent, dataview, disclosures, store
from discnode.home import today
from discnode.profiles import build_record
from discnode.query import MAX_PAGE, WIDE_FEATURE, WIDE_PAGE, Query
from discnode.signing import sign_document
from tests import hostile
from tests.hostile import HostilePeer, answer
from tests.nodes import Network, audit_events, send, signed

QUERY = "/v1/profiles/query"
SLOW = 60.0  # a deadline no partner misses on a loaded machine: what is asserted is the result


class _Tap:
    """capsys for a module-scoped network: the CLI's output, taken between two readouterr calls."""

    def __init__(self) -> None:
        self._saved: tuple[Any, Any] | None = None

    def readouterr(self) -> Any:
        from _pytest.capture import CaptureResult
        if self._saved is None:
            self._saved = (sys.stdout, sys.stderr)
            sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
            return CaptureResult("", "")
        out, err = sys.stdout.getvalue(), sys.stderr.getvalue()  # type: ignore[attr-defined]
        sys.stdout, sys.stderr = self._saved
        self._saved = None
        return CaptureResult(out, err)


@pytest.fixture(scope="module")
def world(tmp_path_factory: Any) -> Iterator[tuple[Network, Any, Any, Any]]:
    """Hub A; partner B of this release; partner O as an older node (without the feature)."""
    net = Network(tmp_path_factory.mktemp("walkpages"), _Tap())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("discnode.home.FEATURES", tuple(f for f in consent.FEATURES if f != WIDE_FEATURE))
        o = net.node("O")
    a, b = net.node("A"), net.node("B")
    net.agree(a, b)
    net.agree(a, o)
    try:
        yield net, a, b, o
    finally:
        net.stop()


def fill(node: Any, word: str, n: int, start: int = 0) -> list[dict[str, Any]]:
    """n signed profiles of this node named `word` (their own word for a text query)."""
    home = node.home
    records = [sign_document(build_record({"first_name": f"F{i:04d}", "last_name": word, "status": "identified",
                                           "local_only": False}, home.node_id), home.identity)
               for i in range(start, start + n)]
    store.put_profiles(home.db, records, identity=home.identity)
    return records


def query_entries(node: Any) -> list[dict[str, Any]]:
    return [d for _, _, d in audit_events(node, "served") if d.get("what") == "query"]


def walk(net: Network, hub: Any, query: Query, *, wide: bool, **kw: Any) -> tuple[list[dict[str, Any]], list[Any]]:
    """A walk by this release's hub (wide) or as an older hub does it (every partner in pages of 200)."""
    with pytest.MonkeyPatch.context() as mp:
        if not wide:  # as the release before the feature: every source in pages of 200
            mp.setattr(dataview, "walk_page", lambda peer, page_size=None: min(page_size or MAX_PAGE, MAX_PAGE))
        return net.loop.run(dataview.walk(hub.home, query, timeout=SLOW, workers=0, **kw), timeout=120)


def digest(records: list[dict[str, Any]]) -> str:
    """One digest of the whole result: every record's every byte, in order."""
    return hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest()


def central(nodes: list[Any], query: Query) -> list[tuple[str, str]]:
    """Everyone's shareable records in one SQLite database, one query: the order a walk must give."""
    db = store.connect(":memory:")
    store.migrate(db)
    for node in nodes:
        store.put_profiles(db, [json.loads(r[0]) for r in node.home.db.execute(
            "SELECT record FROM profiles WHERE local_only = 0")])
    from dataclasses import replace
    return [(r["origin"], r["id"]) for r in store.search(db, replace(query, limit=100_000), today())]


def test_only_a_partner_that_lists_the_feature_is_asked_for_wide_pages(world):
    _, a, b, o = world
    by_id = {p.node_id: p for p in dataview.active_peers(a.home)}
    assert WIDE_FEATURE in by_id[b.node_id].descriptor["scopes"]
    assert WIDE_FEATURE not in by_id[o.node_id].descriptor["scopes"]
    assert dataview.walk_page(by_id[b.node_id]) == WIDE_PAGE == 1000
    assert dataview.walk_page(by_id[o.node_id]) == MAX_PAGE == 200
    assert dataview.walk_page(by_id[b.node_id], 3) == dataview.walk_page(by_id[o.node_id], 3) == 3


def ask(src: Any, dst: Any, payload: Any) -> tuple[int, Any]:
    body, headers = signed(src.home.identity, dst, "POST", QUERY, payload)
    return send(dst, "POST", QUERY, body, headers)


def test_a_node_with_the_feature_serves_a_limit_of_1000_and_refuses_1001_with_400(world):
    _, a, b, _ = world
    fill(b, "Servedwide", 3)
    before = len(query_entries(b))
    status, reply = ask(a, b, {"text": "Servedwide", "limit": 1000})
    assert status == 200 and len(reply["records"]) == 3
    status, reply = ask(a, b, {"text": "Servedwide", "limit": 1001})
    assert status == 400 and "limit" in reply["error"]["message"]
    assert len(query_entries(b)) == before + 1  # the refused request disclosed nothing


def test_a_node_without_the_feature_refuses_a_limit_over_200_with_400(world):
    _, a, _, o = world
    fill(o, "Servednarrow", 3)
    assert ask(a, o, {"text": "Servednarrow", "limit": 200})[0] == 200
    status, reply = ask(a, o, {"text": "Servednarrow", "limit": 201})
    assert status == 400 and "limit" in reply["error"]["message"]


def test_an_interactive_page_stays_at_most_200(world):
    net, a, b, _ = world
    with pytest.raises(Exception, match="limit must be 1 to 200"):
        Query(limit=201).checked()
    fill(b, "Interactive", 5)
    before = len(query_entries(b))
    page = net.loop.run(dataview.search(a.home, Query(text="Interactive", limit=200), timeout=SLOW))
    assert len(page.results) == 5 and all(e["count"] <= 200 for e in query_entries(b)[before:])
    assert a.cli("search", "--limit", "201", "--json", ok=False).code != 0


#: Page boundaries of both page sizes: a partner with exactly N, N+1 and 2N-1 records, and none.
SIZES = [0, 1, MAX_PAGE - 1, MAX_PAGE, MAX_PAGE + 1, 2 * MAX_PAGE - 1, WIDE_PAGE - 1, WIDE_PAGE, WIDE_PAGE + 1,
         2 * WIDE_PAGE - 1]


@pytest.mark.parametrize("n", SIZES)
def test_a_walk_is_the_same_with_and_without_wide_pages(world, n):
    net, a, b, o = world
    word = f"Edge{n}x"
    fill(b, word, n)
    fill(o, word, min(n, 2 * MAX_PAGE + 1))  # the older partner: its own boundaries are at 200
    fill(a, word, 2)
    query = Query(text=word, sort="name")
    seen_b, seen_o = len(query_entries(b)), len(query_entries(o))
    wide, wide_statuses = walk(net, a, query, wide=True, remember_checks=False)
    asked_b, asked_o = query_entries(b)[seen_b:], query_entries(o)[seen_o:]
    narrow, narrow_statuses = walk(net, a, query, wide=False, remember_checks=False)
    assert [(r["origin"], r["id"]) for r in wide] == central([a, b, o], query)
    assert wide == narrow and digest(wide) == digest(narrow)
    assert [s.to_json() | {"ms": 0} for s in wide_statuses] == [s.to_json() | {"ms": 0} for s in narrow_statuses]
    assert {s.status for s in wide_statuses} == {"ok"}
    # B was asked in pages of 1,000, one served entry per reply naming every record it sent; O in 200.
    assert [e["count"] for e in asked_b] == [min(WIDE_PAGE, n - i) for i in range(0, max(n, 1), WIDE_PAGE)] + (
        [0] if n and n % WIDE_PAGE == 0 else [])
    assert all(e["count"] <= MAX_PAGE for e in asked_o)
    named = [pid for e in asked_b for pid, _ in disclosures.decode(e.get("records", ""))]
    assert named == [r["id"] for r in wide if r["origin"] == b.node_id]


@pytest.mark.parametrize("wide", [True, False], ids=["wide-pages", "pages-of-200"])
def test_a_repeat_walk_is_the_same_with_and_without_wide_pages(world, wide):
    net, a, b, o = world
    word = "Repeatx" + ("w" if wide else "n")
    fill(b, word, WIDE_PAGE + 7)
    fill(o, word, MAX_PAGE + 7)
    query = Query(text=word, sort="created", desc=True)
    first, _ = walk(net, a, query, wide=wide)
    again, statuses = walk(net, a, query, wide=wide)  # every record checked before: the repeat path
    other, _ = walk(net, a, query, wide=not wide)
    assert first == again == other and {s.status for s in statuses} == {"ok"}
    assert [(r["origin"], r["id"]) for r in again] == central([a, b, o], query)


@pytest.mark.parametrize("wide", [True, False], ids=["wide-pages", "pages-of-200"])
def test_records_changing_between_pages_are_walked_as_keyset_paging_says(world, monkeypatch, wide):
    """After B's first page: a record B already sent is deleted, and one past it; one is added
    before the page's last key and one after. The walk keeps what B sent, and from then on sees
    B's new state past that key: the same rule whatever the page size."""
    net, a, b, _ = world
    word = "Changingx" + ("w" if wide else "n")
    records = fill(b, word, (WIDE_PAGE if wide else MAX_PAGE) + 50)
    query = Query(text=word, sort="name")
    original = dataview._ask
    first_page: list[dict[str, Any]] = []

    async def ask_then_change(client, peer, q, *args, **kw):  # type: ignore[no-untyped-def]
        got = await original(client, peer, q, *args, **kw)
        if peer.node_id == b.node_id and not first_page:
            first_page.extend(got[0])
            sent, unsent = first_page[0], next(r for r in records if r["id"] not in {x["id"] for x in first_page})
            for gone in (sent, unsent):
                store.delete_profile(b.home.db, gone["id"])
            early = build_record({"first_name": "A", "last_name": word, "status": "identified", "local_only": False},
                                 b.home.node_id)
            late = build_record({"first_name": "Zz", "last_name": word, "status": "identified", "local_only": False},
                                b.home.node_id)
            store.put_profiles(b.home.db, [sign_document(early, b.home.identity), sign_document(late, b.home.identity)],
                               identity=b.home.identity)
        return got
    monkeypatch.setattr(dataview, "_ask", ask_then_change)
    result, statuses = walk(net, a, query, wide=wide, partnerships=[b.node_id])
    monkeypatch.undo()
    assert {s.status for s in statuses} == {"ok"}
    last = dataview.sort_key(first_page[-1], "name")
    expected = [r["id"] for r in first_page] + [r["id"] for r in _all(b, word) if dataview.sort_key(r, "name") > last]
    assert [r["id"] for r in result] == expected and first_page[0]["id"] in expected
    assert "Zz" in {r["first_name"] for r in result} and "A" not in {r["first_name"] for r in result}


def _all(node: Any, word: str) -> list[dict[str, Any]]:
    from dataclasses import replace
    return store.search(node.home.db, replace(Query(text=word, sort="name"), limit=100_000), today())


def hostile_partner(net: Network, root: Any, a: Any) -> contextlib.AbstractContextManager[HostilePeer]:
    return hostile.hostile_partner(root, net.loop, a, remove=True)  # the network is the module's


def test_a_partner_listing_the_feature_that_refuses_wide_pages_is_walked_in_pages_of_200(world, tmp_path):
    """Its descriptor as kept here lists the feature, but its node now refuses a limit over 200
    (400, as an older node does): the same page once more in 200, and the rest of the walk too."""
    net, a, _, _ = world
    with hostile_partner(net, tmp_path, a) as h:
        record = h.add_profile(gender="male", last_name="Gonebackx")
        limits: list[int] = []

        async def older_node(request: Any) -> Any:
            from aiohttp import web
            body = await request.json()
            limits.append(body["limit"])
            if body["limit"] > MAX_PAGE:
                return web.json_response({"error": {"code": "invalid", "message": "limit: over 200"}}, status=400)
            return web.json_response({"records": [record]})
        h.routes[("POST", QUERY)] = older_node
        result, statuses = walk(net, a, Query(text="Gonebackx"), wide=True, partnerships=[h.node_id])
        assert [r["id"] for r in result] == [record["id"]] and [s.status for s in statuses] == ["ok"]
        assert limits == [WIDE_PAGE, MAX_PAGE]


def test_a_partner_refusing_every_page_is_asked_twice_and_reported_invalid(world, tmp_path):
    net, a, _, _ = world
    with hostile_partner(net, tmp_path, a) as h:
        h.routes[("POST", QUERY)] = answer({"error": {"code": "invalid", "message": "no"}}, status=400)
        result, statuses = walk(net, a, Query(), wide=True, partnerships=[h.node_id])
        assert result == [] and [(s.status, s.error) for s in statuses] == [("invalid", "HTTP 400")]
        assert h.hits_on("POST", QUERY) == 2


def test_a_wide_reply_over_the_read_limit_is_asked_again_in_pages_of_200(world, monkeypatch):
    """A partner whose records are large: its page of 1,000 is over what this node reads (16 MiB;
    here less), its pages of 200 are not. The walk is whole all the same."""
    net, a, b, _ = world
    word = "Largex"
    fill(b, word, MAX_PAGE + 30)
    query = Query(text=word, sort="name")
    body_of_200 = len(json.dumps({"records": _all(b, word)[:MAX_PAGE]}))
    monkeypatch.setattr("discnode.client.MAX_RESPONSE", body_of_200 + 4096)
    seen = len(query_entries(b))
    result, statuses = walk(net, a, query, wide=True, partnerships=[b.node_id])
    monkeypatch.undo()
    assert [s.status for s in statuses] == ["ok"]
    assert [r["id"] for r in result] == [r["id"] for r in _all(b, word)]
    # The wide page was served (and audited) before its reply proved too large; then pages of 200.
    assert [e["count"] for e in query_entries(b)[seen:]] == [MAX_PAGE + 30, MAX_PAGE, 30]
