"""The profile query: one typed record, its wire form, and the SQL it becomes.

The same `Query` runs on a node's own data (local search), at a peer (the peer API), and on one
database holding everyone's data (the tests' reference and the benchmark's baseline). Pagination is
keyset, on a total order: (sort value, origin node ID, profile ID). Because that order is global,
the position of every peer is the same key, and a cursor of one key continues each peer exactly.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any, Iterable

from . import handling, schemas, wirejson
from .errors import InvalidInput

MAX_PAGE = 200
DEFAULT_PAGE = 50
#: The feature (consent.FEATURES; spec 7.2, Features) a node lists in its descriptor's `scopes`
#: when it serves a query `limit` up to WIDE_PAGE (spec 8.1). Only a walk asks for such pages
#: (dataview.walk): an interactive page stays at most MAX_PAGE.
WIDE_FEATURE = "query-limit-1000"
#: Why 1,000 (benchmarks/README.md, "Walks in pages of 1,000"): a served request costs a partner
#: ~1.2 ms besides ~9 us a record, so at 200 the request is 40% of a page's cost and at 1,000 12%;
#: past it the saving is small and the reply keeps growing. A reply of 1,000 records is ~1 MB at
#: the benchmark's records (1,060 bytes on average) and stays inside the 16 MiB a client reads
#: (spec 10) up to ~16 KB a record on average; a larger reply is refused by the hub as any
#: oversized one is, and the hub asks that partner again in pages of MAX_PAGE (dataview.walk).
WIDE_PAGE = 1000
SORT_COLUMNS = {"name": "sort_name", "last-seen": "last_seen_key", "incidents": "incident_count", "created": "created"}

SortKey = tuple[Any, str, str]


def widest_page(scopes: Iterable[str]) -> int:
    """The largest query `limit` a node serves, from the scopes of its descriptor (spec 8.1):
    WIDE_PAGE if they list WIDE_FEATURE, else MAX_PAGE (an older node refuses more with 400)."""
    return WIDE_PAGE if WIDE_FEATURE in scopes else MAX_PAGE


@dataclass(frozen=True)
class Query:
    text: str | None = None
    gender: tuple[str, ...] = ()
    ethnicity: tuple[str, ...] = ()
    build: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    age_min: int | None = None
    age_max: int | None = None
    excluded: bool | None = None
    sort: str = "name"
    desc: bool = False
    limit: int = DEFAULT_PAGE
    after: SortKey | None = None

    def to_wire(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its deep copy was 4% of a served search. Every field is a scalar
        # or a tuple of scalars (test_query_plan.py checks it against asdict).
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}
        return {k: v for k, v in out.items() if v not in (None, [], ())}

    @classmethod
    def from_wire(cls, doc: Any, max_limit: int = MAX_PAGE) -> "Query":
        """A query from its wire form. max_limit: the largest `limit` taken (WIDE_PAGE only where
        the node serves it: a peer's query to a node that lists WIDE_FEATURE)."""
        schemas.validate("query", doc)
        data = dict(doc)
        data.pop("counts", None)  # asks for the reply to carry counts (spec 8.1): the server's to read
        # JSON Schema's integer includes 20.0; the schema has passed it, so serve it as 20 (the
        # wire loader already does; this holds for a document from any other parser too).
        for name in ("age_min", "age_max", "limit"):
            if isinstance(data.get(name), float):
                data[name] = int(data[name])
        if data.get("after") is not None and isinstance(data["after"][0], float):
            data["after"] = [int(data["after"][0]), *data["after"][1:]]
        for name in ("gender", "ethnicity", "build", "status", "tags"):
            data[name] = tuple(data.get(name, ()))
        if data.get("after") is not None:
            data["after"] = tuple(data["after"])
        return cls(**data).checked(max_limit)

    def checked(self, max_limit: int = MAX_PAGE) -> "Query":
        """Raise InvalidInput for values outside the code lists or limits (`limit` up to max_limit)."""
        for name, code in (("gender", "gender"), ("ethnicity", "ethnicity"), ("build", "build"),
                           ("status", "status"), ("tags", "offence_tag")):
            for value in getattr(self, name):
                schemas.check_code(code, value, name)
        schemas.check_code("sort", self.sort, "sort")
        if not 1 <= self.limit <= max_limit:
            raise InvalidInput(f"limit must be 1 to {max_limit}")
        for name in ("age_min", "age_max"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 120:
                raise InvalidInput(f"{name} must be 0 to 120")
        if self.age_min is not None and self.age_max is not None and self.age_min > self.age_max:
            raise InvalidInput("age_min is greater than age_max")
        if self.text is not None and len(self.text) > 200:
            raise InvalidInput("search text is over 200 characters")
        if self.after is not None:
            if len(self.after) != 3 or not all(isinstance(x, str) for x in self.after[1:]):
                raise InvalidInput("after must be [sort value, origin, id]")
            want, kind = (int, "an integer") if self.sort == "incidents" else (str, "a string")
            if not isinstance(self.after[0], want) or isinstance(self.after[0], bool):
                raise InvalidInput(f"after[0] must be {kind} for sort {self.sort!r}")
        return self


def sort_key(row: dict[str, Any], sort: str) -> SortKey:
    """The total-order key of a profile record; the SQL below orders by exactly this."""
    if sort == "name":
        value: Any = sort_name(row)
    elif sort == "last-seen":
        value = row.get("last_seen") or ""
    elif sort == "incidents":
        value = len(row.get("incidents") or [])
    else:
        value = row["created"]
    return (value, row["origin"], row["id"])


def sort_name(row: dict[str, Any]) -> str:
    return f"{row.get('last_name') or ''}\x1f{row.get('first_name') or ''}".lower()


# --- cursors ---------------------------------------------------------------------------------
#
# A cursor carries its whole search (the query, with the partnerships asked) and the key of the last
# row shown, so that given alone it continues that search, and given with other options it is
# refused rather than silently applied to a different one. A truncated HMAC under a node-local key
# makes it tamper-evident (a cursor is ~200 characters: one line to paste). No library encodes "a
# signed, opaque pagination token" for us; the parts are the standard library's.

CURSOR_MAC_BYTES = 9


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, b"discnode cursor v1\x00" + payload, hashlib.sha256).digest()[:CURSOR_MAC_BYTES]


def encode_cursor(query: Query, key: SortKey, partnerships: Iterable[str] = (), secret: bytes = b"") -> str:
    wire = replace(query, after=None).to_wire()
    payload = json.dumps({"q": wire, "p": sorted(set(partnerships)), "k": list(key)},
                         separators=(",", ":"), ensure_ascii=False).encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, payload))}"


