"""Replay protection: which nonces are remembered, for how long, and across a restart."""

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
