"""Archiving old audit entries without breaking verification (the audit log's retention policy).

Entries older than `[retention] audit_months` (config.toml) move to a file in HOME/audit-archive/
and leave the live table: the daemon does it with its retention run, `discnode retention --apply`
on demand. The one module that writes the `audit_archives` table.

An archive file is JSON Lines: a header, then the entries as they were stored (seq, ts, event,
peer, actor, detail, prev, hash). The header carries a head of the log at the archive's last
entry, signed by this node when it archived (audithead.py), and the hash the first entry follows.
The same signed head is kept in `audit_archives`: the live chain is verified from it (audit.verify
starts at its entry and hash), and `discnode audit --verify` checks its signature, then every
archive file still in place: its chain, that it follows the archive before it (or the genesis),
and that it ends at the signed head. So an archived entry changed in the file is caught, and so is
a file whose hashes were all recomputed (it no longer ends at the signed head). A file moved to
offline storage is reported as not checked; the live log still verifies from the signed head.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import audit, store
from .audithead import Finding, check_head, new_head
from .errors import DiscnodeError
from .exports import write_private
from .home import Home

FOLDER = "audit-archive"


def cutoff(today: dt.date, months: int) -> str:
    """Entries written before this time (ISO) are old enough to archive."""
    from .retention import add_months
    return add_months(today, -months).isoformat() + "T00:00:00Z"


def archivable(db: store.DB, before: str) -> tuple[int, int] | None:
    """(first, upto): the run of live entries written before `before`, never the last entry (the
    live table keeps the head); None if there is none."""
    first = audit.archived_through(db)[0] + 1
    newer = db.execute("SELECT min(seq) FROM audit WHERE ts >= ?", [before]).fetchone()[0]
    last = audit.head(db)[0]
    upto = min(last - 1, (newer - 1) if newer is not None else last)
    return (first, upto) if upto >= first else None


@dataclass(frozen=True)
class Archived:
    first: int
    upto: int
    file: str

    def to_json(self) -> dict[str, Any]:
        return {"first": self.first, "upto": self.upto, "file": self.file}


def archive(home: Home, before: str) -> Archived | None:
    """Move the entries written before `before` to a new archive file; None if there are none."""
    db = home.db
    span = archivable(db, before)
    if span is None:
        return None
    first, upto = span
    rows = db.execute("SELECT seq, ts, event, peer, actor, detail, prev, hash FROM audit "
                      "WHERE seq BETWEEN ? AND ? ORDER BY seq", [first, upto]).fetchall()
    checkpoint = new_head(home.identity, upto, rows[-1][7], store.now_ts())
    header = {"type": "audit-archive", "node_id": home.node_id, "first": first, "upto": upto,
              "prev": rows[0][6], "checkpoint": checkpoint}
    lines = [json.dumps(header, sort_keys=True)]
    for seq, ts, event, peer, actor, detail, prev, digest in rows:
        lines.append(json.dumps({"seq": seq, "ts": ts, "event": event, "peer": peer, "actor": actor,
                                 "detail": json.loads(detail), "prev": prev, "hash": digest}, sort_keys=True))
    name = f"audit-{first:012d}-{upto:012d}.jsonl"
    # The file is complete on disk before any entry leaves the table; if the transaction below
    # fails, the next run writes the same file again.
    write_private(home.path / FOLDER / name, ("\n".join(lines) + "\n").encode())
    from . import disclosures

    with store.write(db) as conn:
        # The disclosure index is derived from `served` entries: it must hold them before they go.
        disclosures.catch_up(db)
        conn.execute("INSERT INTO audit_archives (upto, first, head, file, checkpoint, created) "
                     "VALUES (?, ?, ?, ?, ?, ?)", [upto, first, rows[-1][7], name, json.dumps(checkpoint),
                                                   store.now_ts()])
        audit.drop_archived(conn, upto)
        audit.append(db, "audit-archived", "", first=first, upto=upto, file=name, before=before)
    return Archived(first, upto, name)


def archive_due(home: Home, today: dt.date) -> Archived | None:
    """The retention run's step: archive what `[retention] audit_months` says is old (0: never)."""
    months = home.config.audit_months
    return archive(home, cutoff(today, months)) if months else None


