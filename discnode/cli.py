"""The `discnode` command: a thin layer over the library. Tables for people, --json for scripts.

Every failure the user can cause is a DiscnodeError, printed as one line on stderr with a non-zero
exit code; nothing is written when a command fails.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from . import output, profiles, schemas, store
from .errors import DiscnodeError, InvalidInput
from .home import Config, Home, default_home, today
from .query import Query

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="A partnership's discnode: its own profiles, and consented sharing with peers.")
profile_app = typer.Typer(no_args_is_help=True, help="This node's offender profiles.")
image_app = typer.Typer(no_args_is_help=True, help="Profile images.")
app.add_typer(profile_app, name="profile")
app.add_typer(image_app, name="image")
peer_app = typer.Typer(no_args_is_help=True, help="Partner nodes and sharing agreements.")
app.add_typer(peer_app, name="peer")

JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts.")


def _home_path(ctx: typer.Context) -> Path:
    return ctx.obj["home"]


def open_home(ctx: typer.Context) -> Home:
    return Home.open(_home_path(ctx))


@app.callback()
def _root(ctx: typer.Context,
          home: Optional[Path] = typer.Option(None, "--home", envvar="DISCNODE_HOME",
                                              help="The node's home folder.", show_default=False)) -> None:
    ctx.obj = {"home": home or default_home()}


def _codes_help(name: str) -> str:
    return "One of: " + ", ".join(schemas.codes(name))


# The search filters, shared by `profile list` (this node) and `search` (the Dataview).
TEXT_ARG = typer.Argument(None, help="Words to find in names, aliases, marks and notes.")
GENDER_OPT = typer.Option([], "--gender", help=_codes_help("gender"))
ETHNICITY_OPT = typer.Option([], "--ethnicity", help=_codes_help("ethnicity"))
BUILD_OPT = typer.Option([], "--build", help=_codes_help("build"))
STATUS_OPT = typer.Option([], "--status", help=_codes_help("status"))
TAG_OPT = typer.Option([], "--tag", help=_codes_help("offence_tag"))
SORT_OPT = typer.Option("name", "--sort", help=_codes_help("sort"))
DESC_OPT = typer.Option(False, "--desc", help="Reverse order.")
LIMIT_OPT = typer.Option(50, "--limit", help="Rows per page (1-200).")


# --- node ------------------------------------------------------------------------------------


@app.command()
def init(ctx: typer.Context,
         name: str = typer.Option(..., "--name", help="The partnership's name, as peers will see it."),
         host: str = typer.Option("127.0.0.1", help="Address to listen on."),
         port: int = typer.Option(8443, help="HTTPS port for the peer API."),
         public_url: str = typer.Option("", help="URL peers should use, if not https://HOST:PORT."),
         json_out: bool = JsonOpt) -> None:
    """Create this partnership's node: identity key, TLS certificate, database."""
    home = Home.create(_home_path(ctx), Config(name=name, host=host, port=port, public_url=public_url))
    if json_out:
        output.emit_json(home.summary())
    else:
        output.console.print(f"Created node [bold]{name}[/] in {home.path}")
        output.console.print(f"Node ID: [bold green]{home.node_id}[/]")
        output.console.print("Give this ID to partner administrators by phone or in person; "
                             "they check it when they add you.")


@app.command("id")
def show_id(ctx: typer.Context, json_out: bool = JsonOpt) -> None:
    """This node's ID, name, public key, TLS fingerprint and URL."""
    info = open_home(ctx).summary()
    if json_out:
        output.emit_json(info)
    else:
        output.fields("This node", info.items())


# --- profiles --------------------------------------------------------------------------------


def _profile_fields(**opts: Any) -> dict[str, Any]:
    """CLI options to profile fields, dropping the ones not given."""
    out: dict[str, Any] = {}
    for key, value in opts.items():
        if value is None or value == []:
            continue
        out[key] = value
    return out


def _print_profile(record: dict[str, Any], json_out: bool) -> None:
    if json_out:
        output.emit_json(record)
    else:
        shown = {k: v for k, v in record.items() if k != "sig"}
        output.fields(f"Profile {record['id']}", shown.items())


