"""Offender profiles: building and validating records (pure), and the node's operations on them.

Fields arrive as text from the CLI or a CSV, or typed from JSON; `normalise` turns either into the
typed record that protocol/schemas/profile.schema.json describes, and `validate` enforces it. Every
record is signed by this node when written, so that wherever it travels its origin can be proven.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
from pathlib import Path
from typing import Any, Iterable

from . import audit, disclosures, handling, notices, schemas, store
from . import images as img
from .errors import Conflict, InvalidInput
from .home import Home, today
from .identity import Identity
from .signing import sign_document

#: Retention: a profile must be reviewed this long after it was last written, or it stops being shared.
DEFAULT_REVIEW_DAYS = 365
LIST_FIELDS = ("aliases", "tags")
INT_FIELDS = ("age_min", "age_max", "height_cm")
TEXT_FIELDS = ("first_name", "last_name", "marks", "notes")
FIELD_COLUMNS = ("first_name", "last_name", "status", "gender", "ethnicity", "build", "dob", "age_min",
                 "age_max", "height_cm", "aliases", "tags", "marks", "notes", "last_seen", "review_by",
                 "local_only", "grading", "minor_reason")
EDITABLE = set(FIELD_COLUMNS) | {"incidents", "exclusion"}
#: Columns of an import file (CSV header, or JSON keys); README.md documents each one.
CSV_COLUMNS = ("ref", *FIELD_COLUMNS, "incidents", "exclusion", "images")
MAX_REF = 100


def new_id() -> str:
    return base64.b32encode(os.urandom(8)).decode().lower()[:12]


def normalise(fields: dict[str, Any]) -> dict[str, Any]:
    """Typed values from text input (CSV cells, CLI options); typed JSON passes through."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key not in EDITABLE:
            raise InvalidInput(f"unknown field {key!r}")
        if isinstance(value, str):
            value = value.strip()
            if key in LIST_FIELDS:
                value = [v.strip() for v in value.split(";") if v.strip()]
            elif key in INT_FIELDS:
                try:
                    value = int(value) if value else None
                except ValueError:
                    raise InvalidInput(f"{key}: {value!r} is not a whole number") from None
            elif key == "local_only":
                lowered = value.lower()
                if lowered not in ("", "true", "false", "yes", "no", "1", "0"):
                    raise InvalidInput(f"local_only: {value!r} is not true or false")
                value = lowered in ("true", "yes", "1")
            elif key in ("dob", "last_seen") and not value:
                value = None
            elif key == "review_by" and not value:
                continue
            elif key == "incidents":
                value = [parse_incident(line) for line in value.splitlines() if line.strip()]
            elif key == "grading":
                if not value:
                    continue  # an import row without one keeps the profile's (or gets the default)
                value = handling.parse_grading(value)
            elif key == "exclusion":
                value = parse_exclusion(value) if value else None
        out[key] = value
    return out


INCIDENT_FORM = "'YYYY-MM-DD|place|type|summary' or 'YYYY-MM-DD|place|type|summary|GRADING'"


def parse_incident(text: str) -> dict[str, Any]:
    """'YYYY-MM-DD|place|type|summary', optionally '|GRADING' (handling.parse_grading: e.g. 1/A/P):
    the CLI's --incident, one per line in a CSV cell. Without a grading the incident reads as 2/C/P."""
    parts = text.split("|")
    if len(parts) not in (4, 5):
        raise InvalidInput(f"incident {text[:80]!r}: expected {INCIDENT_FORM}")
    incident: dict[str, Any] = dict(zip(("date", "place", "type", "summary"), (p.strip() for p in parts[:4])))
    if len(parts) == 5:
        incident["grading"] = handling.parse_grading(parts[4])
    return incident


def parse_exclusion(text: str) -> dict[str, str]:
    """'FROM|UNTIL|where' (the CLI's --exclusion)."""
    parts = text.split("|")
    if len(parts) != 3:
        raise InvalidInput(f"exclusion {text[:80]!r}: expected 'FROM|UNTIL|where'")
    return dict(zip(("from", "until", "where"), (p.strip() for p in parts)))


