"""Sharing agreements: the signed consent documents and the state they add up to. Pure logic.

An agreement between this node and a peer is ACTIVE iff we hold
  - an offer signed by one party (the latest offer between the two), and
  - an accept of exactly that offer (naming its hash) signed by the other party, and
  - no reject or revoke of that offer from either, and
  - today is on or before the review-by date in the offer's terms (after it, the agreement LAPSES
    until a new offer is accepted: data-sharing agreements are reviewed, typically yearly).

Both sides hold the same documents, so both compute the same state; a revoke takes effect on the
side that signs it at once, and on the other as soon as it arrives.
"""

from __future__ import annotations

import datetime as dt
import enum
import secrets
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from . import PROTOCOL_VERSION, schemas
from .errors import Conflict, InvalidInput, Refused
from .signing import document_hash

#: Every share scope this implementation supports, advertised in its descriptor (`scopes`).
#: `evidence` grants no endpoint: it is the partner's consent that its records, shared under
#: `profiles`, may be disclosed to police in an evidence export (evidence.py); without it an export
#: carries only a reference to them.
SHARE_KINDS = ("profiles", "images", "match", "statistics", "ethnicity", "minors", "conditional", "evidence")
#: Protocol features this implementation understands, advertised in `scopes` beside the share
#: scopes (spec 7.2, Features) but never shared by an agreement: `query-counts`, a query that asks
#: for its facet counts in the same request (spec 8.1); `query-limit-1000`, a query `limit` up to
#: 1,000 (spec 8.1), which walks ask for. A partner is sent a feature's fields or values only if
#: its descriptor lists the feature.
FEATURES = ("query-counts", "query-limit-1000")  # facets.FEATURE, query.WIDE_FEATURE
#: Scopes that widen what `profiles` serves (handling.py): each only with `profiles`.
WIDENING = ("ethnicity", "minors", "conditional")
#: What an offer shares unless told otherwise; and what a descriptor without `scopes` supports
#: (nodes from before scopes were advertised).
DEFAULT_SHARE = ("profiles", "images")
LEGACY_SCOPES = ("profiles", "images")
DEFAULT_MATCH_QUOTA = 100
MAX_MATCH_QUOTA = 10_000
DEFAULT_PURPOSE = "Prevention and detection of crime against member businesses"
DEFAULT_TERM_DAYS = 365


class State(str, enum.Enum):
    NONE = "none"          # no offer either way
    OFFERED = "offered"    # we offered; waiting for them
    PENDING = "pending"    # they offered; waiting for us
    ACTIVE = "active"
    REJECTED = "rejected"
    REVOKED = "revoked"
    LAPSED = "lapsed"      # accepted, but past its review-by date


class Action(str, enum.Enum):
    OFFER = "offer"
    ACCEPT = "accept"
    REJECT = "reject"
    REVOKE = "revoke"


#: What each party may do in each state, from its own point of view. `offer` after an ended
#: agreement is a renewal; `revoke` of an offer not yet answered withdraws it.
ALLOWED: dict[Action, frozenset[State]] = {
    Action.OFFER: frozenset({State.NONE, State.REJECTED, State.REVOKED, State.LAPSED}),
    Action.ACCEPT: frozenset({State.PENDING}),
    Action.REJECT: frozenset({State.PENDING}),
    Action.REVOKE: frozenset({State.OFFERED, State.PENDING, State.ACTIVE, State.LAPSED}),
}


