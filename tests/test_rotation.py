"""Key rotation with pre-rotation (spec 4.6) and replacing a partner that lost both keys (4.7),
across real nodes over HTTPS on loopback."""

from __future__ import annotations

from discnode import peers
from discnode.consent import Action, new_response
from discnode.documents import succession
from discnode.home import Home
from discnode.identity import Identity, b64u
from discnode.signing import sign_document
from discnode.store import now_ts
from tests.nodes import send, signed

QUERY = {"limit": 10}


def _populate(node, n=2):
    for i in range(n):
        node.cli("profile", "add", "--first-name", f"P{i}", "--last-name", f"{node.name}-person", "--gender", "male",
                 "--ethnicity", "IC1", "--build", "slim")


def _identity(node) -> Identity:
    home = Home.open(node.cli.home)
    try:
        return home.identity
    finally:
        home.close()


def _pinned(holder, node_id: str) -> bytes | None:
    home = Home.open(holder.cli.home)
    try:
        return peers.public_key(home.db, node_id)
    finally:
        home.close()


def _source(result, node_id):
    return next(p for p in result["peers"] if p["node_id"] == node_id)


def _restart(node):
    node.stop()
    node.start()


def test_rotation_keeps_the_agreement_and_queries_keep_working(network, tmp_path):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    _populate(a)  # signed by A's first key
    a.cli("audit", "--checkpoint")  # a head signed by the first key, witnessed by B
    a_id, old_key = a.node_id, _identity(a).public_key
    next_key = tmp_path / "A-next-key.txt"
    assert next_key.exists() and not (a.cli.home / next_key.name).exists()

    missing = a.cli("key", "rotate", "--next-key", next_key, "--next-key-out", tmp_path / "safe" / "n2.txt", ok=False)
    assert "no folder" in missing.err and a.cli("key", "show", "--json").json["keys"][-1]["seq"] == 0
    rotated = a.cli("key", "rotate", "--next-key", next_key, "--next-key-out", tmp_path / "next2.txt", "--json").json
    assert rotated["node_id"] == a_id == a.node_id and rotated["seq"] == 1 and rotated["partners_told"] == 1
    _restart(a)  # serve signs with the new key
    new_key = _identity(a).public_key
    assert new_key != old_key and _pinned(b, a_id) == new_key  # B re-pinned from the delivered history
    assert b.cli("peer", "show", a_id, "--json").json["state"] == "active"

    # B's Dataview: A's records signed before the rotation (old key) verify, and one signed after.
    a.cli("profile", "add", "--first-name", "After", "--last-name", "Rotation", "--gender", "female",
          "--ethnicity", "IC9", "--build", "slim")
    seen = b.cli("search", "--json").json
    assert _source(seen, a_id)["status"] == "ok" and _source(seen, a_id)["dropped"] == 0
    names = {r["last_name"] for r in seen["results"] if r["origin"] == a_id}
    assert names == {"A-person", "Rotation"}
    # A's queries, signed by its new key, are answered by B.
    _populate(b, 1)
    mine = a.cli("search", "--json").json
    assert _source(mine, b.node_id)["status"] == "ok" and _source(mine, b.node_id)["count"] == 1
    assert any(e["event"] == "peer-key-rotated" for e in b.cli("audit", "--peer", a_id, "--json").json)
    # A's log still verifies: its own checkpoint and the one B witnessed were signed by the first key.
    verified = a.cli("audit", "--verify", "--json").json
    assert verified["checkpoints"] == 1 and verified["partners"][0]["status"] == "checked", verified


def test_old_key_refused_after_grace_period(network, tmp_path):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    first = _identity(a)
    a.cli("key", "rotate", "--next-key", tmp_path / "A-next-key.txt", "--next-key-out", tmp_path / "n2.txt",
          "--grace", "1d")
    second = _identity(a)
    # Within the first succession's grace period: a `serve` not yet restarted still gets answers.
    assert send(b, "POST", "/v1/profiles/query", *signed(first, b, "POST", "/v1/profiles/query", QUERY))[0] == 200
    a.cli("key", "rotate", "--next-key", tmp_path / "n2.txt", "--next-key-out", tmp_path / "n3.txt",
          "--grace", "0s")
    third = _identity(a)
    assert _pinned(b, a.node_id) == third.public_key
    # The second key's grace period was 0: refused at once. The first one's day has not ended.
    status, body = send(b, "POST", "/v1/profiles/query", *signed(second, b, "POST", "/v1/profiles/query", QUERY))
    assert status == 401, body
    assert send(b, "POST", "/v1/profiles/query", *signed(third, b, "POST", "/v1/profiles/query", QUERY))[0] == 200
    assert send(b, "POST", "/v1/profiles/query", *signed(first, b, "POST", "/v1/profiles/query", QUERY))[0] == 200

    # A document newly signed by the expired key is refused, even sent in a request the current key
    # signs; nothing changes.
    offer_hash = b.home.db.execute("SELECT hash FROM consent_docs WHERE type = 'offer'").fetchone()[0]
    revoke = sign_document(new_response(Action.REVOKE, a.node_id, b.node_id, offer_hash, now_ts()), second)
    status, body = send(b, "POST", "/v1/consent", *signed(third, b, "POST", "/v1/consent", revoke))
    assert status == 401, body
    assert b.cli("peer", "show", a.node_id, "--json").json["state"] == "active"


