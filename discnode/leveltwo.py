"""Level Two: people known to more than one partnership, found in the merged Dataview.

BCRPs call an offender active across several partnerships "Level Two"; spotting them is one of the
reasons to share at all. A sweep walks every identified profile this node can see (its own and every
consenting peer's, each record checked as `search --all` checks it) and groups the profiles that
describe the same person.

Matching is deliberately strict, because a false match puts a wrong name next to someone's photo:
two profiles are linked only if a name of one (first and last name, or any alias) equals a name of
the other after folding case, accents and punctuation, AND both give the same date of birth. A name
alone never links (there are many John Smiths), and ID-sought profiles have no name to match: their
faces are for the contact sheet. Links chain (A's alias is B's name, B's name is C's), so a group is
a connected set of profiles. The grouping is pure; `sweep` is the I/O around it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from .dataview import SourceStatus, walk
from .home import Home
from .namekey import fold, names
from .query import Query


@dataclass
class Group:
    """One person, as several partnerships know them."""

    name: str
    dob: str
    profiles: list[dict[str, Any]]
    #: Match-only partners that answered hit (`--include-match`): node_id, name, ref.
    match_hits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def partnerships(self) -> list[str]:
        return sorted({p["origin_name"] for p in self.profiles} | {h["name"] for h in self.match_hits})

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dob": self.dob, "partnerships": self.partnerships,
                "match_hits": self.match_hits,
                "profiles": [{"origin": p["origin"], "origin_name": p["origin_name"], "id": p["id"],
                              "first_name": p["first_name"], "last_name": p["last_name"],
                              "last_seen": p["last_seen"], "revealed_ref": p.get("revealed_ref")}
                             for p in self.profiles]}


    def link_states(self, me: str, held: dict[str, str]) -> dict[str, Any]:
        """For each pair of one of our profiles and a partner's in this group: its link's state
        (`held`: links.states), or a suggestion to propose one. A declined pair is never suggested."""
        from .links import pair_key
        ours = [p for p in self.profiles if p["origin"] == me]
        # A revealed profile's holder shares only match with us: no links to propose to it.
        theirs = [p for p in self.profiles if p["origin"] != me and not p.get("revealed_ref")]
        states, suggested = [], []
        for mine in ours:
            for other in theirs:
                pair = {"mine": mine["id"], "theirs": f"{other['origin']}:{other['id']}"}
                state = held.get(pair_key(me, mine["id"], other["origin"], other["id"]))
                if state is None:
                    suggested.append(pair)
                else:
                    states.append({**pair, "state": state})
        return {"links": states, "suggested": suggested}

def groups(records: Iterable[dict[str, Any]], min_partnerships: int = 2) -> list[Group]:
    """The sets of linked profiles that span at least min_partnerships origins, most widely known
    first."""
    people = [r for r in records if r.get("status") == "identified" and r.get("dob")]
    parent = list(range(len(people)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_with: dict[tuple[str, str], int] = {}
    for i, record in enumerate(people):
        for name in names(record):
            j = first_with.setdefault((name, record["dob"]), i)
            parent[root(i)] = root(j)
    members: dict[int, list[dict[str, Any]]] = {}
    for i, record in enumerate(people):
        members.setdefault(root(i), []).append(record)
    out = []
    for profiles in members.values():
        if len({p["origin"] for p in profiles}) < min_partnerships:
            continue
        label = _label(profiles)
        profiles.sort(key=lambda p: (p["origin_name"], p["id"]))
        out.append(Group(label, profiles[0]["dob"], profiles))
    out.sort(key=lambda g: (-len(g.partnerships), fold(g.name), g.dob))
    return out


def _label(profiles: list[dict[str, Any]]) -> str:
    """The name most of the group's profiles give; on a tie, one not typed in capitals, then the
    first alphabetically: never an accident of which partnership answered first."""
    counts = Counter(f"{p['first_name']} {p['last_name']}".strip() for p in profiles)

    def preference(name: str) -> tuple[int, int, str]:
        shouted = sum(word.isupper() and len(word) > 1 for word in name.split())
        return (-counts[name], shouted, name)
    return min(counts, key=preference)


async def sweep(home: Home, min_partnerships: int = 2, timeout: float = 3.0
                ) -> tuple[list[Group], list[SourceStatus], int]:
    """Walk every identified profile in the Dataview and group them; also returns the per-source
    status and how many profiles were looked at."""
    records, statuses = await walk(home, Query(status=("identified",), sort="name"), timeout=timeout)
    return groups(records, min_partnerships), statuses, len(records)


async def sweep_with_match(home: Home, min_partnerships: int = 2, timeout: float = 3.0, match_max: int = 100
                           ) -> tuple[list[Group], list[SourceStatus], int, list[dict[str, Any]]]:
    """`level-two --include-match`: the sweep, and match-only partners asked about the people it
    saw (one name each, the most widely known first, at most match_max: each counts against every
    match-only partner's daily quota). A hit counts that partnership in the person's group; the
    profile stays with its holder until revealed (`discnode reveal`): once it was, the revealed
    records this node kept (revealed.py, verified again) join the group, each with its holder's
    partnership and the hit's reference. Also returns each match-only partner's status."""
    from . import peers, revealed
    from .matchask import Person, ask, match_partners

    records, statuses = await walk(home, Query(status=("identified",), sort="name"), timeout=timeout)
    everyone = groups(records, 1)
    asked = everyone[:match_max]
    partners: list[dict[str, Any]] = []
    if asked and match_partners(home):
        people = [Person(g.profiles[0]["first_name"], g.profiles[0]["last_name"], g.dob) for g in asked]
        partners = await ask(home, people)
        for partner in partners:
            for group, result in zip(asked, partner["results"]):
                if result["result"] != "hit":
                    continue
                shown = revealed.kept(home.db, peers.get(home.db, partner["node_id"]), result["ref"]) or []
                group.match_hits.append({"node_id": partner["node_id"], "name": partner["name"],
                                         "ref": result["ref"], "revealed": bool(shown)})
                group.profiles += [{**r, "origin_name": partner["name"], "revealed_ref": result["ref"]}
                                   for r in shown if r["id"] not in {p["id"] for p in group.profiles
                                                                     if p["origin"] == r["origin"]}]
    found = [g for g in everyone if len(g.partnerships) >= min_partnerships]
    found.sort(key=lambda g: (-len(g.partnerships), fold(g.name), g.dob))
    return found, statuses, len(records), [{k: v for k, v in p.items() if k != "results"} for p in partners]
