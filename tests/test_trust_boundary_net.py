"""The trust boundary on the network side (issue 9, items 1, 2 and 4), attacked with real hostile peers
(tests/hostile.py): real HTTPS servers with their own identities, against real nodes on loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from discnode.errors import InvalidInput
from discnode.untrusted import checked, file_in, peer_url
from tests.hostile import HostilePeer, InternalService, answer, redirect
from tests.nodes import Network, Node


@pytest.fixture
def world(network: Network, tmp_path: Path) -> Iterator["World"]:
    w = World(network, tmp_path)
    yield w
    w.stop()


class World:
    """A victim node, an internal service that must never be reached, and hostile peers."""

    def __init__(self, network: Network, root: Path) -> None:
        self.network = network
        self.root = root
        self.victim: Node = network.node("Victim")
        self.internal = InternalService(network.loop)
        self.hostiles: list[HostilePeer] = []

    def hostile(self, name: str = "Hostile BCRP", **kw: object) -> HostilePeer:
        peer = HostilePeer(self.root / "hostiles", self.network.loop, name, **kw)  # type: ignore[arg-type]
        self.hostiles.append(peer)
        return peer

    def partner(self, name: str = "Hostile BCRP") -> HostilePeer:
        """A hostile peer the victim's administrator agreed with (a consenting, malicious partner)."""
        h = self.hostile(name)
        h.routes[("POST", "/v1/consent")] = answer({"state": "pending"})
        self.victim.cli("peer", "add", h.url, "--expect", h.node_id)
        h.accept_from(self.victim)
        states = {p["node_id"]: p["state"] for p in self.victim.cli("peer", "list", "--json").json}
        assert states[h.node_id] == "active"
        return h

    def stop(self) -> None:
        for h in self.hostiles:
            h.stop()
        self.internal.stop()


def known_peers(node: Node) -> list[str]:
    return [p["node_id"] for p in node.cli("peer", "list", "--json").json]


# --- item 1: SSRF and pinning -----------------------------------------------------------------


def test_peer_add_does_not_follow_a_redirect_to_an_internal_service(world: World) -> None:
    h = world.hostile()
    # The internal service would even serve the hostile node's genuine descriptor.
    world.internal.routes[("GET", "/.well-known/discnode")] = answer(h.home.descriptor())
    h.routes[("GET", "/.well-known/discnode")] = redirect(world.internal.url + "/.well-known/discnode", 302)
    r = world.victim.cli("peer", "add", h.url, "--expect", h.node_id, ok=False)
    assert "redirect" in r.err and "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1
    assert world.internal.hits == []
    assert known_peers(world.victim) == []


def test_peer_refresh_does_not_follow_a_redirect_to_an_internal_service(world: World) -> None:
    h = world.partner()
    h.routes[("GET", "/.well-known/discnode")] = redirect(world.internal.url + "/.well-known/discnode", 307)
    r = world.victim.cli("peer", "refresh", h.node_id, ok=False)
    assert "redirect" in r.err and "Traceback" not in r.err
    assert world.internal.hits == []


def test_reject_goes_once_to_the_pinned_address_and_never_follows_a_redirect(world: World) -> None:
    h = world.hostile()
    h.routes[("*", "*")] = redirect(world.internal.url + "/admin/delete-everything", 307)
    assert h.offer(world.victim)[0] == 200
    r = world.victim.cli("peer", "reject", h.node_id)
    assert "will be told" not in r.out and "once only" in r.out
    assert h.hits_on("POST", "/v1/consent") == 1
    # Later delivery rounds (the daemon's) never send it again.
    from discnode.peering import deliver_pending
    assert world.victim.home is not None
    world.network.loop.run(deliver_pending(world.victim.home))
    assert h.hits_on("POST", "/v1/consent") == 1
    assert world.internal.hits == []


