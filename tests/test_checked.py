"""The record of peers' records already checked in full: keyed by everything a check depends on."""

import datetime as dt

from discnode import checked


def test_digest_changes_with_the_key_the_bytes_or_the_rules(monkeypatch):
    base = checked.digest(b"k" * 32, b'{"a":1,"sig":"x"}')
    assert len(base) == 32
    assert checked.digest(b"k" * 32, b'{"a":1,"sig":"x"}') == base
    assert checked.digest(b"j" * 32, b'{"a":1,"sig":"x"}') != base  # another origin key
    assert checked.digest(b"k" * 32, b'{"a":2,"sig":"x"}') != base  # other signed bytes
    assert checked.digest(b"k" * 32, b'{"a":1,"sig":"y"}') != base  # another signature
    assert checked.digest(b"k" * 32, b'{"a":1, "sig":"x"}') != base  # any other bytes at all
    monkeypatch.setattr(checked, "_schema_tag", lambda: b"\0" * 32)
    assert checked.digest(b"k" * 32, b'{"a":1,"sig":"x"}') != base  # another profile schema


def test_load_finds_what_was_remembered_and_expiry_forgets_it(home):
    day = dt.date(2026, 11, 24)
    old, new = b"o" * 32, b"n" * 32
    checked.remember(home.db, [(old, "N", "p")], day)
    assert checked.load(home.db, day) == {old}
    assert checked.load(home.db, day + dt.timedelta(days=checked.MAX_AGE_DAYS + 1)) == set()  # expired
    checked.remember(home.db, [(new, "N", "p")], day + dt.timedelta(days=checked.MAX_AGE_DAYS + 1))
    assert checked.count(home.db) == 1  # the expired one is gone from disk too
    assert checked.load(home.db, day + dt.timedelta(days=checked.MAX_AGE_DAYS + 1)) == {new}


def test_remembering_twice_keeps_the_first_check_date(home):
    day = dt.date(2026, 11, 24)
    checked.remember(home.db, [(b"x" * 32, "N", "p")], day)
    checked.remember(home.db, [(b"x" * 32, "N", "p")], day + dt.timedelta(days=20))
    assert checked.load(home.db, day + dt.timedelta(days=checked.MAX_AGE_DAYS + 1)) == set()


def test_the_digester_gives_digest_s_digests():
    """checked.digester(key) (a repeat walk's, one BLAKE2b state a key) is digest(key, ...), byte for byte."""
    for key in (b"k" * 32, b"j" * 32):
        of = checked.digester(key)
        for text in (b"", b'{"a":1,"sig":"x"}', b"x" * 5000, "é".encode()):
            assert of(text) == checked.digest(key, text)
            assert of(text) == of(text)  # the shared state is copied, never consumed
