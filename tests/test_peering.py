"""Consent between real nodes, driven through the real CLI."""

import pytest


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
    assert network.loop.run(deliver_pending(a.home)) == 1
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
