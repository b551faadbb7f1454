"""The node's SQLite database: schema migrations, and the one place that writes profiles and images.

sqlite-utils creates the schema (tables, FTS5 index and its triggers). Writes go through `write()`,
a `BEGIN IMMEDIATE` transaction, as plain SQL: sqlite-utils' own helpers commit on their way out,
which would break the all-or-nothing imports this module promises.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import time
import json
import sqlite3
from pathlib import Path
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from . import handling
from . import query as q
from .errors import Conflict, NotFound

if TYPE_CHECKING:
    import sqlite_utils

    from .identity import Identity


class DB:
    """The node's connection: sqlite3 with WAL, foreign keys and a busy timeout. sqlite-utils builds
    the schema in `migrate`, and is imported only there: a serving node does not need its 13 MB."""

    def __init__(self, conn: sqlite3.Connection, *, eager: bool = False) -> None:
        self.conn = conn
        #: Wait for the write lock by trying every millisecond (see `write`), not in SQLite's
        #: busy handler, whose sleeps grow to 100 ms and miss the short gaps a staged import leaves.
        self.eager = eager

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)


Migration = Callable[["sqlite_utils.Database"], None]


def _m001_profiles(db: "sqlite_utils.Database") -> None:
    db.table("profiles").create(
        {
            "id": str, "origin": str, "status": str, "first_name": str, "last_name": str,
            "sort_name": str, "aliases_text": str, "marks": str, "notes": str,
            "gender": str, "ethnicity": str, "build": str, "dob": str, "age_min": int, "age_max": int,
            "tags": str, "incident_count": int, "excluded_until": str, "local_only": int,
            "created": str, "updated": str, "last_seen_key": str, "review_by": str, "image": str,
            "record": str,
        },
        pk="id",
        not_null={"origin", "status", "gender", "ethnicity", "build", "record"},
    )
    for column in ("sort_name", "last_seen_key", "incident_count", "created"):
        db.table("profiles").create_index([column, "origin", "id"], index_name=f"profiles_by_{column}")
    db.table("profiles").enable_fts(["first_name", "last_name", "aliases_text", "marks", "notes"],
                              fts_version="FTS5", create_triggers=True, tokenize="unicode61")
    db.table("images").create(
        {"profile_id": str, "sha256": str, "mime": str, "width": int, "height": int, "bytes": int,
         "thumb_bytes": int, "created": str},
        pk=("profile_id", "sha256"),
        foreign_keys=[("profile_id", "profiles", "id")],
    )
    db.table("images").create_index(["sha256"])


def _m002_peers(db: "sqlite_utils.Database") -> None:
    db.table("peers").create(
        {"node_id": str, "name": str, "url": str, "public_key": str, "tls_fingerprint": str,
         "descriptor": str, "added": str, "updated": str},
        pk="node_id",
    )
    db.table("consent_docs").create(
        {"hash": str, "peer": str, "type": str, "signer": str, "issued_at": str, "doc": str,
         "delivered": int, "received": str},
        pk="hash",
        foreign_keys=[("peer", "peers", "node_id")],
    )
    db.table("consent_docs").create_index(["peer", "issued_at"])
    db.table("audit").create(
        {"seq": int, "ts": str, "event": str, "peer": str, "detail": str, "prev": str, "hash": str},
        pk="seq",
    )
    db.table("audit").create_index(["peer"])
    for verb in ("UPDATE", "DELETE"):
        db.execute(f"CREATE TRIGGER audit_no_{verb.lower()} BEFORE {verb} ON audit "
                   "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END")


def _m003_checked_records(db: "sqlite_utils.Database") -> None:
    # Written and read only by checked.py. Expiry scans by date, hence the index.
    db.table("checked_records").create({"digest": bytes, "checked": str}, pk="digest", not_null={"checked"})
    db.table("checked_records").create_index(["checked"])


def _m004_nonces(db: "sqlite_utils.Database") -> None:
    # Written and read only by replay.py.
    db.table("nonces").create({"key_id": str, "nonce": str, "forget_after": float}, pk=("key_id", "nonce"))
    db.table("nonces").create_index(["forget_after"])


def _m005_audit_heads(db: "sqlite_utils.Database") -> None:
    # Written and read only by witness.py: this node's own signed checkpoints (node_id = its own)
    # and the heads its partners sent it (latest per node, plus flagged evidence); and which of
    # its own heads each partner has taken.
    db.table("audit_heads").create(
        {"hash": str, "node_id": str, "entries": int, "head": str, "issued_at": str, "doc": str,
         "received": str, "flag": str},
        pk="hash", not_null={"node_id", "entries", "head", "issued_at", "doc", "received"})
    db.table("audit_heads").create_index(["node_id", "entries"])
    db.table("audit_head_delivered").create({"peer": str, "hash": str, "delivered": str}, pk="peer")


def _m006_expected_peers(db: "sqlite_utils.Database") -> None:
    # Written and read only by peers.py. Node IDs an administrator expects an offer from (exempt
    # from the cap on strangers' offers), and the address each stranger's offer came from (the cap
    # is also per address).
    db.table("expected_peers").create({"node_id": str, "added": str}, pk="node_id", not_null={"added"})
    db.table("peers").add_column("offered_from", str)


def _m007_staged_imports(db: "sqlite_utils.Database") -> None:
    # ref: the partnership's own reference for a profile (an import key; never sent to peers).
    # batch: the import a row belongs to while that import is staged; NULL for every live row, and
    # every read of profiles filters on it. content_hash: what a row says (see content_hash), so
    # that a row imported twice without a ref is recognised.
    db.execute("ALTER TABLE profiles ADD COLUMN ref TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE profiles ADD COLUMN batch INTEGER")
    db.execute("ALTER TABLE profiles ADD COLUMN content_hash TEXT NOT NULL DEFAULT ''")
    db.execute("CREATE UNIQUE INDEX profiles_by_ref ON profiles (origin, ref) WHERE ref != ''")
    db.execute("CREATE INDEX profiles_by_batch ON profiles (batch) WHERE batch IS NOT NULL")
    db.execute("CREATE INDEX profiles_by_content ON profiles (origin, content_hash)")
    db.execute("CREATE TABLE import_batches (id INTEGER PRIMARY KEY, pid INTEGER NOT NULL, started TEXT NOT NULL, "
               "touched REAL NOT NULL)")
    # Changes to live profiles wait here until the import is published.
    db.execute("CREATE TABLE import_updates (batch INTEGER NOT NULL, id TEXT NOT NULL, columns TEXT NOT NULL, "
               "images TEXT NOT NULL, PRIMARY KEY (batch, id))")
    # Publishing a batch sets its rows' batch to NULL: that must not rewrite their full-text entries.
    text = ', '.join(f'"{c}"' for c in FTS_COLUMNS)
    old = ', '.join(f'old."{c}"' for c in FTS_COLUMNS)
    new = ', '.join(f'new."{c}"' for c in FTS_COLUMNS)
    db.execute('DROP TRIGGER "profiles_au"')
    db.execute(f'CREATE TRIGGER "profiles_au" AFTER UPDATE OF {text} ON "profiles" BEGIN '
               f'INSERT INTO "profiles_fts" ("profiles_fts", rowid, {text}) VALUES(\'delete\', old.rowid, {old}); '
               f'INSERT INTO "profiles_fts" (rowid, {text}) VALUES (new.rowid, {new}); END')
    for pid, record in db.execute("SELECT id, record FROM profiles").fetchall():
        db.execute("UPDATE profiles SET content_hash = ? WHERE id = ?", [content_hash(json.loads(record)), pid])


def _m008_match(db: "sqlite_utils.Database") -> None:
    # Written and read only by match.py. The holder's secret OPRF key per agreement (the offer's
    # hash: a new agreement gets a new key), the names each partner asked about per UTC day (a
    # count, never the names), and the reveal requests partners sent.
    db.table("match_keys").create({"peer": str, "offer_hash": str, "key": bytes, "created": str},
                                  pk=("peer", "offer_hash"), not_null={"key", "created"})
    db.table("match_quota").create({"peer": str, "day": str, "used": int}, pk=("peer", "day"),
                                   not_null={"used"})
    db.table("reveal_requests").create(
        {"id": str, "peer": str, "ref": str, "profiles": str, "state": str, "asked": str, "decided": str},
        pk="id", not_null={"peer", "ref", "profiles", "state", "asked"})
    db.table("reveal_requests").create_index(["peer", "ref"], unique=True)


def _m009_proposals(db: "sqlite_utils.Database") -> None:
    # Written and read only by proposals.py: proposals this node sent (sender = itself) and received
    # (recipient = itself), each with its outcome once decided. A received row is the origin's
    # private link to the proposer's profile reference: never served.
    db.table("proposals").create(
        {"hash": str, "id": str, "sender": str, "recipient": str, "about": str, "doc": str, "state": str,
         "delivered": int, "refusal": str, "outcome_hash": str, "outcome_doc": str, "outcome_delivered": int,
         "created": str, "decided": str},
        pk="hash", not_null={"id", "sender", "recipient", "about", "doc", "state", "created"})
    db.table("proposals").create_index(["sender", "id"], unique=True)
    db.table("proposals").create_index(["recipient", "state"])


def _m010_sightings(db: "sqlite_utils.Database") -> None:
    # Written and read only by sightings.py: sightings this node reported (sender = itself) and
    # those partners reported of its own profiles (recipient = itself; never served).
    db.table("sightings").create(
        {"hash": str, "id": str, "sender": str, "recipient": str, "about": str, "at": str, "seen": str,
         "doc": str, "delivered": int, "refusal": str, "created": str},
        pk="hash", not_null={"id", "sender", "recipient", "about", "at", "seen", "doc", "created"})
    db.table("sightings").create_index(["sender", "id"], unique=True)
    db.table("sightings").create_index(["recipient", "about"])


def _m011_links(db: "sqlite_utils.Database") -> None:
    # Written and read only by links.py: same-person links between one of this node's profiles
    # and a partner's, keyed by the pair, whoever proposed them. Never served.
    db.table("links").create(
        {"key": str, "id": str, "mine": str, "peer": str, "theirs": str, "state": str, "proposer": str,
         "doc": str, "doc_hash": str, "doc_delivered": int, "answer_doc": str, "answer_hash": str,
         "answer_delivered": int, "refusal": str, "source": str, "created": str, "decided": str},
        pk="key", not_null={"mine", "peer", "theirs", "state", "created"})
    db.table("links").create_index(["peer", "id"])


def _m012_revealed(db: "sqlite_utils.Database") -> None:
    # Written and read only by revealed.py: the signed records match-only partners revealed to this
    # node, keyed by (holder, match reference). The holder's records, never this node's: never served.
    db.table("revealed").create({"holder": str, "ref": str, "records": str, "received": str},
                                pk=("holder", "ref"), not_null={"records", "received"})


def _m013_disclosures(db: "sqlite_utils.Database") -> None:
    # profiles.revision: the record's `revision` (0 for a record written before revisions), so that
    # a served page can name what it disclosed without parsing the records.
    # disclosures: written only by disclosures.py, an index of the audit log's `served` entries by
    # profile (the entries are the record; this table is rebuilt from them and may lag behind).
    db.execute("ALTER TABLE profiles ADD COLUMN revision INTEGER NOT NULL DEFAULT 0")
    db.execute("UPDATE profiles SET revision = coalesce(json_extract(record, '$.revision'), 0)")
    db.execute("CREATE TABLE disclosures (profile_id TEXT NOT NULL, seq INTEGER NOT NULL, peer TEXT NOT NULL, "
               "revision INTEGER NOT NULL, what TEXT NOT NULL, ts TEXT NOT NULL, PRIMARY KEY (profile_id, seq)) "
               "WITHOUT ROWID")
    db.execute("CREATE TABLE disclosures_indexed (id INTEGER PRIMARY KEY CHECK (id = 1), upto INTEGER NOT NULL)")
    db.execute("INSERT INTO disclosures_indexed VALUES (1, 0)")


def _m014_erasure(db: "sqlite_utils.Database") -> None:
    # checked_records (checked.py): which partner's profile each check was, so that a notice from
    # that partner can forget it. Checks made before this migration have none; they expire within
    # checked.MAX_AGE_DAYS, and a notice cannot reach them until then (said in the spec).
    db.execute("ALTER TABLE checked_records ADD COLUMN origin TEXT")
    db.execute("ALTER TABLE checked_records ADD COLUMN profile_id TEXT")
    db.execute("CREATE INDEX checked_by_profile ON checked_records (origin, profile_id)")
    # notices (notices.py): erasure and rectification notices this node sent (sender = itself),
    # with the receipt each partner returned, and those it received (recipient = itself), with the
    # receipt it returned and the exported files it listed for its administrator.
    db.execute("CREATE TABLE notices (hash TEXT PRIMARY KEY, id TEXT NOT NULL, sender TEXT NOT NULL, "
               "recipient TEXT NOT NULL, about TEXT NOT NULL, kind TEXT NOT NULL, revision INTEGER NOT NULL, "
               "doc TEXT NOT NULL, delivered INTEGER NOT NULL DEFAULT 0, refusal TEXT, superseded INTEGER NOT NULL "
               "DEFAULT 0, receipt TEXT, receipt_at TEXT, files TEXT, created TEXT NOT NULL)")
    db.execute("CREATE UNIQUE INDEX notices_by_sender ON notices (sender, id)")
    db.execute("CREATE INDEX notices_by_recipient ON notices (recipient, delivered)")
    db.execute("CREATE INDEX notices_about ON notices (about)")
    # exported_files (exports.py): which partners' profiles each file written for the
    # administrator holds (photos, CSV and JSON exports, contact sheets), at which revision.
    db.execute("CREATE TABLE exported_files (path TEXT NOT NULL, origin TEXT NOT NULL, profile_id TEXT NOT NULL, "
               "revision INTEGER NOT NULL, written TEXT NOT NULL, PRIMARY KEY (path, origin, profile_id))")
    db.execute("CREATE INDEX exported_by_profile ON exported_files (origin, profile_id)")


def _m018_succession(db: "sqlite_utils.Database") -> None:
    # Written and read only by keys.py. key_events: every verified key event (inception,
    # successions) of this node (own = 1) and of its peers, by node ID and sequence number.
    # peer_replacements: `peer replace OLD URL --expect NEW`, the local record that attaches the
    # old node's agreement history to the new one (spec 4.7).
    db.table("key_events").create(
        {"node_id": str, "seq": int, "own": int, "key": str, "hash": str, "doc": str, "received": str},
        pk=("node_id", "seq"), not_null={"own", "key", "hash", "doc", "received"})
    db.table("key_events").create_index(["own", "seq"])
    db.table("peer_replacements").create(
        {"old_id": str, "new_id": str, "replaced": str, "url": str}, pk="old_id",
        not_null={"new_id", "replaced", "url"})
    db.table("peer_replacements").create_index(["new_id"])
    # Which head of this node's own key history each partner has taken (delivered through the outbox).
    db.table("key_head_delivered").create({"peer": str, "head": str, "delivered": str}, pk="peer",
                                          not_null={"head", "delivered"})


def _m016_handling(db: "sqlite_utils.Database") -> None:
    # handling.py: each row's signed withheld view (the record without ethnicity; '' until signed,
    # and never served in the full record's place) and the conditions of its C gradings (a JSON
    # array, '[]' for none), which decide to whom it is served. Rows written before this migration
    # get their withheld views from profiles.sign_missing_views, run when the node opens.
    db.execute("ALTER TABLE profiles ADD COLUMN record_withheld TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE profiles ADD COLUMN handling_conditions TEXT NOT NULL DEFAULT '[]'")  # none graded yet


def _m015_retention(db: "sqlite_utils.Database") -> None:
    # audit.actor: who acted (audit.py). audit_archives, written only by auditarchive.py: each
    # archive of old entries, with the signed checkpoint at its last entry, from which the live
    # chain is verified. The delete trigger now lets through only entries an archive holds.
    db.execute("ALTER TABLE audit ADD COLUMN actor TEXT NOT NULL DEFAULT ''")
    db.table("audit_archives").create(
        {"upto": int, "first": int, "head": str, "file": str, "checkpoint": str, "created": str},
        pk="upto", not_null={"first", "head", "file", "checkpoint", "created"})
    db.execute("DROP TRIGGER audit_no_delete")
    db.execute("CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
               "WHEN old.seq > (SELECT coalesce(max(upto), 0) FROM audit_archives) "
               "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END")
    # Written only by retention.py: a profile kept past its retention ceiling after a review.
    db.table("retention_holds").create(
        {"profile_id": str, "until": str, "reason": str, "actor": str, "reviewed": str},
        pk="profile_id", not_null={"until", "reason", "reviewed"})

def _m019_ops(db: "sqlite_utils.Database") -> None:
    # Written and read only by contact.py: when this node last reached each partner (a delivery, a
    # status probe), the last error, and the partner's clock offset its reply's Date header showed.
    db.table("peer_contact").create(
        {"peer": str, "last_ok": str, "last_try": str, "last_error": str, "clock_offset": float, "offset_at": str},
        pk="peer")


COUNTED_COLUMNS = ("origin, batch, local_only, review_by, handling_conditions, dob, age_min, age_max, "
                   "excluded_until, gender, ethnicity, build, status, tags")


def _m020_counting(db: "sqlite_utils.Database") -> None:
    # Facet counts (facets.py) read a few short columns of every row a query matches, but a row is
    # ~2 KB (a record's two signed views), so a count of 600 profiles walked ~400 table pages:
    # 1.5 ms, the largest part of a partner's answer to a web Dataview page. These indexes hold
    # exactly the columns that counting and every filter read (~80 bytes a row): one for partners
    # that see ethnicity, one for those served the withheld view, which only rows having one may
    # be (handling.Audience.clauses: `record_withheld != ''`, the partial index's own condition).
    db.execute(f"CREATE INDEX IF NOT EXISTS profiles_counting ON profiles ({COUNTED_COLUMNS})")
    db.execute(f"CREATE INDEX IF NOT EXISTS profiles_counting_withheld ON profiles ({COUNTED_COLUMNS}) "
               "WHERE record_withheld != ''")


def _m021_disclosure_entries(db: "sqlite_utils.Database") -> None:
    # The disclosure index (disclosures.py, which alone reads and writes these) as an entry table and
    # a contentless FTS5 table of terms, instead of one B-tree row per (profile, entry): indexing no
    # longer inserts at random places in a large tree (its module docstring has the figures).
    # disclosure_terms: one document per entry (rowid = its seq), one term per record disclosed,
    # disclosures.term(): the profile ID's UTF-8 bytes in hex, "r", the revision. Each row of the old
    # table becomes one term; its entry's partner, kind and time (the same in every row of an
    # entry) one row of disclosure_entries. Contentless: no text is kept, and FTS5 can then never
    # be asked to delete a document (the index only grows, as the old table did).
    # disclosure_peers: each partner's node ID once (an entry's row holds its number: a third of the
    # row, and of_profile reads one row per disclosure).
    db.execute("CREATE TABLE disclosure_peers (id INTEGER PRIMARY KEY, peer TEXT NOT NULL UNIQUE)")
    db.execute("CREATE TABLE disclosure_entries (seq INTEGER PRIMARY KEY, peer INTEGER NOT NULL, what TEXT NOT NULL, "
               "ts TEXT NOT NULL)")
    db.execute("CREATE VIRTUAL TABLE disclosure_terms USING fts5(records, content='', detail=none, "
               "columnsize=0, tokenize='ascii')")
    # Its terms, by range (a profile's prefix), and every (term, entry) pair (disclosures.indexed).
    db.execute("CREATE VIRTUAL TABLE disclosure_vocabulary USING fts5vocab(disclosure_terms, 'row')")
    db.execute("CREATE VIRTUAL TABLE disclosure_vocabulary_instances USING fts5vocab(disclosure_terms, 'instance')")
    db.execute("INSERT INTO disclosure_peers (peer) SELECT DISTINCT peer FROM disclosures ORDER BY peer")
    db.execute("INSERT INTO disclosure_entries (seq, peer, what, ts) "
               "SELECT d.seq, p.id, d.what, d.ts FROM (SELECT seq, min(peer) AS peer, min(what) AS what, min(ts) AS ts "
               "FROM disclosures GROUP BY seq) d JOIN disclosure_peers p ON p.peer = d.peer")
    # hex() is upper case; the ascii tokenizer folds it to the lower case disclosures.term() writes.
    db.execute("INSERT INTO disclosure_terms (rowid, records) "
               "SELECT seq, group_concat(hex(profile_id) || 'r' || revision, ' ') FROM disclosures GROUP BY seq")
    db.execute("DROP TABLE disclosures")


MIGRATIONS: list[tuple[str, Migration]] = [
    ("001_profiles", _m001_profiles),
    ("002_peers_consent_audit", _m002_peers),
    ("003_checked_records", _m003_checked_records),
    ("004_nonces", _m004_nonces),
    ("005_audit_heads", _m005_audit_heads),
    ("006_expected_peers", _m006_expected_peers),
    ("007_staged_imports", _m007_staged_imports),
    ("008_match", _m008_match),
    ("009_proposals", _m009_proposals),
    ("010_sightings", _m010_sightings),
    ("011_links", _m011_links),
    ("012_revealed", _m012_revealed),
    ("013_disclosures", _m013_disclosures),
    ("014_erasure", _m014_erasure),
    ("018_succession", _m018_succession),
    ("016_handling", _m016_handling),
    ("015_retention", _m015_retention),
    ("019_ops", _m019_ops),
    ("020_counting", _m020_counting),
    ("021_disclosure_entries", _m021_disclosure_entries),
]


def connect(path: Path | str, *, eager: bool = False) -> DB:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10)
    db = DB(conn, eager=eager)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={0 if eager else 10000}")
    return db


def sync_log(db: DB) -> None:
    """Put every commit so far on stable storage: a passive checkpoint syncs the write-ahead log
    (and then copies what it can into the database file without waiting for readers or writers)."""
    db.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def migrate(db: DB) -> list[str]:
    """Apply pending migrations, each in its own transaction, recorded in `_migrations`."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied TEXT)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations").fetchall()}
    pending = [(name, step) for name, step in MIGRATIONS if name not in done]
    if not pending:
        return []
    import sqlite_utils

    schema_db = sqlite_utils.Database(db.conn)
    applied = []
    for name, step in pending:
        with write(db):
            step(schema_db)
            db.execute("INSERT INTO _migrations VALUES (?, ?)", [name, now_ts()])
        applied.append(name)
    return applied


