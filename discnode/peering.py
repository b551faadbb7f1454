"""What an administrator does with peers: add (offer), accept, reject, revoke, refresh; and the
delivery of signed documents (consent, audit heads), now or whenever the peer can next be reached."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncContextManager, Callable

from . import audit, contact, keys, links, notices, peers, proposals, rotation, sightings, store, witness
from .client import PeerClient, Reply, error_for
from .consent import Action, Agreement, State, Terms, check_action, check_supported, new_offer, new_response
from .errors import InvalidInput, NotFound, PeerError, Refused, Unauthenticated
from .home import Home, today
from .identity import parse_node_id
from .signing import sign_document

log = logging.getLogger("discnode.peering")


def _client(home: Home, client: PeerClient | None, timeout: float = 5.0) -> AsyncContextManager[PeerClient]:
    """Use the caller's client (and leave it open), or a new one closed afterwards."""
    if client is not None:
        return contextlib.nullcontext(client)
    return PeerClient(home.identity, timeout=timeout)


async def add_peer(home: Home, url: str, expect: str, terms: Terms, client: PeerClient | None = None
                   ) -> dict[str, Any]:
    """Fetch and check the node at url is `expect`, pin it, and send it a signed offer."""
    expect = parse_node_id(expect)
    if expect == home.node_id:
        raise InvalidInput("that is this node's own ID")
    async with _client(home, client) as c:
        peer = await c.fetch_descriptor(url, expect)
        terms = terms.checked(today())
        check_supported(terms.share, peer.descriptor)  # before anything is stored: offer again later
        with store.write(home.db):
            peers.remember(home.db, peer.descriptor)
            current = peers.agreement(home.db, home.node_id, peer.node_id, today())
            check_action(current, Action.OFFER)
            offer = sign_document(new_offer(home.node_id, peer.node_id, terms, home.descriptor(), store.now_ts(),
                                            current.offer_hash), home.identity)
            peers.add_document(home.db, peer.node_id, offer, delivered=False, own=home.identity)
            audit.append(home.db, "consent-offer-sent", peer.node_id, terms=terms.to_wire(), url=url)
        report = await deliver_pending(home, c, only=peer.node_id)
    return {**_state(home, peer.node_id), **report.about(peer.node_id)}


async def respond(home: Home, node_id: str, action: Action, client: PeerClient | None = None) -> dict[str, Any]:
    """Accept, reject or revoke. Takes effect here at once; delivered now if the peer answers."""
    node_id = parse_node_id(node_id)
    peers.get(home.db, node_id)
    with store.write(home.db):
        agreement = peers.agreement(home.db, home.node_id, node_id, today())
        check_action(agreement, action)
        assert agreement.offer_hash is not None  # every state that allows these has an offer
        doc = sign_document(new_response(action, home.node_id, node_id, agreement.offer_hash, store.now_ts()),
                            home.identity)
        peers.add_document(home.db, node_id, doc, delivered=False, own=home.identity)
        audit.append(home.db, f"consent-{action.value}-sent", node_id)
    async with _client(home, client, 3.0) as c:
        report = await deliver_pending(home, c, only=node_id)
    return {**_state(home, node_id), **report.about(node_id)}


async def propose(home: Home, target: str, client: PeerClient | None = None, **what: Any) -> dict[str, Any]:
    """Sign a proposal (proposals.prepare) and deliver it now; Refused, with the origin's reason, if
    it refuses it. If the origin cannot be reached, `serve` delivers it later."""
    digest = proposals.prepare(home, target, **what)
    view = proposals.by_hash(home.db, home.node_id, digest)
    async with _client(home, client, 3.0) as c:
        await deliver_pending(home, c, only=view["to"])
    view = proposals.by_hash(home.db, home.node_id, digest)
    if view["state"] == proposals.REFUSED:
        raise Refused(f"{peers.get(home.db, view['to']).name} refused the proposal: {view['refusal']}")
    return view


async def decide(home: Home, proposal_id: str, confirm: bool, client: PeerClient | None = None,
                 **what: Any) -> dict[str, Any]:
    """Confirm or decline a received proposal (proposals.decide) and tell its proposer now, or later."""
    view = proposals.decide(home, proposal_id, confirm, **what)
    async with _client(home, client, 3.0) as c:
        await deliver_pending(home, c, only=view["from"])
    return proposals.by_hash(home.db, home.node_id, proposals.hash_of(home.db, home.node_id, view["id"]))


