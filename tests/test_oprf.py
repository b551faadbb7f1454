"""The OPRF core and the Level Two key, as pure functions."""

import pytest
from nacl import bindings as sodium

from discnode import namekey, oprf
from discnode.errors import InvalidInput

SMALL_ORDER = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")


def test_blind_evaluate_unblind_gives_the_holders_own_output():
    key, data = oprf.new_key(), namekey.key("Seán O’Brien", "1985-07-30")
    r, blinded = oprf.blind(data)
    assert oprf.finalize(data, oprf.unblind(r, oprf.evaluate(key, blinded))) == oprf.output(key, data)


def test_blinded_elements_of_one_name_differ_each_time():
    data = b"jane example|1990-02-03"
    assert oprf.blind(data)[1] != oprf.blind(data)[1]


def test_output_depends_on_the_key_and_the_name():
    data = b"jane example|1990-02-03"
    k1, k2 = oprf.new_key(), oprf.new_key()
    assert oprf.output(k1, data) != oprf.output(k2, data)
    assert oprf.output(k1, data) != oprf.output(k1, b"jane example|1990-02-04")


def test_spellings_of_one_person_share_a_key():
    assert namekey.key("SEÁN  O'Brien.", "1985-07-30") == namekey.key("sean obrien", "1985-07-30")


@pytest.mark.parametrize("dob", ["1985-7-30", "30/07/1985", "1985-02-30", "", "19850730"])
def test_a_date_of_birth_not_yyyy_mm_dd_is_refused(dob):
    with pytest.raises(InvalidInput, match="date"):
        namekey.key("Jane Example", dob)


def test_a_name_without_letters_is_refused():
    with pytest.raises(InvalidInput, match="no letters"):
        namekey.key(" -'. ", "1990-02-03")


def _mixed_order() -> bytes:
    return sodium.crypto_core_ed25519_add(oprf.hash_to_group(b"x"), SMALL_ORDER)


@pytest.mark.parametrize("bad", [oprf.IDENTITY, SMALL_ORDER, bytes(32), b"\x01" * 31, b"\xff" * 32,
                                 "mixed"], ids=["identity", "small-order", "zero", "short", "non-canonical",
                                                "mixed-order"])
def test_evaluate_refuses_elements_outside_the_prime_order_group(bad):
    point = _mixed_order() if bad == "mixed" else bad
    with pytest.raises(InvalidInput, match="blinded element"):
        oprf.evaluate(oprf.new_key(), point)


def test_unblind_refuses_a_small_order_reply():
    r, _ = oprf.blind(b"jane example|1990-02-03")
    with pytest.raises(InvalidInput, match="evaluated element"):
        oprf.unblind(r, SMALL_ORDER)


def test_keys_are_reduced_non_zero_scalars():
    for _ in range(50):
        assert oprf.check_scalar(oprf.new_key())
    with pytest.raises(InvalidInput):
        oprf.check_scalar(bytes(32))
    with pytest.raises(InvalidInput):
        oprf.check_scalar(b"\xff" * 32)


def test_an_output_cannot_be_reproduced_without_the_key():
    """What a published output is to someone without k: not the hash of the name, nor the name's
    point, nor F under any other key."""
    key, data = oprf.new_key(), b"jane example|1990-02-03"
    published = oprf.output(key, data)
    guesses = {oprf.finalize(data, oprf.hash_to_group(data)), oprf.output(oprf.new_key(), data)}
    assert published not in guesses