def build_record(fields: dict[str, Any], origin: str, *, existing: dict[str, Any] | None = None,
                 now: str | None = None, on: dt.date | None = None) -> dict[str, Any]:
    """A complete, validated (unsigned) record from input fields, over an existing record if editing."""
    now = now or store.now_ts()
    on = on or today()
    base: dict[str, Any] = existing and {k: v for k, v in existing.items() if k != "sig"} or {
        "id": new_id(), "origin": origin, "status": "identified", "first_name": "", "last_name": "",
        "aliases": [], "dob": None, "age_min": None, "age_max": None, "gender": "unknown",
        "ethnicity": "IC9", "build": "unknown", "height_cm": None, "marks": "", "notes": "", "tags": [],
        "incidents": [], "exclusion": None, "local_only": False, "created": now, "updated": now,
        "last_seen": None, "review_by": (on + dt.timedelta(days=DEFAULT_REVIEW_DAYS)).isoformat(),
        "image": None, "revision": 0, "grading": dict(handling.DEFAULT_GRADING), "minor_reason": "",
    }
    changes = normalise(fields)
    # Every write raises the revision, so that what a partner was sent can be named exactly
    # (disclosures.py); a record from before revisions counts as revision 0.
    record = {**base, **changes, "updated": now, "revision": int(base.get("revision", 0)) + 1}
    for key in TEXT_FIELDS:
        if record.get(key) is None:
            record[key] = ""
    # Conditions sorted and checked against their code list (the schema checks the rest, below).
    if isinstance(record.get("grading"), dict):
        record["grading"] = handling.checked_grading(record["grading"])
    for incident in record["incidents"] if isinstance(record["incidents"], list) else ():
        if isinstance(incident, dict) and isinstance(incident.get("grading"), dict):
            incident["grading"] = handling.checked_grading(incident["grading"])
    if isinstance(record.get("minor_reason"), str):
        record["minor_reason"] = record["minor_reason"].strip()
    if handling.is_minor(record, on) and "review_by" not in changes:
        # A child's profile is reviewed within 6 months (however long an adult's would be).
        record["review_by"] = handling.minor_review_by(record, on)
    validate(record)
    return record


def validate(record: dict[str, Any]) -> None:
    """Schema plus the rules a schema cannot say."""
    if record.get("status") == "identified" and not (str(record.get("first_name") or "").strip()
                                                      and str(record.get("last_name") or "").strip()):
        raise InvalidInput("an identified profile needs a first and a last name "
                           "(for someone not yet identified, use --id-sought / status id-sought)")
    schemas.validate("profile", record)
    if record["dob"]:
        if dt.date.fromisoformat(record["dob"]) > today():
            raise InvalidInput(f"dob: {record['dob']} is in the future")
        if record["age_min"] is not None or record["age_max"] is not None:
            raise InvalidInput("give a date of birth or an approximate age range, not both")
    if record["age_min"] is not None and record["age_max"] is not None and record["age_min"] > record["age_max"]:
        raise InvalidInput("age_min is greater than age_max")
    exclusion = record["exclusion"]
    if exclusion and exclusion["until"] < exclusion["from"]:
        raise InvalidInput("exclusion: until is before from")
    if len(set(record["aliases"])) != len(record["aliases"]):
        raise InvalidInput("aliases: the same alias is given twice")


def _sign(home: Home, record: dict[str, Any]) -> dict[str, Any]:
    return sign_document(record, home.identity)


def check_minor(record: dict[str, Any], on: dt.date | None = None) -> None:
    """What an administrator writes (add, edit, identify, import) must give a minor's profile its
    reason, and a review within 6 months; InvalidInput, nothing written, otherwise."""
    on = on or today()
    handling.check_minor(record, on)
    if handling.is_minor(record, on) and record["review_by"] > (
            on + dt.timedelta(days=handling.MINOR_REVIEW_DAYS)).isoformat():
        raise InvalidInput(f"the profile of someone under 18 is reviewed within {handling.MINOR_REVIEW_DAYS} days: "
                           f"review-by {record['review_by']} is later")


# --- operations on the node ------------------------------------------------------------------


def load_images(paths: Iterable[Path]) -> list[img.ProcessedImage]:
    out = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
        out.append(img.process(data, Path(path).name))
    return out


