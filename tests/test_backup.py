"""Backup and restore (issue 17): a sealed backup taken while the node serves restores to the same
node, serving again; a restore from an older backup is reported as one, and what partners hold of
the lost time comes back. Real nodes over real HTTPS, the real CLI."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest

from discnode import audit, peers, store
from discnode.home import Home, today
from tests.conftest import Cli, jpeg_with_gps, tree_files
from tests.nodes import Network, Node, send, signed
from tests.test_server import QUERY, add_profiles, query

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def pp(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase"
    path.write_text(PASSPHRASE + "\n")
    return path


def profile_rows(home_path: Path) -> list[tuple[str, str]]:
    h = Home.open(home_path)
    try:
        return h.db.execute("SELECT id, record FROM profiles WHERE batch IS NULL ORDER BY id").fetchall()
    finally:
        h.close()


def image_digests(home_path: Path) -> dict[str, str]:
    root = home_path / "images"
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def next_second(stamp: str) -> None:
    """Wait until the clock shows a later second than `stamp`: signed times are whole seconds, and
    a head signed in the very second of a restore is (on purpose) not counted as before it."""
    while store.now_ts() <= stamp:
        time.sleep(0.05)


def past_the_replay_floor(home_path: Path) -> None:
    """Wait until requests signed now are past the restored node's replay floor (the second after
    the restore's), as any request a partner signs after the restore soon is."""
    h = Home.open(home_path)
    try:
        row = h.db.execute("SELECT nonce FROM nonces WHERE key_id = ''").fetchone()
    finally:
        h.close()
    assert row is not None, "a restore sets a replay floor"
    while time.time() < float(row[0]):
        time.sleep(0.05)


def restored(network: Network, name: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(network.root / name, capsys)


def serve_restored(network: Network, name: str, cli: Cli) -> Node:
    node = Node(name, cli, network.loop, network.nodes[0].limits)
    network.nodes.append(node)
    return node.start()


def test_backup_while_serving_restores_identical_profiles_and_verifying_audit(network, tmp_path, pp, capsys):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    ids = add_profiles(a, 3)
    a.cli("image", "add", ids[0], jpeg_with_gps(tmp_path / "face.jpg"))
    stop, answers = threading.Event(), []

    def partner_queries() -> None:  # B keeps querying A (A writes its audit log) during the backup
        while not stop.is_set():
            answers.append(query(b, a)[0])

    traffic = threading.Thread(target=partner_queries)
    traffic.start()
    try:
        out = a.cli("backup", tmp_path / "a.backup", "--passphrase-file", pp, "--json").json
    finally:
        stop.set()
        traffic.join(30)
    assert answers and set(answers) == {200}, "A served while it was backed up"
    assert out["profiles"] == 3 and out["node_id"] == a.node_id
    before_profiles, before_images = profile_rows(a.cli.home), image_digests(a.cli.home)

    a2 = restored(network, "A-restored", capsys)
    result = a2("restore", tmp_path / "a.backup", "--passphrase-file", pp, "--json").json
    a.stop()  # (only now: its port stays taken until the restored node takes it over)
    assert result["node_id"] == a.node_id and result["profiles"] == 3
    assert profile_rows(a2.home) == before_profiles
    assert image_digests(a2.home) == before_images and before_images
    assert (a2.home / "identity.key").read_bytes() == (a.cli.home / "identity.key").read_bytes()
    assert oct((a2.home / "identity.key").stat().st_mode & 0o777) == "0o600"
    report = a2("audit", "--verify", "--json").json
    assert report["ok"] is True and report["chain"]["ok"] is True
    assert report["entries"] > out["audit_entries"]  # the backup's log, then `restored` and recovery

    node = serve_restored(network, "A-restored", a2)  # the same identity, address and certificate
    past_the_replay_floor(a2.home)
    page = b.cli("search", "--partnership", a.node_id, "--json").json
    assert sorted(r["id"] for r in page["results"]) == sorted(ids), page["peers"]
    assert node.home is not None and audit.entries(node.home.db)[-1]["peer"] == b.node_id


def test_wrong_passphrase_is_refused_with_one_line(network, tmp_path, pp, capsys):
    a = network.node("A")
    add_profiles(a, 1)
    a.cli("backup", tmp_path / "a.backup", "--passphrase-file", pp)
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase at all\n")
    target = tmp_path / "restore-here"
    r = restored(network, "restore-here", capsys)("restore", tmp_path / "a.backup", "--passphrase-file", wrong,
                                                   ok=False)
    assert r.code == 9
    assert r.err.strip().splitlines() == ["error: wrong passphrase for this backup (or the file is damaged)"]
    assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".restore-")], "nothing written"