@profile_app.command("add")
def profile_add(
    ctx: typer.Context,
    first_name: str = typer.Option("", help="First name (may be empty for ID-sought)."),
    last_name: str = typer.Option("", help="Last name (may be empty for ID-sought)."),
    gender: str = typer.Option("unknown", help=_codes_help("gender")),
    ethnicity: str = typer.Option("IC9", help=_codes_help("ethnicity")),
    build: str = typer.Option("unknown", help=_codes_help("build")),
    dob: Optional[str] = typer.Option(None, help="Date of birth, YYYY-MM-DD."),
    age_min: Optional[int] = typer.Option(None, help="Approximate age, lower bound (unidentified)."),
    age_max: Optional[int] = typer.Option(None, help="Approximate age, upper bound (unidentified)."),
    height_cm: Optional[int] = typer.Option(None, help="Height in centimetres."),
    alias: list[str] = typer.Option([], "--alias", help="Another name used; repeat for more."),
    tag: list[str] = typer.Option([], "--tag", help=_codes_help("offence_tag")),
    marks: Optional[str] = typer.Option(None, help="Distinguishing marks (scars, tattoos)."),
    notes: Optional[str] = typer.Option(None, help="Free-text notes."),
    last_seen: Optional[str] = typer.Option(None, help="Date last seen, YYYY-MM-DD."),
    review_by: Optional[str] = typer.Option(None, help="Retention review date (default: a year from now)."),
    image: list[Path] = typer.Option([], "--image", help="Photo (JPEG, PNG or WebP); the first is primary."),
    id_sought: bool = typer.Option(False, "--id-sought", help="Not yet identified."),
    local_only: bool = typer.Option(False, "--local-only", help="Never share this profile with any peer."),
    json_out: bool = JsonOpt,
) -> None:
    """Add a profile."""
    fields = _profile_fields(first_name=first_name, last_name=last_name, gender=gender, ethnicity=ethnicity,
                             build=build, dob=dob, age_min=age_min, age_max=age_max, height_cm=height_cm,
                             aliases=alias, tags=tag, marks=marks, notes=notes, last_seen=last_seen,
                             review_by=review_by)
    fields["status"] = "id-sought" if id_sought else "identified"
    fields["local_only"] = local_only
    record = profiles.add(open_home(ctx), fields, image)
    _print_profile(record, json_out)


@profile_app.command("show")
def profile_show(ctx: typer.Context, profile_id: str = typer.Argument(..., help="ID, or NODE_ID:ID for a peer's."),
                 save_images: Optional[Path] = typer.Option(None, help="Save the profile's images here."),
                 json_out: bool = JsonOpt) -> None:
    """Show one profile in full (a peer's too, as NODE_ID:PROFILE_ID)."""
    from . import audit

    home = open_home(ctx)
    if ":" in profile_id:
        from .dataview import fetch_profile
        record = _run(fetch_profile(home, profile_id, save_images, client=_daemon_client()))
        audit.append(home.db, "viewed-peer-profile", record["origin"], id=record["id"],
                     saved_images=str(save_images) if save_images else None)
    else:
        record = profiles.show(home, profile_id)
        if save_images:
            from .images import read
            save_images.mkdir(parents=True, exist_ok=True)
            from .untrusted import file_in
            for sha in record["images"]:
                file_in(save_images, f"{sha}.jpg").write_bytes(read(home.images_root, sha, thumb=False))
            audit.append(home.db, "exported-images", "", id=record["id"], to=str(save_images),
                         count=len(record["images"]))
    _print_profile(record, json_out)


@profile_app.command("list")
def profile_list(
    ctx: typer.Context,
    text: Optional[str] = TEXT_ARG,
    gender: list[str] = GENDER_OPT,
    ethnicity: list[str] = ETHNICITY_OPT,
    build: list[str] = BUILD_OPT,
    status: list[str] = STATUS_OPT,
    tag: list[str] = TAG_OPT,
    sort: str = SORT_OPT,
    desc: bool = DESC_OPT,
    limit: int = LIMIT_OPT,
    json_out: bool = JsonOpt,
) -> None:
    """List and search this node's own profiles."""
    home = open_home(ctx)
    query = Query(text=text, gender=tuple(gender), ethnicity=tuple(ethnicity), build=tuple(build),
                  status=tuple(status), tags=tuple(tag), sort=sort, desc=desc, limit=limit).checked()
    rows = store.search(home.db, query, today())
    if json_out:
        output.emit_json(rows)
    else:
        output.table(f"{home.config.name}: {len(rows)} profile(s)", output.profile_columns(),
                     (output.profile_row(r) for r in rows), nowrap=("id", "last seen"))


