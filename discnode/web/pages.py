"""What each page shows, as plain data: the HTML templates render it and the `.json` twins send it.

Each function reads request parameters, calls the library (dataview, facets, profiles, peers,
peering, audit) and returns a JSON-able dict. No SQL and no filtering here: the Query the
parameters become is the same one the CLI builds, run by the same functions.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import asdict, dataclass
from typing import Any, Mapping
from urllib.parse import urlencode

from multidict import MultiDict, MultiDictProxy

from .. import audit, facets, handling, peers, profiles, schemas, store
from ..consent import (ALLOWED, DEFAULT_MATCH_QUOTA, DEFAULT_PURPOSE, DEFAULT_SHARE, DEFAULT_TERM_DAYS, SHARE_KINDS,
                       Action, Terms)
from ..dataview import cursor_secret, fetch_profile
from ..dataview import search as federated_search
from ..errors import InvalidInput, NotFound, Refused
from ..home import today
from ..identity import parse_node_id
from ..localapi import Local
from ..query import Query, apply_cursor, encode_cursor, sort_key

Params = MultiDictProxy[str] | MultiDict[str]
SHA256 = re.compile(r"[0-9a-f]{64}")
PROFILE_ID = re.compile(r"[a-z2-7]{12}")
#: Facet counts of one query are reused this long while the administrator pages through it.
FACET_SECONDS = 30.0
FILTERS = ("q", "gender", "ethnicity", "build", "status", "tag", "partnership", "age_min", "age_max",
           "excluded", "sort", "desc", "limit", "view")


def _int(params: Params, name: str) -> int | None:
    text = params.get(name, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidInput(f"{name}: {text[:20]!r} is not a whole number") from None


def parse_query(params: Params) -> Query:
    """The Dataview's query string (datasette-style: one parameter per filter, repeated for OR)."""
    excluded = {"": None, "yes": True, "no": False}.get(params.get("excluded", ""))
    if params.get("excluded", "") not in ("", "yes", "no"):
        raise InvalidInput("excluded must be yes or no")
    return Query(text=params.get("q", "").strip() or None, gender=tuple(params.getall("gender", [])),
                 ethnicity=tuple(params.getall("ethnicity", [])), build=tuple(params.getall("build", [])),
                 status=tuple(params.getall("status", [])), tags=tuple(params.getall("tag", [])),
                 age_min=_int(params, "age_min"), age_max=_int(params, "age_max"), excluded=excluded,
                 sort=params.get("sort", "name") or "name", desc=params.get("desc") == "1",
                 limit=_int(params, "limit") or 50).checked()


def _href(params: Params, **changes: Any) -> str:
    """This page's query string with some parameters replaced (None removes one); never a cursor
    unless given, since a cursor belongs to one query."""
    out = MultiDict((k, v) for k, v in params.items() if k in FILTERS and k not in changes and v != "")
    for key, value in changes.items():
        if value is None:
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            out.add(key, v)
    return "?" + urlencode(list(out.items()))


def _toggle(params: Params, name: str, value: str) -> tuple[str, bool]:
    current = params.getall(name, [])
    selected = value in current
    values = [v for v in current if v != value] if selected else [*current, value]
    return _href(params, **{name: values or None}), selected


def thumb_url(record: Mapping[str, Any]) -> str | None:
    return f"/thumb/{record['origin']}/{record['image']}" if record.get("image") else None


def _row(record: Mapping[str, Any]) -> dict[str, Any]:
    shown = {k: v for k, v in record.items() if k != "sig"}
    name = f"{record['first_name']} {record['last_name']}".strip()
    return {**shown, "display_name": name or "ID sought", "href": f"/profile/{record['origin']}/{record['id']}",
            "thumb": thumb_url(record), **_handling(record)}


def _handling(record: Mapping[str, Any]) -> dict[str, Any]:
    """What the Dataview shows of a record's grading, age and withheld fields."""
    return {"grading_text": handling.format_grading(handling.grading_of(record)),
            "graded": "grading" in record,
            "conditions": handling.conditions_of(record),
            "minor": handling.is_minor(record, today()),
            "ethnicity_shown": record.get("ethnicity", "withheld")}


