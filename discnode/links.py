"""Same-person links: one of our profiles and a partner's describe one person (spec section 8.6).

The one module that writes the `links` table. A link is proposed by either side (from a Level Two
group, or by hand) and holds once the other side's administrator confirms it; a confirmed proposal
(proposals.py) with the proposer's own profile is a link both have confirmed already. A declined
link is never suggested or proposed again for that pair. Links are each side's own note: never
served. The documents travel through peering.deliver_pending, only while the agreement is active.
"""

from __future__ import annotations

import json
from typing import Any

from . import audit, peers, store
from .documents.link import CONFIRMED, DECLINED, check, new_answer, new_link
from .errors import Conflict, InvalidInput, NotFound
from .home import Home, today
from .refs import check_profile_id, parse_ref, require_active
from .signing import document_hash

OFFERED = "offered"    # we proposed it; waiting for the partner
PENDING = "pending"    # the partner proposed it; waiting for us
REFUSED = "refused"    # the partner's node refused our proposal (its reason in `refusal`)
#: Links from one partner awaiting our administrator, at most (refused with 409 beyond it).
MAX_PENDING = 500


def pair_key(me: str, mine: str, peer: str, theirs: str) -> str:
    """The same key on both sides: the two references in order."""
    return "|".join(sorted((f"{me}:{mine}", f"{peer}:{theirs}")))


def _rows(db: store.DB, where: str, params: list[Any]) -> list[dict[str, Any]]:
    cur = db.execute(f"SELECT * FROM links WHERE {where} ORDER BY created, rowid", params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "mine": row["mine"], "theirs": f"{row['peer']}:{row['theirs']}", "peer": row["peer"],
            "state": row["state"], "proposed_by": row["proposer"], "source": row["source"],
            "refusal": row["refusal"], "created": row["created"], "decided": row["decided"]}


def _own_shared_or_mine(db: store.DB, me: str, profile_id: str, peer: str | None) -> None:
    """Our profile must exist (and, when a partner names it, be one we share with it now)."""
    if peer is None:
        if store.get_profile(db, profile_id)["origin"] != me:
            raise InvalidInput(f"{profile_id} is not one of this node's own profiles")
        return
    try:
        store.get_shareable(db, profile_id, me, today(), peers.audience(db, me, peer, today()))
    except NotFound:
        raise NotFound(f"no shared profile {profile_id}") from None


def propose(home: Home, mine: str, target: str) -> str:
    """Sign and keep a link proposal; returns its hash (delivered by peering)."""
    peer, theirs = parse_ref(target)
    mine = check_profile_id(mine)
    if peer == home.node_id:
        raise InvalidInput("a link joins one of this node's profiles to a partner's")
    peers.get(home.db, peer)
    require_active(home, peer, "links")
    _own_shared_or_mine(home.db, home.node_id, mine, None)
    key = pair_key(home.node_id, mine, peer, theirs)
    held = _rows(home.db, "key = ?", [key])
    if held:
        state = held[0]["state"]
        raise Conflict({DECLINED: "that link was declined before: it is not proposed again",
                        CONFIRMED: "those profiles are already linked",
                        PENDING: f"the partner proposed that link: discnode link confirm {held[0]['id']}"}.get(
            state, f"that link is already {state}"))
    doc = new_link(home.identity, peer, mine, theirs, store.now_ts())
    digest = document_hash(doc)
    with store.write(home.db) as conn:
        conn.execute("INSERT INTO links (key, id, mine, peer, theirs, state, proposer, doc, doc_hash, doc_delivered, "
                     "source, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 'administrator', ?)",
                     [key, doc["id"], mine, peer, theirs, OFFERED, home.node_id, json.dumps(doc), digest,
                      store.now_ts()])
        audit.append(home.db, "link-sent", peer, id=doc["id"], mine=mine, theirs=theirs)
    return digest


