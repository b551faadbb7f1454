"""The Dataview: one merged, filtered, sorted, paginated view of this node's profiles and every
consenting peer's.

The same query goes to every peer with an active agreement, in parallel, each under its own
deadline; filtering, sorting and the page limit run at the source (SQL + FTS5). Replies are
verified (origin is the peer that sent them, signature by its pinned key, schema), merged in the
global order (k-way merge), and cut to one page: an exact top-k in at most two rounds, in which
each partner is first asked for a share of the page, not all of it (round_two). The cursor holds the
key of the page's last row;
since the order is total and global, that one key is every source's position. It also carries its
whole search, signed (query.py), so that it continues that search and no other. A peer that fails is
reported (ok / timeout / unreachable / refused / invalid) and never holds the view.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hashlib
import heapq
import itertools
import json
import math
import multiprocessing
import operator
import os
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import AbstractSet, Any, Awaitable, Callable, Iterable, Iterator, Sequence

import orjson

from . import checked, facets, handling, peers, schemas, store, untrusted, wirejson
from .consent import Agreement, scopes_of
from .client import PeerClient, send_json
from .documents.succession import KeyPeriod
from .errors import DiscnodeError, InvalidInput, PeerError, PeerTimeout, Refused, ReplyTooLarge, Unauthenticated
from .home import Home, today
from .identity import parse_node_id
from .query import (MAX_PAGE, WIDE_PAGE, Query, SortKey, apply_cursor, cursor_partnerships, encode_cursor, sort_key,
                    widest_page)
from .signing import signed_message, verify_signature

DEFAULT_TIMEOUT = 3.0


@dataclass
class SourceStatus:
    node_id: str
    name: str
    status: str          # ok | timeout | unreachable | refused | invalid
    count: int = 0
    ms: int = 0
    dropped: int = 0
    error: str = ""
    #: Fields this partnership withholds from this node under their agreement (handling.py).
    withheld: list[str] = field(default_factory=list)
    #: Whether the last reply held no floats (internal: lets record checks take the fast path).
    #: After a walk: whether every record this source sent held none (lets its writer skip a scan).
    float_free: bool = field(default=False, repr=False, compare=False)
    #: The facet counts that came with the records, if they were asked for (internal: Page.counts).
    counted: tuple[facets.SourceCounts, facets.Counts | None] | None = field(default=None, repr=False, compare=False)
    #: Internal: the partner refused a page over MAX_PAGE (400) or sent one over what this node
    #: reads, so a page of MAX_PAGE may still succeed (walk_page).
    too_wide: bool = field(default=False, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(replace(self, counted=None)).items()
                if k not in ("float_free", "counted", "too_wide")}


@dataclass
class Page:
    results: list[dict[str, Any]]
    peers: list[SourceStatus]
    next_cursor: str | None
    query: Query = field(default_factory=Query)
    #: The partnerships the search was limited to (node IDs; empty: every one).
    partnerships: tuple[str, ...] = ()
    #: With search(counts=True): the facet counts of the whole query, summed over the sources that
    #: counted, and each source's counting status (this node's first, if it is searched).
    counts: facets.Counts | None = None
    counted: list[facets.SourceCounts] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"results": self.results, "peers": [p.to_json() for p in self.peers], "next_cursor": self.next_cursor}


# --- pure parts ------------------------------------------------------------------------------


def check_origin(record: Any, peer: peers.Peer) -> None:
    """The cheap checks, on every record received: an object of the sending peer's own origin."""
    if not isinstance(record, dict):
        raise InvalidInput("record is not an object")
    if record.get("origin") != peer.node_id:
        raise Unauthenticated(f"record of another origin ({str(record.get('origin'))[:40]})")
    if not isinstance(record.get("id"), str):
        raise InvalidInput("record has no id")


def check_record(record: dict[str, Any], peer: peers.Peer, *, float_free: bool = False,
                 signed: tuple[bytes, str] | None = None) -> None:
    """The full checks: schema, the origin's signature by its pinned key, never local-only.
    float_free: the record came from JSON text without floats; being schema-valid as well (fixed
    ASCII keys), its canonical form needs no further scan. signed: its signed_message, if the
    caller has already computed it."""
    check_origin(record, peer)
    schemas.validate("profile", record)
    message, sig = signed or signed_message(record, plain=float_free)
    try:
        verify_signature(message, sig, peer.public_key)
    except Unauthenticated:
        # Signed before the origin rotated its key (spec 4.6): by a former key, while it was valid.
        # The record's `updated` is when its origin last signed it.
        if not any(p.valid_at(record["updated"]) for p in _verifies(message, sig, peer.former_keys)):
            raise
    if record["local_only"]:
        raise InvalidInput("local-only record served")


def _verifies(message: bytes, sig: str, periods: Iterable[KeyPeriod]) -> list[KeyPeriod]:
    """The key periods whose key verifies the signature."""
    out = []
    for period in periods:
        try:
            verify_signature(message, sig, period.public_key)
            out.append(period)
        except Unauthenticated:
            continue
    return out


def verify_records(records: Any, peer: peers.Peer) -> tuple[list[dict[str, Any]], int, str]:
    """Keep the records that pass every check; count and describe the rest."""
    if not isinstance(records, list):
        return [], 0, "reply has no record list"
    good, dropped, reason = [], 0, ""
    for record in records:
        try:
            check_record(record, peer)
        except DiscnodeError as exc:
            dropped += 1
            reason = reason or str(exc)
            continue
        good.append(record)
    return good, dropped, reason


Accept = Callable[[dict[str, Any]], bool]


def merge(pages: Sequence[Sequence[dict[str, Any]]], query: Query, accept: Accept | None = None
          ) -> tuple[list[dict[str, Any]], bool]:
    """k-way merge of per-source pages (each already in order) into one page, and whether any
    source may hold more after it. With `accept`, each record is checked as the merge reaches it
    and skipped if refused: only the records that can make the page are ever checked, so a page
    across 30 peers verifies ~limit signatures, not 30 x limit."""
    out: list[dict[str, Any]] = []
    more = any(len(p) >= query.limit for p in pages)
    for record in heapq.merge(*pages, key=lambda r: sort_key(r, query.sort), reverse=query.desc):
        if accept is not None and not accept(record):
            continue
        if len(out) == query.limit:
            return out, True
        out.append(record)
    return out, more


#: The fewest records a first round asks a partner for (see first_round_size).
FIRST_ROUND_FLOOR = 10


def first_round_size(limit: int, partners: int) -> int:
    """How many records the first round asks each partner for: three times its even share of the
    page, at least FIRST_ROUND_FLOOR, at most the page. With records spread evenly a partner's
    share of a 50-record page is binomial (50, 1/partners); a second round follows only when one
    partner's share reaches this size, which happens for 0.07% of pages at 10 partnerships, 0.015%
    at 30 and ~1e-8 at 100 (the floor is what keeps it rare at many partnerships: with 5 records
    at 100 partnerships it would be 1.7%). The factor 3 leaves room for partnerships of unequal
    size. Measured (benchmarks/dataview_rounds.py, README there): on the benchmark network no page
    whose records spread over the partnerships took a second round; a page that is one
    partnership's (ties in the sort value: the order then goes by node ID) always does, as it must;
    so do most pages when one partnership holds a quarter of all records."""
    return min(limit, max(FIRST_ROUND_FLOOR, math.ceil(3 * limit / max(partners, 1))))