async def report_sighting(home: Home, target: str, at: str, when: str | None, client: PeerClient | None = None
                         ) -> dict[str, Any]:
    """Sign a sighting (sightings.prepare) and deliver it now; Refused, with the origin's reason, if
    it refuses it. If the origin cannot be reached, `serve` delivers it later."""
    digest = sightings.prepare(home, target, at, when)
    view = sightings.by_hash(home.db, digest)
    async with _client(home, client, 3.0) as c:
        await deliver_pending(home, c, only=view["to"])
    view = sightings.by_hash(home.db, digest)
    if view["refusal"]:
        raise Refused(f"{peers.get(home.db, view['to']).name} refused the sighting: {view['refusal']}")
    return view


async def propose_link(home: Home, mine: str, target: str, client: PeerClient | None = None) -> dict[str, Any]:
    """Sign a same-person link (links.propose) and deliver it now; Refused, with the partner's
    reason, if it refuses it."""
    digest = links.propose(home, mine, target)
    view = links.by_hash(home.db, digest)
    async with _client(home, client, 3.0) as c:
        await deliver_pending(home, c, only=view["peer"])
    view = links.by_hash(home.db, digest)
    if view["state"] == links.REFUSED:
        raise Refused(f"{peers.get(home.db, view['peer']).name} refused the link: {view['refusal']}")
    return view


async def decide_link(home: Home, link_id: str, confirm: bool, client: PeerClient | None = None) -> dict[str, Any]:
    view = links.decide(home, link_id, confirm)
    async with _client(home, client, 3.0) as c:
        await deliver_pending(home, c, only=view["peer"])
    return view


@dataclass
class Retry:
    """When to try an unreachable peer again: after `first` seconds, doubling to `cap`, and at once
    after any success. Never giving up: a revocation must reach its peer however long it is away,
    but a peer that is gone for a week is asked hourly, not every 30 seconds. A busy peer's
    Retry-After is honoured (up to `cap`: a peer cannot hold back its own revocation for longer)."""

    first: float = 30.0
    cap: float = 3600.0
    clock: Callable[[], float] = time.monotonic
    failures: dict[str, int] = field(default_factory=dict)
    next_try: dict[str, float] = field(default_factory=dict)

    def due(self, peer: str) -> bool:
        return self.clock() >= self.next_try.get(peer, float("-inf"))

    def failed(self, peer: str, retry_after: float | None = None) -> float:
        """Record a failed attempt; returns the seconds until the next."""
        count = self.failures.get(peer, 0)
        delay = min(max(self.first * 2 ** count, retry_after or 0.0), self.cap)
        self.failures[peer] = count + 1
        self.next_try[peer] = self.clock() + delay
        return delay

    def succeeded(self, peer: str) -> None:
        self.failures.pop(peer, None)
        self.next_try.pop(peer, None)


PROPOSAL_PATH = "/v1/proposals"
PROPOSAL_OUTCOME_PATH = "/v1/proposals/outcome"
SIGHTING_PATH = "/v1/sightings"
LINK_PATH = "/v1/links"
LINK_ANSWER_PATH = "/v1/links/answer"
NOTICE_PATH = "/v1/notices"

#: Where each kind of signed document goes, and the audit event if its peer refuses it.
ROUTES = {**{kind: ("/v1/consent", "consent-delivery-refused") for kind in ("offer", "accept", "reject", "revoke")},
          "audit-head": (witness.HEAD_PATH, "audit-head-delivery-refused"),
          "proposal": (PROPOSAL_PATH, "proposal-delivery-refused"),
          "proposal-outcome": (PROPOSAL_OUTCOME_PATH, "proposal-outcome-delivery-refused"),
          "sighting": (SIGHTING_PATH, "sighting-delivery-refused"),
          "link": (LINK_PATH, "link-delivery-refused"),
          "link-answer": (LINK_ANSWER_PATH, "link-answer-delivery-refused"),
          "notice": (NOTICE_PATH, "notice-delivery-refused"),
          "descriptor": ("/v1/descriptor", "key-history-delivery-refused")}