def test_a_stranger_cannot_move_the_address_pinned_with_its_offer(world: World) -> None:
    from tests.hostile import post_signed
    h = world.hostile()
    assert h.offer(world.victim)[0] == 200
    moved = dict(h.home.descriptor())
    h.home.write_config(h.home.config.__class__(name=h.home.config.name, port=world.internal.port))
    moved = h.home.descriptor()
    status, _ = post_signed(world.network.loop, h.home.identity, world.victim, "/v1/descriptor", moved)
    assert status == 403
    url = {p["node_id"]: p["url"] for p in world.victim.cli("peer", "list", "--json").json}[h.node_id]
    assert url.endswith(f":{h.port}")


def test_serve_start_announces_only_to_partners_and_never_follows_a_redirect(world: World) -> None:
    stranger = world.hostile("Hostile BCRP")  # sorts first: announced to first, if at all
    stranger.routes[("*", "*")] = redirect(world.internal.url + "/stranger", 307)
    assert stranger.offer(world.victim)[0] == 200            # a pending stranger
    offered = world.hostile("Zed BCRP")                       # a node the victim offered to
    offered.routes[("POST", "/v1/consent")] = answer({"state": "pending"})
    world.victim.cli("peer", "add", offered.url, "--expect", offered.node_id)
    offered.routes[("POST", "/v1/descriptor")] = redirect(world.internal.url + "/offered", 307)
    world.victim.stop()
    proc = subprocess.Popen([sys.executable, "-m", "discnode", "--home", str(world.victim.cli.home), "serve",
                             "--no-advertise"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while offered.hits_on("POST", "/v1/descriptor") == 0:
            assert time.monotonic() < deadline, "serve never announced to the node it offered to"
            assert proc.poll() is None, "serve exited"
            time.sleep(0.1)
        time.sleep(0.5)  # anything it would send after, it has sent by now
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert stranger.hits == []
    assert world.internal.hits == []


def test_peer_add_refuses_a_certificate_other_than_the_one_its_descriptor_names(world: World) -> None:
    other = world.hostile("Other BCRP")
    h = world.hostile("Liar BCRP", tls_home=other.home)  # presents Other's certificate
    r = world.victim.cli("peer", "add", h.url, "--expect", h.node_id, ok=False)
    assert "certificate" in r.err and r.code == 5
    assert known_peers(world.victim) == []
    assert h.hits_on("POST", "/v1/consent") == 0


def test_a_partner_presenting_another_certificate_later_is_refused_on_every_request(world: World) -> None:
    h = world.partner()
    h.routes[("POST", "/v1/profiles/query")] = answer({"records": []})
    page = world.victim.cli("search", "--json").json
    assert [p["status"] for p in page["peers"] if p["node_id"] == h.node_id] == ["ok"]
    h.present(world.hostile("Other BCRP").home)
    before = h.hits_on("POST", "/v1/profiles/query")
    page = world.victim.cli("search", "--json").json
    (status,) = [p for p in page["peers"] if p["node_id"] == h.node_id]
    assert status["status"] != "ok" and "pinned" in status["error"]
    assert h.hits_on("POST", "/v1/profiles/query") == before  # refused before the request was sent
    r = world.victim.cli("peer", "refresh", h.node_id, ok=False)  # a fresh descriptor fetch too
    assert "certificate" in r.err


def test_a_partner_speaking_tls_1_2_with_its_pinned_certificate_is_refused(world: World) -> None:
    import ssl
    h = world.partner()
    h.routes[("POST", "/v1/profiles/query")] = answer({"records": []})
    h.present(h.home, max_version=ssl.TLSVersion.TLSv1_2)  # the right certificate, an old protocol
    before = h.hits_on("POST", "/v1/profiles/query")
    page = world.victim.cli("search", "--json").json
    (status,) = [p for p in page["peers"] if p["node_id"] == h.node_id]
    assert status["status"] != "ok" and "TLS 1.3" in status["error"], status
    assert h.hits_on("POST", "/v1/profiles/query") == before  # refused before the request was sent


def test_keepalive_to_a_partner_never_follows_a_redirect(world: World) -> None:
    from discnode import peers
    from discnode.client import PeerClient
    h = world.partner()
    h.routes[("GET", "/.well-known/discnode")] = redirect(world.internal.url + "/.well-known/discnode", 302)
    assert world.victim.home is not None
    peer = peers.get(world.victim.home.db, h.node_id)

    async def ping() -> bool:
        async with PeerClient(world.victim.home.identity) as client:  # type: ignore[union-attr]
            return await client.keepalive(peer)
    assert world.network.loop.run(ping()) is False
    assert h.hits_on("GET", "/.well-known/discnode") >= 1 and world.internal.hits == []


def test_a_partner_redirecting_a_query_is_reported_and_not_followed(world: World) -> None:
    h = world.partner()
    h.routes[("POST", "/v1/profiles/query")] = redirect(world.internal.url + "/query", 307)
    page = world.victim.cli("search", "--json").json
    (status,) = [p for p in page["peers"] if p["node_id"] == h.node_id]
    assert status["status"] != "ok" and "redirect" in status["error"]
    assert world.internal.hits == []


@pytest.mark.parametrize("url, why", [
    ("http://127.0.0.1:{port}", "https"),
    ("https://admin:secret@127.0.0.1:{port}", "HOST:PORT only"),
    ("https://127.0.0.1:{port}/internal/path", "HOST:PORT only"),
    ("https://127.0.0.1:{port}?q=1", "HOST:PORT only"),
    ("https://127.0.0.1:{port}#frag", "HOST:PORT only"),
    ("https://127.0.0.1:99999", "URL"),
])
def test_peer_add_refuses_a_url_that_is_more_than_scheme_host_and_port(world: World, url: str, why: str) -> None:
    h = world.hostile()
    r = world.victim.cli("peer", "add", url.format(port=h.port), "--expect", h.node_id, ok=False)
    assert r.code == 2 and why in r.err and len(r.err.strip().splitlines()) == 1
    assert h.hits == [] and known_peers(world.victim) == []


@pytest.mark.parametrize("url", ["https://127.0.0.1:1:2", "https://127.0.0.1:99999", "https://127.0.0.1:8443/",
                                 "https://127.0.0.1%2f:1", "https://user@127.0.0.1:1"])
def test_an_offer_whose_signed_descriptor_names_more_than_an_origin_is_refused(network: Network, url: str) -> None:
    from tests.hostile import Stranger
    victim = network.node("Victim")
    status, body, _ = Stranger(url=url).offer(network.loop, victim)
    # The descriptor does not verify, so its key cannot sign even this one request.
    assert status == 401 and body["error"]["code"] == "unauthenticated", body
    assert victim.cli("peer", "list", "--json").json == []


def test_address_refuses_a_public_url_with_a_path(cli) -> None:
    r = cli("address", "--public-url", "https://node.example:8443/admin", ok=False)
    assert r.code == 2 and "HOST:PORT only" in r.err
    assert cli("id", "--json").json["url"].startswith("https://127.0.0.1:")


@pytest.mark.parametrize("url, canonical", [
    ("https://127.0.0.1:8443", "https://127.0.0.1:8443"),
    ("https://127.0.0.1:8443/", "https://127.0.0.1:8443"),
    ("https://Node.Example", "https://node.example:443"),
    ("https://[::1]:9", "https://[::1]:9"),
])
def test_peer_url_keeps_scheme_host_and_port(url: str, canonical: str) -> None:
    assert peer_url(url) == canonical


@pytest.mark.parametrize("url", [
    "http://h:1", "ftp://h:1", "https://u@h:1", "https://u:p@h:1", "https://h:1/x", "https://h:1/?", "https://h:1?",
    "https://h:1#", "https://h:1/%2e%2e", "https://h:0", "https://h:65536", "https://h:1\n", "https://h\\x:1",
    "https://-h:1", "https://h_1:1", "https://", "", "https://h:1:2", 5, None,
])
def test_peer_url_refuses_anything_else(url: object) -> None:
    with pytest.raises(InvalidInput):
        peer_url(url)


def test_descriptor_schema_refuses_a_url_with_more_than_an_origin() -> None:
    from discnode import schemas
    for bad in ("https://h:1/x", "https://u@h:1", "https://h:1?x", "https://h:1:2", "https://h%2f:1"):
        assert not _valid_url(schemas, bad), bad
    assert _valid_url(schemas, "https://127.0.0.1:8443") and _valid_url(schemas, "https://[::1]:9")


def _valid_url(schemas: object, url: str) -> bool:
    import json
    example = json.loads((Path(__file__).parent.parent / "protocol/examples/descriptor.json").read_text())
    try:
        schemas.validate("descriptor", {**example, "url": url})  # type: ignore[attr-defined]
        return True
    except InvalidInput:
        return False


# --- item 2: path injection from peers -------------------------------------------------------


def test_checked_and_file_in_refuse_what_would_leave_the_folder(tmp_path: Path) -> None:
    assert checked("sha256_hex", "a" * 64, "hash") == "a" * 64
    for bad in ("a" * 64 + "\n", "A" * 64, "../" + "a" * 61, "/" + "a" * 63, "a" * 63):
        with pytest.raises(InvalidInput):
            checked("sha256_hex", bad, "hash")
    assert file_in(tmp_path, "x.jpg") == tmp_path.resolve() / "x.jpg"
    (tmp_path / "link.jpg").symlink_to("/etc/passwd")
    for bad in ("../x.jpg", "/etc/x.jpg", "a/b.jpg", "..", "", "link.jpg"):
        with pytest.raises(InvalidInput):
            file_in(tmp_path, bad)


def _hostile_profile(world: World, images: list[str]) -> tuple[HostilePeer, str]:
    """A consenting partner whose profile reply names `images`, and which serves bytes for any image."""
    h = world.partner()
    record = h.add_profile()
    h.routes[("GET", f"/v1/profiles/{record['id']}")] = answer({"record": record, "images": images})

    async def image(request):  # type: ignore[no-untyped-def]
        from aiohttp import web
        return web.Response(body=b"\xff\xd8 not what you asked for", content_type="image/jpeg")
    h.routes[("*", "*")] = image
    return h, record["id"]


@pytest.fixture
def outside() -> Iterator[Path]:
    """A short absolute folder outside everything the test owns (so a 64-character 'hash' can name
    a file in it), removed afterwards."""
    import shutil
    import tempfile
    folder = Path(tempfile.mkdtemp(prefix="dn", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_save_images_refuses_hashes_that_are_paths_and_writes_nothing(world: World, tmp_path: Path,
                                                                       outside: Path) -> None:
    target = tmp_path / "deep" / "er" / "saved"
    escape = "../../" + "a" * 58
    absolute = str(outside / ("b" * (63 - len(str(outside)))))
    slashed = "ab/" + "c" * 61
    assert len(escape) == len(absolute) == len(slashed) == 64
    for images in ([escape], [absolute], [slashed], ["d" * 64 + "\n"], ["e" * 64, escape]):
        h, profile_id = _hostile_profile(world, images)
        r = world.victim.cli("profile", "show", f"{h.node_id}:{profile_id}", "--save-images", str(target), ok=False)
        assert r.code == 8 and len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err, r.err
        assert "breaks the protocol" in r.err
        assert not target.exists()
        assert not (tmp_path / "deep" / ("a" * 58 + ".jpg")).exists()
        assert list(outside.iterdir()) == []
        h.stop()
        world.hostiles.remove(h)
        world.victim.cli("peer", "revoke", h.node_id)


def test_save_images_refuses_bytes_that_do_not_match_their_hash(world: World, tmp_path: Path) -> None:
    h, profile_id = _hostile_profile(world, ["f" * 64])
    r = world.victim.cli("profile", "show", f"{h.node_id}:{profile_id}", "--save-images", str(tmp_path / "saved"),
                         ok=False)
    assert "another hash" in r.err and not (tmp_path / "saved").exists()


def test_profile_show_refuses_a_peer_profile_id_that_is_not_one(world: World) -> None:
    h = world.partner()
    r = world.victim.cli("profile", "show", f"{h.node_id}:../../v1/consent", ok=False)
    assert r.code == 2 and "profile ID" in r.err
    assert h.hits_on(path="/v1/consent") == 1  # the offer only; nothing sent for the bad ID


# --- item 4: stranger lockout and audit flooding ----------------------------------------------


def _fill_stranger_caps(network: Network, victim: Node, addresses: list[str]) -> None:
    """Throw-away identities offering from each loopback address until its cap is full."""
    from discnode.peers import MAX_STRANGERS_PER_ADDRESS
    from tests.hostile import Stranger
    for address in addresses:
        for _ in range(MAX_STRANGERS_PER_ADDRESS):
            status, body, _ = Stranger().offer(network.loop, victim, source=address)
            assert status == 200, body


def test_an_expected_partner_gets_through_when_strangers_fill_every_cap(network: Network) -> None:
    from discnode.peers import MAX_STRANGERS_PER_ADDRESS, MAX_UNANSWERED_STRANGERS, STRANGER_RETRY_AFTER
    from tests.hostile import Stranger
    victim, partner = network.node("Victim"), network.node("Partner")
    r = victim.cli("peer", "expect", partner.node_id, "--json").json
    assert r == {"node_id": partner.node_id, "expected": True, "changed": True}
    addresses = [f"127.0.0.{i}" for i in range(1, 1 + MAX_UNANSWERED_STRANGERS // MAX_STRANGERS_PER_ADDRESS)]
    _fill_stranger_caps(network, victim, addresses[:1])
    status, body, headers = Stranger().offer(network.loop, victim, source=addresses[0])
    assert status == 429 and headers["Retry-After"] == str(STRANGER_RETRY_AFTER), body
    _fill_stranger_caps(network, victim, addresses[1:])
    status, body, headers = Stranger().offer(network.loop, victim, source="127.0.0.99")
    assert status == 503 and headers["Retry-After"] == str(STRANGER_RETRY_AFTER), body
    out = partner.cli("peer", "add", victim.url, "--expect", victim.node_id, "--json").json
    assert out["delivered"] is True
    rows = {p["node_id"]: p for p in victim.cli("peer", "list", "--json").json}
    assert rows[partner.node_id]["state"] == "pending" and rows[partner.node_id]["expected"] is True


def test_expected_ids_are_validated_and_listed(cli) -> None:
    r = cli("peer", "expect", "NOT-AN-ID", ok=False)
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1
    from discnode.identity import Identity
    other = Identity.generate().node_id
    cli("peer", "expect", other)
    rows = cli("peer", "list", "--json").json
    assert [(p["node_id"], p["state"], p["expected"]) for p in rows] == [(other, "expected", True)]
    assert other in cli("peer", "list").out
    assert cli("peer", "expect", other, "--remove", "--json").json["changed"] is True
    assert cli("peer", "list", "--json").json == []


def test_a_partner_refused_for_a_full_cap_is_retried_after_retry_after_and_gets_through(network: Network) -> None:
    from discnode.peering import Retry, deliver_pending
    from discnode.peers import STRANGER_RETRY_AFTER
    victim, partner = network.node("Victim"), network.node("Partner")
    _fill_stranger_caps(network, victim, ["127.0.0.1"])
    r = partner.cli("peer", "add", victim.url, "--expect", victim.node_id)
    assert "could not be told yet" in r.out and "too many unanswered offers" in r.out
    assert partner.cli("peer", "list", "--json").json[0]["undelivered"] == 1
    now = [1000.0]
    retry = Retry(first=30, clock=lambda: now[0])
    assert partner.home is not None
    report = network.loop.run(deliver_pending(partner.home, retry=retry))
    assert report.sent == 0 and retry.next_try[victim.node_id] == 1000.0 + STRANGER_RETRY_AFTER
    now[0] += 30  # the usual back-off is over, the peer's Retry-After is not
    assert not retry.due(victim.node_id)
    victim.cli("peer", "expect", partner.node_id)  # its administrator now expects it
    now[0] += STRANGER_RETRY_AFTER
    assert network.loop.run(deliver_pending(partner.home, retry=retry)).sent == 1
    states = {p["node_id"]: p["state"] for p in victim.cli("peer", "list", "--json").json}
    assert states[partner.node_id] == "pending"


@pytest.mark.parametrize("status, says, undelivered", [
    (409, "REFUSED", 0),           # a real conflict: final, and said so
    (403, "REFUSED", 0),
    (503, "could not be told yet", 1),
    (429, "could not be told yet", 1),
])
def test_the_cli_says_what_happened_to_an_offer(world: World, status: int, says: str, undelivered: int) -> None:
    h = world.hostile()
    h.routes[("POST", "/v1/consent")] = answer({"error": {"code": "x", "message": "no"}}, status,
                                               {"Retry-After": "900"})
    r = world.victim.cli("peer", "add", h.url, "--expect", h.node_id)
    assert says in r.out
    if status in (403, 409):
        assert "will be told" not in r.out
    assert world.victim.cli("peer", "list", "--json").json[0]["undelivered"] == undelivered
    if undelivered:
        from discnode.peering import Retry, deliver_pending
        retry = Retry(first=30, clock=lambda: 0.0)
        assert world.victim.home is not None
        world.network.loop.run(deliver_pending(world.victim.home, retry=retry))
        assert retry.next_try[h.node_id] == 900.0


def test_a_stranger_sending_2000_refused_requests_adds_a_bounded_number_of_audit_rows(network: Network) -> None:
    from discnode import audit
    from discnode.home import Home
    from discnode.identity import Identity
    from tests.hostile import flood
    victim = network.node("Victim")
    assert victim.home is not None
    before = len(audit.entries(victim.home.db))
    started = time.time()
    statuses = flood(network.loop, Identity.generate(), victim, 2000)
    minutes = int(time.time() // 60) - int(started // 60) + 1
    assert sum(statuses.values()) == 2000 and set(statuses) <= {403, 429}
    victim.stop()  # writes the counts of the minute not yet over
    home = Home.open(victim.cli.home)
    try:
        added = audit.entries(home.db)[before:]
        assert len(added) <= 2 * minutes, [e["event"] for e in added][:10]
        accounted = sum(1 if e["event"] == "refused" else e["detail"]["count"] for e in added)
        assert accounted == 2000 and {e["event"] for e in added} == {"refused", "refused-repeated"}
        assert audit.verify(home.db).ok
    finally:
        home.close()


def test_refusals_are_counted_per_address_and_minute_with_a_bound_on_addresses() -> None:
    from discnode.refusals import Refusals
    tally = Refusals(max_sources=3)
    firsts = [tally.add(60.0 + i / 1000, f"10.0.0.{i % 50}", 403, "no agreement") for i in range(5000)]
    assert sum(firsts) == 4  # 3 addresses told apart, then "other"
    rows = tally.due(125.0)
    assert len(rows) == 4 and sum(r[2]["count"] for r in rows) == 5000 - 4
    assert tally.due(200.0) == [] and not tally.pending
    assert tally.add(130.0, "10.0.0.1", 403, "x") is True  # a new minute: in full again


def test_a_rejected_stranger_frees_its_slot_and_takes_one_again_when_it_offers_again(network: Network) -> None:
    from discnode.peers import MAX_STRANGERS_PER_ADDRESS
    from discnode.signing import document_hash
    from tests.hostile import Stranger
    victim = network.node("Victim")
    strangers = [Stranger() for _ in range(MAX_STRANGERS_PER_ADDRESS)]
    for s in strangers:
        assert s.offer(network.loop, victim)[0] == 200
    assert Stranger().offer(network.loop, victim)[0] == 429
    first = strangers[0]
    victim.cli("peer", "reject", first.identity.node_id)
    assert victim.home is not None
    (held,) = [json.loads(r[0]) for r in victim.home.db.execute(
        "SELECT doc FROM consent_docs WHERE peer = ? AND type = 'offer'", [first.identity.node_id])]
    newcomer = Stranger()
    assert newcomer.offer(network.loop, victim)[0] == 200          # the reject freed a slot
    status, body, _ = first.offer(network.loop, victim, prev=document_hash(held))
    assert status == 429, body                                     # offering again takes one again
