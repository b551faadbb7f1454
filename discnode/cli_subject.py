"""`discnode subject-access`: everything this node holds about a person, as a bundle (a thin
layer over subjectaccess.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import output, subjectaccess
from .cli import JsonOpt, app, open_home
from .errors import InvalidInput, NotFound
from .home import today


@app.command("subject-access")
def subject_access(ctx: typer.Context,
                   profile_id: Optional[str] = typer.Argument(None, help="The profile's ID (or use --name and --dob)."),
                   name: Optional[str] = typer.Option(None, "--name", help='"First Last" (aliases match too).'),
                   dob: Optional[str] = typer.Option(None, "--dob", help="Date of birth, YYYY-MM-DD (with --name)."),
                   out: Optional[Path] = typer.Option(None, "--out", help="A new or empty folder for the bundle "
                                                      "(default: ./subject-access-ID-DATE)."),
                   json_out: bool = JsonOpt) -> None:
    """Answer a subject access request: a bundle (JSON and a readable HTML page, with the photos) of
    everything held about the person, and every disclosure of it to partners. Audited."""
    home = open_home(ctx)
    if profile_id and (name or dob):
        raise InvalidInput("give a profile ID, or --name and --dob; not both")
    if profile_id:
        ids = [profile_id]
    elif name and dob:
        ids = subjectaccess.find(home.db, home.node_id, name, dob)
        if not ids:
            raise NotFound(f"no profile on this node of {name!r} born {dob} (names and aliases checked)")
    else:
        raise InvalidInput("give a profile ID, or --name \"First Last\" and --dob YYYY-MM-DD")
    folder = out or Path(f"subject-access-{ids[0] if len(ids) == 1 else 'matches'}-{today().isoformat()}")
    written = subjectaccess.write_bundle(home, ids, folder)
    if json_out:
        output.emit_json(written)
        return
    output.console.print(f"Subject access bundle for {len(ids)} profile(s) ({', '.join(ids)}), "
                         f"{written['disclosures']} disclosure(s) to partners:", highlight=False)
    for path in written["files"]:
        output.line(f"  {path}")
    output.line("Readable by you only. Check it before you send it: it names partners and their node IDs.")
