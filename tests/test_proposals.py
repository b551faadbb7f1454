"""Proposals with real nodes: B tells A who A's ID-sought person is; A's administrator confirms
(the profile becomes identified) or declines; B is told the outcome, signed. Refused outside an
active agreement, about a profile A does not share with B, naming another node's profile, forged."""

import json

import pytest

from discnode import peering
from discnode.documents.proposal import new_proposal
from discnode.home import Home
from discnode.signing import sign_document
from tests.conftest import jpeg_with_gps
from tests.nodes import send, signed
from tests.nodes import audit_events as _events

PATH = "/v1/proposals"


def _received_rows(node):
    h = Home.open(node.cli.home)
    try:
        return h.db.execute("SELECT count(*) FROM proposals WHERE recipient = ?", [h.node_id]).fetchone()[0]
    finally:
        h.close()


@pytest.fixture
def abc(network, tmp_path):
    """A shares an ID-sought profile (images, an incident, an exclusion) with B and with C; B has
    its own identified profile of that person; C has one of its own."""
    a, b, c = network.node("A"), network.node("B"), network.node("C")
    network.agree(a, b)
    network.agree(a, c)
    network.agree(b, c)
    x = a.cli("profile", "add", "--id-sought", "--age-min", "25", "--age-max", "35", "--marks", "red coat",
              "--image", jpeg_with_gps(tmp_path / "x.jpg"), "--json").json["id"]
    a.cli("profile", "edit", x, "--incident", "2026-09-30|Boots, High St|theft|Took razors",
          "--exclusion", "2026-10-01|2027-10-01|all member premises")
    y = b.cli("profile", "add", "--first-name", "Rita", "--last-name", "Red", "--dob", "1990-01-01",
              "--json").json["id"]
    z = c.cli("profile", "add", "--first-name", "Carla", "--last-name", "Cee", "--json").json["id"]
    return a, b, c, x, y, z


def test_a_confirmed_proposal_identifies_the_profile_and_the_proposer_is_told(abc):
    a, b, c, x, y, _ = abc
    before = a.cli("profile", "show", x, "--json").json
    sent = b.cli("propose", f"{a.node_id}:{x}", "--as", y, "--note", "known to our Market St members",
                 "--json").json
    assert (sent["state"], sent["delivered"], sent["about"]) == ("pending", True, x)
    assert sent["as"] == {"origin": b.node_id, "id": y}

    items = [i for i in a.cli("inbox", "--json").json if i["kind"] == "proposal"]
    assert [(i["id"], i["from"], i["about"]) for i in items] == [(sent["id"], b.node_id, x)]
    done = a.cli("proposal", "confirm", sent["id"], "--reason", "matches our CCTV", "--json").json
    assert (done["state"], done["delivered"]) == ("confirmed", True)

    after = a.cli("profile", "show", x, "--json").json
    assert (after["status"], after["first_name"], after["last_name"], after["dob"]) == (
        "identified", "Rita", "Red", "1990-01-01")
    for key in ("images", "image", "incidents", "exclusion", "created", "marks"):
        assert after[key] == before[key], key
    assert [i for i in a.cli("inbox", "--json").json if i["kind"] == "proposal"] == []

    told = b.cli("proposal", "list", "--json").json
    assert [(p["id"], p["direction"], p["state"], p["outcome_reason"]) for p in told] == [
        (sent["id"], "sent", "confirmed", "matches our CCTV")]
    assert [e[0] for e in _events(a, "proposal-received", "profile-identified", "proposal-confirmed")] == [
        "proposal-received", "profile-identified", "proposal-confirmed"]
    identified = _events(a, "profile-identified")[0]
    assert (identified[1], identified[2]["source"]) == (b.node_id, "proposal")
    assert [e[0] for e in _events(b, "proposal-sent", "proposal-outcome-received")] == [
        "proposal-sent", "proposal-outcome-received"]

    # Non-transitive: what A serves C carries nothing of B, its profile, or its note.
    served = c.cli("profile", "show", f"{a.node_id}:{x}", "--json").json
    text = json.dumps(served)
    assert served["first_name"] == "Rita" and served["origin"] == a.node_id
    for secret in (b.node_id, y, "Market St", "matches our CCTV"):
        assert secret not in text


def test_a_declined_proposal_keeps_the_profile_and_the_proposer_is_told_why(abc):
    a, b, _, x, _, _ = abc
    sent = b.cli("propose", f"{a.node_id}:{x}", "--first-name", "Rhoda", "--last-name", "Rose",
                 "--reason", "our warden knows her", "--json").json
    assert sent["as"] is None
    r = a.cli("proposal", "decline", sent["id"], ok=False)
    assert "needs a --reason" in r.err
    a.cli("proposal", "decline", sent["id"], "--reason", "she was in custody that day")
    assert a.cli("profile", "show", x, "--json").json["status"] == "id-sought"
    assert "already declined" in a.cli("proposal", "confirm", sent["id"], ok=False).err
    told = b.cli("proposal", "list", "--json").json[0]
    assert (told["state"], told["outcome_reason"]) == ("declined", "she was in custody that day")
    assert _events(a, "proposal-declined")[0][2]["reason"] == "she was in custody that day"


def test_the_outcome_waits_for_an_unreachable_proposer_and_is_listed_undelivered(abc):
    a, b, _, x, y, _ = abc
    sent = b.cli("propose", f"{a.node_id}:{x}", "--as", y, "--json").json
    b.stop()
    done = a.cli("proposal", "confirm", sent["id"], "--json").json
    assert done["delivered"] is False
    waiting = [i for i in a.cli("inbox", "--json").json if i["kind"] == "undelivered"]
    assert [i["about"] for i in waiting] == [b.node_id] and "proposal-outcome" in waiting[0]["summary"]
    b.start()
    assert a.loop.run(peering.deliver_pending(a.home)).sent == 1
    assert b.cli("proposal", "list", "--json").json[0]["state"] == "confirmed"
    assert [i for i in a.cli("inbox", "--json").json if i["kind"] == "undelivered"] == []