def test_a_damaged_backup_restores_nothing(network, tmp_path, pp, capsys, monkeypatch):
    from discnode import sealed
    monkeypatch.setattr(sealed, "CHUNK", 4096)  # many chunks: the damage is past the first
    a = network.node("A")
    add_profiles(a, 2)
    a.cli("image", "add", add_profiles(a, 1)[0], jpeg_with_gps(tmp_path / "face.jpg"))
    a.cli("backup", tmp_path / "a.backup", "--passphrase-file", pp)
    whole = (tmp_path / "a.backup").read_bytes()
    # one bit: in the archive's middle, in the last chunk (tar's end-of-archive padding: the file
    # must still open whole), in the very last byte (the last tag)
    for where in (len(whole) // 2, len(whole) - 40, len(whole) - 1):
        data = bytearray(whole)
        data[where] ^= 1
        (tmp_path / "cut.backup").write_bytes(bytes(data))
        r = restored(network, "x", capsys)("restore", tmp_path / "cut.backup", "--passphrase-file", pp, ok=False)
        assert r.code == 2 and "damaged or cut short" in r.err and len(r.err.strip().splitlines()) == 1, where
    (tmp_path / "short.backup").write_bytes((tmp_path / "a.backup").read_bytes()[:-100])
    r = restored(network, "x", capsys)("restore", tmp_path / "short.backup", "--passphrase-file", pp, ok=False)
    assert "damaged or cut short" in r.err
    chunk = 4096 + 16  # cut exactly after a whole chunk: the last one left is not marked last
    header = (tmp_path / "a.backup").read_bytes().index(b"\n") + 1
    (tmp_path / "even.backup").write_bytes((tmp_path / "a.backup").read_bytes()[:header + 3 * chunk])
    r = restored(network, "x", capsys)("restore", tmp_path / "even.backup", "--passphrase-file", pp, ok=False)
    assert "damaged or cut short at chunk 2" in r.err
    assert not (tmp_path / "x").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".restore-")]


def test_restore_refuses_to_overwrite_a_node(network, tmp_path, pp):
    a, b = network.node("A"), network.node("B")
    add_profiles(a, 1)
    a.cli("backup", tmp_path / "a.backup", "--passphrase-file", pp)
    before = {p: (b.cli.home / p).read_bytes() for p in tree_files(b.cli.home) if not p.startswith("discnode.db")}
    r = b.cli("restore", tmp_path / "a.backup", "--passphrase-file", pp, ok=False)
    assert r.code == 4 and "already holds a node" in r.err and len(r.err.strip().splitlines()) == 1
    assert {p: (b.cli.home / p).read_bytes() for p in before} == before
    r = a.cli("restore", tmp_path / "a.backup", "--home", b.cli.home, "--passphrase-file", pp, ok=False)
    assert r.code == 4 and str(b.cli.home) in r.err
    # ...and will not write a backup over a file, nor inside the node's own home
    assert a.cli("backup", tmp_path / "a.backup", "--passphrase-file", pp, ok=False).code == 4
    assert a.cli("backup", a.cli.home / "in-home.backup", "--passphrase-file", pp, ok=False).code == 2


