"""Checkpoints and witnesses of audit logs (spec sections 9.3 to 9.5).

The one module that writes the `audit_heads` table (this node's own signed checkpoints, and the
heads partners sent it) and `audit_head_delivered` (which of its own heads each partner took).
Its own heads reach partners through peering.deliver_pending, the one delivery mechanism for
every document. `verify` is what `discnode audit --verify` runs: the chain, then the checkpoints,
then every reachable partner's witness.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from . import audit, keys, peers, schemas, store
from .audithead import Finding, Outcome, against, check_head, compare, new_head, retained
from .client import PeerClient, error_for
from .errors import DiscnodeError, InvalidInput, Refused, Unauthenticated
from .home import Home, today
from .signing import document_hash

log = logging.getLogger("discnode.witness")

#: How often `serve` signs a new checkpoint (if the log moved), and so sends partners a new head.
CHECKPOINT_EVERY = 3600.0
#: Heads a witness keeps as evidence (rollbacks, forks) per node; a hostile partner cannot fill
#: the disk by signing contradictions.
MAX_EVIDENCE = 50
HEAD_PATH = "/v1/audit/head"


def _insert(db: store.DB, doc: dict[str, Any], flag: str | None) -> str:
    digest = document_hash(doc)
    with store.write(db) as conn:
        conn.execute("INSERT OR IGNORE INTO audit_heads (hash, node_id, entries, head, issued_at, doc, received, "
                     "flag) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     [digest, doc["node_id"], doc["entries"], doc["head"], doc["issued_at"],
                      json.dumps(doc), store.now_ts(), flag])
    return digest


# --- this node's own checkpoints -------------------------------------------------------------


def checkpoint(home: Home) -> dict[str, Any]:
    """Sign the log's head now and keep it. Not itself an audit entry: the checkpoint is the
    evidence, and an entry for it would move the head it states."""
    with store.write(home.db):  # the head read and the checkpoint written in one transaction
        entries, head = audit.head(home.db)
        doc = new_head(home.identity, entries, head, store.now_ts())
        _insert(home.db, doc, None)
    # The node commits with synchronous=NORMAL (store.connect): a commit survives the process
    # dying, but until the write-ahead log is next synced a power cut can take the last ones. A
    # head is about to be given to witnesses, and one that holds a head this node then loses
    # would see a log rolled back. A checkpoint syncs the log before anything else, so every
    # entry up to the head (and the head) is on stable storage before any partner can take it.
    store.sync_log(home.db)
    return doc


def own_checkpoints(db: store.DB, me: str) -> list[dict[str, Any]]:
    return [json.loads(r[0]) for r in db.execute(
        "SELECT doc FROM audit_heads WHERE node_id = ? ORDER BY rowid", [me]).fetchall()]


def _latest_own(db: store.DB, me: str) -> tuple[str, dict[str, Any]] | None:
    row = db.execute("SELECT hash, doc FROM audit_heads WHERE node_id = ? ORDER BY rowid DESC LIMIT 1",
                     [me]).fetchone()
    return (row[0], json.loads(row[1])) if row else None


def checkpoint_if_due(home: Home, every: float = CHECKPOINT_EVERY, now: dt.datetime | None = None
                      ) -> dict[str, Any] | None:
    """The daemon's periodic checkpoint: a new one if the log moved and the last is `every` old."""
    now = now or dt.datetime.now(dt.timezone.utc)
    last = _latest_own(home.db, home.node_id)
    if last is not None:
        doc = last[1]
        if (doc["entries"], doc["head"]) == audit.head(home.db):
            return None
        signed = dt.datetime.fromisoformat(doc["issued_at"].replace("Z", "+00:00"))
        if (now - signed).total_seconds() < every:
            return None
    return checkpoint(home)


