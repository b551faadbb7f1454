"""`discnode export` and `discnode verify`: evidence bundles for police (a thin layer over
evidence.py and documents/evidence.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import output
from .cli import (AGE_MAX_OPT, AGE_MIN_OPT, BUILD_OPT, DESC_OPT, ETHNICITY_OPT, EXCLUDED_OPT, GENDER_OPT, JsonOpt,
                  PARTNERSHIP_OPT, SORT_OPT, STATUS_OPT, TAG_OPT, TEXT_ARG, _given, _partnerships, app, open_home)
from .documents import evidence as doc
from .errors import InvalidInput, Tampered
from .query import Query

_FILTERS = ("text", "gender", "ethnicity", "build", "status", "tag", "age_min", "age_max", "excluded", "partnership")


@app.command("export")
def export_cmd(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="The bundle file to write (readable by you only)."),
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
    profile: list[str] = typer.Option([], "--profile", help="A profile by reference, NODE_ID:PROFILE_ID "
                                                            "(repeatable; instead of filters)."),
    sort: str = SORT_OPT,
    desc: bool = DESC_OPT,
    timeout: float = typer.Option(3.0, help="Seconds to wait for each peer."),
    json_out: bool = JsonOpt,
) -> None:
    """Write an evidence bundle for police: the selected profiles, own and partners' (where their
    agreement allows disclosure to police), each with its origin's signature; audited."""
    from .evidence import export

    if not 0.1 <= timeout <= 60:
        raise InvalidInput("timeout must be 0.1 to 60 seconds")
    filtered = any(_given(ctx, name) for name in _FILTERS)
    if not filtered and not profile:
        raise InvalidInput("nothing selected: give search filters (as for `discnode search`), --partnership, "
                           "or --profile NODE_ID:PROFILE_ID")
    home = open_home(ctx)
    query = None
    if filtered:
        query = Query(text=text, gender=tuple(gender), ethnicity=tuple(ethnicity), build=tuple(build),
                      status=tuple(status), tags=tuple(tag), age_min=age_min, age_max=age_max, excluded=excluded,
                      sort=sort, desc=desc)
    result = export(home, file, query=query, partnerships=_partnerships(home, partnership), refs=profile,
                    timeout=timeout)
    if json_out:
        output.emit_json(result.to_json())
        return
    for node_id, state in result.sources.items():
        if state != "ok":
            output.info(f"warning: {node_id} {state}: its records are not in the bundle")
    output.console.print(f"Wrote evidence bundle {output.safe(file)} (readable by you only): "
                         f"{len(result.records)} record(s) with their origins' signatures, {result.images} image(s)"
                         + (f", {result.images_omitted} image(s) by digest only" if result.images_omitted else "")
                         + (f"; {len(result.references)} partner record(s) by reference only (their agreements do "
                            "not allow disclosure to police)" if result.references else "") + ".", highlight=False)
    output.line(f"Bundle digest (SHA-256): {result.digest}")
    output.line("Recorded in the audit log as a disclosure. Check it anywhere with `discnode verify FILE`.")


@app.command("verify")
def verify_cmd(file: Path = typer.Argument(..., help="An evidence bundle written by `discnode export`."),
               json_out: bool = JsonOpt) -> None:
    """Check an evidence bundle offline (no node, no network): every signature, every image's hash,
    the whole-bundle digest. Fails with the reason if any byte changed."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {file}: {exc.strerror or exc}") from None
    try:
        verified = doc.verify(data)
    except Tampered as exc:
        raise Tampered(f"evidence bundle does NOT verify: {exc}") from None
    if json_out:
        output.emit_json(verified.to_json())
        return
    output.console.print(
        f"Evidence bundle intact: {verified.records} record(s), each signed by its origin, from "
        f"{len(verified.origins)} partnership(s); {verified.images} image(s) match their signed hashes"
        + (f", {verified.images_omitted} by digest only" if verified.images_omitted else "")
        + (f"; {verified.references} reference(s) to records not disclosed" if verified.references else "")
        + ".", highlight=False, markup=False)
    output.line(f"Exported by {verified.exporter_name} ({verified.exporter}) at {verified.created_at}; "
                f"digest {verified.digest}")
    output.table("Origins (check each node ID with its partnership)", ("node id", "name"),
                 ([o["node_id"], o["name"]] for o in verified.origins))
