"""The audit log proves its own end (spec sections 9.3-9.5): signed checkpoints, and partners that
witness them. Each attack is what someone with write access to the node's files could do; each is
caught by `audit --verify` thanks to a head signed before it. Real nodes over real HTTPS."""

import datetime as dt
import json

import pytest

from discnode import audit, witness
from discnode.audithead import GENESIS, Outcome, compare, new_head, retained
from discnode.signing import canonical
from tests.nodes import send, signed
from tests.test_server import add_profiles, query

HEAD = "/v1/audit/head"


def tamper(node):
    """What an intruder with the node's files does first: lift the append-only triggers."""
    db = node.home.db
    db.execute("DROP TRIGGER IF EXISTS audit_no_update")
    db.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    return db


def forget_checkpoints(node):
    """...and remove the local checkpoints, so that only a witness can tell."""
    node.home.db.execute("DELETE FROM audit_heads WHERE node_id = ?", [node.node_id])


def length(node):
    return audit.head(node.home.db)[0]


def recompute_from(db, first):
    """Rewrite every hash from entry `first` on so that the chain verifies again."""
    prev = db.execute("SELECT hash FROM audit WHERE seq = ?", [first - 1]).fetchone()
    prev = prev[0] if prev else GENESIS
    for seq, ts, event, peer, detail, actor in db.execute(
            "SELECT seq, ts, event, peer, detail, actor FROM audit WHERE seq >= ? ORDER BY seq", [first]).fetchall():
        digest = audit._entry_hash(prev, seq, ts, event, peer, detail, actor)
        db.execute("UPDATE audit SET prev = ?, hash = ? WHERE seq = ?", [prev, digest, seq])
        prev = digest


@pytest.fixture
def ab(network):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    add_profiles(b, 2)
    return a, b


def witnessed_by(a, b):
    """B signs a checkpoint and gives it to A, its partner; returns the head."""
    out = b.cli("audit", "--checkpoint", "--json").json
    assert out["taken_by"] == [a.node_id]
    return out["checkpoint"]


def verify_fails(node):
    r = node.cli("audit", "--verify", ok=False)
    assert "NOT intact" in r.err
    report = node.cli("audit", "--verify", "--json", ok=False).json
    assert report["ok"] is False
    return r, report


# --- the three attacks, each caught by a witness -----------------------------------------------


def test_truncating_the_last_entries_is_caught_by_a_partners_witness(ab):
    a, b = ab
    for _ in range(3):
        assert query(a, b)[0] == 200
    head = witnessed_by(a, b)
    n = head["entries"]
    db = tamper(b)
    db.execute("DELETE FROM audit WHERE seq > ?", [n - 3])
    forget_checkpoints(b)
    assert audit.verify(db).ok  # the chain alone cannot tell
    r, report = verify_fails(b)
    assert f"entries {n - 2}..{n} missing: the log ends at {n - 3} but partner {a.node_id} witnessed {n}" in r.err
    (finding,) = report["findings"]
    assert finding["kind"] == "truncated" and finding["entry"] == n - 2 and a.node_id in finding["source"]


def test_deleting_everything_since_a_partners_first_access_is_caught(ab):
    a, b = ab
    for _ in range(2):
        assert query(a, b)[0] == 200
    witnessed_by(a, b)
    db = tamper(b)
    first = db.execute("SELECT min(seq) FROM audit WHERE peer = ? AND event = 'served'", [a.node_id]).fetchone()[0]
    db.execute("DELETE FROM audit WHERE seq >= ?", [first])
    forget_checkpoints(b)
    assert audit.verify(db).ok and not [e for e in audit.entries(db) if e["event"] == "served"]
    r, report = verify_fails(b)
    assert f"entries {first}.." in r.err and f"the log ends at {first - 1}" in r.err
    assert report["findings"][0]["kind"] == "truncated"