@pytest.mark.parametrize("revoker", ["us", "them"])
def test_restore_from_an_older_backup_is_reported_at_entry_n_and_reapplies_a_later_revocation(
        network, tmp_path, pp, capsys, revoker):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    add_profiles(a, 1)
    backed = a.cli("backup", tmp_path / "a.backup", "--passphrase-file", pp, "--json").json
    n = backed["audit_entries"]
    for _ in range(3):  # the lost time: B queries A, A signs a checkpoint B witnesses, then a revocation
        assert query(b, a)[0] == 200
    head = a.cli("audit", "--checkpoint", "--json").json
    assert head["taken_by"] == [b.node_id]
    m = head["checkpoint"]["entries"]
    (a if revoker == "us" else b).cli("peer", "revoke", (b if revoker == "us" else a).node_id)
    next_second(head["checkpoint"]["issued_at"])
    assert peers.agreement(b.home.db, b.node_id, a.node_id, today()).state.value == "revoked"
    a.stop()

    a2 = restored(network, "A-restored", capsys)
    result = a2("restore", tmp_path / "a.backup", "--passphrase-file", pp, "--json").json
    (row,) = result["partners"]
    assert row["status"] == "recovered" and row["consent_applied"] == 1 and row["consent_refused"] == 0
    assert row["agreement"] == "revoked", "the revocation made after the backup is in force again"
    assert row["heads_kept"] >= 1

    report = a2("audit", "--verify", "--json").json
    assert report["state"] == "restored" and report["ok"] is True and report["findings"] == []
    (cut,) = report["restores"]
    assert cut["entry"] == n and cut["restored_at"] == n + 1 and cut["lost_up_to"] >= m
    text = a2("audit", "--verify")
    assert f"RESTORED from a backup at entry {n} (entry {n + 1}" in text.out
    assert "intact" not in text.out and "TAMPERED" not in text.err
    events = [e["event"] for e in audit.entries(Home.open(a2.home).db)]
    assert events[n] == "restored" and "recovered" in events


def test_tampering_after_a_restore_is_still_tampering(network, tmp_path, pp, capsys):
    """A head signed after the restore that the log contradicts is not explained by the restore."""
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    a.cli("backup", tmp_path / "a.backup", "--passphrase-file", pp)
    a2 = restored(network, "A-restored", capsys)
    a2("restore", tmp_path / "a.backup", "--passphrase-file", pp)
    next_second(audit.entries(Home.open(a2.home).db)[-1]["ts"])
    past_the_replay_floor(a2.home)
    a.stop()
    node = serve_restored(network, "A-restored", a2)
    for _ in range(2):
        assert query(b, node)[0] == 200
    after = a2("audit", "--checkpoint", "--json").json["checkpoint"]
    assert node.home is not None
    db = node.home.db
    db.execute("DROP TRIGGER audit_no_delete")
    db.execute("DELETE FROM audit WHERE seq = ?", [after["entries"]])
    report = a2("audit", "--verify", "--json", ok=False).json
    assert report["state"] == "tampered" and report["findings"][0]["kind"] == "truncated"


def test_a_partner_answering_recovery_with_forged_or_foreign_documents_changes_nothing(network, tmp_path, pp):
    """What a hostile partner can send in a recovery reply: documents it signed in our name
    (forged), documents between it and a third node (foreign), heads of another log. None is taken."""
    from discnode import recoveryapi
    from discnode.consent import Action, new_response
    from discnode.identity import Identity
    from discnode.signing import document_hash, sign_document
    from tests.hostile import HostilePeer, answer

    a, c = network.node("A"), network.node("C")
    h = HostilePeer(tmp_path / "hostiles", network.loop)
    try:
        h.routes[("POST", "/v1/consent")] = answer({"state": "pending"})
        a.cli("peer", "add", h.url, "--expect", h.node_id)
        h.accept_from(a)
        offer = next(d for d in peers.documents(a.home.db, h.node_id) if d["type"] == "offer")
        thief = Identity.generate()
        forged = sign_document(new_response(Action.REVOKE, a.node_id, h.node_id, document_hash(offer),
                                            "2099-01-01T00:00:00Z"), thief)  # "A revoked", not signed by A
        foreign = sign_document(new_response(Action.REVOKE, h.node_id, c.node_id, document_hash(offer),
                                             "2099-01-01T00:00:00Z"), h.home.identity)
        other_head = c.cli("audit", "--checkpoint", "--json").json["checkpoint"]
        h.routes[("GET", recoveryapi.PATH)] = answer({"consent": [forged, foreign, {"type": "revoke"}],
                                                      "audit_heads": {"heads": [other_head], "evidence": []}})
        before = len(peers.documents(a.home.db, h.node_id))
        (row,) = [r for r in a.cli("recover", "--json").json["partners"] if r["node_id"] == h.node_id]
        assert row["consent_applied"] == 0 and row["consent_refused"] == 3 and row["heads_kept"] == 0
        assert row["heads_refused"] == 1 and row["agreement"] == "active"
        assert len(peers.documents(a.home.db, h.node_id)) == before
    finally:
        h.stop()


