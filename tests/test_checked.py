"""The record of peers' records already checked in full: keyed by everything a check depends on."""

import datetime as dt

from discnode import checked


def test_digest_changes_with_the_key_the_bytes_or_the_signature():
    base = checked.digest(b"k" * 32, b'{"a":1}', "sig")
    assert len(base) == 32
    assert checked.digest(b"k" * 32, b'{"a":1}', "sig") == base
    assert checked.digest(b"j" * 32, b'{"a":1}', "sig") != base
    assert checked.digest(b"k" * 32, b'{"a":2}', "sig") != base
    assert checked.digest(b"k" * 32, b'{"a":1}', "sih") != base
    # no ambiguity where the message ends and the signature begins
    assert checked.digest(b"k" * 32, b'{"a":1}x', "y") != checked.digest(b"k" * 32, b'{"a":1}', "xy")


def test_known_finds_what_was_remembered_and_expiry_forgets_it(home):
    day = dt.date(2026, 11, 24)
    old, new = b"o" * 32, b"n" * 32
    checked.remember(home.db, [old], day)
    assert checked.known(str(home.db_path), [old, new]) == {old}
    checked.remember(home.db, [new], day + dt.timedelta(days=checked.MAX_AGE_DAYS + 1))
    assert checked.known(str(home.db_path), [old, new]) == {new}
    assert checked.count(home.db) == 1


def test_an_unreadable_record_of_checks_means_checking_everything(tmp_path):
    assert checked.known(str(tmp_path / "missing.db"), [b"x" * 32]) == set()


def test_many_digests_are_looked_up_in_chunks(home):
    digests = [i.to_bytes(32, "big") for i in range(1234)]
    checked.remember(home.db, digests[::2], dt.date(2026, 11, 24))
    assert checked.known(str(home.db_path), digests) == set(digests[::2])