def by_hash(db: store.DB, digest: str) -> dict[str, Any]:
    rows = _rows(db, "doc_hash = ? OR answer_hash = ?", [digest, digest])
    if not rows:
        raise NotFound("no such link")
    return _view(rows[0])


def receive(db: store.DB, me: str, peer: str, public_key: bytes, body: Any) -> dict[str, Any]:
    """A partner's signed link proposal naming one of our profiles we share with it now."""
    doc = check(body, "link", peer, me, public_key)
    _own_shared_or_mine(db, me, doc["yours"], peer)
    key = pair_key(me, doc["yours"], peer, doc["mine"])
    digest = document_hash(doc)
    held = _rows(db, "key = ?", [key])
    if held:
        row = held[0]
        if row["doc_hash"] == digest or row["state"] == CONFIRMED:
            return {"id": row["id"] or doc["id"], "state": row["state"] if row["state"] != OFFERED else PENDING}
        if row["state"] == DECLINED:
            raise Conflict("that link was declined before")
        raise Conflict(f"that link is already {row['state']} here")
    waiting = db.execute("SELECT count(*) FROM links WHERE peer = ? AND proposer = ? AND state = ?",
                         [peer, peer, PENDING]).fetchone()[0]
    if waiting >= MAX_PENDING:
        raise Conflict(f"{waiting} links from you already await an answer here; try again later")
    with store.write(db) as conn:
        conn.execute("INSERT INTO links (key, id, mine, peer, theirs, state, proposer, doc, doc_hash, doc_delivered, "
                     "source, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 'partner', ?)",
                     [key, doc["id"], doc["yours"], peer, doc["mine"], PENDING, peer, json.dumps(doc), digest,
                      store.now_ts()])
    return {"id": doc["id"], "state": PENDING}


def decide(home: Home, link_id: str, confirm: bool) -> dict[str, Any]:
    """Confirm or decline a link a partner proposed; sign the answer for it."""
    link_id = link_id.strip().lower()
    if len(link_id) != 16 or any(c not in "0123456789abcdef" for c in link_id):
        raise InvalidInput(f"{link_id[:40]!r} is not a link ID (16 hex digits)")
    rows = [r for r in _rows(home.db, "id = ?", [link_id]) if r["proposer"] != home.node_id]
    if not rows:
        raise NotFound(f"no link {link_id} was proposed to this node")
    row = rows[0]
    if row["state"] != PENDING:
        raise Conflict(f"link {link_id} is already {row['state']}")
    require_active(home, row["peer"], "answer to its links")
    answer = new_answer(home.identity, json.loads(row["doc"]), row["doc_hash"], CONFIRMED if confirm else DECLINED,
                        store.now_ts())
    with store.write(home.db) as conn:
        conn.execute("UPDATE links SET state = ?, answer_doc = ?, answer_hash = ?, answer_delivered = 0, decided = ? "
                     "WHERE key = ?", [answer["answer"], json.dumps(answer), document_hash(answer), store.now_ts(),
                                       row["key"]])
        audit.append(home.db, f"link-{answer['answer']}", row["peer"], id=link_id, mine=row["mine"],
                     theirs=row["theirs"])
    return _view(_rows(home.db, "key = ?", [row["key"]])[0])


def receive_answer(db: store.DB, me: str, peer: str, public_key: bytes, body: Any) -> dict[str, Any]:
    doc = check(body, "link-answer", peer, me, public_key)
    rows = [r for r in _rows(db, "peer = ? AND id = ?", [peer, doc["link"]]) if r["proposer"] == me]
    if not rows or rows[0]["doc_hash"] != doc["link_hash"]:
        raise NotFound("no such link was proposed to you")
    row = rows[0]
    if row["state"] == doc["answer"]:
        return {"id": row["id"], "state": row["state"]}
    if row["state"] != OFFERED:
        raise Conflict(f"that link is already {row['state']}")
    with store.write(db) as conn:
        conn.execute("UPDATE links SET state = ?, answer_doc = ?, answer_hash = ?, answer_delivered = 1, decided = ? "
                     "WHERE key = ?", [doc["answer"], json.dumps(doc), document_hash(doc), store.now_ts(), row["key"]])
    return {"id": row["id"], "state": doc["answer"]}


