"""`discnode peer terms`: the signed terms of the current agreement as a readable data sharing
agreement (parties, purpose, data items per scope, lawful basis, retention, review, termination)."""

from __future__ import annotations

import datetime as dt
import stat

from discnode.home import today

HOSTILE = '<script>alert("terms")</script>'


def _agree(network, purpose: str, *share: str):
    a, b = network.node("A"), network.node("B")
    extra = [x for s in share for x in ("--share", s)]
    a.cli("peer", "add", b.url, "--expect", b.node_id, "--purpose", purpose, "--review-days", "200", *extra)
    b.cli("peer", "accept", a.node_id)
    return a, b


def test_peer_terms_renders_the_signed_terms(network, tmp_path):
    a, b = _agree(network, f"Tackling shop theft in the city centre {HOSTILE}")
    review_by = (today() + dt.timedelta(days=200)).isoformat()
    for me, other in ((a, b), (b, a)):  # both sides hold the same signed documents: the same agreement
        doc = me.cli("peer", "terms", other.node_id, "--json").json
        assert doc["state"] == "active"
        assert [(p["name"], p["node_id"], p["role"]) for p in doc["parties"]] == [
            ("A BCRP", a.node_id, "offered"), ("B BCRP", b.node_id, "accepted")]
        assert doc["purpose"] == f"Tackling shop theft in the city centre {HOSTILE}"
        assert [i["scope"] for i in doc["data_items"]] == ["profiles", "images"]
        assert "date of birth" in doc["data_items"][0]["items"]
        assert doc["review_by"] == review_by
        assert "at once" in doc["termination"] and "peer revoke" in doc["termination"]
        assert doc["lawful_basis"]["signed"] is None and "Not part of the signed terms" in doc["lawful_basis"]["note"]
        assert doc["retention"]["signed"] is None and "24 months" in doc["retention"]["this_node_policy"]
        assert doc["signatures"]["accept"]["by"] == b.node_id
    text = a.cli("peer", "terms", "B BCRP").out
    for words in ("DATA SHARING AGREEMENT", "1. Parties", a.node_id, b.node_id, "2. Purpose", "Tackling shop theft",
                  "3. Data shared", "4. Lawful basis", "5. Retention", "this node's own policy", "6. Review",
                  review_by, "7. Termination"):
        assert words in text, words
    page = tmp_path / "out" / "agreement.html"
    a.cli("peer", "terms", b.node_id, "--html", str(page))
    html = page.read_text()
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    assert a.node_id in html and b.node_id in html and review_by in html and "Termination" in html
    assert HOSTILE not in html and "&lt;script&gt;" in html
    assert "http://" not in html and "https://" not in html


def test_peer_terms_states_the_match_quota_and_this_nodes_lawful_basis(network):
    a, b = _agree(network, "Matching known offenders", "match")
    config = a.cli.home / "config.toml"
    config.write_text(config.read_text().replace("[node]\n", '[node]\nlawful_basis = "Legitimate interests '
                                                             '(UK GDPR Art 6(1)(f)); DPA 2018 Sch 1 para 10"\n'))
    doc = a.cli("peer", "terms", b.node_id, "--json").json
    assert [i["scope"] for i in doc["data_items"]] == ["match"] and "100 names a day" in doc["data_items"][0]["items"]
    assert doc["lawful_basis"]["this_node_policy"].startswith("Legitimate interests")
    assert "config.toml" in doc["lawful_basis"]["note"]
    assert "Legitimate interests" in a.cli("peer", "terms", b.node_id).out


def test_peer_terms_lists_the_widening_scopes_and_the_handling_conditions(network):
    a, b = network.node("A"), network.node("B")
    shares = [x for scope in ("profiles", "ethnicity", "minors", "conditional") for x in ("--share", scope)]
    a.cli("peer", "add", b.url, "--expect", b.node_id, *shares, "--handling-condition", "staff-only")
    b.cli("peer", "accept", a.node_id)
    doc = a.cli("peer", "terms", b.node_id, "--json").json
    scopes = {i["scope"]: i["items"] for i in doc["data_items"]}
    assert list(scopes) == ["profiles", "ethnicity", "minors", "conditional"]
    assert "special category" in scopes["ethnicity"] and "under 18" in scopes["minors"]
    assert "staff-only" in scopes["conditional"] and doc["handling_conditions"] == ["staff-only"]


def test_every_scope_this_node_supports_has_its_data_items_described():
    from discnode import agreementdoc
    from discnode.consent import SHARE_KINDS
    assert set(SHARE_KINDS) <= set(agreementdoc.DATA_ITEMS)


def test_a_revoked_agreement_says_so_and_who_ended_it(network):
    a, b = _agree(network, "Tackling shop theft")
    b.cli("peer", "revoke", a.node_id)
    doc = a.cli("peer", "terms", b.node_id, "--json").json
    assert doc["state"] == "revoked" and doc["ended"]["type"] == "revoke" and doc["ended"]["by"] == "B BCRP"
    assert "REVOKED: nothing is shared" in a.cli("peer", "terms", b.node_id).out


def test_peer_terms_without_an_agreement_is_a_clear_error(network, tmp_path):
    a = network.node("A")
    r = a.cli("peer", "terms", "a" * 10, ok=False)
    assert r.err.strip() and "Traceback" not in r.err
    page = tmp_path / "never.html"
    b = network.node("B")
    a.cli("peer", "expect", b.node_id)
    r = a.cli("peer", "terms", b.node_id, "--html", str(page), ok=False)
    assert "Traceback" not in r.err and not page.exists()