def test_rewriting_an_entry_and_recomputing_every_later_hash_is_caught(ab):
    a, b = ab
    assert query(a, b)[0] == 200
    head = witnessed_by(a, b)
    db = tamper(b)
    served = db.execute("SELECT seq FROM audit WHERE event = 'served' ORDER BY seq LIMIT 1").fetchone()[0]
    db.execute("UPDATE audit SET detail = ? WHERE seq = ?", ['{"what":"nothing"}', served])
    recompute_from(db, served)
    forget_checkpoints(b)
    assert audit.verify(db).ok and length(b) == head["entries"]
    r, report = verify_fails(b)
    assert f"hash at entry {head['entries']} differs" in r.err
    assert report["findings"][0]["kind"] == "rewritten" and report["findings"][0]["entry"] == head["entries"]


def test_a_rewrite_is_caught_even_after_the_log_grows_and_a_newer_head_is_witnessed(ab):
    """The intruder rewrites, lets the log grow, and signs a new head with the node's own key:
    the witness took it as the latest, but kept the earlier one that proves the rewrite."""
    a, b = ab
    assert query(a, b)[0] == 200
    first = witnessed_by(a, b)
    db = tamper(b)
    db.execute("UPDATE audit SET detail = ? WHERE seq = 1", ['{"state":"none"}'])
    recompute_from(db, 1)
    forget_checkpoints(b)
    for _ in range(3):
        assert query(a, b)[0] == 200
    second = witnessed_by(a, b)
    assert second["entries"] > first["entries"]
    _, report = verify_fails(b)
    assert [f["entry"] for f in report["findings"] if f["kind"] == "rewritten"] == [first["entries"]]


# --- local checkpoints, and what verify says offline -------------------------------------------


def test_local_checkpoint_catches_truncation_and_rewriting_without_any_partner(cli):
    for name in ("Ann", "Bo", "Cy"):
        cli("profile", "add", "--first-name", name, "--last-name", "Example")
    head = cli("audit", "--checkpoint", "--json").json["checkpoint"]
    assert head["entries"] == 3 and cli("audit", "--verify", "--json").json["ok"] is True
    from discnode.home import Home
    home = Home.open(cli.home)
    db = home.db
    db.execute("DROP TRIGGER audit_no_delete")
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("UPDATE audit SET detail = ? WHERE seq = 2", ['{"id":"aaaaaaaaaaaa","images":0}'])
    recompute_from(db, 2)
    report = cli("audit", "--verify", "--json", ok=False).json
    assert report["chain"]["ok"] is True
    assert [(f["kind"], f["entry"], f["source"]) for f in report["findings"]] == [
        ("rewritten", 3, "this node's checkpoint")]
    db.execute("DELETE FROM audit WHERE seq = 3")
    r = cli("audit", "--verify", ok=False)
    assert "entries 3..3 missing: the log ends at 2 but this node's checkpoint witnessed 3" in r.err
    home.close()


def test_a_checkpoint_altered_in_the_database_is_reported(cli):
    cli("profile", "add", "--first-name", "Ann", "--last-name", "Example")
    cli("audit", "--checkpoint")
    from discnode.home import Home
    home = Home.open(cli.home)
    doc = json.loads(home.db.execute("SELECT doc FROM audit_heads").fetchone()[0])
    doc["entries"] = 0
    home.db.execute("UPDATE audit_heads SET doc = ?", [json.dumps(doc)])
    report = cli("audit", "--verify", "--json", ok=False).json
    assert report["findings"][0]["kind"] == "forged"
    home.close()


def test_intact_log_verifies_against_every_witness(ab):
    a, b = ab
    assert query(a, b)[0] == 200
    head = witnessed_by(a, b)
    assert query(a, b)[0] == 200  # the log moves on past the witnessed head: still intact
    r = b.cli("audit", "--verify")
    assert "Audit log intact" in r.out and "1 of 1 partner(s)" in r.out
    report = b.cli("audit", "--verify", "--json").json
    assert report["ok"] and report["partners"][0]["status"] == "checked"
    assert report["partners"][0]["witnessed"] == head["entries"] and not report["unchecked"]


def test_offline_verify_says_what_it_could_not_check(ab):
    a, b = ab
    witnessed_by(a, b)
    a.stop()
    r = b.cli("audit", "--verify")
    assert "Not checked" in r.out and a.node_id in r.out
    report = b.cli("audit", "--verify", "--json").json
    assert report["ok"] is True and report["partners"][0]["status"] == "unreachable"
    assert any(a.node_id in u for u in report["unchecked"])


