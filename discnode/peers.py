"""Known peers (pinned keys, addresses, TLS fingerprints) and their consent documents.

The one module that writes the `peers` and `consent_docs` tables. Every document is verified
against the pinned key of the node that signed it before it is stored.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Mapping


from . import PROTOCOL_VERSION, audit, keys, schemas, store
from .consent import Agreement, derive
from .documents.succession import KeyPeriod, verify_chain
from .handling import Audience
from .errors import Busy, InvalidInput, NotFound, RateLimited, Unauthenticated
from .identity import Identity, b64u_decode, node_id_for
from .signing import document_hash, verify_document
from .untrusted import peer_url

#: Offers from nodes we have never heard of (and do not expect) are capped, in total and per source
#: address, so that strangers cannot fill the table. A node ID the administrator registered with
#: `peer expect` is never capped: no number of strangers can lock out a partner they expect.
MAX_UNANSWERED_STRANGERS = 50
MAX_STRANGERS_PER_ADDRESS = 10
#: What a refused stranger is told to wait (Retry-After): the cap frees only when an administrator
#: answers offers, which takes minutes at best.
STRANGER_RETRY_AFTER = 600

# A stranger holding a slot: a node this node never vouched for (no offer or accept of ours), not
# expected, whose latest document here (by arrival) is its own offer, i.e. an offer waiting for an
# answer. Answering it (reject) frees the slot; offering again after a reject takes one again.
_STRANGERS = ("SELECT count(*) FROM peers p WHERE p.node_id NOT IN (SELECT node_id FROM expected_peers) "
              "AND NOT EXISTS (SELECT 1 FROM consent_docs d WHERE d.peer = p.node_id AND d.signer != p.node_id "
              "AND d.type IN ('offer', 'accept')) "
              "AND (SELECT d.type FROM consent_docs d WHERE d.peer = p.node_id "
              "ORDER BY d.received DESC, d.rowid DESC LIMIT 1) = 'offer'")


@dataclass(frozen=True)
class Peer:
    node_id: str
    name: str
    url: str
    public_key: bytes
    tls_fingerprint: str
    descriptor: Mapping[str, Any]
    #: The node's earlier keys, with the periods they were valid in (spec 4.6): records and
    #: documents it signed with them then still verify. Empty for a node that never rotated.
    former_keys: tuple[KeyPeriod, ...] = ()


def _check_version(descriptor: Any) -> None:
    """A node that speaks only a newer major version gets a reason an administrator can act on,
    not a schema error (spec section 13)."""
    v = descriptor.get("v") if isinstance(descriptor, dict) else None
    if isinstance(v, int) and not isinstance(v, bool) and v > PROTOCOL_VERSION:
        raise InvalidInput(f"that node speaks discnode protocol v{v} only; this node implements v{PROTOCOL_VERSION}. "
                           "Upgrade discnode on this node (see the README, Upgrading) and try again.")


def verify_descriptor(descriptor: Any, expect: str | None = None) -> Peer:
    """Check a node descriptor is well formed and self-signed by the key its node ID names: its
    only key's fingerprint, or, with a key history, the current key of a chain whose inception
    key's fingerprint is the node ID."""
    _check_version(descriptor)
    schemas.validate("descriptor", descriptor)
    peer_url(descriptor["url"], "descriptor url")
    key = b64u_decode(descriptor["public_key"])
    events = descriptor.get("key_events")
    if events is not None:
        chain = verify_chain(events)
        if chain.node_id != descriptor["node_id"]:
            raise Unauthenticated("descriptor's node ID is not the one its key history names")
        if chain.current != key:
            raise Unauthenticated("descriptor's key is not the current key of its key history")
    elif len(key) != 32 or node_id_for(key) != descriptor["node_id"]:
        raise Unauthenticated("descriptor's node ID is not the fingerprint of its key")
    verify_document(descriptor, key)
    if expect is not None and descriptor["node_id"] != expect:
        # Its real ID is not printed: pasting it in would defeat the check, which is the point of --expect.
        raise Unauthenticated(f"the node at that address does not have the ID {expect}; NOT adding it. "
                              "Check the ID with the other partnership's administrator by phone or in "
                              "person, and the address too.")
    return Peer(descriptor["node_id"], descriptor["name"], descriptor["url"], key,
                descriptor["tls_fingerprint"], descriptor)


