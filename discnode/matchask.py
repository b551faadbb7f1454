"""Private matching, the asker's side: `discnode match` and `discnode reveal NODE_ID:REF`.

For each match-only partner: blind the Level Two key of every name asked about, have the partner
evaluate the blinded elements (against the agreement's daily quota), unblind and finalize them,
and look for the results in the partner's published set. The partner learns how many names were
asked, never which; this node learns hit or no-hit, and holds only keyed outputs it cannot
recompute without the partner (protocol/match-v1.md). Audited: counts and references, never names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import audit, match, namekey, oprf, peers, revealed, schemas
from .client import PeerClient
from .dataview import verify_records
from .errors import DiscnodeError, InvalidInput, PeerError, Refused
from .home import Home, today
from .identity import parse_node_id

#: The holder may evaluate its whole set on the first request of an agreement (seconds for 18,000).
SET_TIMEOUT = 60.0


@dataclass(frozen=True)
class Person:
    first_name: str
    last_name: str
    dob: str

    def key(self) -> bytes:
        return namekey.key(f"{self.first_name} {self.last_name}", self.dob)


def match_partners(home: Home) -> list[peers.Peer]:
    day = today()
    return [p for p in peers.all_peers(home.db)
            if "match" in peers.agreement(home.db, home.node_id, p.node_id, day).share]


def _checked(reply: Any, schema: str, peer: peers.Peer) -> dict[str, Any]:
    try:
        schemas.validate(schema, reply)
    except InvalidInput as exc:
        raise PeerError(f"{peer.name} sent a malformed {schema} reply: {exc}") from None
    return reply


async def ask_one(home: Home, client: PeerClient, peer: peers.Peer, people: list[Person]) -> dict[str, Any]:
    """Ask one partner about `people`; every name counts against the day's quota."""
    keys = [p.key() for p in people]
    blinds = [oprf.blind(k) for k in keys]
    evaluated: list[bytes] = []
    quota: dict[str, Any] = {}
    for start in range(0, len(blinds), match.MAX_BATCH):
        batch = blinds[start:start + match.MAX_BATCH]
        reply = _checked(await client.call_json(peer, "POST", "/v1/match/evaluate",
                                                {"blinded": [match.b64(b) for _, b in batch]}),
                         "match-evaluate-reply", peer)
        if len(reply["evaluated"]) != len(batch):
            raise PeerError(f"{peer.name} evaluated {len(reply['evaluated'])} of {len(batch)} elements")
        evaluated += [match.unb64(z, oprf.POINT_BYTES, "evaluated element") for z in reply["evaluated"]]
        quota = reply["quota"]
    published = _checked(await client.call_json(peer, "GET", "/v1/match/set", timeout=SET_TIMEOUT),
                         "match-set-reply", peer)
    known = set(published["outputs"])
    results = []
    for person, key, (r, _), z in zip(people, keys, blinds, evaluated):
        try:
            output = oprf.finalize(key, oprf.unblind(r, z))
        except InvalidInput as exc:
            raise PeerError(f"{peer.name} sent an invalid evaluated element: {exc}") from None
        hit = match.b64(output) in known
        results.append({"first_name": person.first_name, "last_name": person.last_name, "dob": person.dob,
                        "result": "hit" if hit else "no-hit", "ref": match.ref_of(output) if hit else None})
    refs = [r["ref"] for r in results if r["ref"]]
    audit.append(home.db, "match-asked", peer.node_id, names=len(people), hits=len(refs), refs=refs)
    return {"node_id": peer.node_id, "name": peer.name, "status": "ok", "quota": quota, "results": results}


async def ask(home: Home, people: list[Person], only: str | None = None) -> list[dict[str, Any]]:
    """Ask every match-only partner (or one) about `people`; a partner that fails is reported,
    the others still answer."""
    if not people:
        raise InvalidInput("give at least one name")
    for person in people:  # every name and date checked before anything is sent
        person.key()
    partners = match_partners(home)
    if only:
        partners = [p for p in partners if p.node_id == parse_node_id(only)]
    if not partners:
        raise Refused("no active agreement shares match; offer one with `discnode peer add URL --expect ID "
                      "--share match`")
    out = []
    async with PeerClient(home.identity) as client:
        for peer in partners:
            try:
                out.append(await ask_one(home, client, peer, people))
            except DiscnodeError as exc:
                audit.append(home.db, "match-failed", peer.node_id, names=len(people), reason=str(exc)[:300])
                out.append({"node_id": peer.node_id, "name": peer.name, "status": "error", "error": str(exc),
                            "results": []})
    return out


async def reveal(home: Home, target: str) -> dict[str, Any]:
    """Ask the holder to reveal the profile behind NODE_ID:REF; returns its state, and the verified
    records once its administrator allowed it."""
    node_part, _, ref = target.partition(":")
    node_id = parse_node_id(node_part)
    schemas.validate("match-reveal", {"ref": ref})
    peer = peers.get(home.db, node_id)
    if "match" not in peers.agreement(home.db, home.node_id, node_id, today()).share:
        raise Refused(f"no active agreement sharing match with {peer.name}")
    async with PeerClient(home.identity) as client:
        reply = _checked(await client.call_json(peer, "POST", "/v1/match/reveal", {"ref": ref}),
                         "match-reveal-reply", peer)
    records = []
    if reply["state"] == "allowed":
        records, dropped, reason = verify_records(reply.get("records", []), peer)
        if dropped:
            raise PeerError(f"{peer.name} revealed a profile that failed verification: {reason}")
        revealed.keep(home.db, node_id, ref, records)  # for level-two --include-match
    audit.append(home.db, "reveal-asked" if reply["state"] != "allowed" else "reveal-received", node_id,
                 ref=ref, request=reply["request"], state=reply["state"], ids=[r["id"] for r in records])
    return {"node_id": node_id, "name": peer.name, "ref": ref, "request": reply["request"],
            "state": reply["state"], "records": [{**r, "origin_name": peer.name} for r in records]}