def undelivered(db: store.DB, me: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(hash, partner, head) for each partner with an active agreement that has not taken this
    node's latest head. Only the latest is ever sent: a newer one supersedes any not yet taken."""
    latest = _latest_own(db, me)
    if latest is None:
        return []
    digest, doc = latest
    taken = dict(db.execute("SELECT peer, hash FROM audit_head_delivered").fetchall())
    return [(digest, p.node_id, doc) for p in peers.all_peers(db)
            if taken.get(p.node_id) != digest and peers.agreement(db, me, p.node_id, today()).active]


def mark_delivered(db: store.DB, peer: str, digest: str) -> None:
    with store.write(db) as conn:
        conn.execute("INSERT INTO audit_head_delivered (peer, hash, delivered) VALUES (?, ?, ?) "
                     "ON CONFLICT (peer) DO UPDATE SET hash = excluded.hash, delivered = excluded.delivered",
                     [peer, digest, store.now_ts()])


# --- heads partners sent (this node as witness) ----------------------------------------------


def receive(db: store.DB, peer: str, doc: dict[str, Any], now: dt.datetime | None = None) -> Outcome:
    """Keep a partner's verified head. Never backwards: a head with fewer entries than one held,
    or as many with another hash, is kept as evidence, flagged, and never becomes the latest."""
    now = now or dt.datetime.now(dt.timezone.utc)
    with store.write(db) as conn:
        rows = conn.execute("SELECT hash, entries, head, received FROM audit_heads "
                            "WHERE node_id = ? AND flag IS NULL", [peer]).fetchall()
        held = max(({"entries": r[1], "head": r[2]} for r in rows), key=lambda h: h["entries"], default=None)
        outcome = compare(held, doc)
        same_entries = {r[2] for r in rows if r[1] == doc["entries"]}
        if same_entries:  # against every head kept, not only the latest
            outcome = Outcome.SAME if doc["head"] in same_entries else Outcome.FORK
        if outcome in (Outcome.ROLLBACK, Outcome.FORK):
            kept = conn.execute("SELECT count(*) FROM audit_heads WHERE node_id = ? AND flag IS NOT NULL",
                                [peer]).fetchone()[0]
            if kept < MAX_EVIDENCE:
                _insert(db, doc, outcome.value)
            log.warning("audit head from %s goes backwards (%s): %s entries", peer, outcome.value, doc["entries"])
        elif outcome is Outcome.NEWER:
            digest = _insert(db, doc, None)
            times = {r[0]: r[3] for r in rows} | {digest: store.now_ts()}
            keep = retained(times, digest, now)
            for old in set(times) - keep:
                conn.execute("DELETE FROM audit_heads WHERE hash = ? AND flag IS NULL", [old])
    return outcome


def held_for(db: store.DB, peer: str) -> dict[str, Any]:
    """What this node holds of `peer`'s log, for `peer` alone (audit-head-reply)."""
    heads = [json.loads(r[0]) for r in db.execute(
        "SELECT doc FROM audit_heads WHERE node_id = ? AND flag IS NULL ORDER BY entries, rowid", [peer])]
    evidence = [{"flag": r[0], "head": json.loads(r[1])} for r in db.execute(
        "SELECT flag, doc FROM audit_heads WHERE node_id = ? AND flag IS NOT NULL ORDER BY rowid", [peer])]
    return {"heads": heads, "evidence": evidence}


# --- verification ----------------------------------------------------------------------------


@dataclass
class Report:
    entries: int
    chain_ok: bool
    chain_reason: str = ""
    chain_first_bad: int | None = None
    checkpoints: int = 0
    archives: int = 0
    #: Entries in the live table (the rest are archived).
    chain_entries: int = 0
    findings: list[Finding] = field(default_factory=list)
    partners: list[dict[str, Any]] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    #: Restores from a backup that heads signed before them show (backup.restore): per restore,
    #: the entry the log was cut back to and the heads showing that entries beyond it existed.
    restores: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No tampering: the chain holds and every head either agrees or predates a restore."""
        return self.chain_ok and not self.findings

    @property
    def state(self) -> str:
        return "tampered" if not self.ok else "restored" if self.restores else "intact"

    def restored_from(self, cut: dict[str, Any], head: dict[str, Any], source: str) -> None:
        row = next((r for r in self.restores if r["restored_at"] == cut["seq"]), None)
        if row is None:
            row = {"entry": cut["entries"], "restored_at": cut["seq"], "ts": cut["ts"],
                   "backup_created": cut["backup_created"], "lost_up_to": cut["entries"], "witnesses": []}
            self.restores.append(row)
        row["lost_up_to"] = max(row["lost_up_to"], head["entries"])
        row["witnesses"].append({"source": source, "entries": head["entries"], "issued_at": head["issued_at"]})

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "state": self.state, "entries": self.entries,
                "chain": {"ok": self.chain_ok, "reason": self.chain_reason, "first_bad": self.chain_first_bad},
                "checkpoints": self.checkpoints, "archives": self.archives,
                "findings": [f.to_json() for f in self.findings],
                "restores": self.restores, "partners": self.partners, "unchecked": self.unchecked}


def _restore_explaining(restores: list[dict[str, Any]], head: dict[str, Any], hash_at: Any
                        ) -> dict[str, Any] | None:
    """The restore that explains why `head` disagrees with the log, if one does: a head of more
    entries than the backup held, signed before the restore, where the log still holds the
    backup's head at its entry and the `restored` entry follows it at once. A head signed after
    the restore, or one the backup's own entries contradict, is not explained: that is tampering.
    Times are whole seconds: a head signed in the restore's own second is not explained either
    (a false alarm is the safe side of that doubt)."""
    for cut in reversed(restores):
        if (head["entries"] > cut["entries"] and head["issued_at"] < cut["ts"]
                and cut["seq"] == cut["entries"] + 1
                and (cut["entries"] == 0 or hash_at(cut["entries"]) == cut["head"])):
            return cut
    return None


def _check_own(db: store.DB, doc: Any, me: str, key: bytes) -> dict[str, Any]:
    """One of this node's own heads: signed by its current key, or by a former key (spec 4.6)
    while that key was valid, at the head's issued_at."""
    when = doc.get("issued_at") if isinstance(doc, dict) else None
    former = [k for k in keys.own_keys_at(db, when) if k != key] if isinstance(when, str) else []
    for candidate in former:
        try:
            return check_head(doc, me, candidate)
        except DiscnodeError:
            continue
    return check_head(doc, me, key)


def _ours(db: store.DB, docs: list[Any], me: str, key: bytes) -> list[dict[str, Any]]:
    out = []
    for doc in docs:
        try:
            out.append(_check_own(db, doc, me, key))
        except DiscnodeError:
            continue
    return out


async def _ask(client: PeerClient, peer: peers.Peer, timeout: float) -> dict[str, Any]:
    reply = await client.request(peer, "GET", HEAD_PATH, timeout=timeout)
    if reply.status != 200:
        raise error_for(reply.status, f"HTTP {reply.status}")
    held = reply.json()
    schemas.validate("audit-head-reply", held)
    return held


async def verify(home: Home, client: PeerClient | None = None, timeout: float = 3.0) -> Report:
    from . import auditarchive

    db, me, key = home.db, home.node_id, home.identity.public_key
    chain = audit.verify(db)
    length = audit.head(db)[0]
    report = Report(length, chain.ok, chain.reason, chain.first_bad, chain_entries=chain.entries)
    # Archived entries (auditarchive.py): the live chain starts from a signed head; archive files
    # in place are checked, and give the hashes heads of archived entries are compared with.
    archived = auditarchive.verify(home)
    report.findings += archived.findings
    report.unchecked += archived.missing
    report.archives = len(auditarchive.archives(db))
    archived_upto = audit.archived_through(db)[0]
    skipped: set[int] = set()

    def hash_at(n: int) -> str | None:
        return archived.hashes.get(n) if n <= archived_upto else audit.hash_at(db, n)

    restores = audit.restores(db)

    def compare_all(heads: list[dict[str, Any]], source: str) -> None:
        for head in heads:
            if 0 < head["entries"] <= archived_upto and head["entries"] not in archived.hashes:
                skipped.add(head["entries"])  # archived, and its file is not in place
                continue
            finding = against(head, length, hash_at, source)
            if finding is None:
                continue
            cut = _restore_explaining(restores, head, hash_at)
            if cut is None:
                report.findings.append(finding)
            else:
                report.restored_from(cut, head, source)

    mine = []
    for doc in own_checkpoints(db, me):
        try:
            mine.append(_check_own(db, doc, me, key))
        except DiscnodeError:
            report.findings.append(Finding("forged", doc.get("entries", 0), "a checkpoint",
                                           f"a checkpoint of {doc.get('issued_at')} is not signed by this node"))
    report.checkpoints = len(mine)
    compare_all(mine, "this node's checkpoint")

    partners = [p for p in peers.all_peers(db) if peers.agreement(db, me, p.node_id, today()).active]
    if not partners:
        report.unchecked.append("no partner with an active agreement witnesses this log")
    own_client = client is None
    c = client or PeerClient(home.identity, timeout=timeout)
    try:
        answers = await asyncio.gather(*(_ask(c, p, timeout) for p in partners), return_exceptions=True)
    finally:
        if own_client:
            await c.close()
    for peer, answer in zip(partners, answers):
        row: dict[str, Any] = {"node_id": peer.node_id, "name": peer.name}
        if isinstance(answer, BaseException):
            if not isinstance(answer, DiscnodeError):
                raise answer
            status = ("refused" if isinstance(answer, (Refused, Unauthenticated)) else
                      "invalid" if isinstance(answer, InvalidInput) else "unreachable")
            row.update(status=status, error=str(answer))
            report.unchecked.append(f"{peer.name} ({peer.node_id}): {answer}")
        else:
            latest = _ours(db, answer["heads"], me, key)
            evidence = _ours(db, [e["head"] for e in answer["evidence"]], me, key)
            bad = len(answer["heads"]) + len(answer["evidence"]) - len(latest) - len(evidence)
            if bad:  # not signed by this node: a partner cannot speak for this node's log
                report.unchecked.append(f"{peer.name} ({peer.node_id}) returned {bad} head(s) this node "
                                        "did not sign")
            row.update(status="checked", witnessed=max((h["entries"] for h in latest), default=None),
                       evidence=len(evidence))
            compare_all(latest + evidence, f"partner {peer.node_id}")
        report.partners.append(row)
    if skipped:
        report.unchecked.append(f"{len(skipped)} head(s) of archived entries whose archive file is not in place")
    return report


def keep_own(db: store.DB, me: str, docs: list[dict[str, Any]]) -> int:
    """Keep heads of this node's own log that partners witnessed (recovery.py, after a restore),
    already checked as signed by this node. Kept as checkpoints: they are this node's own
    statements, and `verify` holds the log to them. Returns how many were new."""
    held = {r[0] for r in db.execute("SELECT hash FROM audit_heads WHERE node_id = ?", [me])}
    new = [d for d in docs if d["node_id"] == me and document_hash(d) not in held]
    for doc in new:
        _insert(db, doc, None)
    return len({document_hash(d) for d in new})
