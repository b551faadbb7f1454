"""Every /v1 request leaves exactly one audit entry, whatever its outcome (spec section 9.1), and
every local change of state is audited too. Real nodes over real HTTPS on loopback."""

from discnode import audit
from tests.conftest import jpeg_with_gps
from tests.nodes import send, signed
from tests.test_server import add_profiles

QUERY = "/v1/profiles/query"


def entries_for(node, peer):
    return [e for e in audit.entries(node.home.db, limit=10_000) if e["peer"] == peer]


def request(src, dst, method, path, payload=None):
    body, headers = signed(src.home.identity, dst, method, path, payload)
    return send(dst, method, path, body, headers)


def one_new_entry(dst, src, call):
    """Run call(); return its status, body and the one audit entry it left about src."""
    before = len(entries_for(dst, src.node_id))
    status, body = call()
    after = entries_for(dst, src.node_id)
    assert len(after) == before + 1, f"expected one audit entry, got {len(after) - before}: {after[before:]}"
    return status, body, after[-1]


def test_404_for_a_local_only_profile_is_audited(network):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    hidden = add_profiles(b, 1, args=["--local-only"])[0]
    path = f"/v1/profiles/{hidden}"
    status, body, entry = one_new_entry(b, a, lambda: request(a, b, "GET", path))
    assert status == 404 and body["error"]["code"] == "not_found"
    assert entry["event"] == "refused"
    assert entry["detail"]["status"] == 404 and entry["detail"]["path"] == path
    assert audit.verify(b.home.db).ok


def test_404_for_an_unknown_path_is_audited(network):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    status, _, entry = one_new_entry(b, a, lambda: request(a, b, "GET", "/v1/nothing-here"))
    assert status == 404 and entry["event"] == "refused" and entry["detail"]["status"] == 404


def test_400_raised_inside_a_handler_is_audited(network):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    status, body, entry = one_new_entry(b, a, lambda: request(a, b, "POST", QUERY, {"gender": ["M"]}))
    assert status == 400 and body["error"]["code"] == "invalid"
    assert entry["event"] == "refused"
    assert entry["detail"]["status"] == 400 and entry["detail"]["method"] == "POST"
    assert "gender" in entry["detail"]["reason"]


def test_409_for_a_consent_move_out_of_turn_is_audited(network):
    """An accept of an agreement that is already active: refused by the state machine (409)."""
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    docs = [d for d in b.home.db.execute("select doc from consent_docs where type = 'accept'").fetchall()]
    import json
    accept = json.loads(docs[0][0])
    # B's own accept, replayed by B as if new: the consent handler refuses it (not B's move now).
    status, _, entry = one_new_entry(a, b, lambda: request(b, a, "POST", "/v1/consent", accept))
    assert status == 409 and entry["event"] == "refused" and entry["detail"]["status"] == 409


def test_500_inside_a_handler_is_audited_without_detail_to_the_peer(network, tmp_path):
    """A damaged image store (the file is gone): the peer gets a bare 500, the log has an entry."""
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    sha = b.cli("profile", "add", "--first-name", "X", "--last-name", "Y", "--image",
                jpeg_with_gps(tmp_path / "x.jpg"), "--json").json["image"]
    for path in b.home.images_root.rglob(f"{sha}*"):
        path.unlink()
    status, body, entry = one_new_entry(b, a, lambda: request(a, b, "GET", f"/v1/images/{sha}"))
    assert status == 500 and body["error"] == {"code": "internal", "message": "internal error"}
    assert entry["event"] == "failed" and entry["detail"]["status"] == 500
    assert audit.verify(b.home.db).ok


def test_served_requests_still_leave_exactly_one_entry(network):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    pid = add_profiles(b, 1)[0]
    status, _, entry = one_new_entry(b, a, lambda: request(a, b, "POST", QUERY, {}))
    assert status == 200 and entry["event"] == "served" and entry["detail"]["count"] == 1
    status, _, entry = one_new_entry(b, a, lambda: request(a, b, "GET", f"/v1/profiles/{pid}"))
    assert status == 200 and entry["event"] == "served" and entry["detail"]["id"] == pid


def test_refusal_for_lack_of_agreement_leaves_exactly_one_entry(network):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    b.cli("peer", "revoke", a.node_id)
    status, _, entry = one_new_entry(b, a, lambda: request(a, b, "POST", QUERY, {}))
    assert status == 403 and entry["event"] == "refused" and entry["detail"]["status"] == 403


def last_local(cli):
    return cli("audit", "--json", "--limit", "1").json[-1]


def test_profile_delete_is_audited(cli):
    pid = cli("profile", "add", "--first-name", "Ann", "--last-name", "Example", "--json").json["id"]
    cli("profile", "delete", pid, "--yes")
    entry = last_local(cli)
    assert entry["event"] == "profile-deleted" and entry["detail"]["id"] == pid
    cli("audit", "--verify")


def test_refused_profile_delete_is_not_audited(cli):
    before = cli("audit", "--json", "--limit", "1000").json
    cli("profile", "delete", "aaaaaaaaaaaa", ok=False)
    assert cli("audit", "--json", "--limit", "1000").json == before


def test_local_profile_changes_are_audited(cli, tmp_path):
    pid = cli("profile", "add", "--first-name", "Ann", "--last-name", "Example", "--json").json["id"]
    assert last_local(cli)["event"] == "profile-added" and last_local(cli)["detail"]["id"] == pid
    cli("profile", "edit", pid, "--notes", "seen at the market")
    assert last_local(cli)["event"] == "profile-edited" and last_local(cli)["detail"]["id"] == pid
    cli("image", "add", pid, jpeg_with_gps(tmp_path / "p.jpg"))
    entry = last_local(cli)
    assert entry["event"] == "image-added" and entry["detail"]["id"] == pid and len(entry["detail"]["sha256"]) == 64
    csv = tmp_path / "rows.csv"
    csv.write_text("first_name,last_name\nBo,Example\nCy,Example\n")
    cli("profile", "import", csv)
    entry = last_local(cli)
    assert entry["event"] == "profiles-imported" and entry["detail"]["count"] == 2
    cli("audit", "--verify")
