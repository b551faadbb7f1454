"""`discnode retention`: what this node's retention policy keeps, and applying it (a thin layer
over retention.py and auditarchive.py)."""

from __future__ import annotations

import typer

from . import auditarchive, output, retention
from .cli import JsonOpt, _notify_now, app, open_home
from .errors import InvalidInput
from .home import today


@app.command("retention")
def retention_cmd(ctx: typer.Context,
                  apply: bool = typer.Option(False, "--apply", help="Delete the profiles past their ceiling "
                                             "and archive old audit entries, now (the daemon does it hourly)."),
                  dry_run: bool = typer.Option(False, "--dry-run", help="List what --apply would delete and "
                                               "archive; change nothing."),
                  days: int = typer.Option(retention.NOTICE_DAYS, "--days",
                                           help="Without --apply: also list profiles this many days from it."),
                  json_out: bool = JsonOpt) -> None:
    """The retention ceiling ([retention] in config.toml): profiles past or near it, and applying it."""
    if apply and dry_run:
        raise InvalidInput("give --apply or --dry-run, not both")
    if not 0 <= days <= 366:
        raise InvalidInput("--days must be 0 to 366")
    home = open_home(ctx)
    config, on = home.config, today()
    before = auditarchive.cutoff(on, config.audit_months) if config.audit_months else None
    if apply:
        outcome = retention.apply(home, on, source="command")
        # Erasure notices to the partners that received them, now (as `profile delete`); those
        # not reachable get them from `discnode serve`.
        told = {pid: _notify_now(home, pid) for pid, recipients in outcome.recipients.items() if recipients}
        archived = auditarchive.archive_due(home, on)
        if json_out:
            result = outcome.to_json()
            for row in result["deleted"]:
                row.update({k: v for k, v in told.get(row["id"], {}).items() if k != "recipients"})
            output.emit_json({**result, "audit_archived": archived and archived.to_json()})
            return
        output.console.print(f"Deleted {len(outcome.deleted)} profile(s) past the {config.retention_months}-month "
                             "retention ceiling.", highlight=False)
        for s in outcome.deleted:
            output.line(f"  {s.id}  {s.name}  ({s.basis} {s.since}; kept until {s.until})")
            if s.id in told:
                report = told[s.id]
                output.line(f"    erasure notice to {len(report['recipients'])} partner(s) that received it: "
                            f"{len(report['notified'])} took it now, {len(report['receipts'])} receipt(s)")
        for s, error in outcome.failed:
            output.err_console.print(f"Not deleted: {s.id}: {output.printable(error)}", highlight=False, markup=False)
        if archived:
            output.line(f"Archived audit entries {archived.first}..{archived.upto} to "
                        f"{home.path / auditarchive.FOLDER / archived.file}")
        return
    listed = (retention.expired(home.db, home.node_id, config.retention_months, on) if dry_run else
              retention.due(home.db, home.node_id, config.retention_months, on, days))
    span = auditarchive.archivable(home.db, before) if before else None
    if json_out:
        output.emit_json({"retention_months": config.retention_months, "audit_months": config.audit_months,
                          "profiles": [s.to_json() for s in listed],
                          "audit_archivable": span and {"first": span[0], "upto": span[1]}})
        return
    title = ("Would be deleted now" if dry_run else f"Past or within {days} days of the ceiling") + \
        f" ({config.retention_months} months): {len(listed)} profile(s)"
    output.table(title, ("id", "name", "kept until", "counted from"),
                 ([s.id, s.name, s.until + (" (reviewed)" if s.held else ""), f"{s.basis} {s.since}"]
                  for s in listed), whole=("id", "kept until"))
    if span:
        output.line(f"Audit entries {span[0]}..{span[1]} are older than {config.audit_months} months: "
                    f"{'would be' if dry_run else 'to be'} archived.")
    output.line(f"Settings: [retention] in {home.path / 'config.toml'}; `discnode retention --apply` applies them.")