def decode_cursor(cursor: str, secret: bytes = b"") -> tuple[Query, tuple[str, ...]]:
    """The search a cursor continues (its query, `after` set) and its partnerships; InvalidInput if
    the cursor is malformed, altered, or made under another node's key."""
    try:
        body, _, tag = cursor.strip().partition(".")
        payload = _unb64(body)
        if not hmac.compare_digest(_unb64(tag), _mac(secret, payload)):
            raise ValueError("bad mac")
        doc = wirejson.loads(payload)
        wire, partnerships, key = doc["q"], doc["p"], doc["k"]
        if not isinstance(partnerships, list) or not all(isinstance(p, str) for p in partnerships):
            raise ValueError("bad partnerships")
    except (ValueError, KeyError, TypeError, AttributeError, InvalidInput):
        raise InvalidInput("the cursor is not one this node gave out (copy the whole \"More:\" value)") from None
    if not isinstance(wire, dict) or "after" in wire:
        raise InvalidInput("the cursor is not one this node gave out")
    return Query.from_wire({**wire, "after": key}), tuple(partnerships)


def differences(a: Query, b: Query) -> list[str]:
    """Names of the options in which two searches differ (ignoring the position)."""
    wa, wb = replace(a, after=None).to_wire(), replace(b, after=None).to_wire()
    return sorted(k for k in wa.keys() | wb.keys() if wa.get(k) != wb.get(k))


def apply_cursor(query: Query | None, cursor: str | None, partnerships: Iterable[str] = (),
                 secret: bytes = b"") -> Query:
    """The query to run for a page. Without a cursor, `query` (required). With one, the cursor's
    own search; `query` (and `partnerships`), if given, must be that same search."""
    if not cursor:
        if query is None:
            raise InvalidInput("give a query or a cursor")
        return query
    continued, bound = decode_cursor(cursor, secret)
    if query is not None:
        differ = differences(query, continued)
        if sorted(set(partnerships)) != sorted(set(bound)):
            differ.append("partnership")
        if differ:
            raise InvalidInput(f"the cursor belongs to a different search (it differs in {', '.join(differ)}); "
                               "give --cursor alone to continue it")
    return continued


def cursor_partnerships(cursor: str, secret: bytes = b"") -> tuple[str, ...]:
    return decode_cursor(cursor, secret)[1]


# --- SQL -------------------------------------------------------------------------------------


