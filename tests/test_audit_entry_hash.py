"""An audit entry's hash, computed from the detail as written (append_many's shortcut for a plain
detail), is the hash of the detail as its stored text reads back: what `verify` recomputes."""

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from discnode import audit, store

_texts = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=("Cs",)),
                 max_size=12)
_keys = st.one_of(st.text(alphabet="abcdefghij_", max_size=6), _texts)
_leaves = (st.none() | st.booleans() | st.integers(min_value=-2**53 + 1, max_value=2**53 - 1) | _texts
           | st.floats(allow_nan=False, allow_infinity=False) | st.dates())
_details = st.dictionaries(_keys, st.recursive(
    _leaves, lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(_keys, inner, max_size=3), max_leaves=8), max_size=5)


@settings(max_examples=300, deadline=None)
@given(st.lists(_details, min_size=1, max_size=4))
def test_entries_hashed_from_the_detail_written_verify_as_read_back(details):
    db = store.connect(":memory:")
    store.migrate(db)
    audit.append_many(db, [("served", "peer", d) for d in details])
    assert audit.verify(db).ok
    rows = db.execute("SELECT seq, ts, event, peer, detail, prev, hash, actor FROM audit ORDER BY seq").fetchall()
    for seq, ts, event, peer, detail, prev, digest, actor in rows:
        assert digest == audit._entry_hash(prev, seq, ts, event, peer, detail, actor)


def test_a_served_entry_takes_the_shortcut_and_a_dated_one_does_not():
    """The shortcut is taken for what a served page's entry holds, and not for a detail that does
    not read back as itself (a date, written as its str; a tuple, read back as a list)."""
    from discnode.signing import _plain

    served = {"method": "POST", "path": "/v1/profiles/query", "status": 200, "what": "query", "count": 2,
              "records": "abc:1 def:2"}
    assert _plain(served)
    assert not _plain({"when": dt.date(2026, 1, 1)}) and not _plain({"pair": (1, 2)})
