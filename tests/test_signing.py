"""Signed documents and canonical JSON."""

import json

import pytest
import rfc8785
from hypothesis import given, settings, strategies as st

from discnode.errors import InvalidInput, Unauthenticated
from discnode.identity import Identity
from discnode.signing import canonical, document_hash, sign_document, verify_document

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_canonical_is_byte_equal_to_the_rfc8785_package(value):
    try:
        expected = rfc8785.dumps(value)
    except Exception:
        with pytest.raises(InvalidInput):
            canonical(value)
        return
    assert canonical(value) == expected


@pytest.mark.parametrize("value", [{"k": "\ud800"}, {"big": 2**60}, {"f": float("nan")}])
def test_values_jcs_cannot_represent_are_refused(value):
    with pytest.raises(InvalidInput):
        canonical(value)


@given(st.dictionaries(st.text(max_size=5).filter(lambda k: k != "sig"), json_values, max_size=5))
@settings(max_examples=100, deadline=None)
def test_sign_then_verify_round_trips_and_any_change_breaks_it(doc):
    ident = Identity.generate()
    try:
        signed = sign_document(doc, ident)
    except InvalidInput:
        return
    verify_document(json.loads(json.dumps(signed)), ident.public_key)
    tampered = {**signed, "extra": 1}
    with pytest.raises(Unauthenticated):
        verify_document(tampered, ident.public_key)
    with pytest.raises(Unauthenticated):
        verify_document(signed, Identity.generate().public_key)


def test_document_hash_covers_the_signature():
    ident = Identity.generate()
    a = sign_document({"x": 1}, ident)
    other = "B" if a["sig"][0] == "A" else "A"  # always a different signature
    assert document_hash(a) != document_hash({**a, "sig": other + a["sig"][1:]})
