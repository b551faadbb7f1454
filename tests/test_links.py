"""Same-person links with real nodes: a Level Two group suggests a link, one side proposes it, the
other confirms or declines; confirmed links show on both sides (level-two, profile show), a
declined one is never suggested again; a confirmed proposal is a link already; a revoke stops them."""

import pytest

from discnode import audit
from discnode.documents.link import new_link
from discnode.home import Home
from tests.nodes import send, signed

PATH = "/v1/links"


def _events(node, *names):
    h = Home.open(node.cli.home)
    try:
        return [e["event"] for e in audit.entries(h.db) if e["event"] in names]
    finally:
        h.close()


def _level_two(node):
    return node.cli("level-two", "--json").json


@pytest.fixture
def pair(network):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    p = a.cli("profile", "add", "--first-name", "Len", "--last-name", "Two", "--dob", "1980-05-05",
              "--json").json["id"]
    q = b.cli("profile", "add", "--first-name", "LEN", "--last-name", "TWO", "--dob", "1980-05-05",
              "--json").json["id"]
    return a, b, p, q


def test_a_level_two_link_confirmed_by_both_sides_shows_on_both(pair):
    a, b, p, q = pair
    [group] = _level_two(a)["groups"]
    assert group["suggested"] == [{"mine": p, "theirs": f"{b.node_id}:{q}"}] and group["links"] == []
    sent = a.cli("link", "propose", p, f"{b.node_id}:{q}", "--json").json
    assert sent["state"] == "offered"
    assert _level_two(a)["groups"][0]["suggested"] == []

    inbox = [i for i in b.cli("inbox", "--json").json if i["kind"] == "link"]
    assert [(i["id"], i["from"], i["about"]) for i in inbox] == [(sent["id"], a.node_id, q)]
    assert b.cli("link", "confirm", sent["id"], "--json").json["state"] == "confirmed"

    for node, mine, theirs in ((a, p, f"{b.node_id}:{q}"), (b, q, f"{a.node_id}:{p}")):
        seen = _level_two(node)
        assert [(lk["mine"], lk["theirs"], lk["state"]) for lk in seen["links"]] == [(mine, theirs, "confirmed")]
        assert seen["groups"][0]["links"] == [{"mine": mine, "theirs": theirs, "state": "confirmed"}]
        assert node.cli("profile", "show", mine, "--json").json["links"] == [theirs]
        assert node.cli("profile", "show", theirs, "--json").json["links"] == [f"{node.node_id}:{mine}"]
    assert "Confirmed same-person links: 1" in a.cli("level-two").out
    # ...and beside both records in the Dataview (search), on both sides.
    for node, mine, theirs in ((a, p, f"{b.node_id}:{q}"), (b, q, f"{a.node_id}:{p}")):
        rows = {f"{r['origin']}:{r['id']}": r.get("links") for r in node.cli("search", "--json").json["results"]}
        assert rows == {f"{node.node_id}:{mine}": [theirs], theirs: [f"{node.node_id}:{mine}"]}
        assert "confirmed link" in node.cli("search").out
    assert _events(a, "link-sent") == ["link-sent"] and _events(a, "link-answer-received") == ["link-answer-received"]
    assert _events(b, "link-received", "link-confirmed") == ["link-received", "link-confirmed"]


def test_a_declined_link_is_not_suggested_or_proposed_again(pair):
    a, b, p, q = pair
    sent = a.cli("link", "propose", p, f"{b.node_id}:{q}", "--json").json
    b.cli("link", "decline", sent["id"])
    for node in (a, b):
        group = _level_two(node)["groups"][0]
        assert group["suggested"] == [] and [lk["state"] for lk in group["links"]] == ["declined"]
        assert _level_two(node)["links"] == []
    assert "declined before" in a.cli("link", "propose", p, f"{b.node_id}:{q}", ok=False).err
    assert "declined before" in b.cli("link", "propose", q, f"{a.node_id}:{p}", ok=False).err
    assert "suggested:" not in a.cli("level-two").out


def test_a_confirmed_proposal_is_a_link_on_both_sides(network):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    x = a.cli("profile", "add", "--id-sought", "--json").json["id"]
    y = b.cli("profile", "add", "--first-name", "Rita", "--last-name", "Red", "--dob", "1990-01-01",
              "--json").json["id"]
    sent = b.cli("propose", f"{a.node_id}:{x}", "--as", y, "--json").json
    a.cli("proposal", "confirm", sent["id"])
    assert [(lk["mine"], lk["theirs"], lk["state"]) for lk in _level_two(a)["links"]] == [
        (x, f"{b.node_id}:{y}", "confirmed")]
    assert [(lk["mine"], lk["theirs"], lk["state"]) for lk in _level_two(b)["links"]] == [
        (y, f"{a.node_id}:{x}", "confirmed")]
    assert _level_two(a)["groups"][0]["suggested"] == []


def test_links_stop_at_once_when_either_side_revokes(pair, network):
    a, b, p, q = pair
    sent = a.cli("link", "propose", p, f"{b.node_id}:{q}", "--json").json
    b.cli("link", "confirm", sent["id"])
    c = network.node("C")
    network.agree(a, c)
    r = c.cli("profile", "add", "--first-name", "Len", "--last-name", "Two", "--dob", "1980-05-05", "--json").json["id"]
    b.cli("peer", "revoke", a.node_id)
    assert _level_two(a)["links"] == [] and _level_two(b)["links"] == []
    assert "no active agreement" in a.cli("link", "propose", p, f"{b.node_id}:{q}", ok=False).err
    late = new_link(b.home.identity, a.node_id, q, p, "2026-11-26T12:00:00Z")
    assert send(a, "POST", PATH, *signed(b.home.identity, a, "POST", PATH, late))[0] == 403
    # C's link still works: the revoke is B's alone.
    assert c.cli("link", "propose", r, f"{a.node_id}:{p}", "--json").json["state"] == "offered"


def test_a_link_to_a_profile_the_partner_does_not_share_is_refused(pair):
    a, b, p, q = pair
    hidden = b.cli("profile", "add", "--first-name", "Lo", "--last-name", "Cal", "--local-only", "--json").json["id"]
    r = a.cli("link", "propose", p, f"{b.node_id}:{hidden}", ok=False)
    assert "refused the link" in r.err and "no shared profile" in r.err
    assert "no profile" in a.cli("link", "propose", q, f"{b.node_id}:{q}", ok=False).err  # not A's own
    forged = new_link(a.home.identity, b.node_id, p, q, "2026-11-26T12:00:00Z")
    status, reply = send(b, "POST", PATH, *signed(a.home.identity, b, "POST", PATH, {**forged, "mine": "zzzzzzzzzzzz"}))
    assert status == 401 and "signature" in reply["error"]["message"]
    assert [i for i in b.cli("inbox", "--json").json if i["kind"] == "link"] == []