@contextlib.contextmanager
def write(db: DB) -> Iterator[sqlite3.Connection]:
    conn = db.conn
    if conn.in_transaction:  # nested: the outer transaction decides
        yield conn
        return
    _begin(db)
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


#: How long a write waits for the lock before "database is locked".
LOCK_WAIT = 10.0


def _begin(db: DB) -> None:
    if not db.eager:
        db.conn.execute("BEGIN IMMEDIATE")  # SQLite's busy handler waits (busy_timeout)
        return
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            db.conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.001)


def now_ts() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- profiles --------------------------------------------------------------------------------

FTS_COLUMNS = ("first_name", "last_name", "aliases_text", "marks", "notes")
#: Fields that say nothing about the person: two records equal but for these are the same profile.
NOT_CONTENT = ("id", "origin", "created", "updated", "review_by", "image", "revision", "sig")


def content_hash(record: dict[str, Any]) -> str:
    content = {k: v for k, v in record.items() if k not in NOT_CONTENT}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()



def _columns(record: dict[str, Any], withheld: dict[str, Any] | None = None) -> dict[str, Any]:
    exclusion = record.get("exclusion") or {}
    return {
        "id": record["id"], "origin": record["origin"], "status": record["status"],
        "first_name": record["first_name"], "last_name": record["last_name"],
        "sort_name": q.sort_name(record), "aliases_text": " ".join(record["aliases"]),
        "marks": record["marks"], "notes": record["notes"], "gender": record["gender"],
        "ethnicity": record["ethnicity"], "build": record["build"], "dob": record["dob"] or "",
        "age_min": record["age_min"], "age_max": record["age_max"], "tags": json.dumps(record["tags"]),
        "incident_count": len(record["incidents"]), "excluded_until": exclusion.get("until", ""),
        "local_only": int(record["local_only"]), "created": record["created"], "updated": record["updated"],
        "last_seen_key": record["last_seen"] or "", "review_by": record["review_by"], "image": record["image"],
        "record": json.dumps(record, separators=(",", ":"), sort_keys=True),
        "content_hash": content_hash(record), "revision": record.get("revision", 0),
        "record_withheld": json.dumps(withheld, separators=(",", ":"), sort_keys=True) if withheld else "",
        "handling_conditions": handling.conditions_column(record),
    }