def test_recovery_is_served_only_about_the_asker(network):
    """B holds documents with A and with C; A asking gets only its own, C's stay with B."""
    a, b, c = network.node("A"), network.node("B"), network.node("C")
    network.agree(a, b)
    network.agree(c, b)
    body, headers = signed(a.home.identity, b, "GET", "/v1/recovery")
    status, reply = send(b, "GET", "/v1/recovery", body, headers)
    assert status == 200
    assert reply["consent"] and all({d["from"], d["to"]} == {a.node_id, b.node_id} for d in reply["consent"])
    entry = audit.entries(b.home.db)[-1]
    assert entry["event"] == "served" and entry["peer"] == a.node_id and entry["detail"]["what"] == "recovery"


def test_replay_after_restore_is_refused(network, tmp_path, pp, capsys):
    """A request B signed after the backup was made (so its nonce is not in the backup), captured,
    and replayed at the restored node while its signature is still fresh: refused."""
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    add_profiles(a, 1)
    a.cli("backup", tmp_path / "a.backup", "--passphrase-file", pp)
    body, headers = signed(b.home.identity, a, "POST", QUERY, {})
    assert send(a, "POST", QUERY, body, headers)[0] == 200  # answered, and captured on its way
    a2 = restored(network, "A-restored", capsys)
    a2("restore", tmp_path / "a.backup", "--passphrase-file", pp, "--no-recover")
    a.stop()
    node = serve_restored(network, "A-restored", a2)
    status, reply = send(node, "POST", QUERY, body, headers)
    assert status == 401 and "restored from a backup" in reply["error"]["message"]
    past_the_replay_floor(a2.home)
    assert query(b, node)[0] == 200  # a request signed after the restore is answered


@pytest.mark.parametrize("member", ["link", "dotdot", "absolute"])
def test_a_backup_with_links_or_paths_outside_is_refused(tmp_path, member, capsys):
    """A hostile archive (right passphrase, wrong contents) never writes outside the target."""
    import io
    import tarfile

    from discnode import sealed
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo({"link": "images/x", "dotdot": "../escaped", "absolute": "/tmp/escaped"}[member])
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
    (tmp_path / "evil.backup").write_bytes(sealed.seal_bytes(raw.getvalue(), PASSPHRASE, "backup", log2n=10))
    (tmp_path / "pp").write_text(PASSPHRASE)
    r = Cli(tmp_path / "target", capsys)("restore", tmp_path / "evil.backup", "--passphrase-file", tmp_path / "pp",
                                         ok=False)
    assert r.code == 2 and "never writes" in r.err and len(r.err.strip().splitlines()) == 1
    assert not (tmp_path / "target").exists() and not (tmp_path / "escaped").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".restore-")]


def test_a_backup_opens_with_the_recipe_in_its_spec(network, tmp_path, pp):
    """protocol/backup-v1.md's ten lines open a real backup: the format is what the page says."""
    import json
    import re
    import tarfile
    a = network.node("A")
    ids = add_profiles(a, 2)
    a.cli("backup", tmp_path / "a.backup", "--passphrase-file", pp)
    spec = (Path(__file__).resolve().parent.parent / "protocol" / "backup-v1.md").read_text()
    recipe = re.search(r"```python\n(.*?)```", spec, re.S).group(1)  # type: ignore[union-attr]
    recipe = (recipe.replace('"node.backup"', repr(str(tmp_path / "a.backup")))
              .replace('"node.tar"', repr(str(tmp_path / "a.tar")))
              .replace('b"the passphrase"', repr(PASSPHRASE.encode())))
    exec(compile(recipe, "backup-v1.md", "exec"), {})
    with tarfile.open(tmp_path / "a.tar") as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("MANIFEST.json"))  # type: ignore[arg-type]
    assert names[-1] == "MANIFEST.json" and manifest["format"] == "discnode-backup/1"
    assert {"config.toml", "identity.key", "tls.key", "tls.crt", "discnode.db"} <= set(manifest["files"])
    assert manifest["node_id"] == a.node_id and manifest["profiles"] == len(ids)


