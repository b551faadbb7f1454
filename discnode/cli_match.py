"""`discnode match` and `discnode reveal`: private matching with match-only partners (a thin layer
over matchask and match)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Optional

import typer

from . import audit, match, output, store
from .cli import JsonOpt, _run, app, open_home
from .errors import InvalidInput
from .matchask import Person, ask, reveal


def _people_from_csv(path: Path) -> list[Person]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from None
    people = []
    for n, row in enumerate(rows, start=2):
        try:
            people.append(Person(row["first_name"], row["last_name"], row["dob"]))
        except (KeyError, TypeError):
            raise InvalidInput(f"{path} line {n}: needs columns first_name, last_name, dob") from None
    return people


@app.command("match")
def match_cmd(ctx: typer.Context,
              first_name: Optional[str] = typer.Option(None, "--first-name"),
              last_name: Optional[str] = typer.Option(None, "--last-name"),
              dob: Optional[str] = typer.Option(None, "--dob", help="Date of birth, YYYY-MM-DD."),
              file: Optional[Path] = typer.Option(None, "--file", help="CSV with first_name,last_name,dob."),
              peer: Optional[str] = typer.Option(None, "--peer", help="Ask only this match-only partner."),
              json_out: bool = JsonOpt) -> None:
    """Ask match-only partners whether they know these people: hit (with a reference) or no-hit.
    Each name counts against each partner's daily quota; the partners never learn the names."""
    if file and (first_name or last_name or dob):
        raise InvalidInput("give --file, or --first-name, --last-name and --dob; not both")
    if file:
        people = _people_from_csv(file)
    elif first_name and last_name and dob:
        people = [Person(first_name, last_name, dob)]
    else:
        raise InvalidInput("give --first-name, --last-name and --dob, or --file names.csv")
    for person in people:
        person.key()  # every name and date checked before anything is sent
    partners = _run(ask(open_home(ctx), people, peer))
    if json_out:
        output.emit_json({"partners": partners})
        return
    rows = []
    for p in partners:
        if p["status"] != "ok":
            rows.append([p["name"], "", "", "error", p["error"]])
        for r in p["results"]:
            rows.append([p["name"], f"{r['first_name']} {r['last_name']}", r["dob"], r["result"],
                         f"{p['node_id']}:{r['ref']}" if r["ref"] else ""])
    output.table("Match", ("partner", "name", "dob", "result", "reference (discnode reveal ...)"), rows,
                 whole=("reference (discnode reveal ...)",))


@app.command("reveal")
def reveal_cmd(ctx: typer.Context,
               target: str = typer.Argument(..., help="NODE_ID:REF to ask for a hit's profile; or list, "
                                                      "allow REQUEST_ID, decline REQUEST_ID to answer partners."),
               request_id: Optional[str] = typer.Argument(None),
               json_out: bool = JsonOpt) -> None:
    """Ask a match-only partner to reveal the profile behind a hit, or (list, allow, decline) answer
    the reveal requests partners sent this node."""
    home = open_home(ctx)
    if target == "list":
        rows = match.reveals(home.db)
        for row in rows:
            row["names"] = [_own_name(home, p) for p in row["profiles"]]
        if json_out:
            output.emit_json({"requests": rows})
            return
        output.table("Reveal requests", ("request", "partner", "asked", "profiles", "state"),
                     [[r["id"], _peer_name(home, r["peer"]), r["asked"],
                       ", ".join(f"{p} {n}" for p, n in zip(r["profiles"], r["names"])), r["state"]]
                      for r in rows])
        return
    if target in ("allow", "decline"):
        if not request_id:
            raise InvalidInput(f"give the request ID: discnode reveal {target} REQUEST_ID")
        with store.write(home.db):
            decided = match.decide(home.db, request_id, target == "allow")
            audit.append(home.db, f"reveal-{'allowed' if target == 'allow' else 'declined'}", decided["peer"],
                         request=decided["id"], ref=decided["ref"], ids=decided["profiles"])
        if json_out:
            output.emit_json(decided)
        else:
            output.info(f"Reveal request {decided['id']} from {_peer_name(home, decided['peer'])}: "
                        f"{decided['state']}")
        return
    if request_id:
        raise InvalidInput("give NODE_ID:REF alone")
    result = _run(reveal(home, target))
    if json_out:
        output.emit_json(result)
        return
    output.info(f"Reveal request {result['request']} to {result['name']}: {result['state']}")
    if result["records"]:
        output.table("Revealed", output.profile_columns(), [output.profile_row(r) for r in result["records"]])


def _peer_name(home: Any, node_id: str) -> str:
    from . import peers
    try:
        return f"{peers.get(home.db, node_id).name} ({node_id})"
    except Exception:  # noqa: BLE001 - a name is a courtesy here
        return node_id


def _own_name(home: Any, profile_id: str) -> str:
    try:
        record = store.get_profile(home.db, profile_id)
    except Exception:  # noqa: BLE001 - deleted since it was asked about
        return "(deleted)"
    return f"{record.get('first_name', '')} {record.get('last_name', '')}".strip()
