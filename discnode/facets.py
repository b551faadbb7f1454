"""Facet counts: how the records matching a query divide by gender, ethnicity, build, status and
offence tag, counted at each source and added up.

Counting is pushed down like the filters: each partner counts its own shareable records with the
same WHERE as the page query (query.filters), in one SQL statement, and answers
`POST /v1/profiles/facets` with numbers only. So a count never covers a record the asker could not
fetch with the same query (local-only, past review), and no record crosses the network to be
counted. A partner that cannot count (an older node, a timeout) is reported, never guessed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from . import schemas
from .consent import scopes_of
from .errors import DiscnodeError, InvalidInput
from .handling import Audience
from .query import Query, filters

FIELDS = ("gender", "ethnicity", "build", "status", "tags")
_CODE_LIST = {"gender": "gender", "ethnicity": "ethnicity", "build": "build", "status": "status",
              "tags": "offence_tag"}


@dataclass
class Counts:
    """One source's counts (or, added up, the Dataview's)."""

    total: int = 0
    facets: dict[str, dict[str, int]] = field(default_factory=lambda: {f: {} for f in FIELDS})

    def to_wire(self) -> dict[str, Any]:
        return {"total": self.total, "facets": {f: dict(self.facets[f]) for f in FIELDS}}

    @classmethod
    def from_wire(cls, doc: Any) -> "Counts":
        """A partner's reply, checked against protocol/schemas/facets-reply.schema.json."""
        schemas.validate("facets-reply", doc)
        return cls(doc["total"], {f: dict(doc["facets"][f]) for f in FIELDS})

    def add(self, other: "Counts") -> None:
        self.total += other.total
        for name in FIELDS:
            mine = self.facets[name]
            for code, n in other.facets[name].items():
                mine[code] = mine.get(code, 0) + n


def count(db: Any, query: Query, today: dt.date, *, served_by: str | None = None,
          origin: str | None = None, audience: Audience = Audience()) -> Counts:
    """The counts of one database's records matching `query`'s filters (its cursor and page size
    play no part). With served_by, only what that node may serve to `audience`, as in
    query.build_sql, and no ethnicity counts unless the audience may see ethnicity; with origin,
    only that node's records (a node's own Dataview rows: local-only ones too)."""
    sql = filters(query, today, served_by=served_by, audience=audience)
    if origin is not None:
        sql.add("origin = ?", origin)
    where = " AND ".join(sql.where) or "1"
    # One statement: the matching rows once (a CTE used five times is materialised), then a
    # GROUP BY per field; tags is a JSON array, hence json_each.
    text = (f"WITH m AS MATERIALIZED (SELECT gender, ethnicity, build, status, tags FROM profiles WHERE {where}) "
            "SELECT 'total', '', count(*) FROM m "
            "UNION ALL SELECT 'gender', gender, count(*) FROM m GROUP BY gender "
            "UNION ALL SELECT 'ethnicity', ethnicity, count(*) FROM m GROUP BY ethnicity "
            "UNION ALL SELECT 'build', build, count(*) FROM m GROUP BY build "
            "UNION ALL SELECT 'status', status, count(*) FROM m GROUP BY status "
            "UNION ALL SELECT 'tags', j.value, count(*) FROM m, json_each(m.tags) j GROUP BY j.value")
    out = Counts()
    for name, code, n in db.execute(text, sql.params).fetchall():
        if name == "total":
            out.total = n
        else:
            out.facets[name][code] = n
    if served_by is not None and not audience.ethnicity:
        out.facets["ethnicity"] = {}  # withheld: counted by nobody, not even as "unknown"
    return out


def labelled(counts: Counts) -> dict[str, list[dict[str, Any]]]:
    """Each field's codes, most frequent first, with the code lists' human labels: for pages."""
    out = {}
    for name in FIELDS:
        labels = schemas.code_labels(_CODE_LIST[name])
        rows = [{"code": code, "label": labels.get(code, code), "count": n}
                for code, n in counts.facets[name].items() if n]
        out[name] = sorted(rows, key=lambda r: (-r["count"], r["code"]))
    return out