def withheld_views(records: Iterable[dict[str, Any]], identity: "Identity | None") -> Iterator[
        tuple[dict[str, Any], dict[str, Any] | None]]:
    """Each record with its signed withheld view (handling.py), if it is identity's own record."""
    from .signing import sign_document
    for record in records:
        own = identity is not None and record["origin"] == identity.node_id
        yield record, sign_document(handling.withheld_view(record), identity) if own else None


def sign_missing_views(db: DB, identity: "Identity") -> int:
    """Sign the withheld views of this node's rows that lack one (rows written before migration
    016), in one transaction; returns how many. Until then such a row is served only to partners
    whose agreement shares ethnicity."""
    me = identity.node_id
    rows = db.execute("SELECT id, record FROM profiles WHERE record_withheld = '' AND origin = ?", [me]).fetchall()
    if not rows:
        return 0
    with write(db) as conn:
        for (pid, text), (_, view) in zip(rows, withheld_views((json.loads(t) for _, t in rows), identity)):
            conn.execute("UPDATE profiles SET record_withheld = ? WHERE id = ?",
                         [json.dumps(view, separators=(",", ":"), sort_keys=True), pid])
    return len(rows)


def put_profiles(db: DB, records: Iterable[dict[str, Any]], *, replace: bool = False,
                 on_each: Callable[[], None] | None = None, identity: "Identity | None" = None) -> int:
    """Insert (or with replace, update) validated, signed records, all in one transaction. With
    identity, its own records' withheld views are signed and stored with them (without, they are
    served only to partners whose agreement shares ethnicity)."""
    n = 0
    with write(db) as conn:
        for record, withheld in withheld_views(records, identity):
            cols = _columns(record, withheld)
            names = ", ".join(cols)
            marks = ", ".join("?" * len(cols))
            if replace:
                sets = ", ".join(f"{k} = ?" for k in cols if k != "id")
                cur = conn.execute(f"UPDATE profiles SET {sets} WHERE id = ? AND batch IS NULL",
                                   [v for k, v in cols.items() if k != "id"] + [cols["id"]])
                if cur.rowcount != 1:
                    raise NotFound(f"no profile {record['id']}")
            else:
                try:
                    conn.execute(f"INSERT INTO profiles ({names}) VALUES ({marks})", list(cols.values()))
                except sqlite3.IntegrityError:
                    raise Conflict(f"a profile with id {record['id']} already exists") from None
            n += 1
            if on_each:
                on_each()
    return n