@dataclass(frozen=True)
class Answer:
    """One source's part of a page so far: the records fit to merge (in order; any that `accept`
    will refuse still among them), how many it was asked for in all, and how many it sent. A record
    dropped as invalid, here or by the merge, still counts as sent: a source that sends junk
    cannot make another round look needed or not needed by it, and never gets a third."""

    records: Sequence[dict[str, Any]]
    asked: int
    sent: int


@dataclass(frozen=True)
class Again:
    """Ask source number `source` again: for `limit` more records after key `after`."""

    source: int
    after: SortKey
    limit: int


def _after(a: SortKey, b: SortKey, desc: bool) -> bool:
    """Whether key a comes after key b in the page's order."""
    return a < b if desc else a > b


def round_two(answers: Sequence[Answer], page: Sequence[dict[str, Any]], query: Query) -> list[Again]:
    """The sources to ask again after the first round, each from its last key, and for how many.

    A source that sent all it was asked for (it may hold more) and was asked for less than the page
    is asked again when the page used all it sent: when the page is not full, or its last record
    (the cutoff) comes after the source's last, the source is asked for the rest of the page
    (`query.limit` less what it was asked for) after its last key. When the cutoff *is* the
    source's last record, none of the source's other records can be on the page, but whether it
    holds one more decides `more`: it is asked for one. Then the page, its next_cursor and `more`
    are exactly those of asking every source for the whole page, and no third round is needed:

    - A source not asked again either sent all it holds, or its last record comes after the
      first round's cutoff c, and so do all its records not sent.
    - The second round only adds records, so the final page's cutoff is c or before it. Every
      record of the one-round page therefore came in one of the two rounds: from a source not
      asked again it is before c, so among those sent; from one asked again it is among the page's
      worth (`query.limit` records) that source has now sent, as in one round, or it is c itself.
    - So the final page (the first `limit` accepted records of what came, in order) is the
      one-round page, and its next_cursor too, the key of its last record. `more`: a source that
      sent all it was asked for in the end sent a whole page, or one record after the page; so
      there is a record after the page exactly when one round would have seen one (may_hold_more).
    - Each source asked again has now been asked for a whole page, or has sent its first record
      after the page (or has no more), so round_two on the final answers names nobody
      (tests/test_dataview_rounds.py checks it for every case it draws).

    `page` is the first round's merge of the answers (`merge`, with the same `accept` the final
    merge uses). A record the merge refused still counts as one of its source's records here: the
    cutoff is the limit-th accepted record, and a source whose refused records reach the page is
    asked again, once, like any other."""
    cutoff = sort_key(page[-1], query.sort) if len(page) >= query.limit else None
    out = []
    for index, answer in enumerate(answers):
        if answer.sent < answer.asked or answer.asked >= query.limit or not answer.records:
            continue
        last = sort_key(answer.records[-1], query.sort)
        if cutoff is None or _after(cutoff, last, query.desc):
            out.append(Again(index, last, query.limit - answer.asked))
        elif cutoff == last:
            out.append(Again(index, last, 1))
    return out


def answered(answer: Answer, again: Again, records: Sequence[dict[str, Any]], sent: int) -> Answer:
    """A source's answer after its second round: the records it sent then (all after its last key)
    follow those of the first."""
    return Answer([*answer.records, *records], answer.asked + again.limit, answer.sent + sent)


def may_hold_more(answers: Sequence[Answer], more: bool) -> bool:
    """Whether there may be more after the page: `merge` says so (a source sent a whole page, or a
    record after it came), or some source sent all it was asked for. With every record genuine the
    second clause adds nothing (a source that sent all it was asked for either sent a whole page or
    sent a record after the page: round_two), so this is the one-round `more`; with refused records
    among them it may say "more" where one round would not, never the other way, so no page is
    lost. A source whose second round failed still counts as having sent all it was asked for."""
    return more or any(a.sent >= a.asked for a in answers)


def next_cursor(results: list[dict[str, Any]], more: bool, query: Query, partnerships: Iterable[str] = (),
                secret: bytes = b"") -> str | None:
    if not more or not results:
        return None
    return encode_cursor(query, sort_key(results[-1], query.sort), partnerships, secret)


def cursor_secret(home: Home) -> bytes:
    """This node's key for its cursors, derived from its identity key (so nothing more to store or
    back up, and no other node can make or alter one)."""
    return hashlib.blake2b(b"discnode search cursor", key=bytes(home.identity.signing_key), digest_size=32).digest()


# --- I/O -------------------------------------------------------------------------------------


def split_reply(body: bytes) -> tuple[list[Any], list[bytes], bool]:
    """A query reply's records, each with its JSON text exactly as received (UTF-8), and whether
    the reply held no number that is not an integer (the protocol has none; knowing it lets a
    record's canonical form skip a walk of the whole structure). PeerError unless the reply is one
    I-JSON object (wirejson's rules) whose `records` is a list.

    A reply as partners send it (`{"records":[...]}`, each record in its canonical form: see
    _split_canonical) is read at C speed; any other is read by _split_strict. Both read a reply
    exactly as every other receiver does (wirejson; tests/test_dataview.py)."""
    return _split_canonical(body) or _split_strict(body)


class _NotPlain(Exception):
    """A number that is not an integer, or NaN or Infinity: not for the canonical fast path."""


def _not_plain(text: str) -> Any:
    raise _NotPlain(text)


#: The standard library's decoder (in C) with no hook but for numbers that are not integers, which
#: a canonical reply does not hold. Shared: a JSONDecoder holds no state between calls.
_PLAIN_DECODER = json.JSONDecoder(parse_float=_not_plain, parse_constant=_not_plain)
_REPLY_HEAD, _REPLY_TAIL = b'{"records":[', b"]}"


def _split_canonical(body: bytes) -> tuple[list[Any], list[bytes], bool] | None:
    """split_reply for a reply that is exactly `{"records":[` + its records' texts joined by `,`
    + `]}`, each text exactly what orjson writes for the record it parses to (compact, members in
    the text's order, non-ASCII as UTF-8): what a partner sends, its stored canonical records
    unparsed (server.py). None for any other reply, which _split_strict then reads (and refuses,
    if wirejson would).

    Why this reads exactly what wirejson reads, for any bytes: the values come from the same
    standard decoder as wirejson's (strict UTF-8 first), here without its Python hooks, so each
    thing those hooks refuse or change must be ruled out another way. A number with a fraction or
    an exponent, NaN and Infinity reach _not_plain (None). Writing every record back with orjson
    and comparing with the bytes received rules out the rest: a repeated member (the dict holds
    one member fewer, so its text differs), an unpaired surrogate (orjson refuses to write it), an
    integer outside I-JSON's range (OPT_STRICT_INTEGER refuses it), whitespace, escapes wirejson
    would decode (orjson writes the character) and anything but the one member. Nesting: a record
    whose text holds at most MAX_DEPTH - 2 brackets cannot nest past MAX_DEPTH in the reply; any
    other is measured as wirejson measures it. Each record's text as received is then its own
    orjson text (the comparison proves it), found without a scan for where values begin and end."""
    if not body.startswith(_REPLY_HEAD):
        return None
    try:
        value = _PLAIN_DECODER.decode(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError, _NotPlain):
        return None
    if type(value) is not dict or len(value) != 1 or type(value.get("records")) is not list:
        return None
    records = value["records"]
    try:
        received = [orjson.dumps(r, option=orjson.OPT_STRICT_INTEGER) for r in records]
    except orjson.JSONEncodeError:
        return None
    if b"".join((_REPLY_HEAD, b",".join(received), _REPLY_TAIL)) != body:
        return None
    for record, text in zip(records, received):
        if text.count(b"[") + text.count(b"{") > wirejson.MAX_DEPTH - 2:
            try:
                wirejson._check_depth({"records": [record]})
            except InvalidInput:
                return None
    return records, received, True