def test_a_broken_chain_is_reported_with_its_first_bad_entry(cli):
    for name in ("Ann", "Bo"):
        cli("profile", "add", "--first-name", name, "--last-name", "Example")
    from discnode.home import Home
    home = Home.open(cli.home)
    home.db.execute("DROP TRIGGER audit_no_update")
    home.db.execute("UPDATE audit SET event = 'nothing' WHERE seq = 1")
    report = cli("audit", "--verify", "--json", ok=False).json
    assert report["chain"] == {"ok": False, "reason": "entry 1 was changed after it was written", "first_bad": 1}
    home.close()


def test_verify_and_checkpoint_together_are_refused(cli):
    r = cli("audit", "--verify", "--checkpoint", ok=False)
    assert r.code == 2 and "not both" in r.err
    assert cli("audit", "--json").json == []  # nothing signed, nothing written


def test_a_node_without_partners_says_no_witness_checked_it(cli):
    report = cli("audit", "--verify", "--json").json
    assert report["ok"] and report["unchecked"] == ["no partner with an active agreement witnesses this log"]


# --- the witness: delivery, refusals, never backwards, never to a third node -------------------


def test_a_head_waits_for_an_unreachable_partner_and_goes_when_it_is_back(ab):
    from discnode.peering import deliver_pending
    a, b = ab
    a.stop()
    out = b.cli("audit", "--checkpoint", "--json").json
    assert out["taken_by"] == [] and out["partners"] == 1
    a.start()
    assert a.loop.run(deliver_pending(b.home)).sent == 1
    assert witness.held_for(a.home.db, b.node_id)["heads"] == [out["checkpoint"]]
    assert witness.undelivered(b.home.db, b.node_id) == []  # taken: not sent again


