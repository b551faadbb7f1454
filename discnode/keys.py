"""Key histories (spec section 4.6) and peer replacements (section 4.7).

The one module that writes the `key_events` and `peer_replacements` tables. Every chain is verified
(documents/succession.py) before it is stored, and a stored chain is only ever extended: a chain
that forks from the one held, or is shorter, is a rollback or a forgery and is refused.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from . import store
from .documents.succession import KeyPeriod, KeyState, extends, verify_chain
from .errors import Unauthenticated
from .identity import b64u_decode
from .signing import document_hash


def _events(db: store.DB, where: str, params: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(r[0]) for r in db.execute(f"SELECT doc FROM key_events WHERE {where} ORDER BY seq", params)]


def periods(events: Iterable[Mapping[str, Any]]) -> tuple[KeyPeriod, ...]:
    """The key periods of a chain already verified (as every stored one is): no signature checks,
    so that the request path can afford it."""
    out: list[KeyPeriod] = []
    for event in events:
        if out:
            last = out[-1]
            out[-1] = KeyPeriod(last.seq, last.public_key, last.valid_from, event["grace_until"])
        out.append(KeyPeriod(event["seq"], b64u_decode(event["key"]), event["issued_at"], None))
    return tuple(out)


def own_events(db: store.DB) -> list[dict[str, Any]]:
    return _events(db, "own = 1", [])


def events_of(db: store.DB, node_id: str) -> list[dict[str, Any]]:
    return _events(db, "node_id = ?", [node_id])


def state_of(db: store.DB, node_id: str) -> KeyState | None:
    """A node's stored chain, verified again (for the rare paths: adopting a descriptor)."""
    events = events_of(db, node_id)
    return verify_chain(events) if events else None


def history(db: store.DB, node_id: str) -> tuple[KeyPeriod, ...]:
    return periods(events_of(db, node_id))


def keys_at(db: store.DB, node_id: str, when: str) -> list[bytes]:
    """The keys of node_id that may sign something dated `when` (a timestamp), current first; empty
    if the node has no key history here (the caller uses its pinned key)."""
    return [p.public_key for p in reversed(history(db, node_id)) if p.valid_at(when)]


def own_keys_at(db: store.DB, when: str) -> list[bytes]:
    """This node's own keys that could sign something dated `when`, current first."""
    return [p.public_key for p in reversed(periods(own_events(db))) if p.valid_at(when)]


def record(db: store.DB, state: KeyState, *, own: bool = False) -> int:
    """Store a verified chain: the events not yet held. Unauthenticated if it does not extend the
    chain held for that node. Returns how many events were new."""
    with store.write(db) as conn:
        check_continues(db, state)
        new = state.events[len(events_of(db, state.node_id)):]
        now = store.now_ts()
        for event in new:
            conn.execute("INSERT INTO key_events (node_id, seq, own, key, hash, doc, received) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         [state.node_id, event["seq"], int(own), event["key"], document_hash(event),
                          json.dumps(event), now])
        return len(new)


def retire_own(db: store.DB) -> None:
    """This node's own key history becomes that of a former identity (`discnode key reset`): kept,
    no longer this node's."""
    with store.write(db) as conn:
        conn.execute("UPDATE key_events SET own = 0 WHERE own = 1")


def check_continues(db: store.DB, state: KeyState) -> None:
    """Unauthenticated unless `state` is, or continues, the chain held for its node (read only)."""
    held = events_of(db, state.node_id)
    if held and not extends(verify_chain(held), state):
        raise Unauthenticated(f"the key history offered for {state.node_id} does not continue the one held "
                              "(a rollback to an older key, or a forged succession); nothing changed")


# --- replacements (section 4.7) ---------------------------------------------------------------


def replace(db: store.DB, old_id: str, new_id: str, url: str) -> None:
    with store.write(db) as conn:
        conn.execute("INSERT INTO peer_replacements (old_id, new_id, replaced, url) VALUES (?, ?, ?, ?)",
                     [old_id, new_id, store.now_ts(), url])


def replaced_by(db: store.DB, old_id: str) -> str | None:
    row = db.execute("SELECT new_id FROM peer_replacements WHERE old_id = ?", [old_id]).fetchone()
    return row[0] if row else None


def predecessors(db: store.DB, new_id: str) -> list[dict[str, str]]:
    """The node IDs a peer replaced, newest first, transitively (A replaced by B replaced by C)."""
    out: list[dict[str, str]] = []
    wanted, seen = [new_id], {new_id}
    while wanted:
        for old_id, replaced, url in db.execute(
                "SELECT old_id, replaced, url FROM peer_replacements WHERE new_id = ? ORDER BY replaced DESC",
                [wanted.pop()]).fetchall():
            if old_id not in seen:
                seen.add(old_id)
                out.append({"node_id": old_id, "replaced": replaced, "url": url})
                wanted.append(old_id)
    return out


# --- delivery of this node's own history (through peering's outbox) ---------------------------


def head_delivered(db: store.DB, peer: str) -> str | None:
    row = db.execute("SELECT head FROM key_head_delivered WHERE peer = ?", [peer]).fetchone()
    return row[0] if row else None


def mark_head_delivered(db: store.DB, peer: str, head: str) -> None:
    with store.write(db) as conn:
        conn.execute("INSERT INTO key_head_delivered (peer, head, delivered) VALUES (?, ?, ?) "
                     "ON CONFLICT (peer) DO UPDATE SET head = excluded.head, delivered = excluded.delivered",
                     [peer, head, store.now_ts()])
