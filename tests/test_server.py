"""The peer API's refusals and successes, between real nodes over real HTTPS on loopback."""

import json
import time

import pytest

from discnode import audit
from discnode.home import Home
from discnode.identity import Identity
from discnode.store import count_profiles
from tests.nodes import send, signed

QUERY = "/v1/profiles/query"


def add_profiles(node, n, **extra):
    ids = []
    for i in range(n):
        ids.append(node.cli("profile", "add", "--first-name", f"{node.name}{i}", "--last-name", f"Of{node.name}",
                            "--gender", "male", "--ethnicity", "IC1", "--build", "slim", *extra.get("args", []),
                            "--json").json["id"])
    return ids


def query(src, dst, payload=None, **kw):
    body, headers = signed(src.home.identity, dst, "POST", QUERY, payload or {}, **kw)
    return send(dst, "POST", QUERY, body, headers)


def state_of(node):
    """Everything a refused request must leave as it was."""
    db = node.home.db
    return (count_profiles(db), db.execute("select count(*) from peers").fetchone()[0],
            db.execute("select count(*) from consent_docs").fetchone()[0],
            [e["event"] for e in audit.entries(db) if e["event"] != "refused"])


@pytest.fixture
def abc(network):
    a, b, c = network.node("A"), network.node("B"), network.node("C")
    network.agree(a, b)
    network.agree(b, c)
    for node in (a, b, c):
        add_profiles(node, 3)
    return a, b, c


def test_white_paper_network_is_not_transitive(abc):
    a, b, c = abc
    status, body = query(a, b)
    assert status == 200
    assert {r["origin"] for r in body["records"]} == {b.node_id} and len(body["records"]) == 3
    status, body = query(a, c)
    assert status == 403 and body["error"]["code"] == "refused"
    refused = [e for e in audit.entries(c.home.db) if e["event"] == "refused"]
    assert refused and a.node_id in refused[-1]["detail"]["claimed"]
    assert query(c, b)[0] == 200 and query(b, a)[0] == 200 and query(b, c)[0] == 200
    assert query(c, a)[0] == 403


def test_node_never_serves_records_it_did_not_originate(abc):
    a, b, c = abc
    # Even if C's signed record sat in B's database, B would not pass it on to A.
    from discnode import store
    c_record = store.search(c.home.db, __import__("discnode.query").query.Query(), __import__("datetime").date.today())[0]
    store.put_profiles(b.home.db, [c_record])
    status, body = query(a, b, {"limit": 200})
    assert status == 200 and c_record["id"] not in {r["id"] for r in body["records"]}
    assert {r["origin"] for r in body["records"]} == {b.node_id}


def test_local_only_and_overdue_profiles_are_never_served(network):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    add_profiles(b, 1)
    add_profiles(b, 1, args=["--local-only"])
    pid = add_profiles(b, 1)[0]
    b.home.db.execute("update profiles set review_by = '2020-01-01' where id = ?", [pid])
    status, body = query(a, b)
    assert status == 200 and len(body["records"]) == 1 and body["records"][0]["local_only"] is False
    local_id = b.cli("profile", "list", "--json").json
    for r in local_id:
        body, headers = signed(a.home.identity, b, "GET", f"/v1/profiles/{r['id']}")
        expected = 200 if (not r["local_only"] and r["id"] != pid) else 404
        assert send(b, "GET", f"/v1/profiles/{r['id']}", body, headers)[0] == expected


def test_served_records_carry_valid_origin_signatures(abc):
    from discnode.signing import verify_document
    a, b, _ = abc
    _, body = query(a, b)
    for record in body["records"]:
        verify_document(record, b.home.identity.public_key)