@dataclass
class SourceCounts:
    node_id: str
    name: str
    status: str           # ok | timeout | unreachable | refused | invalid | unsupported
    total: int | None = None
    ms: int = 0
    error: str = ""
    #: Fields this source withholds under its agreement: its counts of them are not in the total.
    withheld: list[str] = field(default_factory=list)


#: The feature (consent.FEATURES) a partner lists in its descriptor's `scopes` when its query
#: endpoint takes `counts` (spec 7.2, 8.1).
FEATURE = "query-counts"


def in_query(descriptor: Any) -> bool:
    """Whether a partner with this (verified) descriptor may be asked for its counts inside its
    query request: only if it lists the feature. Spec 13: nothing is sent that a partner has not
    said it understands (an older node refuses an unknown query member with 400); the others are
    asked by POST /v1/profiles/facets, as before."""
    return FEATURE in scopes_of(descriptor)


def of_reply(value: Any) -> Counts:
    """The `counts` member of a query reply that asked for them (spec 8.1), in the facets reply's
    form; InvalidInput if it is missing or not that form (a float, a string, a negative or
    oversized number, a code outside its list): such counts are reported `invalid`, never added."""
    if value is None:
        raise InvalidInput("the reply carries no counts although they were asked for")
    return Counts.from_wire(value)


def wire_of(query: Query) -> dict[str, Any]:
    """A query as the facets request sends it: its filters, without position or page size."""
    return {k: v for k, v in query.to_wire().items() if k not in ("after", "limit")}


async def ask(peer: Any, query: Query, client: Any, timeout: float, withheld: list[str] | None = None
              ) -> tuple[SourceCounts, Counts | None]:
    """One partner's counts, by `POST /v1/profiles/facets`, under its own deadline."""
    from .errors import PeerTimeout

    started = time.monotonic()
    status = SourceCounts(peer.node_id, peer.name, "ok", withheld=list(withheld or []))
    got = None
    try:
        reply = await asyncio.wait_for(
            client.request(peer, "POST", "/v1/profiles/facets", wire_of(query), timeout=timeout), timeout)
        if reply.status == 404:
            status.status, status.error = "unsupported", "the partner's node does not count facets"
        elif reply.status in (401, 403):
            status.status, status.error = "refused", f"HTTP {reply.status}"
        elif reply.status != 200:
            status.status, status.error = "invalid", f"HTTP {reply.status}"
        else:
            got = Counts.from_wire(reply.json())
            status.total = got.total
    except (asyncio.TimeoutError, PeerTimeout):
        status.status, status.error = "timeout", f"no reply within {timeout:g}s"
    except DiscnodeError as exc:
        status.status, status.error = ("invalid" if exc.code == "invalid" else "unreachable"), str(exc)
    status.ms = int((time.monotonic() - started) * 1000)
    return status, got


def own(node_id: str, name: str, counts: Counts) -> tuple[SourceCounts, Counts]:
    """This node's own counts, as a source's."""
    return SourceCounts(node_id, name, "ok", counts.total), counts


def add_up(answers: Iterable[tuple[SourceCounts, Counts | None]]) -> tuple[Counts, list[SourceCounts]]:
    """The sum of the sources that answered, and every source's status, in order."""
    total = Counts()
    sources: list[SourceCounts] = []
    for status, got in answers:
        sources.append(status)
        if got is not None:
            total.add(got)
    return total, sources


async def across(mine: tuple[str, str, Counts] | None, targets: Iterable[Any], query: Query, client: Any,
                 timeout: float, withheld: Any = None) -> tuple[Counts, list[SourceCounts]]:
    """Ask every target peer for its counts, in parallel, each under its own deadline, and add them
    to this node's own (mine = (node_id, name, counts), or None if this node is filtered out).
    withheld(peer): the fields that peer withholds (dataview.withheld_by), to report with it."""
    answers = await asyncio.gather(*(ask(p, query, client, timeout, withheld(p) if withheld else None)
                                     for p in targets))
    return add_up(([own(*mine)] if mine is not None else []) + list(answers))
