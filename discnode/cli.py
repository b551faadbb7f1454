"""The `discnode` command: a thin layer over the library. Tables for people, --json for scripts.

Every failure the user can cause is a DiscnodeError, printed as one line on stderr with a non-zero
exit code; nothing is written when a command fails.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, NoReturn, Optional, Sequence

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
proposal_app = typer.Typer(no_args_is_help=True, help="Proposals identifying ID-sought profiles.")
app.add_typer(proposal_app, name="proposal")
link_app = typer.Typer(no_args_is_help=True, help="Same-person links between your profiles and partners'.")
app.add_typer(link_app, name="link")

JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts.")


def _home_path(ctx: typer.Context) -> Path:
    return ctx.obj["home"]


def open_home(ctx: typer.Context) -> Home:
    return Home.open(_home_path(ctx))


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version
        from . import PROTOCOL_VERSION
        output.line(f"discnode {version('discnode')} (protocol {PROTOCOL_VERSION})")
        raise typer.Exit()


@app.callback()
def _root(ctx: typer.Context,
          home: Optional[Path] = typer.Option(None, "--home", envvar="DISCNODE_HOME",
                                              help="The node's home folder.", show_default=False),
          version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
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
AGE_MIN_OPT = typer.Option(None, help="At least this old (today).")
AGE_MAX_OPT = typer.Option(None, help="At most this old (today).")
EXCLUDED_OPT = typer.Option(None, "--excluded/--not-excluded", help="Under a current exclusion.")
PARTNERSHIP_OPT = typer.Option([], "--partnership", help="Only these partnerships, by node ID or name (repeatable).")


# --- node ------------------------------------------------------------------------------------


@app.command()
def init(ctx: typer.Context,
         name: str = typer.Option(..., "--name", help="The partnership's name, as peers will see it."),
         host: str = typer.Option("127.0.0.1", help="Address to listen on."),
         port: int = typer.Option(8443, help="HTTPS port for the peer API."),
         public_url: str = typer.Option("", help="URL peers should use, if not https://HOST:PORT."),
         announce: bool = typer.Option(False, "--announce", help="Announce the node on the local network (mDNS) "
                                                                 "while it serves, on the interfaces it listens on."),
         next_key_out: Optional[Path] = typer.Option(None, "--next-key-out",
                                                     help="Where to write the committed next key, for the safe "
                                                          "(outside the home; default: beside it)."),
         encrypt_key: bool = typer.Option(False, "--encrypt-key", help="Keep the identity key encrypted with a "
                                          "passphrase, asked for (twice) now and at every start."),
         passphrase_file: Optional[Path] = typer.Option(None, "--passphrase-file", help="With --encrypt-key: "
                                                        "read the passphrase from this file's first line."),
         json_out: bool = JsonOpt) -> None:
    """Create this partnership's node: identity key, committed next key, TLS certificate, database."""
    passphrase = None
    if passphrase_file is not None and not encrypt_key:
        raise InvalidInput("--passphrase-file goes with --encrypt-key")
    if encrypt_key:
        from . import keyfile
        passphrase = keyfile.new_passphrase(passphrase_file, "the identity key")
    home = Home.create(_home_path(ctx), Config(name=name, host=host, port=port, public_url=public_url,
                                               announce=announce), next_key_out, passphrase=passphrase)
    if json_out:
        output.emit_json({**home.summary(), "next_key_file": str(home.next_key_file)})
    else:
        output.console.print(f"Created node [bold]{output.safe(name)}[/] in {output.safe(home.path)}")
        output.console.print(f"Node ID: [bold green]{home.node_id}[/]")
        output.console.print("Give this ID to partner administrators by phone or in person; "
                             "they check it when they add you.")
        output.console.print(f"The NEXT key is in {output.safe(home.next_key_file)}. Move it to the safe now (a "
                             "USB stick kept there, or a printed copy), then delete it from this machine: it is "
                             "needed, once, for `discnode key rotate --next-key FILE`, and without it a stolen "
                             "key cannot be replaced by a rotation (README, section 7).", highlight=False)


@app.command("id")
def show_id(ctx: typer.Context, json_out: bool = JsonOpt) -> None:
    """This node's ID, name, public key, TLS fingerprint and URL."""
    info = open_home(ctx).summary()
    if json_out:
        output.emit_json(info)
    else:
        labels = {"node_id": "node ID", "public_key": "public key", "tls_fingerprint": "TLS cert", "url": "URL"}
        output.fields("This node", ((labels.get(k, k), v) for k, v in info.items()))


# --- profiles --------------------------------------------------------------------------------


def _profile_fields(**opts: Any) -> dict[str, Any]:
    """CLI options to profile fields, dropping the ones not given."""
    out: dict[str, Any] = {}
    for key, value in opts.items():
        if value is None or value == []:
            continue
        out[key] = value
    return out


def _print_profile(record: dict[str, Any], json_out: bool, saved: list[str] | None = None) -> None:
    if json_out:
        output.emit_json(record if saved is None else {**record, "saved_images": saved})
    else:
        output.fields(f"Profile {record['id']}", output.profile_fields(record, saved))
        for path in saved or ():
            output.line(f"Saved {path}")  # whole, to copy: not folded into the table


GRADING_OPT = typer.Option(
    None, "--grading", help="3x5x2 grading SOURCE/INTELLIGENCE/HANDLING: source 1-3, intelligence A-E, handling P "
                            "(sharing permitted) or C:CONDITION,... (shared only with partners accepting every "
                            "condition). Default for a new profile: 2/C/P.")
