"""Every example in protocol/examples validates against its schema; code lists are enforced."""

import json
from pathlib import Path

import pytest

from discnode import schemas
from discnode.errors import InvalidInput
from discnode.query import Query

PROTOCOL = Path(__file__).resolve().parent.parent / "protocol"
EXAMPLES = sorted((PROTOCOL / "examples").glob("*.json"))


def test_every_schema_has_an_example():
    have = {p.name.split(".")[0] for p in EXAMPLES}
    want = {p.name.removesuffix(".schema.json") for p in (PROTOCOL / "schemas").glob("*.schema.json")} - {"codes"}
    assert want <= have, f"schemas without an example: {want - have}"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid(path):
    schemas.validate(path.name.split(".")[0], json.loads(path.read_text()))


def test_packaged_schemas_are_the_protocol_ones():
    assert schemas.schema_dir().resolve() in ((PROTOCOL / "schemas").resolve(),) or all(
        (schemas.schema_dir() / p.name).read_text() == p.read_text() for p in (PROTOCOL / "schemas").glob("*.json"))


@pytest.mark.parametrize("code_list, bad", [("ethnicity", "IC7"), ("build", "tall"), ("gender", "M")])
def test_unknown_codes_are_refused(code_list, bad):
    with pytest.raises(InvalidInput, match="not a known code"):
        schemas.check_code(code_list, bad)


# The fast validator must accept exactly what the reference validator accepts.
from hypothesis import given, settings, strategies as st  # noqa: E402

PROFILE = json.loads((PROTOCOL / "examples" / "profile.json").read_text())
QUERY = json.loads((PROTOCOL / "examples" / "query.json").read_text())
values = st.one_of(st.none(), st.booleans(), st.integers(-5, 300), st.text(max_size=12),
                   st.sampled_from(["IC1", "IC7", "2026-02-30", "2026-02-28", "2026-11-24T16:00:00Z", "slim",
                                    "1990-13-01", "x" * 101]),
                   st.lists(st.sampled_from(["shoplifting", "jaywalking", 3]), max_size=3))


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(["profile", "query"]), field=st.text(min_size=1, max_size=12), value=values,
       pick=st.integers(0, 30))
def test_fast_and_reference_validators_agree(name, field, value, pick):
    base = dict(PROFILE if name == "profile" else QUERY)
    keys = sorted(base)
    key = keys[pick % len(keys)] if pick < 25 else field
    doc = {**base, key: value}
    reference = schemas.validator(name).is_valid(doc)
    try:
        schemas.fast_validator(name)(doc)
        fast = True
    except Exception:
        fast = False
    assert fast == reference, (key, value)


