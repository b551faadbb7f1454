"""Bad input from a consenting peer, between real nodes on loopback: every refusal is a 4xx in the
request's terms (never a 500, a traceback or a parser's words), and changes nothing."""

import asyncio
import json
import logging
import ssl

import pytest
from aiohttp import web

from discnode import audit
from discnode.server import tls_context
from discnode.signing import sign_document, sign_request
from tests.nodes import send
from tests.test_server import add_profiles, state_of

QUERY = "/v1/profiles/query"


@pytest.fixture
def ab(network):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b, "profiles", "images", "minors")  # the 2015 one is a child's profile
    add_profiles(b, 2, args=["--dob", "1990-01-01"])
    add_profiles(b, 1, args=["--dob", "2015-01-01", "--minor-reason", "Held on police advice"])
    return a, b


def raw(src, dst, method, path, body, **kw):
    headers = sign_request(src.home.identity, method, dst.url + path, body, dst.node_id, **kw)
    headers["Content-Type"] = "application/json"
    return send(dst, method, path, body, headers)


def no_internal_errors(caplog):
    return not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_age_min_written_20_0_is_served_as_20(ab):
    a, b = ab
    as_int = raw(a, b, "POST", QUERY, b'{"age_min":20}')
    as_float = raw(a, b, "POST", QUERY, b'{"age_min":20.0}')
    assert as_int[0] == as_float[0] == 200
    assert len(as_int[1]["records"]) == 2 and as_float[1] == as_int[1]


def test_age_min_with_a_fraction_is_400_naming_the_field(ab, caplog):
    a, b = ab
    status, reply = raw(a, b, "POST", QUERY, b'{"age_min":20.5}')
    assert status == 400 and reply["error"]["message"] == "age_min: must be an integer"
    assert no_internal_errors(caplog)


def test_after_with_a_21_digit_integer_is_400_not_500(ab, caplog):
    a, b = ab
    body = b'{"sort":"incidents","after":[123456789012345678901,"' + a.node_id.encode() + b'","abcdefgh2345"]}'
    status, reply = raw(a, b, "POST", QUERY, body)
    assert status == 400, reply
    assert "outside the range" in reply["error"]["message"]
    assert no_internal_errors(caplog)


def test_after_sort_value_is_0_to_2_53_minus_1(ab, caplog):
    a, b = ab
    status, reply = raw(a, b, "POST", QUERY, json.dumps(
        {"sort": "incidents", "after": [2**53 - 1, a.node_id, "abcdefgh2345"]}).encode())
    assert status == 200  # the largest integer the protocol has is served, not an overflow
    status, reply = raw(a, b, "POST", QUERY, b'{"sort":"incidents","after":[-1,"' + a.node_id.encode()
                        + b'","abcdefgh2345"]}')
    assert status == 400 and reply["error"]["message"] == "after[0]: must be at least 0"
    assert no_internal_errors(caplog)


def test_json_nested_5000_deep_is_400_not_500(ab, caplog):
    a, b = ab
    status, reply = raw(a, b, "POST", QUERY, b'{"text":' + b"[" * 5000 + b"]" * 5000 + b"}")
    assert status == 400 and "nested deeper than 32 levels" in reply["error"]["message"]
    assert no_internal_errors(caplog)


def test_utf16_body_is_400(ab):
    a, b = ab
    status, reply = raw(a, b, "POST", QUERY, '{"limit":5}'.encode("utf-16"))
    assert status == 400 and "not UTF-8" in reply["error"]["message"]
    status, reply = raw(a, b, "POST", QUERY, '{"limit":5}'.encode("utf-16-le"))
    assert status == 400


def test_refusals_name_the_field_and_carry_no_parser_internals(ab):
    a, b = ab
    internals = ("Expecting", "is not of type", "$defs", "properties", "prefixItems", "Traceback",
                 "JSONDecodeError", "ValueError", "'")
    for body in (b'{"limit": "ten"}', b'{"limit":', b'{"zzz": 1}', b'{"after": [1, 2, 3]}',
                 b'{"gender": "male"}', b'{"age_min": true}'):
        status, reply = raw(a, b, "POST", QUERY, body)
        message = reply["error"]["message"]
        assert status == 400 and not [w for w in internals if w in message], message
    assert raw(a, b, "POST", QUERY, b'{"limit": "ten"}')[1]["error"]["message"] == "limit: must be an integer"
    assert raw(a, b, "POST", QUERY, b'{"limit":')[1]["error"]["message"] == \
        "request body: not valid JSON (line 1, column 10)"