MINOR_REASON_OPT = typer.Option(None, "--minor-reason", help="Why the profile of someone under 18 is held: "
                                                             "required for them (reviewed within 6 months).")


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
    incident: list[str] = typer.Option([], "--incident", help="An incident: 'YYYY-MM-DD|place|type|summary', "
                                                              "optionally '|GRADING'; repeat for more."),
    grading: Optional[str] = GRADING_OPT,
    minor_reason: Optional[str] = MINOR_REASON_OPT,
    json_out: bool = JsonOpt,
) -> None:
    """Add a profile."""
    fields = _profile_fields(first_name=first_name, last_name=last_name, gender=gender, ethnicity=ethnicity,
                             build=build, dob=dob, age_min=age_min, age_max=age_max, height_cm=height_cm,
                             aliases=alias, tags=tag, marks=marks, notes=notes, last_seen=last_seen,
                             review_by=review_by, grading=grading, minor_reason=minor_reason)
    if incident:
        fields["incidents"] = [profiles.parse_incident(text) for text in incident]
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
    from .exports import write_private

    home = open_home(ctx)
    saved: list[str] | None = None
    if ":" in profile_id:
        from .dataview import fetch_profile
        record = _run(fetch_profile(home, profile_id, save_images, client=_daemon_client()))
        saved = record.pop("saved_images", None)
        audit.append(home.db, "viewed-peer-profile", record["origin"], id=record["id"],
                     saved_images=str(save_images) if save_images else None)
        from . import links
        same = links.linked_to(home.db, home.node_id, record["origin"], record["id"])
        if same:  # this node's own confirmed links: shown to its administrator, never served
            record = {**record, "links": same}
    else:
        from . import sightings
        record = profiles.show(home, profile_id)
        seen = sightings.of_profile(home.db, home.node_id, profile_id)
        if seen:  # partners' reports, for this node's administrator only: never served
            record = {**record, "sightings": [{k: v[k] for k in ("id", "from", "at", "when", "created")} for v in seen]}
        from . import links
        same = links.linked_to(home.db, home.node_id, home.node_id, profile_id)
        if same:
            record = {**record, "links": same}
        if save_images:
            from .images import read
            from .untrusted import file_in
            saved = [str(write_private(file_in(save_images, f"{sha}.jpg"), read(home.images_root, sha, thumb=False)))
                     for sha in record["images"]]
            audit.append(home.db, "exported-images", "", id=record["id"], to=str(save_images),
                         count=len(record["images"]))
    _print_profile(record, json_out, saved)


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
                     (output.profile_row(r) for r in rows), nowrap=("last seen", "born"), whole=("id",),
                     words=("tags",))


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
    remove_alias: list[str] = typer.Option([], help="Remove an alias."),
    rename_alias: list[str] = typer.Option([], help="Correct an alias: 'OLD|NEW'."),
    incident: list[str] = typer.Option([], help="Add an incident: 'YYYY-MM-DD|place|type|summary', optionally "
                                                "'|GRADING' (e.g. |1/B/P)."),
    edit_incident: list[str] = typer.Option([], help="Replace incident N (from 1, in the order `profile show` lists them): "
                                                    "'N|YYYY-MM-DD|place|type|summary'."),
    remove_incident: list[int] = typer.Option([], help="Remove incident N (from 1, in the order `profile show` lists them)."),
    exclusion: Optional[str] = typer.Option(None, help="Set the exclusion notice: 'FROM|UNTIL|where', or '' to clear."),
    remove_exclusion: bool = typer.Option(False, "--remove-exclusion", help="Remove the exclusion notice."),
    local_only: Optional[bool] = typer.Option(None, "--local-only/--shared", help="Never share / share."),
    grading: Optional[str] = GRADING_OPT,
    minor_reason: Optional[str] = MINOR_REASON_OPT,
    reason: str = typer.Option("", help="Why (recorded in the audit log when identifying someone)."),
    json_out: bool = JsonOpt,
) -> None:
    """Change a profile; only the options given change. `--status identified` with names (and
    --dob) identifies an ID-sought person in one step, keeping images and history."""
    home = open_home(ctx)
    current = store.get_profile(home.db, profile_id)
    changes = _profile_fields(first_name=first_name, last_name=last_name, gender=gender, ethnicity=ethnicity,
                              build=build, status=status, dob=dob, height_cm=height_cm, marks=marks,
                              notes=notes, last_seen=last_seen, review_by=review_by, local_only=local_only,
                              grading=grading, minor_reason=minor_reason)
    if add_tag or remove_tag:
        tags = [t for t in current["tags"] if t not in remove_tag]
        changes["tags"] = tags + [t for t in add_tag if t not in tags]
    replaced = []
    for text in edit_incident:
        number, _, rest = text.partition("|")
        if not number.strip().isdigit():
            raise InvalidInput(f"edit-incident {text!r}: expected 'N|YYYY-MM-DD|place|type|summary'")
        replaced.append((int(number), _incident(rest)))
    renamed = []
    for text in rename_alias:
        old, sep, new = text.partition("|")
        if not sep or not old.strip() or not new.strip():
            raise InvalidInput(f"rename-alias {text!r}: expected 'OLD|NEW'")
        renamed.append((old.strip(), new.strip()))
    if exclusion is not None and remove_exclusion:
        raise InvalidInput("give --exclusion or --remove-exclusion, not both")
    changes.update(profiles.revise(
        current, add_aliases=add_alias, remove_aliases=remove_alias, rename_aliases=renamed,
        add_incidents=[_incident(text) for text in incident], replace_incidents=replaced,
        remove_incidents=remove_incident, remove_exclusion=remove_exclusion))
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
    if changes.get("status") == "identified" and current["status"] == "id-sought":
        names = {k: changes.pop(k, current[k]) for k in ("first_name", "last_name")}
        record = profiles.identify(home, profile_id, **names, dob=changes.pop("dob", None),
                                   changes={k: v for k, v in changes.items() if k != "status"}, reason=reason)
    else:
        record = profiles.edit(home, profile_id, changes)
    from . import notices
    if notices.undelivered(home.db, home.node_id):  # a correction for partners that received it
        _notify_now(home, profile_id)
    _print_profile(record, json_out)


def _incident(text: str) -> dict[str, Any]:
    return profiles.parse_incident(text)


_DAYS_OPT = typer.Option(None, "--days", help="Listing: how many days ahead counts as near (default 30). "
                                              "Extending: days from today to the next review (default 365).")


def _print_review(items: list[Any], json_out: bool, title: str) -> None:
    if json_out:
        output.emit_json([i.to_json() for i in items])
        return
    output.table(title, ("kind", "ref", "due", "what"),
                 ([i.kind.value, i.ref, i.due or "", ("OVERDUE: " if i.overdue else "") + i.summary]
                  for i in items), nowrap=("kind", "ref", "due"))
    # The command for each kind once, below the table, so that rows stay one line at 80 columns.
    from .review import HINTS
    for kind in dict.fromkeys(i.kind for i in items):
        output.console.print(f"  {kind.value}: {HINTS[kind]}", highlight=False, soft_wrap=True)


@profile_app.command("review")
def profile_review(ctx: typer.Context,
                   profile_id: Optional[str] = typer.Argument(None, help="A profile to mark as reviewed."),
                   due: bool = typer.Option(False, "--due", help="List profiles past or near their review date "
                                                                 "(what it does without a profile ID)."),
                   days: Optional[int] = _DAYS_OPT,
                   reason: str = typer.Option("", help="Why the profile is kept (audited); needed to extend."),
                   json_out: bool = JsonOpt) -> None:
    """Profiles past their review-by date (no longer shared) or near it; or extend one after review."""
    from . import review

    home = open_home(ctx)
    if profile_id is None or due:
        if profile_id is not None or reason:
            raise InvalidInput("--due lists profiles; to extend one, give its ID and --reason without --due")
        ahead = review.DEFAULT_DAYS if days is None else days
        if not 0 <= ahead <= review.MAX_DAYS:
            raise InvalidInput(f"--days must be 0 to {review.MAX_DAYS}")
        items = review.queue(home.db, home.node_id, today(), days=ahead,
                             kinds=[review.Kind.PROFILE, review.Kind.RETENTION],
                             retention_months=home.config.retention_months)
        _print_review(items, json_out, f"Profiles past or within {ahead} days of their review date: {len(items)}")
        return
    extend = profiles.DEFAULT_REVIEW_DAYS if days is None else days
    if not 1 <= extend <= 3 * 365:
        raise InvalidInput("--days must be 1 to 1095")
    import datetime as dt
    record = profiles.set_review_by(home, profile_id, today() + dt.timedelta(days=extend), reason)
    if json_out:
        output.emit_json(record)
    else:
        output.console.print(f"Reviewed {profile_id}: next review by {record['review_by']}"
                             + ("" if record["local_only"] else "; it is shared again with current partners"))


