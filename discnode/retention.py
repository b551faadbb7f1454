"""Retention: how long this node keeps its own profiles, and deleting what outlives its need.

Each node sets a ceiling in its config.toml (`[retention] profiles_months`, default 24, as Auror
and Facewatch keep records): a profile is kept that many months after its last incident (or its
creation, if it has no incident; or the end of its exclusion notice, if that is later: a running
notice must not lose its subject). A review (`discnode profile review ID --reason TEXT`, audited
with its reason) keeps it until the next review date, past the ceiling if need be: that hold is
the one table this module writes, `retention_holds`. Profiles within NOTICE_DAYS of their
ceiling are in the review queue; what passes it unreviewed is deleted through profiles.delete,
the library's one delete path, which sends every partner that received the profile (the
disclosure log) a signed erasure notice, by the daemon every RUN_EVERY seconds (its delivery loop
sends the notices) and by `discnode retention --apply` (which sends them at once, as `profile
delete` does). Each deletion is audited as `retention-expired`, then `profile-deleted`.

Dates and the ceiling arithmetic are pure (`add_months`, `ceiling`); `due`, `hold` and `apply` use the node.
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from . import audit, store
from .home import Home

log = logging.getLogger("discnode.retention")

DEFAULT_MONTHS = 24
#: How far ahead of its ceiling a profile enters the review queue.
NOTICE_DAYS = 30
#: How often the daemon deletes what passed its ceiling.
RUN_EVERY = 3600.0


def add_months(day: dt.date, months: int) -> dt.date:
    """`months` calendar months after `day`, the day clamped to the month's length (31 Jan + 1 = 28/29 Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class Standing:
    """Where one profile stands against the ceiling."""

    id: str
    name: str
    #: What the ceiling counts from ("last incident", "created", "exclusion ends") and that date.
    basis: str
    since: str
    #: The date after which it is deleted: the ceiling, or a later review's hold.
    until: str
    held: bool

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "basis": self.basis, "since": self.since, "until": self.until,
                "held": self.held}


def ceiling(created: str, last_incident: str | None, exclusion_until: str | None, months: int,
            hold: str | None) -> tuple[str, str, dt.date]:
    """(basis, since, until) for one profile."""
    basis, since = "created", created[:10]
    if last_incident:
        basis, since = "last incident", last_incident
    if exclusion_until and exclusion_until > since:
        basis, since = "exclusion ends", exclusion_until
    until = add_months(dt.date.fromisoformat(since), months)
    if hold and hold > until.isoformat():
        return basis, since, dt.date.fromisoformat(hold)
    return basis, since, until


# Every own, live profile with what its ceiling counts from, in one read: SQLite's JSON functions
# find the last incident's date inside the stored record.
_STANDING = ("SELECT p.id, p.status, p.first_name, p.last_name, p.created, "
             "(SELECT max(json_extract(i.value, '$.date')) FROM json_each(p.record, '$.incidents') i), "
             "nullif(p.excluded_until, ''), h.until "
             "FROM profiles p LEFT JOIN retention_holds h ON h.profile_id = p.id "
             "WHERE p.origin = ? AND p.batch IS NULL ORDER BY p.id")


def standings(db: store.DB, me: str, months: int) -> list[Standing]:
    out = []
    for pid, status, first, last, created, incident, exclusion, hold in db.execute(_STANDING, [me]).fetchall():
        basis, since, until = ceiling(created, incident, exclusion, months, hold)
        name = f"{last}, {first}" if status == "identified" else "ID-sought"
        out.append(Standing(pid, name, basis, since, until.isoformat(), bool(hold and hold == until.isoformat())))
    return sorted(out, key=lambda s: (s.until, s.id))


def due(db: store.DB, me: str, months: int, today: dt.date, days: int = NOTICE_DAYS) -> list[Standing]:
    """Profiles whose ceiling is past or within `days`, soonest first."""
    horizon = (today + dt.timedelta(days=days)).isoformat()
    return [s for s in standings(db, me, months) if s.until <= horizon]


def expired(db: store.DB, me: str, months: int, today: dt.date) -> list[Standing]:
    """Profiles past their ceiling (its last day is kept), unreviewed: what `apply` deletes."""
    return [s for s in standings(db, me, months) if s.until < today.isoformat()]


def hold(db: store.DB, profile_id: str, until: dt.date, reason: str) -> None:
    """A review keeps the profile until `until`, whatever its ceiling; in the caller's transaction
    (profiles.set_review_by, with its audit entry)."""
    with store.write(db) as conn:
        conn.execute("INSERT INTO retention_holds (profile_id, until, reason, actor, reviewed) VALUES (?, ?, ?, ?, ?) "
                     "ON CONFLICT (profile_id) DO UPDATE SET until = excluded.until, reason = excluded.reason, "
                     "actor = excluded.actor, reviewed = excluded.reviewed",
                     [profile_id, until.isoformat(), reason, audit.ACTOR.get(), store.now_ts()])


@dataclass
class Outcome:
    deleted: list[Standing]
    failed: list[tuple[Standing, str]]
    #: Profile ID to the partners that had received it, each sent an erasure notice (notices.py).
    recipients: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"deleted": [{**s.to_json(), "recipients": self.recipients.get(s.id, [])} for s in self.deleted],
                "failed": [{**s.to_json(), "error": error} for s, error in self.failed]}


def apply(home: Home, today: dt.date, *, source: str) -> Outcome:
    """Delete every profile past its ceiling, each through profiles.delete; `source` says what
    ran it ("command" or "daemon"), in the audit entry."""
    from . import profiles
    from .errors import DiscnodeError

    months = home.config.retention_months
    outcome = Outcome([], [])
    for standing in expired(home.db, home.node_id, months, today):
        audit.append(home.db, "retention-expired", "", id=standing.id, basis=standing.basis, since=standing.since,
                     until=standing.until, months=months, source=source)
        try:
            # The library's one delete path: it queues an erasure notice to every recipient.
            outcome.recipients[standing.id] = profiles.delete(home, standing.id)
        except DiscnodeError as exc:  # e.g. deleted meanwhile; the next run tries again
            outcome.failed.append((standing, str(exc)))
            continue
        outcome.deleted.append(standing)
    with store.write(home.db) as conn:  # holds of profiles deleted by any path
        conn.execute("DELETE FROM retention_holds WHERE profile_id NOT IN (SELECT id FROM profiles)")
    return outcome


class Schedule:
    """The daemon's retention run: at start, then every RUN_EVERY seconds (on its side loop):
    profiles past the ceiling, then audit entries past `[retention] audit_months` (auditarchive.py)."""

    def __init__(self, every: float = RUN_EVERY) -> None:
        self.every = every
        self.last: float | None = None

    def run_if_due(self, home: Home, now: float) -> Outcome | None:
        if self.last is not None and now - self.last < self.every:
            return None
        self.last = now
        from .auditarchive import archive_due
        on = dt.datetime.now(dt.timezone.utc).date()
        outcome = apply(home, on, source="daemon")
        if outcome.deleted:
            log.info("retention: deleted %d profile(s) past the %d-month ceiling", len(outcome.deleted),
                     home.config.retention_months)
        archived = archive_due(home, on)
        if archived:
            log.info("retention: archived audit entries %d..%d to %s", archived.first, archived.upto, archived.file)
        return outcome
