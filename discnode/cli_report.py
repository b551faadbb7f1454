"""`discnode report`: trends across the Dataview (a thin layer over report.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from . import audit, output, report
from .cli import JsonOpt, _daemon_client, _run, app, open_home
from .home import today


def _pct(row: dict[str, Any]) -> str:
    if row["change_pct"] is None:
        return "new" if row["count"] else ""
    return f"{row['change_pct']:+.1f}%"


@app.command("report")
def report_cmd(ctx: typer.Context,
               since: Optional[str] = typer.Option(None, "--since", help="First day, YYYY-MM-DD."),
               until: Optional[str] = typer.Option(None, "--until", help="Last day, YYYY-MM-DD (default today)."),
               weeks: Optional[int] = typer.Option(None, "--weeks",
                                                   help="The N complete weeks before this one (default 4)."),
               csv_dir: Optional[Path] = typer.Option(None, "--csv", help="Write one CSV per table into DIR."),
               charts: Optional[Path] = typer.Option(None, "--charts", help="Write PNG and SVG charts into DIR."),
               timeout: float = typer.Option(3.0, help="Seconds to wait for each partner."),
               json_out: bool = JsonOpt) -> None:
    """Incidents by offence tag, partnership, week and month, repeat and Level Two people,
    exclusions in force and new ID-sought images, across this node and every consenting partner
    (statistics-only partners add their counts), against the previous period."""
    period = report.Period.choose(today(), since, until, weeks)
    home = open_home(ctx)
    # In the daemon (forward.py), partners are asked through its warm client; and there is no
    # progress bar: the caller sees the daemon's output only once the command has finished.
    client = _daemon_client()
    if json_out or client is not None:
        data = _run(report.gather(home, period, timeout=timeout, client=client))
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        with Progress(TextColumn("Asking partners"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                      console=output.err_console, transient=True) as progress:
            task = progress.add_task("", total=report.total_sources(home))

            def answered(name: str, status: str) -> None:
                progress.update(task, advance=1, description=output.safe(f"{name}: {status}"))
            data = _run(report.gather(home, period, timeout=timeout, on_source=answered))
    audit.append(home.db, "report", "", period=data["period"], profiles=data["profiles_looked_at"],
                 incidents=data["incidents"]["count"], peers={s["node_id"]: s["status"] for s in data["sources"]})
    written = []
    if csv_dir is not None:
        written += report.write_csv(data, csv_dir)
    if charts is not None:
        written += report.write_charts(data, charts)
    if json_out:
        output.emit_json({**data, "files": [str(p) for p in written]})
        return
    _print(data)
    for path in written:
        output.info(f"Wrote {path} (readable by you only)")


def _print(data: dict[str, Any]) -> None:
    p, q = data["period"], data["previous"]
    i = data["incidents"]
    output.line(f"Report {p['since']} to {p['until']} ({p['days']} days), against {q['since']} to {q['until']}: "
                f"{i['count']} incidents (previous {i['previous']}, {_pct(i) or 'no change'}); "
                f"{data['profiles_looked_at']} profiles looked at")
    output.table("Incidents by offence tag", ("tag", "incidents", "previous", "change"),
                 [[r["label"], r["count"], r["previous"], _pct(r)] for r in data["by_tag"]])
    output.table("Incidents by partnership", ("partnership", "shares", "incidents", "previous", "change"),
                 [[r["name"], r["kind"], r["count"], r["previous"], _pct(r)] for r in data["by_partnership"]])
    output.table("Incidents by week", ("week", "incidents", ""),
                 [[r["week"], r["count"], "part of the week" if r["partial"] else ""] for r in data["by_week"]])
    output.table("Incidents by month", ("month", "incidents", ""),
                 [[r["month"], r["count"], "part of the month" if r["partial"] else ""] for r in data["by_month"]])
    rp, l2 = data["repeat_people"], data["level_two"]
    output.table(f"Repeat people: {rp['count']} with two or more incidents in the period",
                 ("partnership", "profile", "name", "incidents"),
                 [[r["origin_name"], r["id"], r["name"], r["incidents"]] for r in rp["people"]])
    output.table(f"Level Two people: {l2['count']} known to two or more partnerships", ("name", "dob", "partnerships"),
                 [[g["name"], g["dob"], ", ".join(g["partnerships"])] for g in l2["people"]])
    ex, im = data["exclusions_in_force"], data["new_id_sought_images"]
    output.table(f"Exclusions in force today: {ex['count']}", ("partnership", "exclusions"),
                 [[r["name"], r["count"]] for r in ex["by_partnership"]])
    output.table(f"New ID-sought images in the period: {im['count']}", ("partnership", "profile", "created"),
                 [[r["origin_name"], r["id"], r["created"]] for r in im["profiles"]])
    if data["statistics_partners"]:
        output.table("Statistics-only partners (counts of whole weeks; tags over their own window)",
                     ("partnership", "status", "period", "previous", "window", "tags in window"),
                     [[r["name"], r["status"] if r["status"] == "ok" else f"{r['status']}: {r['error']}",
                       r["period_total"], r["previous_total"],
                       f"{r['window'].get('from', '')} to {r['window'].get('until', '')}" if r["window"] else "",
                       ", ".join(f"{t} {n}" for t, n in sorted(r["tags"].items(), key=lambda x: -x[1]))]
                      for r in data["statistics_partners"]])
    failed = [s for s in data["sources"] if s["status"] != "ok"]
    for s in failed:
        output.info(f"Not counted: {s['name']} ({s['status']}: {s['error']})")