def read_known(body: bytes, public_key: bytes, known: AbstractSet[bytes], limit: int
               ) -> tuple[list[dict[str, Any]], list[bytes]] | None:
    """A repeat walk's reader: a reply laid out as partners send it (`{"records":[` + record texts
    joined by `,` + `]}`, at most `limit` of them) whose every record's text, byte for byte, has a
    digest in `known` (checked.digest under public_key): (its records, their digests). None for any
    other reply, which split_reply then reads as ever.

    Each record's text is found without parsing: every record a partner sends begins with the
    same first member (canonical records sort their members, and the profile schema requires
    the first, `age_max`), so the list's text is cut at each `,` followed by the first record's
    opening (`{"age_max":`). A cut in the wrong place (such text inside a record) gives a piece whose
    digest is not in `known`, and the reply goes to split_reply.

    Why this reads exactly what split_reply (so wirejson) reads, without _split_canonical's writing
    every record back to compare: a digest in `known` is that of a text that an earlier reply
    carried as one record (one complete JSON object, a span that split_reply found) and that
    passed wirejson's rules there and every check after, in a reply that held no number with a
    fraction or an exponent (checked.py; judge remembers no other). So each piece is one whole
    JSON object, the reply parses to exactly those pieces' values, in order (one per piece: the
    count is checked all the same), and each holds no repeated member, no unpaired surrogate, no
    integer out of range, no NaN or Infinity, no number but an integer, and sits at the same depth
    as there (a record of the one `records` list). On such text orjson and wirejson agree value
    for value (strings, integers, true, false, null, objects in the text's member order, arrays);
    where they differ (a repeated member, a lone surrogate, an integer past 2^64, `20.0`, NaN)
    known texts hold nothing. orjson parses the reply in ~0.7 of the standard decoder's CPU
    (73 against 105 ms for a repeat walk's 18 MB), and whatever it refuses goes to split_reply. So
    the records are those an earlier reply's were: the same verdict."""
    head = len(_REPLY_HEAD)
    if not known or not body.startswith(_REPLY_HEAD) or not body.endswith(_REPLY_TAIL) or len(body) == head + 2:
        return None
    opening = body[head: body.find(b":", head) + 1]  # '{"age_max":', as partners write records
    if not opening.startswith(b'{"') or not opening.endswith(b'":'):
        return None
    pieces = body[head + len(opening): -len(_REPLY_TAIL)].split(b"," + opening)
    if len(pieces) > limit:
        return None
    digests = list(map(checked.digester(public_key, opening), pieces))
    if not all(map(known.__contains__, digests)):
        return None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:  # not reached: every piece is a known text (above)
        return None
    records = value.get("records") if type(value) is dict and len(value) == 1 else None
    if type(records) is not list or len(records) != len(digests):  # not reached either
        return None
    return records, digests


def _split_plain(body: bytes) -> tuple[list[Any], list[bytes], bool, bool]:
    """split_reply, and whether the reply held no number with a fraction or an exponent at all
    (`20.0`, which wirejson reads as 20 and float_free does not tell): true of every reply the
    canonical reader reads. A walk remembers only records that hold none (judge)."""
    canonical = _split_canonical(body)
    if canonical is not None:
        return (*canonical, True)
    return (*_split_strict(body), False)


def _plain(received: bytes) -> bool:
    """Whether a record's text (one that split_reply read) holds no number with a fraction or an
    exponent: the standard decoder calls _not_plain for each such number and nothing else."""
    try:
        _PLAIN_DECODER.decode(received.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError, _NotPlain):
        return False
    return True


def _split_strict(body: bytes) -> tuple[list[Any], list[bytes], bool]:
    """split_reply for any reply. Written by hand around the standard decoder's raw_decode, which
    parses each value: no JSON library reports where in the text a value lay, and the received
    text of each record is what checked.digest needs (see there). The values are read with
    wirejson's own hooks and checks."""
    floats = wirejson._Floats()
    decoder = json.JSONDecoder(object_pairs_hook=wirejson._object, parse_int=wirejson._integer,
                               parse_float=wirejson._number(floats), parse_constant=wirejson._constant)
    try:
        text = body.decode("utf-8")
        records, spans, names, others = _split(text, decoder)
        if text.count("[") + text.count("{") > wirejson.MAX_DEPTH:
            wirejson._check_depth({"records": records, "": others})
        if wirejson._SURROGATE_ESCAPE.search(text) is not None:
            # Every string of the reply, not only the records': wirejson refuses a lone surrogate
            # anywhere, and a walk must accept exactly what every other receiver accepts.
            wirejson._check_strings([names, records, others])
    except (ValueError, UnicodeDecodeError, IndexError, RecursionError, InvalidInput):
        raise PeerError("peer sent a reply that is not JSON") from None
    if records is None:
        raise PeerError("reply has no record list")
    return records, [text[start:end].encode() for start, end in spans], not floats.seen


_SPACE = " \t\n\r"  # JSON's whitespace (RFC 8259 section 2)


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _SPACE:
        i += 1
    return i


def _split(text: str, decoder: json.JSONDecoder
           ) -> tuple[list[Any] | None, list[tuple[int, int]], list[str], list[Any]]:
    """(the `records` list, each record's span in text, the member names, the other members'
    values); ValueError if text is not one JSON object without repeated members."""
    i = _skip(text, 0)
    if text[i] != "{":
        raise ValueError("not an object")
    i, seen = _skip(text, i + 1), set()
    records: list[Any] | None = None
    spans: list[tuple[int, int]] = []
    others: list[Any] = []
    while text[i] != "}" or seen:
        if text[i] != '"':
            raise ValueError("expected a member name")
        name, i = decoder.raw_decode(text, i)
        i = _skip(text, i)
        if name in seen or text[i] != ":":
            raise ValueError("a repeated member, or no :")
        seen.add(name)
        i = _skip(text, i + 1)
        if name == "records" and text[i] == "[":
            records, i = [], _skip(text, i + 1)
            while text[i] != "]" or records:
                record, end = decoder.raw_decode(text, i)
                records.append(record)
                spans.append((i, end))
                i = _skip(text, end)
                if text[i] == "]":
                    break
                if text[i] != ",":
                    raise ValueError("expected , or ]")
                i = _skip(text, i + 1)
            i += 1
        else:
            value, i = decoder.raw_decode(text, i)
            others.append(value)
        i = _skip(text, i)
        if text[i] == "}":
            break
        if text[i] != ",":
            raise ValueError("expected , or }")
        i = _skip(text, i + 1)
    if _skip(text, i + 1) != len(text):
        raise ValueError("text after the object")
    return records, spans, list(seen), others


