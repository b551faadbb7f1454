"""Replay protection: which nonces are remembered, for how long, and across a restart."""

import math

from discnode.replay import Nonces


def test_window_forgets_only_nonces_that_can_no_longer_pass():
    book = Nonces()
    now = 1_000_000.0
    assert not book.seen("K", "n1", now + 120, now)
    assert book.seen("K", "n1", now + 120, now + 100)  # still inside its window
    assert not book.seen("L", "n1", now + 120, now + 100)  # nonces are per key
    assert not book.seen("K", "n2", now + 10_120, now + 10_000)  # n1 is long dead: forgotten
    assert ("K", "n1") not in book and ("K", "n2") in book and len(book) == 1


def test_saved_nonces_survive_a_restart_until_their_window_ends(home):
    now = 1_000_000.0
    book = Nonces()
    book.seen("K", "short", now + 10, now)
    book.seen("K", "long", now + 120, now)
    book.save(home.db, now)
    assert not book.unsaved
    again = Nonces.load(home.db, now + 60)  # a restart a minute later
    assert again.seen("K", "long", now + 120, now + 60)
    assert not again.seen("K", "short", now + 10, now + 60)
    assert home.db.execute("select count(*) from nonces where nonce = 'short'").fetchone()[0] == 0


def test_the_compact_nonce_table_answers_as_a_set_would_under_any_order_of_arrivals_and_expiries():
    """replay.Nonces keeps digests in a hand-written linear-probing table (deletion by backward
    shift, resized both ways): against the plain-set bookkeeping it replaced (pairs in a set, whole
    seconds leaving from the front of a queue in arrival order), for random arrivals, replays and
    expiries, with a table small enough that runs wrap round its end, collide and resize."""
    from collections import deque

    from hypothesis import given, settings, strategies as st

    events = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 400), st.integers(0, 30), st.integers(0, 3)),
                      min_size=1, max_size=400)

    @settings(max_examples=60, deadline=None)
    @given(events)
    def check(steps):
        book = Nonces()
        book.MIN_SLOTS = 8  # instance override: tiny tables, so wrap-round and resizes happen
        book._resize(8)
        held: set[tuple[str, str]] = set()
        by_second: dict[int, list[tuple[str, str]]] = {}
        seconds: deque[int] = deque()
        now = 0.0
        for key, nonce, life, advance in steps:
            now += advance
            while seconds and seconds[0] < now:
                held.difference_update(by_second.pop(seconds.popleft()))
            pair = (f"K{key}", f"n{nonce}")
            replay = book.seen(*pair, now + life, now)
            assert replay == (pair in held), (pair, now)
            if not replay:
                held.add(pair)
                second = math.ceil(now + life)
                if second not in by_second:
                    by_second[second] = []
                    seconds.append(second)
                by_second[second].append(pair)
            assert len(book) == len(held) and all(p in book for p in held)
        assert len(book._table) >= 2 * len(book) and len(book._table) & (len(book._table) - 1) == 0

    check()


def test_deleting_from_runs_that_wrap_round_the_table_end_keeps_every_other_digest_findable():
    """Exhaustively, on an 8-slot table: four digests whose home slots are near the end (so their
    run wraps to the start), inserted in every order of homes and deleted in every order; after
    each deletion every digest still held is found where probing from its home reaches it."""
    import itertools
    for homes in itertools.product((5, 6, 7, 0), repeat=4):
        digests = [home + 8 * (n + 1) for n, home in enumerate(homes)]  # distinct, same low bits
        for order in itertools.permutations(range(4)):
            book = Nonces()
            book.MIN_SLOTS = 8
            book._resize(8)
            for d in digests:
                book._add(d)
            left = set(digests)
            for k in order:
                book._delete(digests[k])
                left.discard(digests[k])
                assert all(book._table[book._slot(d)] == d for d in left), (homes, order, k)
                assert book._table[book._slot(digests[k])] != digests[k]
                assert len(book) == len(left)
