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
from dataclasses import dataclass
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

    @property
    def partnerships(self) -> list[str]:
        return sorted({p["origin_name"] for p in self.profiles})

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dob": self.dob, "partnerships": self.partnerships,
                "profiles": [{"origin": p["origin"], "origin_name": p["origin_name"], "id": p["id"],
                              "first_name": p["first_name"], "last_name": p["last_name"],
                              "last_seen": p["last_seen"]} for p in self.profiles]}


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