def test_a_proposal_about_a_profile_the_origin_does_not_share_is_refused(abc, network):
    a, b, c, x, y, z = abc
    hidden = a.cli("profile", "add", "--id-sought", "--local-only", "--json").json["id"]
    known = a.cli("profile", "add", "--first-name", "Ida", "--last-name", "Known", "--json").json["id"]
    for about, words in ((hidden, "no shared profile"), ("abcdefgh2345", "no shared profile"),
                         (known, "not ID-sought")):
        r = b.cli("propose", f"{a.node_id}:{about}", "--as", y, ok=False)
        assert "refused the proposal" in r.err and words in r.err, r.err
    # Naming a profile that is not B's own: refused before anything is signed.
    r = b.cli("propose", f"{a.node_id}:{x}", "--as", z, ok=False)
    assert "no profile" in r.err
    assert _received_rows(a) == 0
    assert a.cli("profile", "show", x, "--json").json["status"] == "id-sought"


def test_a_proposal_naming_a_third_partnerships_profile_or_forged_is_refused(abc):
    a, b, c, x, y, z = abc
    me = b.home.identity
    good = new_proposal(me, a.node_id, x, {"first_name": "Rita", "last_name": "Red", "dob": None}, y, "", "",
                        "2026-11-26T12:00:00Z")
    third = sign_document({**good, "as": {"origin": c.node_id, "id": z}}, me)
    status, reply = send(a, "POST", PATH, *signed(me, a, "POST", PATH, third))
    assert status == 400 and "own profile" in reply["error"]["message"]
    forged = sign_document({**good, "id": "00000000000000aa"}, c.home.identity)  # C's signature, B's name
    status, reply = send(a, "POST", PATH, *signed(me, a, "POST", PATH, forged))
    assert status == 401 and "signature" in reply["error"]["message"]
    relayed = sign_document({**good, "from": c.node_id, "as": {"origin": c.node_id, "id": z}}, c.home.identity)
    status, reply = send(a, "POST", PATH, *signed(me, a, "POST", PATH, relayed))  # C's proposal sent by B
    assert status == 401 and "node that signed" in reply["error"]["message"]
    assert _received_rows(a) == 0
    status, reply = send(a, "POST", PATH, *signed(me, a, "POST", PATH, good))
    assert (status, reply) == (200, {"id": good["id"], "state": "pending"})


def test_proposals_stop_at_once_when_either_side_revokes(abc):
    a, b, c, x, y, z = abc
    sent = b.cli("propose", f"{a.node_id}:{x}", "--as", y, "--json").json
    a.cli("peer", "revoke", b.node_id)
    assert [i for i in a.cli("inbox", "--json").json if i["kind"] == "proposal"] == []
    assert "no active agreement" in a.cli("proposal", "confirm", sent["id"], ok=False).err
    assert a.cli("profile", "show", x, "--json").json["status"] == "id-sought"
    assert "no active agreement" in b.cli("propose", f"{a.node_id}:{x}", "--as", y, ok=False).err
    late = new_proposal(b.home.identity, a.node_id, x, {"first_name": "R", "last_name": "R", "dob": None}, y,
                        "", "", "2026-11-26T12:00:00Z")
    status, _ = send(a, "POST", PATH, *signed(b.home.identity, a, "POST", PATH, late))
    assert status == 403
    # The other way round: C revokes A; A can no longer be proposed to by C, nor C by... anyone.
    c.cli("peer", "revoke", a.node_id)
    assert "no active agreement" in c.cli("propose", f"{a.node_id}:{x}", "--as", z, ok=False).err
    assert _received_rows(a) == 1


@pytest.mark.parametrize("args, words", [
    (["{a}"], "NODE_ID:PROFILE_ID"),
    (["{a}:notanid", "--as", "{y}"], "not a profile ID"),
    (["{a}:{x}"], "give --as MY_PROFILE_ID"),
    (["{a}:{x}", "--as", "{y}", "--first-name", "R"], "not both"),
    (["{a}:{x}", "--first-name", "R", "--last-name", "R"], "must give a reason"),
    (["{a}:{x}", "--as", "{y}", "--note", "bell\x07"], "printable"),
    (["{b}:{y}", "--as", "{y}"], "own profiles"),
])
def test_bad_proposals_are_one_line_and_change_nothing(abc, args, words):
    a, b, _, x, y, _ = abc
    fill = {"{a}": a.node_id, "{b}": b.node_id, "{x}": x, "{y}": y}
    args = [arg for arg in args]
    for key, value in fill.items():
        args = [arg.replace(key, value) for arg in args]
    r = b.cli("propose", *args, ok=False)
    assert words in r.err and "Traceback" not in r.err, r.err
    assert b.cli("proposal", "list", "--json").json == [] and _received_rows(a) == 0


def test_a_partner_cannot_queue_more_proposals_than_the_cap(abc, monkeypatch):
    from discnode import proposals
    a, b, _, x, y, _ = abc
    monkeypatch.setattr(proposals, "MAX_PENDING", 1)
    b.cli("propose", f"{a.node_id}:{x}", "--as", y)
    r = b.cli("propose", f"{a.node_id}:{x}", "--first-name", "R", "--last-name", "R", "--reason", "r", ok=False)
    assert "refused the proposal" in r.err and "await an answer" in r.err
    assert _received_rows(a) == 1
    assert [p["state"] for p in b.cli("proposal", "list", "--json").json] == ["pending", "refused"]