@dataclass
class Verdict:
    """What checking one peer's reply found, by position in its record list: small, so that a
    worker process sends back this and not the records (the searching process has the bytes)."""

    keep: list[int] = field(default_factory=list)
    dropped: int = 0
    reason: str = ""
    #: The records that passed a full check just now and whose text holds no number with a
    #: fraction or an exponent (those to remember, checked.py): (checked.digest, origin, profile ID).
    newly_checked: list[checked.Check] = field(default_factory=list)
    #: How many records the reply held, whether it held no float, and why it was refused, if it was.
    count: int = 0
    float_free: bool = False
    error: str = ""
    #: Whether the worker read the reply with the canonical reader (_split_canonical): the
    #: searching process may then take the records from orjson (_values) rather than read it again.
    canonical: bool = False


@dataclass
class Screened:
    """What survives of one peer's reply: its records in order after the cursor, and what was dropped."""

    records: list[dict[str, Any]]
    dropped: int = 0
    reason: str = ""
    float_free: bool = False
    #: The records that passed a full check just now, to remember (Verdict.newly_checked).
    newly_checked: list[checked.Check] = field(default_factory=list)
    #: The reply's `counts` member as received, unchecked (facets.of_reply checks it), if any.
    counts: Any = None
    #: Each record's sort key, in the same order (computed once, by assemble; a walk's merge reuses them).
    keys: list[SortKey] = field(default_factory=list, repr=False, compare=False)


def judge(records: list[Any], received: list[bytes], float_free: bool, peer: peers.Peer, query: Query, *,
          full: bool = False, known: AbstractSet[bytes] = frozenset(), digests: Sequence[bytes] = (),
          keys: list[SortKey] | None = None, plain: bool = False) -> Verdict:
    """Which of a reply's records are fit to merge. Always: an object of the peer's own origin
    with a well-formed sort key. With full=True also every record's schema and signature
    (check_record), except records whose digest (of the bytes as received) is in `known`: checked
    in full before (checked.py); otherwise the merge checks the few that reach the page. A record
    checked in full is remembered (verdict.newly_checked) only if its text holds no number with a
    fraction or an exponent (plain: the whole reply held none, _split_plain; else its text is read
    for them): read_known reads known texts with orjson, which reads `20.0` otherwise than
    wirejson. Pure, so that a walk can run it in worker processes. digests: the first records'
    digests, if the caller has computed them (checked.digest(peer.public_key, received[i])). keys:
    if given, the sort key of each record kept is appended to it, in the order of verdict.keep (for
    assemble)."""
    verdict = Verdict(count=len(records), float_free=float_free)
    for index, record in enumerate(records[: query.limit]):
        try:
            check_origin(record, peer)
            key = sort_key(record, query.sort)
            if not isinstance(key[0], int if query.sort == "incidents" else str) or isinstance(key[0], bool):
                raise InvalidInput("record has a malformed sort value")
            if full:
                digest = digests[index] if index < len(digests) else checked.digest(peer.public_key, received[index])
                if digest not in known:
                    check_record(record, peer, float_free=float_free)
                    if float_free and (plain or (index < len(received) and _plain(received[index]))):
                        verdict.newly_checked.append((digest, peer.node_id, record["id"]))
        except (DiscnodeError, KeyError, TypeError) as exc:
            verdict.dropped, verdict.reason = verdict.dropped + 1, verdict.reason or str(exc) or "malformed record"
            continue
        verdict.keep.append(index)
        if keys is not None:
            keys.append(key)
    return verdict


def assemble(records: list[Any], verdict: Verdict, query: Query, float_free: bool,
             keys: Sequence[SortKey] | None = None) -> Screened:
    """The records a verdict keeps, after the cursor, in order (a peer's order is not something to
    trust; the merge needs sorted input), with their sort keys. keys: the kept records' keys, if
    judge has computed them (judge(keys=...)); else computed here, each once."""
    kept = [records[i] for i in verdict.keep]
    keyed = list(zip(keys, kept)) if keys is not None else [(sort_key(r, query.sort), r) for r in kept]
    if query.after is not None:
        keyed = [(k, r) for k, r in keyed if (k < query.after if query.desc else k > query.after)]  # after the cursor
    keyed.sort(key=_first, reverse=query.desc)
    return Screened([r for _, r in keyed], verdict.dropped, verdict.reason, float_free, verdict.newly_checked,
                    keys=[k for k, _ in keyed])


_first = operator.itemgetter(0)


def screen(body: bytes, peer: peers.Peer, query: Query, *, full: bool = False,
           known: AbstractSet[bytes] = frozenset()) -> Screened:
    """Parse one peer's reply to a query and keep the records fit to merge (judge), in order.
    Only a full check needs each record's bytes as received (split_reply); a page's screening
    needs only the values. A reply as partners send it (`{"records":[...]}`, canonical records)
    is read by the canonical reader, at C speed (a first page at 30 partnerships: 30 replies of
    10 records screened in 2.6 ms against 4.1 through wirejson's Python hooks); any other (with `counts`,
    or not as partners write) by wirejson, as every other reply. Both read what wirejson reads
    (_split_canonical; tests/test_dataview.py)."""
    plain = False
    if full:
        records, received, float_free, plain = _split_plain(body)
    else:
        canonical = _split_canonical(body)
        if canonical is not None:
            records, _, float_free = canonical
            parsed: Any = {"records": records}
        else:
            from .client import Reply
            parsed, float_free = Reply(200, body, "application/json").json_without_floats()
            records = parsed.get("records") if isinstance(parsed, dict) else None
            if not isinstance(records, list):
                raise PeerError("reply has no record list")
        received = []
    keys: list[SortKey] = []  # each kept record's sort key, computed once, by judge
    screened = assemble(records, judge(records, received, float_free, peer, query, full=full, known=known,
                                       plain=plain, keys=keys), query, float_free, keys)
    if not full:  # a walk never asks for counts
        screened.counts = parsed.get("counts")
    return screened


Screen = Callable[[bytes, peers.Peer, Query], Awaitable[Screened]]


async def _inline_screen(body: bytes, peer: peers.Peer, query: Query) -> Screened:
    return screen(body, peer, query)


def _query_body(query: Query, counts: bool) -> bytes:
    """A query's request body (search encodes a round's once for every partner it asks)."""
    return send_json({**query.to_wire(), "counts": True} if counts else query.to_wire())


async def _ask(client: PeerClient, peer: peers.Peer, query: Query, timeout: float,
               screener: Screen = _inline_screen, withheld: list[str] | None = None, counts: bool = False,
               keys: list[SortKey] | None = None, body: bytes | None = None
               ) -> tuple[list[dict[str, Any]], SourceStatus]:
    """One peer's page. With counts (only to a peer that lists `query-counts`: asks_counts), the
    same request asks for the query's facet counts too, which come back in status.counted. keys:
    if given, the records' sort keys are appended to it (the walk's merge orders by them). body:
    _query_body(query, counts), if the caller has it (one encoding for a whole round)."""
    started = time.monotonic()
    status = SourceStatus(peer.node_id, peer.name, "ok", withheld=list(withheld or []))
    screened: Screened | None = None
    try:
        # asyncio.timeout, not wait_for: the same deadline without a task of its own per partner.
        async with asyncio.timeout(timeout):
            reply = await client.request(peer, "POST", "/v1/profiles/query", body=body or _query_body(query, counts),
                                         timeout=timeout)
        if reply.status in (401, 403):
            status.status, status.error = "refused", f"HTTP {reply.status}"
            return [], status
        if reply.status == 400 and counts:
            return await _ask_counts_apart(client, peer, query, started, started + timeout, screener,
                                           status.withheld)
        if reply.status != 200:
            status.status, status.error = "invalid", f"HTTP {reply.status}"
            status.too_wide = reply.status == 400 and query.limit > MAX_PAGE
            return [], status
        try:
            screened = await screener(reply.body, peer, query)
        except PeerError as exc:
            status.status, status.error = "invalid", str(exc)
            return [], status
        status.float_free = screened.float_free
        status.count, status.dropped = len(screened.records), screened.dropped
        if keys is not None:
            keys.extend(screened.keys)
        if screened.dropped:
            status.status, status.error = "invalid", f"dropped {screened.dropped}: {screened.reason}"
        return screened.records, status
    except (asyncio.TimeoutError, PeerTimeout):
        status.status, status.error = "timeout", f"no reply within {timeout:g}s"
    except ReplyTooLarge as exc:
        status.status, status.error = "unreachable", str(exc)
        status.too_wide = query.limit > MAX_PAGE
    except (PeerError, Unauthenticated) as exc:
        status.status, status.error = "unreachable", str(exc)
    finally:
        status.ms = int((time.monotonic() - started) * 1000)
        if counts:
            status.counted = _counted(status, screened)
    return [], status