def test_a_partners_live_witness_reports_the_restore_and_the_restored_node_serves_it(network, tmp_path, pp, capsys):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    ids = add_profiles(a, 2)
    n = a.cli("backup", tmp_path / "a.backup", "--passphrase-file", pp, "--json").json["audit_entries"]
    for _ in range(2):
        assert query(b, a)[0] == 200
    head = a.cli("audit", "--checkpoint", "--json").json["checkpoint"]
    a2 = restored(network, "A-restored", capsys)
    next_second(head["issued_at"])
    (row,) = a2("restore", tmp_path / "a.backup", "--passphrase-file", pp, "--json").json["partners"]
    assert row["agreement"] == "active" and row["consent_applied"] == 0
    a.stop()
    node = serve_restored(network, "A-restored", a2)
    report = a2("audit", "--verify", "--json").json
    assert report["state"] == "restored" and [p["status"] for p in report["partners"]] == ["checked"]
    (cut,) = report["restores"]
    assert cut["entry"] == n and cut["lost_up_to"] == head["entries"]
    assert f"partner {b.node_id}" in {w["source"] for w in cut["witnesses"]}
    past_the_replay_floor(a2.home)
    status, reply = query(b, node)
    assert status == 200 and sorted(r["id"] for r in reply["records"]) == sorted(ids)


def test_a_backup_of_a_node_with_an_encrypted_key_needs_both_passphrases(tmp_path, pp, capsys, monkeypatch):
    key_pp = tmp_path / "key-passphrase"
    key_pp.write_text("another passphrase for the key\n")
    node = Cli(tmp_path / "node", capsys)
    node("init", "--name", "Sealed BCRP", "--encrypt-key", "--passphrase-file", key_pp)
    node("backup", tmp_path / "n.backup", "--passphrase-file", pp)  # the key goes in sealed, as kept
    target = Cli(tmp_path / "restored", capsys)
    r = target("restore", tmp_path / "n.backup", "--passphrase-file", pp, ok=False)
    assert r.code == 9 and len(r.err.strip().splitlines()) == 1 and "identity key is encrypted" in r.err
    assert not (tmp_path / "restored").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".restore-")]
    monkeypatch.setenv("DISCNODE_PASSPHRASE_FILE", str(key_pp))
    target("restore", tmp_path / "n.backup", "--passphrase-file", pp)
    assert (tmp_path / "restored" / "identity.key").read_bytes() == (tmp_path / "node" / "identity.key").read_bytes()
    assert target("id", "--json").json["node_id"] == node("id", "--json").json["node_id"]


def _sent(home_path: Path, me: str, profile_id: str) -> list[dict[str, object]]:
    from discnode import notices
    h = Home.open(home_path)
    try:
        return notices.sent_about(h.db, me, profile_id)
    finally:
        h.close()


def _received_from(node: Node, sender: str) -> list[tuple[str, str]]:
    assert node.home is not None
    return node.home.db.execute("SELECT about, kind FROM notices WHERE sender = ?", [sender]).fetchall()