def _peer_from_row(row: Mapping[str, Any]) -> Peer:
    return Peer(row["node_id"], row["name"], row["url"], b64u_decode(row["public_key"]),
                row["tls_fingerprint"], json.loads(row["descriptor"]))


def _with_history(db: store.DB, peer: Peer) -> Peer:
    former = keys.history(db, peer.node_id)[:-1]
    if not former:
        return peer
    return Peer(peer.node_id, peer.name, peer.url, peer.public_key, peer.tls_fingerprint, peer.descriptor, former)


def get(db: store.DB, node_id: str) -> Peer:
    row = db.execute("SELECT * FROM peers WHERE node_id = ?", [node_id]).fetchone()
    if row is None:
        raise NotFound(f"no peer {node_id}; `discnode peer list` shows the known ones")
    cols = [d[0] for d in db.execute("SELECT * FROM peers LIMIT 0").description]
    return _with_history(db, _peer_from_row(dict(zip(cols, row))))


def public_key(db: store.DB, node_id: str) -> bytes | None:
    row = db.execute("SELECT public_key FROM peers WHERE node_id = ?", [node_id]).fetchone()
    return b64u_decode(row[0]) if row else None


def all_peers(db: store.DB) -> list[Peer]:
    cur = db.execute("SELECT * FROM peers ORDER BY name, node_id")
    cols = tuple(d[0] for d in cur.description)
    rows = cur.fetchall()
    # One query for which peers have former keys (a history of more than the inception key), not
    # one per peer: a search lists every peer. For the others _with_history changes nothing.
    rotated = {r[0] for r in db.execute("SELECT node_id FROM key_events GROUP BY node_id HAVING count(*) > 1")}
    out = []
    for row in rows:
        peer = _peer_of(cols, tuple(row))
        out.append(_with_history(db, peer) if peer.node_id in rotated else peer)
    return out


#: Peers as built from their rows, by the row's every column: parsing each descriptor's JSON again
#: on every search was most of listing the peers. A changed row (a new address, key or descriptor)
#: is a new key. The Peer is frozen; nothing writes into its descriptor.
_FROM_ROW: dict[tuple[tuple[str, ...], tuple[Any, ...]], Peer] = {}


def _peer_of(cols: tuple[str, ...], row: tuple[Any, ...]) -> Peer:
    peer = _FROM_ROW.get((cols, row))
    if peer is None:
        if len(_FROM_ROW) >= 4096:
            _FROM_ROW.clear()
        peer = _FROM_ROW[(cols, row)] = _peer_from_row(dict(zip(cols, row)))
    return peer


def keys_for(db: store.DB, node_id: str, when: Any) -> list[bytes]:
    """The keys that may have signed a document of node_id dated `when` (its issued_at): the
    pinned key, and within their periods the keys it had before a rotation (spec 4.6). The pinned
    key is tried first; an earlier key only for a date inside its period (so never, after a
    succession's grace period, for a document dated after it)."""
    pinned = public_key(db, node_id)
    out = [pinned] if pinned is not None else []
    if isinstance(when, str):
        out += [k for k in keys.keys_at(db, node_id, when) if k not in out]
    return out


def verify_by_peer(db: store.DB, node_id: str, doc: Mapping[str, Any], when: Any = None) -> bytes:
    """Verify a document node_id signed (dated `when`, default its issued_at) with whichever of its
    keys was valid then; the key, or Unauthenticated."""
    candidates = keys_for(db, node_id, doc.get("issued_at") if when is None else when)
    if not candidates:
        raise Unauthenticated(f"unknown signer {node_id}")
    for key in candidates:
        try:
            verify_document(doc, key)
            return key
        except Unauthenticated:
            continue
    raise Unauthenticated("document signature does not verify")