@app.command("review")
def review_cmd(ctx: typer.Context, days: Optional[int] = typer.Option(None, "--days",
                                                                      help="How many days ahead counts as near (default 30)."),
               json_out: bool = JsonOpt) -> None:
    """What needs you: profiles and agreements past or near review, offers to answer, undelivered documents."""
    from . import review

    ahead = review.DEFAULT_DAYS if days is None else days
    if not 0 <= ahead <= review.MAX_DAYS:
        raise InvalidInput(f"--days must be 0 to {review.MAX_DAYS}")
    home = open_home(ctx)
    items = review.queue(home.db, home.node_id, today(), days=ahead, retention_months=home.config.retention_months)
    _print_review(items, json_out, f"Review queue: {len(items)} item(s)")


@profile_app.command("delete")
def profile_delete(ctx: typer.Context, profile_id: str = typer.Argument(...),
                   yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask; needed when not at a terminal."),
                   json_out: bool = JsonOpt) -> None:
    """Delete a profile and its images, after asking (there is no undo)."""
    home = open_home(ctx)
    if not yes:
        record = profiles.show(home, profile_id)  # a missing profile is reported before any question
        if not sys.stdin.isatty():
            raise InvalidInput("profile delete asks for confirmation; not at a terminal, give --yes")
        name = f"{record['first_name']} {record['last_name']}".strip() or "ID sought"
        if not typer.confirm(f"Delete profile {profile_id} ({output.printable(name)}) and its "
                             f"{len(record['images'])} photo(s)? There is no undo", default=False):
            raise DiscnodeError("not deleted")
    recipients = profiles.delete(home, profile_id)
    report = _notify_now(home, profile_id) if recipients else {"recipients": [], "notified": [], "receipts": []}
    if json_out:
        output.emit_json({"deleted": profile_id, **report})
        return
    output.console.print(f"Deleted profile {output.safe(profile_id)}")
    _print_notified(home, report, "erasure")


def _notify_now(home: Home, profile_id: str) -> dict[str, list[str]]:
    """Deliver the notices about a profile now (peering.notify), and say where they stand: the
    partners told (recipients), those that took the notice, those that returned a receipt."""
    from . import notices
    from .peering import notify

    _run(notify(home, client=_daemon_client()))
    latest = {n["to"]: n for n in notices.sent_about(home.db, home.node_id, profile_id) if not n["superseded"]}
    return {"recipients": sorted(latest), "notified": sorted(p for p, n in latest.items() if n["delivered"]
                                                              and not n["refusal"]),
            "receipts": sorted(p for p, n in latest.items() if n["receipt"])}


def _print_notified(home: Home, report: dict[str, list[str]], kind: str) -> None:
    from . import peers

    if not report["recipients"]:
        output.console.print("No partner had received it: no notice to send.", highlight=False)
        return
    names = {p.node_id: p.name for p in peers.all_peers(home.db)}
    waiting = [names.get(p, p) for p in report["recipients"] if p not in report["receipts"]]
    output.console.print(
        f"Partners that received it, sent an {kind} notice: {len(report['recipients'])}; notified now: "
        f"{len(report['notified'])}; receipts returned: {len(report['receipts'])}", highlight=False)
    if waiting:
        output.console.print(output.safe("Receipts outstanding from: " + ", ".join(waiting)
                                         + " (`discnode serve` keeps delivering; see `discnode peer list`)"),
                             highlight=False)


@profile_app.command("import")
def profile_import(ctx: typer.Context, file: Path = typer.Argument(..., help="A .csv or .json file (columns: README)."),
                   json_out: bool = JsonOpt) -> None:
    """Import profiles from CSV or JSON: every row, or none if any row is bad. Rows with a `ref`
    update the profile imported with that ref; exact repeats are not added twice."""
    from rich.progress import Progress

    from .importer import import_file

    home = open_home(ctx)
    phases = {"reading": "reading the file", "checking": "checking rows", "writing": "writing"}
    try:
        with Progress(console=output.err_console, transient=True, disable=json_out) as progress:
            task = progress.add_task(phases["reading"], total=None)
            result = import_file(home, file, progress=lambda phase, done, total: progress.update(
                task, description=phases[phase], completed=done, total=total or None))
    except KeyboardInterrupt:
        output.err_console.print("Import stopped: nothing was written.")
        raise typer.Exit(130) from None
    if result.updated:  # corrections for the partners that received the old versions (notices.py)
        from . import notices
        from .peering import notify
        if notices.undelivered(home.db, home.node_id):
            _run(notify(home, client=_daemon_client()))
    if json_out:
        output.emit_json(result.to_json())
    else:
        output.console.print(f"Imported {result.added + result.updated} profile(s) from {output.safe(file)}: "
                             f"{result.added} new, {result.updated} updated, {result.unchanged} unchanged, "
                             f"{result.duplicates} repeated row(s) skipped, {result.images} image(s)")


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


@image_app.command("remove")
def image_remove(ctx: typer.Context, profile_id: str = typer.Argument(...),
                 image: str = typer.Argument(..., help="Its number (from 1, in the order added), or the start of its hash."),
                 json_out: bool = JsonOpt) -> None:
    """Remove a photo from a profile (if it was primary, the next one becomes primary)."""
    record = profiles.remove_image(open_home(ctx), profile_id, image)
    if json_out:
        output.emit_json(record)
    else:
        output.console.print(f"Removed image {image} from {profile_id}; primary image "
                             f"{(record['image'] or 'none')[:12]}")


@image_app.command("primary")
def image_primary(ctx: typer.Context, profile_id: str = typer.Argument(...),
                  image: str = typer.Argument(..., help="Its number (from 1, in the order added), or the start of its hash."),
                  json_out: bool = JsonOpt) -> None:
    """Choose the profile's primary photo (the one search results and contact sheets show)."""
    record = profiles.set_primary_image(open_home(ctx), profile_id, image)
    if json_out:
        output.emit_json(record)
    else:
        output.console.print(f"Primary image of {profile_id} is now {record['image'][:12]}")


# --- daemon, peers, audit -------------------------------------------------------------------


@app.command()
def serve(ctx: typer.Context,
          rate_limit: float = typer.Option(200.0, help="Requests per second allowed per peer."),
          advertise: Optional[bool] = typer.Option(None, "--advertise/--no-advertise", show_default=False,
                                                   help="Announce this node on the local network (mDNS) this "
                                                        "time, or not [default: `announce` in config.toml]."),
          verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more."),
          ui_port: int = typer.Option(0, "--ui-port", help="Port of the web Dataview on 127.0.0.1 (0: any free one)."),
          passphrase_file: Optional[Path] = typer.Option(
              None, "--passphrase-file", help="If the identity key is encrypted: its passphrase, first line of "
              "this file (else $CREDENTIALS_DIRECTORY/discnode-passphrase, or a prompt).")) -> None:
    """Run the node: the HTTPS peer API (and mDNS advertisement) until Ctrl-C or SIGTERM."""
    from . import daemon, keyfile

    if rate_limit <= 0:
        raise InvalidInput("--rate-limit must be more than 0")
    if not 0 <= ui_port < 65536:
        raise InvalidInput("--ui-port must be 0 to 65535")
    keyfile.use_passphrase_file(passphrase_file)
    home = open_home(ctx)  # a missing or broken home is reported here, before anything starts
    advertise = home.config.announce if advertise is None else advertise
    if keyfile.is_encrypted(home.path / "identity.key"):
        home.identity  # a missing or wrong passphrase is one line here, before anything starts
    home.close()
    if not keyfile.prompted():  # a typed passphrase cannot cross exec: serve in this process
        daemon.exec_daemon(home.path, rate_limit=rate_limit, advertise=advertise, verbose=verbose, ui_port=ui_port,
                           passphrase_file=passphrase_file)
    daemon.serve(home.path, rate_limit=rate_limit, advertise=advertise, verbose=verbose,
                 ui_port=ui_port)  # where exec is unavailable