def archives(db: store.DB) -> list[dict[str, Any]]:
    cur = db.execute("SELECT first, upto, head, file, checkpoint, created FROM audit_archives ORDER BY upto")
    return [{"first": r[0], "upto": r[1], "head": r[2], "file": r[3], "checkpoint": json.loads(r[4]),
             "created": r[5]} for r in cur.fetchall()]


@dataclass
class Checked:
    """What verifying the archives found: problems, files not in place, and the archived hashes
    (entry number to hash) of the files that verified, for checking heads partners hold."""

    findings: list[Finding]
    missing: list[str]
    hashes: dict[int, str]


def _read(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    if not isinstance(header, dict) or header.get("type") != "audit-archive":
        raise ValueError("not an audit archive")
    return header, [json.loads(line) for line in lines[1:]]


def archived_entries(home: Home) -> list[dict[str, Any]]:
    """The entries of every archive file in place, oldest first (for subject access); an archive
    that cannot be read is skipped here: `audit --verify` is what reports it."""
    out: list[dict[str, Any]] = []
    for record in archives(home.db):
        try:
            out += _read(home.path / FOLDER / record["file"])[1]
        except (OSError, ValueError, IndexError):
            continue
    return out


def verify_file(path: Path, record: dict[str, Any], follows: str, me: str, key: bytes) -> tuple[Finding | None, dict[int, str]]:
    """One archive file against its record in `audit_archives` and the head of the archive before it."""
    first, upto = record["first"], record["upto"]
    source = f"archive {record['file']}"

    def bad(entry: int, why: str) -> tuple[Finding, dict[int, str]]:
        return Finding("archive", entry, source, f"{source}: {why}"), {}
    try:
        header, entries = _read(path)
        rows = [(e["seq"], e["ts"], e["event"], e["peer"], json.dumps(e["detail"]), e["prev"], e["hash"],
                 e.get("actor", "")) for e in entries]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        return bad(first, f"cannot be read ({exc})")
    if header.get("checkpoint") != record["checkpoint"] or (header.get("first"), header.get("upto")) != (first, upto):
        return bad(first, "its header is not the one this node recorded when it archived")
    if header.get("prev") != follows:
        return bad(first, f"entry {first} does not follow the archive before it")
    verdict = audit.verify_rows(rows, first - 1, follows)
    if not verdict.ok:
        return bad(verdict.first_bad or first, verdict.reason)
    if verdict.entries != upto - first + 1 or rows[-1][6] != record["checkpoint"]["head"]:
        return bad(upto, f"does not end at the signed head of entry {upto}: entries were removed or rewritten")
    return None, {r[0]: r[6] for r in rows}


def verify(home: Home) -> Checked:
    """Every archive's signed head, and every archive file in place (see the module docstring)."""
    me, key = home.node_id, home.identity.public_key
    checked = Checked([], [], {})
    follows = audit.GENESIS
    for record in archives(home.db):
        head = record["checkpoint"]
        try:
            check_head(head, me, key)
            if head["entries"] != record["upto"] or head["head"] != record["head"]:
                raise DiscnodeError("it does not state the archive's last entry")
        except DiscnodeError as exc:
            checked.findings.append(Finding("forged", record["upto"], "an archive record",
                                            f"the signed head of archive {record['file']} does not verify: {exc}"))
            follows = record["head"]
            continue
        path = home.path / FOLDER / record["file"]
        if not path.exists():
            checked.missing.append(f"archive {record['file']} (entries {record['first']}..{record['upto']}) is "
                                   f"not in {path.parent}: its entries were not checked")
        else:
            finding, hashes = verify_file(path, record, follows, me, key)
            if finding:
                checked.findings.append(finding)
            checked.hashes.update(hashes)
        follows = record["head"]
    return checked
