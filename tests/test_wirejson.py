"""JSON from the network is I-JSON (RFC 7493), read strictly (discnode/wirejson.py). What real nodes
answer when a peer sends such input is in tests/test_bad_input.py."""

import json

import pytest

from discnode import wirejson
from discnode.errors import InvalidInput


# --- the loader ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, words", [
    (b'{"a":1,"a":2}', 'member "a" appears twice'),
    (b'{"o":{"k":[{"x":1,"x":1}]}}', 'member "x" appears twice'),
    ('{"a":1}'.encode("utf-16"), "not UTF-8"),
    ('{"a":"\u00e9"}'.encode("latin-1"), "not UTF-8"),
    (b"\xef\xbb\xbf{}", "byte order mark"),
    (b"[" * 5000 + b"]" * 5000, "nested deeper than 32"),
    (b"[" * 33 + b"]" * 33, "nested deeper than 32"),
    (b'{"a":NaN}', "NaN is not a JSON number"),
    (b'{"a":-Infinity}', "-Infinity is not a JSON number"),
    (b'{"a":123456789012345678901}', "outside the range"),
    (b'{"a":9007199254740992}', "outside the range"),
    (b'{"a":1e400}', "outside the range"),
    (b'{"a":"\\ud800"}', "unpaired surrogate"),
    (b'{"\\udfff":1}', "unpaired surrogate"),
    (b"{not json", "not valid JSON (line 1, column 2)"),
])
def test_loader_refuses_what_is_not_i_json(text, words):
    with pytest.raises(InvalidInput) as info:
        wirejson.loads(text)
    assert words in str(info.value)
    assert "Expecting" not in str(info.value) and "Traceback" not in str(info.value)


@pytest.mark.parametrize("text, value", [
    (b'{"age_min":20.0}', {"age_min": 20}),
    (b'{"n":2e1}', {"n": 20}),
    (b'{"n":-0.0}', {"n": 0}),
    (b'{"n":9007199254740991}', {"n": 9007199254740991}),
    (b'{"n":2.5}', {"n": 2.5}),
    (b'{"s":"\\ud83d\\ude00"}', {"s": "\U0001F600"}),
])
def test_loader_reads_i_json(text, value):
    assert wirejson.loads(text) == value
    assert type(wirejson.loads(b'{"age_min":20.0}')["age_min"]) is int


def test_loader_reads_32_levels():
    value = wirejson.loads(b"[" * 32 + b"]" * 32)
    for _ in range(31):
        value = value[0]
    assert value == []


# --- the nesting check from the text (wirejson._height) against the walk of the value ---------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# Strings full of what could confuse a reading of the text: brackets, quotes, backslashes, escapes.
_tricky_text = st.text(alphabet=st.sampled_from(list('[]{}"\\/:,ab \n\u00e9\u2028\U0001f600')), max_size=12)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53 + 1, 2**53 - 1) | _tricky_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_tricky_text, inner, max_size=4),
    max_leaves=30)


def _walk_refuses(value: object) -> bool:
    try:
        wirejson._check_depth(value)
        return False
    except InvalidInput:
        return True


@settings(max_examples=600, deadline=None)
@given(value=_json_values, wrappers=st.lists(st.sampled_from(["list", "dict"]), max_size=40),
       ensure_ascii=st.booleans(), spaced=st.booleans())
def test_nesting_read_from_the_text_equals_the_walk_of_the_value(value, wrappers, ensure_ascii, spaced):
    for kind in wrappers:
        value = [value] if kind == "list" else {"[\"{": value}
    text = json.dumps(value, ensure_ascii=ensure_ascii, indent=1 if spaced else None)
    assert (wirejson._height(text.encode()) > wirejson.MAX_DEPTH) == _walk_refuses(value)
    if not _walk_refuses(value):
        assert wirejson._height(text.encode()) == _height_of(value)
    refused = False
    try:
        assert wirejson.loads(text.encode()) == value
    except InvalidInput as exc:
        refused = "nested deeper" in str(exc)
    assert refused == _walk_refuses(value)


def _height_of(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_height_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_height_of, value), default=0)
    return 0
