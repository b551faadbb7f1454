"""Regenerate protocol/examples and protocol/vectors from the published test keys.

    python protocol/generate.py            # rewrite the files
    python protocol/generate.py --check    # exit 1 if any committed file differs (the tests run this)

Everything is deterministic: Ed25519 signatures are, and every time, nonce and ID is fixed here.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from discnode.audit import _entry_hash
from discnode.audithead import GENESIS, against, compare, new_head
from discnode.consent import Action, Terms, derive, new_offer, new_response
from discnode.documents.proposal import new_outcome, new_proposal
from discnode.documents.link import new_answer, new_link
from discnode.documents.sighting import new_sighting
from discnode.documents.statistics import new_statistics
from discnode.statistics import Incident, Window, release
from discnode.documents.notice import new_notice, new_receipt
from discnode.documents import succession as keyev
from discnode.handling import withheld_view
from discnode.documents import evidence
from discnode.identity import Identity, b64u, node_id_for
from discnode import namekey, oprf
from discnode.signing import (canonical, content_digest, document_hash, sign_document, sign_request,
                              signature_params)

HERE = Path(__file__).resolve().parent
KEYS = json.loads((HERE.parent / "keys" / "test-keys.json").read_text())["keys"]
NOW = 1795550400  # 2026-11-24T16:00:00Z
NOW_TS = "2026-11-24T16:00:00Z"
TODAY = dt.date(2026, 11, 24)


def key(name: str) -> Identity:
    return Identity.from_seed(bytes.fromhex(KEYS[name]["seed_hex"]))


ALICE, BOB, CAROL = key("alice"), key("bob"), key("carol")


def descriptor(who: Identity, name: str, port: int, scopes: list[str] | None = None) -> dict[str, Any]:
    """Without scopes: as a node from before they were advertised (still valid: profiles, images)."""
    doc = {"type": "descriptor", "v": 1, "node_id": who.node_id, "public_key": who.public_key_b64,
           "name": name, "url": f"https://127.0.0.1:{port}", "tls_fingerprint": "5f" * 32, "issued_at": NOW_TS}
    if scopes is not None:
        doc["scopes"] = scopes
    return sign_document(doc, who)


def profile(revision: int | None = 3) -> dict[str, Any]:
    """Jane Example's record at revision 3; revision=None: as a node from before revisions wrote it."""
    record = {
        "id": "abcdefgh2345", "origin": ALICE.node_id, "status": "identified", "first_name": "Jane",
        "last_name": "Example", "aliases": ["JE"], "dob": "1990-02-03", "age_min": None, "age_max": None,
        "gender": "female", "ethnicity": "IC9", "build": "medium", "height_cm": 168,
        "marks": "rose tattoo, left wrist", "notes": "", "tags": ["shoplifting"],
        "incidents": [{"date": "2026-10-01", "place": "Example Stores, High Street", "type": "theft",
                       "summary": "Left without paying for razors",
                       "grading": {"source": 1, "intelligence": "A", "handling": "P", "conditions": []}}],
        "exclusion": {"from": "2026-10-02", "until": "2027-10-01", "where": "all member premises"},
        "local_only": False, "created": NOW_TS, "updated": NOW_TS, "last_seen": "2026-10-01",
        "review_by": "2027-11-24", "image": "7d" * 32,
        "grading": {"source": 2, "intelligence": "B", "handling": "P", "conditions": []}, "minor_reason": "",
    }
    if revision is not None:
        record["revision"] = revision
    else:  # a node from before revisions wrote no gradings nor reasons either (section 8.9: read as 2/C/P)
        del record["grading"], record["minor_reason"], record["incidents"][0]["grading"]
    return sign_document(record, ALICE)


def withheld(record: dict[str, Any]) -> dict[str, Any]:
    """The record's withheld view (section 8.9), signed by its origin."""
    return sign_document(withheld_view(record), ALICE)


def profile_view_vectors(vec: Any) -> None:
    """protocol/vectors/profile-view: which view of a record a partner is served under its
    agreement's scopes (section 8.9), and that the withheld view verifies."""
    adult = profile()
    child = sign_document({**{k: v for k, v in adult.items() if k != "sig"}, "id": "kidkidkid234", "dob": "2009-11-25",
                           "minor_reason": "Repeat thefts; parents informed", "review_by": "2027-05-20"}, ALICE)
    conditional = sign_document({**{k: v for k, v in adult.items() if k != "sig"}, "id": "condcond2345",
                                 "grading": {"source": 2, "intelligence": "B", "handling": "C",
                                             "conditions": ["refer-to-originator"]}}, ALICE)
    key = ALICE.public_key_b64

    def case(slug: str, description: str, record: dict[str, Any], share: list[str], served: str, *,
             conditions: list[str] | None = None, today: str = "2026-11-24") -> None:
        terms: dict[str, Any] = {"share": share}
        if conditions is not None:
            terms["handling_conditions"] = conditions
        expected: dict[str, Any] = {"served": served}
        if served == "withheld":
            expected["view"] = withheld(record)
        vec("profile-view", slug, description, {"record": record, "withheld_view": withheld(record),
                                                "terms": terms, "today": today, "public_key": key}, expected, "valid")

    case("withheld", "Terms without ethnicity: the withheld view, which verifies with the origin's key", adult,
         ["profiles", "images"], "withheld")
    case("ethnicity", "Terms sharing ethnicity: the full record", adult, ["profiles", "images", "ethnicity"], "full")
    case("minor-not-shared", "A 16-year-old's record under terms without minors: not served", child,
         ["profiles", "images", "ethnicity"], "none")
    case("minor-shared", "The same record under terms with minors (and without ethnicity)", child,
         ["profiles", "minors"], "withheld")
    case("eighteenth-birthday", "Born 2008-11-24: an adult on 2026-11-24, served without minors",
         sign_document({**{k: v for k, v in adult.items() if k != "sig"}, "dob": "2008-11-24"}, ALICE),
         ["profiles"], "withheld")
    case("day-before-eighteen", "Born 2008-11-25: still a minor on 2026-11-24",
         sign_document({**{k: v for k, v in adult.items() if k != "sig"}, "dob": "2008-11-25",
                        "minor_reason": "Threatened staff"}, ALICE), ["profiles"], "none")
    case("conditional-not-accepted", "A C record under terms without conditional: not served", conditional,
         ["profiles", "ethnicity"], "none")
    case("conditional-other-conditions", "A C record under conditional terms that do not list its condition",
         conditional, ["profiles", "conditional", "ethnicity"], "none", conditions=["staff-only"])
    case("conditional-accepted", "A C record under terms accepting its condition", conditional,
         ["profiles", "conditional", "ethnicity"], "full", conditions=["not-evidential", "refer-to-originator"])
    forged = {**withheld(adult), "ethnicity": "IC9"}
    forged.pop("withheld")
    vec("profile-view", "withheld-view-refilled", "A withheld view with ethnicity put back: the signature fails",
        {"record": adult, "withheld_view": forged, "terms": {"share": ["profiles"]}, "today": "2026-11-24",
         "public_key": key}, {"error": "signature"}, "invalid")
#: An 8x8 JPEG (Pillow, quality 50), fixed here so that the example bundle does not depend on the
#: encoder's version.
EVIDENCE_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1RV19iZ2hnPk1xeXBk"
    "eFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2P/wAARCAAIAAgD"
    "ASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKB"
    "kaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZ"
    "mqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQF"
    "BgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5"
    "OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX"
    "2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwCaiiiuI9Q//9k=")