@dataclass(frozen=True)
class Terms:
    purpose: str = DEFAULT_PURPOSE
    share: tuple[str, ...] = DEFAULT_SHARE
    review_by: str = ""
    #: Names a match-only partner may ask about per UTC day (only with the `match` scope).
    match_daily_quota: int | None = None
    #: Handling conditions under which the partner takes records graded C (only with `conditional`).
    handling_conditions: tuple[str, ...] | None = None

    @classmethod
    def default(cls, today: dt.date, days: int = DEFAULT_TERM_DAYS, purpose: str = DEFAULT_PURPOSE,
                share: Iterable[str] = DEFAULT_SHARE, match_daily_quota: int | None = None,
                handling_conditions: Iterable[str] | None = None) -> "Terms":
        share = tuple(share)
        if "match" in share and match_daily_quota is None:
            match_daily_quota = DEFAULT_MATCH_QUOTA
        conditions = None if handling_conditions is None else tuple(sorted(set(handling_conditions))) or None
        return cls(purpose, share, (today + dt.timedelta(days=days)).isoformat(),
                   match_daily_quota, conditions).checked(today)

    def checked(self, today: dt.date) -> "Terms":
        if not self.purpose.strip() or len(self.purpose) > 500:
            raise InvalidInput("purpose must be 1 to 500 characters")
        if not self.share or any(s not in SHARE_KINDS for s in self.share) or len(set(self.share)) != len(self.share):
            raise InvalidInput(f"share must list one or more of {', '.join(SHARE_KINDS)}")
        if "images" in self.share and "profiles" not in self.share:
            raise InvalidInput("images can only be shared with profiles")
        if "evidence" in self.share and "profiles" not in self.share:
            raise InvalidInput("evidence (disclosure to police) can only be agreed with profiles")
        if "match" in self.share:
            if self.match_daily_quota is None or not 1 <= self.match_daily_quota <= MAX_MATCH_QUOTA:
                raise InvalidInput(f"the match daily quota must be 1 to {MAX_MATCH_QUOTA} names")
        elif self.match_daily_quota is not None:
            raise InvalidInput("a match daily quota is only for agreements that share match")
        for scope in WIDENING:
            if scope in self.share and "profiles" not in self.share:
                raise InvalidInput(f"{scope} can only be shared with profiles")
        if "conditional" in self.share:
            if not self.handling_conditions:
                raise InvalidInput("sharing conditional (records graded C) needs the handling conditions the "
                                   "partner accepts (--handling-condition)")
            for code in self.handling_conditions:
                schemas.check_code("handling_condition", code, "handling condition")
        elif self.handling_conditions:
            raise InvalidInput("handling conditions are only for agreements that share conditional")
        try:
            review = dt.date.fromisoformat(self.review_by)
        except ValueError:
            raise InvalidInput(f"review-by {self.review_by!r} is not a date YYYY-MM-DD") from None
        if review <= today:
            raise InvalidInput("review-by must be in the future")
        if review > today + dt.timedelta(days=3 * 366):
            raise InvalidInput("review-by may be at most three years away")
        return self

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"purpose": self.purpose, "share": list(self.share), "review_by": self.review_by}
        if self.match_daily_quota is not None:
            wire["match_daily_quota"] = self.match_daily_quota
        if self.handling_conditions:
            wire["handling_conditions"] = sorted(self.handling_conditions)
        return wire


def scopes_of(descriptor: Mapping[str, Any]) -> tuple[str, ...]:
    """The share scopes a node supports, from its signed descriptor (without the field: a node
    from before scopes were advertised, which supports profiles and images)."""
    return tuple(descriptor.get("scopes", LEGACY_SCOPES))


def check_supported(share: Iterable[str], descriptor: Mapping[str, Any]) -> None:
    """Refused unless the node whose descriptor this is supports every scope in `share`."""
    supported = scopes_of(descriptor)
    missing = [s for s in share if s not in supported]
    if missing:
        shared = [s for s in supported if s not in FEATURES]
        raise Refused(f"node {descriptor.get('name', '')} ({descriptor.get('node_id', '')}) does not support "
                      f"sharing {', '.join(missing)} (it supports {', '.join(shared)}); offer again once "
                      "it has been upgraded")


@dataclass(frozen=True)
class Agreement:
    peer: str
    state: State
    last_actor: str | None         # node ID of whoever signed the latest document
    offer: Mapping[str, Any] | None
    offer_hash: str | None

    @property
    def active(self) -> bool:
        return self.state is State.ACTIVE

    @property
    def share(self) -> tuple[str, ...]:
        return tuple(self.offer["terms"]["share"]) if self.offer and self.active else ()

    @property
    def match_daily_quota(self) -> int:
        return int(self.offer["terms"].get("match_daily_quota", 0)) if self.offer and self.active else 0

    @property
    def handling_conditions(self) -> tuple[str, ...]:
        return tuple(self.offer["terms"].get("handling_conditions", ())) if self.offer and self.active else ()

    @property
    def review_by(self) -> str | None:
        return self.offer["terms"]["review_by"] if self.offer else None