@profile_app.command("edit")
def profile_edit(
    ctx: typer.Context,
    profile_id: str = typer.Argument(...),
    first_name: Optional[str] = typer.Option(None), last_name: Optional[str] = typer.Option(None),
    gender: Optional[str] = typer.Option(None, help=_codes_help("gender")),
    ethnicity: Optional[str] = typer.Option(None, help=_codes_help("ethnicity")),
    build: Optional[str] = typer.Option(None, help=_codes_help("build")),
    status: Optional[str] = typer.Option(None, help=_codes_help("status")),
    dob: Optional[str] = typer.Option(None), height_cm: Optional[int] = typer.Option(None),
    marks: Optional[str] = typer.Option(None), notes: Optional[str] = typer.Option(None),
    last_seen: Optional[str] = typer.Option(None), review_by: Optional[str] = typer.Option(None),
    add_alias: list[str] = typer.Option([], help="Add an alias."),
    add_tag: list[str] = typer.Option([], help="Add an offence tag."),
    remove_tag: list[str] = typer.Option([], help="Remove an offence tag."),
    incident: list[str] = typer.Option([], help="Add an incident: 'YYYY-MM-DD|place|type|summary'."),
    exclusion: Optional[str] = typer.Option(None, help="Set the exclusion notice: 'FROM|UNTIL|where', or '' to clear."),
    local_only: Optional[bool] = typer.Option(None, "--local-only/--shared", help="Never share / share."),
    json_out: bool = JsonOpt,
) -> None:
    """Change a profile; only the options given change."""
    home = open_home(ctx)
    current = store.get_profile(home.db, profile_id)
    changes = _profile_fields(first_name=first_name, last_name=last_name, gender=gender, ethnicity=ethnicity,
                              build=build, status=status, dob=dob, height_cm=height_cm, marks=marks,
                              notes=notes, last_seen=last_seen, review_by=review_by, local_only=local_only)
    if add_alias:
        changes["aliases"] = current["aliases"] + list(add_alias)
    if add_tag or remove_tag:
        tags = [t for t in current["tags"] if t not in remove_tag]
        changes["tags"] = tags + [t for t in add_tag if t not in tags]
    if incident:
        added = []
        for text in incident:
            parts = text.split("|")
            if len(parts) != 4:
                raise InvalidInput(f"incident {text!r}: expected 'YYYY-MM-DD|place|type|summary'")
            added.append(dict(zip(("date", "place", "type", "summary"), (p.strip() for p in parts))))
        changes["incidents"] = current["incidents"] + added
    if exclusion is not None:
        if exclusion.strip() == "":
            changes["exclusion"] = None
        else:
            parts = exclusion.split("|")
            if len(parts) != 3:
                raise InvalidInput(f"exclusion {exclusion!r}: expected 'FROM|UNTIL|where'")
            changes["exclusion"] = dict(zip(("from", "until", "where"), (p.strip() for p in parts)))
    if not changes:
        raise InvalidInput("nothing to change: give at least one option")
    _print_profile(profiles.edit(home, profile_id, changes), json_out)


@profile_app.command("delete")
def profile_delete(ctx: typer.Context, profile_id: str = typer.Argument(...), json_out: bool = JsonOpt) -> None:
    """Delete a profile and its images."""
    profiles.delete(open_home(ctx), profile_id)
    if json_out:
        output.emit_json({"deleted": profile_id})
    else:
        output.console.print(f"Deleted profile {profile_id}")


@profile_app.command("import")
def profile_import(ctx: typer.Context, file: Path = typer.Argument(..., help="A .csv or .json file."),
                   json_out: bool = JsonOpt) -> None:
    """Import profiles from CSV or JSON: every row, or none if any row is bad."""
    from rich.progress import Progress

    home = open_home(ctx)
    with Progress(console=output.err_console, transient=True, disable=json_out) as progress:
        task = progress.add_task("validating and importing", total=None)
        n = profiles.import_file(home, file, on_each=lambda: progress.advance(task),
                                 on_total=lambda total: progress.update(task, total=total))
    if json_out:
        output.emit_json({"imported": n})
    else:
        output.console.print(f"Imported {n} profile(s) from {file}")