def evidence_bundle() -> dict[str, Any]:
    """Alice exports her own record (with its image) and Bob's (under an agreement with the
    evidence term; no image); Carol's record, under an agreement without it, is a reference."""
    import hashlib
    scopes = ["profiles", "images", "match", "evidence"]
    sha = hashlib.sha256(EVIDENCE_JPEG).hexdigest()
    own = sign_document({**profile(), "image": sha}, ALICE)
    bobs = sign_document({**profile(), "id": "bcdefghi2345", "origin": BOB.node_id, "first_name": "Joe",
                          "last_name": "Sample", "aliases": [], "dob": "1985-06-07", "gender": "male",
                          "image": None}, BOB)
    carols = sign_document({**profile(), "id": "cdefghij2345", "origin": CAROL.node_id, "image": None}, CAROL)
    selection = {"filters": {"tags": ["shoplifting"], "sort": "name"}, "partnerships": [], "profiles": []}
    return evidence.build(ALICE, descriptor(ALICE, "Alice BCRP", 8443, scopes), NOW_TS, selection,
                          [descriptor(ALICE, "Alice BCRP", 8443, scopes), descriptor(BOB, "Bob BCRP", 9443, scopes)],
                          [(own, evidence.image_entry(sha, EVIDENCE_JPEG)), (bobs, None)],
                          [evidence.reference(carols, descriptor(CAROL, "Carol BCRP", 7443),
                                              "the agreement with this partnership does not allow disclosure to "
                                              "police (no evidence scope); ask the partnership for the record")])


def evidence_vectors(vec: Any) -> None:
    good = evidence_bundle()
    text = evidence.encode(good).decode()

    def file(bundle: dict[str, Any]) -> str:
        return evidence.encode(bundle).decode()

    vec("evidence", "valid", "A bundle as exported: two records (one with its image) and one reference; the "
        "file is exactly the RFC 8785 form of the bundle", {"file": text},
        {"records": 2, "images": 1, "references": 1, "digest": good["digest"]}, "valid")
    changed = copy.deepcopy(good)
    changed["records"][1]["record"]["last_name"] = "Sampel"
    vec("evidence", "record-changed", "One letter of a record changed (file re-canonicalised): the origin's "
        "signature no longer verifies", {"file": file(changed)}, {"error": "origin's signature does not verify"},
        "invalid")
    changed = copy.deepcopy(good)
    jpeg = bytearray(EVIDENCE_JPEG)
    jpeg[300] ^= 1
    changed["records"][0]["image"]["jpeg"] = b64u(bytes(jpeg))
    vec("evidence", "image-changed", "One bit of the image changed: its SHA-256 is not the one the signed record names",
        {"file": file(changed)}, {"error": "image's bytes do not have the SHA-256"}, "invalid")
    changed = copy.deepcopy(good)
    changed["digest"] = "0" + good["digest"][1:] if good["digest"][0] != "0" else "1" + good["digest"][1:]
    vec("evidence", "digest-changed", "The whole-bundle digest changed", {"file": file(changed)},
        {"error": "whole-bundle digest does not match"}, "invalid")
    changed = copy.deepcopy(good)
    del changed["references"][0]
    changed["digest"] = evidence.digest_of(changed)
    vec("evidence", "reference-removed", "A reference removed and the digest recomputed: the exporter's signature "
        "no longer verifies", {"file": file(changed)}, {"error": "exporter's signature"}, "invalid")
    sig = good["sig"]
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    spelt = sig[:-1] + last[last.index(sig[-1]) ^ 1]  # same bytes: differs in the unused low bits
    vec("evidence", "signature-spelling", "The exporter's signature spelt with other unused bits in its last "
        "base64url character (decodes to the same bytes): refused", {"file": file({**good, "sig": spelt})},
        {"error": "exporter's signature"}, "invalid")
    vec("evidence", "not-canonical", "The valid bundle, indented: the same JSON value, but not the RFC 8785 bytes "
        "it was written as", {"file": json.dumps(good, indent=1)}, {"error": "RFC 8785"}, "invalid")
    changed = copy.deepcopy(good)
    changed["origins"] = [d for d in good["origins"] if d["node_id"] != BOB.node_id]
    changed["digest"] = evidence.digest_of(changed)
    changed = sign_document(changed, ALICE)
    vec("evidence", "origin-missing", "Bob's descriptor left out (the exporter re-signed): Bob's record has no key "
        "to verify it", {"file": file(changed)}, {"error": "no descriptor"}, "invalid")


def offer(frm: Identity, to: Identity, port: int, prev: str | None = None, at: str = NOW_TS) -> dict[str, Any]:
    doc = new_offer(frm.node_id, to.node_id, Terms(review_by="2027-11-24"), descriptor(frm, "Alice BCRP", port),
                    at, prev)
    doc["id"] = "0123456789abcdef"
    return sign_document(doc, frm)


def respond(action: Action, frm: Identity, to: Identity, offer_doc: dict[str, Any], at: str = NOW_TS
            ) -> dict[str, Any]:
    return sign_document(new_response(action, frm.node_id, to.node_id, document_hash(offer_doc), at), frm)


def audit_chain() -> tuple[list[dict[str, Any]], list[str]]:
    """Three audit entries as Alice's node writes them, and their chained hashes (spec 9.2)."""
    entries = [
        {"seq": 1, "ts": NOW_TS, "event": "consent-offer-received", "peer": BOB.node_id, "detail": {"state": "pending"}},
        {"seq": 2, "ts": NOW_TS, "event": "consent-accept-sent", "peer": BOB.node_id, "detail": {}},
        {"seq": 3, "ts": "2026-11-24T16:00:05Z", "event": "served", "peer": BOB.node_id,
         "detail": {"method": "POST", "path": "/v1/profiles/query", "status": 200, "what": "query", "count": 1,
                    "records": "abcdefgh2345:3"}},
    ]
    hashes, prev = [], GENESIS
    for e in entries:
        prev = _entry_hash(prev, e["seq"], e["ts"], e["event"], e["peer"], json.dumps(e["detail"]))
        hashes.append(prev)
    return entries, hashes


def audit_chain_actor() -> tuple[list[dict[str, Any]], list[str]]:
    """Entries of local actions name who acted (`actor`); one without it hashes as before (9.2)."""
    entries = [
        {"seq": 1, "ts": NOW_TS, "event": "profile-added", "peer": "", "actor": "os:alice",
         "detail": {"id": "abcdefghijkl", "images": 1}},
        {"seq": 2, "ts": NOW_TS, "event": "served", "peer": BOB.node_id,
         "detail": {"method": "GET", "path": "/v1/profiles/abcdefghijkl", "status": 200}},
        {"seq": 3, "ts": NOW_TS, "event": "search", "peer": "", "actor": "web:Sam Smith",
         "detail": {"results": 1}},
    ]
    hashes, prev = [], GENESIS
    for e in entries:
        prev = _entry_hash(prev, e["seq"], e["ts"], e["event"], e["peer"], json.dumps(e["detail"]),
                           e.get("actor", ""))
        hashes.append(prev)
    return entries, hashes


def audit_heads() -> tuple[dict[str, Any], dict[str, Any]]:
    """Alice's head after entry 3, and an older one (after entry 2)."""
    _, hashes = audit_chain()
    return (new_head(ALICE, 3, hashes[2], "2026-11-24T17:00:00Z"),
            new_head(ALICE, 2, hashes[1], "2026-11-24T16:00:01Z"))


def proposal() -> dict[str, Any]:
    """Bob tells Alice her ID-sought profile is his profile of Rita Red."""
    return new_proposal(BOB, ALICE.node_id, "mnopqrst2345", {"first_name": "Rita", "last_name": "Red",
                        "dob": "1990-01-01"}, "bcdefghi3456", "", "Known to our Market Street members",
                        NOW_TS, "fedcba9876543210")