def reissue(db: DB, origin: str, resign: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """Re-sign every live profile of `origin` (a node given a new identity, `discnode key reset`):
    resign returns the record under its new origin and signature. In the caller's transaction."""
    n = 0
    with write(db) as conn:
        for (raw,) in conn.execute("SELECT record FROM profiles WHERE origin = ? AND batch IS NULL", [origin]
                                   ).fetchall():
            cols = _columns(resign(json.loads(raw)))
            # The withheld view is signed afresh by the caller (sign_missing_views), never kept stale.
            conn.execute("UPDATE profiles SET origin = ?, record = ?, content_hash = ?, updated = ?, revision = ?, "
                         "record_withheld = '' WHERE id = ? AND batch IS NULL",
                         [cols["origin"], cols["record"], cols["content_hash"], cols["updated"], cols["revision"],
                          cols["id"]])
            n += 1
    return n


def get_profile(db: DB, profile_id: str) -> dict[str, Any]:
    row = db.execute("SELECT record FROM profiles WHERE id = ? AND batch IS NULL", [profile_id]).fetchone()
    if row is None:
        raise NotFound(f"no profile {profile_id!r} on this node")
    return json.loads(row[0])


def get_shareable(db: DB, profile_id: str, me: str, today: dt.date,
                  audience: handling.Audience = handling.Audience()) -> dict[str, Any]:
    """One of this node's records as `audience` may be served it (its view), or NotFound."""
    sql = q.SQL()
    sql.add("id = ?", profile_id)
    sql.add("batch IS NULL")
    q.shareable(sql, me, today, audience)
    row = db.execute(f"SELECT {q.record_column(audience)} FROM profiles WHERE {' AND '.join(sql.where)}",
                     sql.params).fetchone()
    if row is None:
        raise NotFound(f"no shared profile {profile_id!r}")
    return json.loads(row[0])


def delete_profile(db: DB, profile_id: str) -> list[str]:
    """Delete a profile and its image rows; return the image hashes no other profile uses."""
    with write(db) as conn:
        hashes = [r[0] for r in conn.execute("SELECT sha256 FROM images WHERE profile_id = ?", [profile_id])]
        conn.execute("DELETE FROM images WHERE profile_id = ?", [profile_id])
        if conn.execute("DELETE FROM profiles WHERE id = ? AND batch IS NULL", [profile_id]).rowcount != 1:
            raise NotFound(f"no profile {profile_id!r} on this node")
        return [h for h in hashes
                if conn.execute("SELECT 1 FROM images WHERE sha256 = ?", [h]).fetchone() is None]


def search(db: DB, query: q.Query, today: dt.date, *, served_by: str | None = None,
           audience: handling.Audience = handling.Audience()) -> list[dict[str, Any]]:
    return [json.loads(text) for text in search_raw(db, query, today, served_by=served_by, audience=audience)]


def search_raw(db: DB, query: q.Query, today: dt.date, *, served_by: str | None = None,
               audience: handling.Audience = handling.Audience()) -> list[str]:
    """The page's records as the JSON text they are stored as (the peer API sends them unparsed).
    With served_by, only what that node may serve to `audience`, in the view it may see."""
    sql, params = q.build_sql(query, today, served_by=served_by, audience=audience)
    return [row[0] for row in db.execute(sql, params).fetchall()]


def search_served(db: DB, query: q.Query, today: dt.date, served_by: str,
                  audience: handling.Audience = handling.Audience()) -> tuple[list[str], str]:
    """search_raw for a peer, with what the disclosure log names (disclosures.encode): each record's
    "ID:REVISION", made by SQLite from the columns rather than parsed out of the records."""
    sql, params = q.build_sql(query, today, served_by=served_by, audience=audience, columns="id || ':' || revision")
    rows = db.execute(sql, params).fetchall()
    return [row[0] for row in rows], " ".join([row[1] for row in rows])


def search_served_bytes(db: DB, query: q.Query, today: dt.date, served_by: str,
                        audience: handling.Audience = handling.Audience()) -> tuple[list[bytes], str]:
    """search_served with each record as its stored UTF-8 bytes (CAST AS BLOB), for the reply that
    sends them as they are: a str made of each and encoded again to send cost ~1 us a kB for
    nothing (the peer API's page, server.query_profiles). The same rows, in the same order."""
    sql, params = q.build_sql(query, today, served_by=served_by, audience=audience, columns="id || ':' || revision",
                              raw=True)
    rows = db.execute(sql, params).fetchall()
    return [row[0] for row in rows], " ".join([row[1] for row in rows])


def profiles_due(db: DB, me: str, until: str) -> list[dict[str, Any]]:
    """This node's own profiles whose review-by date is on or before `until` (ISO), soonest first."""
    cur = db.execute("SELECT id, status, first_name, last_name, review_by, local_only, dob, age_max FROM profiles "
                     "WHERE origin = ? AND review_by <= ? ORDER BY review_by, id", [me, until])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def count_profiles(db: DB) -> int:
    return db.execute("SELECT count(*) FROM profiles WHERE batch IS NULL").fetchone()[0]


# --- images ----------------------------------------------------------------------------------


def add_image_row(conn: sqlite3.Connection, profile_id: str, sha256: str, meta: dict[str, Any]) -> None:
    try:
        conn.execute(
            "INSERT INTO images (profile_id, sha256, mime, width, height, bytes, thumb_bytes, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [profile_id, sha256, meta["mime"], meta["width"], meta["height"], meta["bytes"],
             meta["thumb_bytes"], now_ts()],
        )
    except sqlite3.IntegrityError:
        raise Conflict(f"profile {profile_id} already has image {sha256[:12]}") from None