@app.command()
def ui(ctx: typer.Context,
       open_browser: bool = typer.Option(False, "--open", help="Open it in this machine's web browser."),
       account: str = typer.Option("", "--as", help="The named account the session acts as (audit entries "
                                   "name it); default: your operating-system user."),
       json_out: bool = JsonOpt) -> None:
    """The web Dataview: print a one-time login URL for it (the node must be running: `discnode serve`)."""
    from .fastpath import request
    from .localapi import account_name

    home = open_home(ctx)
    if account:
        account = account_name(account, None)  # checked here too, so that a bad name is one clear line
    # Without --as, the daemon names the account after the socket's peer credentials, not our say-so.
    reply = request(home.path, "ui-login", **({"account": account} if account else {}))
    if reply is None:
        raise DiscnodeError("the node is not running here; start it with `discnode serve`, then run this again")
    if "url" not in reply:
        raise InvalidInput(str(reply.get("error", "the node refused the login request")))
    url = reply["url"]
    if json_out:
        output.emit_json({"url": url, "account": reply.get("account", account)})
    else:
        output.console.print(f"Open this address in a browser on this machine (it works once, for 5 minutes); "
                             f"you act as {output.safe(reply.get('account', account))}:")
        output.console.print(url, highlight=False, soft_wrap=True)
    if open_browser:
        import webbrowser
        webbrowser.open(url)


def _daemon_client() -> Any:
    """The running daemon's warm peer client when this command runs inside it (forward.py), else None."""
    from .forward import bridged_client
    return bridged_client()


def _run(coro: Any) -> Any:
    from .loops import run
    return run(coro)


def _print_peer_state(result: dict[str, Any], json_out: bool, verb: str) -> None:
    if json_out:
        output.emit_json(result)
        return
    output.console.print(f"{verb} {output.safe(result['name'])} ({result['node_id']}): agreement is now "
                         f"[bold]{output.safe(result['state'])}[/]", highlight=False)
    reason = output.safe(result.get("delivery_reason", ""))  # the reason quotes the peer's own words
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
             share: list[str] = typer.Option(["profiles", "images"], "--share",
                                             help="profiles, images; with profiles also ethnicity (special "
                                                  "category), minors (profiles of under-18s), conditional "
                                                  "(records graded C, with --handling-condition); or match "
                                                  "(match-only: hit or no-hit, no browsing); statistics (counts "
                                                  "only, no identifiers); evidence (with profiles: each may disclose "
                                                  "the other's records to police in `discnode export`). See the README."),
             handling_condition: list[str] = typer.Option(
                 [], "--handling-condition", help="With --share conditional: a handling condition the partner "
                                                  "accepts (repeat): refer-to-originator, not-evidential, "
                                                  "staff-only, no-onward-alerts."),
             match_quota: Optional[int] = typer.Option(None, "--match-quota",
                                                       help="With --share match: names the partner may ask "
                                                            "about per day (default 100)."),
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
    terms = Terms.default(today(), review_days, purpose, share, match_quota, handling_condition or None)
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
                 ([r["node_id"], r["name"], r["url"], "yes" if r["known"] else "", r["state"]] for r in rows),
                 whole=("node id",))
    output.console.print("Before adding one, confirm its node ID with its administrator: "
                         "discnode peer add --discovered NODE_ID")


@app.command()
def address(ctx: typer.Context,
            host: Optional[str] = typer.Option(None, help="New address to listen on."),
            port: Optional[int] = typer.Option(None, help="New HTTPS port."),
            public_url: Optional[str] = typer.Option(None, help="New URL for peers ('' for https://HOST:PORT)."),
            announce: Optional[bool] = typer.Option(None, "--announce/--no-announce", show_default=False,
                                                    help="Announce the node on the local network (mDNS), or not."),
            json_out: bool = JsonOpt) -> None:
    """Change where this node listens, and whether it announces itself on the local network.
    Peers are sent the new signed descriptor when `serve` starts."""
    home = open_home(ctx)
    if host is None and port is None and public_url is None and announce is None:
        raise InvalidInput("give --host, --port, --public-url or --announce/--no-announce")
    current = home.config
    import dataclasses
    config = dataclasses.replace(current, host=current.host if host is None else host,
                                 port=current.port if port is None else port,
                                 public_url=current.public_url if public_url is None else public_url,
                                 announce=current.announce if announce is None else announce).validated()
    home.write_config(config)
    from . import audit
    audit.append(home.db, "address-changed", "", url=config.url, announce=config.announce)
    info = {"node_id": home.node_id, "url": config.url, "announce": config.announce}
    output.emit_json(info) if json_out else output.console.print(
        f"This node is now at {output.safe(config.url)}, {'announced' if config.announce else 'not announced'} "
        "on the local network; restart `discnode serve` to apply it.")


@peer_app.command("list")
def peer_list(ctx: typer.Context, json_out: bool = JsonOpt) -> None:
    """Known peers and the state of each agreement, and the node IDs you expect an offer from."""
    from . import peers

    from . import notices

    home = open_home(ctx)
    outstanding = notices.outstanding(home.db, home.node_id)
    rows = [{**r, "receipts_outstanding": outstanding.get(r["node_id"], 0)}
            for r in peers.listing(home.db, home.node_id, today())]
    if json_out:
        output.emit_json(rows)
        return
    # "unsent": our consent documents the partner has not received yet (`serve` keeps trying).
    # "receipts owed": erasure and rectification notices it has not returned a receipt for.
    if output.narrow():  # the rest is in `peer show`; a node ID is never wrapped
        output.table("Peers", ("node id", "name", "state", "review by", "unsent", "receipts owed"),
                     ([r["node_id"], r["name"], r["state"], r["review_by"], r["undelivered"] or "",
                       r["receipts_outstanding"] or ""] for r in rows),
                     whole=("node id",), nowrap=("review by",))
    else:
        output.table("Peers", ("node id", "name", "url", "state", "last acted", "review by", "shares", "unsent",
                               "receipts owed", "expected"),
                     ([r["node_id"], r["name"], r["url"], r["state"], r["last_actor"], r["review_by"],
                       ", ".join(r["share"]), r["undelivered"] or "", r["receipts_outstanding"] or "",
                       "yes" if r["expected"] else ""] for r in rows),
                     whole=("node id",), nowrap=("review by",))
    if any(r["state"] == "pending" for r in rows):
        output.console.print("Before accepting an offer, read its terms: discnode peer show NODE_ID", highlight=False)