def outcome() -> dict[str, Any]:
    p = proposal()
    return new_outcome(ALICE, p, document_hash(p), "confirmed", "Matches our CCTV of 2026-09-30",
                       "2026-11-24T17:00:00Z")


def sighting() -> dict[str, Any]:
    """Bob tells Alice the person in her profile was seen at one of his members' shops."""
    return new_sighting(BOB, ALICE.node_id, "abcdefgh2345", "Example Stores, Market Street", "2026-11-24", NOW_TS,
                        "0a1b2c3d4e5f6a7b")


#: Bob's incidents for the statistics examples and vectors (spec 8.7): places as recorded.
STATS_WINDOW = Window(dt.date(2024, 11, 25), dt.date(2026, 11, 22))


def stats_incidents() -> list[Incident]:
    week = [dt.date(2026, 11, 2), dt.date(2026, 11, 9), dt.date(2026, 11, 16)]
    out = [Incident(week[0], "Example Stores, Market Street", ("shoplifting",))] * 6
    out += [Incident(week[1], "Example Stores,  market street", ("shoplifting",))] * 2
    out += [Incident(week[1], "The Crown, Bridge Road", ("shoplifting", "violence"))] * 5
    out += [Incident(week[2], "Corner Shop", ("shoplifting",))] * 3       # a place under 5: other places
    out += [Incident(week[2], "Bus station", ("shoplifting",))] * 2       # other places, with the above
    out += [Incident(dt.date(2026, 10, 31), "The Crown, Bridge Road", ("drugs",))] * 2  # a fragment under 5: withheld
    return out


def statistics_reply() -> dict[str, Any]:
    """Bob's released counts for Alice, a statistics-only partner."""
    return new_statistics(BOB, ALICE.node_id, STATS_WINDOW, release(stats_incidents(), STATS_WINDOW), NOW_TS)


def link() -> dict[str, Any]:
    """Alice tells Bob her profile and his describe one person (a Level Two group)."""
    return new_link(ALICE, BOB.node_id, "abcdefgh2345", "bcdefghi3456", NOW_TS, "1122334455667788")


def link_answer() -> dict[str, Any]:
    lk = link()
    return new_answer(BOB, lk, document_hash(lk), "confirmed", "2026-11-24T17:00:00Z")


def notice(kind: str = "erasure", revision: int = 3) -> dict[str, Any]:
    """Alice tells Bob, who received her profile, that she erased (or corrected) it."""
    return new_notice(ALICE, BOB.node_id, "abcdefgh2345", kind, revision, NOW_TS, "9a8b7c6d5e4f3a2b")


def receipt() -> dict[str, Any]:
    """Bob's receipt for Alice's erasure notice: what he dropped, and how many exported files he
    asked his administrator to delete."""
    n = notice()
    return new_receipt(BOB, n, document_hash(n), {"checked": 1, "links": 1, "sightings": 1, "revealed": 0}, 2,
                       "2026-11-24T16:00:01Z")


#: Alice's successive keys in the key-event vectors: her own test key, then Bob's and Carol's test
#: keys standing in for her second and third, then a fixed test-only seed as the committed fourth.
ALICE_KEYS = [ALICE, BOB, CAROL, Identity.from_seed(bytes(range(32)))]
T1, T2 = "2027-11-24T16:00:00Z", "2028-11-24T16:00:00Z"


def key_chain() -> list[dict[str, Any]]:
    """Alice's inception and two successions (spec 4.6): grace of 72 hours, then of 0."""
    k0, k1, k2, k3 = ALICE_KEYS
    inception = keyev.new_inception(k0, k1.public_key, NOW_TS)
    first = keyev.new_succession(inception, k0, k1, k2.public_key, T1, dt.timedelta(hours=72))
    second = keyev.new_succession(first, k1, k2, k3.public_key, T2, dt.timedelta(0))
    return [inception, first, second]


def rotated_descriptor() -> dict[str, Any]:
    doc = {k: v for k, v in descriptor(ALICE, "Alice BCRP", 8443, ["profiles", "images", "match"]).items()
           if k != "sig"}
    doc.update(public_key=CAROL.public_key_b64, key_events=key_chain(), issued_at=T2)
    return sign_document(doc, CAROL)


def key_event_vectors(vec: Any) -> None:
    chain = key_chain()
    inception, first, second = chain
    k0, k1, k2, _ = ALICE_KEYS
    state = keyev.verify_chain(chain)
    vec("key-event", "two-rotations", "Alice's inception and two successions: a valid chain; the node ID "
        "stays the fingerprint of the first key", {"events": chain},
        {"node_id": ALICE.node_id, "current_key": CAROL.public_key_b64, "next": state.next_digest,
         "keys": [{"seq": p.seq, "public_key": b64u(p.public_key), "valid_from": p.valid_from,
                   "valid_until": p.valid_until} for p in state.keys]}, "valid")
    body = keyev._body(first)
    wrong_counter = {**first, "countersig": b64u(CAROL.sign(body))}
    vec("key-event", "wrong-countersignature", "The first succession countersigned by a key other than the "
        "incoming one", {"events": [inception, wrong_counter]},
        {"error": "not countersigned by the incoming key"}, "invalid")
    thief = {k: v for k, v in first.items() if k not in ("sig", "countersig")}
    thief.update(key=CAROL.public_key_b64)  # a key of the thief's own: not the committed one
    thief_body = keyev._body(thief)
    thief.update(sig=b64u(k0.sign(thief_body)), countersig=b64u(CAROL.sign(thief_body)))
    vec("key-event", "not-revealing-committed-key", "A thief holding the current key signs a succession to a "
        "key of their own (signed by the stolen key, countersigned by theirs)", {"events": [inception, thief]},
        {"error": "does not reveal the key committed"}, "invalid")
    unsigned = {**first, "sig": b64u(CAROL.sign(body))}
    vec("key-event", "not-signed-by-outgoing-key", "The first succession signed by a key other than the "
        "outgoing one", {"events": [inception, unsigned]}, {"error": "not signed by the outgoing key"}, "invalid")
    vec("key-event", "fork-of-prev", "The second succession names a previous event that is not the first "
        "succession (a fork)", {"events": [inception, first, {**second, "prev": "00" * 32}]},
        {"error": "does not follow the one before it"}, "invalid")
    for slug, description, who, when, result, expected in (
        ("old-key-within-grace", "A document signed by the first key, dated within the first succession's "
         "grace period", k0, "2027-11-27T15:59:59Z", "valid", {"public_key": k0.public_key_b64}),
        ("old-key-after-grace", "A document signed by the first key, dated when the first succession's grace "
         "period has ended", k0, "2027-11-27T16:00:00Z", "invalid", {"error": "not signed by a key"}),
        ("second-key-zero-grace", "A document signed by the second key, dated at the second succession (its "
         "grace period is 0)", k1, T2, "invalid", {"error": "not signed by a key"}),
    ):
        doc = sign_document({"type": "revoke", "from": ALICE.node_id, "to": BOB.node_id, "offer": "ab" * 32,
                             "issued_at": when}, who)
        vec("key-event", slug, description, {"events": chain, "document": doc}, expected, result)
    # Self-check: the generator's expectations hold for this implementation.
    assert keyev.check_signed_at(state, sign_document({"issued_at": T2}, k2), T2) == k2.public_key


FACETS_REPLY = {"total": 3, "facets": {"gender": {"female": 2, "male": 1}, "ethnicity": {"IC1": 1, "IC9": 2},
                                      "build": {"medium": 3}, "status": {"identified": 3},
                                      "tags": {"shoplifting": 3, "violence": 1}}}