def admit_offer(db: store.DB, me: str, node_id: str, address: str) -> None:
    """Whether an unasked offer from `node_id`, arriving from `address`, may be stored: always from
    a node this node vouched for or its administrator expects; from a stranger only while the caps
    allow (RateLimited when its address holds too many unanswered offers, Busy when all strangers
    together do; both with Retry-After). Call inside the transaction that stores the offer."""
    if vouched_for(db, me, node_id) or is_expected(db, node_id):
        return
    if db.execute(_STRANGERS + " AND p.offered_from = ? AND p.node_id != ?", [address, node_id]
                  ).fetchone()[0] >= MAX_STRANGERS_PER_ADDRESS:
        raise RateLimited(f"too many unanswered offers from {address}; try again later",
                          retry_after=STRANGER_RETRY_AFTER)
    if db.execute(_STRANGERS + " AND p.node_id != ?", [node_id]).fetchone()[0] >= MAX_UNANSWERED_STRANGERS:
        raise Busy("too many unanswered offers from unknown nodes; try again later",
                   retry_after=STRANGER_RETRY_AFTER)


def remember(db: store.DB, descriptor: Mapping[str, Any], *, stranger_ok: bool = True,
             offered_from: str | None = None) -> Peer:
    """Store or refresh a peer from a verified descriptor. A newer descriptor replaces an older one
    (address change); an older one is ignored; the key never changes (the ID is its hash).
    `offered_from`: the address an unasked offer came from (admit_offer counts them per address).

    `issued_at` has one-second resolution, so a node that moves within the second it last signed
    would otherwise be ignored: a different descriptor with the same `issued_at` also replaces the
    held one (both carry the node's own signature, so either is genuine)."""
    peer = verify_descriptor(descriptor)
    now = store.now_ts()
    events = descriptor.get("key_events")
    with store.write(db) as conn:
        row = conn.execute("SELECT descriptor, public_key FROM peers WHERE node_id = ?", [peer.node_id]).fetchone()
        rotated = _adopt_key_history(db, peer, events, row[1] if row else None)
        if row is None:
            if not stranger_ok:
                raise NotFound(f"no peer {peer.node_id}")
            conn.execute(
                "INSERT INTO peers (node_id, name, url, public_key, tls_fingerprint, descriptor, added, updated, "
                "offered_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [peer.node_id, peer.name, peer.url, descriptor["public_key"], peer.tls_fingerprint,
                 json.dumps(dict(descriptor)), now, now, offered_from])
        else:
            if offered_from is not None:
                conn.execute("UPDATE peers SET offered_from = ? WHERE node_id = ?", [offered_from, peer.node_id])
            if not rotated and not _supersedes(descriptor, json.loads(row[0])):
                return get(db, peer.node_id)
            conn.execute("UPDATE peers SET name = ?, url = ?, public_key = ?, tls_fingerprint = ?, descriptor = ?, "
                         "updated = ? WHERE node_id = ?",
                         [peer.name, peer.url, descriptor["public_key"], peer.tls_fingerprint,
                          json.dumps(dict(descriptor)), now, peer.node_id])
            if rotated:
                audit.append(db, "peer-key-rotated", peer.node_id, seq=len(events) - 1,
                             old_key=row[1], new_key=descriptor["public_key"])
    return get(db, peer.node_id)


def _adopt_key_history(db: store.DB, peer: Peer, events: Any, pinned: str | None) -> bool:
    """Check a verified descriptor's key history against what this node holds for that peer, and
    store its new events (inside the caller's transaction). True if it names a new current key.
    Refused (Unauthenticated, nothing changed): a history that does not continue the one held (a
    rollback or a forgery), and a descriptor without history for a node whose history is held.
    A first history for a node pinned before it had one is taken as it is: its inception key is
    the pinned key (the node ID is its fingerprint), and pre-rotation protects that node from the
    moment this node holds its commitment (threat model, residual risks)."""
    held = keys.events_of(db, peer.node_id)
    if events is None:
        if held:
            raise Unauthenticated(f"descriptor of {peer.node_id} carries no key history, but this node holds one "
                                  "for it (a rollback to an old key?); nothing changed")
        return False
    chain = verify_chain(events)
    keys.record(db, chain)
    return pinned is not None and pinned != events[-1]["key"]