def test_restore_from_an_older_backup_reapplies_an_erasure_made_since(network, tmp_path, pp, capsys):
    """A deletes x after its backup: B (which received x) returns a receipt, C (which received it
    too) is down and never hears. Restored from that backup, A gets the notice and B's receipt back
    from B, deletes x again, tells C, and does not tell B twice."""
    import asyncio

    from discnode.peering import deliver_pending

    a, b, c = network.node("A"), network.node("B"), network.node("C")
    network.agree(a, b)
    network.agree(a, c)
    x = a.cli("profile", "add", "--first-name", "Xavier", "--last-name", "Erased", "--json").json["id"]
    kept = a.cli("profile", "add", "--first-name", "Kept", "--last-name", "Profile", "--json").json["id"]
    b.cli("profile", "show", f"{a.node_id}:{x}")
    c.cli("profile", "show", f"{a.node_id}:{x}")
    a.cli("backup", tmp_path / "a.backup", "--passphrase-file", pp)
    c.stop()
    deleted = a.cli("profile", "delete", x, "--yes", "--json").json
    assert (deleted["recipients"], deleted["receipts"]) == (sorted([b.node_id, c.node_id]), [b.node_id])
    a.stop()
    c.start()

    a2 = restored(network, "A-restored", capsys)
    result = a2("restore", tmp_path / "a.backup", "--passphrase-file", pp, "--json").json
    rows = {r["node_id"]: r for r in result["partners"]}
    assert (rows[b.node_id]["notices_kept"], rows[b.node_id]["notices_refused"]) == (1, 0)
    assert (rows[c.node_id]["notices_kept"], rows[c.node_id]["notices_refused"]) == (0, 0)
    assert [i for i, _ in profile_rows(a2.home)] == [kept], "the erasure made since the backup holds again"
    sent = {s["to"]: s for s in _sent(a2.home, a.node_id, x)}
    assert sent[b.node_id]["receipt"] is True and sent[b.node_id]["kind"] == "erasure"
    assert sent[c.node_id]["receipt"] is False and len(sent) == 2, "C, never told, is told now; B not twice"
    listed = {p["node_id"]: p["receipts_outstanding"] for p in a2("peer", "list", "--json").json}
    assert listed == {b.node_id: 0, c.node_id: 1}
    h = Home.open(a2.home)
    try:
        (gone,) = [e for e in audit.entries(h.db) if e["event"] == "profile-deleted" and e["detail"].get("recovered")]
        assert gone["detail"]["notify"] == [c.node_id] and gone["detail"]["already_told"] == [b.node_id]
        asyncio.run(deliver_pending(h))
    finally:
        h.close()
    assert {p["node_id"]: p["receipts_outstanding"] for p in a2("peer", "list", "--json").json} == {
        b.node_id: 0, c.node_id: 0}
    assert _received_from(c, a.node_id) == [(x, "erasure")]
    assert _received_from(b, a.node_id) == [(x, "erasure")], "B got one notice, not a second"


def test_a_forged_notice_in_a_recovery_reply_deletes_nothing(network, tmp_path, pp):
    """A hostile partner answers recovery with erasure notices of A's profile x, each with a receipt
    it signed: one signed in A's name by another key (forged), one about its own record of that id
    (another origin), and one A really signed but to another node. None is kept; x stays."""
    from discnode import recoveryapi
    from discnode.documents.notice import new_notice, new_receipt
    from discnode.identity import Identity
    from discnode.signing import document_hash, sign_document
    from tests.hostile import HostilePeer, answer

    a, c = network.node("A"), network.node("C")
    h = HostilePeer(tmp_path / "hostiles", network.loop)
    try:
        h.routes[("POST", "/v1/consent")] = answer({"state": "pending"})
        a.cli("peer", "add", h.url, "--expect", h.node_id)
        h.accept_from(a)
        x = a.cli("profile", "add", "--first-name", "Xavier", "--last-name", "Kept", "--json").json["id"]
        now = store.now_ts()
        thief = Identity.generate()
        forged = sign_document({**new_notice(thief, h.node_id, x, "erasure", 1, now),
                                "from": a.node_id, "about": {"origin": a.node_id, "id": x}}, thief)
        foreign = new_notice(h.home.identity, a.node_id, x, "erasure", 1, now)
        assert a.home is not None
        elsewhere = new_notice(a.home.identity, c.node_id, x, "erasure", 1, now)
        items = [{"notice": n, "receipt": new_receipt(h.home.identity, n, document_hash(n), {}, 0, now)}
                 for n in (forged, foreign, elsewhere)]
        h.routes[("GET", recoveryapi.PATH)] = answer({"consent": [], "audit_heads": {"heads": [], "evidence": []},
                                                      "notices": items})
        (row,) = [r for r in a.cli("recover", "--json").json["partners"] if r["node_id"] == h.node_id]
        assert row["status"] == "recovered" and (row["notices_kept"], row["notices_refused"]) == (0, 3)
        assert a.cli("profile", "show", x, "--json").json["id"] == x
        assert a.home.db.execute("SELECT count(*) FROM notices").fetchone()[0] == 0
    finally:
        h.stop()