@peer_app.command("show")
def peer_show(ctx: typer.Context, node_id: str = typer.Argument(..., help="The peer's node ID (or its name)."),
              json_out: bool = JsonOpt) -> None:
    """One peer in full: the agreement's terms (purpose, what is shared, review date) and its history."""
    from . import peers

    from . import notices

    home = open_home(ctx)
    info = peers.describe(home.db, home.node_id, peers.resolve(home.db, home.node_id, home.config.name, node_id),
                          today())
    info["receipts_outstanding"] = notices.outstanding(home.db, home.node_id).get(info["node_id"], 0)
    if json_out:
        output.emit_json(info)
        return
    terms = info["terms"] or {}
    offered = f"{terms['offered_by']}, {terms['offered_at']}" if terms else "no offer"
    history = output.Lines(
        f"{d['issued_at']}  {d['type']} by {d['by']}" + {True: "", False: " (not delivered yet)", None: ""}[d["delivered"]]
        for d in info["documents"])
    output.fields(f"Peer {info['name']}", [
        ("node id", info["node_id"]), ("name", info["name"]), ("url", info["url"]),
        ("TLS cert", info["tls_fingerprint"]), ("agreement", info["state"]),
        ("purpose", terms.get("purpose", "")), ("shares", terms.get("share", "")),
        ("review by", terms.get("review_by", "")), ("offered by", offered),
        *([("match quota", f"{terms['match_daily_quota']} names a day")] if "match_daily_quota" in terms else []),
        *([("C records under", ", ".join(terms["handling_conditions"]))] if "handling_conditions" in terms else []),
        ("not delivered", f"{info['undelivered']} document(s); `discnode serve` keeps trying"
         if info["undelivered"] else "none"),
        ("receipts owed", f"{info['receipts_outstanding']} erasure or correction notice(s) without a receipt"
         if info["receipts_outstanding"] else "none"),
        ("history", history or "none"),
        *[(f"replaces {old['node_id']}", output.Lines(
            [f"replaced {old['replaced']}; that agreement is {old['state']}"]
            + [f"{d['issued_at']}  {d['type']} by {d['by']}" for d in old["documents"]]))
          for old in info["replaces"]],
    ])


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
              peer: Optional[str] = typer.Option(None, help="Only entries about this node ID (and the IDs it "
                                                 "replaced: `peer replace`)."),
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
    from .keys import predecessors
    also = [old["node_id"] for old in predecessors(home.db, peer)] if peer else []
    rows = audit.entries(home.db, limit=limit, peer=peer, also=also)
    if json_out:
        output.emit_json(rows)
        return
    if not output.narrow():
        output.table("Audit log", ("seq", "time", "event", "by", "peer", "detail"),
                     ([r["seq"], r["ts"], r["event"], r["actor"], r["peer"], _compact(r["detail"])] for r in rows),
                     whole=("peer", "time", "event", "by"))
        return
    # Narrow: one entry per paragraph (a five-column table at 80 columns folds every cell).
    from . import peers as peers_
    names = {p.node_id: p.name for p in peers_.all_peers(home.db)}
    output.console.print(f"[bold]Audit log[/]: the latest {len(rows)} entries, oldest first", highlight=False)
    for r in rows:
        output.line(f"#{r['seq']}  {r['ts']}  {r['event']}" + (f"  by {r['actor']}" if r["actor"] else ""))
        if r["peer"]:
            output.block(f"peer {r['peer']}" + (f" ({names[r['peer']]})" if r["peer"] in names else ""), indent=4)
        if r["detail"]:
            output.block(_compact(r["detail"]), indent=4)


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
        for cut in report.restores:
            output.console.print(
                f"Audit log RESTORED from a backup at entry {cut['entry']} (entry {cut['restored_at']}, "
                f"{cut['ts']}): entries {cut['entry'] + 1}..{cut['lost_up_to']} once existed (signed heads: "
                + ", ".join(sorted({w['source'] for w in cut['witnesses']})) + ") and were lost; "
                f"the chain verifies ({report.entries} entries).", highlight=False, markup=False)
        if report.ok and not report.restores:
            archived = (f" (entries before {report.entries - report.chain_entries + 1} archived in "
                        f"{report.archives} file(s), verified from their signed head)") if report.archives else ""
            output.console.print(f"Audit log intact: {report.entries} entries{archived}, hash chain verified, "
                                 f"consistent with {report.checkpoints} checkpoint(s) and with the heads "
                                 f"{len(checked)} of {len(report.partners)} partner(s) witnessed.", highlight=False)
        for finding in report.findings:
            output.err_console.print(f"TAMPERED: {output.printable(finding.message)}", highlight=False, markup=False)
        for note in report.unchecked:
            output.console.print(f"Not checked: {output.printable(note)}", highlight=False, markup=False)
    if not report.ok:
        reasons = ([report.chain_reason] if not report.chain_ok else []) + [f.message for f in report.findings]
        raise DiscnodeError(f"audit log is NOT intact: {reasons[0]}"
                            + (f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""))