def is_expected(db: Any, node_id: str) -> bool:
    return db.execute("SELECT 1 FROM expected_peers WHERE node_id = ?", [node_id]).fetchone() is not None


def expect(db: store.DB, node_id: str) -> bool:
    """Register a node ID the administrator expects an offer from; False if it already was."""
    with store.write(db) as conn:
        return conn.execute("INSERT OR IGNORE INTO expected_peers (node_id, added) VALUES (?, ?)",
                            [node_id, store.now_ts()]).rowcount == 1


def unexpect(db: store.DB, node_id: str) -> bool:
    with store.write(db) as conn:
        return conn.execute("DELETE FROM expected_peers WHERE node_id = ?", [node_id]).rowcount == 1


def expected(db: store.DB) -> list[dict[str, str]]:
    return [{"node_id": r[0], "added": r[1]}
            for r in db.execute("SELECT node_id, added FROM expected_peers ORDER BY added, node_id")]


def _supersedes(new: Mapping[str, Any], held: Mapping[str, Any]) -> bool:
    if new["issued_at"] != held["issued_at"]:
        return bool(new["issued_at"] > held["issued_at"])
    return any(new[k] != held.get(k) for k in ("name", "url", "tls_fingerprint"))


def add_document(db: store.DB, peer: str, doc: Mapping[str, Any], *, delivered: bool,
                 own: Identity | None = None) -> str:
    """Store a consent document after checking its schema and its signer's signature (the peer's
    keys, or with own, this node's own current key)."""
    schemas.validate("consent", doc)
    if {doc["from"], doc["to"]} != {peer, own.node_id if own else doc["to"]} or peer not in (
            doc["from"], doc["to"]):
        raise InvalidInput("consent document is not between this node and that peer")
    if own and doc["from"] != peer:
        verify_document(doc, own.public_key)
    else:
        verify_by_peer(db, doc["from"], doc)
    digest = document_hash(doc)
    with store.write(db) as conn:
        conn.execute(
            "INSERT OR IGNORE INTO consent_docs (hash, peer, type, signer, issued_at, doc, delivered, received) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [digest, peer, doc["type"], doc["from"], doc["issued_at"], json.dumps(dict(doc)), int(delivered),
             store.now_ts()])
    return digest


def documents(db: store.DB, peer: str) -> list[dict[str, Any]]:
    return [json.loads(r[0]) for r in db.execute(
        "SELECT doc FROM consent_docs WHERE peer = ? ORDER BY issued_at, hash", [peer]).fetchall()]


#: Agreements derived before, by what they were derived from: (me, peer, day, the documents'
#: hashes in order). A search derives every partner's agreement (twice a page, at 100 partners 200
#: derivations), and reading the documents' JSON and deriving was nearly all of it. The key is the
#: documents' content (consent_docs.hash is document_hash of the document stored beside it, and the
#: table only ever gains rows), so any new document, a revocation written by another process
#: included, is a new key and takes effect at the very next call; nothing is ever invalidated.
_DERIVED: dict[tuple[str, str, dt.date, tuple[str, ...]], Agreement] = {}
_DERIVED_MAX = 4096


def agreement(db: store.DB, me: str, peer: str, today: dt.date) -> Agreement:
    return _derived(db, me, peer, today, consent_hashes(db, peer))


def agreement_and_hashes(db: store.DB, me: str, peer: str, today: dt.date) -> tuple[Agreement, tuple[str, ...]]:
    """The agreement, and the hashes of the documents it was derived from, in the order of
    `consent_hashes`. A document's row is never changed once stored (its hash, the primary key, is
    of its content), so the same hashes mean the same documents and, on the same day, the same
    agreement: what lets the server keep a derived agreement until they change."""
    rows = db.execute("SELECT hash, doc FROM consent_docs WHERE peer = ? ORDER BY issued_at, hash", [peer]).fetchall()
    hashes = tuple(r[0] for r in rows)
    return derive(me, peer, [json.loads(r[1]) for r in rows], today, hashes), hashes