def fts_expression(text: str) -> str | None:
    """User text as a safe FTS5 query: every word must match as a prefix. No FTS syntax gets through."""
    words = re.findall(r"\w+", text, flags=re.UNICODE)
    return " ".join(f'"{w}"*' for w in words) or None


def _years_before(today: dt.date, years: int) -> dt.date:
    try:
        return today.replace(year=today.year - years)
    except ValueError:  # 29 February
        return today.replace(year=today.year - years, day=28)


@dataclass
class SQL:
    where: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, clause: str, *params: Any) -> None:
        self.where.append(clause)
        self.params.extend(params)


def record_column(audience: handling.Audience) -> str:
    """The stored view an audience is served: the full record, or the one without ethnicity."""
    return "record" if audience.ethnicity else "record_withheld"


def shareable(sql: SQL, me: str, today: dt.date, audience: handling.Audience) -> None:
    """What this node may serve to `audience`: its own records, not local-only, not past their
    review-by date, and only those its handling rules let through (handling.py)."""
    # `+origin`: not an index constraint. With `origin = ?` SQLite treats origin as constant,
    # cannot follow the (sort column, origin, id) index for the rest of the ORDER BY, and sorts
    # in a temporary B-tree: 6x the cost of a served page (0.42 ms against 0.06 ms at 600 profiles).
    sql.add("+origin = ?", me)
    sql.add("local_only = 0")
    sql.add("review_by >= ?", today.isoformat())
    for clause, params in audience.clauses(today):
        sql.add(clause, *params)


def build_sql(query: Query, today: dt.date, *, served_by: str | None = None,
              audience: handling.Audience = handling.Audience(), columns: str = "", raw: bool = False
              ) -> tuple[str, list[Any]]:
    """SELECT of the record (then the given columns, if any) for one page. With served_by, only
    what that node may serve to `audience`, in the view it may see (handling.py); without, every
    record in full. raw: the record as its UTF-8 bytes (a BLOB), not text."""
    sql = filters(query, today, served_by=served_by, audience=audience)
    column = SORT_COLUMNS[query.sort]
    direction = "DESC" if query.desc else "ASC"
    if query.after is not None:
        sql.add(f"({column}, origin, id) {'<' if query.desc else '>'} (?, ?, ?)", *query.after)
    where = " AND ".join(sql.where) or "1"
    view = record_column(audience) if served_by is not None else "record"
    if raw:
        view = f"CAST(({view}) AS BLOB)"
    text = (f"SELECT {view}{', ' + columns if columns else ''} FROM profiles WHERE {where} "
            f"ORDER BY {column} {direction}, origin {direction}, id {direction} LIMIT ?")
    return text, [*sql.params, query.limit]


def filters(query: Query, today: dt.date, *, served_by: str | None = None,
            audience: handling.Audience = handling.Audience()) -> SQL:
    """The WHERE conditions of a query's filters (not its position or page size): shared by the
    page's SELECT and the facet counts (facets.py), so both see exactly the same records."""
    sql = SQL()
    sql.add("batch IS NULL")  # rows of an import still being written are nobody's yet
    if served_by is not None:
        shareable(sql, served_by, today, audience)
        if query.ethnicity and not audience.ethnicity:
            # A filter on a withheld field matches nothing here: rows filtered on the hidden value
            # would reveal it, a query at a time (threat model: filter as an oracle).
            sql.add("0")
    for name in ("gender", "ethnicity", "build", "status"):
        values = getattr(query, name)
        if values:
            sql.add(f"{name} IN ({','.join('?' * len(values))})", *values)
    for tag in query.tags:
        sql.add("EXISTS (SELECT 1 FROM json_each(profiles.tags) WHERE value = ?)", tag)
    if query.age_min is not None:
        born_by = _years_before(today, query.age_min).isoformat()
        sql.add("((dob != '' AND dob <= ?) OR (dob = '' AND coalesce(age_max, 200) >= ?))", born_by, query.age_min)
    if query.age_max is not None:
        born_after = _years_before(today, query.age_max + 1).isoformat()
        sql.add("((dob != '' AND dob > ?) OR (dob = '' AND coalesce(age_min, 0) <= ?))", born_after, query.age_max)
    if query.excluded is not None:
        sql.add("(excluded_until >= ?) = ?", today.isoformat(), 1 if query.excluded else 0)
    if query.text:
        expr = fts_expression(query.text)
        if expr:
            sql.add("rowid IN (SELECT rowid FROM profiles_fts WHERE profiles_fts MATCH ?)", expr)
    return sql