_SEARCH_OPTIONS = ("text", "gender", "ethnicity", "build", "status", "tag", "age_min", "age_max", "excluded",
                   "partnership", "sort", "desc", "limit")


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether an option was given (on the command line or by environment), not left at its default."""
    source = ctx.get_parameter_source(name)
    # By name: typer carries its own copy of click, so click's enum is not the one it returns.
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


@app.command()
def search(
    ctx: typer.Context,
    text: Optional[str] = TEXT_ARG,
    gender: list[str] = GENDER_OPT,
    ethnicity: list[str] = ETHNICITY_OPT,
    build: list[str] = BUILD_OPT,
    status: list[str] = STATUS_OPT,
    tag: list[str] = TAG_OPT,
    age_min: Optional[int] = AGE_MIN_OPT,
    age_max: Optional[int] = AGE_MAX_OPT,
    excluded: Optional[bool] = EXCLUDED_OPT,
    partnership: list[str] = PARTNERSHIP_OPT,
    sort: str = SORT_OPT,
    desc: bool = DESC_OPT,
    limit: int = LIMIT_OPT,
    cursor: Optional[str] = typer.Option(None, help="Continue from a previous page's next cursor."),
    timeout: float = typer.Option(3.0, help="Seconds to wait for each peer."),
    contact_sheet: Optional[Path] = typer.Option(None, "--contact-sheet", help="Also draw a PNG grid of thumbnails."),
    all_pages: bool = typer.Option(False, "--all", help="Every match, not one page (each peer paged on its own)."),
    csv_out: bool = typer.Option(False, "--csv", help="Print CSV for spreadsheets (one row per profile)."),
    out_file: Optional[Path] = typer.Option(None, "--output", "-o",
                                            help="Write the --json or --csv output to this file (readable by you only)."),
    json_out: bool = JsonOpt,
) -> None:
    """Search the Dataview: this node's profiles and every consenting peer's, merged."""
    from .dataview import Page, collector_paused, walk
    from .dataview import search as federated_search

    if not 0.1 <= timeout <= 60:
        raise InvalidInput("timeout must be 0.1 to 60 seconds")
    if all_pages and cursor:
        raise InvalidInput("--all walks every page; it takes no --cursor")
    if csv_out and json_out:
        raise InvalidInput("give --csv or --json, not both")
    if out_file and not (csv_out or json_out):
        raise InvalidInput("--output writes the --csv or --json output: give one of them")
    home = open_home(ctx)
    partnership = _partnerships(home, partnership)
    query = Query(text=text, gender=tuple(gender), ethnicity=tuple(ethnicity), build=tuple(build),
                  status=tuple(status), tags=tuple(tag), age_min=age_min, age_max=age_max, excluded=excluded,
                  sort=sort, desc=desc, limit=limit)
    client = _daemon_client()
    float_free: list[dict[str, Any]] = []  # records known to hold no float (output.json_ascii)
    if all_pages:
        # Until the command ends: its records are written out and freed before the collector resumes.
        ctx.with_resource(collector_paused())
        results, statuses = _run(walk(home, query, timeout=timeout, partnerships=partnership, client=client))
        page = Page(results, statuses, None, query)
        float_free = results if all(s.float_free for s in statuses) else []
    else:
        # A cursor alone continues its own search; with any search option given, they must match it.
        alone = cursor and not any(_given(ctx, name) for name in _SEARCH_OPTIONS)
        page = _run(federated_search(home, None if alone else query, cursor=cursor, timeout=timeout,
                                     partnerships=None if alone else partnership, client=client))
    query = page.query
    if contact_sheet:
        if contact_sheet.suffix.lower() != ".png":
            raise InvalidInput("the contact sheet is a .png file")
        if page.results:
            from .contactsheet import render
            from .dataview import thumbnails
            render(page.results, _run(thumbnails(home, page.results, timeout)), contact_sheet)
            from .exports import register
            register(home.db, contact_sheet, page.results, home.node_id)
    from . import audit
    audit.append(home.db, "search", "", query=query.to_wire(), results=len(page.results), all=all_pages,
                 contact_sheet=str(contact_sheet) if contact_sheet else None,
                 output=str(out_file) if out_file else None, peers={p.node_id: p.status for p in page.peers})
    from . import links
    linked = links.all_linked(home.db, home.node_id)
    if linked:  # this node's confirmed same-person links, beside the records they join: never served
        page.results = [{**r, "links": linked[(r["origin"], r["id"])]} if (r["origin"], r["id"]) in linked else r
                        for r in page.results]
    if csv_out or json_out:
        _export_page(page, csv_out, out_file, float_free)
        if out_file is not None:
            from .exports import register
            register(home.db, out_file, page.results, home.node_id)
        return
    print_page(home.config.name, page)
    if contact_sheet and page.results:
        output.line(f"Contact sheet (readable by you only): {contact_sheet}")


#: The columns of `search --csv`, one row per profile.
CSV_COLUMNS = ("reference", "partnership", "status", "first_name", "last_name", "aliases", "dob", "age_min",
               "age_max", "gender", "ethnicity", "build", "height_cm", "tags", "last_seen", "excluded_until",
               "review_by")


def _csv_row(r: dict[str, Any]) -> list[Any]:
    return [f"{r['origin']}:{r['id']}", r["origin_name"], r["status"], r["first_name"], r["last_name"],
            "; ".join(r["aliases"]), r["dob"], r["age_min"], r["age_max"], r["gender"], r.get("ethnicity", "withheld"), r["build"],
            r["height_cm"], "; ".join(r["tags"]), r["last_seen"], (r.get("exclusion") or {}).get("until"),
            r["review_by"]]


def _export_page(page: Any, as_csv: bool, out_file: Path | None, float_free: Sequence[Any] = ()) -> None:
    """--csv or --json, to stdout or to a file readable by its owner only. Partnerships that did not
    answer are named on stderr, so that an export is never silently short. float_free: records
    known to hold no float (output.json_ascii)."""
    import io
    if as_csv:
        buffer = io.StringIO()
        output.write_csv(CSV_COLUMNS, (_csv_row(r) for r in page.results), buffer)
        text = buffer.getvalue()
        for p in page.peers:
            if p.status != "ok":
                output.info(f"warning: {p.name} ({p.node_id}): {p.status} {p.error}".rstrip())
    else:
        text = output.json_ascii(page.to_json(), float_free=float_free)
    if out_file is None:
        sys.stdout.write(text)
        return
    from .exports import write_private
    write_private(out_file, text.encode())
    output.info(f"Wrote {len(page.results)} profile(s) to {out_file} (readable by you only)")


def _partnerships(home: Home, given: list[str]) -> list[str]:
    """--partnership values (node IDs or names) as node IDs."""
    from . import peers
    return [peers.resolve(home.db, home.node_id, home.config.name, text) for text in given]


@app.command("level-two")
def level_two(ctx: typer.Context,
              min_partnerships: int = typer.Option(2, "--min-partnerships",
                                                   help="Known to at least this many partnerships."),
              timeout: float = typer.Option(3.0, help="Seconds to wait for each peer."),
              include_match: bool = typer.Option(False, "--include-match",
                                                 help="Also ask match-only partners about the people seen "
                                                      "(each name counts against their daily quota)."),
              match_max: int = typer.Option(100, "--match-max",
                                            help="With --include-match: ask about at most this many people."),
              json_out: bool = JsonOpt) -> None:
    """Level Two: people known to several partnerships (same name or alias, and same date of birth)."""
    from . import audit
    from .leveltwo import sweep

    if not 2 <= min_partnerships <= 1000:
        raise InvalidInput("--min-partnerships must be 2 or more")
    if not 0.1 <= timeout <= 60:
        raise InvalidInput("timeout must be 0.1 to 60 seconds")
    if not 1 <= match_max <= 10_000:
        raise InvalidInput("--match-max must be 1 to 10000")
    home = open_home(ctx)
    from . import links
    matched: list[dict[str, Any]] = []
    if include_match:
        from .leveltwo import sweep_with_match
        found, statuses, looked_at, matched = _run(sweep_with_match(home, min_partnerships, timeout, match_max))
    else:
        found, statuses, looked_at = _run(sweep(home, min_partnerships, timeout))
    audit.append(home.db, "level-two", "", min_partnerships=min_partnerships, profiles=looked_at,
                 groups=len(found), peers={p.node_id: p.status for p in statuses},
                 match={p["node_id"]: p["status"] for p in matched})
    held = links.states(home.db)
    confirmed = links.confirmed(home.db, home.node_id)
    groups = [{**g.to_json(), **g.link_states(home.node_id, held)} for g in found]
    if json_out:
        output.emit_json({"groups": groups, "profiles": looked_at,
                          "peers": [p.to_json() for p in statuses], "match_partners": matched, "links": confirmed})
        return
    output.console.print(f"[bold]Level Two[/]: {len(found)} {'person' if len(found) == 1 else 'people'} known to "
                         f"{min_partnerships} or more "
                         f"partnerships ({looked_at} identified profiles looked at)", highlight=False)
    # One paragraph per person: the references (NODE_ID:PROFILE_ID, for `profile show`) each on a line
    # of its own, since a reference is pasted and must never be broken.
    for g, shown in zip(found, groups):
        output.console.print(f"\n[bold]{output.safe(g.name)}[/], born {output.safe(g.dob)}: "
                             f"{len(g.partnerships)} partnerships", highlight=False)
        for p in g.profiles:
            if p.get("revealed_ref"):  # kept from `discnode reveal`: the holder's signed record
                output.console.print(f"  {output.safe(p['origin'])}:{output.safe(p['id'])}  "
                                     f"{output.safe(p['origin_name'])} (match-only, revealed: "
                                     f"{output.safe(p['first_name'])} {output.safe(p['last_name'])}; "
                                     f"reference {output.safe(p['origin'])}:{output.safe(p['revealed_ref'])})",
                                     highlight=False, soft_wrap=True)
            else:
                output.line(f"  {p['origin']}:{p['id']}  {p['origin_name']}")
        for hit in g.match_hits:  # a match-only partner's hit not revealed: a reference for `discnode reveal`
            if not hit["revealed"]:
                target = f"{output.safe(hit['node_id'])}:{output.safe(hit['ref'])}"
                output.console.print(f"  {target}  {output.safe(hit['name'])} (match-only): hit, not revealed "
                                     f"(discnode reveal {target})", highlight=False, soft_wrap=True)
        for link in shown["links"]:
            output.line(f"  link {link['mine']} = {link['theirs']}: {link['state']}")
        for pair in shown["suggested"]:
            output.line(f"  suggested: discnode link propose {pair['mine']} {pair['theirs']}")
    output.console.print()
    if confirmed:
        output.console.print(f"[bold]Confirmed same-person links: {len(confirmed)}[/]", highlight=False)
        for c in confirmed:
            output.line(f"  {c['mine']} = {c['theirs']}  ({c['source'] or ''})")
    print_statuses(statuses)
    for p in matched:
        detail = f"{p['quota'].get('used', '?')} of {p['quota'].get('limit', '?')} names today" \
            if p["status"] == "ok" else p.get("error", "")
        output.line(f"  match-only  {p['name']:<28} {p['status']:<6} {detail}")


def print_page(title: str, page: Any) -> None:
    if not page.results:
        output.console.print(f"Dataview of {output.safe(title)}: no matching profiles", highlight=False)
        print_statuses(page.peers)
        return
    narrow = output.narrow()
    output.table(f"Dataview of {title}: {len(page.results)} result(s)",
                 ("from" if narrow else "partnership", *output.profile_columns()),
                 ([output.short_name(r["origin_name"], narrow), *output.profile_row(r, narrow)] for r in page.results),
                 nowrap=("last seen", "born"), whole=("id",), words=("tags", "from"))
    for r in page.results:
        for other in r.get("links", []):
            output.line(f"  {r['origin']}:{r['id']} is the same person as {other} (confirmed link)")
    print_statuses(page.peers)
    if page.next_cursor:
        # The cursor is pasted into the next command: on a line of its own, never wrapped.
        output.console.print("More: for the next page, run the same search with", highlight=False)
        output.line(f"--cursor {page.next_cursor}")


def print_statuses(statuses: Any) -> None:
    """One line per partnership: its status, rows, its own elapsed time, and why if not ok."""
    width = min(28, max((len(output.printable(p.name)) for p in statuses), default=0))
    lines = []
    for p in statuses:
        name = output.printable(p.name)
        name = name.ljust(width) if len(name) <= width else name[: width - 1] + "…"
        detail = f" ({output.printable(p.error)})" if p.error else ""
        withheld = getattr(p, "withheld", None)
        if withheld:  # its terms do not share these: a filter on them gets no rows from it
            detail += f"; {', '.join(withheld)} withheld by its terms"
        lines.append(("green" if p.status == "ok" else "red", f"{p.status:<11}",
                      f" {name} {p.count:>5} rows {p.ms:>6} ms{detail}"))
    output.status_lines(lines)


# --- proposals and the inbox -----------------------------------------------------------------


def _print_proposal(view: dict[str, Any], json_out: bool, title: str) -> None:
    if json_out:
        output.emit_json(view)
        return
    person = view["person"]
    shown = {"id": view["id"], "from": view["from"], "to": view["to"], "about": view["about"],
             "as": f"{view['as']['origin']}:{view['as']['id']}" if view["as"] else "",
             "person": f"{person['first_name']} {person['last_name']}" + (f", born {person['dob']}" if person["dob"] else ""),
             "reason": view["reason"], "note": view["note"], "state": view["state"],
             "outcome reason": view["outcome_reason"] or ""}
    output.fields(title, shown.items())
    if not view["delivered"]:
        output.console.print("The partner could not be reached; it will be told when it can be "
                             "(while `discnode serve` runs).")


@app.command()
def propose(ctx: typer.Context,
            target: str = typer.Argument(..., help="The partner's ID-sought profile, NODE_ID:PROFILE_ID."),
            as_profile: Optional[str] = typer.Option(None, "--as", help="This node's own profile of that person."),
            first_name: str = typer.Option("", "--first-name", help="Or name the person: first name..."),
            last_name: str = typer.Option("", "--last-name", help="...last name..."),
            dob: str = typer.Option("", "--dob", help="...date of birth (YYYY-MM-DD), if known..."),
            reason: str = typer.Option("", "--reason", help="...and why you believe it (needed without --as)."),
            note: str = typer.Option("", "--note", help="A note for the partner's administrator."),
            json_out: bool = JsonOpt) -> None:
    """Tell a partner who its ID-sought person is: your own profile of them (--as), or a name."""
    from .peering import propose as send

    view = _run(send(open_home(ctx), target, as_profile=as_profile, first_name=first_name, last_name=last_name,
                     dob=dob, reason=reason, note=note))
    _print_proposal(view, json_out, "Proposal sent")


def _print_link(view: dict[str, Any], json_out: bool, verb: str) -> None:
    if json_out:
        output.emit_json(view)
    else:
        output.console.print(f"{verb} link {view['id']}: our {view['mine']} and {view['theirs']} ({view['state']})")


@link_app.command("propose")
def link_propose(ctx: typer.Context, mine: str = typer.Argument(..., help="Your own profile ID."),
                 target: str = typer.Argument(..., help="The partner's profile of the same person, NODE_ID:PROFILE_ID."),
                 json_out: bool = JsonOpt) -> None:
    """Propose that your profile and a partner's are the same person; its administrator confirms."""
    from .peering import propose_link

    _print_link(_run(propose_link(open_home(ctx), mine, target)), json_out, "Proposed")