def consent_hashes(db: store.DB, peer: str) -> tuple[str, ...]:
    """The hashes of every consent document held with `peer` (see agreement_and_hashes)."""
    return tuple(r[0] for r in db.execute("SELECT hash FROM consent_docs WHERE peer = ? ORDER BY issued_at, hash",
                                          [peer]).fetchall())


def agreements(db: store.DB, me: str, today: dt.date) -> dict[str, Agreement]:
    """Every peer's agreement (by node ID; State.NONE for a peer without documents), from one query."""
    by_peer: dict[str, list[str]] = {}
    for peer, digest in db.execute("SELECT peer, hash FROM consent_docs ORDER BY peer, issued_at, hash"):
        by_peer.setdefault(peer, []).append(digest)
    return {peer: _derived(db, me, peer, today, tuple(hashes)) for peer, hashes in by_peer.items()}


def _derived(db: store.DB, me: str, peer: str, today: dt.date, hashes: tuple[str, ...]) -> Agreement:
    found = _DERIVED.get((me, peer, today, hashes))
    if found is not None:
        return found
    rows = db.execute("SELECT hash, doc FROM consent_docs WHERE peer = ? ORDER BY issued_at, hash", [peer]).fetchall()
    found = derive(me, peer, [json.loads(r[1]) for r in rows], today, [r[0] for r in rows])
    if len(_DERIVED) >= _DERIVED_MAX:
        _DERIVED.clear()
    # Keyed by the hashes of the documents it was derived from (a document may have arrived since
    # `hashes` was read: then this entry serves the next call, and that one's key finds nothing).
    _DERIVED[(me, peer, today, tuple(r[0] for r in rows))] = found
    return found


def audience(db: store.DB, me: str, peer: str, today: dt.date) -> Audience:
    """What this node may serve `peer` under their agreement (handling.py)."""
    return Audience.of_agreement(agreement(db, me, peer, today))


def vouched_for(db: store.DB, me: str, peer: str) -> bool:
    """Whether this node's administrator ever vouched for `peer`: offered to it, or accepted its
    offer. Only such a node is sent anything unasked (announcements, retried deliveries) or may
    move its pinned address; a stranger that merely offered is not."""
    return db.execute("SELECT 1 FROM consent_docs WHERE peer = ? AND signer = ? AND type IN ('offer', 'accept') "
                      "LIMIT 1", [peer, me]).fetchone() is not None


def mark_delivered(db: store.DB, digest: str) -> None:
    with store.write(db) as conn:
        conn.execute("UPDATE consent_docs SET delivered = 1 WHERE hash = ?", [digest])


def undelivered(db: store.DB, me: str) -> list[tuple[str, dict[str, Any]]]:
    rows = db.execute("SELECT hash, doc FROM consent_docs WHERE delivered = 0 AND signer = ? ORDER BY issued_at",
                      [me]).fetchall()
    return [(r[0], json.loads(r[1])) for r in rows]


def listing(db: store.DB, me: str, today: dt.date) -> list[dict[str, Any]]:
    out = []
    waiting: dict[str, int] = {}
    for _, doc in undelivered(db, me):  # once, not once per peer
        waiting[doc["to"]] = waiting.get(doc["to"], 0) + 1
    expecting = {e["node_id"] for e in expected(db)}
    for peer in all_peers(db):
        agreement_ = agreement(db, me, peer.node_id, today)
        out.append({
            "node_id": peer.node_id, "name": peer.name, "url": peer.url, "state": agreement_.state.value,
            "last_actor": ("us" if agreement_.last_actor == me else "them") if agreement_.last_actor else None,
            "review_by": agreement_.review_by, "share": list(agreement_.offer["terms"]["share"])
            if agreement_.offer else [],
            "undelivered": waiting.get(peer.node_id, 0), "expected": peer.node_id in expecting,
            "terms": _terms(agreement_, me),
        })
    known = {row["node_id"] for row in out}
    for node_id in sorted(expecting - known):  # expected, no offer yet
        out.append({"node_id": node_id, "name": "", "url": "", "state": "expected", "last_actor": None,
                    "review_by": None, "share": [], "undelivered": 0, "expected": True, "terms": None})
    return out


