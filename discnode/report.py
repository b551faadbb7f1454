"""`discnode report`: trends across the Dataview for a period, against the period before it.

Sources: this node's own profiles and every partner whose agreement shares profiles (one Dataview
walk, each partner's records checked as `search --all` checks them), and every statistics-only
partner (its signed, released counts: statsask.py). One walk serves every figure, Level Two
included, which needs the identified records themselves: counting at each source as well would add
requests without removing the walk.

Figures (all pure, in `compute`, over the records and replies gathered):
- incidents in the period by offence tag (an incident counts under each tag of its profile), by
  partnership, by ISO week and by month, each against the previous period of the same length;
- repeat people (profiles with two or more incidents in the period) and Level Two people (one
  person known to two or more partnerships: leveltwo.groups);
- exclusions in force today; new ID-sought images (ID-sought profiles with a photo created in the
  period).
A statistics-only partner's counts are whole ISO weeks: it adds to the weeks that lie wholly in the
period (and to the months wholly in it), to its partnership's total, and to the total; its tags
and places cover its own window and are shown apart, never mixed into the period's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from . import schemas
from .errors import InvalidInput
from .leveltwo import groups
from .statsask import PartnerStatistics

MAX_WEEKS = 104
#: People listed by name (repeat, Level Two); the counts cover everyone.
LISTED = 25
UNTAGGED = "(none)"


@dataclass(frozen=True)
class Period:
    since: dt.date
    until: dt.date

    @classmethod
    def choose(cls, today: dt.date, since: str | None = None, until: str | None = None,
               weeks: int | None = None) -> "Period":
        """--weeks N: the N complete ISO weeks before this one (the default, 4); or --since and
        --until (inclusive; until defaults to today)."""
        if weeks is not None and (since or until):
            raise InvalidInput("give --weeks, or --since and --until; not both")
        if since or until:
            start = _date(since, "since") if since else None
            end = _date(until, "until") if until else today
            if start is None:
                raise InvalidInput("--until needs --since")
            if start > today or end > today:
                raise InvalidInput(f"--{'since' if start > today else 'until'} is in the future")
            if end < start:
                raise InvalidInput("--until is before --since")
            if (end - start).days >= MAX_WEEKS * 7:
                raise InvalidInput(f"a period is at most {MAX_WEEKS} weeks")
            return cls(start, end)
        weeks = 4 if weeks is None else weeks
        if not 1 <= weeks <= MAX_WEEKS // 2:
            raise InvalidInput(f"--weeks must be 1 to {MAX_WEEKS // 2}")
        monday = today - dt.timedelta(days=today.weekday())
        return cls(monday - dt.timedelta(weeks=weeks), monday - dt.timedelta(days=1))

    @property
    def days(self) -> int:
        return (self.until - self.since).days + 1

    def previous(self) -> "Period":
        return Period(self.since - dt.timedelta(days=self.days), self.since - dt.timedelta(days=1))

    def __contains__(self, day: dt.date) -> bool:
        return self.since <= day <= self.until

    def weeks(self) -> list[str]:
        """Every ISO week with a day in the period."""
        out, day = [], self.since - dt.timedelta(days=self.since.weekday())
        while day <= self.until:
            out.append(_week(day))
            day += dt.timedelta(weeks=1)
        return out

    def whole_weeks(self) -> set[str]:
        return {w for w in self.weeks() if self.since <= _monday(w) and _monday(w) + dt.timedelta(days=6) <= self.until}

    def months(self) -> list[str]:
        out, day = [], self.since.replace(day=1)
        while day <= self.until:
            out.append(day.strftime("%Y-%m"))
            day = (day + dt.timedelta(days=32)).replace(day=1)
        return out

    def whole_months(self) -> set[str]:
        """Months wholly in the period whose weeks are all wholly in it too (a statistics reply's
        month counts cannot be split by day)."""
        out = set()
        for month in self.months():
            first = dt.date.fromisoformat(month + "-01")
            last = (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
            if self.since <= first and last <= self.until:
                out.add(month)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"since": self.since.isoformat(), "until": self.until.isoformat(), "days": self.days}


def _date(text: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"--{name} {text[:20]!r} is not a date YYYY-MM-DD") from None


def _week(day: dt.date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def _monday(week: str) -> dt.date:
    return dt.date.fromisocalendar(int(week[:4]), int(week[6:]), 1)


def _change(now: int, before: int) -> dict[str, Any]:
    return {"count": now, "previous": before, "change": now - before,
            "change_pct": None if before == 0 else round(100.0 * (now - before) / before, 1)}


def compute(records: Iterable[dict[str, Any]], sources: list[dict[str, Any]], stats: list[PartnerStatistics],
            period: Period, today: dt.date) -> dict[str, Any]:
    """The report's figures. records: Dataview rows (with origin_name); sources: each source's
    node_id, name, kind (own | profiles | statistics), status and error."""
    previous = period.previous()
    tag_now: Counter[str] = Counter()
    tag_before: Counter[str] = Counter()
    by_origin: Counter[str] = Counter()
    by_origin_before: Counter[str] = Counter()
    by_week: Counter[str] = Counter()
    by_month: Counter[str] = Counter()
    repeat: list[dict[str, Any]] = []
    excluded: Counter[str] = Counter()
    new_images: list[dict[str, Any]] = []
    identified: list[dict[str, Any]] = []
    names: dict[str, str] = {s["node_id"]: s["name"] for s in sources}
    for record in records:
        origin = record["origin"]
        names.setdefault(origin, record.get("origin_name", origin))
        tags = record.get("tags") or [UNTAGGED]
        in_period = 0
        for incident in record.get("incidents") or ():
            day = dt.date.fromisoformat(incident["date"])
            if day in period:
                in_period += 1
                by_origin[origin] += 1
                by_week[_week(day)] += 1
                by_month[day.strftime("%Y-%m")] += 1
                tag_now.update(tags)
            elif day in previous:
                by_origin_before[origin] += 1
                tag_before.update(tags)
        if in_period >= 2:
            repeat.append({"origin": origin, "origin_name": names[origin], "id": record["id"],
                           "name": f"{record.get('first_name', '')} {record.get('last_name', '')}".strip()
                           or "(ID sought)", "incidents": in_period})
        exclusion = record.get("exclusion")
        if exclusion and exclusion["from"] <= today.isoformat() <= exclusion["until"]:
            excluded[origin] += 1
        if (record.get("status") == "id-sought" and record.get("image")
                and dt.date.fromisoformat(record["created"][:10]) in period):
            new_images.append({"origin": origin, "origin_name": names[origin], "id": record["id"],
                               "created": record["created"], "image": record["image"]})
        if record.get("status") == "identified":
            identified.append(record)
    whole_weeks, whole_months = period.whole_weeks(), period.whole_months()
    prev_weeks = previous.whole_weeks()
    statistics_rows = []
    for s in stats:
        row: dict[str, Any] = {"node_id": s.node_id, "name": s.name, "status": s.status, "error": s.error,
                               "window": s.window, "period_total": None, "previous_total": None,
                               "window_total": None, "tags": {}, "tags_other": 0, "places": []}
        if s.tables is not None:
            weeks_now = {w: n for w, n in s.tables.by_week.items() if w in whole_weeks}
            by_week.update(weeks_now)
            by_month.update({m: n for m, n in s.tables.by_month.items() if m in whole_months})
            by_origin[s.node_id] += sum(weeks_now.values())
            by_origin_before[s.node_id] += sum(n for w, n in s.tables.by_week.items() if w in prev_weeks)
            tags, other = s.tables.tag_counts()
            row.update(period_total=sum(weeks_now.values()), previous_total=by_origin_before[s.node_id],
                       window_total=s.tables.total, tags=tags, tags_other=other, places=s.tables.by_area)
        statistics_rows.append(row)
    labels = schemas.code_labels("offence_tag")
    kinds = {s["node_id"]: s["kind"] for s in sources}
    people = groups(identified, 2)
    repeat.sort(key=lambda r: (-r["incidents"], r["origin_name"], r["id"]))
    new_images.sort(key=lambda r: (r["created"], r["origin"], r["id"]))
    total, total_before = sum(by_origin.values()), sum(by_origin_before.values())
    return {
        "period": period.to_json(), "previous": previous.to_json(), "today": today.isoformat(),
        "sources": sources,
        "incidents": _change(total, total_before),
        "by_tag": sorted(({"tag": t, "label": labels.get(t, t), **_change(tag_now[t], tag_before[t])}
                          for t in set(tag_now) | set(tag_before)), key=lambda r: (-r["count"], r["tag"])),
        "by_partnership": sorted(({"node_id": n, "name": names.get(n, n), "kind": kinds.get(n, "profiles"),
                                   **_change(by_origin[n], by_origin_before[n])}
                                  for n in set(by_origin) | set(by_origin_before) | set(kinds)),
                                 key=lambda r: (-r["count"], r["name"])),
        "by_week": [{"week": w, "count": by_week[w], "partial": w not in whole_weeks} for w in period.weeks()],
        "by_month": [{"month": m, "count": by_month[m], "partial": m not in whole_months} for m in period.months()],
        "repeat_people": {"count": len(repeat), "people": repeat[:LISTED]},
        "level_two": {"count": len(people), "people": [
            {"name": g.name, "dob": g.dob, "partnerships": g.partnerships} for g in people[:LISTED]]},
        "exclusions_in_force": {"count": sum(excluded.values()), "by_partnership": sorted(
            ({"node_id": n, "name": names.get(n, n), "count": c} for n, c in excluded.items()),
            key=lambda r: (-r["count"], r["name"]))},
        "new_id_sought_images": {"count": len(new_images), "profiles": new_images[:LISTED]},
        "statistics_partners": statistics_rows,
    }


async def gather(home: Any, period: Period, *, timeout: float = 3.0, client: Any = None,
                 on_source: Callable[[str, str], None] | None = None) -> dict[str, Any]:
    """Ask every source (one Dataview walk, and every statistics-only partner in parallel) and
    compute the report. on_source(name, status) is called as each answers (the progress bar)."""
    from .dataview import active_peers, walk
    from .home import today
    from .query import Query
    from .statsask import ask, statistics_partners

    day = today()
    profile_partners = active_peers(home)
    stats_partners = statistics_partners(home)

    def done(s: PartnerStatistics) -> None:
        if on_source:
            on_source(s.name, s.status)

    async def walked() -> tuple[list[dict[str, Any]], list[Any]]:
        return await walk(home, Query(), timeout=timeout, client=client,
                          on_source_done=(lambda st: on_source(st.name, st.status)) if on_source else None)
    started = time.monotonic()
    (records, statuses), stats = await asyncio.gather(
        walked(), ask(home, stats_partners, timeout=timeout, client=client, on_done=done))
    kinds = {home.node_id: "own", **{p.node_id: "profiles" for p in profile_partners}}
    sources = [{"node_id": s.node_id, "name": s.name, "kind": kinds.get(s.node_id, "profiles"), "status": s.status,
                "error": s.error, "ms": s.ms} for s in statuses]
    sources += [{"node_id": s.node_id, "name": s.name, "kind": "statistics", "status": s.status, "error": s.error,
                 "ms": s.ms} for s in stats]
    out = compute(records, sources, stats, period, day)
    out["ms"] = int((time.monotonic() - started) * 1000)
    out["profiles_looked_at"] = len(records)
    return out


def total_sources(home: Any) -> int:
    from .dataview import active_peers
    from .statsask import statistics_partners
    return 1 + len(active_peers(home)) + len(statistics_partners(home))


# --- files -----------------------------------------------------------------------------------

TABLES: dict[str, tuple[str, ...]] = {
    "by_tag": ("tag", "label", "count", "previous", "change", "change_pct"),
    "by_partnership": ("node_id", "name", "kind", "count", "previous", "change", "change_pct"),
    "by_week": ("week", "count", "partial"),
    "by_month": ("month", "count", "partial"),
}


def _rows(report: dict[str, Any]) -> dict[str, tuple[tuple[str, ...], list[dict[str, Any]]]]:
    out = {name: (columns, report[name]) for name, columns in TABLES.items()}
    out["repeat_people"] = (("origin", "origin_name", "id", "name", "incidents"), report["repeat_people"]["people"])
    out["level_two"] = (("name", "dob", "partnerships"),
                        [{**p, "partnerships": "; ".join(p["partnerships"])} for p in report["level_two"]["people"]])
    out["exclusions_in_force"] = (("node_id", "name", "count"), report["exclusions_in_force"]["by_partnership"])
    out["new_id_sought_images"] = (("origin", "origin_name", "id", "created", "image"),
                                   report["new_id_sought_images"]["profiles"])
    out["statistics_partners"] = (("node_id", "name", "status", "period_total", "previous_total", "window_total"),
                                  report["statistics_partners"])
    return out


def write_csv(report: dict[str, Any], folder: Path) -> list[Path]:
    """One CSV per table, owner-only (exports.py), cells a spreadsheet will not run (output.csv_cell)."""
    import io

    from .exports import private_dir, write_private
    from .output import write_csv as csv_rows

    private_dir(folder)
    written = []
    for name, (columns, rows) in _rows(report).items():
        text = io.StringIO()
        csv_rows(columns, ([row.get(c) for c in columns] for row in rows), text)
        written.append(write_private(folder / f"{name}.csv", text.getvalue().encode()))
    return written


CHARTS = ("by_week", "by_month", "by_tag", "by_partnership")


def chart_figure(report: dict[str, Any], name: str) -> Any:
    """One chart as a matplotlib Figure (the object API, no pyplot: no global state, so pages may
    draw in threads). matplotlib is imported here, not at start-up: most commands never draw.
    Labels are partners' text: drawn as typed (parse_math=False), never read as TeX."""
    from matplotlib.figure import Figure

    if name == "by_week":
        labels = [r["week"] for r in report["by_week"]]
        values = [r["count"] for r in report["by_week"]]
        title, horizontal = "Incidents by week", False
    elif name == "by_month":
        labels = [r["month"] for r in report["by_month"]]
        values = [r["count"] for r in report["by_month"]]
        title, horizontal = "Incidents by month", False
    elif name == "by_tag":
        rows = report["by_tag"][:15]
        labels, values = [r["label"] for r in rows], [r["count"] for r in rows]
        title, horizontal = "Incidents by offence tag", True
    elif name == "by_partnership":
        rows = report["by_partnership"][:30]
        labels, values = [r["name"][:40] for r in rows], [r["count"] for r in rows]
        title, horizontal = "Incidents by partnership", True
    else:
        raise InvalidInput(f"no chart {name[:40]!r}; charts: {', '.join(CHARTS)}")
    height = max(3.0, 0.3 * len(labels) + 1.5) if horizontal else 4.0
    figure = Figure(figsize=(8, height), layout="constrained")
    axes = figure.subplots()
    if horizontal:
        axes.barh(range(len(values)), values, color="#3b6ea5")
        axes.set_yticks(range(len(labels)), labels, parse_math=False)
        axes.invert_yaxis()
        axes.set_xlabel("incidents")
    else:
        axes.bar(range(len(values)), values, color="#3b6ea5")
        axes.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8, parse_math=False)
        axes.set_ylabel("incidents")
    period = report["period"]
    axes.set_title(f"{title}, {period['since']} to {period['until']}", parse_math=False)
    return figure


def chart_bytes(report: dict[str, Any], name: str, fmt: str) -> bytes:
    import io
    if fmt not in ("png", "svg"):
        raise InvalidInput("a chart is png or svg")
    out = io.BytesIO()
    # No date or tool in the file's metadata: the same report draws the same bytes.
    metadata = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}
    chart_figure(report, name).savefig(out, format=fmt, dpi=100, metadata=metadata)
    return out.getvalue()


def write_charts(report: dict[str, Any], folder: Path) -> list[Path]:
    from .exports import private_dir, write_private

    private_dir(folder)
    return [write_private(folder / f"{name}.{fmt}", chart_bytes(report, name, fmt))
            for name in CHARTS for fmt in ("png", "svg")]