def query_counts_vectors(vec: Any) -> None:
    """protocol/vectors/query-counts (spec 7.2, 8.1): whom a node may ask for counts inside its
    query, and which `counts` members of a reply it takes."""
    from discnode.consent import SHARE_KINDS
    vec("query-counts", "listed", "The partner's descriptor lists query-counts: counts go in the query request",
        {"descriptor": descriptor(BOB, "Bob BCRP", 9443, [*SHARE_KINDS, "query-counts"])}, {"in_query": True}, "valid")
    vec("query-counts", "not-listed", "Scopes without query-counts: counts by POST /v1/profiles/facets",
        {"descriptor": descriptor(BOB, "Bob BCRP", 9443, list(SHARE_KINDS))}, {"in_query": False}, "valid")
    vec("query-counts", "no-scopes", "A descriptor from before scopes: counts by POST /v1/profiles/facets",
        {"descriptor": descriptor(BOB, "Bob BCRP", 9443)}, {"in_query": False}, "valid")
    vec("query-counts", "reply", "A reply's counts, taken as a facets reply", {"reply": {"records": [],
        "counts": FACETS_REPLY}}, FACETS_REPLY, "valid")
    empty = {f: {} for f in ("gender", "ethnicity", "build", "status", "tags")}
    vec("query-counts", "withheld-ethnicity", "Ethnicity not shared: {} (never 'unknown')",
        {"reply": {"records": [], "counts": {"total": 2, "facets": {**empty, "gender": {"male": 2}}}}},
        {"total": 2, "facets": {**empty, "gender": {"male": 2}}}, "valid")
    for slug, description, counts, error in [
            ("missing", "Counts asked for and not sent", None, "no counts"),
            ("total-text", "A total written as text", {"total": "3", "facets": empty}, "integer"),
            ("total-fraction", "A total with a fraction", {"total": 2.5, "facets": empty}, "integer"),
            ("total-boolean", "A total written as true", {"total": True, "facets": empty}, "integer"),
            ("total-over", "A total over 100,000,000", {"total": 100000001, "facets": empty}, "at most"),
            ("negative", "A negative count", {"total": 1, "facets": {**empty, "build": {"slim": -1}}}, "at least 0"),
            ("unknown-code", "A code outside its list", {"total": 1, "facets": {**empty, "gender": {"<b>": 1}}},
             "gender"),
            ("missing-field", "A field left out", {"total": 0, "facets": {k: v for k, v in empty.items()
                                                                          if k != "tags"}}, "tags")]:
        reply: dict[str, Any] = {"records": []}
        if counts is not None:
            reply["counts"] = counts
        vec("query-counts", slug, description + ": the partner's counts are reported invalid, not added",
            {"reply": reply}, {"error": error}, "invalid")


def query_limit_vectors(vec: Any) -> None:
    """protocol/vectors/query-limit (spec 7.2, 8.1): the largest page a node asks a partner for, by
    the partner's descriptor, and the `limit` a node serves, by whether it lists query-limit-1000."""
    from discnode.consent import SHARE_KINDS
    vec("query-limit", "listed", "The partner lists query-limit-1000: a walk may ask it for 1,000 records a page",
        {"descriptor": descriptor(BOB, "Bob BCRP", 9443, [*SHARE_KINDS, "query-limit-1000"])}, {"page": 1000}, "valid")
    vec("query-limit", "not-listed", "Scopes without query-limit-1000: pages of at most 200",
        {"descriptor": descriptor(BOB, "Bob BCRP", 9443, [*SHARE_KINDS, "query-counts"])}, {"page": 200}, "valid")
    vec("query-limit", "no-scopes", "A descriptor from before scopes: pages of at most 200",
        {"descriptor": descriptor(BOB, "Bob BCRP", 9443)}, {"page": 200}, "valid")
    for slug, description, lists, query, expected, result in [
            ("serve-1000", "A node that lists the feature serves a limit of 1,000", True, {"limit": 1000},
             {"limit": 1000}, "valid"),
            ("serve-1000-zero-fraction", "1000.0 is 1000, as JSON Schema's integer says", True, {"limit": 1000.0},
             {"limit": 1000}, "valid"),
            ("serve-200-without", "A node without the feature serves 200", False, {"limit": 200}, {"limit": 200},
             "valid"),
            ("refuse-1001", "Over 1,000: refused with 400 by every node", True, {"limit": 1001},
             {"error": "limit"}, "invalid"),
            ("refuse-201-without", "Over 200 to a node without the feature: refused with 400", False,
             {"limit": 201}, {"error": "limit must be 1 to 200"}, "invalid"),
            ("refuse-zero", "A limit of 0: refused with 400", True, {"limit": 0}, {"error": "limit"}, "invalid")]:
        vec("query-limit", slug, description, {"lists_feature": lists, "query": query}, expected, result)


def examples() -> dict[str, Any]:
    o = offer(ALICE, BOB, 8443)
    head, older = audit_heads()
    return {
        "audit-head.json": head,
        "audit-head-reply.json": {"heads": [older, head], "evidence": [
            {"flag": "rollback", "head": new_head(ALICE, 1, "e3" * 32, "2026-11-24T18:00:00Z")}]},
        # Bob's answer to Alice's GET /v1/recovery after she restored an older backup: their
        # agreement (offer, accept, then her revocation she no longer holds), her heads he witnessed,
        "recovery-reply.json": {"consent": [o, respond(Action.ACCEPT, BOB, ALICE, o),
                                            respond(Action.REVOKE, ALICE, BOB, o, "2026-11-25T09:00:00Z")],
                                "audit_heads": {"heads": [older, head], "evidence": []},
                                # ...and her erasure notice he received, with the receipt he returned.
                                "notices": [{"notice": notice(), "receipt": receipt()}]},
        "descriptor.json": descriptor(ALICE, "Alice BCRP", 8443, ["profiles", "images", "match"]),
        "descriptor.rotated.json": rotated_descriptor(),
        "key-event.inception.json": key_chain()[0],
        "key-event.succession.json": key_chain()[1],
        "consent.offer-handling.json": sign_document(new_offer(
            ALICE.node_id, BOB.node_id, Terms(share=("profiles", "images", "ethnicity", "minors", "conditional"),
                                              review_by="2027-11-24", handling_conditions=("refer-to-originator",)),
            descriptor(ALICE, "Alice BCRP", 8443, ["profiles", "images", "match", "ethnicity", "minors", "conditional"]),
            NOW_TS, None) | {"id": "1a2b3c4d5e6f7081"}, ALICE),
        "profile.withheld.json": withheld(profile()),
        "consent.offer-match.json": sign_document(new_offer(
            ALICE.node_id, BOB.node_id, Terms(share=("match",), review_by="2027-11-24", match_daily_quota=100),
            descriptor(ALICE, "Alice BCRP", 8443, ["profiles", "images", "match"]), NOW_TS, None) | {"id": "0f1e2d3c4b5a6978"},
            ALICE),
        **match_examples(),
        "profile.json": profile(),
        "evidence-bundle.json": evidence_bundle(),
        "query.json": {"text": "example", "gender": ["female"], "ethnicity": ["IC1", "IC9"], "build": ["medium"],
                       "status": ["identified"], "tags": ["shoplifting"], "age_min": 18, "age_max": 45,
                       "excluded": True, "sort": "last-seen", "desc": True, "limit": 50,
                       "after": ["2026-10-01", ALICE.node_id, "abcdefgh2345"]},
        "query-reply.json": {"records": [profile()]},
        "query.counts.json": {"gender": ["female"], "tags": ["shoplifting"], "limit": 50, "counts": True},
        # A walk's next page from a partner that lists query-limit-1000 (spec 8.1, Wide pages).
        "query.wide.json": {"status": ["identified"], "sort": "name", "limit": 1000,
                            "after": ["example\u001fjane", ALICE.node_id, "abcdefgh2345"]},
        "query-reply.counts.json": {"records": [profile()], "counts": FACETS_REPLY},
        "profile-reply.json": {"record": profile(), "images": ["7d" * 32]},
        "facets-reply.json": FACETS_REPLY,
        "consent.offer.json": o,
        "consent.accept.json": respond(Action.ACCEPT, BOB, ALICE, o),
        "consent.revoke.json": respond(Action.REVOKE, ALICE, BOB, o),
        "consent-reply.json": {"state": "active"},
        "descriptor-reply.json": {"url": "https://127.0.0.1:9443"},
        "proposal.json": proposal(),
        "proposal-outcome.json": outcome(),
        "proposal-reply.json": {"id": "fedcba9876543210", "state": "pending"},
        "sighting.json": sighting(),
        "link.json": link(),
        "link-answer.json": link_answer(),
        "link-reply.json": {"id": "1122334455667788", "state": "confirmed"},
        "sighting-reply.json": {"id": "0a1b2c3d4e5f6a7b"},
        "statistics-request.json": {},
        "statistics.json": statistics_reply(),
        "notice.json": notice(),
        "notice.rectification.json": notice("rectification", 4),
        "receipt.json": receipt(),
        "error.json": {"error": {"code": "refused", "message": "no active agreement to share profiles "
                                                              "(agreement is revoked)"}},
    }