def test_serve_signs_a_checkpoint_and_gives_it_to_its_partner(network):
    """`discnode serve` as run in production (a real process): its first round signs a checkpoint
    (there is none yet) and delivers it, unasked, to its partner."""
    import signal
    import subprocess
    import sys
    import time
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    b.stop()
    proc = subprocess.Popen([sys.executable, "-m", "discnode", "--home", str(b.cli.home), "serve", "--no-advertise"],
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not witness.held_for(a.home.db, b.node_id)["heads"]:
            assert time.monotonic() < deadline, "the daemon never delivered a head"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
    (head,) = witness.held_for(a.home.db, b.node_id)["heads"]
    assert head["node_id"] == b.node_id and head["entries"] >= 2


def test_the_daemon_checkpoints_only_when_the_log_moved_and_the_last_is_old_enough(cli):
    from discnode.home import Home
    home = Home.open(cli.home)
    first = witness.checkpoint_if_due(home, 3600)
    assert first is not None and first["entries"] == 0 and first["head"] == GENESIS
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
    assert witness.checkpoint_if_due(home, 3600, later) is None  # nothing moved
    cli("profile", "add", "--first-name", "Ann", "--last-name", "Example")
    assert witness.checkpoint_if_due(home, 3600) is None  # moved, but the last is recent
    assert witness.checkpoint_if_due(home, 3600, later)["entries"] == 1
    home.close()


def test_a_signed_head_and_every_entry_before_it_are_on_disk_before_any_witness_can_take_them(cli):
    """With synchronous=NORMAL, commits live in the write-ahead log until it is next synced; a
    power cut could lose a head already given to witnesses, which would then see a rolled-back
    log. Signing a head checkpoints the log: the database file alone (the log lost) holds it."""
    import shutil
    import sqlite3
    from discnode.home import Home
    for name in ("Ann", "Bo"):
        cli("profile", "add", "--first-name", name, "--last-name", "Example")
    home = Home.open(cli.home)
    doc = witness.checkpoint(home)
    path = home.path / "discnode.db"
    copy = path.with_name("without-log.db")
    shutil.copyfile(path, copy)  # the database file only: its -wal and -shm are left behind
    db = sqlite3.connect(copy)
    try:
        assert db.execute("SELECT count(*) FROM audit").fetchone()[0] == doc["entries"] == 2
        assert db.execute("SELECT entries, head FROM audit_heads").fetchall() == [(2, doc["head"])]
    finally:
        db.close()
        home.close()


def post_head(src, dst, doc):
    body, headers = signed(src.home.identity, dst, "POST", HEAD, doc)
    return send(dst, "POST", HEAD, body, headers)


def get_heads(src, dst):
    body, headers = signed(src.home.identity, dst, "GET", HEAD)
    return send(dst, "GET", HEAD, body, headers)


def test_a_head_with_a_bad_signature_is_refused(ab):
    a, b = ab
    doc = new_head(a.home.identity, 7, "ab" * 32, "2026-11-24T16:00:00Z")
    doc["entries"] = 70
    status, body = post_head(a, b, doc)
    assert status == 401 and body["error"]["code"] == "unauthenticated"
    assert witness.held_for(b.home.db, a.node_id) == {"heads": [], "evidence": []}
    assert audit.entries(b.home.db)[-1]["event"] == "refused"


def test_a_head_for_another_nodes_log_is_refused(network):
    a, b, c = network.node("A"), network.node("B"), network.node("C")
    network.agree(a, b)
    doc = new_head(c.home.identity, 7, "ab" * 32, "2026-11-24T16:00:00Z")  # genuinely C's, sent by A
    status, _ = post_head(a, b, doc)
    assert status == 401
    assert b.home.db.execute("SELECT count(*) FROM audit_heads").fetchone()[0] == 0


@pytest.mark.parametrize("stage", ["stranger", "offered", "revoked"])
def test_a_head_from_a_node_without_an_active_agreement_is_refused(network, stage):
    a, b = network.node("A"), network.node("B")
    if stage != "stranger":
        a.cli("peer", "add", b.url, "--expect", b.node_id)
    if stage == "revoked":
        b.cli("peer", "accept", a.node_id)
        b.cli("peer", "revoke", a.node_id)
    doc = new_head(a.home.identity, 7, "ab" * 32, "2026-11-24T16:00:00Z")
    status, body = post_head(a, b, doc)
    assert status == 403 and body["error"]["code"] == "refused"
    assert get_heads(a, b)[0] == 403
    assert b.home.db.execute("SELECT count(*) FROM audit_heads").fetchone()[0] == 0


def test_a_witness_is_never_served_to_a_third_node(network):
    a, b, c = network.node("A"), network.node("B"), network.node("C")
    network.agree(a, b)
    network.agree(b, c)
    a_head = a.cli("audit", "--checkpoint", "--json").json["checkpoint"]
    assert witness.held_for(b.home.db, a.node_id)["heads"] == [a_head]
    status, body = get_heads(a, b)
    assert status == 200 and body == {"heads": [a_head], "evidence": []}
    status, body = get_heads(c, b)  # C is B's partner too, but A's head is A's alone
    assert status == 200 and body == {"heads": [], "evidence": []}
    assert a_head["head"] not in json.dumps(body)
    stranger = network.node("D")
    assert get_heads(stranger, b)[0] == 403
    served = [e for e in audit.entries(b.home.db) if e["event"] == "served" and e["detail"]["what"] == "audit-head"]
    assert {e["peer"] for e in served} == {a.node_id, c.node_id}


def test_a_witness_never_goes_backwards_and_keeps_the_evidence(ab):
    a, b = ab
    at = "2026-11-24T16:00:00Z"
    ten = new_head(a.home.identity, 10, "aa" * 32, at)
    assert post_head(a, b, ten) == (200, {"heads": [ten], "evidence": []})
    rollback = new_head(a.home.identity, 4, "bb" * 32, "2026-11-24T17:00:00Z")
    fork = new_head(a.home.identity, 10, "cc" * 32, "2026-11-24T17:00:01Z")
    post_head(a, b, rollback)
    status, body = post_head(a, b, fork)
    assert status == 200 and body["heads"] == [ten]
    assert body["evidence"] == [{"flag": "rollback", "head": rollback}, {"flag": "fork", "head": fork}]
    assert post_head(a, b, ten)[1]["heads"] == [ten]  # the same head again changes nothing
    eleven = new_head(a.home.identity, 11, "dd" * 32, at)
    assert post_head(a, b, eleven)[1]["heads"][-1] == eleven
    received = [e for e in audit.entries(b.home.db) if e["event"] == "audit-head-received"]
    assert [e["detail"]["outcome"] for e in received] == ["newer", "rollback", "fork", "same", "newer"]


def test_evidence_a_witness_keeps_is_capped(ab):
    a, b = ab
    post_head(a, b, new_head(a.home.identity, 1000, "aa" * 32, "2026-11-24T16:00:00Z"))
    for n in range(witness.MAX_EVIDENCE + 5):
        post_head(a, b, new_head(a.home.identity, n, "bb" * 32, "2026-11-24T16:00:00Z"))
    assert len(witness.held_for(b.home.db, a.node_id)["evidence"]) == witness.MAX_EVIDENCE


# --- pure rules --------------------------------------------------------------------------------


@pytest.mark.parametrize("held, incoming, outcome", [
    (None, (0, "00"), Outcome.NEWER), ((3, "aa"), (4, "bb"), Outcome.NEWER), ((3, "aa"), (3, "aa"), Outcome.SAME),
    ((3, "aa"), (2, "aa"), Outcome.ROLLBACK), ((3, "aa"), (3, "bb"), Outcome.FORK)])
def test_compare_heads(held, incoming, outcome):
    def as_head(pair):
        return pair and {"entries": pair[0], "head": pair[1]}
    assert compare(as_head(held), as_head(incoming)) is outcome


def test_a_witness_keeps_every_recent_head_and_the_latest_of_each_older_month():
    now = dt.datetime(2026, 11, 24, 16, 0, tzinfo=dt.timezone.utc)

    def ts(delta):
        return (now - delta).strftime("%Y-%m-%dT%H:%M:%SZ")
    received = {
        "new": ts(dt.timedelta(0)), "minutes-ago": ts(dt.timedelta(minutes=10)),
        "days-ago": ts(dt.timedelta(days=31)),
        "june-early": ts(dt.timedelta(days=170)), "june-late": ts(dt.timedelta(days=150)),  # same month
        "decade-ago": ts(dt.timedelta(days=4000)),
    }
    assert retained(received, "new", now) == {"new", "minutes-ago", "days-ago", "june-late"}


def test_past_the_cap_a_new_head_replaces_the_newest_never_an_older_one():
    """A flood of heads (a hostile node signing many) cannot push out those signed before an attack."""
    from discnode.audithead import MAX_RECENT
    now = dt.datetime(2026, 11, 24, 16, 0, tzinfo=dt.timezone.utc)
    received = {f"h{n:05d}": (now - dt.timedelta(seconds=MAX_RECENT + 10 - n)).strftime("%Y-%m-%dT%H:%M:%SZ")
                for n in range(MAX_RECENT + 10)}
    kept = retained(received, "h01009", now)
    assert len(kept) == MAX_RECENT and "h00000" in kept and "h01009" in kept and "h01008" not in kept


def test_head_signature_covers_every_field(cli):
    from discnode.home import Home
    from discnode.signing import verify_document
    home = Home.open(cli.home)
    doc = new_head(home.identity, 3, "ab" * 32, "2026-11-24T16:00:00Z")
    verify_document(doc, home.identity.public_key)
    assert canonical({k: v for k, v in doc.items() if k != "sig"}).startswith(b'{"entries":3,')
    home.close()


def test_a_hostile_partner_cannot_frame_a_node_with_heads_it_never_signed(ab):
    """A partner that serves a made-up head of B's log (999 entries, signed with its own key) does
    not make B's intact log look truncated: only B's own signature speaks for B's log."""
    from discnode.signing import sign_document
    a, b = ab
    witnessed_by(a, b)
    forged = sign_document({"type": "audit-head", "v": 1, "node_id": b.node_id, "entries": 999, "head": "ab" * 32,
                            "issued_at": "2026-11-24T16:00:00Z"}, a.home.identity)
    witness._insert(a.home.db, forged, None)  # what a hostile partner's own database can hold
    report = b.cli("audit", "--verify", "--json").json
    assert report["ok"] is True and not report["findings"]
    assert any("did not sign" in u and a.node_id in u for u in report["unchecked"])