@pytest.mark.parametrize("stage", ["offered", "rejected", "revoked-by-offerer", "revoked-by-accepter"])
def test_no_data_without_a_current_agreement(network, stage):
    a, b = network.node("A"), network.node("B")
    add_profiles(a, 1)
    add_profiles(b, 1)
    a.cli("peer", "add", b.url, "--expect", b.node_id)
    if stage == "rejected":
        b.cli("peer", "reject", a.node_id)
    elif stage.startswith("revoked"):
        b.cli("peer", "accept", a.node_id)
        assert query(a, b)[0] == 200 and query(b, a)[0] == 200
        (a if stage == "revoked-by-offerer" else b).cli("peer", "revoke", (b if stage == "revoked-by-offerer" else a).node_id)
    for src, dst in ((a, b), (b, a)):
        status, body = query(src, dst)
        assert status == 403, (src.name, dst.name, body)
        assert audit.entries(dst.home.db)[-1]["event"] == "refused"


def test_revoke_in_cli_is_seen_by_the_running_server_at_once(network):
    """The server caches agreements; the cache must not outlive a revoke made by another process."""
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    assert query(a, b)[0] == 200
    b.stop()  # B's revoke cannot even be delivered: A's own server must still refuse at once
    a.cli("peer", "revoke", b.node_id)
    b.start()
    assert query(b, a)[0] == 403


@pytest.mark.parametrize("restart", [False, True], ids=["same-run", "after-a-restart"])
def test_replayed_request_is_refused(abc, restart):
    a, b, _ = abc
    body, headers = signed(a.home.identity, b, "POST", QUERY, {})
    assert send(b, "POST", QUERY, body, headers)[0] == 200
    if restart:  # accepted nonces are saved: a restart must not reopen the window
        b.stop()
        b.start()
    before = state_of(b)
    status, reply = send(b, "POST", QUERY, body, headers)
    assert status == 401 and "replayed" in reply["error"]["message"]
    assert state_of(b) == before


def test_tampered_body_is_refused(abc):
    a, b, _ = abc
    body, headers = signed(a.home.identity, b, "POST", QUERY, {"limit": 1})
    before = state_of(b)
    status, reply = send(b, "POST", QUERY, body.replace(b"1", b"9"), headers)
    assert status == 401 and "Content-Digest" in reply["error"]["message"]
    assert state_of(b) == before


def test_unknown_key_is_refused(abc):
    _, b, _ = abc
    stranger = Identity.generate()
    before = state_of(b)
    body, headers = signed(stranger, b, "POST", QUERY, {})
    assert send(b, "POST", QUERY, body, headers)[0] == 403
    assert state_of(b) == before


def test_forged_signature_claiming_a_peers_key_is_refused(abc):
    a, b, _ = abc
    forger = Identity.generate()
    body, headers = signed(forger, b, "POST", QUERY, {})
    headers["Signature-Input"] = headers["Signature-Input"].replace(forger.node_id, a.node_id)
    before = state_of(b)
    assert send(b, "POST", QUERY, body, headers)[0] == 401
    assert state_of(b) == before


def test_expired_request_is_refused(abc):
    a, b, _ = abc
    before = state_of(b)
    body, headers = signed(a.home.identity, b, "POST", QUERY, {}, now=int(time.time()) - 600)
    status, reply = send(b, "POST", QUERY, body, headers)
    assert status == 401 and "expire" in reply["error"]["message"]
    assert state_of(b) == before


def test_request_for_another_node_is_refused(abc):
    a, b, c = abc
    before = state_of(b)
    body, headers = signed(a.home.identity, b, "POST", QUERY, {}, destination=c.node_id)
    status, reply = send(b, "POST", QUERY, body, headers)
    assert status == 401 and "addressed to" in reply["error"]["message"]
    assert state_of(b) == before


@pytest.mark.parametrize("payload, words", [
    (b"{not json", "not valid JSON"),
    (json.dumps({"ethnicity": ["IC7"]}).encode(), "IC7"),
    (json.dumps({"limit": 100000}).encode(), "limit"),
    (json.dumps({"sort": "name", "after": [1, "x", "y"]}).encode(), "after"),
    (json.dumps([1, 2]).encode(), "object"),
])
def test_bad_queries_get_4xx_json_never_5xx(abc, payload, words):
    a, b, _ = abc
    from discnode.signing import sign_request
    headers = sign_request(a.home.identity, "POST", b.url + QUERY, payload, b.node_id)
    status, reply = send(b, "POST", QUERY, payload, headers)
    assert status == 400, reply
    assert words in reply["error"]["message"] or words in json.dumps(reply)