@image_app.command("add")
def image_add(ctx: typer.Context, profile_id: str = typer.Argument(...), file: Path = typer.Argument(...),
              primary: bool = typer.Option(False, "--primary", help="Make it the profile's primary image."),
              json_out: bool = JsonOpt) -> None:
    """Add a photo to a profile (JPEG, PNG or WebP; metadata is stripped)."""
    record = profiles.add_image(open_home(ctx), profile_id, file, primary=primary)
    if json_out:
        output.emit_json(record)
    else:
        output.console.print(f"Added image to {profile_id}; primary image {record['image'][:12]}")


# --- daemon, peers, audit -------------------------------------------------------------------


@app.command()
def serve(ctx: typer.Context,
          rate_limit: float = typer.Option(200.0, help="Requests per second allowed per peer."),
          advertise: bool = typer.Option(True, "--advertise/--no-advertise",
                                         help="Announce this node on the local network (mDNS)."),
          verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more."),
          ui_port: int = typer.Option(0, "--ui-port", help="Port of the web Dataview on 127.0.0.1 (0: any free one).")
          ) -> None:
    """Run the node: the HTTPS peer API (and mDNS advertisement) until Ctrl-C or SIGTERM."""
    from . import daemon

    if rate_limit <= 0:
        raise InvalidInput("--rate-limit must be more than 0")
    if not 0 <= ui_port < 65536:
        raise InvalidInput("--ui-port must be 0 to 65535")
    home = open_home(ctx)  # a missing or broken home is reported here, before anything starts
    home.close()
    daemon.exec_daemon(home.path, rate_limit=rate_limit, advertise=advertise, verbose=verbose, ui_port=ui_port)
    daemon.serve(home.path, rate_limit=rate_limit, advertise=advertise, verbose=verbose,
                 ui_port=ui_port)  # where exec is unavailable


@app.command()
def ui(ctx: typer.Context,
       open_browser: bool = typer.Option(False, "--open", help="Open it in this machine's web browser."),
       json_out: bool = JsonOpt) -> None:
    """The web Dataview: print a one-time login URL for it (the node must be running: `discnode serve`)."""
    from .fastpath import request

    home = open_home(ctx)
    reply = request(home.path, "ui-login")
    if reply is None:
        raise DiscnodeError("the node is not running here; start it with `discnode serve`, then run this again")
    url = reply["url"]
    if json_out:
        output.emit_json({"url": url})
    else:
        output.console.print("Open this address in a browser on this machine (it works once, for 5 minutes):")
        output.console.print(url, highlight=False, soft_wrap=True)
    if open_browser:
        import webbrowser
        webbrowser.open(url)


def _daemon_client() -> Any:
    """The running daemon's warm peer client when this command runs inside it (forward.py), else None."""
    from .forward import bridged_client
    return bridged_client()


def _run(coro: Any) -> Any:
    import asyncio
    return asyncio.run(coro)


def _print_peer_state(result: dict[str, Any], json_out: bool, verb: str) -> None:
    if json_out:
        output.emit_json(result)
        return
    output.console.print(f"{verb} {result['name']} ({result['node_id']}): agreement is now "
                         f"[bold]{result['state']}[/]")
    from rich.markup import escape  # the reason quotes the peer's own words
    reason = escape(result.get("delivery_reason", ""))
    delivery = result.get("delivery", "delivered")
    if delivery == "waiting":
        output.console.print(f"The peer could not be told yet ({reason}); it will be told when it can be "
                             "(while `discnode serve` runs).", highlight=False)
    elif delivery == "refused":
        output.console.print(f"The peer REFUSED it ({reason}); it will not be sent again.", highlight=False)
    elif delivery == "dropped":
        output.console.print(f"The peer could not be told ({reason}); a node you never agreed with is "
                             "sent this once only, so it will not be sent again.", highlight=False)