@link_app.command("confirm")
def link_confirm(ctx: typer.Context, link_id: str = typer.Argument(..., help="From `discnode inbox`."),
                 json_out: bool = JsonOpt) -> None:
    """Confirm a partner's same-person link."""
    from .peering import decide_link

    _print_link(_run(decide_link(open_home(ctx), link_id, True)), json_out, "Confirmed")


@link_app.command("decline")
def link_decline(ctx: typer.Context, link_id: str = typer.Argument(..., help="From `discnode inbox`."),
                 json_out: bool = JsonOpt) -> None:
    """Decline a partner's same-person link: it is not suggested or proposed again."""
    from .peering import decide_link

    _print_link(_run(decide_link(open_home(ctx), link_id, False)), json_out, "Declined")


@link_app.command("list")
def link_list(ctx: typer.Context, json_out: bool = JsonOpt) -> None:
    """Every same-person link, proposed, confirmed or declined (this node's own notes)."""
    from . import links

    rows = links.listing(open_home(ctx).db)
    if json_out:
        output.emit_json(rows)
        return
    output.table(f"Links: {len(rows)}", ("id", "ours", "theirs", "state", "source"),
                 ([r["id"] or "", r["mine"], r["theirs"], r["state"], r["source"] or ""] for r in rows),
                 nowrap=("id", "ours", "state"))


