"""The peer API under property-based fuzzing (tests/fuzz_peer_api.py), every request signed by a
consenting peer: a fast, derandomized slice of the full run (which is
`python -m tests.fuzz_peer_api`, 1,000 cases per endpoint)."""

import json
import re
from pathlib import Path

from discnode import server
from discnode.home import Config, Home
from tests import fuzz_peer_api as fuzz

ROOT = Path(__file__).resolve().parent.parent


def test_openapi_lists_every_route_the_server_has(tmp_path):
    home = Home.create(tmp_path / "n", Config(name="Routes BCRP"))
    try:
        app = server.create_app(home)
        routes = {(r.method, re.sub(r"\{(\w+):[^}]*\}\}?", r"{\1}", r.resource.canonical))
                  for r in app.router.routes() if r.method != "HEAD"}
    finally:
        home.close()
    spec = json.loads((ROOT / "protocol" / "openapi.json").read_text())
    documented = {(m.upper(), p) for p, ms in spec["paths"].items() for m in ms}
    assert routes == documented


def test_every_v1_operation_documents_the_refusals_it_can_give():
    for op in fuzz.operations():
        needed = {"200", "401", "403", "413", "429"}
        if op.body_schema or op.params:
            needed.add("400")
        if any(p["in"] == "path" for p in op.params):
            needed.add("404")
        assert needed <= set(op.responses), (op.label, needed - set(op.responses))


def test_fuzzed_signed_requests_never_get_5xx_and_4xx_have_the_error_shape(tmp_path):
    results = fuzz.run(tmp_path, per_endpoint=30, derandomize=True, stop_on_failure=True)
    assert set(results) == {op.label for op in fuzz.operations()}
    assert {"POST /v1/profiles/query", "GET /v1/profiles/{profile_id}", "GET /v1/images/{sha256}",
            "POST /v1/descriptor", "POST /v1/consent"} <= set(results)
    for label, tally in results.items():
        assert tally.cases == 30 and tally.by_class["5xx"] == 0 and not tally.failures, (label, tally)
        # An answer is taken only for a document the server itself sent: none, in a fuzz run.
        answers = ("POST /v1/consent", "POST /v1/proposals/outcome", "POST /v1/links/answer")
        assert tally.by_class["2xx"] > 0 or label in answers, (label, tally)
        assert tally.by_class["4xx"] > 0, (label, tally)
    assert len(results) >= 5