def _forged_descriptor(a, stolen: Identity, thief: Identity) -> dict:
    """A's descriptor as a thief holding A's current key (not its committed next key) would make
    it: a succession to the thief's own key, signed by the stolen key, countersigned by the thief's."""
    home = Home.open(a.cli.home)
    try:
        genuine = home.descriptor()
    finally:
        home.close()
    events = genuine["key_events"]
    forged = {"type": "key-succession", "v": 1, "node_id": a.node_id, "seq": 1,
              "prev": succession.document_hash(events[-1]), "key": thief.public_key_b64,
              "next": succession.key_digest(Identity.generate().public_key), "grace_until": now_ts(),
              "issued_at": now_ts()}
    body = succession._body(forged)
    forged["sig"], forged["countersig"] = b64u(stolen.sign(body)), b64u(thief.sign(body))
    doc = {k: v for k, v in genuine.items() if k != "sig"}
    doc.update(public_key=thief.public_key_b64, key_events=[*events, forged], issued_at=now_ts())
    return sign_document(doc, thief)


def test_stolen_key_cannot_rotate_without_committed_next_key(network, tmp_path):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    _populate(a, 1)
    stolen = _identity(a)
    thief = Identity(Identity.generate().signing_key, inception_id=a.node_id)
    forged = _forged_descriptor(a, stolen, thief)

    # Announced with the stolen key's request signature (which B still accepts: it is A's key) and
    # with the thief's: both refused, the succession does not reveal the committed key.
    for signer in (stolen, thief):
        status, body = send(b, "POST", "/v1/descriptor", *signed(signer, b, "POST", "/v1/descriptor", forged))
        assert status == 401, body
    # The thief's key signs nothing B accepts.
    assert send(b, "POST", "/v1/profiles/query", *signed(thief, b, "POST", "/v1/profiles/query", QUERY))[0] == 401
    # Nor can the thief rotate A's own home with a key of their own.
    thief_file = tmp_path / "thief.txt"
    thief_file.write_text(b64u(bytes(thief.signing_key)) + "\n")
    refused = a.cli("key", "rotate", "--next-key", thief_file, ok=False)
    assert "not the next key this node committed to" in refused.err and "peer replace" in refused.err
    assert len(refused.err.strip().splitlines()) == 1

    # Nothing changed: B's pin, the agreement, A's records in B's Dataview; and the genuine
    # committed key still rotates.
    assert _pinned(b, a.node_id) == stolen.public_key
    assert b.cli("peer", "show", a.node_id, "--json").json["state"] == "active"
    assert _source(b.cli("search", "--json").json, a.node_id)["count"] == 1
    assert a.cli("key", "show", "--json").json["keys"][-1]["seq"] == 0
    a.cli("key", "rotate", "--next-key", tmp_path / "A-next-key.txt", "--next-key-out", tmp_path / "n2.txt")
    assert _pinned(b, a.node_id) == _identity(a).public_key != stolen.public_key


def test_a_replayed_or_rolled_back_key_history_changes_nothing(network, tmp_path):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    home = Home.open(a.cli.home)
    try:
        before = home.descriptor()  # the inception only, signed by the first key
    finally:
        home.close()
    first = _identity(a)
    a.cli("key", "rotate", "--next-key", tmp_path / "A-next-key.txt", "--next-key-out", tmp_path / "n2.txt",
          "--grace", "1d")
    current = _identity(a).public_key
    # The old descriptor (no succession) again, with the old key, still within its grace period.
    status, body = send(b, "POST", "/v1/descriptor", *signed(first, b, "POST", "/v1/descriptor", before))
    assert status == 401 and "rollback" in body["error"]["message"], body
    assert _pinned(b, a.node_id) == current