def _cached_counts(local: Local, key: str) -> tuple[facets.Counts, list[facets.SourceCounts]] | None:
    cached = local.cache.get(("facets", key))
    return cached[1] if cached and cached[0] > time.monotonic() else None


def _keep_counts(local: Local, key: str, result: tuple[facets.Counts, list[facets.SourceCounts]]) -> None:
    """Counted afresh for a query's first page; reused for its next pages (for FACET_SECONDS)."""
    local.cache[("facets", key)] = (time.monotonic() + FACET_SECONDS, result)
    if len(local.cache) > 200:
        now = time.monotonic()
        local.cache = {k: v for k, v in local.cache.items() if v[0] > now}


async def dataview(local: Local, params: Params) -> dict[str, Any]:
    home = local.home
    query = parse_query(params)
    cursor = params.get("cursor") or None
    wanted = {parse_node_id(p) for p in params.getall("partnership", [])}
    key = repr((query.to_wire(), sorted(wanted)))
    cached = _cached_counts(local, key) if cursor is not None else None
    # One request per partner: the page and its counts together (dataview.search, counts=True).
    page = await federated_search(home, query, cursor=cursor, timeout=local.timeout, partnerships=wanted,
                                  client=local.client, counts=cached is None)
    if cached is None:
        cached = (page.counts or facets.Counts(), page.counted)  # asked for, so search set them
        _keep_counts(local, key, cached)
    counts, counted = cached
    audit.append(home.db, "search", "", query=query.to_wire(), results=len(page.results), all=False,
                 contact_sheet=None, peers={p.node_id: p.status for p in page.peers}, via="web")
    facet_rows = facets.labelled(counts)
    for name, rows in facet_rows.items():
        param = "tag" if name == "tags" else name
        for row in rows:
            row["href"], row["selected"] = _toggle(params, param, row["code"])
    by_source = {s.node_id: s for s in counted}
    sources = []
    for status in page.peers:
        c = by_source.get(status.node_id)
        href, selected = _toggle(params, "partnership", status.node_id)
        sources.append({**status.to_json(), "total": c.total if c else None,
                        "facets_status": c.status if c else "none", "facets_error": c.error if c else "",
                        "href": href, "selected": selected})
    uncounted = [s.name for s in counted if s.status != "ok"]
    withholding = [s.name for s in page.peers if s.withheld]
    view = "list" if params.get("view") == "list" else "grid"
    return {
        "node": {"name": home.config.name, "node_id": home.node_id},
        "query": query.to_wire(), "cursor": cursor, "view": view,
        "form": {k: params.getall(k, []) for k in FILTERS},
        "codes": {"sort": {c: schemas.code_labels("sort").get(c, c) for c in schemas.codes("sort")}},
        "results": [_row(r) for r in page.results],
        "total": counts.total, "uncounted": uncounted, "ethnicity_withheld_by": withholding,
        "facets": facet_rows, "partnerships": sources,
        "next": _href(params, view=view, cursor=page.next_cursor) if page.next_cursor else None,
        "first": _href(params, view=view) if cursor else None,
        "grid_href": _href(params, view="grid", cursor=cursor),
        "list_href": _href(params, view="list", cursor=cursor),
    }


async def profile(local: Local, origin: str, profile_id: str) -> dict[str, Any]:
    home = local.home
    origin = parse_node_id(origin)
    if not PROFILE_ID.fullmatch(profile_id):
        raise NotFound("no such profile")
    if origin == home.node_id:
        record = profiles.show(home, profile_id)
        provenance = {"partnership": home.config.name, "node_id": home.node_id, "own": True,
                      "signature": "signed by this node when written"}
    else:
        record = await fetch_profile(home, f"{origin}:{profile_id}", client=local.client)
        audit.append(home.db, "viewed-peer-profile", origin, id=profile_id, saved_images=None, via="web")
        provenance = {"partnership": record["origin_name"], "node_id": origin, "own": False,
                      "signature": "checked: signed by the partnership's pinned key; schema and origin checked"}
    past_review = record["review_by"] < today().isoformat()
    shown = {k: v for k, v in record.items() if k != "sig"}
    shown["incidents"] = [{**i, "grading_text": handling.format_grading(handling.grading_of(i))}
                          for i in record["incidents"]]
    return {"profile": {**shown, **_handling(record)}, "provenance": provenance,
            "images": [{"sha256": sha, "thumb": f"/thumb/{origin}/{sha}", "full": f"/image/{origin}/{sha}"}
                       for sha in record["images"] if SHA256.fullmatch(sha)],
            "past_review": past_review, "labels": _labels()}


