"""Evidence export: the records an administrator selects (by search filters, or by reference), own
and partners', written as one bundle for police (documents/evidence.py, protocol/evidence-v1.md)
and audited as a disclosure.

A partner's record goes into the bundle only if the agreement with that partner is active and
shares `evidence`: the partner's consent to disclosure to police, a term of the signed agreement like
every other scope. Otherwise the bundle names the record (origin, ID, revision, digest) and says
whom police must ask; its contents stay out.

Images: the bundle carries the bytes of the image each record names (`image`), because that hash is
what the origin signed, and a verifier holding the bytes can prove the picture is the one the
origin published; a digest alone would prove nothing about a picture police do not have. A
profile's other images are not covered by any origin's signature, so they are not carried.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from . import audit, disclosures, handling, images, peers, store, untrusted
from .client import PeerClient
from .dataview import fetch_profile, walk
from .documents import evidence as doc
from .errors import DiscnodeError, InvalidInput, NotFound, Refused
from .exports import write_private
from .home import Home, today
from .identity import parse_node_id
from .query import Query

#: Images fetched from partners at once.
IMAGE_FETCHES = 8
#: Why a partner's record is a reference, as the bundle says it.
#: The handling condition (codes.schema.json) under which a record is intelligence only.
NOT_EVIDENTIAL = "not-evidential"
NOT_EVIDENTIAL_REASON = ("its origin graded it not-evidential (intelligence only, not used as evidence without "
                         "the originator's agreement); ask the partnership")
NO_EVIDENCE_TERM = ("the agreement with this partnership does not allow disclosure to police (no evidence "
                    "scope); ask the partnership for the record")


@dataclass
class Exported:
    path: Path
    digest: str
    records: list[str]
    references: list[str]
    images: int
    images_omitted: int
    partners: dict[str, str]    # node ID -> "evidence" (records in) or "reference" (references only)
    sources: dict[str, str]     # node ID -> the walk's status (ok, timeout, ...)

    def to_json(self) -> dict[str, Any]:
        return {"file": str(self.path), "digest": self.digest, "records": self.records,
                "references": self.references, "images": self.images, "images_omitted": self.images_omitted,
                "partners": self.partners, "sources": self.sources}


def _profile_only(record: dict[str, Any]) -> dict[str, Any]:
    """The record as its origin signed it, without what the Dataview adds beside it."""
    return {k: v for k, v in record.items() if k not in ("origin_name", "images", "links", "saved_images")}


def _who() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without a passwd entry)
        return f"uid {os.getuid()}"


def parse_refs(refs: Iterable[str]) -> list[tuple[str, str]]:
    out = []
    for ref in refs:
        node_part, sep, profile_id = ref.partition(":")
        if not sep:
            raise InvalidInput(f"--profile {ref!r}: give NODE_ID:PROFILE_ID (as `discnode search` shows)")
        out.append((parse_node_id(node_part), untrusted.checked("profile_id", profile_id, "profile ID")))
    if len(set(out)) != len(out):
        raise InvalidInput("a profile is given twice")
    return out


async def _select(home: Home, query: Query | None, partnerships: list[str], refs: list[tuple[str, str]],
                  timeout: float, client: PeerClient) -> tuple[list[dict[str, Any]], dict[str, str]]:
    if query is not None:
        records, statuses = await walk(home, query, timeout=timeout, partnerships=partnerships, client=client)
        return [_profile_only(r) for r in records], {s.node_id: s.status for s in statuses}
    records = []
    for node_id, profile_id in refs:
        if node_id == home.node_id:
            record = store.get_profile(home.db, profile_id)
            if record.get("origin") != home.node_id:
                raise NotFound(f"no profile {profile_id!r} of this node")
        else:
            record = await fetch_profile(home, f"{node_id}:{profile_id}", client=client)
        records.append(_profile_only(record))
    return records, {}


async def _partner_image(client: PeerClient, peer: peers.Peer, sha: str, limit: asyncio.Semaphore,
                         timeout: float) -> dict[str, str]:
    untrusted.checked("sha256_hex", sha, "image hash")  # it becomes a URL path segment
    async with limit:
        try:
            reply = await client.request(peer, "GET", f"/v1/images/{sha}?size=full", timeout=timeout)
        except DiscnodeError as exc:
            return doc.image_entry(sha, None, f"the partnership did not send it: {str(exc)[:200]}")
    if reply.status != 200:
        return doc.image_entry(sha, None, f"the partnership did not send it (HTTP {reply.status})")
    if hashlib.sha256(reply.body).hexdigest() != sha:
        return doc.image_entry(sha, None, "the partnership sent bytes of another hash; not carried")
    return doc.image_entry(sha, reply.body)


async def collect(home: Home, *, query: Query | None, partnerships: list[str], refs: list[tuple[str, str]],
                  timeout: float) -> tuple[dict[str, Any], Exported]:
    """The signed bundle of the selection, and what it holds (its path not yet set)."""
    day = today()
    mine = home.descriptor()  # one descriptor of this node, as exporter and as origin
    async with PeerClient(home.identity, timeout=timeout) as client:
        records, sources = await _select(home, query, partnerships, refs, timeout, client)
        origins: dict[str, dict[str, Any]] = {}
        kinds: dict[str, str] = {}
        included: list[tuple[dict[str, Any], Any]] = []
        references: list[dict[str, Any]] = []
        limit = asyncio.Semaphore(IMAGE_FETCHES)
        fetches: list[tuple[int, asyncio.Task[dict[str, str]]]] = []
        for record in records:
            origin = record["origin"]
            if NOT_EVIDENTIAL in handling.conditions_of(record):
                # Graded "intelligence only" by its origin (own or partner's): never evidence here.
                descriptor = mine if origin == home.node_id else peers.get(home.db, origin).descriptor
                if origin != home.node_id:
                    kinds.setdefault(origin, "reference")
                references.append(doc.reference(record, descriptor, NOT_EVIDENTIAL_REASON))
                continue
            if origin == home.node_id:
                origins.setdefault(origin, mine)
                sha = record["image"]
                image = None
                if sha:
                    try:
                        image = doc.image_entry(sha, images.read(home.images_root, sha, thumb=False))
                    except OSError:
                        image = doc.image_entry(sha, None, "missing from the exporting node's image store")
                included.append((record, image))
                continue
            peer = peers.get(home.db, origin)
            share = peers.agreement(home.db, home.node_id, origin, day).share
            if "evidence" not in share:
                kinds[origin] = kinds.get(origin, "reference")
                references.append(doc.reference(record, peer.descriptor, NO_EVIDENCE_TERM))
                continue
            kinds[origin] = "evidence"
            origins.setdefault(origin, dict(peer.descriptor))
            sha = record["image"]
            if sha and "images" in share:
                fetches.append((len(included), asyncio.create_task(
                    _partner_image(client, peer, sha, limit, timeout))))
                included.append((record, None))
            else:
                included.append((record, doc.image_entry(sha, None, "the agreement with this partnership does "
                                                                    "not share images") if sha else None))
        try:
            for index, task in fetches:
                included[index] = (included[index][0], await task)
        finally:
            for _, task in fetches:
                task.cancel()
    selection = {"filters": _filters(query), "partnerships": sorted(partnerships),
                 "profiles": [f"{n}:{p}" for n, p in refs]}
    bundle = doc.build(home.identity, mine, store.now_ts(), selection, origins.values(), included,
                       references)
    carried = [i["image"] for i in bundle["records"] if i["image"]]
    return bundle, Exported(Path(), bundle["digest"], [f"{i['record']['origin']}:{i['record']['id']}"
                                                       for i in bundle["records"]],
                            [f"{r['origin']}:{r['id']}" for r in references],
                            sum("jpeg" in i for i in carried), sum("omitted" in i for i in carried), kinds, sources)


def _filters(query: Query | None) -> dict[str, Any] | None:
    if query is None:
        return None
    return {k: v for k, v in query.to_wire().items() if k not in ("limit", "after")}


def export(home: Home, path: Path, *, query: Query | None, partnerships: Iterable[str] = (),
           refs: Iterable[str] = (), timeout: float = 3.0) -> Exported:
    """Write the bundle to `path` (owner-only) and audit the disclosure: which records (and which
    only by reference), to which file, by whom. Nothing is written if the selection fails."""
    wanted = sorted({parse_node_id(p) for p in partnerships})
    parsed = parse_refs(refs)
    if parsed and (query is not None or wanted):
        raise InvalidInput("give search filters or --profile references, not both")
    if not parsed and query is None:
        raise InvalidInput("nothing selected: give search filters or --profile NODE_ID:PROFILE_ID")
    for node_id, _ in parsed:
        if node_id != home.node_id and not peers.agreement(home.db, home.node_id, node_id, today()).active:
            raise Refused(f"no active agreement with {node_id}")
    bundle, result = asyncio.run(collect(home, query=query.checked() if query else None, partnerships=wanted,
                                         refs=parsed, timeout=timeout))
    if not result.records and not result.references:
        raise NotFound("no profiles match: nothing exported")
    path = Path(path)
    write_private(path, doc.encode(bundle))
    result.path = path
    try:
        own = [(r["id"], int(r.get("revision", 0))) for r in (i["record"] for i in bundle["records"])
               if r["origin"] == home.node_id]
        audit.append(home.db, disclosures.EVIDENCE, "", file=str(path.resolve()), by=_who(), digest=result.digest,
                     records=result.records, references=result.references, images=result.images,
                     partners=result.partners, **{disclosures.EVIDENCE_FIELD: disclosures.encode(own)})
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()  # a disclosure that cannot be audited does not happen
        raise
    return result