def outbox(home: Home) -> list[tuple[str, str, dict[str, Any]]]:
    """Every signed document waiting for its peer, as (hash, peer, document): consent documents
    not yet delivered, then this node's latest audit head for partners that lack it, then
    proposals, their outcomes, sightings and links (only while the agreement is active); then
    erasure and rectification notices (to every partner ever vouched for: notices.py). First of
    all, this node's descriptor for partners that lack the head of its key history (rotation.py):
    after a rotation they verify the rest by the new key it names."""
    consent = [(h, d["to"], d) for h, d in peers.undelivered(home.db, home.node_id)]
    return (rotation.outbox(home) + consent + witness.undelivered(home.db, home.node_id)
            + proposals.undelivered(home.db, home.node_id) + sightings.undelivered(home.db, home.node_id)
            + links.undelivered(home.db, home.node_id) + notices.undelivered(home.db, home.node_id))


def _mark_delivered(home: Home, digest: str, to: str, doc: dict[str, Any], refusal: str | None) -> None:
    if doc["type"] == "audit-head":
        witness.mark_delivered(home.db, to, digest)
    elif doc["type"] in ("proposal", "proposal-outcome"):
        proposals.mark_delivered(home.db, digest, refusal)
    elif doc["type"] == "sighting":
        sightings.mark_delivered(home.db, digest, refusal)
    elif doc["type"] in ("link", "link-answer"):
        links.mark_delivered(home.db, digest, refusal)
    elif doc["type"] == "notice":
        notices.mark_delivered(home.db, digest, refusal)
    elif doc["type"] == "descriptor":
        keys.mark_head_delivered(home.db, to, digest)
    else:
        peers.mark_delivered(home.db, digest)


#: What happened to a document: delivered (2xx); refused (a final 4xx: 403, 409, ...); waiting
#: (unreachable, busy with 429/503, or a redirect: tried again later); dropped (to a node this
#: node never vouched for, which is sent a document once and never again, whatever the outcome).
DELIVERED, REFUSED, WAITING, DROPPED = "delivered", "refused", "waiting", "dropped"


@dataclass
class Delivery:
    """The outcome of one round of deliveries: how many documents went, and per peer what became
    of the last consent document for it (outcome, reason), which is what an administrator is told."""

    sent: int = 0
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)

    def about(self, node_id: str) -> dict[str, Any]:
        outcome, reason = self.outcomes.get(node_id, (DELIVERED, ""))
        return {"delivered": outcome == DELIVERED, "delivery": outcome, "delivery_reason": reason}


async def deliver_pending(home: Home, client: PeerClient | None = None, only: str | None = None,
                          retry: Retry | None = None) -> Delivery:
    """Send every signed document not yet delivered (the one delivery mechanism for every kind).
    A peer's refusal (4xx but 429) is final and recorded; an unreachable or busy peer (429, 5xx,
    honouring Retry-After) or one that redirects is tried again later: not again in this round
    (its other documents wait too), and with `retry`, not before it is due. A node this node never
    vouched for (a stranger whose offer is rejected) is sent the document once, to the address
    pinned when its offer came, and never again: a stranger cannot turn this node's retries into
    traffic at an address of its choice."""
    report = Delivery()
    pending = [(h, to, d) for h, to, d in outbox(home) if only in (None, to)]
    if retry is not None:
        pending = [(h, to, d) for h, to, d in pending if retry.due(to)]
    if not pending:
        return report
    unreachable: set[str] = set()
    async with _client(home, client, 3.0) as c:
        for digest, to, doc in pending:
            if to in unreachable:
                continue
            peer = peers.get(home.db, to)
            path, refused_event = ROUTES[doc["type"]]
            once = not peers.vouched_for(home.db, home.node_id, peer.node_id)
            reply: Reply | None = None
            sent = time.time()
            try:
                reply = await c.request(peer, "POST", path, doc)
                status, reason = reply.status, f"HTTP {reply.status}"
            except PeerError as exc:
                status, reason = 0, str(exc)
            delivered = 200 <= status < 300
            contact.record(home.db, peer.node_id, ok=delivered, error=reason,
                           offset=contact.offset_from_date(reply.date, sent, time.time()) if reply else None)
            refused = 400 <= status < 500 and status != 429
            if reply is not None and not delivered:
                reason = str(error_for(reply.status, f"HTTP {reply.status}: {_peer_message(reply)}"))
            told = path == "/v1/consent"  # what the administrator who acted is told about
            if not (delivered or refused) and not once:  # unreachable, busy, redirected: try later
                unreachable.add(peer.node_id)
                wait = retry.failed(peer.node_id, reply.retry_after if reply else None) if retry else None
                log.info("could not deliver %s to %s yet (%s)%s", doc["type"], peer.name, reason,
                         f"; next try in {wait:.0f}s" if wait else "")
                if told:
                    report.outcomes[peer.node_id] = (WAITING, reason)
                continue
            if retry:
                retry.succeeded(peer.node_id)
            _mark_delivered(home, digest, to, doc, None if delivered else reason)
            if delivered and doc["type"] == "notice" and reply is not None:
                _take_receipt(home, digest, peer, reply)
            if delivered:
                report.sent += 1
                outcome = (DELIVERED, "")
            elif refused:
                outcome = (REFUSED, reason)
                audit.append(home.db, refused_event, peer.node_id, type=doc["type"], status=status, reason=reason)
            else:
                outcome = (DROPPED, reason)
                audit.append(home.db, "consent-delivery-dropped", peer.node_id, type=doc["type"],
                             status=status, reason=reason)
            if told:
                report.outcomes[peer.node_id] = outcome
    return report


