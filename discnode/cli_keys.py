"""`discnode key rotate|commit|show` and `discnode peer replace`: the node's key history (spec 4.6)
and a partner that lost both its keys (4.7). A thin layer over rotation, keys and peering."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, Optional

import typer

from . import keys, output
from .cli import JsonOpt, _print_peer_state, _run, app, open_home, peer_app
from .documents.succession import DEFAULT_GRACE, MAX_GRACE
from .errors import InvalidInput

key_app = typer.Typer(no_args_is_help=True, help="The node's signing key: rotation with a committed next key.")
app.add_typer(key_app, name="key")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_grace(text: str) -> dt.timedelta:
    """'72h', '7d', '30m', '0s': a grace period of 0 to 30 days."""
    match = re.fullmatch(r"\s*([0-9]{1,7})\s*([smhd])\s*", text or "")
    if not match:
        raise InvalidInput(f"--grace {text!r}: give a number and a unit, e.g. 72h, 7d, 30m or 0s")
    grace = dt.timedelta(seconds=int(match[1]) * _UNITS[match[2]])
    if grace > MAX_GRACE:
        raise InvalidInput(f"--grace must be at most {MAX_GRACE.days} days")
    return grace


def _safe_advice(path: str) -> str:
    return (f"The NEXT key is in {path}. Move it to the safe now (a USB stick kept there, or a printed "
            "copy), then delete it from this machine. It is needed, once, for the next `discnode key "
            "rotate --next-key FILE`; without it a stolen current key cannot be replaced by a rotation.")


@key_app.command("rotate")
def key_rotate(ctx: typer.Context,
               next_key: Path = typer.Option(..., "--next-key", help="The committed next key, from the safe."),
               next_key_out: Optional[Path] = typer.Option(None, "--next-key-out",
                                                           help="Where to write the new next key (outside the "
                                                                "home; default: beside it)."),
               grace: str = typer.Option(f"{int(DEFAULT_GRACE.total_seconds() // 3600)}h", "--grace",
                                         help="How long partners still accept the old key (0s to 30d)."),
               json_out: bool = JsonOpt) -> None:
    """Make the committed next key current (the node ID stays), commit to a new next key, and tell
    partners (now, and while `serve` runs until each has it)."""
    from .peering import deliver_pending
    from .rotation import rotate

    period = parse_grace(grace)
    home = open_home(ctx)
    result = rotate(home, next_key, next_key_out, period)
    report = _run(deliver_pending(home))
    result["partners_told"] = report.sent
    if json_out:
        output.emit_json(result)
        return
    output.console.print(f"Rotated to key {result['seq']} of node {result['node_id']} (the ID is unchanged). "
                         f"Partners accept the old key until {result['grace_until']}.", highlight=False)
    output.console.print(f"Told {report.sent} partner(s) now; `discnode serve` tells the rest, and takes up "
                         "the new key by itself within 30 seconds.", highlight=False)
    output.console.print(_safe_advice(result["next_key_file"]), highlight=False)


@key_app.command("commit")
def key_commit(ctx: typer.Context,
               next_key_out: Optional[Path] = typer.Option(None, "--next-key-out",
                                                           help="Where to write the next key (outside the home; "
                                                                "default: beside it)."),
               json_out: bool = JsonOpt) -> None:
    """For a node made before key rotation: commit to a next key now (the node ID stays)."""
    from .peering import deliver_pending
    from .rotation import commit

    home = open_home(ctx)
    result = commit(home, next_key_out)
    result["partners_told"] = _run(deliver_pending(home)).sent
    if json_out:
        output.emit_json(result)
        return
    output.console.print(f"Node {result['node_id']} now commits to a next key.", highlight=False)
    output.console.print(_safe_advice(result["next_key_file"]), highlight=False)


@key_app.command("reset")
def key_reset(ctx: typer.Context,
              next_key_out: Optional[Path] = typer.Option(None, "--next-key-out",
                                                          help="Where to write the new next key (outside the "
                                                               "home; default: beside it)."),
              yes: bool = typer.Option(False, "--yes", help="Yes: the node gets a NEW ID."),
              json_out: bool = JsonOpt) -> None:
    """Both the current and the committed next key are lost: give this node a NEW ID (profiles kept,
    re-signed). Every partner must confirm it by phone and run `discnode peer replace`."""
    from .rotation import reset

    if not yes:
        raise InvalidInput("key reset gives this node a NEW node ID and every partner must confirm it by phone; "
                           "if you still have the next key, use `discnode key rotate --next-key FILE` instead. "
                           "To go ahead, add --yes")
    home = open_home(ctx)
    result = reset(home, next_key_out)
    if json_out:
        output.emit_json(result)
        return
    output.console.print(f"This node's new ID is [bold green]{result['node_id']}[/] (it was "
                         f"{result['old_node_id']}); {result['profiles']} profile(s) re-signed.")
    output.console.print(f"Restart `discnode serve`. Then phone each partner's administrator, read them the new "
                         f"ID, and ask them to run: discnode peer replace {result['old_node_id']} "
                         f"{output.safe(home.config.url)} --expect {result['node_id']} ; then accept their "
                         "offers (`discnode peer accept`).", highlight=False)
    output.console.print(_safe_advice(result["next_key_file"]), highlight=False)


@key_app.command("show")
def key_show(ctx: typer.Context, json_out: bool = JsonOpt) -> None:
    """This node's key history: each key, since when, and until when partners accept it."""
    home = open_home(ctx)
    periods = keys.periods(home.key_events())
    rows: list[dict[str, Any]] = [{"seq": p.seq, "public_key": _b64(p.public_key), "valid_from": p.valid_from,
                                   "valid_until": p.valid_until} for p in periods]
    if json_out:
        output.emit_json({"node_id": home.node_id, "keys": rows,
                          "next": home.key_events()[-1]["next"] if rows else None})
        return
    if not rows:
        output.console.print("This node has no key history (made before key rotation): run "
                             "`discnode key commit` to commit to a next key.", highlight=False)
        return
    output.table(f"Keys of node {home.node_id}", ["seq", "public key", "from", "accepted until"],
                 [[str(r["seq"]), r["public_key"], r["valid_from"], r["valid_until"] or "(current)"] for r in rows])


def _b64(key: bytes) -> str:
    from .identity import b64u
    return b64u(key)


@peer_app.command("replace")
def peer_replace(ctx: typer.Context,
                 old_id: str = typer.Argument(..., help="The partner's old node ID (its keys are lost)."),
                 url: str = typer.Argument(..., help="The new node's https:// URL."),
                 expect: str = typer.Option(..., "--expect", help="The new node ID, confirmed by phone."),
                 json_out: bool = JsonOpt) -> None:
    """A partner lost both its keys and made a new node: revoke the old ID, keep its history
    attached to the new one, and offer the new node the same terms (it must accept)."""
    from .peering import replace_peer

    result = _run(replace_peer(open_home(ctx), old_id, url, expect))
    if json_out:
        output.emit_json(result)
        return
    output.console.print(f"{result['replaces']} is replaced by {result['node_id']}: the old agreement is revoked "
                         "here and its history is kept under the new ID.", highlight=False)
    _print_peer_state(result, False, "Offered the same terms to")
