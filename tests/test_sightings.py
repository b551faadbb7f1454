"""Sightings with real nodes: B reports that the person in A's profile was seen; A's administrator
sees it on the profile with who reported it, the profile's last-seen follows, and no third
partnership ever sees the sighting or its reporter."""

import datetime as dt
import json

import pytest

from discnode.documents.sighting import new_sighting
from discnode.home import Home, today
from discnode.signing import sign_document
from tests.nodes import send, signed
from tests.nodes import audit_events as _events

PATH = "/v1/sightings"


def _day(offset: int) -> str:
    return (today() + dt.timedelta(days=offset)).isoformat()


def _received(node):
    h = Home.open(node.cli.home)
    try:
        return h.db.execute("SELECT count(*) FROM sightings WHERE recipient = ?", [h.node_id]).fetchone()[0]
    finally:
        h.close()


@pytest.fixture
def abc(network):
    a, b, c = network.node("A"), network.node("B"), network.node("C")
    network.agree(a, b)
    network.agree(a, c)
    x = a.cli("profile", "add", "--first-name", "Sam", "--last-name", "Seen", "--last-seen", _day(-30),
              "--json").json["id"]
    return a, b, c, x


def test_a_sighting_moves_last_seen_and_only_the_origin_sees_who_reported_it(abc):
    a, b, c, x = abc
    r = b.cli("sighting", f"{a.node_id}:{x}", "--at", "Boots, 12 High Street", "--when", _day(-1), "--json").json
    assert (r["delivered"], r["when"], r["about"]) == (True, _day(-1), x)
    shown = a.cli("profile", "show", x, "--json").json
    assert shown["last_seen"] == _day(-1)
    assert [(s["id"], s["from"], s["at"], s["when"]) for s in shown["sightings"]] == [
        (r["id"], b.node_id, "Boots, 12 High Street", _day(-1))]
    inbox = [i for i in a.cli("inbox", "--json").json if i["kind"] == "sighting"]
    assert [(i["id"], i["from"], i["about"]) for i in inbox] == [(r["id"], b.node_id, x)]
    assert inbox[0]["created"]

    # An older sighting is listed but never moves last-seen back.
    b.cli("sighting", f"{a.node_id}:{x}", "--at", "Market", "--when", _day(-5))
    shown = a.cli("profile", "show", x, "--json").json
    assert shown["last_seen"] == _day(-1) and len(shown["sightings"]) == 2

    # The third partnership sees A's last-seen, and nothing of the sighting or its reporter.
    served = c.cli("profile", "show", f"{a.node_id}:{x}", "--json").json
    assert served["last_seen"] == _day(-1) and "sightings" not in served
    text = json.dumps(served) + json.dumps(c.cli("search", "--partnership", a.node_id, "--json").json)
    for secret in (b.node_id, "Boots", "Market"):
        assert secret not in text

    assert [e[0] for e in _events(a, "sighting-received", "profile-last-seen")] == [
        "profile-last-seen", "sighting-received", "sighting-received"]  # the change, then the request's entry
    moved = _events(a, "profile-last-seen")[0]
    assert (moved[1], moved[2]["last_seen"], moved[2]["was"]) == (b.node_id, _day(-1), _day(-30))
    assert len(_events(b, "sighting-sent")) == 2


def test_a_sighting_of_a_profile_the_origin_does_not_share_is_refused(abc):
    a, b, _, x = abc
    hidden = a.cli("profile", "add", "--first-name", "Lo", "--last-name", "Cal", "--local-only", "--json").json["id"]
    for about in (hidden, "abcdefgh2345"):
        r = b.cli("sighting", f"{a.node_id}:{about}", "--at", "Market", ok=False)
        assert "refused the sighting" in r.err and "no shared profile" in r.err
    assert _received(a) == 0
    assert a.cli("profile", "show", hidden, "--json").json["last_seen"] is None


def test_a_forged_or_relayed_sighting_is_refused(abc):
    a, b, c, x = abc
    good = new_sighting(b.home.identity, a.node_id, x, "Market", _day(0), "2026-11-26T12:00:00Z")
    forged = sign_document({**good, "id": "00000000000000aa"}, c.home.identity)
    status, reply = send(a, "POST", PATH, *signed(b.home.identity, a, "POST", PATH, forged))
    assert status == 401 and "signature" in reply["error"]["message"]
    relayed = new_sighting(c.home.identity, a.node_id, x, "Market", _day(0), "2026-11-26T12:00:00Z")
    status, reply = send(a, "POST", PATH, *signed(b.home.identity, a, "POST", PATH, relayed))
    assert status == 401 and "node that signed" in reply["error"]["message"]
    assert _received(a) == 0


def test_sightings_stop_at_once_when_either_side_revokes(abc):
    a, b, c, x = abc
    a.cli("peer", "revoke", b.node_id)
    assert "no active agreement" in b.cli("sighting", f"{a.node_id}:{x}", "--at", "Market", ok=False).err
    late = new_sighting(b.home.identity, a.node_id, x, "Market", _day(0), "2026-11-26T12:00:00Z")
    status, _ = send(a, "POST", PATH, *signed(b.home.identity, a, "POST", PATH, late))
    assert status == 403
    c.cli("peer", "revoke", a.node_id)
    assert "no active agreement" in c.cli("sighting", f"{a.node_id}:{x}", "--at", "Market", ok=False).err
    assert _received(a) == 0 and a.cli("profile", "show", x, "--json").json["last_seen"] == _day(-30)


@pytest.mark.parametrize("args, words", [
    (["--at", "Market", "--when", "{tomorrow}"], "not in the future"),
    (["--at", "Market", "--when", "26/11/2026"], "not a date"),
    (["--at", "Market", "--when", "2020-01-01"], "at most a year ago"),
    (["--at", "  "], "--at must be"),
    (["--at", "Mar\x1b[2Jket"], "--at must be"),
])
def test_bad_sightings_are_one_line_and_change_nothing(abc, args, words):
    a, b, _, x = abc
    r = b.cli("sighting", f"{a.node_id}:{x}", *[s.replace("{tomorrow}", _day(1)) for s in args], ok=False)
    assert words in r.err and "Traceback" not in r.err, r.err
    assert _events(b, "sighting-sent") == [] and _received(a) == 0


def test_a_partner_cannot_send_more_sightings_a_day_than_the_cap(abc, monkeypatch):
    from discnode import sightings
    a, b, _, x = abc
    monkeypatch.setattr(sightings, "MAX_PER_DAY", 1)
    b.cli("sighting", f"{a.node_id}:{x}", "--at", "Market")
    r = b.cli("sighting", f"{a.node_id}:{x}", "--at", "Market", ok=False)
    assert "refused the sighting" in r.err and "last 24 hours" in r.err
    assert _received(a) == 1