def _take_receipt(home: Home, digest: str, peer: peers.Peer, reply: Reply) -> None:
    """A notice's reply is the partner's signed receipt (notices.py). One that does not check is
    not kept, and audited; the notice stays without a receipt (outstanding in `peer list`)."""
    try:
        notices.take_receipt(home.db, home.node_id, digest, peer.public_key, reply.json())
    except (InvalidInput, Unauthenticated, PeerError) as exc:
        log.warning("%s answered a notice without a valid receipt: %s", peer.name, exc)
        audit.append(home.db, "notice-receipt-invalid", peer.node_id, reason=str(exc)[:300])


async def notify(home: Home, client: PeerClient | None = None) -> dict[str, Any]:
    """Deliver the notices waiting (after a delete or an edit) now; those whose partner cannot be
    reached go when `serve` next can."""
    waiting = {to for _, to, _ in notices.undelivered(home.db, home.node_id)}
    async with _client(home, client, 3.0) as c:
        for to in sorted(waiting):
            await deliver_pending(home, c, only=to)
    return {"notified": sorted(waiting - {to for _, to, _ in notices.undelivered(home.db, home.node_id)})}


def _peer_message(reply: Reply) -> str:
    """The error message a peer gave, cut short: it is the peer's text, shown to an administrator."""
    try:
        message = reply.json()["error"]["message"]
    except (PeerError, KeyError, TypeError):
        return "(no reason given)"
    return "".join(c for c in str(message)[:200] if c.isprintable())


async def refresh(home: Home, node_id: str, url: str | None = None, client: PeerClient | None = None
                  ) -> peers.Peer:
    """Fetch a peer's descriptor again (from a new address, if given); adopt it if it verifies as
    the same node and is newer."""
    node_id = parse_node_id(node_id)
    known = peers.get(home.db, node_id)
    async with _client(home, client) as c:
        fresh = await c.fetch_descriptor(url or known.url, node_id)
    updated = peers.remember(home.db, fresh.descriptor, stranger_ok=False)
    if updated.url != known.url:
        audit.append(home.db, "peer-address-changed", node_id, old=known.url, new=updated.url)
    return updated


def _state(home: Home, node_id: str) -> dict[str, Any]:
    agreement: Agreement = peers.agreement(home.db, home.node_id, node_id, today())
    peer = peers.get(home.db, node_id)
    return {"node_id": node_id, "name": peer.name, "url": peer.url, "state": agreement.state.value}


async def announce(home: Home, client: PeerClient | None = None) -> int:
    """Send this node's current signed descriptor to every partner with an active (or lapsed)
    agreement and every node it offered to, so that a changed address is taken up without anyone
    typing it. Never to a stranger whose offer is pending: its address is its own claim. Returns
    how many took it."""
    descriptor = home.descriptor()
    taken = 0
    async with _client(home, client, 3.0) as c:
        for peer in peers.all_peers(home.db):
            state = peers.agreement(home.db, home.node_id, peer.node_id, today()).state
            if state not in ANNOUNCE_TO:
                continue
            try:
                reply = await c.request(peer, "POST", "/v1/descriptor", descriptor)
            except PeerError as exc:
                log.info("could not announce to %s: %s", peer.name, exc)
                continue
            taken += reply.status == 200
    return taken


#: The states in which this node tells a peer its address unasked.
ANNOUNCE_TO = frozenset({State.ACTIVE, State.LAPSED, State.OFFERED})