@app.command()
def sighting(ctx: typer.Context,
             target: str = typer.Argument(..., help="The partner's profile, NODE_ID:PROFILE_ID."),
             at: str = typer.Option(..., "--at", help="Where the person was seen."),
             when: Optional[str] = typer.Option(None, "--when", help="The day, YYYY-MM-DD (default today)."),
             json_out: bool = JsonOpt) -> None:
    """Tell a partner the person in one of its profiles was seen: where and when."""
    from .peering import report_sighting

    view = _run(report_sighting(open_home(ctx), target, at, when))
    if json_out:
        output.emit_json(view)
        return
    output.console.print(f"Sighting {view['id']} of {view['about']} at {output.safe(view['at'])} on {view['when']} "
                         + ("delivered" if view["delivered"] else "will be delivered when the partner is reachable"))


def _decide(ctx: typer.Context, proposal_id: str, confirm: bool, reason: str, json_out: bool,
            first_name: str = "", last_name: str = "") -> None:
    from .peering import decide

    view = _run(decide(open_home(ctx), proposal_id, confirm, reason=reason, first_name=first_name,
                       last_name=last_name))
    _print_proposal(view, json_out, f"Proposal {view['state']}")


@proposal_app.command("confirm")
def proposal_confirm(ctx: typer.Context, proposal_id: str = typer.Argument(..., help="From `discnode inbox`."),
                     reason: str = typer.Option("", "--reason", help="Why (audited; the proposer is told)."),
                     first_name: str = typer.Option("", "--first-name", help="Record this first name instead."),
                     last_name: str = typer.Option("", "--last-name", help="Record this last name instead."),
                     json_out: bool = JsonOpt) -> None:
    """Confirm a proposal: the ID-sought profile becomes identified (images, incidents, exclusion kept)."""
    _decide(ctx, proposal_id, True, reason, json_out, first_name, last_name)


@proposal_app.command("decline")
def proposal_decline(ctx: typer.Context, proposal_id: str = typer.Argument(..., help="From `discnode inbox`."),
                     reason: str = typer.Option("", "--reason", help="Why (audited; the proposer is told)."),
                     json_out: bool = JsonOpt) -> None:
    """Decline a proposal, with a reason the proposer is told."""
    _decide(ctx, proposal_id, False, reason, json_out)


@proposal_app.command("list")
def proposal_list(ctx: typer.Context, json_out: bool = JsonOpt) -> None:
    """Proposals sent and received, with their state (for this node's administrator only)."""
    from . import proposals

    home = open_home(ctx)
    rows = proposals.listing(home.db, home.node_id)
    if json_out:
        output.emit_json(rows)
        return
    output.table(f"Proposals: {len(rows)}", ("id", "direction", "partner", "about", "person", "state"),
                 ([r["id"], r["direction"], r["to"] if r["direction"] == "sent" else r["from"], r["about"],
                   f"{r['person']['first_name']} {r['person']['last_name']}", r["state"]] for r in rows),
                 nowrap=("id", "direction", "about", "state"))


@app.command()
def inbox(ctx: typer.Context, json_out: bool = JsonOpt) -> None:
    """Everything waiting for you: proposals, offers, reviews due, documents not yet delivered."""
    from . import review

    home = open_home(ctx)
    items = review.queue(home.db, home.node_id, today(), retention_months=home.config.retention_months)
    if json_out:
        output.emit_json([i.inbox_json() for i in items])
        return
    output.table(f"Inbox: {len(items)} item(s)", ("id", "kind", "from", "about", "what"),
                 ([i.ref, review.inbox_kind(i.kind), i.sender, i.about, i.summary] for i in items),
                 nowrap=("id", "kind", "from", "about"))
    from .review import HINTS
    for kind in dict.fromkeys(i.kind for i in items):
        output.console.print(f"  {kind.value}: {HINTS[kind]}", highlight=False, soft_wrap=True)


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


def _compact(detail: dict[str, Any], prefix: str = "") -> str:
    """An audit entry's detail in one readable line: nested objects flattened to dotted names,
    lists joined, empty values left out."""
    parts = []
    for key, value in detail.items():
        if value is None or value == [] or value == {}:
            continue
        if isinstance(value, dict):
            parts.append(_compact(value, f"{prefix}{key}."))
        else:
            parts.append(f"{prefix}{key}={output.plain(value)}")
    return ", ".join(parts)


def _wants_json(args: list[str]) -> bool:
    """--json anywhere before a `--`: known before parsing, so that even a usage error can honour it."""
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def _fail(code: str, message: str, exit_code: int, as_json: bool) -> NoReturn:
    if as_json:
        output.json_error(code, message)
    else:
        output.error(message)
    sys.exit(exit_code)


def _click_exceptions() -> Any:
    """Typer 0.22 and later carry their own copy of click (typer._click); earlier ones use click."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions  # type: ignore[no-redef]
    return exceptions


from . import cli_match  # noqa: E402,F401 - registers `match` and `reveal` on the app
from . import cli_keys  # noqa: E402,F401 - registers `key` and `peer replace` on the app
from . import cli_report  # noqa: E402,F401 - registers `report` on the app
from . import cli_retention  # noqa: E402,F401 - registers `retention`
from . import cli_subject  # noqa: E402,F401 - registers `subject-access`
from . import cli_terms  # noqa: E402,F401 - registers `peer terms`
from . import cli_ops  # noqa: E402,F401 - registers `backup`, `restore`, `recover`, `status` and `key`


@functools.cache
def _command() -> Any:
    """The click command tree, built once per process: typer rebuilds it on every call, which the
    daemon, running forwarded commands one after another, would pay each time."""
    return typer.main.get_command(app)


def main(argv: list[str] | None = None) -> None:
    click = _click_exceptions()
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_json(args)
    from .audit import ACTOR, acting, os_user
    # Who acted, for every audit entry this command writes: this process's user, unless the
    # daemon already set the user its socket's peer credentials name (forward.py).
    actor = ACTOR.get() or os_user()
    try:
        with acting(actor):
            code = _command()(args=args, prog_name="discnode", standalone_mode=False)
    except DiscnodeError as exc:
        _fail(exc.code, str(exc), exc.exit_code, as_json)
    except click.NoArgsIsHelpError as exc:
        exc.show()  # `discnode` alone: the help, as before
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        # A script (or a pipe) gets one line, not typer's boxed panel; a person at a terminal gets the panel.
        if as_json or not sys.stderr.isatty():
            hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            _fail("usage", exc.format_message() + hint, exc.exit_code, as_json)
        from typer import rich_utils
        rich_utils.rich_format_error(exc)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        _fail("invalid", exc.format_message(), exc.exit_code, as_json)
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted", "interrupted", 130, as_json)
    sys.exit(code if isinstance(code, int) else 0)
from . import cli_evidence  # noqa: E402,F401 - registers `export` and `verify` on the app