async def _ask_counts_apart(client: PeerClient, peer: peers.Peer, query: Query, started: float, deadline: float,
                            screener: Screen, withheld: list[str]) -> tuple[list[dict[str, Any]], SourceStatus]:
    """A partner that lists `query-counts` but refused the query that asked for them: its node went
    back to a version without the feature, and the descriptor kept here is older than its code
    (spec 13: an older node refuses an unknown member with 400). It is asked as a partner without
    the feature is, within what is left of the deadline: the page alone, and the counts by their own
    request. Any other 400 comes back again from the page alone and is reported as before; a
    partner can cost this node one request more, never a loop."""
    left = deadline - time.monotonic()
    if left <= 0:
        status = SourceStatus(peer.node_id, peer.name, "timeout", withheld=list(withheld),
                              ms=int((time.monotonic() - started) * 1000), error="no time left to ask again without counts")
        status.counted = _counted(status, None)
        return [], status
    (records, status), counted = await asyncio.gather(
        _ask(client, peer, query, left, screener, withheld), facets.ask(peer, query, client, left, withheld))
    status.counted = counted
    status.ms = int((time.monotonic() - started) * 1000)  # both attempts: the partner's time in this search
    return records, status


def _counted(status: SourceStatus, screened: Screened | None) -> tuple[facets.SourceCounts, facets.Counts | None]:
    """The counts a peer sent with its page, checked; or, if the page itself failed, that failure."""
    out = facets.SourceCounts(status.node_id, status.name, "ok", ms=status.ms, withheld=list(status.withheld))
    if screened is None:
        out.status, out.error = status.status, status.error
        return out, None
    try:
        got = facets.of_reply(screened.counts)
    except DiscnodeError as exc:
        out.status, out.error = "invalid", f"counts: {exc}"
        return out, None
    out.total = got.total
    return out, got


def walk_page(peer: peers.Peer | None, page_size: int | None = None) -> int:
    """How many records a walk asks a source for at a time: up to WIDE_PAGE from this node's own
    database and from a partner whose descriptor lists WIDE_FEATURE (spec 8.1), up to MAX_PAGE from
    any other (an older node refuses more with 400); page_size, if given, is the most for every
    source. Fewer, larger pages: a served request costs a partner ~1.2 ms besides its records."""
    widest = WIDE_PAGE if peer is None else widest_page(scopes_of(peer.descriptor))
    return widest if page_size is None else min(page_size, widest)


def asks_counts(peer: peers.Peer) -> bool:
    """Whether a peer's query may ask for its counts in the same request (facets.in_query)."""
    return facets.in_query(peer.descriptor)


def withheld_by(home: Home, peer: peers.Peer, agreement: Agreement | None = None) -> list[str]:
    """The fields a partner withholds from this node: those their agreement does not share, if
    the partner's node knows to withhold them (an older node, without the scope, serves them).
    agreement: the partner's, if the caller holds it already (_active_agreements: one query for
    every partner of a search, where this would make one each)."""
    if agreement is None:
        agreement = peers.agreement(home.db, home.node_id, peer.node_id, today())
    audience = handling.Audience.of_agreement(agreement)
    return [f for f in audience.withheld if handling.WITHHOLDABLE[f] in scopes_of(peer.descriptor)]


def _active_agreements(home: Home) -> list[tuple[peers.Peer, Agreement]]:
    """The partners a search asks, each with its agreement, from one query of the documents."""
    day = today()
    # Match-only partners are asked by `discnode match`, never searched: their profiles are not shared.
    agreements = peers.agreements(home.db, home.node_id, day)
    return [(p, agreements[p.node_id]) for p in peers.all_peers(home.db)
            if p.node_id in agreements and "profiles" in agreements[p.node_id].share]


def active_peers(home: Home) -> list[peers.Peer]:
    return [p for p, _ in _active_agreements(home)]


