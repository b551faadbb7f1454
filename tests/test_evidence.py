"""Evidence bundles between real nodes: exported with every origin's signature and image, checked
offline with nothing but the file, refused after any changed byte; partners' records only where
their agreement allows disclosure to police, references otherwise; the export audited."""

import json
import os
import stat

import pytest

from discnode.documents import evidence as doc
from discnode.errors import Tampered
from discnode.home import Home
from tests.conftest import jpeg_with_gps


def _partners(network, tmp_path, *, evidence=True, images=True):
    """A exports; B shares with A, with or without the evidence term. Each holds one shoplifter."""
    a, b = network.node("A"), network.node("B")
    share = ["profiles"] + (["images"] if images else []) + (["evidence"] if evidence else [])
    a.cli("peer", "add", b.url, "--expect", b.node_id, *[x for s in share for x in ("--share", s)])
    assert b.cli("peer", "accept", a.node_id, "--json").json["state"] == "active"
    a.cli("profile", "add", "--first-name", "Alan", "--last-name", "Own", "--tag", "shoplifting",
          "--image", jpeg_with_gps(tmp_path / "a.jpg"))
    b.cli("profile", "add", "--first-name", "Bea", "--last-name", "Partner", "--tag", "shoplifting",
          "--image", jpeg_with_gps(tmp_path / "b.jpg", (90, 60)))
    a.cli("profile", "add", "--first-name", "Other", "--last-name", "Tag", "--tag", "violence")
    return a, b


def _export(a, path, *args):
    # A generous deadline: under a loaded CI machine, a partner answering after the default 3 s
    # would be left out of the bundle, which is right for a user and a flake for a test.
    return a.cli("export", path, "--tag", "shoplifting", "--timeout", "30", *args, "--json").json


def test_evidence_bundle_verifies_offline(network, tmp_path, cli):
    a, b = _partners(network, tmp_path)
    path = tmp_path / "out" / "bundle.json"
    result = _export(a, path)
    assert len(result["records"]) == 2 and result["references"] == [] and result["images"] == 2
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for node in (a, b):
        node.stop()  # offline: no node runs
    # Verified from the file alone, by a command with no node home at all.
    no_home = tmp_path / "nowhere"
    os.environ.pop("DISCNODE_HOME", None)
    verified = cli.__class__(no_home, cli.capsys)("verify", path, "--json").json
    assert not no_home.exists()
    assert verified["ok"] and verified["records"] == 2 and verified["images"] == 2
    assert {o["name"] for o in verified["origins"]} == {"A BCRP", "B BCRP"}
    assert verified["digest"] == result["digest"]
    bundle = json.loads(path.read_bytes())
    names = {i["record"]["last_name"]: i for i in bundle["records"]}
    assert set(names) == {"Own", "Partner"}
    # The partner's record is exactly as B signed it, with B's descriptor binding its key to its ID.
    assert names["Partner"]["record"]["origin"] == b.node_id
    assert any(d["node_id"] == b.node_id for d in bundle["origins"])
    human = cli.__class__(no_home, cli.capsys)("verify", path).out
    assert "Evidence bundle intact: 2 record(s)" in human


def _changed(data: bytes, at: int) -> bytes:
    """One byte changed, to one of the same kind where it matters (a hex digit for a hex digit)."""
    old = data[at:at + 1]
    if old in b"0123456789abcdef":
        new = b"0" if old != b"0" else b"1"
    else:
        new = b"B" if old != b"B" else b"C"
    return data[:at] + new + data[at + 1:]


def _offset(data: bytes, needle: bytes, into: int = 0) -> int:
    at = data.index(needle)
    return at + into


