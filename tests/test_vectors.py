"""protocol/vectors, run as data: what a second implementation would run too."""

import base64
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from discnode.audit import _entry_hash
from discnode.audithead import GENESIS, against, check_head, compare
from discnode import facets, handling, namekey, oprf, schemas, wirejson
from discnode.consent import derive, scopes_of
from discnode.documents.proposal import check_outcome, check_proposal
from discnode.documents.link import check as check_link
from discnode.documents.sighting import check_sighting
from discnode.documents.statistics import check_statistics
from discnode.statistics import Incident, Window, release
from discnode.documents.notice import check_notice, check_receipt
from discnode.documents.evidence import verify as verify_evidence
from discnode.errors import DiscnodeError
from discnode.documents import succession
from discnode.identity import b64u, b64u_decode, node_id_for, parse_node_id
from discnode.query import MAX_PAGE, WIDE_PAGE, Query, widest_page
from discnode.signing import canonical, verify_document, verify_request

ROOT = Path(__file__).resolve().parent.parent
VECTORS = sorted((ROOT / "protocol" / "vectors").rglob("*.json"))


def load(path):
    return json.loads(path.read_text())


def run(family, vector):
    i = vector["input"]
    if family == "node-id":
        if "public_key_hex" in i:
            return {"node_id": node_id_for(bytes.fromhex(i["public_key_hex"]))}
        return {"node_id": parse_node_id(i["node_id"])}
    if family == "canonical":
        return {"canonical": canonical(i["json"]).decode()}
    if family == "document":
        verify_document(i["document"], b64u_decode(i["public_key"]))
        doc = {k: v for k, v in i["document"].items() if k != "sig"}
        return {"signed_bytes": canonical(doc).decode()} if "signed_bytes" in vector["expected"] else {}
    if family == "http-signature":
        keys = {k: b64u_decode(v) for k, v in i["keys"].items()}
        verified = verify_request(i["method"], i["url"], i["headers"], i["body"].encode(), keys.get,
                                  i["destination"], now=i["now"])
        return {"key_id": verified.key_id}
    if family == "audit-head":
        return run_audit_head(i)
    if family == "json":
        return {"value": wirejson.loads(base64.b64decode(i["base64"]))}
    if family == "proposal":
        check = check_proposal if i["document"].get("type") == "proposal" else check_outcome
        doc = check(i["document"], i["signer"], i["me"], b64u_decode(i["public_key"]))
        return {"signed_bytes": canonical({k: v for k, v in doc.items() if k != "sig"}).decode()}
    if family == "sighting":
        doc = check_sighting(i["document"], i["signer"], i["me"], b64u_decode(i["public_key"]))
        return {"signed_bytes": canonical({k: v for k, v in doc.items() if k != "sig"}).decode()}
    if family == "statistics":
        if "incidents" in i:
            window = Window(dt.date.fromisoformat(i["window"]["from"]), dt.date.fromisoformat(i["window"]["until"]))
            return release([Incident(dt.date.fromisoformat(x["date"]), x["place"], tuple(x["tags"]))
                            for x in i["incidents"]], window).to_wire()
        doc = i["document"]
        check_statistics(doc, i["signer"], i["me"], b64u_decode(i["public_key"]))
        return {"signed_bytes": canonical({k: v for k, v in doc.items() if k != "sig"}).decode()}
    if family == "notice":
        key = b64u_decode(i["public_key"])
        doc = (check_notice(i["document"], i["signer"], i["me"], key) if i["document"].get("type") == "notice"
               else check_receipt(i["document"], i["signer"], i["me"], key, i["notice"], i["notice_hash"]))
        return {"signed_bytes": canonical({k: v for k, v in doc.items() if k != "sig"}).decode()}
    if family == "link":
        doc = check_link(i["document"], i["kind"], i["signer"], i["me"], b64u_decode(i["public_key"]))
        return {"signed_bytes": canonical({k: v for k, v in doc.items() if k != "sig"}).decode()}
    if family == "consent-state":
        agreement = derive(i["me"], i["peer"], i["documents"], dt.date.fromisoformat(i["today"]))
        return {"state": agreement.state.value}
    if family == "match":
        return run_match(i)
    if family == "key-event":
        return run_key_event(i)
    if family == "profile-view":
        return run_profile_view(i)
    if family == "query-counts":
        if "descriptor" in i:
            return {"in_query": facets.in_query(i["descriptor"])}
        return facets.of_reply(i["reply"].get("counts")).to_wire()
    if family == "query-limit":
        if "descriptor" in i:
            return {"page": widest_page(scopes_of(i["descriptor"]))}
        return {"limit": Query.from_wire(i["query"], WIDE_PAGE if i["lists_feature"] else MAX_PAGE).limit}
    if family == "evidence":
        verified = verify_evidence(i["file"].encode())
        return {"records": verified.records, "images": verified.images, "references": verified.references,
                "digest": verified.digest}
    raise AssertionError(f"unknown vector family {family}")