def test_peer_replace_keeps_the_agreement_history(network, tmp_path):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    old_key = _identity(a)
    # A loses its current and its next key: a new node, whose ID B's administrator confirms by phone.
    a2 = network.node("A2")
    replaced = b.cli("peer", "replace", a.node_id, a2.url, "--expect", a2.node_id, "--json").json
    assert replaced["replaces"] == a.node_id and replaced["state"] == "offered" and replaced["delivered"]
    a2.cli("peer", "accept", b.node_id)

    shown = b.cli("peer", "show", a2.node_id, "--json").json
    assert shown["state"] == "active"
    [old] = shown["replaces"]
    assert old["node_id"] == a.node_id and old["state"] == "revoked"
    assert [d["type"] for d in old["documents"]] == ["offer", "accept", "revoke"]
    text = b.cli("peer", "show", a2.node_id).out
    assert f"replaces {a.node_id}" in text and "that agreement is revoked" in text
    entries = b.cli("audit", "--peer", a2.node_id, "--json").json
    assert "peer-replaced" in {e["event"] for e in entries}
    # The old ID's log stays with the new one: its agreement, its requests served.
    assert {"consent-offer-received", "consent-accept-sent"} <= {e["event"] for e in entries if e["peer"] == a.node_id}
    # Whoever holds the old key gets nothing; the new node's queries are answered.
    _populate(b, 1)
    assert send(b, "POST", "/v1/profiles/query", *signed(old_key, b, "POST", "/v1/profiles/query", QUERY))[0] == 403
    assert _source(a2.cli("search", "--json").json, b.node_id)["count"] == 1
    # A wrong new ID is refused, and changes nothing.
    c = network.node("C")
    refused = b.cli("peer", "replace", a2.node_id, c.url, "--expect", a.node_id, ok=False)
    assert "does not have the ID" in refused.err
    assert b.cli("peer", "show", a2.node_id, "--json").json["state"] == "active"


def test_a_node_made_before_key_events_commits_then_rotates_keeping_its_id(network, tmp_path):
    a, b = network.node("A", start=False), network.node("B")
    home = Home.open(a.cli.home)  # as a node made before key events: no history, ID = its key's fingerprint
    home.db.execute("DELETE FROM key_events")
    home.close()
    (tmp_path / "A-next-key.txt").unlink()
    a.start()
    network.agree(a, b)
    a_id = a.node_id
    a_home = Home.open(a.cli.home)
    a_home.db.execute("UPDATE peers SET added = '2000-01-01T00:00:00Z'")  # B pinned before A commits
    a_home.close()
    refused = a.cli("key", "rotate", "--next-key", tmp_path / "nothing.txt", ok=False)
    assert "discnode key commit" in refused.err
    committed = a.cli("key", "commit", "--json").json
    assert committed["node_id"] == a_id and committed["partners_told"] == 1
    a.cli("key", "rotate", "--next-key", committed["next_key_file"], "--next-key-out", tmp_path / "n2.txt")
    assert a.node_id == a_id and _pinned(b, a_id) == _identity(a).public_key
    assert b.cli("peer", "show", a_id, "--json").json["state"] == "active"


def test_key_reset_gives_a_new_id_that_partners_adopt_with_peer_replace(network, tmp_path):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    _populate(a, 2)
    old_id, old_key = a.node_id, _identity(a)
    assert "--yes" in a.cli("key", "reset", ok=False).err and a.node_id == old_id
    a.stop()
    reset = a.cli("key", "reset", "--yes", "--next-key-out", tmp_path / "new-next.txt", "--json").json
    a.start()
    new_id = reset["node_id"]
    assert reset["old_node_id"] == old_id != new_id == a.node_id and reset["profiles"] == 2
    # B still has the old ID pinned; after the phone call it replaces it with the new one, same URL.
    b.cli("peer", "replace", old_id, a.url, "--expect", new_id)
    a.cli("peer", "accept", b.node_id)
    seen = b.cli("search", "--json").json
    assert _source(seen, new_id)["status"] == "ok" and _source(seen, new_id)["count"] == 2
    assert {r["origin"] for r in seen["results"]} == {new_id}
    assert b.cli("peer", "show", new_id, "--json").json["replaces"][0]["node_id"] == old_id
    # The old key, wherever it is, gets nothing from B.
    assert send(b, "POST", "/v1/profiles/query", *signed(old_key, b, "POST", "/v1/profiles/query", QUERY))[0] == 403
    # The node's own log runs on unbroken across the reset.
    assert a.cli("audit", "--verify", "--json").json["ok"] is True