def test_oversized_body_is_413(abc):
    a, b, _ = abc
    payload = b'{"text": "' + b"x" * 300_000 + b'"}'
    from discnode.signing import sign_request
    headers = sign_request(a.home.identity, "POST", b.url + QUERY, payload, b.node_id)
    status, reply = send(b, "POST", QUERY, payload, headers)
    assert status == 413 and reply["error"]["code"] in ("too_large", "http")


def test_unknown_path_is_json_404(abc):
    a, b, _ = abc
    body, headers = signed(a.home.identity, b, "GET", "/v1/nothing")
    status, reply = send(b, "GET", "/v1/nothing", body, headers)
    assert status == 404 and "error" in reply


def test_rate_limit_per_peer(network):
    from discnode.server import Limits
    a = network.node("A")
    # One token per 4 s: the six queries (under 12 s even on a loaded machine) cannot earn back three.
    b = network.node("B", limits=Limits(rate=0.25, burst=3))
    network.agree(a, b)
    statuses = [query(a, b)[0] for _ in range(6)]
    assert statuses[0] == 200 and statuses[-1] == 429 and set(statuses) == {200, 429}
    time.sleep(4.2)  # one token back at 1 request per 4 s
    assert query(a, b)[0] == 200


def test_junk_floods_are_rate_limited_by_address_before_auditing(network):
    from discnode.server import Limits
    b = network.node("B", limits=Limits(rate=0.001, burst=2, address_factor=3))  # an address: burst 6
    stranger = Identity.generate()
    statuses = []
    for _ in range(12):
        body, headers = signed(stranger, b, "POST", QUERY, {})
        statuses.append(send(b, "POST", QUERY, body, headers)[0])
    assert statuses[:6] == [403] * 6 and set(statuses[6:]) == {429}
    b.stop()  # writes the counts of the minute not yet over
    entries = audit.entries(Home.open(b.cli.home).db, limit=100)
    refused = [e for e in entries if e["event"] == "refused"]
    counted = [e for e in entries if e["event"] == "refused-repeated"]
    # Every refusal is accounted for, in a row per address and minute, not a row each.
    assert len(refused) + sum(e["detail"]["count"] for e in counted) == 12
    assert len(refused) + len(counted) <= 4