def _labels() -> dict[str, dict[str, str]]:
    return {name: schemas.code_labels(code) for name, code in
            (("gender", "gender"), ("ethnicity", "ethnicity"), ("build", "build"), ("status", "status"),
             ("tags", "offence_tag"))}


def mine(local: Local, params: Params) -> dict[str, Any]:
    home = local.home
    secret = cursor_secret(home)  # signed like the Dataview's cursors, so an altered one is refused
    query = apply_cursor(Query(limit=100), params.get("cursor") or None, secret=secret)
    rows = [r for r in store.search(home.db, query, today()) if r["origin"] == home.node_id]
    more = len(rows) == query.limit
    day = today().isoformat()
    return {"node": {"name": home.config.name, "node_id": home.node_id},
            "profiles": [{**_row(r), "past_review": r["review_by"] < day} for r in rows],
            "next": "?" + urlencode({"cursor": encode_cursor(query, sort_key(rows[-1], query.sort), secret=secret)})
            if more else None}


def profile_form(local: Local, profile_id: str | None) -> dict[str, Any]:
    record = store.get_profile(local.home.db, profile_id) if profile_id else None
    if record and record["origin"] != local.home.node_id:
        raise Refused("only this node's own profiles can be edited")
    return {"profile": record,
            "grading_text": handling.format_grading(handling.grading_of(record)) if record else "",
            "codes": {name: schemas.code_labels(code) for name, code in
                      (("gender", "gender"), ("ethnicity", "ethnicity"), ("build", "build"),
                       ("status", "status"), ("tags", "offence_tag"), ("handling_condition", "handling_condition"))}}


TEXT_INPUTS = ("first_name", "last_name", "status", "gender", "ethnicity", "build", "dob", "age_min", "age_max",
               "height_cm", "aliases", "marks", "notes", "last_seen", "review_by", "grading", "minor_reason")


def fields_from_form(form: Mapping[str, Any], tags: list[str]) -> dict[str, Any]:
    """Form fields as profiles.normalise takes them (text, as from a CSV row)."""
    fields: dict[str, Any] = {k: str(form.get(k, "")) for k in TEXT_INPUTS if isinstance(form.get(k, ""), str)}
    fields["tags"] = tags
    fields["local_only"] = "true" if form.get("local_only") == "on" else "false"
    incident = [str(form.get(f"incident_{k}", "")).strip() for k in ("date", "place", "type", "summary")]
    if any(incident):
        fields["incidents"] = [dict(zip(("date", "place", "type", "summary"), incident))]
    exclusion = [str(form.get(f"exclusion_{k}", "")).strip() for k in ("from", "until", "where")]
    if any(exclusion):
        fields["exclusion"] = dict(zip(("from", "until", "where"), exclusion))
    elif form.get("clear_exclusion") == "on":
        fields["exclusion"] = None
    return fields


def add_profile(local: Local, fields: dict[str, Any], image: bytes | None) -> dict[str, Any]:
    return profiles.add(local.home, fields, image_data=[image] if image else [])