def test_a_running_node_takes_up_its_rotated_key_without_a_restart(network, tmp_path):
    import asyncio

    from discnode import server

    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    side = Home.open(a.cli.home)  # as `serve`'s delivery thread holds it, from before the rotation
    try:
        first = side.identity.public_key
        a.cli("key", "rotate", "--next-key", tmp_path / "A-next-key.txt", "--next-key-out", tmp_path / "n2.txt")
        state = a.running.runner.app[server.STATE]
        assert len(state.descriptor["key_events"]) == 1 and side.identity.public_key == first
        assert server.follow_rotation(side, state, a.loop.loop) == "rotated"
        a.loop.run(asyncio.sleep(0.05))  # the serving loop applies it
        current = _identity(a).public_key
        assert side.identity.public_key == current != first
        assert server.follow_rotation(side, state, a.loop.loop) == "same"
    finally:
        side.close()
    assert len(state.descriptor["key_events"]) == 2 and state.descriptor["public_key"] == b64u(current)
    assert state.home.identity.public_key == current


def test_init_writes_the_next_key_outside_the_home_and_says_where(tmp_path, capsys):
    from tests.conftest import Cli
    node = Cli(tmp_path / "north", capsys)
    out = node("init", "--name", "North BCRP").out
    next_key = tmp_path / "north-next-key.txt"
    assert str(next_key) in out.replace("\n", "") and "safe" in out
    assert next_key.stat().st_mode & 0o777 == 0o600 and not any("next" in p.name for p in node.home.iterdir())
    inside = Cli(tmp_path / "south", capsys)
    refused = inside("init", "--name", "South BCRP", "--next-key-out", tmp_path / "south" / "next.txt", ok=False)
    assert "must not be kept in the node home" in refused.err and not (tmp_path / "south" / "config.toml").exists()
    again = Cli(tmp_path / "east", capsys)
    taken = again("init", "--name", "East BCRP", "--next-key-out", next_key, ok=False)
    assert "refusing to overwrite" in taken.err and not (tmp_path / "east").exists()


def test_bad_key_command_input_is_refused_in_one_line_and_changes_nothing(cli, tmp_path):
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("not a key\n")
    next_key = cli.home.parent / "node-next-key.txt"
    for args, words in (
        (("key", "rotate", "--next-key", tmp_path / "missing.txt"), "cannot read"),
        (("key", "rotate", "--next-key", garbage), "not a discnode key file"),
        (("key", "rotate", "--next-key", next_key, "--grace", "forever"), "--grace"),
        (("key", "rotate", "--next-key", next_key, "--grace", "31d"), "at most 30 days"),
        (("key", "rotate", "--next-key", next_key, "--next-key-out", cli.home / "n.txt"), "node home"),
        (("key", "commit",), "already has a committed next key"),
        (("peer", "replace", "AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA", "https://127.0.0.1:1", "--expect",
          "AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA"), "node ID"),
    ):
        r = cli(*args, ok=False)
        assert words in r.err and len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err, (args, r.err)
    shown = cli("key", "show", "--json").json
    assert [k["seq"] for k in shown["keys"]] == [0] and next_key.exists()


def test_partners_away_during_commit_and_rotation_follow_when_back(network, tmp_path):
    import asyncio

    from discnode.peering import deliver_pending

    a, b, c = network.node("A", start=False), network.node("B"), network.node("C")
    home = Home.open(a.cli.home)  # made before key events: B and C pin its only key
    home.db.execute("DELETE FROM key_events")
    home.close()
    (tmp_path / "A-next-key.txt").unlink()
    a.start()
    network.agree(a, b)
    network.agree(a, c)
    a_home = Home.open(a.cli.home)
    a_home.db.execute("UPDATE peers SET added = '2000-01-01T00:00:00Z'")  # both pinned before A commits
    a_home.close()
    b.stop()
    c.stop()
    committed = a.cli("key", "commit", "--json").json
    rotated = a.cli("key", "rotate", "--next-key", committed["next_key_file"], "--next-key-out", tmp_path / "n2.txt",
                    "--json").json
    assert committed["partners_told"] == rotated["partners_told"] == 0
    b.start()
    c.start()
    current = _identity(a).public_key
    # B is told by A's outbox (as `serve` retries it); C fetches A's descriptor itself.
    home = Home.open(a.cli.home)
    try:
        assert asyncio.run(deliver_pending(home, only=b.node_id)).sent == 1
    finally:
        home.close()
    assert _pinned(b, a.node_id) == current and _pinned(c, a.node_id) != current
    _restart(a)  # serves the new descriptor (a running `serve` takes it up by itself: see above)
    c.cli("peer", "refresh", a.node_id)
    assert _pinned(c, a.node_id) == current
    for partner in (b, c):
        assert partner.cli("peer", "show", a.node_id, "--json").json["state"] == "active"