async def search(home: Home, query: Query | None = None, *, cursor: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, partnerships: Iterable[str] | None = None,
                 client: PeerClient | None = None, counts: bool = False) -> Page:
    """One page of the Dataview. A cursor carries its whole search: given alone (query and
    partnerships None) it continues that search; given with a query or partnerships, they must be
    the cursor's own, or InvalidInput. With counts, also the query's facet counts (Page.counts):
    asked in the query's own request of each peer that can answer both at once (asks_counts), by a
    separate facets request of the others."""
    secret = cursor_secret(home)
    asked = None if partnerships is None else tuple(sorted({parse_node_id(p) for p in partnerships}))
    if cursor and query is None and asked is None:
        query = apply_cursor(None, cursor, secret=secret)
        asked = tuple(sorted({parse_node_id(p) for p in cursor_partnerships(cursor, secret)}))
    else:
        query = apply_cursor((query or Query()).checked(), cursor, asked or (), secret)
    asked = asked or ()
    wanted = set(asked)
    started = time.monotonic()
    own = [] if wanted and home.node_id not in wanted else [
        r for r in store.search(home.db, query, today()) if r["origin"] == home.node_id]
    own_status = SourceStatus(home.node_id, home.config.name, "ok", len(own),
                              int((time.monotonic() - started) * 1000))
    active = [(p, a) for p, a in _active_agreements(home) if not wanted or p.node_id in wanted]
    targets = [p for p, _ in active]
    withheld = {p.node_id: withheld_by(home, p, a) for p, a in active}
    unknown = wanted - {p.node_id for p in targets} - {home.node_id}
    if unknown:
        raise InvalidInput(f"no active agreement with {', '.join(sorted(unknown))}")
    mine = (facets.own(home.node_id, home.config.name, facets.count(home.db, query, today(), origin=home.node_id))
            if counts and (not wanted or home.node_id in wanted) else None)
    apart = [p for p in targets if counts and not asks_counts(p)]
    names = {home.node_id: home.config.name, **{p.node_id: p.name for p in targets}}
    by_id = {p.node_id: p for p in targets}
    statuses: dict[str, SourceStatus] = {}
    verdicts: dict[int, bool] = {}  # by id() of the record: each is checked once, over both merges

    def accept(record: dict[str, Any]) -> bool:
        if record["origin"] == home.node_id:
            return True  # our own database
        seen = verdicts.get(id(record))
        if seen is not None:
            return seen
        status = statuses[record["origin"]]
        try:
            check_record(record, by_id[record["origin"]], float_free=status.float_free)
            verdicts[id(record)] = True
        except DiscnodeError as exc:
            status.count -= 1
            status.dropped += 1
            status.status, status.error = "invalid", f"dropped {status.dropped}: {exc}"
            verdicts[id(record)] = False
        return verdicts[id(record)]

    # Round one: each partner for its share of the page (first_round_size), not the whole page;
    # round two, only where the page used all a partner sent (round_two). Each partner then
    # serialises, signs and sends, and this node parses, fewer records; and each partner discloses
    # (and records in its disclosure log) fewer of its profiles.
    deadline = time.monotonic() + timeout
    first = replace(query, limit=first_round_size(query.limit, len(targets)))
    owned_client = client is None
    client = client or PeerClient(home.identity, timeout=timeout)
    # The collector held off for the page, as for a walk (collector_paused): a first page parses
    # some 300 records of which ~50 are kept; the rest are freed by their reference counts as the
    # page returns (no await between the collector resuming and that), never gone through by a
    # collection: ~1-2 ms of a page's ~21 in a small process, more in the daemon, whose own objects
    # each older collection goes through too (benchmarks/README.md, "The searching side's first page").
    with collector_paused():
        try:
            # Only the first round carries the counts (they do not depend on the page's limit or position).
            bodies = {c: _query_body(first, c) for c in {counts and asks_counts(p) for p in targets}}
            replies, counted_apart = await asyncio.gather(
                asyncio.gather(*(_ask(client, p, first, timeout, withheld=withheld[p.node_id],
                                      counts=counts and asks_counts(p), body=bodies[counts and asks_counts(p)])
                                 for p in targets)),
                asyncio.gather(*(facets.ask(p, query, client, timeout, withheld[p.node_id]) for p in apart)))
            statuses.update((s.node_id, s) for _, s in replies)
            answers = [Answer(own, query.limit, len(own))] + [
                Answer(records, first.limit, len(records) + s.dropped) for records, s in replies]
            results, more = merge([a.records for a in answers], query, accept)
            again = round_two(answers, results, query)
            if again:  # answers[0] is this node's own: never asked again (asked for the whole page)
                peer_of = {a.source: targets[a.source - 1] for a in again}
                seconds = await asyncio.gather(*(
                    _ask_again(client, peer_of[a.source], replace(query, after=a.after, limit=a.limit), deadline,
                               statuses[peer_of[a.source].node_id]) for a in again))
                for a, (records, sent) in zip(again, seconds):
                    if sent is not None:
                        answers[a.source] = answered(answers[a.source], a, records, sent)
                results, more = merge([a.records for a in answers], query, accept)
            more = may_hold_more(answers, more)
            page = Page([{**r, "origin_name": names[r["origin"]]} for r in results],
                        [own_status] + [s for _, s in replies], next_cursor(results, more, query, asked, secret),
                        query, asked)
            if counts:
                each = {c.node_id: (c, got) for c, got in counted_apart}
                each.update((s.node_id, s.counted) for _, s in replies if s.counted is not None)
                page.counts, page.counted = facets.add_up(([mine] if mine else []) + [each[p.node_id] for p in targets])
        finally:
            if owned_client:
                await client.close()
    return page


async def _ask_again(client: PeerClient, peer: peers.Peer, query: Query, deadline: float, status: SourceStatus
                     ) -> tuple[list[dict[str, Any]], int | None]:
    """A partner's second round, within what is left of the search's deadline, folded into its
    status: (the records, how many it sent), or ([], None) if it failed. A partner failing now is
    reported like any failure; the records of its first answer stay on the page (they are checked
    like any other), and the page stays exact for every other source (round_two)."""
    left = deadline - time.monotonic()
    if left <= 0:
        status.status, status.error = "timeout", "no time left for its second round"
        return [], None
    records, second = await _ask(client, peer, query, left, withheld=status.withheld)
    status.ms += second.ms
    status.float_free = status.float_free and second.float_free
    if second.status not in ("ok", "invalid"):
        status.status, status.error = second.status, f"second round: {second.error}"
        return [], None
    status.count += second.count
    status.dropped += second.dropped
    if second.dropped:
        status.status, status.error = "invalid", f"dropped {status.dropped}: {second.error.partition(': ')[2]}"
    return records, len(records) + second.dropped


class _Desc:
    """A sort key that orders backwards, so that one min-heap serves both directions."""

    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key

    def __lt__(self, other: "_Desc") -> bool:
        return other.key < self.key


@dataclass
class _Stream:
    """One source's position in a walk: what it has sent and not yet merged, and where it is."""

    index: int
    status: SourceStatus
    peer: peers.Peer | None = None
    buffer: deque[dict[str, Any]] = field(default_factory=deque)
    #: The sort key of each record in buffer, in the same order.
    keys: deque[SortKey] = field(default_factory=deque)
    after: Any = None
    more: bool = True
    #: How many records it is asked for at a time (walk_page).
    page: int = MAX_PAGE
    pending: asyncio.Task[tuple[list[dict[str, Any]], list[SortKey]]] | None = None


def _full_screen(pool: ProcessPoolExecutor | None, known: AbstractSet[bytes], sink: list[checked.Check]) -> Screen:
    """A walk's screener: every record checked in full (in the pool's worker processes, if any)
    unless in `known`, and the digests of the newly checked collected in sink. A worker judges
    the reply and sends back only a Verdict; meanwhile this process reads the values from the same
    bytes itself (by orjson: _values), rather than unpickling records a worker parsed. The worker's
    split_reply is the judge of the reply's form: this process takes the records only from a
    reply the worker accepted, and of the length it found, and takes orjson's only if the worker
    read it with the canonical reader (else it reads it again with split_reply)."""
    async def run(body: bytes, peer: peers.Peer, query: Query) -> Screened:
        records: list[Any] | None = None
        if known:
            # A repeat walk: if every record of the reply was checked before, judge here (origin,
            # sort key and digest are all that is left to do) rather than write the reply into a
            # worker's pipe and wait for a CPU. The same pure function on the same records with the
            # same `known` as the worker's, so the same verdict (tests/test_dataview.py).
            read = read_known(body, peer.public_key, known, query.limit)
            if read is not None:
                records, digests = read
                keys: list[SortKey] = []
                screened = assemble(records, judge(records, [], True, peer, query, full=True, known=known,
                                                   digests=digests, keys=keys), query, True, keys)
                sink.extend(screened.newly_checked)  # none: every record was known
                return screened
        if known and pool is not None:
            # Some record of the reply is new to this node: read it as every reply is read
            # (split_reply), and judge here all the same if every record was checked before (a
            # reply that read_known declines for its layout alone).
            records, received, float_free = split_reply(body)
            digests = list(itertools.takewhile(known.__contains__, (
                checked.digest(peer.public_key, b) for b in received[: query.limit])))
            if len(digests) == len(received[: query.limit]):
                screened = assemble(records, judge(records, received, float_free, peer, query, full=True,
                                                   known=known, digests=digests), query, float_free)
                sink.extend(screened.newly_checked)
                return screened
        pending = None
        if pool is not None:
            with contextlib.suppress(BrokenProcessPool):  # a worker killed (OOM?): check here instead
                pending = asyncio.get_running_loop().run_in_executor(
                    pool, functools.partial(_judge_in_worker, body, peer, query))
        verdict = None
        by_orjson = False
        if pending is not None:
            if records is None:  # the values, while the worker reads the reply as wirejson does
                records, by_orjson = _values(body), True
            with contextlib.suppress(BrokenProcessPool):
                verdict = await pending
        if verdict is None:
            screened = screen(body, peer, query, full=True, known=known)
            sink.extend(screened.newly_checked)
            return screened
        if verdict.error:
            raise PeerError(verdict.error)
        if by_orjson and (records is None or not verdict.canonical):
            # Not a reply as partners write them: read here as the worker read it (wirejson's rules).
            with contextlib.suppress(PeerError):
                records = split_reply(body)[0]
        if not isinstance(records, list) or len(records) != verdict.count:
            raise PeerError("reply has no record list")  # not reached: the worker read it so
        sink.extend(verdict.newly_checked)
        return assemble(records, verdict, query, verdict.float_free)
    return run


