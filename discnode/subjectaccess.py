"""Subject access (UK GDPR Art 15): everything this node holds about a person, as a bundle.

`discnode subject-access PROFILE_ID` (or `--name "First Last" --dob YYYY-MM-DD`, which matches
aliases too and takes every profile it matches) writes, into a new folder:

    subject-access.json   the whole answer, for the record
    subject-access.html   the same, readable, self-contained (no external resource; photos embedded)
    images/SHA256.jpg     the photos themselves

For each profile: the record as stored (incidents and exclusion notice inside it), its photos,
the sightings partners reported of it, the proposals and same-person links about it, every
disclosure of it to a partner (disclosures.py: to whom, when, which revision; from the index, so
disclosures whose audit entries were archived are still there), the rectification notices sent
to those partners and their receipts (notices.py), and the audit entries of local
actions on it (who added, edited, viewed or reviewed it; from the live log and the archive files
in place). Files are written
owner-only (exports.py), and the request itself is audited: who, which profiles, where.

`gather` reads the node; `render_html` is pure; `write_bundle` does the I/O.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import unicodedata
from pathlib import Path
from typing import Any

import jinja2

from . import audit, auditarchive, disclosures, links, notices, peers, proposals, sightings, store
from . import images as img
from .errors import InvalidInput, NotFound
from .exports import private_dir, write_private
from .home import Home

ENV = jinja2.Environment(loader=jinja2.PackageLoader("discnode", "templates"), autoescape=True,
                         undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _fold(text: str) -> str:
    """Names compared as people write them: case, accents' composition and spacing ignored."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def find(db: store.DB, me: str, name: str, dob: str) -> list[str]:
    """This node's own profiles of `name` ("First Last", or one of its aliases) born on `dob`."""
    try:
        dt.date.fromisoformat(dob)
    except ValueError:
        raise InvalidInput(f"--dob {dob!r} is not a date YYYY-MM-DD") from None
    wanted = _fold(name)
    if not wanted or len(name) > 200:
        raise InvalidInput("--name must be 1 to 200 characters: the person's first and last name")
    out = []
    for pid, record in db.execute("SELECT id, record FROM profiles WHERE origin = ? AND dob = ? AND batch IS NULL "
                                  "ORDER BY id", [me, dob]):
        r = json.loads(record)
        names = [f"{r['first_name']} {r['last_name']}", *r["aliases"]]
        if any(_fold(n) == wanted for n in names):
            out.append(pid)
    return out


def _about(detail: Any, profile_id: str) -> bool:
    return isinstance(detail, dict) and (detail.get("id") == profile_id or profile_id in (detail.get("ids") or ()))


def _local_history(home: Home, profile_id: str, archived: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Audit entries of local actions on the profile (who added, changed, viewed it), oldest first:
    from the archive files in place, then the live log."""
    out = [{"seq": e["seq"], "ts": e["ts"], "event": e["event"], "by": e.get("actor", ""), "detail": e["detail"],
            "archived": True} for e in archived if e.get("peer") == "" and _about(e.get("detail"), profile_id)]
    # The ID is 12 base32 characters, so this LIKE cannot match another ID's text.
    rows = home.db.execute("SELECT seq, ts, event, actor, detail FROM audit WHERE peer = '' AND detail LIKE ? "
                           "ORDER BY seq", [f'%"{profile_id}"%']).fetchall()
    for seq, ts, event, actor, detail in rows:
        parsed = json.loads(detail)
        if _about(parsed, profile_id):
            out.append({"seq": seq, "ts": ts, "event": event, "by": actor, "detail": parsed, "archived": False})
    return out


def gather(home: Home, profile_ids: list[str]) -> dict[str, Any]:
    """The answer for these profiles (each must be this node's own)."""
    db, me = home.db, home.node_id
    names = {p.node_id: p.name for p in peers.all_peers(db)}
    archived = auditarchive.archived_entries(home)
    people = []
    for pid in profile_ids:
        record = store.get_profile(db, pid)
        if record["origin"] != me:
            raise InvalidInput(f"profile {pid} is a partner's: ask its partnership, which holds it")
        shown = {k: v for k, v in record.items() if k != "sig"}
        people.append({
            "profile": shown,
            "images": store.images_of(db, pid),
            "sightings": sightings.of_profile(db, me, pid),
            "proposals": [p for p in proposals.listing(db, me)
                          if (p["direction"] == "received" and p["about"] == pid) or p["as"] == pid],
            "links": [link for link in links.listing(db) if link["mine"] == pid],
            "disclosures": [{"to": d.peer, "to_name": names.get(d.peer, "") if d.peer else "police, by an evidence export", "when": d.ts, "revision": d.revision,
                             "what": d.what, "audit_entry": d.seq} for d in disclosures.of_profile(db, pid)],
            "notices": [{**n, "to_name": names.get(n["to"], "")} for n in notices.sent_about(db, me, pid)],
            "history": _local_history(home, pid, archived),
        })
    return {"type": "subject-access", "node_id": me, "partnership": home.config.name,
            "generated": store.now_ts(), "profiles": people}


def render_html(answer: dict[str, Any], photos: dict[str, bytes]) -> str:
    """The readable page: every value autoescaped; photos as data: URIs, so that it opens alone."""
    embedded = {sha: "data:image/jpeg;base64," + base64.b64encode(data).decode() for sha, data in photos.items()}
    return ENV.get_template("subject_access.html").render(a=answer, photos=embedded)


def _out_dir(out: Path) -> Path:
    if out.exists():
        if not out.is_dir():
            raise InvalidInput(f"{out} exists and is not a folder; give a new folder")
        if any(out.iterdir()):
            raise InvalidInput(f"{out} is not empty; give a new or empty folder (nothing is overwritten)")
    return out


def write_bundle(home: Home, profile_ids: list[str], out: Path) -> dict[str, Any]:
    """Gather, write the bundle into `out` (new or empty), audit it; returns what was written."""
    if not profile_ids:
        raise NotFound("no profile on this node matches")
    out = _out_dir(Path(out))
    answer = gather(home, profile_ids)
    photos: dict[str, bytes] = {}
    for person in answer["profiles"]:
        for image in person["images"]:
            try:
                photos[image["sha256"]] = img.read(home.images_root, image["sha256"], thumb=False)
            except OSError:
                image["missing"] = True  # a file lost on disk is said, not hidden
    private_dir(out)
    files = [write_private(out / "images" / f"{sha}.jpg", data) for sha, data in photos.items()]
    files.append(write_private(out / "subject-access.json", json.dumps(answer, indent=2, sort_keys=True).encode()))
    files.append(write_private(out / "subject-access.html", render_html(answer, photos).encode()))
    audit.append(home.db, "subject-access", "", ids=profile_ids, to=str(out.resolve()), files=len(files))
    return {"out": str(out), "profiles": profile_ids, "files": [str(f) for f in files],
            "disclosures": sum(len(p["disclosures"]) for p in answer["profiles"])}