@pytest.mark.parametrize("what, reason", [
    ("record", "origin's signature does not verify"),
    ("signature", "origin's signature does not verify"),
    ("image", "image's bytes do not have the SHA-256"),
    ("digest", "whole-bundle digest does not match"),
    ("exporter-signature", "exporter's signature"),
    ("reference", "whole-bundle digest does not match"),
])
def test_evidence_bundle_fails_after_one_changed_byte(network, tmp_path, what, reason):
    a, b = _partners(network, tmp_path)
    c = network.node("C")
    a.cli("peer", "add", c.url, "--expect", c.node_id)  # no evidence term: C's record is a reference
    c.cli("peer", "accept", a.node_id)
    c.cli("profile", "add", "--first-name", "Cal", "--last-name", "Third", "--tag", "shoplifting")
    path = tmp_path / "bundle.json"
    assert len(_export(a, path)["references"]) == 1
    data = path.read_bytes()
    doc.verify(data)
    bundle = json.loads(data)
    partner = next(i for i in bundle["records"] if i["record"]["origin"] == b.node_id)
    at = {
        "record": _offset(data, b'"last_name":"Partner"', len(b'"last_name":"P')),
        "signature": _offset(data, partner["record"]["sig"].encode(), 20),
        "image": _offset(data, partner["image"]["jpeg"].encode(), 200),
        "digest": _offset(data, bundle["digest"].encode(), 10),
        "exporter-signature": _offset(data, b'"sig":"' + bundle["sig"].encode(), 30),
        "reference": _offset(data, bundle["references"][0]["record_digest"].encode(), 5),
    }[what]
    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(_changed(data, at))
    with pytest.raises(Tampered, match=reason):
        doc.verify(tampered.read_bytes())
    err = a.cli("verify", tampered, ok=False)
    assert err.code == Tampered.exit_code
    assert "evidence bundle does NOT verify" in err.err and reason in " ".join(err.err.split())
    assert len(err.err.strip().splitlines()) == 1 or "Traceback" not in err.err


def test_evidence_bundle_fails_after_any_changed_byte(network, tmp_path):
    """Every byte of a bundle (one record, no image): none can change without verify failing, the
    unused bits of a signature's last base64url character included."""
    a = network.node("A")
    a.cli("profile", "add", "--first-name", "Alan", "--last-name", "Own", "--tag", "shoplifting")
    path = tmp_path / "bundle.json"
    _export(a, path)
    data = path.read_bytes()
    doc.verify(data)
    for at in range(len(data)):
        with pytest.raises(Tampered):
            doc.verify(_changed(data, at))
    for cut in (data[:-1], data + b"\n", b" " + data):
        with pytest.raises(Tampered):
            doc.verify(cut)


def test_partner_without_evidence_scope_appears_only_as_a_reference(network, tmp_path):
    a, b = _partners(network, tmp_path, evidence=False)
    path = tmp_path / "bundle.json"
    result = _export(a, path)
    assert result["partners"] == {b.node_id: "reference"}
    text = path.read_text()
    assert "Partner" not in text and "Bea" not in text  # none of B's record's contents
    bundle = doc.verify(path.read_bytes())
    assert bundle.records == 1 and bundle.references == 1
    [ref] = json.loads(text)["references"]
    b_home = Home.open(b.cli.home)
    record = next(r for r in b_home.db.execute("SELECT record FROM profiles"))
    from discnode.signing import document_hash
    signed = json.loads(record[0])
    assert ref["origin"] == b.node_id and ref["id"] == signed["id"] and ref["updated"] == signed["updated"]
    assert ref["revision"] == signed["revision"]
    # The digest of the record as B served it to A (under their agreement, B may serve a view
    # without some fields, spec 8.9): what B can find again from the reference.
    served = next(r for r in a.cli("search", "--all", "--timeout", "30", "--json").json["results"] if r["origin"] == b.node_id)
    assert ref["record_digest"] == document_hash({k: v for k, v in served.items() if k != "origin_name"})
    assert ref["origin_name"] == "B BCRP" and ref["origin_url"] == b.url and "ask" in ref["reason"]
    b_home.close()


def test_an_old_offer_does_not_allow_evidence_and_evidence_needs_profiles(network, tmp_path):
    a, b = _partners(network, tmp_path, evidence=False)
    assert "evidence" not in a.cli("peer", "show", b.node_id, "--json").json["terms"]["share"]
    err = a.cli("peer", "add", b.url, "--expect", b.node_id, "--share", "evidence", ok=False).err
    assert "evidence" in err


def test_an_offer_of_evidence_without_profiles_is_invalid_on_the_wire():
    from discnode import schemas
    from discnode.errors import InvalidInput
    from pathlib import Path
    offer = json.loads((Path(__file__).parent.parent / "protocol" / "examples" / "consent.offer.json").read_text())
    schemas.validate("consent", offer)
    for share in (["evidence"], ["images", "evidence"]):
        offer["terms"]["share"] = share
        with pytest.raises(InvalidInput):
            schemas.validate("consent", offer)
    offer["terms"]["share"] = ["profiles", "evidence"]
    schemas.validate("consent", offer)


def test_partner_images_without_images_scope_are_carried_by_digest_only(network, tmp_path):
    a, b = _partners(network, tmp_path, images=False)
    path = tmp_path / "bundle.json"
    result = _export(a, path)
    assert len(result["records"]) == 2 and result["images"] == 1 and result["images_omitted"] == 1
    verified = doc.verify(path.read_bytes())
    assert verified.images == 1 and verified.images_omitted == 1
    human = " ".join(a.cli("export", tmp_path / "again.json", "--tag", "shoplifting", "--timeout", "30").out.split())
    assert "2 record(s) with their origins' signatures, 1 image(s), 1 image(s) by digest only" in human
    assert "Recorded in the audit log as a disclosure" in human