def run_key_event(i):
    state = succession.verify_chain(i["events"])
    if "document" in i:
        return {"public_key": b64u(succession.check_signed_at(state, i["document"], i["document"]["issued_at"]))}
    return {"node_id": state.node_id, "current_key": b64u(state.current), "next": state.next_digest,
            "keys": [{"seq": p.seq, "public_key": b64u(p.public_key), "valid_from": p.valid_from,
                      "valid_until": p.valid_until} for p in state.keys]}


def run_profile_view(i):
    """Which view of a record a partner is served (section 8.9), each view checked as a receiver would."""
    key = b64u_decode(i["public_key"])
    verify_document(i["record"], key)
    verify_document(i["withheld_view"], key)
    schemas.validate("profile", i["withheld_view"])
    assert {k: v for k, v in i["withheld_view"].items() if k != "sig"} == handling.withheld_view(i["record"])
    audience = handling.Audience.of(i["terms"]["share"], i["terms"].get("handling_conditions", ()))
    if not audience.may_see(i["record"], dt.date.fromisoformat(i["today"])):
        return {"served": "none"}
    if audience.ethnicity:
        return {"served": "full"}
    return {"served": "withheld", "view": i["withheld_view"]}


def run_match(i):
    if "profile" in i:
        return {"keys": [k.decode() for k in namekey.keys(i["profile"])]}
    key = bytes.fromhex(i["key_hex"])
    if "input" not in i:
        return {"evaluated_hex": oprf.evaluate(key, bytes.fromhex(i["blinded_hex"])).hex()}
    data = i["input"].encode()
    r, blinded = oprf.blind(data, bytes.fromhex(i["blind_hex"]))
    evaluated = oprf.evaluate(key, blinded)
    unblinded = oprf.unblind(r, evaluated)
    assert oprf.output(key, data) == oprf.finalize(data, unblinded)
    return {"hash_to_group_hex": oprf.hash_to_group(data).hex(), "blinded_hex": blinded.hex(),
            "evaluated_hex": evaluated.hex(), "unblinded_hex": unblinded.hex(),
            "output_hex": oprf.finalize(data, unblinded).hex()}


def run_audit_head(i):
    if "entries" in i:
        hashes, prev = [], GENESIS
        for e in i["entries"]:
            prev = _entry_hash(prev, e["seq"], e["ts"], e["event"], e["peer"], json.dumps(e["detail"]),
                               e.get("actor", ""))
            hashes.append(prev)
        return {"hashes": hashes}
    if "document" in i:
        doc = check_head(i["document"], i["signer"], b64u_decode(i["public_key"]))
        return {"signed_bytes": canonical({k: v for k, v in doc.items() if k != "sig"}).decode()}
    if "incoming" in i:
        return {"outcome": compare(i["held"], i["incoming"]).value}
    stored = i["log_hashes"]
    finding = against(i["head"], len(stored), lambda n: stored[n - 1] if n <= len(stored) else None, "partner")
    return {"finding": finding and {"kind": finding.kind, "entry": finding.entry}}


def test_there_are_vectors_of_every_family():
    families = {p.parent.name for p in VECTORS}
    assert families == {"node-id", "canonical", "document", "http-signature", "consent-state", "audit-head", "json",
                        "match", "proposal", "sighting", "link", "statistics", "notice", "key-event", "profile-view", "evidence",
                        "query-counts", "query-limit"}
    assert {load(p)["result"] for p in VECTORS} == {"valid", "invalid"}


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_vector(path):
    vector = load(path)
    family = path.parent.name
    if vector["result"] == "valid":
        assert run(family, vector) == vector["expected"]
    else:
        with pytest.raises(DiscnodeError) as info:
            run(family, vector)
        assert vector["expected"]["error"].lower() in str(info.value).lower()


def test_examples_and_vectors_are_what_the_code_generates():
    r = subprocess.run([sys.executable, str(ROOT / "protocol" / "generate.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("path", [p for p in VECTORS if p.parent.name == "consent-state"], ids=lambda p: p.stem)
def test_consent_state_from_stored_hashes_is_the_state_from_the_documents(path):
    """peers.agreement hands derive the hashes consent_docs stored: the same state, offer and
    offer hash as hashing every document afresh."""
    from discnode.signing import document_hash
    i = load(path)["input"]
    today = dt.date.fromisoformat(i["today"])
    afresh = derive(i["me"], i["peer"], i["documents"], today)
    stored = derive(i["me"], i["peer"], i["documents"], today, [document_hash(d) for d in i["documents"]])
    assert stored == afresh