@peer_app.command("add")
def peer_add(ctx: typer.Context,
             url: Optional[str] = typer.Argument(None, help="The peer's https:// URL."),
             expect: Optional[str] = typer.Option(None, "--expect",
                                                  help="The peer's node ID, as its administrator told you."),
             discovered: Optional[str] = typer.Option(None, "--discovered",
                                                      help="Add a node seen by `peer discover`, by node ID."),
             purpose: str = typer.Option("Prevention and detection of crime against member businesses",
                                         help="Why data is shared (part of the signed terms)."),
             share: list[str] = typer.Option(["profiles", "images"], "--share", help="profiles, images"),
             review_days: int = typer.Option(365, help="Days until the agreement must be reviewed."),
             json_out: bool = JsonOpt) -> None:
    """Check a partner node's identity, pin it, and send it a signed sharing offer."""
    from .consent import Terms
    from .peering import add_peer

    home = open_home(ctx)
    if discovered:
        from .discovery import browse
        from .identity import parse_node_id
        node_id = parse_node_id(discovered)
        seen = {n.node_id: n for n in _run(browse(2.0))}
        if node_id not in seen:
            raise InvalidInput(f"node {node_id} was not seen on the local network; try `discnode peer discover`")
        url, expect = url or seen[node_id].url, expect or node_id
    if not url or not expect:
        raise InvalidInput("give the peer's URL and --expect NODE_ID (or --discovered NODE_ID)")
    if not 1 <= review_days <= 3 * 365:
        raise InvalidInput("review-days must be 1 to 1095")
    terms = Terms.default(today(), review_days, purpose, share)
    _print_peer_state(_run(add_peer(home, url, expect, terms)), json_out, "Offered sharing to")


def _respond(ctx: typer.Context, node_id: str, action: str, json_out: bool, verb: str) -> None:
    from .consent import Action
    from .peering import respond

    _print_peer_state(_run(respond(open_home(ctx), node_id, Action(action))), json_out, verb)


@peer_app.command("accept")
def peer_accept(ctx: typer.Context, node_id: str = typer.Argument(...), json_out: bool = JsonOpt) -> None:
    """Accept a peer's offer. Check its node ID with its administrator first."""
    _respond(ctx, node_id, "accept", json_out, "Accepted")


@peer_app.command("reject")
def peer_reject(ctx: typer.Context, node_id: str = typer.Argument(...), json_out: bool = JsonOpt) -> None:
    """Reject a peer's offer."""
    _respond(ctx, node_id, "reject", json_out, "Rejected")


@peer_app.command("revoke")
def peer_revoke(ctx: typer.Context, node_id: str = typer.Argument(...), json_out: bool = JsonOpt) -> None:
    """Withdraw from an agreement (or an offer) at once."""
    _respond(ctx, node_id, "revoke", json_out, "Revoked")


@peer_app.command("refresh")
def peer_refresh(ctx: typer.Context, node_id: str = typer.Argument(...),
                 url: Optional[str] = typer.Option(None, help="A new address to fetch its descriptor from."),
                 json_out: bool = JsonOpt) -> None:
    """Fetch a peer's signed descriptor again and adopt a new address if it verifies."""
    from .peering import refresh

    peer = _run(refresh(open_home(ctx), node_id, url))
    info = {"node_id": peer.node_id, "name": peer.name, "url": peer.url}
    output.emit_json(info) if json_out else output.fields("Peer", info.items())


@peer_app.command("discover")
def peer_discover(ctx: typer.Context,
                  timeout: float = typer.Option(3.0, help="Seconds to listen."),
                  json_out: bool = JsonOpt) -> None:
    """Nodes announcing themselves on the local network (mDNS). Addresses only: check IDs by phone."""
    from .peering import discover

    if not 0.5 <= timeout <= 60:
        raise InvalidInput("timeout must be 0.5 to 60 seconds")
    rows = _run(discover(open_home(ctx), timeout))
    if json_out:
        output.emit_json(rows)
        return
    output.table("Nodes on this network", ("node id", "name", "url", "known", "state"),
                 ([r["node_id"], r["name"], r["url"], "yes" if r["known"] else "", r["state"]] for r in rows))
    output.console.print("Before adding one, confirm its node ID with its administrator: "
                         "discnode peer add --discovered NODE_ID")


