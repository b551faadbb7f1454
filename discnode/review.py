"""The review queue: everything waiting for this node's administrator, as typed items.

One list, so that every view of "what needs me" agrees: `discnode review` and `discnode profile
review` print it, and the inbox and `status` (later) are views of it. Kinds:

- profile: one of our profiles past its review-by date (no longer shared until reviewed) or
  within `days` of it;
- retention: one of our profiles within retention.NOTICE_DAYS of its retention ceiling (deleted
  once past it, unless a review keeps it);
- offer: a partnership's sharing offer awaiting our accept or reject;
- agreement: an agreement past its review-by date (lapsed: nothing is shared) or within `days`;
- undelivered: a document we signed (consent, proposal, outcome) that its partner has not yet received;
- proposal: a partner's proposal identifying one of our ID-sought profiles, to confirm or decline;
- sighting: a partner saw the person in one of our profiles (received in the last 14 days);
- link: a partner proposes that one of our profiles and one of its own are the same person;
- reveal: a match-only partner's request to see the profile behind a hit (private matching);
- notice: a partner erased or corrected one of its profiles this node received (received in the last
  30 days): what was dropped, and the files exported from it to delete by hand.

`discnode inbox` shows the same queue with who each item is from and what it is about.

Building items from rows is pure (`profile_item`, `agreement_item`, ...); `queue` reads the node.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from . import handling, links, notices, peers, proposals, sightings, store
from .consent import State

#: How far ahead "near its review date" looks, unless told otherwise.
DEFAULT_DAYS = 30
MAX_DAYS = 366


class Kind(str, enum.Enum):
    PROFILE = "profile"
    RETENTION = "retention"
    OFFER = "offer"
    AGREEMENT = "agreement"
    UNDELIVERED = "undelivered"
    REVEAL = "reveal"
    PROPOSAL = "proposal"
    SIGHTING = "sighting"
    LINK = "link"
    NOTICE = "notice"


#: What deals with each kind of item, in general (each item's `action` is the exact command).
HINTS = {
    Kind.PROFILE: "discnode profile review PROFILE_ID --reason TEXT [--days N]",
    Kind.RETENTION: "discnode profile review PROFILE_ID --reason TEXT keeps it; else it is deleted after its date",
    Kind.OFFER: "discnode peer accept NODE_ID (or peer reject), after checking the ID by phone",
    Kind.AGREEMENT: "after it lapses, a new offer: discnode peer add URL --expect NODE_ID",
    Kind.UNDELIVERED: "sent by `discnode serve` when the partner is reachable",
    Kind.REVEAL: "discnode reveal allow REQUEST_ID (or reveal decline)",
    Kind.LINK: "discnode link confirm LINK_ID  (or: link decline LINK_ID)",
    Kind.SIGHTING: "discnode profile show PROFILE_ID lists its sightings",
    Kind.PROPOSAL: "discnode proposal confirm PROPOSAL_ID [--reason TEXT]  (or: proposal decline ID --reason TEXT)",
    Kind.NOTICE: "delete by hand the files it lists (exports of the erased or corrected profile)",
}

#: The inbox's word for each kind: a profile or an agreement due for review is a "review".
INBOX_KINDS = {Kind.PROFILE: "review", Kind.AGREEMENT: "review", Kind.RETENTION: "review"}


def inbox_kind(kind: Kind) -> str:
    return INBOX_KINDS.get(kind, kind.value)


@dataclass(frozen=True)
class Item:
    kind: Kind
    #: What to act on: a profile ID, a partner's node ID, or a document hash.
    ref: str
    summary: str
    #: The date it falls due (ISO), if it has one.
    due: str | None = None
    #: Past due: for a profile or an agreement, nothing of it is shared any more.
    overdue: bool = False
    #: The command that deals with it.
    action: str = ""
    #: Who it is from (a partner's node ID), what it is about (a profile ID or a node ID), and when
    #: it arrived, where those apply.
    sender: str = ""
    about: str = ""
    created: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "ref": self.ref, "summary": self.summary, "due": self.due,
                "overdue": self.overdue, "action": self.action}

    def inbox_json(self) -> dict[str, Any]:
        return {"id": self.ref, "kind": inbox_kind(self.kind), "subject": self.kind.value, "from": self.sender,
                "about": self.about, "created": self.created, "summary": self.summary, "due": self.due,
                "overdue": self.overdue, "action": self.action}


def _sort_key(item: Item) -> tuple[str, str, str]:
    return (item.due or "", item.kind.value, item.ref)


def profile_item(row: Mapping[str, Any], today: dt.date) -> Item:
    name = f"{row['last_name']}, {row['first_name']}" if row["status"] == "identified" else "ID-sought"
    if handling.is_minor({"dob": row.get("dob") or None, "age_max": row.get("age_max")}, today):
        name += ", under 18: reviewed every 6 months"
    overdue = row["review_by"] < today.isoformat()
    if not overdue:
        state = "review due"
    else:
        state = "past its review date" + ("" if row["local_only"] else ": not shared")
    return Item(Kind.PROFILE, row["id"], f"{name} ({state})", row["review_by"], overdue,
                f"discnode profile review {row['id']} --reason TEXT", about=row["id"])


def retention_item(standing: Any, today: dt.date) -> Item:
    """A profile at or near its retention ceiling (a retention.Standing)."""
    overdue = standing.until < today.isoformat()
    state = ("past its retention ceiling: deleted at the next retention run" if overdue else
             f"deleted after {standing.until} ({standing.basis} {standing.since}) unless reviewed")
    return Item(Kind.RETENTION, standing.id, f"{standing.name} ({state})", standing.until, overdue,
                f"discnode profile review {standing.id} --reason TEXT", about=standing.id)


def agreement_item(row: Mapping[str, Any]) -> Item | None:
    """An offer awaiting us, or an agreement past or near its review date; None if neither."""
    if row["state"] == State.PENDING.value:
        return Item(Kind.OFFER, row["node_id"], f"{row['name']} offers to share ({', '.join(row['share'])})",
                    None, False,
                    f"discnode peer accept {row['node_id']}  (or: peer reject)", sender=row["node_id"],
                    about=row["node_id"])
    if row["state"] in (State.ACTIVE.value, State.LAPSED.value) and row["review_by"]:
        lapsed = row["state"] == State.LAPSED.value
        return Item(Kind.AGREEMENT, row["node_id"],
                    f"agreement with {row['name']} " + ("has lapsed: nothing is shared" if lapsed else "due for review"),
                    row["review_by"], lapsed, f"a new offer: discnode peer add {row['url']} --expect {row['node_id']}",
                    about=row["node_id"])
    return None


def undelivered_item(digest: str, doc: Mapping[str, Any], names: Mapping[str, str]) -> Item:
    to = doc.get("to", "")
    return Item(Kind.UNDELIVERED, digest, f"{doc.get('type', '?')} not yet delivered to {names.get(to, to)}",
                None, False, "discnode serve delivers it when the partner is reachable", about=to,
                created=doc.get("issued_at"))


def proposal_item(view: Mapping[str, Any], names: Mapping[str, str]) -> Item:
    person = view["person"]
    who = f"{person['first_name']} {person['last_name']}" + (f" (born {person['dob']})" if person["dob"] else "")
    sender = names.get(view["from"], view["from"])
    return Item(Kind.PROPOSAL, view["id"], f"{sender} proposes profile {view['about']} is {who}", None, False,
                f"discnode proposal confirm {view['id']}  (or: proposal decline {view['id']} --reason TEXT)",
                sender=view["from"], about=view["about"], created=view["created"])


def sighting_item(view: Mapping[str, Any], names: Mapping[str, str]) -> Item:
    sender = names.get(view["from"], view["from"])
    return Item(Kind.SIGHTING, view["id"], f"{sender} saw profile {view['about']} at {view['at']} on {view['when']}",
                None, False, f"discnode profile show {view['about']}", sender=view["from"], about=view["about"],
                created=view["created"])


def link_item(view: Mapping[str, Any], names: Mapping[str, str]) -> Item:
    sender = names.get(view["peer"], view["peer"])
    return Item(Kind.LINK, view["id"], f"{sender} proposes its profile {view['theirs']} is our {view['mine']}",
                None, False, f"discnode link confirm {view['id']}  (or: link decline {view['id']})",
                sender=view["peer"], about=view["mine"], created=view["created"])


def notice_item(view: Mapping[str, Any], names: Mapping[str, str]) -> Item:
    """A partner's erasure or correction of its profile: the files exported from it are named so
    that the administrator can delete them (the node cannot know where copies went from there)."""
    sender = names.get(view["from"], view["from"])
    what = "erased" if view["kind"] == notices.ERASURE else f"corrected (now revision {view['revision']})"
    files = view["files"]
    action = ("delete these files: " + "; ".join(files)) if files else "nothing to do: no file held it"
    summary = f"{sender} {what} its profile {view['about']}"
    dropped = ", ".join(f"{n} {k}" for k, n in view["dropped"].items() if n)
    if dropped:
        summary += f"; dropped here: {dropped}"
    if files:
        summary += f"; {len(files)} exported file(s) hold it, delete by hand: " + ", ".join(files)
    return Item(Kind.NOTICE, view["id"], summary, None, False, action, sender=view["from"],
                about=f"{view['from']}:{view['about']}", created=view["created"])


def reveal_item(row: Mapping[str, Any], names: Mapping[str, str]) -> Item:
    """A pending reveal request: which partner asked to see which of our profiles."""
    peer = row["peer"]
    return Item(Kind.REVEAL, row["id"],
                f"{names.get(peer, peer)} asks to see profile {', '.join(row['profiles'])} (a private-matching hit)",
                None, False, f"discnode reveal allow {row['id']}  (or: reveal decline {row['id']})")


def queue(db: store.DB, me: str, today: dt.date, *, days: int = DEFAULT_DAYS,
          kinds: Iterable[Kind] = tuple(Kind), retention_months: int | None = None) -> list[Item]:
    """Everything waiting for the administrator, soonest due first (undated items last).
    `retention_months`: the node's ceiling (config); retention items need it."""
    wanted = set(kinds)
    until = (today + dt.timedelta(days=days)).isoformat()
    items: list[Item] = []
    if Kind.PROFILE in wanted:
        items += [profile_item(row, today) for row in store.profiles_due(db, me, until)]
    if Kind.RETENTION in wanted and retention_months is not None:
        from . import retention
        items += [retention_item(s, today) for s in retention.due(db, me, retention_months, today,
                                                                  max(days, retention.NOTICE_DAYS))]
    if wanted & {Kind.OFFER, Kind.AGREEMENT}:
        for row in peers.listing(db, me, today):
            item = agreement_item(row)
            if item and item.kind in wanted and (item.kind is Kind.OFFER or (item.due or "") <= until):
                items.append(item)
    names = {p.node_id: p.name for p in peers.all_peers(db)}
    if Kind.UNDELIVERED in wanted:
        items += [undelivered_item(digest, doc, names) for digest, doc in peers.undelivered(db, me)]
        items += [undelivered_item(digest, doc, names) for digest, _, doc in
                  proposals.undelivered(db, me) + sightings.undelivered(db, me) + links.undelivered(db, me)
                  + notices.undelivered(db, me)]
    if Kind.SIGHTING in wanted:
        items += [sighting_item(view, names) for view in sightings.recent(db, me)]
    if Kind.LINK in wanted:
        items += [link_item(view, names) for view in links.pending_received(db, me)]
    if Kind.PROPOSAL in wanted:
        items += [proposal_item(view, names) for view in proposals.pending_received(db, me)]
    if Kind.NOTICE in wanted:
        items += [notice_item(view, names) for view in notices.recent_received(db, me)]
    if Kind.REVEAL in wanted:
        from .match import reveals
        items += [reveal_item(row, names) for row in reveals(db) if row["state"] == "pending"]
    dated = sorted((i for i in items if i.due), key=_sort_key)
    return dated + sorted((i for i in items if not i.due), key=_sort_key)