async def discover(home: Home, seconds: float) -> list[dict[str, Any]]:
    """Nodes seen on the local network. A known peer seen at a new address is re-checked through
    its signed descriptor there, and the address adopted only if that verifies and is newer."""
    from .discovery import browse

    seen = await browse(seconds)
    out = []
    async with PeerClient(home.identity, timeout=3.0) as c:
        for node in seen:
            if node.node_id == home.node_id:
                continue
            row: dict[str, Any] = {"node_id": node.node_id, "name": node.name, "address": node.address,
                                   "port": node.port, "url": node.url, "known": False, "state": "none"}
            try:
                known = peers.get(home.db, node.node_id)
            except NotFound:
                known = None
            if known is not None:
                row["known"] = True
                row["state"] = peers.agreement(home.db, home.node_id, node.node_id, today()).state.value
                # A stranger's address stays the one its offer named (the only place it is ever sent
                # anything): discovery moves only nodes this node vouched for.
                if known.url != node.url and peers.vouched_for(home.db, home.node_id, node.node_id):
                    try:
                        await refresh(home, node.node_id, node.url, c)
                        row["address_updated"] = True
                    except (PeerError, InvalidInput, Unauthenticated) as exc:
                        row["warning"] = f"descriptor at {node.url} refused: {exc}"
            out.append(row)
    return out


async def replace_peer(home: Home, old_id: str, url: str, expect: str, client: PeerClient | None = None
                       ) -> dict[str, Any]:
    """A partner lost both its current and its committed next key and made a new node (spec 4.7).
    After its new ID is confirmed by phone: pin the new node, revoke the agreement with the old ID
    here at once (whoever holds its key gets nothing more), record the replacement so that the
    old agreement's documents, audit and links stay attached to the new ID, and offer the new node
    the old agreement's terms. Its administrator must accept: only its own new key can consent."""
    old_id, expect = parse_node_id(old_id), parse_node_id(expect)
    if old_id == expect:
        raise InvalidInput("the new node ID is the old one: for a key rotation nothing needs replacing")
    if expect == home.node_id or old_id == home.node_id:
        raise InvalidInput("that is this node's own ID")
    peers.get(home.db, old_id)
    if keys.replaced_by(home.db, old_id):
        raise InvalidInput(f"{old_id} was already replaced by {keys.replaced_by(home.db, old_id)}")
    old = peers.agreement(home.db, home.node_id, old_id, today())
    if old.offer is None:
        raise InvalidInput(f"there is no agreement with {old_id} to carry over; use `discnode peer add`")
    async with _client(home, client) as c:
        peer = await c.fetch_descriptor(url, expect)
        check_supported(old.offer["terms"]["share"], peer.descriptor)
        terms = Terms.default(today(), share=old.offer["terms"]["share"], purpose=old.offer["terms"]["purpose"],
                              match_daily_quota=old.offer["terms"].get("match_daily_quota")).checked(today())
        with store.write(home.db):
            if old.state in (State.OFFERED, State.PENDING, State.ACTIVE, State.LAPSED):
                assert old.offer_hash is not None  # every state that allows a revoke has an offer
                revoke = sign_document(new_response(Action.REVOKE, home.node_id, old_id, old.offer_hash,
                                                    store.now_ts()), home.identity)
                peers.add_document(home.db, old_id, revoke, delivered=False, own=home.identity)
                audit.append(home.db, "consent-revoke-sent", old_id, reason=f"replaced by {peer.node_id}")
            peers.remember(home.db, peer.descriptor)
            keys.replace(home.db, old_id, peer.node_id, url)
            current = peers.agreement(home.db, home.node_id, peer.node_id, today())
            check_action(current, Action.OFFER)
            offer = sign_document(new_offer(home.node_id, peer.node_id, terms, home.descriptor(), store.now_ts(),
                                            current.offer_hash), home.identity)
            peers.add_document(home.db, peer.node_id, offer, delivered=False, own=home.identity)
            audit.append(home.db, "peer-replaced", peer.node_id, old=old_id, url=url)
            audit.append(home.db, "consent-offer-sent", peer.node_id, terms=terms.to_wire(), url=url)
        report = await deliver_pending(home, c, only=peer.node_id)
    return {**_state(home, peer.node_id), **report.about(peer.node_id), "replaces": old_id}