def _terms(agreement_: Agreement, me: str) -> dict[str, Any] | None:
    """The current offer's terms, and who offered them when: what an administrator reads before
    accepting."""
    offer = agreement_.offer
    if offer is None:
        return None
    terms = {"purpose": offer["terms"]["purpose"], "share": list(offer["terms"]["share"]),
             "review_by": offer["terms"]["review_by"], "offered_by": "us" if offer["from"] == me else "them",
             "offered_at": offer["issued_at"]}
    for optional in ("match_daily_quota", "handling_conditions"):
        if optional in offer["terms"]:
            value = offer["terms"][optional]
            terms[optional] = list(value) if isinstance(value, list) else value  # a copy: the offer may be kept (agreement cache)
    return terms


def describe(db: store.DB, me: str, node_id: str, today: dt.date) -> dict[str, Any]:
    """One peer in full: identity, address, the agreement's state and terms, and every consent
    document between us, oldest first, with whether ours have been delivered."""
    peer = get(db, node_id)
    agreement_ = agreement(db, me, node_id, today)
    history = _history(db, me, node_id)
    # A partner that lost both keys and was replaced (spec 4.7): the old agreements' histories
    # stay attached to the new ID.
    replaces = [{**old, "state": agreement(db, me, old["node_id"], today).state.value,
                 "documents": _history(db, me, old["node_id"])} for old in keys.predecessors(db, node_id)]
    return {"replaces": replaces, "node_id": peer.node_id, "name": peer.name, "url": peer.url, "tls_fingerprint": peer.tls_fingerprint,
            "state": agreement_.state.value,
            "last_actor": ("us" if agreement_.last_actor == me else "them") if agreement_.last_actor else None,
            "terms": _terms(agreement_, me),
            "undelivered": sum(1 for h in history if h["delivered"] is False),
            "documents": history}


def _history(db: store.DB, me: str, node_id: str) -> list[dict[str, Any]]:
    history = []
    # In the order they were stored: issued_at has one-second resolution, and a history must not
    # show a revoke before the offer it ends.
    for raw, delivered in db.execute("SELECT doc, delivered FROM consent_docs WHERE peer = ? "
                                     "ORDER BY issued_at, rowid", [node_id]).fetchall():
        doc = json.loads(raw)
        ours = doc["from"] == me
        history.append({"type": doc["type"], "by": "us" if ours else "them", "issued_at": doc["issued_at"],
                        "delivered": bool(delivered) if ours else None})
    return history


def resolve(db: store.DB, me: str, my_name: str, text: str) -> str:
    """A partnership given by node ID or by name. Names are self-declared and need not be unique, so
    a name that more than one node uses is refused, with their IDs; a node ID never is."""
    from .identity import ALPHABET, parse_node_id
    try:
        return parse_node_id(text)
    except InvalidInput:
        shaped = "".join(ch for ch in text.upper() if ch not in " -\t")
        if len(shaped) == 28 and all(ch in ALPHABET for ch in shaped):
            raise  # a node ID with a typo: say so, rather than "no partnership named"
    wanted = _name_key(text)
    if not wanted:
        raise InvalidInput("--partnership: give a node ID or a partnership's name")
    matches = sorted({nid for nid, name in [(me, my_name), *((p.node_id, p.name) for p in all_peers(db))]
                      if _name_key(name) == wanted or _name_key(name).removesuffix(" bcrp") == wanted})
    if not matches:
        raise InvalidInput(f"no partnership named {text!r}; `discnode peer list` shows their names and IDs")
    if len(matches) > 1:
        raise InvalidInput(f"{len(matches)} partnerships are named {text!r}: {', '.join(matches)}; "
                           "give the node ID of the one you mean")
    return matches[0]


def _name_key(name: str) -> str:
    return " ".join(name.casefold().split())