def _store_with_images(home: Home, record: dict[str, Any], images: list[img.ProcessedImage], *,
                       replace: bool, event: str) -> dict[str, Any]:
    """Write image files, then the rows and the audit entry, in one transaction; on failure remove
    the new files."""
    created_files: list[Path] = []
    try:
        for image in images:
            created_files += img.save(home.images_root, image)
        if images and record["image"] is None:
            record["image"] = images[0].sha256
        signed = _sign(home, record)
        with store.write(home.db) as conn:
            store.put_profiles(home.db, [signed], replace=replace, identity=home.identity)
            for image in images:
                store.add_image_row(conn, record["id"], image.sha256, image.meta)
            audit.append(home.db, event, "", id=record["id"], **(
                {"sha256": images[0].sha256} if event == "image-added" else {"images": len(images)}))
        return signed
    except BaseException:
        for path in created_files:
            path.unlink(missing_ok=True)
        raise


def add(home: Home, fields: dict[str, Any], image_paths: Iterable[Path] = (),
        image_data: Iterable[bytes] = ()) -> dict[str, Any]:
    # All refusals happen before anything is written.
    images = load_images(image_paths) + [img.process(data) for data in image_data]
    record = build_record(fields, home.node_id)
    check_minor(record)
    return _store_with_images(home, record, images, replace=False, event="profile-added")


def _own(home: Home, profile_id: str) -> dict[str, Any]:
    existing = store.get_profile(home.db, profile_id)
    if existing["origin"] != home.node_id:
        raise InvalidInput("only the origin node can edit a profile")
    return existing


def notify_recipients(db: store.DB, identity: Identity, existing: dict[str, Any], record: dict[str, Any]) -> None:
    """Tell every partner that received an earlier revision (the disclosure log) that the record
    changed: a rectification, or an erasure if it just became local-only (those partners may no
    longer hold it). In the caller's transaction; peering delivers the notices."""
    if record["local_only"] and existing["local_only"]:
        return  # not shared before, not shared now: whoever got it was told when it became local-only
    kind = notices.ERASURE if record["local_only"] else notices.RECTIFICATION
    recipients = disclosures.recipients(db, record["id"])
    if recipients:
        notices.prepare(db, identity, record["id"], kind, record["revision"], recipients)


def _write_edit(home: Home, record: dict[str, Any], event: str, peer: str = "", *,
                notify_from: dict[str, Any] | None = None, **detail: Any) -> dict[str, Any]:
    """Re-sign and store an edited record, with its audit entry, in one transaction; with
    notify_from (the record before), notices to the partners that received it (notify_recipients)."""
    signed = _sign(home, record)
    with store.write(home.db):
        store.put_profiles(home.db, [signed], replace=True, identity=home.identity)
        audit.append(home.db, event, peer, id=record["id"], **detail)
        if notify_from is not None:
            notify_recipients(home.db, home.identity, notify_from, record)
    return signed


