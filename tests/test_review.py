"""The review queue: profiles past or near their review-by date, extending one after review
(audited, and shared again), and offers and undelivered documents in the same queue."""

import datetime as dt

import pytest

from discnode import audit, review
from discnode.home import Home, today
from tests.conftest import db_counts


def _day(offset: int) -> str:
    return (today() + dt.timedelta(days=offset)).isoformat()


def _add(cli, last, review_in):
    return cli("profile", "add", "--first-name", "Pat", "--last-name", last, "--review-by", _day(review_in),
               "--json").json["id"]


@pytest.fixture
def dated(cli):
    return {"past": _add(cli, "Past", -3), "near": _add(cli, "Near", 10), "far": _add(cli, "Far", 200)}


def test_profile_review_due_lists_past_and_near_profiles_soonest_first(cli, dated):
    items = cli("profile", "review", "--due", "--json").json
    assert [(i["kind"], i["ref"], i["overdue"]) for i in items] == [
        ("profile", dated["past"], True), ("profile", dated["near"], False)]
    assert items[0]["due"] == _day(-3) and "not shared" in items[0]["summary"]
    assert [i["ref"] for i in cli("profile", "review", "--days", "300", "--json").json] == [
        dated["past"], dated["near"], dated["far"]]
    assert cli("profile", "review", "--days", "0", "--json").json[0]["ref"] == dated["past"]
    table = cli("profile", "review").out
    assert dated["past"] in table and "OVERDUE" in table and dated["far"] not in table


def test_extending_a_review_is_audited_and_leaves_the_queue(cli, dated):
    r = cli("profile", "review", dated["past"], "--reason", "still active: seen 2026-11-01", "--json").json
    assert r["review_by"] == _day(365)
    assert cli("profile", "review", dated["near"], "--reason", "keep", "--days", "90", "--json").json[
        "review_by"] == _day(90)
    assert cli("profile", "review", "--due", "--json").json == []
    h = Home.open(cli.home)
    try:
        entry = [e for e in audit.entries(h.db) if e["event"] == "profile-reviewed"][0]
        assert audit.verify(h.db).ok
    finally:
        h.close()
    assert entry["detail"] == {"id": dated["past"], "reason": "still active: seen 2026-11-01",
                               "review_by": _day(365), "was": _day(-3)}


@pytest.mark.parametrize("args, words", [
    (["{past}"], "give the review's reason"),
    (["{past}", "--reason", "   "], "give the review's reason"),
    (["{past}", "--reason", "ok", "--days", "0"], "--days must be 1 to 1095"),
    (["{past}", "--reason", "ok", "--due"], "--due lists profiles"),
    (["--due", "--days", "-1"], "--days must be 0 to"),
    (["nosuchid", "--reason", "ok"], "no profile"),
])
def test_bad_review_requests_are_one_line_and_change_nothing(cli, dated, args, words):
    before = cli("profile", "show", dated["past"], "--json").json
    r = cli("profile", "review", *[a.replace("{past}", dated["past"]) for a in args], ok=False)
    assert words in r.err and len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    assert cli("profile", "show", dated["past"], "--json").json == before
    assert db_counts(cli.home) == (3, 0)


def test_a_reviewed_profile_is_shared_again(network):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    pid = _add(a.cli, "Lapsed", -1)
    seen = lambda: [r["id"] for r in b.cli("search", "--partnership", a.node_id, "--json").json["results"]]  # noqa: E731
    assert seen() == []
    a.cli("profile", "review", pid, "--reason", "still banned")
    assert seen() == [pid]


def test_the_queue_holds_offers_to_answer_and_undelivered_documents(network):
    a, b, c = network.node("A"), network.node("B"), network.node("C")
    a.cli("peer", "add", b.url, "--expect", b.node_id)
    c.cli("peer", "add", b.url, "--expect", b.node_id)
    items = b.cli("review", "--json").json
    assert {(i["kind"], i["ref"]) for i in items} == {("offer", a.node_id), ("offer", c.node_id)}
    assert all("peer accept" in i["action"] for i in items)
    c.stop()  # C is away when B accepts: B's accept waits for delivery
    b.cli("peer", "accept", c.node_id)
    kinds = {(i["kind"], i["ref"]) for i in b.cli("review", "--json").json}
    assert ("offer", a.node_id) in kinds and ("offer", c.node_id) not in kinds
    assert [k for k, _ in kinds].count("undelivered") == 1
    table = b.cli("review").out
    assert "not yet delivered to C BCRP" in table


def test_agreements_near_their_review_date_are_in_the_queue(network):
    a, b = network.node("A"), network.node("B")
    a.cli("peer", "add", b.url, "--expect", b.node_id, "--review-days", "20")
    b.cli("peer", "accept", a.node_id)
    items = review.queue(a.home.db, a.home.node_id, today(), days=30)
    assert [(i.kind, i.ref, i.due) for i in items] == [(review.Kind.AGREEMENT, b.node_id, _day(20))]
    assert review.queue(a.home.db, a.home.node_id, today(), days=10) == []