def remove_image_row(conn: sqlite3.Connection, profile_id: str, sha256: str) -> bool:
    """Remove one image from a profile; True if no profile holds that image any more."""
    if conn.execute("DELETE FROM images WHERE profile_id = ? AND sha256 = ?", [profile_id, sha256]).rowcount != 1:
        raise NotFound(f"profile {profile_id} has no image {sha256[:12]}")
    return conn.execute("SELECT 1 FROM images WHERE sha256 = ?", [sha256]).fetchone() is None


def images_of(db: DB, profile_id: str) -> list[dict[str, Any]]:
    cur = db.execute("SELECT sha256, mime, width, height, bytes, created FROM images WHERE profile_id = ? "
                     "ORDER BY created, rowid", [profile_id])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def shareable_image(db: DB, sha256: str, me: str, today: dt.date,
                    audience: handling.Audience = handling.Audience()) -> list[tuple[str, int]]:
    """The (id, revision) of this node's profiles that may be served to `audience` and hold the
    image (an image served discloses each of them); empty if none may."""
    sql = q.SQL()
    sql.add("id IN (SELECT profile_id FROM images WHERE sha256 = ?)", sha256)
    sql.add("batch IS NULL")
    q.shareable(sql, me, today, audience)
    return [(r[0], r[1]) for r in db.execute(
        f"SELECT id, revision FROM profiles WHERE {' AND '.join(sql.where)} ORDER BY id", sql.params)]