def edit(home: Home, profile_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Correct a profile; every partner that received it is sent a notice (notices.py)."""
    existing = _own(home, profile_id)
    record = build_record(changes, home.node_id, existing=existing)
    check_minor(record)
    return _write_edit(home, record, "profile-edited", notify_from=existing, fields=sorted(changes))


def identify(home: Home, profile_id: str, *, first_name: str, last_name: str, dob: str | None = None,
             changes: dict[str, Any] | None = None, source: str = "administrator", peer: str = "",
             reason: str = "") -> dict[str, Any]:
    """Turn an ID-sought profile into an identified one, in one step: status, names and date of
    birth set (a date of birth replaces the approximate age range), other `changes` applied with
    them; images, incidents, exclusion and creation date kept; re-signed; audited as
    `profile-identified` with what led to it: `source` (e.g. "administrator", "proposal"), the
    `peer` whose proposal it was (node ID, or ""), and the administrator's `reason`."""
    existing = _own(home, profile_id)
    if existing["status"] != "id-sought":
        raise Conflict(f"profile {profile_id} is already identified")
    if not first_name.strip() or not last_name.strip():
        raise InvalidInput("identifying someone needs a first and a last name")
    if len(reason) > 500 or len(source) > 40:
        raise InvalidInput("the reason is at most 500 characters, the source 40")
    fields: dict[str, Any] = {**(changes or {}), "status": "identified", "first_name": first_name,
                              "last_name": last_name}
    if dob:
        fields.update(dob=dob, age_min=None, age_max=None)
    record = build_record(fields, home.node_id, existing=existing)
    check_minor(record)
    return _write_edit(home, record, "profile-identified", peer=peer, notify_from=existing, source=source,
                       reason=reason, fields=sorted(fields))


def seen(db: store.DB, identity: Identity, profile_id: str, when: str, peer: str, sighting: str) -> bool:
    """A partner's sighting moves the profile's last-seen date forward (never back); re-signed and
    audited as `profile-last-seen`, in the caller's transaction if it has one. True if it moved.
    Takes the connection, not the Home: the peer API writes on its own writer thread."""
    existing = store.get_profile(db, profile_id)
    if existing["origin"] != identity.node_id:
        raise InvalidInput("only the origin node can edit a profile")
    if existing["last_seen"] and existing["last_seen"] >= when:
        return False
    signed = sign_document(build_record({"last_seen": when}, identity.node_id, existing=existing), identity)
    with store.write(db):
        store.put_profiles(db, [signed], replace=True, identity=identity)
        audit.append(db, "profile-last-seen", peer, id=profile_id, last_seen=when, was=existing["last_seen"],
                     sighting=sighting)
    return True


def set_review_by(home: Home, profile_id: str, review_by: dt.date, reason: str) -> dict[str, Any]:
    """Extend (or set) a profile's review-by date after a review; audited with the reason. It also
    keeps the profile until that date if its retention ceiling falls earlier (retention.py)."""
    if not reason.strip() or len(reason) > 500:
        raise InvalidInput("give the review's reason (1 to 500 characters)")
    from . import retention

    existing = _own(home, profile_id)
    if handling.is_minor(existing, today()):
        review_by = min(review_by, today() + dt.timedelta(days=handling.MINOR_REVIEW_DAYS))
    record = build_record({"review_by": review_by.isoformat()}, home.node_id, existing=existing)
    with store.write(home.db):  # a review also keeps the profile past its retention ceiling until then
        signed = _write_edit(home, record, "profile-reviewed", reason=reason.strip(),
                             review_by=review_by.isoformat(), was=existing["review_by"])
        retention.hold(home.db, profile_id, review_by, reason.strip())
    return signed


# --- lists inside a profile: aliases, incidents; the exclusion notice --------------------------


def revise(current: dict[str, Any], *, add_aliases: Iterable[str] = (), remove_aliases: Iterable[str] = (),
           rename_aliases: Iterable[tuple[str, str]] = (), add_incidents: Iterable[dict[str, Any]] = (),
           replace_incidents: Iterable[tuple[int, dict[str, Any]]] = (), remove_incidents: Iterable[int] = (),
           remove_exclusion: bool = False) -> dict[str, Any]:
    """The changes (for `edit`) that revise a profile's aliases and incidents. Incidents are
    numbered from 1 in the order `profile show` lists them, always as they were before this edit;
    an unknown number or alias is InvalidInput, so nothing changes."""
    changes: dict[str, Any] = {}
    aliases = list(current["aliases"])
    for old, new in rename_aliases:
        if old not in aliases:
            raise InvalidInput(f"no alias {old!r} on this profile (it has: {', '.join(aliases) or 'none'})")
        aliases[aliases.index(old)] = new.strip()
    for old in remove_aliases:
        if old not in current["aliases"]:
            raise InvalidInput(f"no alias {old!r} on this profile (it has: {', '.join(current['aliases']) or 'none'})")
        aliases = [a for a in aliases if a != old]
    aliases += list(add_aliases)
    if aliases != current["aliases"]:
        changes["aliases"] = aliases
    incidents: list[dict[str, Any] | None] = list(current["incidents"])
    count = len(incidents)

    def check(n: int) -> int:
        if not 1 <= n <= count:
            raise InvalidInput(f"incident {n}: this profile has {count} incident(s)"
                               + (f", numbered 1 to {count}" if count else ""))
        return n - 1

    for n, incident in replace_incidents:
        incidents[check(n)] = incident
    for n in remove_incidents:
        incidents[check(n)] = None
    revised = [i for i in incidents if i is not None] + list(add_incidents)
    if revised != current["incidents"]:
        changes["incidents"] = revised
    if remove_exclusion:
        if current["exclusion"] is None:
            raise InvalidInput("this profile has no exclusion notice to remove")
        changes["exclusion"] = None
    return changes


# --- images ----------------------------------------------------------------------------------


def find_image(home: Home, profile_id: str, which: str) -> str:
    """One of a profile's images by its number (from 1, in the order added) or the start of its hash."""
    hashes = [i["sha256"] for i in store.images_of(home.db, profile_id)]
    which = which.strip().lower()
    if which.isdigit():
        n = int(which)
        if not 1 <= n <= len(hashes):
            raise InvalidInput(f"image {n}: profile {profile_id} has {len(hashes)} image(s)"
                               + (f", numbered 1 to {len(hashes)}" if hashes else ""))
        return hashes[n - 1]
    if len(which) < 6 or any(c not in "0123456789abcdef" for c in which):
        raise InvalidInput(f"{which!r} is not an image number or the first 6 or more characters of its hash")
    matches = [h for h in hashes if h.startswith(which)]
    if len(matches) != 1:
        raise InvalidInput(f"{which!r} matches {len(matches)} of profile {profile_id}'s images; give one")
    return matches[0]


def add_image(home: Home, profile_id: str, path: Path, *, primary: bool = False) -> dict[str, Any]:
    existing = _own(home, profile_id)
    (image,) = load_images([path])
    record = build_record({}, home.node_id, existing=existing)
    if primary:
        record["image"] = image.sha256
    return _store_with_images(home, record, [image], replace=True, event="image-added")


def set_primary_image(home: Home, profile_id: str, which: str) -> dict[str, Any]:
    existing = _own(home, profile_id)
    sha = find_image(home, profile_id, which)
    record = build_record({}, home.node_id, existing=existing)
    record["image"] = sha
    return _write_edit(home, record, "image-primary", sha256=sha)


def remove_image(home: Home, profile_id: str, which: str) -> dict[str, Any]:
    """Remove one image from a profile (its files too, if no other profile holds it); if it was the
    primary image, the first remaining one becomes primary."""
    existing = _own(home, profile_id)
    sha = find_image(home, profile_id, which)
    record = build_record({}, home.node_id, existing=existing)
    if record["image"] == sha:
        rest = [i["sha256"] for i in store.images_of(home.db, profile_id) if i["sha256"] != sha]
        record["image"] = rest[0] if rest else None
    signed = _sign(home, record)
    with store.write(home.db) as conn:
        orphan = store.remove_image_row(conn, profile_id, sha)
        store.put_profiles(home.db, [signed], replace=True, identity=home.identity)
        audit.append(home.db, "image-removed", "", id=profile_id, sha256=sha)
        notify_recipients(home.db, home.identity, existing, signed)
    if orphan:
        img.remove(home.images_root, sha)
    return signed


def delete(home: Home, profile_id: str, *, told: Iterable[str] = (), recovered: bool = False) -> list[str]:
    """Delete a profile and its images. Every partner that received it (any revision, or one of its
    images: the disclosure log) is sent a signed erasure notice, in the same transaction; peering
    delivers them. Returns those partners' node IDs. Every way of deleting a profile comes here.
    `told`: partners that already hold an erasure notice of it with their receipt (an erasure
    re-applied after a restore, `recovered`): they are not told twice."""
    told = set(told)
    with store.write(home.db):
        existing = store.get_profile(home.db, profile_id)
        unused = store.delete_profile(home.db, profile_id)
        disclosures.catch_up(home.db)
        recipients = sorted(disclosures.recipients(home.db, profile_id) - told)
        extra = {"recovered": True, "already_told": sorted(told)} if recovered else {}
        audit.append(home.db, "profile-deleted", "", id=profile_id, notify=recipients, **extra)
        notices.prepare(home.db, home.identity, profile_id, notices.ERASURE, int(existing.get("revision", 0)),
                        recipients)
    for sha in unused:  # after the commit: a rolled-back delete must not lose its images
        img.remove(home.images_root, sha)
    return recipients


def show(home: Home, profile_id: str) -> dict[str, Any]:
    record = store.get_profile(home.db, profile_id)
    return {**record, "images": [i["sha256"] for i in store.images_of(home.db, profile_id)]}
