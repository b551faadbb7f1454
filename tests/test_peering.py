"""Consent between real nodes, driven through the real CLI."""

import json

import pytest

from tests.nodes import Impostor


def test_offer_accept_makes_both_sides_active(network):
    a, b = network.node("A"), network.node("B")
    added = a.cli("peer", "add", b.url, "--expect", b.node_id, "--json").json
    assert added["state"] == "offered" and added["delivered"]
    [row] = b.cli("peer", "list", "--json").json
    assert row["node_id"] == a.node_id and row["state"] == "pending" and row["last_actor"] == "them"
    assert b.cli("peer", "accept", a.node_id, "--json").json["state"] == "active"
    [row] = a.cli("peer", "list", "--json").json
    assert row["state"] == "active" and row["last_actor"] == "them" and row["share"] == ["profiles", "images"]


def test_wrong_expected_node_id_is_refused_loudly(network):
    a, b, c = network.node("A"), network.node("B"), network.node("C")
    r = a.cli("peer", "add", b.url, "--expect", c.node_id, ok=False)
    assert "NOT adding it" in r.err
    assert a.cli("peer", "list", "--json").json == []
    assert b.cli("peer", "list", "--json").json == []


def test_mistyped_node_id_is_refused(network):
    a, b = network.node("A"), network.node("B")
    nid = b.node_id
    typo = nid[:3] + ("A" if nid[3] != "A" else "B") + nid[4:]
    assert "typo" in a.cli("peer", "add", b.url, "--expect", typo, ok=False).err


def test_revoke_when_peer_is_down_takes_effect_locally_and_is_delivered_later(network):
    from discnode.peering import deliver_pending
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    b.stop()
    r = a.cli("peer", "revoke", b.node_id, "--json").json
    assert r["state"] == "revoked" and not r["delivered"]
    b.start()
    assert b.cli("peer", "list", "--json").json[0]["state"] == "active"  # not told yet
    assert network.loop.run(deliver_pending(a.home)).sent == 1
    assert b.cli("peer", "list", "--json").json[0]["state"] == "revoked"


@pytest.mark.parametrize("action", ["accept", "reject"])
def test_cannot_answer_own_offer(network, action):
    a, b = network.node("A"), network.node("B")
    a.cli("peer", "add", b.url, "--expect", b.node_id)
    assert "cannot" in a.cli("peer", action, b.node_id, ok=False).err


def test_reoffer_after_revoke_renews(network):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    b.cli("peer", "revoke", a.node_id)
    assert a.cli("peer", "list", "--json").json[0]["state"] == "revoked"
    a.cli("peer", "add", b.url, "--expect", b.node_id)
    b.cli("peer", "accept", a.node_id)
    assert a.cli("peer", "list", "--json").json[0]["state"] == "active"
    # Both ends derive the agreement from consent_docs' stored hashes (peers.agreement): each is the
    # hash of its document, and the agreement is the one derived by hashing them all afresh.
    from discnode import peers
    from discnode.consent import derive
    from discnode.home import today
    from discnode.signing import document_hash
    for me, other in ((a, b), (b, a)):
        rows = me.home.db.execute("SELECT hash, doc FROM consent_docs WHERE peer = ?", [other.node_id]).fetchall()
        assert len(rows) == 5 and all(h == document_hash(json.loads(d)) for h, d in rows)
        assert peers.agreement(me.home.db, me.node_id, other.node_id, today()) == derive(
            me.node_id, other.node_id, peers.documents(me.home.db, other.node_id), today())


def test_retry_backs_off_doubling_to_its_cap_and_resets_on_success():
    from discnode.peering import Retry
    now = [1000.0]
    retry = Retry(first=30, cap=200, clock=lambda: now[0])
    assert retry.due("B")
    assert [retry.failed("B") for _ in range(5)] == [30, 60, 120, 200, 200]
    assert not retry.due("B") and retry.due("C")  # per peer
    now[0] += 199
    assert not retry.due("B")
    now[0] += 1
    assert retry.due("B")
    retry.succeeded("B")
    assert retry.failed("B") == 30


def test_unreachable_peer_is_tried_once_a_round_and_then_only_when_due(network):
    from discnode.peering import Retry, deliver_pending
    a, b = network.node("A"), network.node("B")
    b.cli("peer", "add", a.url, "--expect", a.node_id)
    b.stop()
    a.cli("peer", "accept", b.node_id)
    a.cli("peer", "revoke", b.node_id)  # two documents now wait for B
    assert a.cli("peer", "list", "--json").json[0]["undelivered"] == 2
    now = [0.0]
    retry = Retry(first=30, clock=lambda: now[0])
    dead = Impostor(int(b.url.rsplit(":", 1)[1]), hang_up=True)
    try:
        assert network.loop.run(deliver_pending(a.home, retry=retry)).sent == 0
        assert dead.attempts == 1, "the second document must not be tried once the peer failed"
        assert network.loop.run(deliver_pending(a.home, retry=retry)).sent == 0
        assert dead.attempts == 1, "not due yet"
        now[0] += 30
        assert network.loop.run(deliver_pending(a.home, retry=retry)).sent == 0
        assert dead.attempts == 2 and retry.failures[b.node_id] == 2
    finally:
        dead.close()
    b.start()
    now[0] += 60
    assert network.loop.run(deliver_pending(a.home, retry=retry)).sent == 2
    assert b.node_id not in retry.failures
    assert b.cli("peer", "list", "--json").json[0]["state"] == "revoked"


def test_a_peer_announcing_itself_is_reported_back(network):
    from discnode.peering import announce
    from discnode.server import STATE
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    back = []
    a.running.runner.app[STATE].peer_back = back.append
    assert network.loop.run(announce(b.home)) == 1
    assert back == [b.node_id]