_worker_known: AbstractSet[bytes] = frozenset()


def _start_worker(known: AbstractSet[bytes]) -> None:
    global _worker_known
    _worker_known = known  # inherited through fork: shared, never pickled
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle, without tracebacks


def _judge_in_worker(body: bytes, peer: peers.Peer, query: Query) -> Verdict:
    try:
        records, received, float_free, plain = _split_plain(body)
    except PeerError as exc:
        return Verdict(error=str(exc))
    verdict = judge(records, received, float_free, peer, query, full=True, known=_worker_known, plain=plain)
    verdict.canonical = plain  # read by the canonical reader (_split_plain)
    return verdict


def _values(body: bytes) -> list[Any] | None:
    """The records of a reply that the canonical reader reads (_split_canonical), by orjson: the
    same values, in about half the CPU of reading it again (5.3 against 11.0 us a record). Why the
    same: such a reply's every record is exactly what orjson writes for the value the standard
    decoder gives (the canonical reader compares the bytes), with no number that is not an
    integer, none past I-JSON's range, no repeated member and no lone surrogate; on such text
    orjson reads what it wrote. None if orjson refuses it or it is not `{"records": [...]}`; the
    caller takes these records only when the worker has found the reply canonical."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    records = value.get("records") if type(value) is dict and len(value) == 1 else None
    return records if type(records) is list else None


def _check_pool(workers: int | None, known: AbstractSet[bytes]) -> ProcessPoolExecutor | None:
    """Worker processes for checking records, or None to check in this process. Schema and
    signature checks are ~60% of a walk's CPU and hold the GIL for half of it, so threads do not
    help (measured) but processes do. Forked, so they start in milliseconds with the validators
    already compiled; only on Linux, where fork is safe for this (macOS is not)."""
    count = (os.cpu_count() or 1) if workers is None else workers
    if count < 1 or (workers is None and count < 2) or not sys.platform.startswith("linux"):
        return None
    schemas.fast_validator("profile")  # compile once, before forking
    schemas.rust_validator("profile")
    # Fork only from a process with one thread: a fork taken while another thread holds a lock
    # can deadlock the child. The daemon has threads (it runs forwarded commands in one), so there
    # the workers come from a forkserver: forked from its own clean one-threaded process, with
    # this module preloaded.
    context = multiprocessing.get_context("fork" if threading.active_count() == 1 else "forkserver")
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload(["discnode.dataview"])
    try:
        return ProcessPoolExecutor(count, mp_context=context, initializer=_start_worker, initargs=(known,))
    except OSError:
        return None


_pause_lock = threading.Lock()
_pauses = 0
_resume = False


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector held off while a walk runs (the process's, so while
    walks overlap it resumes when the last one ends, and only if it ran before the first began).
    A caller that writes a walk's records out and drops them (`search --all`) holds it off until
    then too: the first collection after it resumes goes through every object made since it was
    held off that is still alive, a walk's records (~90 ms of a 0.35 s repeat walk's CPU at
    17,000 records); records freed before it resumes are freed by their reference counts alone.
    A walk creates some 30 lists and objects a record, 600,000 for 18,000 profiles, all kept
    until it ends: each collection of the oldest generation goes through all of them again, and
    those grew with the walk (measured: 0.1 s of a 0.55 s repeat walk's CPU in a small process;
    more in the daemon, whose own objects are gone through too). Nothing here makes cycles that
    need it; reference counting still frees everything else, and whatever cycles other code makes
    meanwhile are collected when it resumes."""
    global _pauses, _resume
    with _pause_lock:
        if _pauses == 0:
            _resume = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _resume:
                gc.enable()


async def walk(home: Home, query: Query, *, timeout: float = DEFAULT_TIMEOUT, page_size: int | None = None,
               partnerships: Iterable[str] = (), client: PeerClient | None = None, workers: int | None = None,
               remember_checks: bool = True, on_source_done: Callable[[SourceStatus], None] | None = None
               ) -> tuple[list[dict[str, Any]], list[SourceStatus]]:
    """Every matching profile across the Dataview, in order: a streaming k-way merge in which each
    source is paged on its own, from its own last key, and asked for its next page only when its
    buffer runs low, in pages as large as it serves (walk_page; page_size, if given, caps them).
    Each record crosses the network about once, where paging the merged view
    (`search` with a cursor) fetches up to one page per peer for every page shown. Every record is
    fully checked, in `workers` processes (default: one per CPU; 0 checks in this process), except
    those checked by an earlier walk (checked.py; remember_checks=False neither uses nor adds to
    that record). on_source_done(status) is called once for each source, when it has sent its last
    page (or failed): for a progress bar. A status's float_free says whether every record from
    that source held no float (output.json_ascii can then skip its scan of them)."""
    query = query.checked()
    wanted = {parse_node_id(p) for p in partnerships}
    targets = [p for p in active_peers(home) if not wanted or p.node_id in wanted]
    own = not wanted or home.node_id in wanted
    owned_client = client is None
    client = client or PeerClient(home.identity, timeout=timeout)
    with collector_paused():
        return await _walk(home, query, timeout, page_size, targets, own, client, owned_client, workers,
                           remember_checks, on_source_done)