# --- staged imports --------------------------------------------------------------------------
# A long import writes in steps of a few hundred rows, each its own short transaction, so that
# the daemon (audit commits) and other commands wait at most one step for the write lock. Until
# the import is published its new rows carry its batch number, and every read filters them out;
# its changes to live profiles wait in import_updates. Publishing is one transaction: apply the
# changes, clear the batch number. So the user sees every row or none, whatever happens between.

#: Rows per write step: a few tens of milliseconds of writing; and the pause between steps, in
#: which a waiting writer (the daemon's, trying every millisecond) takes the lock.
STEP_ROWS = 50
STEP_PAUSE = 0.005
#: A batch whose importer has not written for this long is abandoned even if its process lives on.
ABANDONED_AFTER = 3600.0


@dataclass
class Staged:
    """One row of an import, checked and signed: a new profile, or a change to a live one."""
    record: dict[str, Any]
    ref: str
    images: list[tuple[str, dict[str, Any]]]  # (sha256, meta) of image files already saved
    update: bool = False
    #: The record's signed withheld view (handling.py).
    withheld: dict[str, Any] | None = None


def begin_import(db: DB) -> int:
    with write(db) as conn:
        cur = conn.execute("INSERT INTO import_batches (pid, started, touched) VALUES (?, ?, ?)",
                           [os.getpid(), now_ts(), time.time()])
        return int(cur.lastrowid or 0)