def vectors() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def vec(family: str, slug: str, description: str, input_: Any, expected: Any, result: str) -> None:
        n = sum(1 for k in out if k.startswith(family + "/")) + 1
        out[f"{family}/{n:03d}-{slug}.json"] = {"id": f"{family}-{n:03d}", "description": description,
                                                "input": input_, "expected": expected, "result": result}

    # node IDs
    for name in ("alice", "bob", "carol"):
        vec("node-id", name, f"Node ID of the RFC 8032 key '{name}'",
            {"public_key_hex": KEYS[name]["public_key_hex"]}, {"node_id": key(name).node_id}, "valid")
    good = ALICE.node_id
    typo = good[:2] + ("B" if good[2] != "B" else "C") + good[3:]
    vec("node-id", "typo", "One character changed: the group's check character no longer matches",
        {"node_id": typo}, {"error": "check character"}, "invalid")
    vec("node-id", "lowercase-no-dashes", "Typed in lower case without dashes: accepted and normalised",
        {"node_id": good.lower().replace("-", "")}, {"node_id": good}, "valid")

    # canonical JSON (RFC 8785)
    for slug, doc in (("key-order", {"b": 1, "a": [3, {"z": None, "y": True}]}),
                      ("numbers", {"n": [1.0, 100, 1e21, 0.000001, -0.0]}),
                      ("unicode", {"name": "Zo\u00eb \u20ac \U0001F600", "esc": "tab\tquote\"\u0001"})):
        vec("canonical", slug, "RFC 8785 canonical form, as UTF-8", {"json": doc},
            {"canonical": canonical(doc).decode()}, "valid")

    # signed documents
    d = descriptor(ALICE, "Alice BCRP", 8443)
    vec("document", "descriptor", "A node descriptor signed by its own key",
        {"document": d, "public_key": ALICE.public_key_b64},
        {"signed_bytes": canonical({k: v for k, v in d.items() if k != "sig"}).decode()}, "valid")
    p = profile()
    vec("document", "profile", "A profile record signed by its origin", {"document": p, "public_key": ALICE.public_key_b64},
        {"signed_bytes": canonical({k: v for k, v in p.items() if k != "sig"}).decode()}, "valid")
    tampered = copy.deepcopy(p)
    tampered["ethnicity"] = "IC1"
    vec("document", "tampered-field", "A field changed after signing", {"document": tampered,
        "public_key": ALICE.public_key_b64}, {"error": "signature"}, "invalid")
    vec("document", "wrong-key", "Verified with another node's key", {"document": p, "public_key": BOB.public_key_b64},
        {"error": "signature"}, "invalid")
    reordered = dict(reversed(list(p.items())))
    vec("document", "member-order", "Member order does not matter: the canonical form is signed",
        {"document": reordered, "public_key": ALICE.public_key_b64}, {}, "valid")
    old = profile(revision=None)
    vec("document", "profile-without-revision", "A profile record from a node older than `revision`: still valid",
        {"document": old, "public_key": ALICE.public_key_b64},
        {"signed_bytes": canonical({k: v for k, v in old.items() if k != "sig"}).decode()}, "valid")

    profile_view_vectors(vec)
    query_counts_vectors(vec)
    query_limit_vectors(vec)

    # HTTP message signatures (RFC 9421) with Content-Digest (RFC 9530)
    url = "https://127.0.0.1:8443/v1/profiles/query"
    body = json.dumps({"gender": ["female"], "limit": 50}, separators=(",", ":"))
    headers = sign_request(ALICE, "POST", url, body.encode(), BOB.node_id, now=NOW, nonce="vector-nonce-0001")
    base = {"method": "POST", "url": url, "headers": headers, "body": body, "now": NOW + 5,
            "destination": BOB.node_id, "keys": {ALICE.node_id: ALICE.public_key_b64}}
    vec("http-signature", "query", "A signed query from Alice to Bob", base, {"key_id": ALICE.node_id}, "valid")
    vec("http-signature", "tampered-body", "Body changed: Content-Digest no longer matches",
        {**base, "body": body.replace("50", "51")}, {"error": "Content-Digest"}, "invalid")
    vec("http-signature", "wrong-destination", "Sent to Carol instead of Bob",
        {**base, "destination": CAROL.node_id}, {"error": "addressed"}, "invalid")
    vec("http-signature", "expired", "Received after expires", {**base, "now": NOW + 600}, {"error": "expire"},
        "invalid")
    vec("http-signature", "unknown-key", "Signed by a key the receiver does not know",
        {**base, "keys": {BOB.node_id: BOB.public_key_b64}}, {"error": "unknown"}, "invalid")
    vec("http-signature", "path-changed", "Sent to another path than signed",
        {**base, "url": url.replace("query", "queries")}, {"error": "signature"}, "invalid")
    no_alg = sign_request(ALICE, "POST", url, body.encode(), BOB.node_id, now=NOW, nonce="vector-nonce-0001",
                          include_alg=False)
    vec("http-signature", "no-alg", 'Signature-Input without alg: the signature verifies, but alg="ed25519" is required',
        {**base, "headers": no_alg}, {"error": 'alg="ed25519"'}, "invalid")
    other_alg = {**headers, "Signature-Input": headers["Signature-Input"].replace('alg="ed25519"', 'alg="hmac-sha256"')}
    vec("http-signature", "other-alg", "Signature-Input naming another algorithm", {**base, "headers": other_alg},
        {"error": "algorithm"}, "invalid")
    neutral = bytes([1] + [0] * 31)  # the identity point: a small-order key
    weak = node_id_for(neutral)
    weak_params = signature_params(NOW, weak, NOW + 30, "vector-nonce-0002")
    vec("http-signature", "small-order-key",
        "A small-order key (the identity point) with R = identity and S = 0, which verifies any message "
        "without the cofactor check: refused although OpenSSL would accept it",
        {**base, "headers": {"discnode-destination": BOB.node_id, "Content-Digest": content_digest(body.encode()),
                             "Signature-Input": "discnode=" + weak_params,
                             "Signature": "discnode=:" + base64.b64encode(neutral + bytes(32)).decode() + ":"},
         "keys": {weak: b64u(neutral)}}, {"error": "small-order"}, "invalid")

    # JSON on the wire: I-JSON (RFC 7493), UTF-8; the bytes as base64 (some are not UTF-8)
    def json_vec(slug: str, description: str, raw: bytes, expected: Any) -> None:
        ok = not (isinstance(expected, dict) and set(expected) == {"error"})
        vec("json", slug, description, {"base64": base64.b64encode(raw).decode()},
            {"value": expected} if ok else expected, "valid" if ok else "invalid")
    json_vec("plain", "An object in UTF-8", '{"name":"Zo\u00eb","n":[1,-2]}'.encode(), {"name": "Zo\u00eb", "n": [1, -2]})
    json_vec("zero-fraction", "20.0 and 2e1 are the integer 20", b'{"age_min":20.0,"age_max":2e1}',
             {"age_min": 20, "age_max": 20})
    json_vec("largest-integer", "2^53-1, the largest integer I-JSON carries exactly", b'{"n":9007199254740991}',
             {"n": 9007199254740991})
    json_vec("surrogate-pair", "An escaped surrogate pair is one character", b'{"s":"\\ud83d\\ude00"}',
             {"s": "\U0001F600"})
    json_vec("depth-32", "Nested 32 levels deep: the limit", b"[" * 32 + b"]" * 32, json.loads("[" * 32 + "]" * 32))
    json_vec("duplicate-name", "Two members of one name (I-JSON section 2.3)", b'{"type":"accept","type":"revoke"}',
             {"error": "appears twice"})
    json_vec("duplicate-name-nested", "Two members of one name inside a nested object",
             b'{"terms":{"share":["profiles"],"share":["images"]}}', {"error": "appears twice"})
    json_vec("utf-16", "UTF-16 (with a byte order mark)", '{"limit":5}'.encode("utf-16"), {"error": "UTF-8"})
    json_vec("utf-8-bom", "UTF-8 with a byte order mark", b"\xef\xbb\xbf{}", {"error": "byte order mark"})
    json_vec("latin-1", "Latin-1 text", '{"name":"Zo\u00eb"}'.encode("latin-1"), {"error": "UTF-8"})
    json_vec("big-integer", "An integer of 21 digits (over 2^53-1)", b'{"n":123456789012345678901}',
             {"error": "outside the range"})
    json_vec("integer-2-53", "2^53: one over the range", b'{"n":9007199254740992}', {"error": "outside the range"})
    json_vec("nan", "NaN is not JSON", b'{"n":NaN}', {"error": "NaN"})
    json_vec("infinity", "Infinity is not JSON", b'{"n":Infinity}', {"error": "Infinity"})
    json_vec("lone-surrogate", "An escaped unpaired surrogate is not Unicode text", b'{"s":"\\ud800"}',
             {"error": "surrogate"})
    json_vec("depth-33", "Nested 33 levels deep", b"[" * 33 + b"]" * 33, {"error": "nested deeper than 32"})
    json_vec("depth-5000", "Nested 5,000 levels deep", b'{"text":' + b"[" * 5000 + b"]" * 5000 + b"}",
             {"error": "nested deeper than 32"})

    # audit log: the chain, signed heads, what a witness makes of a head, what a head proves
    entries, hashes = audit_chain()
    vec("audit-head", "chain", "Three audit entries and their chained hashes (hash_0 is 64 zeros)",
        {"entries": entries}, {"hashes": hashes}, "valid")
    head, older = audit_heads()
    vec("audit-head", "signed", "Alice's signed head after entry 3",
        {"document": head, "signer": ALICE.node_id, "public_key": ALICE.public_key_b64},
        {"signed_bytes": canonical({k: v for k, v in head.items() if k != "sig"}).decode()}, "valid")
    vec("audit-head", "tampered-entries", "The entry count raised after signing",
        {"document": {**head, "entries": 4}, "signer": ALICE.node_id, "public_key": ALICE.public_key_b64},
        {"error": "signature"}, "invalid")
    vec("audit-head", "another-nodes-head", "Bob's genuine head, sent by Alice as if hers",
        {"document": new_head(BOB, 3, hashes[2], NOW_TS), "signer": ALICE.node_id,
         "public_key": ALICE.public_key_b64}, {"error": "whose log"}, "invalid")
    for slug, description, held, incoming in (
            ("first", "No head held yet: the first becomes the latest", None, older),
            ("newer", "More entries than the one held: becomes the latest", older, head),
            ("same", "The head already held", head, head),
            ("rollback", "Fewer entries than one already held: kept as evidence, flagged", head, older),
            ("fork", "As many entries as one held, another hash: kept as evidence, flagged", head,
             new_head(ALICE, 3, "e3" * 32, NOW_TS))):
        vec("audit-head", f"witness-{slug}", description, {"held": held, "incoming": incoming},
            {"outcome": compare(held, incoming).value}, "valid")
    for slug, description, length, stored in (
            ("intact", "The log has grown past the head, and entry 3 still has its hash", 3, hashes),
            ("truncated", "The log ends at entry 2; the head says 3", 2, hashes[:2]),
            ("rewritten", "Entry 3's hash differs: an entry at or before 3 was changed", 3, hashes[:2] + ["e3" * 32])):
        finding = against(head, length, lambda n, stored=stored: stored[n - 1] if n <= len(stored) else None,
                          "partner")
        vec("audit-head", f"verify-{slug}", description, {"head": head, "log_hashes": stored},
            {"finding": finding and {"kind": finding.kind, "entry": finding.entry}}, "valid")
    entries, hashes = audit_chain_actor()
    vec("audit-head", "chain-actor", "Entries naming who acted (actor) and one without (a peer's request)",
        {"entries": entries}, {"hashes": hashes}, "valid")

    # proposals and their outcomes (spec 8.4): what the receiver checks before anything else
    p = proposal()
    keys = {"alice": ALICE.public_key_b64, "bob": BOB.public_key_b64}
    vec("proposal", "signed", "Bob's proposal to Alice, checked by Alice (signer: the request's signer)",
        {"document": p, "signer": BOB.node_id, "me": ALICE.node_id, "public_key": keys["bob"]},
        {"signed_bytes": canonical({k: v for k, v in p.items() if k != "sig"}).decode()}, "valid")
    vec("proposal", "tampered-about", "The profile it is about changed after signing",
        {"document": {**p, "about": "zzzzzzzzzzzz"}, "signer": BOB.node_id, "me": ALICE.node_id,
         "public_key": keys["bob"]}, {"error": "signature"}, "invalid")
    vec("proposal", "third-partys-profile", "Names Carol's profile: a proposal names only its sender's own",
        {"document": sign_document({**p, "as": {"origin": CAROL.node_id, "id": "bcdefghi3456"}}, BOB),
         "signer": BOB.node_id, "me": ALICE.node_id, "public_key": keys["bob"]}, {"error": "own profile"}, "invalid")
    vec("proposal", "relayed", "Carol's genuine proposal, sent by Bob",
        {"document": sign_document({**p, "from": CAROL.node_id, "as": None, "reason": "seen her ID"}, CAROL),
         "signer": BOB.node_id, "me": ALICE.node_id, "public_key": keys["bob"]}, {"error": "node that signed"},
        "invalid")
    vec("proposal", "no-reason", "Names a person without a profile of the sender's, and gives no reason",
        {"document": sign_document({**p, "as": None}, BOB), "signer": BOB.node_id, "me": ALICE.node_id,
         "public_key": keys["bob"]}, {"error": "reason"}, "invalid")
    vec("proposal", "misaddressed", "Addressed to Carol, delivered to Alice",
        {"document": sign_document({**p, "to": CAROL.node_id}, BOB), "signer": BOB.node_id, "me": ALICE.node_id,
         "public_key": keys["bob"]}, {"error": "another node"}, "invalid")
    o = outcome()
    vec("proposal", "outcome", "Alice's outcome, checked by Bob",
        {"document": o, "signer": ALICE.node_id, "me": BOB.node_id, "public_key": keys["alice"]},
        {"signed_bytes": canonical({k: v for k, v in o.items() if k != "sig"}).decode()}, "valid")
    vec("proposal", "outcome-flipped", "The outcome changed from confirmed to declined after signing",
        {"document": {**o, "outcome": "declined"}, "signer": ALICE.node_id, "me": BOB.node_id,
         "public_key": keys["alice"]}, {"error": "signature"}, "invalid")

    # notices and receipts (spec 8.7)
    n, r = notice(), receipt()
    vec("notice", "erasure", "Alice's erasure notice, checked by Bob",
        {"document": n, "signer": ALICE.node_id, "me": BOB.node_id, "public_key": ALICE.public_key_b64},
        {"signed_bytes": canonical({k: v for k, v in n.items() if k != "sig"}).decode()}, "valid")
    fix = notice("rectification", 4)
    vec("notice", "rectification", "Alice's rectification notice (the record is now at revision 4), checked by Bob",
        {"document": fix, "signer": ALICE.node_id, "me": BOB.node_id, "public_key": ALICE.public_key_b64},
        {"signed_bytes": canonical({k: v for k, v in fix.items() if k != "sig"}).decode()}, "valid")
    vec("notice", "tampered-kind", "Changed from rectification to erasure after signing",
        {"document": {**fix, "kind": "erasure"}, "signer": ALICE.node_id, "me": BOB.node_id,
         "public_key": ALICE.public_key_b64}, {"error": "signature"}, "invalid")
    vec("notice", "another-origin", "Carol's notice about Alice's record: a node erases only its own records",
        {"document": sign_document({**n, "from": CAROL.node_id}, CAROL), "signer": CAROL.node_id,
         "me": BOB.node_id, "public_key": CAROL.public_key_b64}, {"error": "own records"}, "invalid")
    vec("notice", "relayed", "Alice's genuine notice, sent by Carol",
        {"document": n, "signer": CAROL.node_id, "me": BOB.node_id, "public_key": CAROL.public_key_b64},
        {"error": "node that signed"}, "invalid")
    vec("notice", "misaddressed", "Addressed to Carol, delivered to Bob",
        {"document": sign_document({**n, "to": CAROL.node_id}, ALICE), "signer": ALICE.node_id,
         "me": BOB.node_id, "public_key": ALICE.public_key_b64}, {"error": "another node"}, "invalid")
    receipt_input = {"document": r, "signer": BOB.node_id, "me": ALICE.node_id, "public_key": BOB.public_key_b64,
                     "notice": n, "notice_hash": document_hash(n)}
    vec("notice", "receipt", "Bob's receipt, checked by Alice against the notice she sent him", receipt_input,
        {"signed_bytes": canonical({k: v for k, v in r.items() if k != "sig"}).decode()}, "valid")
    vec("notice", "receipt-other-notice", "A receipt for another notice (its hash differs)",
        {**receipt_input, "document": sign_document({**r, "notice_hash": "00" * 32}, BOB)},
        {"error": "not for this notice"}, "invalid")
    vec("notice", "receipt-from-another-node", "Carol's receipt for the notice Alice sent Bob",
        {**receipt_input, "document": sign_document({**r, "from": CAROL.node_id}, CAROL), "signer": CAROL.node_id,
         "public_key": CAROL.public_key_b64}, {"error": "node the notice was sent to"}, "invalid")

    # sightings (spec 8.5)
    sg = sighting()
    vec("sighting", "signed", "Bob's sighting, checked by Alice",
        {"document": sg, "signer": BOB.node_id, "me": ALICE.node_id, "public_key": BOB.public_key_b64},
        {"signed_bytes": canonical({k: v for k, v in sg.items() if k != "sig"}).decode()}, "valid")
    vec("sighting", "tampered-place", "The place changed after signing",
        {"document": {**sg, "at": "Elsewhere"}, "signer": BOB.node_id, "me": ALICE.node_id,
         "public_key": BOB.public_key_b64}, {"error": "signature"}, "invalid")
    vec("sighting", "relayed", "Carol's genuine sighting, sent by Bob",
        {"document": sign_document({**sg, "from": CAROL.node_id}, CAROL), "signer": BOB.node_id,
         "me": ALICE.node_id, "public_key": BOB.public_key_b64}, {"error": "node that signed"}, "invalid")
    vec("sighting", "after-signing", "Dated two days after it was signed",
        {"document": sign_document({**sg, "when": "2026-11-26"}, BOB), "signer": BOB.node_id,
         "me": ALICE.node_id, "public_key": BOB.public_key_b64}, {"error": "after it was signed"}, "invalid")
    vec("sighting", "control-characters", "A place carrying a terminal escape",
        {"document": sign_document({**sg, "at": "Market\u001b[2J"}, BOB), "signer": BOB.node_id,
         "me": ALICE.node_id, "public_key": BOB.public_key_b64}, {"error": "at"}, "invalid")

    # statistics (spec 8.7)
    st = statistics_reply()
    bob = {"signer": BOB.node_id, "me": ALICE.node_id, "public_key": BOB.public_key_b64}
    vec("statistics", "signed", "Bob's statistics reply, checked by Alice",
        {"document": st, **bob}, {"signed_bytes": canonical({k: v for k, v in st.items() if k != "sig"}).decode()},
        "valid")
    vec("statistics", "tampered-total", "The counts changed after signing",
        {"document": {**st, "total": st["total"] + 5}, **bob}, {"error": "signature"}, "invalid")
    vec("statistics", "relayed", "Carol's genuine statistics, sent by Bob",
        {"document": sign_document({**st, "from": CAROL.node_id}, CAROL), **bob}, {"error": "node that signed"},
        "invalid")
    vec("statistics", "small-count", "A count under 5, signed by its sender: refused whoever signed it",
        {"document": sign_document({**st, "by_week": {**st["by_week"], "2026-W40": 3}}, BOB), **bob},
        {"error": "by_week"}, "invalid")
    vec("statistics", "inconsistent", "Places that do not add up to the total: not one release",
        {"document": sign_document({**st, "by_area": st["by_area"][:1]}, BOB), **bob},
        {"error": "adds up to"}, "invalid")
    vec("statistics", "release", "Incidents as a node holds them (places as recorded) and the tables it "
        "publishes: places and tag combinations under 5 become other (null); a week-and-month fragment under "
        "5 is withheld everywhere; every count is then 0 or at least 5",
        {"window": STATS_WINDOW.to_wire(),
         "incidents": [{"date": i.date.isoformat(), "place": i.place, "tags": list(i.tags)} for i in stats_incidents()]},
        release(stats_incidents(), STATS_WINDOW).to_wire(), "valid")

    # same-person links (spec 8.6)
    lk, la = link(), link_answer()
    vec("link", "signed", "Alice's link, checked by Bob",
        {"kind": "link", "document": lk, "signer": ALICE.node_id, "me": BOB.node_id,
         "public_key": ALICE.public_key_b64},
        {"signed_bytes": canonical({k: v for k, v in lk.items() if k != "sig"}).decode()}, "valid")
    vec("link", "swapped", "The two profiles swapped after signing",
        {"kind": "link", "document": {**lk, "mine": lk["yours"], "yours": lk["mine"]}, "signer": ALICE.node_id,
         "me": BOB.node_id, "public_key": ALICE.public_key_b64}, {"error": "signature"}, "invalid")
    vec("link", "answer", "Bob's answer, checked by Alice",
        {"kind": "link-answer", "document": la, "signer": BOB.node_id, "me": ALICE.node_id,
         "public_key": BOB.public_key_b64},
        {"signed_bytes": canonical({k: v for k, v in la.items() if k != "sig"}).decode()}, "valid")
    vec("link", "answer-relayed", "Bob's answer, sent to Alice by Carol",
        {"kind": "link-answer", "document": la, "signer": CAROL.node_id, "me": ALICE.node_id,
         "public_key": CAROL.public_key_b64}, {"error": "node that signed"}, "invalid")

    # consent state from documents (pure)
    o1 = offer(ALICE, BOB, 8443)
    acc = respond(Action.ACCEPT, BOB, ALICE, o1)
    rev = respond(Action.REVOKE, BOB, ALICE, o1, "2026-11-24T16:05:00Z")
    o2 = offer(ALICE, BOB, 8443, prev=document_hash(o1), at="2026-11-24T16:05:00Z")
    acc2 = respond(Action.ACCEPT, BOB, ALICE, o2, "2026-11-24T16:05:00Z")
    rej = respond(Action.REJECT, BOB, ALICE, o1)
    forged_accept = respond(Action.ACCEPT, ALICE, BOB, o1)  # the offerer "accepting" its own offer
    cases = [
        ("offered", "Alice offered; from Alice's side", [o1], ALICE, "offered"),
        ("pending", "Alice offered; from Bob's side", [o1], BOB, "pending"),
        ("active", "Offer and accept", [o1, acc], ALICE, "active"),
        ("rejected", "Offer and reject", [o1, rej], BOB, "rejected"),
        ("revoked", "Accepted, then revoked by Bob", [o1, acc, rev], ALICE, "revoked"),
        ("renewed", "Revoked, then a new offer naming the old one (prev), accepted", [o1, acc, rev, o2, acc2],
         ALICE, "active"),
        ("self-accept", "An accept signed by the offerer does not make an agreement", [o1, forged_accept], BOB,
         "pending"),
    ]
    for slug, description, docs, me, state in cases:
        peer = BOB if me is ALICE else ALICE
        vec("consent-state", slug, description,
            {"me": me.node_id, "peer": peer.node_id, "today": TODAY.isoformat(), "documents": docs},
            {"state": state}, "valid")
    lapsed = [o1, acc]
    vec("consent-state", "lapsed", "Accepted, but the review-by date has passed",
        {"me": ALICE.node_id, "peer": BOB.node_id, "today": "2027-11-25", "documents": lapsed},
        {"state": "lapsed"}, "valid")
    # Self-check: the generator's expectations hold for this implementation.
    for name, v in out.items():
        if name.startswith("consent-state/"):
            i = v["input"]
            got = derive(i["me"], i["peer"], i["documents"], dt.date.fromisoformat(i["today"])).state.value
            assert got == v["expected"]["state"], (name, got)
    match_vectors(vec)
    key_event_vectors(vec)
    assert node_id_for(bytes.fromhex(KEYS["alice"]["public_key_hex"])) == ALICE.node_id
    assert b64u(ALICE.public_key) == ALICE.public_key_b64
    evidence_vectors(vec)
    return out