async def _walk(home: Home, query: Query, timeout: float, page_size: int | None, targets: list[peers.Peer], own: bool,
                client: PeerClient, owned_client: bool, workers: int | None, remember_checks: bool,
                on_source_done: Callable[[SourceStatus], None] | None
                ) -> tuple[list[dict[str, Any]], list[SourceStatus]]:
    page = replace(query, after=None)
    streams = ([_Stream(0, SourceStatus(home.node_id, home.config.name, "ok", float_free=True),
                        page=walk_page(None, page_size))] if own else []) + [
        _Stream(i + 1, SourceStatus(p.node_id, p.name, "ok", withheld=withheld_by(home, p), float_free=True), p,
                page=walk_page(p, page_size))
        for i, p in enumerate(targets)]
    by_index = {s.index: s for s in streams}

    async def fetch(stream: _Stream) -> tuple[list[dict[str, Any]], list[SortKey]]:
        try:
            return await fetch_page(stream)
        finally:
            # Each source's own elapsed time: from the start of the walk to its last answer.
            stream.status.ms = int((time.monotonic() - started) * 1000)
            if not stream.more and on_source_done is not None:
                on_source_done(stream.status)

    async def fetch_page(stream: _Stream) -> tuple[list[dict[str, Any]], list[SortKey]]:
        """A source's next page: its records and their sort keys."""
        q = replace(page, after=stream.after, limit=stream.page)
        keys: list[SortKey] = []
        if stream.peer is None:
            records = [r for r in store.search(home.db, q, today()) if r["origin"] == home.node_id]
            keys = [sort_key(r, query.sort) for r in records]
            stream.more = len(records) >= stream.page
            stream.status.float_free = stream.status.float_free and wirejson.float_free(records)
        else:
            # Every record of a walk is checked anyway, so check it as it arrives (in a worker
            # process, while this one merges): a peer's position then only ever advances to the key
            # of a record that proved genuine.
            records, status = await _ask(client, stream.peer, q, timeout, checker, keys=keys)
            if status.too_wide:
                # It lists WIDE_FEATURE but refused the wide page (its node went back to a release
                # without it; spec 8.1), or its page was over what this node reads: the same page
                # once more in MAX_PAGE, and the rest of this walk too. Never a third time: a page
                # of MAX_PAGE is never too wide.
                stream.page = MAX_PAGE
                keys.clear()
                q = replace(q, limit=MAX_PAGE)
                records, status = await _ask(client, stream.peer, q, timeout, checker, keys=keys)
            if status.status not in ("ok", "invalid") or (status.status == "invalid" and not status.dropped):
                # Failed, or the whole reply refused (an HTTP error, no record list): reported, not "ok".
                stream.status.status, stream.status.error = status.status, status.error
                stream.more = False
                return [], []
            stream.status.dropped += status.dropped
            stream.status.float_free = stream.status.float_free and status.float_free
            if status.dropped:
                stream.status.status, stream.status.error = "invalid", status.error
            stream.more = bool(records) and len(records) + status.dropped >= stream.page
        if records:
            stream.after = keys[-1]
        stream.status.count += len(records)
        return records, keys

    def heap_key(stream: _Stream) -> tuple[Any, int]:
        key = stream.keys[0]
        return (_Desc(key) if query.desc else key, stream.index)

    started = time.monotonic()
    known = checked.load(home.db, today()) if remember_checks and targets else frozenset()
    pool = _check_pool(workers, known) if targets else None
    newly_checked: list[checked.Check] = []
    checker = _full_screen(pool, known, newly_checked)
    try:
        firsts = await asyncio.gather(*(fetch(s) for s in streams))
        heap = []
        for stream, (records, keys) in zip(streams, firsts):
            stream.buffer.extend(records)
            stream.keys.extend(keys)
            if stream.buffer:
                heap.append(heap_key(stream))
        heapq.heapify(heap)
        out: list[dict[str, Any]] = []
        while heap:
            _, index = heapq.heappop(heap)
            stream = by_index[index]
            out.append(stream.buffer.popleft())
            stream.keys.popleft()
            if len(stream.buffer) < stream.page // 2 and stream.more and stream.pending is None:
                stream.pending = asyncio.create_task(fetch(stream))  # prefetch: overlap the round trip
            if not stream.buffer and stream.pending is not None:
                records, keys = await stream.pending
                stream.buffer.extend(records)
                stream.keys.extend(keys)
                stream.pending = None
            if stream.buffer:
                heapq.heappush(heap, heap_key(stream))
    finally:
        for stream in streams:
            if stream.pending is not None:
                stream.pending.cancel()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if owned_client:
            await client.close()
    if newly_checked and remember_checks:
        checked.remember(home.db, newly_checked, today())
    names = {s.status.node_id: s.status.name for s in streams}
    for record in out:  # each parsed (or read) by this walk, and held by nothing else: no copy
        record["origin_name"] = names[record["origin"]]
    return out, [s.status for s in streams]


async def fetch_profile(home: Home, ref: str, save_images: Path | None = None,
                        client: PeerClient | None = None) -> dict[str, Any]:
    """A peer's profile in full, checked; with save_images, its full images saved there as
    <sha256>.jpg. Every peer-supplied value is checked against its schema before it becomes a URL
    or a file name, and nothing is written unless the whole reply passed."""
    node_part, _, profile_id = ref.partition(":")
    node_id = parse_node_id(node_part)
    untrusted.checked("profile_id", profile_id, "profile ID")
    peer = peers.get(home.db, node_id)
    if not peers.agreement(home.db, home.node_id, node_id, today()).active:
        raise Refused(f"no active agreement with {peer.name}")
    async with contextlib.nullcontext(client) if client else PeerClient(home.identity) as client:
        body = await client.call_json(peer, "GET", f"/v1/profiles/{profile_id}")
        try:
            schemas.validate("profile-reply", body)
        except InvalidInput as exc:
            raise PeerError(f"{peer.name} sent a profile reply that breaks the protocol: {str(exc)[:200]}") from None
        good, dropped, reason = verify_records([body["record"]], peer)
        if not good:
            raise PeerError(f"{peer.name} sent a profile that failed verification: {reason}")
        if good[0]["id"] != profile_id:
            raise PeerError(f"{peer.name} sent profile {good[0]['id']} when asked for {profile_id}")
        try:
            images = [untrusted.checked("sha256_hex", sha, "image hash") for sha in body["images"]]
        except InvalidInput as exc:
            raise PeerError(f"{peer.name} sent a profile reply that breaks the protocol: {exc}") from None
        if save_images:
            files = {sha: untrusted.file_in(save_images, f"{sha}.jpg") for sha in images}  # before anything is made
            fetched: dict[str, bytes] = {}
            for sha in images:
                reply = await client.request(peer, "GET", f"/v1/images/{sha}?size=full")
                if reply.status == 200:
                    if hashlib.sha256(reply.body).hexdigest() != sha:
                        raise PeerError(f"{peer.name} sent image {sha[:12]} whose bytes have another hash")
                    fetched[sha] = reply.body
            from .exports import private_dir, register, write_private
            private_dir(save_images)  # owner-only (exports.py)
            saved = [str(write_private(files[sha], data)) for sha, data in fetched.items()]
            for path in saved:  # so that an erasure of this profile can name them (notices.py)
                register(home.db, Path(path), good, home.node_id)
    out = {**good[0], "origin_name": peer.name, "images": images}
    return {**out, "saved_images": saved} if save_images else out


def show_remote(home: Home, ref: str, save_images: Path | None) -> dict[str, Any]:
    return asyncio.run(fetch_profile(home, ref, save_images))


async def thumbnails(home: Home, results: list[dict[str, Any]], timeout: float = DEFAULT_TIMEOUT,
                     client: PeerClient | None = None) -> dict[str, bytes]:
    """Thumbnail bytes of each result's primary image: own from disk, peers' over the wire, in parallel."""
    from .images import read
    out: dict[str, bytes] = {}
    by_peer = {p.node_id: p for p in peers.all_peers(home.db)}
    async with contextlib.nullcontext(client) if client else PeerClient(home.identity, timeout=timeout) as client:
        async def one(record: dict[str, Any]) -> None:
            sha = record.get("image")
            if not sha:
                return
            try:
                if record["origin"] == home.node_id:
                    out[sha] = read(home.images_root, sha, thumb=True)
                elif record["origin"] in by_peer:
                    untrusted.checked("sha256_hex", sha, "image hash")  # it becomes a URL path segment
                    reply = await client.request(by_peer[record["origin"]], "GET", f"/v1/images/{sha}?size=thumb",
                                                 timeout=timeout)
                    if reply.status == 200:
                        out[sha] = reply.body
            except (OSError, DiscnodeError):
                pass
        await asyncio.gather(*(one(r) for r in results))
    return out
