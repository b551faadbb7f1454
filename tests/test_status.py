"""`discnode status` (issue 17): what an administrator needs to know, from real nodes and a real
partner whose clock is off (a hostile peer, answering with a Date two minutes ahead)."""

from __future__ import annotations

import datetime as dt
import email.utils

from aiohttp import web

from discnode import localapi
from discnode.home import DESCRIPTOR_PATH
from discnode.status import ATTENTION_EXIT
from tests.hostile import HostilePeer, answer


def skewed_descriptor(peer: HostilePeer, seconds: float):
    async def handler(request: web.Request) -> web.Response:
        ahead = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)
        return web.json_response(peer.home.descriptor(), headers={"Date": email.utils.format_datetime(ahead, usegmt=True)})
    return handler


def test_status_json_reports_a_partner_down_and_one_with_clock_off(network, tmp_path):
    a, b, c = network.node("A"), network.node("B"), network.node("C")
    network.agree(a, b)
    network.agree(a, c)
    skewed = HostilePeer(tmp_path / "hostiles", network.loop, "Skewed BCRP")
    try:
        skewed.routes[("POST", "/v1/consent")] = answer({"state": "pending"})
        a.cli("peer", "add", skewed.url, "--expect", skewed.node_id)
        skewed.accept_from(a)
        skewed.routes[("GET", DESCRIPTOR_PATH)] = skewed_descriptor(skewed, 120)
        b.stop()
        assert a.home is not None
        daemon = network.loop.run(localapi.start(a.home))  # the daemon's local socket, as `serve` opens it
        try:
            r = a.cli("status", "--json", ok=False)
        finally:
            network.loop.run(daemon.stop())
    finally:
        skewed.stop()
    assert r.code == ATTENTION_EXIT
    report = r.json
    partners = {p["node_id"]: p for p in report["partners"]}
    down, fine, off = partners[b.node_id], partners[c.node_id], partners[skewed.node_id]
    assert down["reachable"] is False and down["error"] and down["clock_ok"] is None
    assert fine["reachable"] is True and fine["clock_ok"] is True and abs(fine["clock_offset"]) < 5
    assert off["reachable"] is True and off["clock_ok"] is False and 110 < off["clock_offset"] < 130
    assert fine["last_exchange"] and down["last_exchange"]  # both answered A's requests earlier
    assert report["daemon"]["running"] is True and report["daemon"]["pid"]
    attention = report["attention"]
    assert any(b.node_id in x and "unreachable" in x for x in attention)
    assert any(skewed.node_id in x and "has a clock +1" in x and "NTP" in x for x in attention)
    assert not any(c.node_id in x for x in attention)
    assert {"home", "db", "images", "free"} <= report["disk"].keys() and report["disk"]["db"] > 0
    assert report["audit"]["entries"] > 0 and "count" in report["outbox"] and "count" in report["review"]


def test_status_of_a_healthy_node_exits_zero_and_says_so(network):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    a.cli("audit", "--checkpoint")
    assert a.home is not None
    daemon = network.loop.run(localapi.start(a.home))
    try:
        r = a.cli("status")
    finally:
        network.loop.run(daemon.stop())
    assert "Nothing needs attention." in r.out and "B BCRP" in r.out


def test_status_without_the_daemon_says_so_and_exits_non_zero(cli):
    r = cli("status", "--json", ok=False)
    assert r.code == ATTENTION_EXIT and r.json["daemon"] == {"running": False}
    assert any("daemon is not running" in x for x in r.json["attention"])
    r = cli("status", ok=False)
    assert "NOT running" in r.out and "attention: the daemon is not running" in r.err


def test_undelivered_documents_are_counted_per_partner(network):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    b.stop()
    a.cli("peer", "revoke", b.node_id)  # waits in A's outbox for B
    report = a.cli("status", "--json", ok=False).json
    assert report["outbox"]["count"] >= 1 and report["outbox"]["by_partner"][b.node_id] >= 1
    (row,) = report["partners"]
    assert row["undelivered"] >= 1 and row["state"] == "revoked" and row["reachable"] is None