def edit_profile(local: Local, profile_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    current = store.get_profile(local.home.db, profile_id)
    if "incidents" in fields:
        fields["incidents"] = current["incidents"] + fields["incidents"]
    return profiles.edit(local.home, profile_id, fields)


def add_photo(local: Local, profile_id: str, data: bytes) -> dict[str, Any]:
    """A photo uploaded with an edit: through profiles.add_image, which takes a file."""
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory(prefix="discnode-upload-") as tmp:
        path = Path(tmp) / "upload"
        path.write_bytes(data)
        return profiles.add_image(local.home, profile_id, path)


def review_profile(local: Local, profile_id: str) -> dict[str, Any]:
    """Reviewed today: shared again for another year (profiles.DEFAULT_REVIEW_DAYS)."""
    until = today() + dt.timedelta(days=profiles.DEFAULT_REVIEW_DAYS)
    return profiles.edit(local.home, profile_id, {"review_by": until.isoformat()})


SHARE_LABELS = {"profiles": "Profiles", "images": "Photos", "match": "Match only (hit or no hit, no browsing)",
                "statistics": "Statistics (counts only, no identifiers)",
                "ethnicity": "Ethnicity (otherwise withheld from every record)",
                "minors": "Profiles of under-18s (each with its recorded reason)",
                "conditional": "Records graded C, under the conditions ticked below",
                "evidence": "Evidence exports"}


@dataclass(frozen=True)
class OfferForm:
    """The partners page's offer form as typed: shown again, as typed, with an error."""
    url: str = ""
    expect: str = ""
    purpose: str = DEFAULT_PURPOSE
    share: tuple[str, ...] = DEFAULT_SHARE
    review_by: str = ""
    match_quota: str = ""
    #: With `conditional`: the handling conditions the partner accepts (`--handling-condition`).
    handling_conditions: tuple[str, ...] = ()

    @classmethod
    def blank(cls) -> "OfferForm":
        return cls(review_by=(today() + dt.timedelta(days=DEFAULT_TERM_DAYS)).isoformat())

    @classmethod
    def from_post(cls, form: Mapping[str, Any], share: list[Any], conditions: list[Any] = ()) -> "OfferForm":
        def text(name: str, limit: int) -> str:
            value = form.get(name, "")
            if not isinstance(value, str) or len(value) > limit:
                raise InvalidInput(f"{name} must be text of at most {limit} characters")
            return value.strip()
        if any(not isinstance(s, str) for s in share) or len(share) > len(SHARE_KINDS):
            raise InvalidInput(f"share must list one or more of {', '.join(SHARE_KINDS)}")
        known = schemas.codes("handling_condition")
        if any(not isinstance(c, str) for c in conditions) or len(conditions) > len(known):
            raise InvalidInput(f"handling conditions must be some of {', '.join(known)}")
        return cls(text("url", 300), text("expect", 64), text("purpose", 600), tuple(share), text("review_by", 20),
                   text("match_quota", 10), tuple(conditions))

    def terms(self) -> Terms:
        """The signed terms, checked as `peer add` checks them (a match-only offer defaults to the
        CLI's daily quota)."""
        quota: int | None = None
        if self.match_quota:
            try:
                quota = int(self.match_quota)
            except ValueError:
                raise InvalidInput(f"match quota: {self.match_quota!r} is not a whole number") from None
        elif "match" in self.share:
            quota = DEFAULT_MATCH_QUOTA
        conditions = tuple(sorted(set(self.handling_conditions))) or None
        return Terms(self.purpose, self.share, self.review_by, quota, conditions).checked(today())


async def make_offer(local: Local, offer: OfferForm) -> dict[str, Any]:
    """`discnode peer add URL --expect NODE_ID` with these terms: the same library function."""
    from ..peering import add_peer
    if not offer.url or not offer.expect:
        raise InvalidInput("give the partner's address (https://HOST:PORT) and the node ID its administrator told you")
    terms = offer.terms()  # refused here, before the network is asked anything
    return await add_peer(local.home, offer.url, offer.expect, terms, client=local.client)


def partners(local: Local, typed: OfferForm | None = None, offer_error: str | None = None,
             offered: str | None = None) -> dict[str, Any]:
    home = local.home
    day = today()
    rows = []
    for row in peers.listing(home.db, home.node_id, day):
        agreement = peers.agreement(home.db, home.node_id, row["node_id"], day)
        offer = agreement.offer
        actions = [a.value for a in (Action.ACCEPT, Action.REJECT, Action.REVOKE) if agreement.state in ALLOWED[a]]
        rows.append({**row, "terms": dict(offer["terms"]) if offer else None,
                     "offered_by": ("us" if offer["from"] == home.node_id else "them") if offer else None,
                     "offered_at": offer["issued_at"] if offer else None, "actions": actions})
    undelivered = [{"type": doc["type"], "to": doc["to"], "issued_at": doc["issued_at"],
                    "name": next((r["name"] for r in rows if r["node_id"] == doc["to"]), doc["to"])}
                   for _, doc in peers.undelivered(home.db, home.node_id)]
    sent = next((r for r in rows if r["node_id"] == offered), None) if offered else None
    return {"node": {"name": home.config.name, "node_id": home.node_id}, "partners": rows,
            "undelivered": undelivered, "offer": asdict(typed or OfferForm.blank()), "offer_error": offer_error,
            "offered": sent, "share_kinds": {k: SHARE_LABELS.get(k, k.capitalize()) for k in SHARE_KINDS},
            "handling_conditions": {c: schemas.code_labels("handling_condition").get(c, c)
                                    for c in schemas.codes("handling_condition")},
            "review_min": (today() + dt.timedelta(days=1)).isoformat(),
            "review_max": (today() + dt.timedelta(days=3 * 365)).isoformat()}


def partner(local: Local, node_id: str) -> dict[str, Any]:
    node_id = parse_node_id(node_id)
    for row in partners(local)["partners"]:
        if row["node_id"] == node_id:
            return row
    raise NotFound(f"no partner {node_id}")


async def respond(local: Local, node_id: str, action: str) -> dict[str, Any]:
    from ..peering import respond as peering_respond
    if action not in ("accept", "reject", "revoke"):
        raise InvalidInput("unknown action")
    return await peering_respond(local.home, node_id, Action(action), client=local.client)


def audit_log(local: Local, params: Params) -> dict[str, Any]:
    home = local.home
    limit = _int(params, "limit") or 100
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be 1 to 1000")
    peer = params.get("peer") or None
    if peer:
        peer = parse_node_id(peer)
    verdict = audit.verify(home.db)
    return {"node": {"name": home.config.name, "node_id": home.node_id}, "peer": peer,
            "verify": {"ok": verdict.ok, "entries": verdict.entries, "first_bad": verdict.first_bad,
                       "reason": verdict.reason, "archived": audit.archived_through(home.db)[0]},
            "entries": [{**e, "detail_text": _detail(e["detail"])}
                        for e in reversed(audit.entries(home.db, limit=limit, peer=peer))]}


def _detail(detail: Mapping[str, Any]) -> list[str]:
    import json
    return [f"{k}={v if isinstance(v, str) else json.dumps(v, sort_keys=True)}"
            for k, v in detail.items() if v is not None]


#: Thumbnails kept in the daemon's memory (content-addressed, so never stale): ~10 KB each.
THUMB_CACHE = 2000
MAX_IMAGE = 12 * 1024 * 1024


async def image_bytes(local: Local, origin: str, sha: str, *, thumb: bool) -> bytes:
    """An image for the browser, from this origin: our own from disk, a partner's fetched by the
    daemon over the peer API (the browser never talks to a partner). A full image must hash to the
    name it was asked by; a thumbnail (a re-encoding) must at least be a JPEG."""
    import hashlib

    from ..images import read
    home = local.home
    origin = parse_node_id(origin)
    if not SHA256.fullmatch(sha):
        raise NotFound("no such image")
    key = ("thumb" if thumb else "full", origin, sha)
    cached = local.cache.get(key)
    if cached is not None:
        return cached[1]
    if origin == home.node_id:
        try:
            data = read(home.images_root, sha, thumb)
        except OSError:
            raise NotFound("no such image") from None
    else:
        peer = peers.get(home.db, origin)
        if not peers.agreement(home.db, home.node_id, origin, today()).active:
            raise Refused(f"no active agreement with {peer.name}")
        reply = await local.client.request(peer, "GET", f"/v1/images/{sha}?size={'thumb' if thumb else 'full'}",
                                           timeout=local.timeout)
        if reply.status != 200:
            raise NotFound(f"{peer.name} did not send that image (HTTP {reply.status})")
        data = reply.body
        if len(data) > MAX_IMAGE or not data.startswith(b"\xff\xd8\xff"):
            raise NotFound(f"{peer.name} sent something that is not a JPEG image")
        if not thumb and hashlib.sha256(data).hexdigest() != sha:
            raise NotFound(f"{peer.name} sent an image that does not match its hash")
    if thumb:
        local.cache[key] = (float("inf"), data)
        thumbs = [k for k in local.cache if isinstance(k, tuple) and k[0] == "thumb"]
        for old in thumbs[: max(0, len(thumbs) - THUMB_CACHE)]:
            del local.cache[old]
    return data


#: The inbox's groups, in the order the page shows them (review.inbox_kind's words), with what to
#: do next for each.
INBOX_GROUPS = (
    ("proposal", "Proposals", "A partner believes it knows one of your ID-sought people. Confirm to identify "
                              "the profile (its photos, incidents and exclusion are kept), or decline; "
                              "either way the partner is told, with your reason."),
    ("link", "Same-person links", "A partner believes one of its profiles and one of yours are the same person."),
    ("sighting", "Sightings", "A partner saw the person in one of your profiles; the profile lists its sightings."),
    ("offer", "Offers to share", "Check the node ID with the partnership by phone, then accept or reject it on "
                                 "the Partners page."),
    ("review", "Reviews due", "Profiles and agreements past or near their review date."),
    ("reveal", "Reveal requests", "A match-only partner asks to see the profile behind a hit."),
    ("undelivered", "Not yet delivered", "Documents you signed that a partner has not received yet; the node "
                                         "sends them while `discnode serve` runs."),
)


def _inbox_next(item: Any, me: str) -> tuple[str | None, str]:
    """Where in the UI an item is dealt with, and the link's words (None: only the CLI command,
    item.action, does it; a proposal is answered on the inbox page itself)."""
    from ..review import Kind
    if item.kind is Kind.PROFILE:
        return "/mine", "Review it on My profiles"
    if item.kind is Kind.SIGHTING and PROFILE_ID.fullmatch(item.about):
        return f"/profile/{me}/{item.about}", "Open the profile"
    if item.kind is Kind.OFFER:
        return "/partners", "Answer it on the Partners page"
    if item.kind in (Kind.AGREEMENT, Kind.UNDELIVERED):
        return "/partners", "See the Partners page"
    return None, ""


def inbox(local: Local) -> dict[str, Any]:
    """The same queue, and the same items, as `discnode inbox --json` (review.queue), each with the
    page that deals with it."""
    from .. import review
    home = local.home
    own_profile = (review.Kind.PROPOSAL, review.Kind.SIGHTING, review.Kind.LINK, review.Kind.PROFILE,
                   review.Kind.RETENTION)
    items = [{**i.inbox_json(), **dict(zip(("href", "next"), _inbox_next(i, home.node_id))),
              "about_href": f"/profile/{home.node_id}/{i.about}"
              if i.kind in own_profile and PROFILE_ID.fullmatch(i.about) else None}
             for i in review.queue(home.db, home.node_id, today(), retention_months=home.config.retention_months)]
    groups = [{"kind": kind, "title": title, "hint": hint, "items": [i for i in items if i["kind"] == kind]}
              for kind, title, hint in INBOX_GROUPS]
    known = {kind for kind, _, _ in INBOX_GROUPS}
    other = [i for i in items if i["kind"] not in known]  # a kind added to review.py later still shows
    if other:
        groups.append({"kind": "other", "title": "Other", "hint": "", "items": other})
    return {"node": {"name": home.config.name, "node_id": home.node_id}, "items": items,
            "groups": [g for g in groups if g["items"]]}


async def decide_proposal(local: Local, proposal_id: str, action: str, reason: str) -> dict[str, Any]:
    """`discnode proposal confirm|decline`: the same function (peering.decide)."""
    from ..peering import decide
    if action not in ("confirm", "decline"):
        raise InvalidInput("unknown action")
    return await decide(local.home, proposal_id, action == "confirm", client=local.client, reason=reason)
