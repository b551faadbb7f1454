"""Erasure and rectification reach recipients, with real nodes (spec 8.8): A deletes or corrects a
profile B received; B drops what it kept of it, lists the files its administrator exported from
it, and returns a signed receipt; a notice about another node's record, from a node that never
was a partner, or replayed, changes nothing."""

from __future__ import annotations

import asyncio
import json

import pytest

from discnode import notices
from discnode.documents.notice import new_notice
from discnode.home import Home
from discnode.peering import deliver_pending
from discnode.store import now_ts
from tests.conftest import jpeg_with_gps
from tests.nodes import send, signed
from tests.nodes import audit_events as _events

PATH = "/v1/notices"


def _q(node, sql, *params):
    h = Home.open(node.cli.home)
    try:
        return h.db.execute(sql, params).fetchall()
    finally:
        h.close()


def _held(b, a, x):
    """What B keeps of A's profile x: checks, links, sightings it reported, exported files."""
    return {"checked": _q(b, "SELECT count(*) FROM checked_records WHERE origin = ? AND profile_id = ?", a.node_id, x)[0][0],
            "links": _q(b, "SELECT count(*) FROM links WHERE peer = ? AND theirs = ?", a.node_id, x)[0][0],
            "sightings": _q(b, "SELECT count(*) FROM sightings WHERE recipient = ? AND about = ?", a.node_id, x)[0][0],
            "files": _q(b, "SELECT count(*) FROM exported_files WHERE origin = ? AND profile_id = ?", a.node_id, x)[0][0]}


def _identity(node):
    h = Home.open(node.cli.home)
    try:
        return h.identity
    finally:
        h.close()


@pytest.fixture
def abc(network, tmp_path):
    """A shares with B and C, B with C. A's profile x (with a photo) went to B, which checked it
    (a walk), saved its photo, exported it to CSV, linked it to its own profile y and reported a
    sighting of it. C never asked for x."""
    a, b, c = network.node("A"), network.node("B"), network.node("C")
    network.agree(a, b)
    network.agree(a, c)
    network.agree(b, c)
    x = a.cli("profile", "add", "--first-name", "Xavier", "--last-name", "Erased", "--image",
              str(jpeg_with_gps(tmp_path / "x.jpg")), "--json").json["id"]
    y = b.cli("profile", "add", "--first-name", "Xavier", "--last-name", "Erased", "--json").json["id"]
    b.cli("search", "--all", "--partnership", a.node_id)
    b.cli("profile", "show", f"{a.node_id}:{x}", "--save-images", str(tmp_path / "saved"))
    b.cli("search", "--partnership", a.node_id, "--csv", "--output", str(tmp_path / "export.csv"))
    b.cli("link", "propose", y, f"{a.node_id}:{x}")
    b.cli("sighting", f"{a.node_id}:{x}", "--at", "Boots, High Street")
    return a, b, c, x, y


def test_deleting_a_profile_makes_the_partner_drop_it_and_return_a_receipt(abc, tmp_path):
    a, b, c, x, y = abc
    before = _held(b, a, x)
    assert before["checked"] >= 1 and before["links"] == 1 and before["sightings"] == 1 and before["files"] == 2

    out = a.cli("profile", "delete", x, "--yes").out
    assert "sent an erasure notice: 1; notified now: 1; receipts returned: 1" in out

    assert _held(b, a, x) == {"checked": 0, "links": 0, "sightings": 0, "files": 2}  # files: listed, not touched
    assert b.cli("profile", "show", y, "--json").json["id"] == y  # B's own profile of the person stays
    (item,) = [i for i in b.cli("inbox", "--json").json if i["kind"] == "notice"]
    assert item["from"] == a.node_id and item["about"] == f"{a.node_id}:{x}"
    for name in (f"saved/", "export.csv"):
        assert name in item["summary"]
    assert (tmp_path / "export.csv").exists()  # the administrator deletes them; the node does not guess

    (sent,) = notices.sent_about(Home.open(a.cli.home).db, a.node_id, x)
    assert (sent["to"], sent["kind"], sent["delivered"], sent["receipt"]) == (b.node_id, "erasure", True, True)
    assert sent["dropped"]["links"] == 1 and sent["dropped"]["sightings"] == 1 and sent["dropped"]["checked"] >= 1
    assert sent["files"] == 2
    assert [e[1] for e in _events(a, "notice-sent")] == [b.node_id]  # C never received x: not told
    assert [e[1] for e in _events(a, "notice-receipt-received")] == [b.node_id]
    assert [e[2]["about"] for e in _events(b, "notice-received")] == [x]
    assert a.cli("peer", "list", "--json").json[0]["receipts_outstanding"] == 0


def test_profile_delete_json_names_recipients_notified_and_receipts(abc):
    a, b, _c, x, _y = abc
    r = a.cli("profile", "delete", x, "--yes", "--json").json
    assert r == {"deleted": x, "recipients": [b.node_id], "notified": [b.node_id], "receipts": [b.node_id]}