def record_confirmed(db: store.DB, me: str, mine: str, peer: str, theirs: str, source: str) -> None:
    """A link both administrators have confirmed already (a confirmed proposal naming the
    proposer's own profile): no documents of its own. Part of the caller's transaction."""
    with store.write(db) as conn:
        conn.execute("INSERT INTO links (key, mine, peer, theirs, state, source, created, decided) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET state = excluded.state, "
                     "decided = excluded.decided",
                     [pair_key(me, mine, peer, theirs), mine, peer, theirs, CONFIRMED, source, store.now_ts(),
                      store.now_ts()])


def undelivered(db: store.DB, me: str) -> list[tuple[str, str, dict[str, Any]]]:
    out = [(r["doc_hash"], r["peer"], json.loads(r["doc"]))
           for r in _rows(db, "proposer = ? AND doc_delivered = 0", [me])]
    out += [(r["answer_hash"], r["peer"], json.loads(r["answer_doc"]))
            for r in _rows(db, "proposer = peer AND answer_doc IS NOT NULL AND answer_delivered = 0", [])]
    return [(h, to, d) for h, to, d in out if peers.agreement(db, me, to, today()).active]


def mark_delivered(db: store.DB, digest: str, refusal: str | None) -> None:
    with store.write(db) as conn:
        if refusal is None:
            conn.execute("UPDATE links SET doc_delivered = 1 WHERE doc_hash = ?", [digest])
        else:
            conn.execute("UPDATE links SET doc_delivered = 1, state = ?, refusal = ? WHERE doc_hash = ?",
                         [REFUSED, refusal[:500], digest])
        conn.execute("UPDATE links SET answer_delivered = 1 WHERE answer_hash = ?", [digest])


def states(db: store.DB) -> dict[str, str]:
    """Every link's state by its pair key (for Level Two's suggestions)."""
    return dict(db.execute("SELECT key, state FROM links").fetchall())


def confirmed(db: store.DB, me: str) -> list[dict[str, Any]]:
    return [_view(r) for r in _rows(db, "state = ?", [CONFIRMED]) if peers.agreement(db, me, r["peer"], today()).active]


def linked_to(db: store.DB, me: str, origin: str, profile_id: str) -> list[str]:
    """The references confirmed as the same person as origin:profile_id, seen from this node."""
    out = []
    for link in confirmed(db, me):
        if origin == me and link["mine"] == profile_id:
            out.append(link["theirs"])
        elif link["theirs"] == f"{origin}:{profile_id}":
            out.append(f"{me}:{link['mine']}")
    return out


def all_linked(db: store.DB, me: str) -> dict[tuple[str, str], list[str]]:
    """(origin, profile ID) -> the references confirmed as the same person, both ways round."""
    out: dict[tuple[str, str], list[str]] = {}
    for link in confirmed(db, me):
        out.setdefault((me, link["mine"]), []).append(link["theirs"])
        out.setdefault((link["peer"], link["theirs"].split(":")[1]), []).append(f"{me}:{link['mine']}")
    return out


def pending_received(db: store.DB, me: str) -> list[dict[str, Any]]:
    return [_view(r) for r in _rows(db, "state = ? AND proposer != ?", [PENDING, me])
            if peers.agreement(db, me, r["peer"], today()).active]


def listing(db: store.DB) -> list[dict[str, Any]]:
    return [_view(r) for r in _rows(db, "1", [])]


def forget(db: store.DB, peer: str, theirs: str) -> int:
    """Drop every link (any state) to the partner's profile `theirs`: the partner erased it
    (notices.py). Returns how many were dropped."""
    with store.write(db) as conn:
        return conn.execute("DELETE FROM links WHERE peer = ? AND theirs = ?", [peer, theirs]).rowcount
