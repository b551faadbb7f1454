"""A first walk's searching process takes a reply's records from orjson (dataview._values) when its
worker read the reply with the canonical reader, and reads it again as the worker did otherwise:
either way the very values the worker checked."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import given, settings, strategies as st

from tests.test_dataview import AWKWARD, _canonical_body, _signed_source, json_values


def _typed(value: Any) -> Any:
    """A value with every type spelt out: 1, 1.0 and True are equal in Python, not here."""
    if isinstance(value, dict):
        return ("dict", [(k, _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    return (type(value).__name__, value)


@settings(max_examples=600, deadline=None)
@given(records=st.lists(json_values, max_size=4), awkward=st.lists(st.sampled_from(AWKWARD), max_size=2),
       cut=st.integers(0, 400),
       insert=st.sampled_from([b"", b",", b"]", b"}", b" ", b'"', b"\\", b"\xff", b"\xed\xa0\x80", b"0", b".0", b"e1",
                               b"[", b"{", b'"records":[],']))
def test_orjson_reads_every_reply_the_canonical_reader_reads_to_the_same_values(records, awkward, cut, insert):
    from discnode.dataview import _split_canonical, _values
    pieces = [json.dumps(r, separators=(",", ":"), ensure_ascii=False) for r in records] + list(awkward)
    body = _canonical_body(pieces)
    for b in (body, body[:cut] + insert + body[cut:]):
        canonical = _split_canonical(b)
        if canonical is not None:
            assert _typed(_values(b)) == _typed(canonical[0])


def test_a_walk_takes_a_canonical_replys_records_from_orjson_and_reads_any_other_again(monkeypatch):
    """Counted in the searching process: split_reply is not called for a reply as partners write
    it (its worker read it with the canonical reader); it is for any other (spaced out; a number
    spelt `2.0`, which orjson would read as a float), and each gives the records split_reply gives."""
    from discnode import dataview
    from discnode.query import Query
    peer, texts = _signed_source()
    query = Query(limit=50)
    canonical = _canonical_body(texts)
    spaced = json.dumps({"records": [json.loads(t) for t in texts]}, indent=1).encode()
    # `2.0` is the integer 2 to wirejson (so the signature holds) and a float to orjson.
    floaty = _canonical_body([texts[0].replace('"source":2}', '"source":2.0}', 1)] + texts[1:])
    assert floaty != canonical
    pool = dataview._check_pool(1, frozenset())
    assert pool is not None
    read_here: list[bytes] = []
    real = dataview.split_reply
    try:
        for body in (canonical, spaced, floaty):
            expected = dataview.screen(body, peer, query, full=True)
            monkeypatch.setattr(dataview, "split_reply", lambda body: read_here.append(body) or real(body))
            got = asyncio.run(dataview._full_screen(pool, frozenset(), [])(body, peer, query))
            monkeypatch.setattr(dataview, "split_reply", real)
            assert got == expected and len(got.records) == len(texts)
            assert _typed(got.records) == _typed(expected.records)
    finally:
        pool.shutdown()
    assert read_here == [spaced, floaty]