def test_slow_client_is_disconnected(network):
    import socket
    import ssl
    from discnode.server import Limits
    b = network.node("B", limits=Limits(header_timeout=0.5))
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    port = int(b.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        tls.sendall(b"GET /.well-known/discnode HTTP/1.1\r\nHost: x\r\n")  # never finishes the head
        started = time.monotonic()
        assert tls.recv(100) == b""  # closed by the server
        assert time.monotonic() - started < 3


def test_images_served_thumb_and_full_only_with_agreement(network, tmp_path):
    from tests.conftest import jpeg_with_gps
    a, b, c = network.node("A"), network.node("B"), network.node("C")
    network.agree(a, b)
    r = b.cli("profile", "add", "--first-name", "X", "--last-name", "Y", "--image",
              jpeg_with_gps(tmp_path / "x.jpg", (400, 500)), "--json").json
    sha = r["image"]
    for size in ("thumb", "full"):
        path = f"/v1/images/{sha}?size={size}"
        body, headers = signed(a.home.identity, b, "GET", path)
        status, data = send(b, "GET", path, body, headers)
        assert status == 200 and data[:2] == b"\xff\xd8"
    body, headers = signed(c.home.identity, b, "GET", f"/v1/images/{sha}")
    assert send(b, "GET", f"/v1/images/{sha}", body, headers)[0] == 403


def test_audit_verify_passes_then_fails_after_any_change(abc, tmp_path):
    a, b, c = abc
    query(a, b)
    query(a, c)
    b.cli("audit", "--verify")
    assert "intact" in b.cli("audit", "--verify").out
    rows = b.cli("audit", "--json", "--limit", "500").json
    assert {"consent-offer-sent", "consent-accept-sent", "served"} <= {r["event"] for r in rows}
    db = b.home.db
    db.execute("DROP TRIGGER audit_no_update")  # what an attacker with file access could do
    for column, value in (("detail", '{"what":"nothing"}'), ("ts", "2020-01-01T00:00:00Z"),
                          ("event", "served!"), ("peer", "")):
        original = db.execute(f"select {column} from audit where seq = 2").fetchone()[0]
        db.execute(f"update audit set {column} = ? where seq = 2", [value])
        r = b.cli("audit", "--verify", ok=False)
        assert "NOT intact" in r.err and "entry 2" in r.err
        db.execute(f"update audit set {column} = ? where seq = 2", [original])
    b.cli("audit", "--verify")


def test_audit_log_refuses_updates(abc):
    import sqlite3
    _, b, _ = abc
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        b.home.db.execute("delete from audit")


def test_concurrent_requests_are_each_audited_and_the_chain_holds(abc):
    """Group commit: many requests share one audit transaction, each still has its own entry."""
    import asyncio
    from discnode.client import PeerClient
    from discnode.dataview import active_peers
    a, b, _ = abc
    before = sum(1 for e in audit.entries(b.home.db, limit=10_000) if e["event"] == "served")

    async def burst():
        async with PeerClient(a.home.identity) as client:
            peer = active_peers(a.home)[0]
            replies = await asyncio.gather(*(client.request(peer, "POST", QUERY, {"limit": 1}) for _ in range(40)))
            return [r.status for r in replies]
    assert asyncio.run(burst()) == [200] * 40
    served = sum(1 for e in audit.entries(b.home.db, limit=10_000) if e["event"] == "served")
    assert served - before == 40
    assert audit.verify(b.home.db).ok


@pytest.mark.parametrize("how", ["another-nodes", "forged", "not-a-descriptor"])
def test_address_announcement_is_refused_unless_it_is_the_senders_own(abc, how):
    a, b, c = abc
    before = b.cli("peer", "list", "--json").json
    if how == "another-nodes":
        payload = c.home.descriptor()  # genuine, but not A's
    elif how == "forged":
        payload = {**a.home.descriptor(), "url": "https://127.0.0.1:1"}  # changed after signing
    else:
        payload = {"node_id": a.node_id}
    body, headers = signed(a.home.identity, b, "POST", "/v1/descriptor", payload)
    status, reply = send(b, "POST", "/v1/descriptor", body, headers)
    assert 400 <= status < 500 and "error" in reply
    assert b.cli("peer", "list", "--json").json == before


def announce_descriptor(a, b, **changes):
    from discnode.signing import sign_document
    descriptor = sign_document({**a.home.descriptor(), **changes}, a.home.identity)
    body, headers = signed(a.home.identity, b, "POST", "/v1/descriptor", descriptor)
    return send(b, "POST", "/v1/descriptor", body, headers)


def url_held_by(b, a):
    return next(p for p in b.cli("peer", "list", "--json").json if p["node_id"] == a.node_id)["url"]


def test_address_announcement_from_the_peer_itself_is_adopted(abc):
    a, b, _ = abc
    status, reply = announce_descriptor(a, b, url="https://127.0.0.1:9", issued_at="2099-01-01T00:00:00Z")
    assert status == 200 and reply["url"] == "https://127.0.0.1:9"
    assert url_held_by(b, a) == "https://127.0.0.1:9"


def test_address_change_within_the_same_second_is_adopted(abc):
    a, b, _ = abc
    announce_descriptor(a, b, url="https://127.0.0.1:9", issued_at="2099-01-01T00:00:00Z")
    status, reply = announce_descriptor(a, b, url="https://127.0.0.1:10", issued_at="2099-01-01T00:00:00Z")
    assert status == 200 and url_held_by(b, a) == "https://127.0.0.1:10"


def test_older_descriptor_is_ignored(abc):
    a, b, _ = abc
    held = url_held_by(b, a)
    status, _ = announce_descriptor(a, b, url="https://127.0.0.1:9", issued_at="2001-01-01T00:00:00Z")
    assert status == 200 and url_held_by(b, a) == held
