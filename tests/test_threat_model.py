"""protocol/threat-model.md names, for every threat, the tests that prove its control. These tests
keep that page true: every named test exists, and no threat is left without one."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "protocol" / "threat-model.md"
NAMED = re.compile(r"`(test_[a-z0-9_]+\.py)::(test_[a-z0-9_]+)`")


@functools.cache  # a test file names many tests: parse it once, not once for each
def _test_functions(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text())
    return frozenset(n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                     and n.name.startswith("test_"))


def _threat_rows() -> list[str]:
    return [line for line in MODEL.read_text().splitlines() if re.match(r"\| T\d+ \|", line)]


def test_every_test_the_threat_model_names_exists() -> None:
    named = NAMED.findall(MODEL.read_text())
    assert len(named) > 20
    missing = [f"{f}::{t}" for f, t in named
               if not (ROOT / "tests" / f).exists() or t not in _test_functions(ROOT / "tests" / f)]
    assert missing == [], f"protocol/threat-model.md names tests that do not exist: {missing}"


def test_every_threat_has_a_control_and_a_test() -> None:
    rows = _threat_rows()
    assert len(rows) > 15
    ids = [row.split("|")[1].strip() for row in rows]
    assert len(ids) == len(set(ids)), "threat IDs must be unique"
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        assert len(cells) == 6, f"threat row must have id, threat, agent, EP, control, tests: {row}"
        assert cells[4], f"{cells[0]} has no control"
        assert NAMED.search(cells[5]), f"{cells[0]} names no test"


def test_every_threat_and_entry_point_has_its_own_number() -> None:
    text = MODEL.read_text()
    for kind in ("T", "EP"):
        ids = re.findall(rf"^\|\s*({kind}[0-9]+)\s*\|", text, re.M)
        assert ids, kind
        assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


def test_every_endpoint_of_the_peer_api_is_an_entry_point() -> None:
    import json
    text = MODEL.read_text()
    table = "\n".join(line for line in text.splitlines() if re.match(r"^\|\s*EP[0-9]+\s*\|", line))
    for path in json.loads((ROOT / "protocol" / "openapi.json").read_text())["paths"]:
        assert f"{path}`" in table, f"{path} is in openapi.json but in no entry point of the threat model"
