"""Facet counts: counted at each source over exactly what it would serve, and added up."""

import datetime as dt

import pytest

from discnode import audit, facets
from discnode.errors import InvalidInput
from discnode.home import today
from tests.nodes import send, signed

FACETS = "/v1/profiles/facets"


def ask(src, dst, payload):
    body, headers = signed(src.home.identity, dst, "POST", FACETS, payload)
    return send(dst, "POST", FACETS, body, headers)


@pytest.fixture
def pair(network):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    for i, (gender, tag) in enumerate([("male", "violence"), ("female", "shoplifting"), ("female", "violence")]):
        b.cli("profile", "add", "--first-name", f"B{i}", "--last-name", "Shared", "--gender", gender, "--tag", tag,
              "--tag", "drugs")
    b.cli("profile", "add", "--first-name", "Kept", "--last-name", "Home", "--gender", "female", "--local-only")
    b.cli("profile", "add", "--first-name", "Over", "--last-name", "Due", "--gender", "female",
          "--review-by", (today() + dt.timedelta(days=1)).isoformat())
    return a, b


def test_a_partner_counts_only_the_records_it_would_serve(pair, monkeypatch):
    a, b = pair
    status, body = ask(a, b, {"gender": ["female"]})
    assert status == 200
    # Two shared women, plus "Over Due" while it is within its review date; never the local-only one.
    assert body["total"] == 3 and body["facets"]["gender"] == {"female": 3}
    tomorrow = today() + dt.timedelta(days=2)
    monkeypatch.setattr("discnode.server.today", lambda: tomorrow)
    status, body = ask(a, b, {"gender": ["female"]})
    assert body["total"] == 2  # past review: no longer served, so no longer counted
    assert body["facets"]["tags"] == {"shoplifting": 1, "violence": 1, "drugs": 2}
    assert [e for e in audit.entries(b.home.db) if e["detail"].get("what") == "facets"]


def test_counts_agree_with_the_records_served(pair):
    a, b = pair
    _, counted = ask(a, b, {"tags": ["violence"]})
    body, headers = signed(a.home.identity, b, "POST", "/v1/profiles/query", {"tags": ["violence"], "limit": 200})
    _, served = send(b, "POST", "/v1/profiles/query", body, headers)
    assert counted["total"] == len(served["records"]) == 2


def test_no_agreement_no_counts(network, pair):
    _, b = pair
    stranger = network.node("C")
    status, body = ask(stranger, b, {})
    assert status == 403


def test_a_bad_query_is_refused_with_400(pair):
    a, b = pair
    status, body = ask(a, b, {"gender": ["martian"]})
    assert status == 400 and "martian" in body["error"]["message"]


def test_a_partners_reply_is_checked_against_its_schema():
    with pytest.raises(InvalidInput):
        facets.Counts.from_wire({"total": 1, "facets": {"gender": {"<script>": 1}, "ethnicity": {}, "build": {},
                                                        "status": {}, "tags": {}}})
    with pytest.raises(InvalidInput):
        facets.Counts.from_wire({"total": -1, "facets": {f: {} for f in facets.FIELDS}})
    ok = facets.Counts.from_wire({"total": 2, "facets": {**{f: {} for f in facets.FIELDS}, "build": {"slim": 2}}})
    assert ok.total == 2 and ok.facets["build"] == {"slim": 2}


def test_counts_add_up_across_sources():
    one = facets.Counts(2, {**{f: {} for f in facets.FIELDS}, "gender": {"male": 2}})
    two = facets.Counts(3, {**{f: {} for f in facets.FIELDS}, "gender": {"male": 1, "female": 2}})
    total = facets.Counts()
    total.add(one)
    total.add(two)
    assert total.total == 5 and total.facets["gender"] == {"male": 3, "female": 2}


@pytest.mark.parametrize("ethnicity", [True, False], ids=["ethnicity-shared", "ethnicity-withheld"])
def test_counting_reads_its_covering_index_and_counts_what_a_table_scan_counts(pair, ethnicity):
    """store.py's 020_counting: a count reads a small index rather than every ~2 KB row, for both
    audiences (the rows with a withheld view have their own partial index), and counts the same."""
    from discnode.handling import Audience
    from discnode.query import Query, filters

    _, b = pair
    db, day = b.home.db, today()
    audience = Audience(ethnicity=ethnicity)
    queries = (Query(), Query(gender=("female",)), Query(tags=("violence",)), Query(age_min=18, excluded=False),
               Query(text="Shared"))  # text: found through FTS5 by rowid, which is quicker still
    for query in queries[:-1]:
        sql = filters(query, day, served_by=b.node_id, audience=audience)
        plan = str(db.execute("EXPLAIN QUERY PLAN SELECT gender, ethnicity, build, status, tags FROM profiles "
                              f"WHERE {' AND '.join(sql.where)}", sql.params).fetchall())
        assert "profiles_counting" in plan, (query, plan)
    counted = [facets.count(db, q, day, served_by=b.node_id, audience=audience).to_wire() for q in queries]
    db.execute("DROP INDEX profiles_counting")
    db.execute("DROP INDEX profiles_counting_withheld")
    scanned = [facets.count(db, q, day, served_by=b.node_id, audience=audience).to_wire() for q in queries]
    assert counted == scanned and all(c["total"] > 0 for c in counted)