def _paths(doc, prefix=()):
    """Every place in a document a value could be replaced: each member and item, at every depth."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


def _replaced(doc, path, value):
    if not path:
        return value
    out = dict(doc) if isinstance(doc, dict) else list(doc)
    out[path[0]] = _replaced(doc[path[0]], path[1:], value)
    return out


NULLABLE_SHAPES = st.one_of(
    values, st.just("a" * 64), st.just("A" * 64), st.just("2026-11-26"), st.just({}),
    st.just({"until": "2027-01-01", "premises": ["x"]}), st.dictionaries(st.sampled_from(["until", "premises", "x"]),
                                                                           values, max_size=3))


@settings(max_examples=1500, deadline=None)
@given(example=st.sampled_from(EXAMPLES), pick=st.integers(0, 10_000), value=NULLABLE_SHAPES,
       drop=st.booleans())
def test_compiled_validators_accept_exactly_what_the_published_schemas_accept(example, pick, value, drop):
    """The compiled validators rewrite `oneOf: [null, X]` (schemas._null_last): every schema,
    every place in its example replaced (or removed), null or not, against the reference
    validator of the schema as published."""
    name = example.name.split(".")[0]
    doc = json.loads(example.read_text())
    paths = list(_paths(doc))
    path = paths[pick % len(paths)]
    if drop and path and isinstance(path[-1], str):
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        mutated = _replaced(doc, path[:-1], {k: v for k, v in parent.items() if k != path[-1]})
    else:
        mutated = _replaced(doc, path, value)
    reference = schemas.validator(name).is_valid(mutated)
    try:
        schemas.fast_validator(name)(mutated)
        fast = True
    except Exception:
        fast = False
    assert fast == reference, (name, path, value, drop)


def test_no_nullable_field_of_a_profile_costs_an_exception(monkeypatch):
    """A profile with every `oneOf: [null, X]` field null, then every one set, is checked without
    fastjsonschema raising (and catching) an exception about any of them: the rewrite is in force.
    Both still valid. (The schema's `if` clauses still cost theirs.)"""
    import fastjsonschema
    raised = []
    original = fastjsonschema.JsonSchemaValueException.__init__

    def counting(self, *args, **kw):
        raised.append(args[0] if args else "")
        original(self, *args, **kw)
    monkeypatch.setattr(fastjsonschema.JsonSchemaValueException, "__init__", counting)
    check = schemas.fast_validator("profile")
    nulls = {**PROFILE, "dob": None, "last_seen": None, "image": None, "exclusion": None}
    assert PROFILE["dob"] and PROFILE["last_seen"] and PROFILE["image"] and PROFILE["exclusion"]
    for doc in (PROFILE, nulls):
        check(doc)
        assert schemas.validator("profile").is_valid(doc)
    nullable = ("dob", "last_seen", "image", "exclusion")
    assert [m for m in raised if str(m).startswith(tuple(f"data.{f}" for f in nullable))] == []


def test_query_after_is_checked_item_by_item():
    bad = {**QUERY, "after": ["x", "not a node id", "abcdefgh2345"]}
    with pytest.raises(InvalidInput, match="after"):
        schemas.validate("query", bad)


def test_openapi_refers_only_to_schemas_that_exist(home):
    doc = json.loads((PROTOCOL / "openapi.json").read_text())
    refs = set()

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                refs.add(node["$ref"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(doc)
    assert refs, "the OpenAPI document should use the message schemas"
    for ref in refs:
        assert (PROTOCOL / ref).is_file(), ref
    import re
    from discnode.server import create_app  # every route the server has is documented, and no more
    routes = {re.sub(r"\{(\w+):[^}]*\}", r"{\1}", r.canonical) for r in create_app(home).router.resources()}
    assert routes == set(doc["paths"])


@pytest.mark.parametrize("field", ["age_min", "age_max", "limit"])
def test_integer_fields_take_a_zero_fraction_as_json_schema_says(field):
    """The schema side of `20.0 is 20` (spec section 1): both validators accept it, the query is
    the same as with 20, and a real fraction is refused naming the field."""
    assert schemas.validator("query").is_valid({field: 20.0})
    schemas.fast_validator("query")({field: 20.0})
    query = Query.from_wire({field: 20.0})
    assert query == Query.from_wire({field: 20}) and type(getattr(query, field)) is int
    with pytest.raises(InvalidInput, match=f"^{field}: must be an integer$"):
        schemas.validate("query", {field: 20.5})


def test_after_sort_value_written_with_a_zero_fraction_is_that_integer():
    key = [3.0, "EH7DDXX-5BKSRGV-CYTL7BD-KAI36SU", "abcdefgh2345"]
    assert Query.from_wire({"sort": "incidents", "after": key}).after == (3, key[1], key[2])


# jsonschema-rs checks a profile first (schemas.IN_RUST): every record a walk receives. It must
# accept exactly what the fast validator accepts (validate's judge before it) and never anything the
# reference refuses. (The reference alone reads `$` in a pattern as Python does, before a final
# newline, so it accepts "abcdefghijkl\n" as a profile ID; both compiled validators refuse it, and
# validate() with them.)

def _synthetic_profiles(count: int) -> list[dict]:
    from discnode.profiles import build_record
    from discnode.synthetic import People
    people = People(7)
    return [{**build_record(people.fields(), "ABCDEFG-ABCDEFG-ABCDEFG-ABCDEFG", now="2026-11-26T12:00:00Z"),
             "sig": "A" * 86} for _ in range(count)]


SYNTHETIC = _synthetic_profiles(40)
PROFILE_VALUES = st.one_of(
    values, NULLABLE_SHAPES, st.integers(), st.floats(allow_nan=False), st.text(),
    st.sampled_from(["abcdefghijkl\n", "abcdefghijkl", "ABCDEFG-ABCDEFG-ABCDEFG-ABCDEFG\n", "2026-11-26\n",
                     "2026-11-26T12:00:00Z\n", "0000-01-01", "2026-11-26T24:00:00Z", "2026-11-26T23:59:60Z",
                     "identified", "id-sought", "P", "C", 1.0, 20.0, 2**53, -1, True, "", "ethnicity",
                     ["ethnicity"], ["ethnicity", "ethnicity"], [], {"source": 2, "intelligence": "B",
                     "handling": "C", "conditions": ["staff-only"]}, {"source": 2, "intelligence": "B",
                     "handling": "C", "conditions": []}, {"source": 2, "intelligence": "B", "handling": "P",
                     "conditions": ["staff-only"]}]))


def _three_ways(doc) -> tuple[bool, bool, bool]:
    try:
        schemas.fast_validator("profile")(doc)
        fast = True
    except Exception:
        fast = False
    return schemas._rust_accepts("profile", doc), fast, schemas.validator("profile").is_valid(doc)


@settings(max_examples=2500, deadline=None)
@given(base=st.sampled_from([PROFILE, *SYNTHETIC]), pick=st.integers(0, 10_000), value=PROFILE_VALUES,
       how=st.sampled_from(["replace", "drop", "add"]), more=st.lists(
           st.tuples(st.sampled_from(["withheld", "ethnicity", "status", "first_name", "last_name", "grading"]),
                     PROFILE_VALUES, st.booleans()), max_size=3))
def test_the_rust_validator_accepts_exactly_what_the_fast_validator_accepts(base, pick, value, how, more):
    """Valid profiles (the example and synthetic ones), each with one place anywhere replaced,
    removed or added, and the members the schema's if/then/else clauses tie together (withheld and
    ethnicity; status and the names; a grading's handling and conditions) set or removed."""
    paths = list(_paths(base))
    path = paths[pick % len(paths)]
    if how == "drop" and path and isinstance(path[-1], str):
        parent = base
        for key in path[:-1]:
            parent = parent[key]
        doc = _replaced(base, path[:-1], {k: v for k, v in parent.items() if k != path[-1]})
    elif how == "add" and isinstance(value, str) and value:
        doc = {**base, value: 1}
    else:
        doc = _replaced(base, path, value)
    if isinstance(doc, dict):
        for key, v, remove in more:
            doc = {k: x for k, x in doc.items() if k != key} if remove else {**doc, key: v}
    rust, fast, reference = _three_ways(doc)
    assert rust == fast, (path, value, more)
    assert not rust or reference, (path, value, more)


def test_the_rust_validator_accepts_every_synthetic_profile_and_the_example():
    for doc in [PROFILE, *SYNTHETIC, *_synthetic_profiles(200)]:
        assert _three_ways(doc) == (True, True, True)


@pytest.mark.parametrize("change", [
    {"withheld": ["ethnicity"]},                                   # withheld, yet ethnicity served
    {"status": "identified", "first_name": ""},                    # identified without a name
    {"grading": {"source": 2, "intelligence": "B", "handling": "C", "conditions": []}},  # C without conditions
    {"grading": {"source": 2, "intelligence": "B", "handling": "P", "conditions": ["staff-only"]}},
    {"id": "abcdefghijkl\n"},                                      # the pattern's `$` is the end
    {"dob": "2026-02-30"},                                         # our date check, in Rust too
    {"updated": "2026-11-26T24:00:00Z"},
    {"age_min": True},
    {"revision": 2**53},
    {"extra": 1},
])
def test_a_malformed_profile_is_refused_by_validate(change):
    doc = {**PROFILE, **change}
    assert not schemas._rust_accepts("profile", doc)
    with pytest.raises(InvalidInput):
        schemas.validate("profile", doc)


def test_a_document_the_rust_validator_cannot_read_goes_to_the_others():
    assert not schemas._rust_accepts("profile", {**PROFILE, 1: "x"})
    with pytest.raises(InvalidInput):
        schemas.validate("profile", {**PROFILE, 1: "x"})


TRICKY = ["abcdefghijkl\n", "abcdefghijkl", "ABCDEFG-ABCDEFG-ABCDEFG-ABCDEFG\n", "2026-11-26", "2026-11-26\n",
          "0000-01-01", "2024-02-29", "2023-02-29", "2026-02-30", "2026-11-26T12:00:00Z", "2026-11-26T12:00:00Z\n",
          "2026-11-26T24:00:00Z", "2026-11-26T23:59:60Z", "0000-01-01T00:00:00Z", "2026-11-26t12:00:00z",
          "a" * 64, "A" * 64, "a" * 65, "A" * 86, "A" * 86 + "\n", "x" * 101, "", "\u00e9", "\ud7ff\U0001f600",
          "identified", "id-sought", "IC1", "IC0", "P", "C", "staff-only", 0, 1, 1.0, 120, 121, 2**53 - 1, 2**53,
          -1, True, None, [], {}, ["ethnicity"]]


def test_the_rust_validator_agrees_at_every_place_of_a_profile_for_every_tricky_value():
    """Exhaustively: every value above at every place of the example and of three synthetic
    profiles (the formats, patterns and bounds are where two validators could differ)."""
    for base in [PROFILE, *SYNTHETIC[:3]]:
        for path in _paths(base):
            for value in TRICKY:
                doc = _replaced(base, path, value)
                rust, fast, reference = _three_ways(doc)
                assert rust == fast and (reference or not rust), (path, value)


# References are resolved by hand for the forms our schemas use (schemas._resolve), so that a
# serving node never loads `referencing` and `rpds`; the library stays the judge of everything else.
def _references(node, found):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            found.add(node["$ref"])
        for value in node.values():
            _references(value, found)
    elif isinstance(node, list):
        for value in node:
            _references(value, found)
    return found


@pytest.mark.parametrize("name", sorted(schemas._schemas()))
def test_every_reference_resolves_as_referencing_resolves_it(name):
    original = schemas.schema(name)
    refs = _references(original, set())
    for ref in refs:
        assert schemas._resolve(ref, original["$id"]) == schemas._resolve_by_library(ref, original["$id"]), ref
    # and whole schemas inline the same, references inside referenced schemas included
    import unittest.mock
    by_hand = schemas._inline(original, original["$id"])
    with unittest.mock.patch.object(schemas, "_resolve", schemas._resolve_by_library):
        assert by_hand == schemas._inline(original, original["$id"])


@pytest.mark.parametrize("ref", ["#/$defs/nothing", "nothing.schema.json", "codes.schema.json#/$defs/nothing",
                                 "codes.schema.json#%2F%24defs", "#$defs", "../v1/codes.schema.json",
                                 "codes.schema.json#/$defs/ethnicity/enum/99"])
def test_a_reference_of_another_form_goes_to_the_library(ref):
    from referencing.exceptions import Unresolvable
    base = schemas.schema("query")["$id"]
    try:
        expected = schemas._resolve_by_library(ref, base)
    except Unresolvable as exc:
        with pytest.raises(type(exc)):
            schemas._resolve(ref, base)
    else:
        assert schemas._resolve(ref, base) == expected


def test_compiling_every_validator_a_node_serves_with_loads_no_reference_resolver():
    """`referencing` (and `rpds`, its Rust core) stay out of a serving node: ~1.4 MB resident."""
    import subprocess
    import sys
    code = """
import sys
import discnode.daemon, discnode.server
from discnode import schemas
for name in schemas._schemas():
    schemas.fast_validator(name)
schemas.validate("query", {"limit": 50})
print(sorted({m.split(".")[0] for m in sys.modules} & {"referencing", "rpds", "jsonschema", "multiprocessing"}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
