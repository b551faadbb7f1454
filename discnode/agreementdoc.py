"""The agreement as a document: the signed terms of a sharing agreement, rendered as the data
sharing agreement the ICO's data sharing code lists (parties, purpose, data items, lawful basis,
retention, review, termination), for `discnode peer terms NODE_ID`.

Only what both nodes signed is stated as agreed: the parties (the offer names both node IDs and
carries the offerer's signed descriptor), purpose, scopes shared, match quota, handling conditions,
review date; and
when each side signed. The terms of protocol v1 carry no lawful basis and no retention period, so
those sections say what *this node* applies (its config.toml), marked as this node's policy and
not signed terms. Termination is what the protocol itself guarantees (spec section 7).

`describe` reads the node; `text_lines` and `render_html` are pure.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import jinja2

from . import peers
from .errors import NotFound
from .home import Home
from .signing import document_hash

ENV = jinja2.Environment(loader=jinja2.PackageLoader("discnode", "templates"), autoescape=True,
                         undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

#: What each scope shares: the data items, in an administrator's words.
DATA_ITEMS = {
    "profiles": "Offender profiles the sharing partnership created and has not marked local-only, while within "
                "their review date: names and aliases, date of birth or approximate age, gender, build, height, "
                "distinguishing marks, notes, offence tags, incidents (date, place, type, summary), exclusion "
                "notice, date last seen, handling codes. Each record is signed by the partnership that created "
                "it. Without the scopes below: no ethnicity, no profile of a person under 18, no record graded C.",
    "ethnicity": "Each shared profile's ethnicity code (special category data), to search and count by.",
    "minors": "Profiles of people under 18 (each with its recorded reason and a short review period).",
    "evidence": "Disclosure to the police as evidence: the partner may put the sharing partnership's signed "
                "records and photos (not those graded not-evidential) into an evidence bundle; without this "
                "scope a bundle holds only a reference to each of them.",
    "conditional": "Records graded C whose every handling condition is one of those listed here, which the "
                   "receiving partnership undertakes to honour: {conditions}.",
    "images": "Photographs of those profiles (JPEG, re-encoded, metadata stripped), full size and thumbnail.",
    "match": "Private matching: whether people the partner names (first name, last name, date of birth) are "
             "known, without the holder learning the names or the partner learning who else is held; at most "
             "{quota} names a day; a profile behind a match is revealed only when its holder decides to.",
    "statistics": "Counts of the sharing partnership's own shareable incidents in the last 104 complete weeks, "
                  "by week, month, place as recorded and offence tags, computed on its own premises; no count "
                  "under 5, nor one derivable by subtraction; no profile, name, image or identifier.",
}
#: A scope this text does not know yet (a newer protocol's): named, and pointed at the spec.
UNKNOWN_SCOPE = "As the discnode protocol defines the scope {scope!r} (spec section 7.2)."
TERMINATION = ("Either party may withdraw at any time, at once and without notice: `discnode peer revoke "
               "NODE_ID` signs a revoke of the agreement. The withdrawing node stops sharing the moment it "
               "signs; the other stops as soon as it receives the revoke (its node delivers it, retrying until "
               "it arrives). Nothing is shared after either side withdraws, and a new offer, accepted, is "
               "needed to share again.")
REVIEW = ("The agreement lapses after this date: nothing is shared under it until one party offers again "
          "and the other accepts (the review).")


def describe(home: Home, node_id: str, today: dt.date) -> dict[str, Any]:
    """The current agreement with `node_id` as a document; NotFound without an offer either way."""
    db, me = home.db, home.node_id
    peer = peers.get(db, node_id)
    agreement = peers.agreement(db, me, node_id, today)
    offer = agreement.offer
    if offer is None:
        raise NotFound(f"no agreement with {peer.name} ({node_id}): no offer either way")
    names = {me: home.config.name, node_id: peer.name}
    answers = [d for d in peers.documents(db, node_id) if d.get("offer") == agreement.offer_hash]
    accept = next((d for d in answers if d["type"] == "accept"), None)
    ended = next((d for d in answers if d["type"] in ("revoke", "reject")), None)
    terms = offer["terms"]
    share = list(terms["share"])
    conditions = "; ".join(terms.get("handling_conditions") or ()) or "none listed"
    items = [{"scope": s, "items": DATA_ITEMS.get(s, UNKNOWN_SCOPE).format(
        quota=terms.get("match_daily_quota"), scope=s, conditions=conditions)} for s in share]
    config = home.config
    return {
        "type": "data-sharing-agreement",
        "state": agreement.state.value,
        "parties": [{"name": names[offer["from"]], "node_id": offer["from"], "role": "offered",
                     "signed": offer["issued_at"]},
                    {"name": names[offer["to"]], "node_id": offer["to"], "role": "accepted" if accept else "not accepted",
                     "signed": accept["issued_at"] if accept else None}],
        "this_node": me,
        "purpose": terms["purpose"],
        "data_items": items,
        "match_daily_quota": terms.get("match_daily_quota"),
        "handling_conditions": list(terms.get("handling_conditions") or ()),
        "review_by": terms["review_by"],
        "review": REVIEW,
        "termination": TERMINATION,
        "ended": ended and {"type": ended["type"], "by": names.get(ended["from"], ended["from"]),
                            "signed": ended["issued_at"]},
        "lawful_basis": {"signed": None, "this_node_policy": config.lawful_basis or None,
                         "note": "Not part of the signed terms (protocol v1 terms carry no lawful basis). "
                                 + ("This node's stated basis, from its config.toml [node] lawful_basis."
                                    if config.lawful_basis else
                                    "This node has not stated one: set [node] lawful_basis in its config.toml.")},
        "retention": {"signed": None,
                      "this_node_policy": f"Profiles are deleted {config.retention_months} months after their last "
                                          "incident (or creation, or the end of an exclusion notice, if later) "
                                          "unless a recorded review keeps them; audit entries are archived after "
                                          + (f"{config.audit_months} months." if config.audit_months else
                                             "no set time (never)."),
                      "note": "Not part of the signed terms: this node's own policy (config.toml [retention]). "
                              "The partner applies its own to what it holds."},
        "signatures": {"offer": {"hash": agreement.offer_hash, "by": offer["from"], "issued_at": offer["issued_at"]},
                       "accept": accept and {"hash": document_hash(accept), "by": accept["from"],
                                             "issued_at": accept["issued_at"]}},
    }


def text_lines(doc: dict[str, Any]) -> list[str]:
    """The document as plain lines for a terminal (the caller escapes them)."""
    a, b = doc["parties"]
    out = ["DATA SHARING AGREEMENT" + ("" if doc["state"] == "active" else f"  [{doc['state'].upper()}: "
                                       "nothing is shared under it]"), "",
           "1. Parties",
           f"   {a['name']} (node {a['node_id']}), which offered these terms, signed {a['signed']}",
           f"   {b['name']} (node {b['node_id']}), " + (f"which accepted them, signed {b['signed']}" if b["signed"]
                                                       else "which has not accepted them"),
           "", "2. Purpose", f"   {doc['purpose']}", "", "3. Data shared (each way: both parties share alike)"]
    out += [f"   {i['scope']}: {i['items']}" for i in doc["data_items"]]
    out += ["", "4. Lawful basis", f"   {doc['lawful_basis']['this_node_policy'] or 'not stated'}",
            f"   ({doc['lawful_basis']['note']})",
            "", "5. Retention", f"   {doc['retention']['this_node_policy']}", f"   ({doc['retention']['note']})",
            "", "6. Review", f"   Review by {doc['review_by']}. {doc['review']}",
            "", "7. Termination", f"   {doc['termination']}"]
    if doc["ended"]:
        out.append(f"   Ended: {doc['ended']['type']} signed by {doc['ended']['by']} on {doc['ended']['signed']}.")
    sig = doc["signatures"]
    out += ["", "Signed documents (spec section 7)", f"   offer  {sig['offer']['hash']}  by {sig['offer']['by']}"]
    if sig["accept"]:
        out.append(f"   accept {sig['accept']['hash']}  by {sig['accept']['by']}")
    return out


def render_html(doc: dict[str, Any]) -> str:
    return ENV.get_template("agreement.html").render(d=doc)