def test_a_rectification_reaches_the_partner(abc, tmp_path):
    a, b, _c, x, _y = abc
    was = a.cli("profile", "show", x, "--json").json["revision"]  # 2: B's sighting moved last-seen
    a.cli("profile", "edit", x, "--notes", "corrected: wrong date of birth before")
    (sent,) = notices.sent_about(Home.open(a.cli.home).db, a.node_id, x)
    assert (sent["kind"], sent["revision"], sent["receipt"]) == ("rectification", was + 1, True)
    held = _held(b, a, x)
    assert held["checked"] == 0  # the checks of the old revision are gone
    assert held["links"] == 1 and held["sightings"] == 1  # still the same person: kept
    (received,) = [i for i in b.cli("inbox", "--json").json if i["kind"] == "notice"]
    assert f"corrected (now revision {was + 1})" in received["summary"] and "export.csv" in received["summary"]
    assert b.cli("profile", "show", f"{a.node_id}:{x}", "--json").json["revision"] == was + 1


def test_making_a_profile_local_only_is_an_erasure_for_its_recipients(abc):
    a, b, _c, x, _y = abc
    a.cli("profile", "edit", x, "--local-only")
    (sent,) = notices.sent_about(Home.open(a.cli.home).db, a.node_id, x)
    assert (sent["kind"], sent["receipt"]) == ("erasure", True)
    assert _held(b, a, x)["links"] == 0


def test_a_notice_about_another_origins_record_is_refused_and_changes_nothing(abc):
    a, b, c, x, _y = abc
    before = _held(b, a, x)
    forged = new_notice(_identity(c), b.node_id, x, "erasure", 1, now_ts())
    forged = {**forged, "about": {"origin": a.node_id, "id": x}}  # C claims A's record, re-signed by C
    from discnode.signing import sign_document
    forged = sign_document({k: v for k, v in forged.items() if k != "sig"}, _identity(c))
    status, reply = send(b, *_post(c, b, forged))
    assert status == 403 and "own records" in reply["error"]["message"]
    # C relaying a notice A signed (to B): not C's to send.
    relayed = new_notice(_identity(a), b.node_id, x, "erasure", 1, now_ts())
    status, _ = send(b, *_post(c, b, relayed))
    assert status == 401
    assert _held(b, a, x) == before
    assert _q(b, "SELECT count(*) FROM notices")[0][0] == 0
    assert [e[2]["status"] for e in _events(b, "refused") if e[2].get("path") == PATH] == [403, 401]


def test_a_notice_from_a_node_never_a_partner_is_refused(abc, network):
    a, b, _c, x, _y = abc
    d = network.node("D")
    d.cli("peer", "add", b.url, "--expect", b.node_id)  # an offer B never accepted: B knows D's key
    before = _held(b, a, x)
    stray = d.cli("profile", "add", "--first-name", "Dan", "--last-name", "Stray", "--json").json["id"]
    status, reply = send(b, *_post(d, b, new_notice(_identity(d), b.node_id, stray, "erasure", 1, now_ts())))
    assert status == 403 and "ever in force" in reply["error"]["message"]
    assert _held(b, a, x) == before and _q(b, "SELECT count(*) FROM notices")[0][0] == 0


def test_a_replayed_notice_is_refused_or_changes_nothing(abc):
    a, b, _c, x, _y = abc
    a.cli("profile", "edit", x, "--notes", "first correction")
    doc = json.loads(_q(a, "SELECT doc FROM notices WHERE about = ?", x)[0][0])
    receipt = json.loads(_q(b, "SELECT receipt FROM notices WHERE id = ?", doc["id"])[0][0])
    b.cli("search", "--all", "--partnership", a.node_id)  # B checks revision 2 afresh
    after = _held(b, a, x)
    assert after["checked"] >= 1

    body, headers = signed(_identity(a), b, "POST", PATH, doc)
    status, again = send(b, "POST", PATH, body, headers)
    assert status == 200 and again == receipt  # the same document again: the same receipt, nothing dropped
    assert send(b, "POST", PATH, body, headers)[0] == 401  # the same request again: a replay
    assert _held(b, a, x) == after
    # The same notice ID with other content: refused.
    other = new_notice(_identity(a), b.node_id, x, "erasure", 2, now_ts(), notice_id=doc["id"])
    status, _ = send(b, *_post(a, b, other))
    assert status == 409 and _held(b, a, x) == after


