"""Key events (spec section 4.6): a node's inception and its successions, with pre-rotation.

Pure: build, sign and check; keys.py stores them. The node ID is the fingerprint of the inception
key for ever. Each event commits to the SHA-256 of the *next* public key, which is kept offline;
a succession is valid only if it reveals that key (KERI's pre-rotation), is signed by the outgoing
key and countersigned by the incoming one. A thief holding only the current key can sign a
succession, but not to the committed key, so no partner accepts it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .. import PROTOCOL_VERSION, schemas
from ..errors import InvalidInput, Unauthenticated
from ..identity import Identity, b64u, b64u_decode, node_id_for
from ..signing import canonical, document_hash, verify_signature

INCEPTION, SUCCESSION = "key-inception", "key-succession"
#: The longest grace period a succession may state: partners accept the outgoing key no longer.
MAX_GRACE = dt.timedelta(days=30)
#: What `discnode key rotate` states unless told otherwise: long enough for a `serve` started
#: before the rotation to be restarted, and for partners away over a long weekend to fetch it.
DEFAULT_GRACE = dt.timedelta(hours=72)
#: The most events a chain may hold (the descriptor's maxItems): decades of yearly rotations.
MAX_EVENTS = 64


def key_digest(public_key: bytes) -> str:
    """The commitment to a next key: SHA-256 of its raw 32 bytes, hex."""
    if len(public_key) != 32:
        raise InvalidInput("an Ed25519 public key is 32 bytes")
    return hashlib.sha256(public_key).hexdigest()


def _ts(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(text: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    except (TypeError, ValueError):
        raise InvalidInput(f"{str(text)[:40]!r} is not a timestamp (YYYY-MM-DDTHH:MM:SSZ)") from None


def _body(doc: Mapping[str, Any]) -> bytes:
    """What both signatures of an event cover: its canonical form without sig and countersig."""
    return canonical({k: v for k, v in doc.items() if k not in ("sig", "countersig")})


def new_inception(key: Identity, next_public_key: bytes, issued_at: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": INCEPTION, "v": PROTOCOL_VERSION, "node_id": node_id_for(key.public_key),
                           "seq": 0, "key": key.public_key_b64, "next": key_digest(next_public_key),
                           "issued_at": issued_at}
    doc["sig"] = b64u(key.sign(_body(doc)))
    schemas.validate("key-event", doc)
    return doc


def new_succession(previous: Mapping[str, Any], outgoing: Identity, incoming: Identity, next_public_key: bytes,
                   issued_at: str, grace: dt.timedelta = DEFAULT_GRACE) -> dict[str, Any]:
    """The succession after `previous` (the chain's last event): `incoming` must be the key that
    event committed to. Signed by `outgoing`, countersigned by `incoming`."""
    if not dt.timedelta(0) <= grace <= MAX_GRACE:
        raise InvalidInput(f"the grace period must be 0 to {MAX_GRACE.days} days")
    if key_digest(incoming.public_key) != previous["next"]:
        raise Unauthenticated("that is not the next key this node committed to")
    doc: dict[str, Any] = {
        "type": SUCCESSION, "v": PROTOCOL_VERSION, "node_id": previous["node_id"], "seq": previous["seq"] + 1,
        "prev": document_hash(previous), "key": incoming.public_key_b64, "next": key_digest(next_public_key),
        "grace_until": _ts(parse_ts(issued_at) + grace), "issued_at": issued_at}
    body = _body(doc)
    doc["sig"] = b64u(outgoing.sign(body))
    doc["countersig"] = b64u(incoming.sign(body))
    schemas.validate("key-event", doc)
    return doc


@dataclass(frozen=True)
class KeyPeriod:
    """One key of a node and when it may be used: from the event that named it until the end of
    the grace period stated by the succession that replaced it (None: the current key)."""

    seq: int
    public_key: bytes
    valid_from: str
    valid_until: str | None

    def valid_at(self, when: str) -> bool:
        """Whether a document dated `when` (a timestamp) may carry this key's signature: from
        valid_from, and before (not at) valid_until, so that a grace period of 0 ends at once."""
        return self.valid_from <= when and (self.valid_until is None or when < self.valid_until)


@dataclass(frozen=True)
class KeyState:
    """What a verified chain says: the node ID, every key with its period, the commitment to the
    next key, and the hash of the last event (the head)."""

    node_id: str
    keys: tuple[KeyPeriod, ...]
    next_digest: str
    head: str
    events: tuple[dict[str, Any], ...]

    @property
    def current(self) -> bytes:
        return self.keys[-1].public_key

    @property
    def seq(self) -> int:
        return self.keys[-1].seq

    def accepted_at(self, when: str) -> list[bytes]:
        """The keys that may sign something dated `when`, the current one first (at most two in
        practice: the current key and, within a grace period, the one before it)."""
        return [p.public_key for p in reversed(self.keys) if p.valid_at(when)]


def verify_chain(events: Sequence[Any]) -> KeyState:
    """Check a whole chain from its inception; Unauthenticated (or InvalidInput) with the reason."""
    if not isinstance(events, (list, tuple)) or not events:
        raise InvalidInput("a key history is a non-empty list of key events")
    if len(events) > MAX_EVENTS:
        raise InvalidInput(f"a key history holds at most {MAX_EVENTS} events")
    for event in events:
        schemas.validate("key-event", event)
    first = events[0]
    if first["type"] != INCEPTION:
        raise Unauthenticated("a key history must start with its inception")
    key = b64u_decode(first["key"])
    if node_id_for(key) != first["node_id"]:
        raise Unauthenticated("the inception's node ID is not the fingerprint of its key")
    verify_signature(_body(first), first["sig"], key)
    periods = [KeyPeriod(0, key, first["issued_at"], None)]
    previous = first
    for event in events[1:]:
        if event["type"] != SUCCESSION:
            raise Unauthenticated("only the first key event may be an inception")
        key = _check_step(previous, event, periods[-1].public_key)
        periods[-1] = KeyPeriod(periods[-1].seq, periods[-1].public_key, periods[-1].valid_from,
                                event["grace_until"])
        periods.append(KeyPeriod(event["seq"], key, event["issued_at"], None))
        previous = event
    return KeyState(first["node_id"], tuple(periods), previous["next"], document_hash(previous), tuple(events))


def _check_step(previous: Mapping[str, Any], event: Mapping[str, Any], outgoing: bytes) -> bytes:
    """One succession against the event before it; the incoming key."""
    if event["node_id"] != previous["node_id"] or event["seq"] != previous["seq"] + 1:
        raise Unauthenticated("key event out of sequence")
    if event["prev"] != document_hash(previous):
        raise Unauthenticated("key event does not follow the one before it")
    incoming = b64u_decode(event["key"])
    if key_digest(incoming) != previous["next"]:
        # The stolen-key case: whoever signed this did not hold the committed next key.
        raise Unauthenticated("the succession does not reveal the key committed to by the event before it")
    if event["issued_at"] < previous["issued_at"]:
        raise Unauthenticated("key event dated before the one it follows")
    grace = parse_ts(event["grace_until"]) - parse_ts(event["issued_at"])
    if not dt.timedelta(0) <= grace <= MAX_GRACE:
        raise Unauthenticated(f"a succession's grace period must be 0 to {MAX_GRACE.days} days")
    body = _body(event)
    try:
        verify_signature(body, event["sig"], outgoing)
    except Unauthenticated:
        raise Unauthenticated("the succession is not signed by the outgoing key") from None
    try:
        verify_signature(body, event["countersig"], incoming)
    except Unauthenticated:
        raise Unauthenticated("the succession is not countersigned by the incoming key") from None
    return incoming


def check_signed_at(state: KeyState, doc: Mapping[str, Any], when: str) -> bytes:
    """The key of `state` that signed doc (an ordinary signed document, `sig` over the rest),
    among the keys valid at `when` (the document's issued_at); Unauthenticated if none did: a
    former key's signature dated at or after the end of its grace period is refused."""
    from ..signing import verify_document
    for key in state.accepted_at(when):
        try:
            verify_document(doc, key)
            return key
        except Unauthenticated:
            continue
    raise Unauthenticated(f"the document is not signed by a key of {state.node_id} valid at {when}")


def extends(held: KeyState, offered: KeyState) -> bool:
    """Whether `offered` is `held` or a continuation of it (the same events, then more). A chain
    that forks from, or is shorter than, the one held is refused: that is a rollback or a forgery."""
    return len(offered.events) >= len(held.events) and all(
        document_hash(a) == document_hash(b) for a, b in zip(held.events, offered.events))
