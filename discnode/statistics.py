"""Statistics-only sharing (spec section 8.7): counts of a node's own shareable incidents, by week,
month, place and offence tags, computed at the source and released so that no count under 5 can
be read from the reply or derived from it by subtraction.

How (pure: `release`), and why this and not independent rounding of each cell:
- Every incident in the window is either *released* (counted in every table and in the total) or
  *withheld* (counted nowhere). Every number in the reply is the exact count of a set of released
  incidents, so totals and margins agree by construction: a table's total minus all its other
  cells is exactly one of its published cells, and the difference between any two tables' totals
  is 0. Independently rounded cells and margins do not give this: when the rounding errors of a
  margin and of its other cells happen to line up, subtraction pins a suppressed cell exactly
  (tests/test_statistics.py shows one such table).
- Places and tag combinations with fewer than 5 released incidents are *recoded* into one "other"
  cell (their incidents stay released); weeks and months cannot be recoded, so the incidents of a
  week-and-month fragment (a week's days within one month) with fewer than 5 are withheld: weeks
  and months are published together, and the two tables determine every fragment by subtraction.
  An "other" cell under 5 is withheld too. Withholding can make another cell small, so the rules
  are applied again until nothing changes: every published count, and every fragment, is >= 5.
- The withheld number is not published, nor the window's true total: nothing in the reply depends
  on a withheld incident, so no subtraction can recover one.
- The window is fixed (the WINDOW_WEEKS complete ISO weeks before the current one), not chosen by
  the asker: a reply for one window minus a reply for an overlapping one could otherwise expose
  the incidents one window withholds and the other releases.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable

#: The smallest count a reply may carry (every other published number is 0 or at least this).
MIN_COUNT = 5
#: The reply covers this many complete ISO weeks, ending with the last full week before today's.
WINDOW_WEEKS = 104


@dataclass(frozen=True)
class Incident:
    date: dt.date
    place: str            # as recorded on the profile (the "area")
    tags: tuple[str, ...]  # the profile's offence tags, sorted

    @property
    def spelling(self) -> str:
        """The place as recorded, with runs of spaces as one and no control characters (a
        reply's text goes to partners' terminals and pages)."""
        return _spelling(self.place)

    @property
    def area(self) -> str:
        """Places are grouped as recorded, ignoring case and runs of spaces."""
        return _spelling(self.place).casefold()

    @property
    def week(self) -> str:
        return _week(self.date)

    @property
    def month(self) -> str:
        return self.date.strftime("%Y-%m")


# Cached: a node's incidents share few places and days, and release() asks for them again on
# every pass (this was most of a reply's CPU time).
@functools.lru_cache(maxsize=8192)
def _spelling(place: str) -> str:
    return " ".join("".join(ch for ch in place if ch.isprintable() or ch.isspace()).split()) or "(blank)"


@functools.lru_cache(maxsize=1024)
def _week(day: dt.date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


@dataclass(frozen=True)
class Window:
    first: dt.date  # a Monday
    last: dt.date   # a Sunday

    @classmethod
    def ending_before(cls, today: dt.date, weeks: int = WINDOW_WEEKS) -> "Window":
        monday = today - dt.timedelta(days=today.weekday())
        return cls(monday - dt.timedelta(weeks=weeks), monday - dt.timedelta(days=1))

    def to_wire(self) -> dict[str, Any]:
        return {"from": self.first.isoformat(), "until": self.last.isoformat(),
                "weeks": (self.last - self.first).days // 7 + 1}


@dataclass
class Tables:
    """What a reply publishes: exact counts over the released incidents."""

    total: int
    by_week: dict[str, int]
    by_month: dict[str, int]
    by_area: list[dict[str, Any]]   # {"area": label or None (other places), "count"}
    by_tags: list[dict[str, Any]]   # {"tags": [...] or None (other combinations), "count"}

    def to_wire(self) -> dict[str, Any]:
        return {"total": self.total, "by_week": dict(self.by_week), "by_month": dict(self.by_month),
                "by_area": [dict(c) for c in self.by_area], "by_tags": [dict(c) for c in self.by_tags]}

    @classmethod
    def from_wire(cls, doc: dict[str, Any]) -> "Tables":
        return cls(doc["total"], dict(doc["by_week"]), dict(doc["by_month"]), [dict(c) for c in doc["by_area"]],
                   [dict(c) for c in doc["by_tags"]])

    def numbers(self) -> list[int]:
        """Every number published (for checks: each is 0 or at least MIN_COUNT)."""
        return ([self.total, *self.by_week.values(), *self.by_month.values()]
                + [c["count"] for c in self.by_area] + [c["count"] for c in self.by_tags])

    def inconsistency(self) -> str:
        """Why these tables cannot be a release of one set of incidents ("" if they can)."""
        for name, cells in (("by_week", list(self.by_week.values())), ("by_month", list(self.by_month.values())),
                            ("by_area", [c["count"] for c in self.by_area]),
                            ("by_tags", [c["count"] for c in self.by_tags])):
            if sum(cells) != self.total:
                return f"{name} adds up to {sum(cells)}, not the total {self.total}"
        small = [n for n in self.numbers() if 0 < n < MIN_COUNT]
        if small:
            return f"a count under {MIN_COUNT} ({small[0]})"
        return ""

    def tag_counts(self) -> tuple[dict[str, int], int]:
        """Incidents under each offence tag (an incident counts under each of its profile's tags),
        and those under combinations recoded as other (not attributable to a tag)."""
        out: Counter[str] = Counter()
        other = 0
        for cell in self.by_tags:
            if cell["tags"] is None:
                other += cell["count"]
            for tag in cell["tags"] or ():
                out[tag] += cell["count"]
        return dict(out), other


def _recode(keys: list[str], minimum: int) -> list[str | None]:
    """Each key, or None where fewer than `minimum` items share it."""
    counts = Counter(keys)
    return [k if counts[k] >= minimum else None for k in keys]


def release(incidents: Iterable[Incident], window: Window, minimum: int = MIN_COUNT) -> Tables:
    """The tables a node may publish about these incidents (see the module's docstring)."""
    return tabulate(released(incidents, window, minimum), minimum)


def released(incidents: Iterable[Incident], window: Window, minimum: int = MIN_COUNT) -> list[Incident]:
    """The incidents a release counts: those in the window, less those withheld."""
    live = [i for i in incidents if window.first <= i.date <= window.last]
    while True:
        areas = _recode([i.area for i in live], minimum)
        combos = _recode([json.dumps(i.tags) for i in live], minimum)
        fragments = Counter((i.week, i.month) for i in live)
        other_areas = sum(a is None for a in areas)
        other_combos = sum(c is None for c in combos)
        keep = [i for i, a, c in zip(live, areas, combos)
                if fragments[(i.week, i.month)] >= minimum
                and (a is not None or other_areas >= minimum)
                and (c is not None or other_combos >= minimum)]
        if len(keep) == len(live):
            return live
        live = keep


def tabulate(live: list[Incident], minimum: int = MIN_COUNT) -> Tables:
    """The tables of released incidents (places and tag combinations under `minimum` as other)."""
    areas = _recode([i.area for i in live], minimum)
    combos = _recode([json.dumps(i.tags) for i in live], minimum)
    labels: dict[str, Counter[str]] = {}
    for i in live:
        labels.setdefault(i.area, Counter())[i.spelling] += 1
    by_area: Counter[str | None] = Counter(areas)
    by_tags: Counter[str | None] = Counter(combos)

    def label(area: str) -> str:  # the spelling most used, then the first: never an accident of order
        spellings = labels[area]
        return min(spellings, key=lambda s: (-spellings[s], s))
    return Tables(
        total=len(live),
        by_week=dict(sorted(Counter(i.week for i in live).items())),
        by_month=dict(sorted(Counter(i.month for i in live).items())),
        by_area=sorted(({"area": None if a is None else label(a), "count": n} for a, n in by_area.items()),
                       key=lambda c: (c["area"] is None, -c["count"], c["area"] or "")),
        by_tags=sorted(({"tags": None if t is None else json.loads(t), "count": n} for t, n in by_tags.items()),
                       key=lambda c: (c["tags"] is None, -c["count"], c["tags"] or [])),
    )


def incidents_of(records: Iterable[dict[str, Any]]) -> list[Incident]:
    """The incidents of profile records, each with its profile's tags."""
    out = []
    for record in records:
        tags = tuple(sorted(record.get("tags") or ()))
        for incident in record.get("incidents") or ():
            out.append(Incident(dt.date.fromisoformat(incident["date"]), incident["place"], tags))
    return out


def own_version(db: Any, me: str, today: dt.date) -> str:
    """A fingerprint of exactly the rows own_incidents counts (same conditions, bar the window,
    which is keyed apart): each one's ID, revision and content hash. Every write to one of them,
    and every row joining or leaving them (a new record, an erasure, local-only, past review),
    changes it; reading it costs a scan of the index columns, not of every incident."""
    digest = hashlib.sha256()
    for row in db.execute(
            "SELECT id, revision, content_hash FROM profiles "
            "WHERE batch IS NULL AND origin = ? AND local_only = 0 AND review_by >= ? ORDER BY id",
            [me, today.isoformat()]):
        digest.update(json.dumps(list(row)).encode() + b"\n")
    return digest.hexdigest()


def own_incidents(db: Any, me: str, today: dt.date, window: Window) -> list[Incident]:
    """This node's incidents that it may count for partners: its own live records, never local-only
    ones, nor those past review (exactly the records it would serve: spec section 8), in the window.
    One statement; the incidents are read out of the stored record with json_each."""
    rows = db.execute(
        "SELECT p.tags, json_extract(j.value, '$.date'), json_extract(j.value, '$.place') "
        "FROM profiles p, json_each(p.record, '$.incidents') j "
        "WHERE p.batch IS NULL AND p.origin = ? AND p.local_only = 0 AND p.review_by >= ? "
        "AND json_extract(j.value, '$.date') BETWEEN ? AND ?",
        [me, today.isoformat(), window.first.isoformat(), window.last.isoformat()]).fetchall()
    tag_sets: dict[str, tuple[str, ...]] = {}
    out = []
    for tags, date, place in rows:
        parsed = tag_sets.get(tags)
        if parsed is None:
            parsed = tag_sets[tags] = tuple(sorted(json.loads(tags)))
        out.append(Incident(dt.date.fromisoformat(date), place, parsed))
    return out