@app.command()
def address(ctx: typer.Context,
            host: Optional[str] = typer.Option(None, help="New address to listen on."),
            port: Optional[int] = typer.Option(None, help="New HTTPS port."),
            public_url: Optional[str] = typer.Option(None, help="New URL for peers ('' for https://HOST:PORT)."),
            json_out: bool = JsonOpt) -> None:
    """Change where this node listens. Peers are sent the new signed descriptor when `serve` starts."""
    home = open_home(ctx)
    if host is None and port is None and public_url is None:
        raise InvalidInput("give --host, --port or --public-url")
    current = home.config
    config = Config(name=current.name, host=current.host if host is None else host,
                    port=current.port if port is None else port,
                    public_url=current.public_url if public_url is None else public_url).validated()
    home.write_config(config)
    from . import audit
    audit.append(home.db, "address-changed", "", url=config.url)
    info = {"node_id": home.node_id, "url": config.url}
    output.emit_json(info) if json_out else output.console.print(
        f"This node is now at {config.url}; restart `discnode serve` to tell its peers.")


@peer_app.command("list")
def peer_list(ctx: typer.Context, json_out: bool = JsonOpt) -> None:
    """Known peers and the state of each agreement, and the node IDs you expect an offer from."""
    from . import peers

    home = open_home(ctx)
    rows = peers.listing(home.db, home.node_id, today())
    if json_out:
        output.emit_json(rows)
    else:
        output.table("Peers", ("node id", "name", "url", "state", "last acted", "review by", "shares", "expected"),
                     ([r["node_id"], r["name"], r["url"], r["state"], r["last_actor"], r["review_by"],
                       ", ".join(r["share"]), "yes" if r["expected"] else ""] for r in rows))


@peer_app.command("expect")
def peer_expect(ctx: typer.Context,
                node_id: str = typer.Argument(..., help="The node ID its administrator gave you."),
                remove: bool = typer.Option(False, "--remove", help="No longer expect it."),
                json_out: bool = JsonOpt) -> None:
    """Expect an offer from this node ID: it always gets through, however many strangers offer."""
    from . import audit, peers
    from .identity import parse_node_id

    home = open_home(ctx)
    node_id = parse_node_id(node_id)
    if node_id == home.node_id:
        raise InvalidInput("that is this node's own ID")
    changed = peers.unexpect(home.db, node_id) if remove else peers.expect(home.db, node_id)
    if changed:
        audit.append(home.db, "peer-unexpected" if remove else "peer-expected", node_id)
    if json_out:
        output.emit_json({"node_id": node_id, "expected": not remove, "changed": changed})
    elif remove:
        output.console.print(f"No longer expecting {node_id}." if changed else f"{node_id} was not expected.")
    else:
        output.console.print(f"Expecting an offer from {node_id}: it will get through however many "
                             "strangers offer. Check its ID with its administrator before you accept.")


@app.command("audit")
def audit_cmd(ctx: typer.Context,
              verify: bool = typer.Option(False, "--verify", help="Check the hash chain, the checkpoints, and "
                                          "the heads partners witnessed."),
              checkpoint: bool = typer.Option(False, "--checkpoint", help="Sign the log's head now, keep it, and "
                                              "give it to every partner."),
              limit: int = typer.Option(50, help="How many of the latest entries to show."),
              peer: Optional[str] = typer.Option(None, help="Only entries about this node ID."),
              timeout: float = typer.Option(3.0, help="Seconds to wait for each partner (--verify, --checkpoint)."),
              json_out: bool = JsonOpt) -> None:
    """The access log: every peer request served or refused, every consent change."""
    from . import audit

    if verify and checkpoint:
        raise InvalidInput("give --verify or --checkpoint, not both")
    if not 0.1 <= timeout <= 60:
        raise InvalidInput("timeout must be 0.1 to 60 seconds")
    home = open_home(ctx)
    if checkpoint:
        _audit_checkpoint(home, timeout, json_out)
        return
    if verify:
        _audit_verify(home, timeout, json_out)
        return
    rows = audit.entries(home.db, limit=limit, peer=peer)
    if json_out:
        output.emit_json(rows)
    else:
        output.table("Audit log", ("seq", "time", "event", "peer", "detail"),
                     ([r["seq"], r["ts"], r["event"], r["peer"], _compact(r["detail"])] for r in rows))