def test_signature_input_without_alg_is_401(ab):
    a, b = ab
    status, reply = raw(a, b, "POST", QUERY, b"{}", include_alg=False)
    assert status == 401 and reply["error"]["message"] == 'signature must carry alg="ed25519"'
    assert raw(a, b, "POST", QUERY, b"{}")[0] == 200


def test_signed_revoke_with_duplicate_keys_is_refused_and_changes_nothing(ab):
    a, b = ab
    a_home, b_home = a.home, b.home
    from discnode import peers
    from discnode.consent import Action, new_response
    from discnode.home import today
    agreement = peers.agreement(b_home.db, b.node_id, a.node_id, today())
    assert agreement.active
    revoke = sign_document(new_response(Action.REVOKE, a.node_id, b.node_id, agreement.offer_hash,
                                        "2026-11-25T10:00:00Z"), a_home.identity)
    # The genuine, signed revoke, with a decoy member of the same name before it: a last-wins
    # parser reads the revoke (and its signature verifies); a first-wins parser reads the decoy.
    body = b'{"type":"accept",' + json.dumps(revoke, separators=(",", ":")).encode()[1:]
    before = state_of(b)
    status, reply = raw(a, b, "POST", "/v1/consent", body)
    assert status == 400 and 'member "type" appears twice' in reply["error"]["message"]
    assert state_of(b) == before
    assert peers.agreement(b_home.db, b.node_id, a.node_id, today()).active
    assert raw(a, b, "POST", QUERY, b"{}")[0] == 200


def test_duplicate_key_record_in_a_peers_reply_is_refused_by_the_searcher(network):
    """B's node is replaced by a hostile server with B's identity and certificate that answers a
    query with B's own genuine signed record, plus a decoy member of the same name."""
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    add_profiles(b, 1)
    genuine = b.home.db.execute("select record from profiles").fetchone()[0]
    record = json.loads(genuine)
    assert a.cli("search", "--json").json["peers"][1]["status"] == "ok"
    port = b.running.port
    b.stop()
    b.home = __import__("discnode.home", fromlist=["Home"]).Home.open(b.cli.home)
    decoy = '{"first_name":"Mallory",' + genuine[1:]
    assert json.loads(decoy) == record  # last one wins: Python alone would accept it

    async def answer(request: web.Request) -> web.Response:
        return web.Response(text='{"records":[' + decoy + "]}", content_type="application/json")

    async def profile(request: web.Request) -> web.Response:
        return web.Response(text='{"images":[],"record":' + decoy + "}", content_type="application/json")

    async def start() -> web.AppRunner:
        app = web.Application()
        app.router.add_post(QUERY, answer)
        app.router.add_get("/v1/profiles/{id}", profile)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls_context(b.home)).start()
        return runner

    runner = network.loop.run(start())
    try:
        page = a.cli("search", "--json").json
        shown = a.cli("profile", "show", f"{b.node_id}:{record['id']}", "--json", ok=False)
    finally:
        network.loop.run(runner.cleanup())
    status = [p for p in page["peers"] if p["node_id"] == b.node_id][0]
    assert status["status"] == "invalid" and 'member "first_name" appears twice' in status["error"]
    assert not [r for r in page["results"] if r["origin"] == b.node_id]
    assert 'member "first_name" appears twice' in json.loads(shown.err)["error"]["message"]
    assert "Traceback" not in shown.err


async def _raw_tls(port: int, request: bytes) -> bytes:
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    writer.write(request)
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


def test_signature_header_bytes_that_are_not_utf8_are_refused_and_audited(ab, tmp_path):
    """Header bytes that are not UTF-8 once made the audit batch fail: the request got a 400 about
    canonical JSON, its refusal was never logged, and so did every request in the same batch."""
    a, b = ab
    request = (f"POST {QUERY} HTTP/1.1\r\nHost: 127.0.0.1:{b.running.port}\r\nContent-Length: 2\r\n"
               f"Connection: close\r\nContent-Type: application/json\r\n").encode() + \
        b'Signature-Input: discnode=("@method");keyid="\xff\xfe"\r\nSignature: discnode=:AAAA:\r\n\r\n{}'
    reply = b.loop.run(_raw_tls(b.running.port, request))
    assert reply.startswith(b"HTTP/1.1 401"), reply[:200]
    refused = [e for e in audit.entries(b.home.db) if e["event"] == "refused"]
    assert refused and "\\udcff" in refused[-1]["detail"]["claimed"]
    assert b.cli("audit", "--verify", "--json").code == 0
    assert raw(a, b, "POST", QUERY, b"{}")[0] == 200