def test_export_by_reference_and_audited_as_a_disclosure(network, tmp_path):
    a, b = _partners(network, tmp_path)
    found = a.cli("search", "--tag", "shoplifting", "--timeout", "30", "--json").json["results"]
    refs = sorted(f"{r['origin']}:{r['id']}" for r in found)
    path = tmp_path / "by-ref.json"
    result = a.cli("export", path, *[x for r in refs for x in ("--profile", r)], "--timeout", "30", "--json").json
    assert sorted(result["records"]) == refs
    [entry] = [e for e in a.cli("audit", "--json").json if e["event"] == "evidence-exported"]
    detail = entry["detail"]
    assert sorted(detail["records"]) == refs and detail["file"] == str(path.resolve())
    assert detail["by"] and detail["digest"] == result["digest"]
    assert a.cli("audit", "--verify").code == 0


@pytest.mark.parametrize("args, message", [
    ((), "nothing selected"),
    (("--tag", "shoplifting", "--profile", "AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA:abcdefgh2345"), "not both"),
    (("--profile", "nonsense"), "NODE_ID:PROFILE_ID"),
    (("--tag", "not-a-tag"), "not a known code"),
    (("--tag", "violence"), "no profiles match"),
])
def test_export_refuses_bad_selections_and_writes_nothing(cli, tmp_path, args, message):
    path = tmp_path / "bundle.json"
    err = cli("export", path, *args, ok=False).err
    assert message in " ".join(err.split()) and "Traceback" not in err
    assert not path.exists()
    assert not [e for e in cli("audit", "--json").json if e["event"] == "evidence-exported"]


def test_verify_refuses_what_is_not_a_bundle(cli, tmp_path):
    for content, reason in ((b"not json", "not I-JSON"), (b'{"a":1}', "not an evidence bundle"),
                            (b"", "not I-JSON")):
        path = tmp_path / "x.json"
        path.write_bytes(content)
        err = cli("verify", path, ok=False).err
        assert reason in err and "Traceback" not in err
    assert "cannot read" in cli("verify", tmp_path / "missing.json", ok=False).err


def test_a_record_graded_not_evidential_appears_only_as_a_reference(network, tmp_path):
    """A partner's record under the evidence term, but graded C:not-evidential by its origin (and
    shared under conditional terms that accept that condition): a reference, not evidence."""
    a, b = network.node("A"), network.node("B")
    a.cli("peer", "add", b.url, "--expect", b.node_id, "--share", "profiles", "--share", "evidence",
          "--share", "conditional", "--handling-condition", "not-evidential")
    b.cli("peer", "accept", a.node_id)
    b.cli("profile", "add", "--first-name", "Ivy", "--last-name", "Intel", "--tag", "shoplifting",
          "--grading", "2/B/C:not-evidential")
    b.cli("profile", "add", "--first-name", "Eve", "--last-name", "Evident", "--tag", "shoplifting")
    assert {r["last_name"] for r in a.cli("search", "--all", "--timeout", "30", "--json").json["results"]} == {"Intel", "Evident"}
    path = tmp_path / "bundle.json"
    result = _export(a, path)
    assert len(result["records"]) == 1 and len(result["references"]) == 1
    text = path.read_text()
    assert "Evident" in text and "Intel" not in text
    assert "not-evidential" in json.loads(text)["references"][0]["reason"]
    doc.verify(path.read_bytes())


def test_an_evidence_export_is_a_disclosure_in_the_log_but_never_a_notice_recipient(network, tmp_path):
    from discnode import disclosures
    a, b = _partners(network, tmp_path)
    own = [r for r in a.cli("search", "--json").json["results"] if r["origin"] == a.node_id][0]
    a.cli("export", tmp_path / "one.json", "--profile", f"{a.node_id}:{own['id']}")
    found = disclosures.of_profile(a.home.db, own["id"])
    assert [(d.peer, d.what) for d in found if d.what == "evidence-export"] == [("", "evidence-export")]
    assert "" not in disclosures.recipients(a.home.db, own["id"])
    disclosures.catch_up(a.home.db)  # indexed the same way once the daemon catches up
    assert [d.what for d in disclosures.of_profile(a.home.db, own["id"])].count("evidence-export") == 1