def test_receipts_outstanding_are_shown_by_peer_list_until_the_partner_answers(abc):
    a, b, c, x, _y = abc
    c.cli("profile", "show", f"{a.node_id}:{x}")  # C received x too
    c.cli("peer", "revoke", a.node_id)  # ...and the agreement ended since: C must still be told
    c.stop()
    r = a.cli("profile", "delete", x, "--yes", "--json").json
    assert (r["recipients"], r["receipts"]) == (sorted([b.node_id, c.node_id]), [b.node_id])
    listed = {p["node_id"]: p["receipts_outstanding"] for p in a.cli("peer", "list", "--json").json}
    assert listed == {b.node_id: 0, c.node_id: 1}
    assert "receipts owed" in a.cli("peer", "list").out
    assert "1 erasure or correction notice(s) without a receipt" in a.cli("peer", "show", c.node_id).out

    c.start()
    h = Home.open(a.cli.home)
    try:
        asyncio.run(deliver_pending(h))
    finally:
        h.close()
    assert {p["node_id"]: p["receipts_outstanding"] for p in a.cli("peer", "list", "--json").json} == {
        b.node_id: 0, c.node_id: 0}
    assert _held(c, a, x)["checked"] == 0


def _post(sender, target, doc):
    body, headers = signed(_identity(sender), target, "POST", PATH, doc)
    return "POST", PATH, body, headers


def test_an_import_that_corrects_a_received_profile_sends_a_rectification(network, tmp_path):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    sheet = tmp_path / "members.csv"
    sheet.write_text("ref,first_name,last_name,notes\nNT-1,Ida,Imported,first version\nNT-2,Ned,Unseen,\n")
    a.cli("profile", "import", str(sheet))
    ids = {r["last_name"]: r["id"] for r in a.cli("profile", "list", "--json").json}
    b.cli("profile", "show", f"{a.node_id}:{ids['Imported']}")  # B received Ida only
    sheet.write_text("ref,first_name,last_name,notes\nNT-1,Ida,Imported,corrected\nNT-2,Ned,Unseen,changed\n")
    assert a.cli("profile", "import", str(sheet), "--json").json["updated"] == 2
    (sent,) = notices.sent_about(Home.open(a.cli.home).db, a.node_id, ids["Imported"])
    assert (sent["to"], sent["kind"], sent["revision"], sent["receipt"]) == (b.node_id, "rectification", 2, True)
    assert notices.sent_about(Home.open(a.cli.home).db, a.node_id, ids["Unseen"]) == []  # sent to nobody


def test_a_forged_receipt_is_not_kept_and_the_receipt_stays_outstanding(network, tmp_path):
    """A hostile partner (a real server with its own identity) that received a record answers its
    erasure notice with a receipt for another notice: not kept, audited, still owed."""
    from aiohttp import web

    from discnode.documents.notice import new_receipt
    from discnode.signing import document_hash
    from tests.hostile import HostilePeer, answer, post_signed

    a = network.node("A")
    hostile = HostilePeer(tmp_path / "hostiles", network.loop)
    try:
        hostile.routes[("POST", "/v1/consent")] = answer({"state": "pending"})
        a.cli("peer", "add", hostile.url, "--expect", hostile.node_id)
        hostile.accept_from(a)
        x = a.cli("profile", "add", "--first-name", "Xena", "--last-name", "Taken", "--json").json["id"]
        status, reply = post_signed(network.loop, hostile.home.identity, a, "/v1/profiles/query", {})
        assert status == 200 and [r["id"] for r in reply["records"]] == [x]

        async def forged(request: web.Request) -> web.Response:
            notice = await request.json()
            lie = new_receipt(hostile.home.identity, notice, "00" * 32, {"checked": 1}, 0, now_ts())
            return web.json_response(lie)
        hostile.routes[("POST", PATH)] = forged
        r = a.cli("profile", "delete", x, "--yes", "--json").json
        assert (r["recipients"], r["notified"], r["receipts"]) == ([hostile.node_id], [hostile.node_id], [])
        assert hostile.hits_on("POST", PATH) == 1
        assert [e[1] for e in _events(a, "notice-receipt-invalid")] == [hostile.node_id]
        assert _events(a, "notice-receipt-received") == []
        assert {p["node_id"]: p["receipts_outstanding"] for p in a.cli("peer", "list", "--json").json} == {
            hostile.node_id: 1}
        sent = json.loads(_q(a, "SELECT doc FROM notices")[0][0])
        assert document_hash(sent) != "00" * 32  # the lie named another notice
    finally:
        hostile.stop()


def test_a_notice_clears_the_daemons_cached_images_of_that_partner(abc):
    """The daemon's web pages cache partners' images in memory: a notice taken drops that
    partner's (server_notices calls NodeState.notice_taken, which serve wires to Local.forget)."""
    from discnode import server
    from discnode.localapi import Local

    a, b, c, x, _y = abc
    local = Local(Home.open(b.cli.home))
    local.cache.update({("thumb", a.node_id, "1" * 64): (0, b"a"), ("full", a.node_id, "2" * 64): (0, b"a"),
                        ("thumb", c.node_id, "3" * 64): (0, b"c"), ("facets", "q"): (0, {})})
    taken: list[str] = []
    b.running.runner.app[server.STATE].notice_taken = lambda origin: taken.append(origin) or local.forget(origin)
    a.cli("profile", "delete", x, "--yes")
    assert taken == [a.node_id]
    assert set(local.cache) == {("thumb", c.node_id, "3" * 64)}  # C's stay; counts are counted afresh
    local.home.close()