def _audit_checkpoint(home: Home, timeout: float, json_out: bool) -> None:
    from . import witness
    from .client import PeerClient
    from .peering import deliver_pending

    doc = witness.checkpoint(home)
    waiting = {to for _, to, _ in witness.undelivered(home.db, home.node_id)}

    async def give() -> None:
        async with PeerClient(home.identity, timeout=timeout) as client:
            await deliver_pending(home, client)
    _run(give())
    taken = sorted(waiting - {to for _, to, _ in witness.undelivered(home.db, home.node_id)})
    if json_out:
        output.emit_json({"checkpoint": doc, "taken_by": taken, "partners": len(waiting)})
        return
    output.console.print(f"Checkpoint signed: {doc['entries']} entries, head {doc['head'][:16]}..., "
                         f"taken by {len(taken)} of {len(waiting)} partner(s).", highlight=False)
    if len(taken) < len(waiting):
        output.console.print("The others get it when they can be reached (while `discnode serve` runs).")


def _audit_verify(home: Home, timeout: float, json_out: bool) -> None:
    from . import witness

    report = _run(witness.verify(home, timeout=timeout))
    if json_out:
        output.emit_json(report.to_json())
    else:
        checked = [p for p in report.partners if p["status"] == "checked"]
        if report.ok:
            output.console.print(f"Audit log intact: {report.entries} entries, hash chain verified, "
                                 f"consistent with {report.checkpoints} checkpoint(s) and with the heads "
                                 f"{len(checked)} of {len(report.partners)} partner(s) witnessed.", highlight=False)
        for finding in report.findings:
            output.err_console.print(f"TAMPERED: {finding.message}", highlight=False, markup=False)
        for note in report.unchecked:
            output.console.print(f"Not checked: {_printable(note)}", highlight=False, markup=False)
    if not report.ok:
        reasons = ([report.chain_reason] if not report.chain_ok else []) + [f.message for f in report.findings]
        raise DiscnodeError(f"audit log is NOT intact: {reasons[0]}"
                            + (f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""))


@app.command()
def search(
    ctx: typer.Context,
    text: Optional[str] = TEXT_ARG,
    gender: list[str] = GENDER_OPT,
    ethnicity: list[str] = ETHNICITY_OPT,
    build: list[str] = BUILD_OPT,
    status: list[str] = STATUS_OPT,
    tag: list[str] = TAG_OPT,
    age_min: Optional[int] = typer.Option(None, help="At least this old (today)."),
    age_max: Optional[int] = typer.Option(None, help="At most this old (today)."),
    excluded: Optional[bool] = typer.Option(None, "--excluded/--not-excluded", help="Under a current exclusion."),
    partnership: list[str] = typer.Option([], "--partnership", help="Only these node IDs (repeatable)."),
    sort: str = SORT_OPT,
    desc: bool = DESC_OPT,
    limit: int = LIMIT_OPT,
    cursor: Optional[str] = typer.Option(None, help="Continue from a previous page's next cursor."),
    timeout: float = typer.Option(3.0, help="Seconds to wait for each peer."),
    contact_sheet: Optional[Path] = typer.Option(None, "--contact-sheet", help="Also draw a PNG grid of thumbnails."),
    all_pages: bool = typer.Option(False, "--all", help="Every match, not one page (each peer paged on its own)."),
    json_out: bool = JsonOpt,
) -> None:
    """Search the Dataview: this node's profiles and every consenting peer's, merged."""
    from .dataview import Page, walk
    from .dataview import search as federated_search

    if not 0.1 <= timeout <= 60:
        raise InvalidInput("timeout must be 0.1 to 60 seconds")
    if all_pages and cursor:
        raise InvalidInput("--all walks every page; it takes no --cursor")
    home = open_home(ctx)
    query = Query(text=text, gender=tuple(gender), ethnicity=tuple(ethnicity), build=tuple(build),
                  status=tuple(status), tags=tuple(tag), age_min=age_min, age_max=age_max, excluded=excluded,
                  sort=sort, desc=desc, limit=limit)
    client = _daemon_client()
    if all_pages:
        results, statuses = _run(walk(home, query, timeout=timeout, partnerships=partnership, client=client))
        page = Page(results, statuses, None, query)
    else:
        page = _run(federated_search(home, query, cursor=cursor, timeout=timeout, partnerships=partnership,
                                     client=client))
    if contact_sheet:
        if contact_sheet.suffix.lower() != ".png":
            raise InvalidInput("the contact sheet is a .png file")
        if page.results:
            from .contactsheet import render
            from .dataview import thumbnails
            render(page.results, _run(thumbnails(home, page.results, timeout)), contact_sheet)
    from . import audit
    audit.append(home.db, "search", "", query=query.to_wire(), results=len(page.results), all=all_pages,
                 contact_sheet=str(contact_sheet) if contact_sheet else None,
                 peers={p.node_id: p.status for p in page.peers})
    if json_out:
        output.emit_json(page.to_json())
        return
    print_page(home.config.name, page)
    if contact_sheet and page.results:
        output.console.print(f"Contact sheet: {contact_sheet}")


