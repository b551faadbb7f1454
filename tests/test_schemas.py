"""Every example in protocol/examples validates against its schema; code lists are enforced."""

import json
from pathlib import Path

import pytest

from discnode import schemas
from discnode.errors import InvalidInput

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