def stage(db: DB, batch: int, rows: Sequence[Staged]) -> None:
    """One step: these rows, in one short transaction, invisible until `publish`."""
    with write(db) as conn:
        for row in rows:
            cols = _columns(row.record, row.withheld)
            if row.update:
                conn.execute("INSERT OR REPLACE INTO import_updates (batch, id, columns, images) VALUES (?, ?, ?, ?)",
                             [batch, row.record["id"], json.dumps(cols), json.dumps(row.images)])
                continue
            cols.update(ref=row.ref, batch=batch)
            try:
                conn.execute(f"INSERT INTO profiles ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                             list(cols.values()))
            except sqlite3.IntegrityError:
                raise Conflict(f"a profile with reference {row.ref!r} already exists") from None
            for sha, meta in row.images:
                add_image_row(conn, row.record["id"], sha, meta)
        conn.execute("UPDATE import_batches SET touched = ? WHERE id = ?", [time.time(), batch])


def publish(db: DB, batch: int) -> None:
    """The import's one short final step: its changes and its new rows become live together."""
    with write(db) as conn:
        for pid, columns, images in conn.execute(
                "SELECT id, columns, images FROM import_updates WHERE batch = ?", [batch]).fetchall():
            cols = json.loads(columns)
            sets = ", ".join(f"{k} = ?" for k in cols if k != "id")
            if conn.execute(f"UPDATE profiles SET {sets} WHERE id = ? AND batch IS NULL",
                            [v for k, v in cols.items() if k != "id"] + [pid]).rowcount != 1:
                raise Conflict(f"profile {pid} was deleted during the import")
            for sha, meta in json.loads(images):
                add_image_row(conn, pid, sha, meta)
        conn.execute("DELETE FROM import_updates WHERE batch = ?", [batch])
        conn.execute("UPDATE profiles SET batch = NULL WHERE batch = ?", [batch])
        conn.execute("DELETE FROM import_batches WHERE id = ?", [batch])


def discard(db: DB, batch: int) -> list[str]:
    """Remove a staged import, in steps; returns the image hashes nothing live refers to any more."""
    hashes: set[str] = set()
    while True:
        with write(db) as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM profiles WHERE batch = ? LIMIT ?", [batch, STEP_ROWS])]
            for pid in ids:
                hashes.update(r[0] for r in conn.execute("SELECT sha256 FROM images WHERE profile_id = ?", [pid]))
                conn.execute("DELETE FROM images WHERE profile_id = ?", [pid])
                conn.execute("DELETE FROM profiles WHERE id = ?", [pid])
            if ids:
                continue
            for (images,) in conn.execute("SELECT images FROM import_updates WHERE batch = ?", [batch]):
                hashes.update(sha for sha, _ in json.loads(images))
            conn.execute("DELETE FROM import_updates WHERE batch = ?", [batch])
            conn.execute("DELETE FROM import_batches WHERE id = ?", [batch])
            return [h for h in hashes if conn.execute("SELECT 1 FROM images WHERE sha256 = ?", [h]).fetchone() is None]


def abandoned_imports(db: DB, now: float | None = None) -> list[int]:
    """Batches whose importer died (kill -9, power cut) or stopped writing long ago."""
    now = time.time() if now is None else now
    out = []
    for batch, pid, touched in db.execute("SELECT id, pid, touched FROM import_batches").fetchall():
        if now - touched > ABANDONED_AFTER or not _alive(pid):
            out.append(batch)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def own_by_ref(db: DB, origin: str) -> dict[str, tuple[dict[str, Any], str]]:
    """Live profiles of this node that have a ref: ref -> (record, content hash)."""
    return {ref: (json.loads(record), digest) for ref, record, digest in db.execute(
        "SELECT ref, record, content_hash FROM profiles WHERE origin = ? AND ref != '' AND batch IS NULL", [origin])}


def own_content_hashes(db: DB, origin: str) -> set[str]:
    return {r[0] for r in db.execute("SELECT content_hash FROM profiles WHERE origin = ? AND batch IS NULL", [origin])}
