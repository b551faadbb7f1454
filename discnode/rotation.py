"""This node's own key events (spec 4.6): rotating to the committed next key, committing a next key
on a node made before key events, and handing the new history to partners (peering's outbox)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from . import audit, keys, peers, store
from .consent import State
from .documents.succession import (DEFAULT_GRACE, key_digest, new_inception, new_succession, verify_chain)
from .errors import Conflict, InvalidInput, Unauthenticated
from .home import Home, default_next_key_file, today
from .identity import (Identity, b64u, load_next_key, make_tls_certificate, save_next_key,
                       write_secret)
from .signing import document_hash, sign_document

#: Partners that are told of a new key history unasked: as peering.ANNOUNCE_TO.
TELL = frozenset({State.ACTIVE, State.LAPSED, State.OFFERED})

LOST_BOTH = ("If the committed next key is lost as well, this node cannot rotate: `discnode key reset --yes` "
             "gives it a new ID (profiles kept), and each partner's administrator, after you confirm the new "
             "ID by phone, runs `discnode peer replace OLD_ID URL --expect NEW_ID` (README section 7).")


def _out_path(home: Home, wanted: Path | None, consumed: Path | None = None) -> Path:
    out = Path(wanted) if wanted else default_next_key_file(home.path)
    if out.resolve().is_relative_to(home.path.resolve()):
        raise InvalidInput("the next key must not be kept in the node home: a thief who copies the home "
                           "would hold it too; give --next-key-out outside it")
    if not out.parent.is_dir():
        raise InvalidInput(f"cannot write the next key to {out}: no folder {out.parent}")
    if out.exists() and (consumed is None or out.resolve() != consumed.resolve()):
        raise Conflict(f"{out} exists; refusing to overwrite it (move it to the safe, or give --next-key-out)")
    return out


def commit(home: Home, next_key_out: Path | None = None) -> dict[str, Any]:
    """Give a node made before key events its inception: a commitment to a next key, written to
    next_key_out for the safe. The node ID does not change (it is this key's fingerprint)."""
    if home.key_events():
        raise Conflict("this node already has a committed next key; `discnode key rotate --next-key FILE` uses it")
    out = _out_path(home, next_key_out)
    following = Identity.generate()
    inception = new_inception(home.identity, following.public_key, store.now_ts())
    with store.write(home.db):
        keys.record(home.db, verify_chain([inception]), own=True)
        audit.append(home.db, "key-committed", "", next=inception["next"])
        save_next_key(following, out, home.node_id)
    home.reload_identity()
    return {"node_id": home.node_id, "seq": 0, "next_key_file": str(out), "next": inception["next"]}


def rotate(home: Home, next_key: Path, next_key_out: Path | None = None,
           grace: dt.timedelta = DEFAULT_GRACE) -> dict[str, Any]:
    """Make the committed next key current (spec 4.6): a succession signed by the current key and
    countersigned by the revealed one, committing to a new next key written to next_key_out. The
    node ID does not change. Partners take it from the outbox (peering.deliver_pending) or from the
    descriptor; they accept the outgoing key until the grace period ends."""
    events = home.key_events()
    if not events:
        raise Conflict("this node has no committed next key (it was made before key events): run "
                       "`discnode key commit` first, keep the file it writes in the safe, and rotate with it")
    revealed = load_next_key(Path(next_key))
    if key_digest(revealed.public_key) != events[-1]["next"]:
        raise Unauthenticated(f"{next_key} is not the next key this node committed to; nothing changed. "
                              + LOST_BOTH)
    if revealed.public_key == home.identity.public_key:
        raise InvalidInput(f"{next_key} is already the current key")
    out = _out_path(home, next_key_out, Path(next_key))
    outgoing = home.identity
    following = Identity.generate()
    succession = new_succession(events[-1], outgoing, revealed, following.public_key, store.now_ts(), grace)
    chain = verify_chain([*events, succession])
    key_file, staged = home.path / "identity.key", home.path / "identity.key.new"
    staged.unlink(missing_ok=True)
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(_key_bytes(revealed, key_file))
        fh.flush()
        os.fsync(fh.fileno())
    try:
        with store.write(home.db):  # the history and the key file change together, or neither does
            keys.record(home.db, chain, own=True)
            audit.append(home.db, "key-rotated", "", seq=succession["seq"], key=succession["key"],
                         grace_until=succession["grace_until"])
            following_tmp = out.with_name(out.name + ".tmp")
            following_tmp.unlink(missing_ok=True)
            save_next_key(following, following_tmp, home.node_id)
            os.replace(staged, key_file)
        os.replace(following_tmp, out)
    finally:
        staged.unlink(missing_ok=True)
    home.reload_identity()
    return {"node_id": home.node_id, "seq": succession["seq"], "public_key": succession["key"],
            "grace_until": succession["grace_until"], "next_key_file": str(out), "next": succession["next"]}


def reset(home: Home, next_key_out: Path | None = None) -> dict[str, Any]:
    """Both keys lost (spec 4.7): give this node a new identity in place. A new key and next key,
    a new node ID, a new TLS certificate; every own profile re-signed under the new ID (same
    profile IDs); the old key history kept as a former identity's. Agreements made under the old
    ID do not carry over by themselves: each partner confirms the new ID by phone and runs
    `discnode peer replace OLD NEW_URL --expect NEW`, and this node accepts its offer."""
    if home.db.execute("SELECT 1 FROM import_batches LIMIT 1").fetchone():
        raise Conflict("an import is staged; finish or discard it before giving the node a new identity")
    old_id = home.node_id
    out = _out_path(home, next_key_out)
    identity, following = Identity.generate(), Identity.generate()
    inception = new_inception(identity, following.public_key, store.now_ts())
    new_id = inception["node_id"]
    cert, tls_key = make_tls_certificate(new_id, home.config.host)
    staged = {name: home.path / f"{name}.new" for name in ("identity.key", "tls.key", "tls.crt")}
    for path in staged.values():
        path.unlink(missing_ok=True)
    write_secret(staged["identity.key"], _key_bytes(identity, home.path / "identity.key"))
    write_secret(staged["tls.key"], tls_key)
    staged["tls.crt"].write_bytes(cert)
    following_tmp = out.with_name(out.name + ".tmp")
    following_tmp.unlink(missing_ok=True)
    try:
        with store.write(home.db):  # the identity, its history and the records change together
            keys.retire_own(home.db)
            keys.record(home.db, verify_chain([inception]), own=True)
            now = store.now_ts()
            # A write like any other (profiles.py): `updated` and the revision move, so that what a
            # partner is sent under the new ID is named apart from what it was sent before.
            count = store.reissue(home.db, old_id, lambda record: sign_document(
                {**record, "origin": new_id, "updated": now, "revision": int(record.get("revision", 0)) + 1},
                identity))
            store.sign_missing_views(home.db, identity)  # their views without ethnicity too (handling.py)
            audit.append(home.db, "key-reset", "", old=old_id, new=new_id, profiles=count)
            save_next_key(following, following_tmp, new_id)
            for name, path in staged.items():
                os.replace(path, home.path / name)
        os.replace(following_tmp, out)
    finally:
        for path in (*staged.values(), following_tmp):
            path.unlink(missing_ok=True)
    home.reload_identity()
    return {"old_node_id": old_id, "node_id": new_id, "profiles": count, "next_key_file": str(out)}


def outbox(home: Home) -> list[tuple[str, str, dict[str, Any]]]:
    """This node's descriptor, for every partner that has not taken the head of its key history:
    after a rotation, every partner told of addresses unasked (TELL); after `key commit`, those
    pinned before it. As (head, peer, descriptor) for peering's outbox."""
    events = home.key_events()
    if not events or (len(events) == 1 and not _committed_late(home)):
        return []
    head = document_hash(events[-1])
    out = []
    descriptor: dict[str, Any] | None = None
    for peer in peers.all_peers(home.db):
        if keys.head_delivered(home.db, peer.node_id) == head:
            continue
        if not peers.vouched_for(home.db, home.node_id, peer.node_id):
            continue
        if peers.agreement(home.db, home.node_id, peer.node_id, today()).state not in TELL:
            continue
        if len(events) == 1 and _pinned_at(home, peer.node_id) >= events[0]["issued_at"]:
            continue  # pinned after the commitment: it has the history already
        descriptor = descriptor or home.descriptor()
        out.append((head, peer.node_id, descriptor))
    return out


def _committed_late(home: Home) -> bool:
    row = home.db.execute("SELECT min(added) FROM peers").fetchone()
    return bool(row and row[0] and row[0] < home.key_events()[0]["issued_at"])


def _pinned_at(home: Home, node_id: str) -> str:
    row = home.db.execute("SELECT added FROM peers WHERE node_id = ?", [node_id]).fetchone()
    return str(row[0]) if row else ""


def _key_bytes(identity: Identity, current: Path) -> bytes:
    """The new key file's content: sealed with the current key's passphrase if that one is sealed
    (keyfile.py), so that a rotation never leaves the key in the clear."""
    from . import keyfile
    if keyfile.is_encrypted(current):
        return keyfile.sealed_key(identity, keyfile.passphrase("the identity key"))
    return b64u(bytes(identity.signing_key)).encode() + b"\n"