#: Published test scalars for protocol/vectors/match (never use them for anything else).
MATCH_KEY = bytes.fromhex("0b" * 31 + "00")
MATCH_BLIND = bytes.fromhex("07" * 31 + "00")
#: A point of order 8 (small order) and a point of the full group outside the prime-order subgroup.
SMALL_ORDER = "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"
MIXED_ORDER = "c79adf3715666d06daf6a5c3fb885da5620c07bd81f43c264d12c9acf62351e4"  # 9*G plus SMALL_ORDER
NON_CANONICAL = "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"


def match_vectors(vec: Any) -> None:
    """protocol/vectors/match: the Level Two key's normalisation, then the OPRF's steps with the
    published scalars, then elements an evaluator must refuse."""
    names = [
        ("plain", "Jane", "Example", [], "1990-02-03"),
        ("case-accents-apostrophe", "Seán", "O\u2019Brien", [], "1985-07-30"),
        ("hyphen-spaces-punctuation", "  Mary-Jane ", "SMITH-JONES.", [], "2001-12-31"),
        ("ligature-sharp-s", "\ufb01ona", "Stra\u00dfe", [], "1979-01-01"),
        ("aliases", "Robert", "Brown", ["Bobby B", "R. Brown", "bobby b"], "1992-05-06"),
    ]
    for slug, first, last, aliases, dob in names:
        record = {"first_name": first, "last_name": last, "aliases": aliases, "dob": dob}
        vec("match", f"key-{slug}", "The Level Two keys of a profile (name, then each alias), UTF-8, sorted",
            {"profile": record}, {"keys": [k.decode() for k in namekey.keys(record)]}, "valid")
    vec("match", "key-bad-date", "A date of birth not written YYYY-MM-DD is refused",
        {"profile": {"first_name": "Jane", "last_name": "Example", "aliases": [], "dob": "3/2/1990"}},
        {"error": "is not a date"}, "invalid")
    for text in ("jane example|1990-02-03", "sean obrien|1985-07-30"):
        data = text.encode()
        r, blinded = oprf.blind(data, MATCH_BLIND)
        evaluated = oprf.evaluate(MATCH_KEY, blinded)
        unblinded = oprf.unblind(r, evaluated)
        vec("match", "oprf-" + text.split("|")[0].replace(" ", "-"),
            "OPRF steps with the published key k and blind r (hex, 32-byte little-endian scalars)",
            {"key_hex": MATCH_KEY.hex(), "blind_hex": MATCH_BLIND.hex(), "input": text},
            {"hash_to_group_hex": oprf.hash_to_group(data).hex(), "blinded_hex": blinded.hex(),
             "evaluated_hex": evaluated.hex(), "unblinded_hex": unblinded.hex(),
             "output_hex": oprf.finalize(data, unblinded).hex()}, "valid")
        assert oprf.finalize(data, unblinded) == oprf.output(MATCH_KEY, data)
    for slug, point in (("identity", oprf.IDENTITY.hex()), ("small-order", SMALL_ORDER), ("mixed-order", MIXED_ORDER),
                        ("non-canonical", NON_CANONICAL), ("short", "01" * 31)):
        vec("match", f"evaluate-{slug}", "An evaluator refuses a blinded element that is not a valid "
            "element of the prime-order group", {"key_hex": MATCH_KEY.hex(), "blinded_hex": point},
            {"error": "blinded element"}, "invalid")