@app.command("level-two")
def level_two(ctx: typer.Context,
              min_partnerships: int = typer.Option(2, "--min-partnerships",
                                                   help="Known to at least this many partnerships."),
              timeout: float = typer.Option(3.0, help="Seconds to wait for each peer."),
              json_out: bool = JsonOpt) -> None:
    """Level Two: people known to several partnerships (same name or alias, and same date of birth)."""
    from . import audit
    from .leveltwo import sweep

    if not 2 <= min_partnerships <= 1000:
        raise InvalidInput("--min-partnerships must be 2 or more")
    if not 0.1 <= timeout <= 60:
        raise InvalidInput("timeout must be 0.1 to 60 seconds")
    home = open_home(ctx)
    found, statuses, looked_at = _run(sweep(home, min_partnerships, timeout))
    audit.append(home.db, "level-two", "", min_partnerships=min_partnerships, profiles=looked_at,
                 groups=len(found), peers={p.node_id: p.status for p in statuses})
    if json_out:
        output.emit_json({"groups": [g.to_json() for g in found], "profiles": looked_at,
                          "peers": [p.to_json() for p in statuses]})
        return
    output.table(f"Level Two: {len(found)} people known to {min_partnerships} or more partnerships "
                 f"({looked_at} identified profiles looked at)",
                 ("name", "born", "partnerships", "profiles (NODE_ID:PROFILE_ID)"),
                 ([g.name, g.dob, ", ".join(output.short_name(n) for n in g.partnerships),
                   " ".join(f"{p['origin']}:{p['id']}" for p in g.profiles)] for g in found),
                 nowrap=("born",))
    print_statuses(statuses)


def print_page(title: str, page: Any) -> None:
    output.table(f"Dataview of {title}: {len(page.results)} result(s)",
                 ("partnership", *output.profile_columns()),
                 ([output.short_name(r["origin_name"]), *output.profile_row(r)] for r in page.results),
                 nowrap=("id", "last seen", "partnership"))
    print_statuses(page.peers)
    if page.next_cursor:
        output.console.print(f"More: --cursor {page.next_cursor}", highlight=False)


def print_statuses(statuses: Any) -> None:
    for p in statuses:
        colour = "green" if p.status == "ok" else "red"
        detail = f" ({p.error})" if p.error else ""
        output.console.print(f"  [{colour}]{p.status:<11}[/] {p.name:<28} {p.count:>4} rows {p.ms:>6} ms{detail}",
                             highlight=False)


@app.command()
def demo(directory: Optional[Path] = typer.Option(None, "--dir", help="Keep the demo nodes in this new folder "
                                                 "(default: a temporary folder, removed afterwards)."),
         profiles_per_node: int = typer.Option(12, "--profiles", help="Synthetic profiles per partnership."),
         wait: bool = typer.Option(True, "--wait/--once", help="Keep the network running until Ctrl-C."),
         json_out: bool = JsonOpt) -> None:
    """Run the white paper's three-partnership network on this machine and show each Dataview."""
    from .demo import main as run_demo

    if not 1 <= profiles_per_node <= 500:
        raise InvalidInput("--profiles must be 1 to 500")
    summary = run_demo(directory, profiles_per_node, wait)
    if json_out:
        output.emit_json(summary)


def _printable(text: str) -> str:
    """Peer-supplied text (a partner's name in a message) without control characters (ESC...)."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _compact(detail: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in detail.items())


@functools.cache
def _command() -> Any:
    """The click command tree, built once per process: typer rebuilds it on every call, which the
    daemon, running forwarded commands one after another, would pay each time."""
    return typer.main.get_command(app)


def main(argv: list[str] | None = None) -> None:
    try:
        _command()(args=argv, prog_name="discnode")
    except DiscnodeError as exc:
        output.error(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        output.error("interrupted")
        sys.exit(130)