def new_offer(me: str, peer: str, terms: Terms, descriptor: Mapping[str, Any], issued_at: str,
              prev: str | None) -> dict[str, Any]:
    """prev is the hash of the offer this one replaces (a renewal), so that offers form a chain
    and "the current offer" never depends on clocks."""
    return {"type": "offer", "v": PROTOCOL_VERSION, "id": secrets.token_hex(8), "from": me, "to": peer,
            "terms": terms.to_wire(), "descriptor": dict(descriptor), "issued_at": issued_at, "prev": prev}


def new_response(action: Action, me: str, peer: str, offer_hash: str, issued_at: str) -> dict[str, Any]:
    return {"type": action.value, "v": PROTOCOL_VERSION, "from": me, "to": peer, "offer": offer_hash,
            "issued_at": issued_at}


def derive(me: str, peer: str, docs: Iterable[Mapping[str, Any]], today: dt.date,
           hashes: Iterable[str] | None = None) -> Agreement:
    """The agreement's state from every (already signature-checked) document between me and peer.
    `hashes`, if given, are the documents' document_hash in the same order (consent_docs keeps
    them): a search derives every partner's agreement, and hashing each document (a canonical form
    of it and the descriptor inside) was most of that."""
    docs = list(docs)
    known = {id(d): h for d, h in zip(docs, hashes)} if hashes is not None else {}

    def hash_of(doc: Mapping[str, Any]) -> str:
        h = known.get(id(doc))
        if h is None:
            h = known[id(doc)] = document_hash(doc)
        return h

    def order(doc: Mapping[str, Any]) -> tuple[str, str]:
        return (doc["issued_at"], hash_of(doc))
    pair = {me, peer}
    docs = [d for d in docs if {d.get("from"), d.get("to")} == pair]
    offers = {hash_of(d): d for d in docs if d["type"] == "offer"}
    if not offers:
        return Agreement(peer, State.NONE, None, None, None)
    replaced = {d.get("prev") for d in offers.values()}
    # The current offer heads the chain; two heads only when both sides offered at once.
    heads = [d for h, d in offers.items() if h not in replaced] or list(offers.values())
    offer = max(heads, key=order)
    offer_hash = hash_of(offer)
    answers = sorted((d for d in docs if d["type"] != "offer" and d.get("offer") == offer_hash), key=order)
    recipient = offer["to"]
    accepted = any(d["type"] == "accept" and d["from"] == recipient for d in answers)
    rejected = any(d["type"] == "reject" and d["from"] == recipient for d in answers)
    revoked = any(d["type"] == "revoke" for d in answers)
    last = (answers[-1] if answers else offer)["from"]
    if revoked:
        state = State.REVOKED
    elif rejected:
        state = State.REJECTED
    elif accepted:
        lapsed = dt.date.fromisoformat(offer["terms"]["review_by"]) < today
        state = State.LAPSED if lapsed else State.ACTIVE
    else:
        state = State.OFFERED if offer["from"] == me else State.PENDING
    return Agreement(peer, state, last, offer, offer_hash)


def check_action(agreement: Agreement, action: Action) -> None:
    """Raise Conflict unless this side may take `action` now."""
    if agreement.state not in ALLOWED[action]:
        raise Conflict(f"cannot {action.value} while the agreement with {agreement.peer} is "
                       f"{agreement.state.value}")


def check_incoming(agreement: Agreement, doc: Mapping[str, Any], me: str) -> None:
    """Raise Conflict unless `doc`, signed by the peer, is a move the peer may make now."""
    action = Action(doc["type"])
    if doc["to"] != me:
        raise InvalidInput("consent document is addressed to another node")
    if action is Action.OFFER:
        if doc.get("prev") != agreement.offer_hash and agreement.state is not State.OFFERED:
            raise Conflict("offer does not follow the current offer (prev)")
        if agreement.state not in ALLOWED[Action.OFFER] | {State.OFFERED}:
            raise Conflict(f"an offer is not expected while {agreement.state.value}")
        return
    if agreement.offer_hash is None or doc.get("offer") != agreement.offer_hash:
        raise Conflict("consent document does not name the current offer")
    if action in (Action.ACCEPT, Action.REJECT) and agreement.state is not State.OFFERED:
        raise Conflict(f"{action.value} is not expected while {agreement.state.value}")
    if action is Action.REVOKE and agreement.state is State.REVOKED:
        return  # idempotent re-delivery