def match_examples() -> dict[str, Any]:
    held = [oprf.output(MATCH_KEY, k) for k in (b"jane example|1990-02-03", b"je|1990-02-03")]
    data = b"jane example|1990-02-03"
    _, blinded = oprf.blind(data, MATCH_BLIND)
    return {
        "match-evaluate.json": {"blinded": [b64u(blinded)]},
        "match-evaluate-reply.json": {"evaluated": [b64u(oprf.evaluate(MATCH_KEY, blinded))],
                                      "quota": {"limit": 100, "used": 1, "day": "2026-11-24"}},
        "match-set-reply.json": {"outputs": sorted(b64u(o) for o in held)},
        "match-reveal.json": {"ref": base64.b32encode(held[0][:10]).decode().lower()},
        "match-reveal-reply.json": {"request": "5e4f3a2b1c0d", "state": "allowed", "records": [profile()]},
    }


def render(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def files() -> dict[Path, str]:
    out = {HERE / "examples" / name: render(doc) for name, doc in examples().items()}
    out.update({HERE / "vectors" / name: render(doc) for name, doc in vectors().items()})
    return out


def main(argv: list[str]) -> int:
    wanted = files()
    if "--check" in argv:
        stale = [str(p.relative_to(HERE)) for p, text in wanted.items() if not p.exists() or p.read_text() != text]
        if stale:
            print("out of date (run python protocol/generate.py):", *stale, sep="\n  ")
            return 1
        return 0
    for path, text in wanted.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"wrote {len(wanted)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
