"""Protocol versions (spec section 13): a v1 node meeting a node that speaks only a newer version."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from discnode.home import DESCRIPTOR_PATH
from discnode.signing import sign_document
from tests.hostile import HostilePeer
from tests.nodes import Network


def _speaks_only_v2(peer: HostilePeer) -> None:
    async def descriptor(request: web.Request) -> web.Response:
        doc = {k: v for k, v in peer.home.descriptor().items() if k != "sig"}
        return web.json_response(sign_document({**doc, "v": 2}, peer.home.identity))
    peer.routes[("GET", DESCRIPTOR_PATH)] = descriptor


def test_peer_add_of_a_v2_only_node_says_which_versions_and_stores_nothing(network: Network, tmp_path: Path) -> None:
    victim = network.node("Alpha")
    newer = HostilePeer(tmp_path / "newer", network.loop, "Newer BCRP")
    try:
        _speaks_only_v2(newer)
        r = victim.cli("peer", "add", newer.url, "--expect", newer.node_id, ok=False)
        assert r.code == 2, r.err
        assert "protocol v2 only" in r.err and "implements v1" in r.err and "Upgrade discnode" in r.err
        assert len(r.err.strip().splitlines()) == 1
        assert victim.cli("peer", "list", "--json").json == []
        # Only the descriptor was fetched: no offer went to a node that could not read it.
        assert newer.hits_on("POST") == 0
    finally:
        newer.stop()


def test_refresh_of_a_partner_that_moved_to_v2_keeps_the_agreement_as_it_was(network: Network, tmp_path: Path) -> None:
    victim = network.node("Alpha")
    partner = HostilePeer(tmp_path / "partner", network.loop, "Partner BCRP")
    try:
        from tests.hostile import answer
        partner.routes[("POST", "/v1/consent")] = answer({"state": "pending"})
        victim.cli("peer", "add", partner.url, "--expect", partner.node_id)
        partner.accept_from(victim)
        before = victim.cli("peer", "show", partner.node_id, "--json").json
        _speaks_only_v2(partner)
        r = victim.cli("peer", "refresh", partner.node_id, ok=False)
        assert r.code == 2 and "protocol v2 only" in r.err
        after = victim.cli("peer", "show", partner.node_id, "--json").json
        assert after["state"] == "active" and after == before
    finally:
        partner.stop()
