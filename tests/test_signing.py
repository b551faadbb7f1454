"""Signed documents and canonical JSON."""

import json

import pytest
import rfc8785
from hypothesis import event, given, settings, strategies as st

from discnode.errors import InvalidInput, Unauthenticated
from discnode.identity import Identity
from discnode import signing
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


plain_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(st.characters(max_codepoint=127), max_size=6), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(plain_values)
def test_the_fast_canonical_form_of_plain_json_is_byte_equal_to_the_rfc8785_package(value):
    """Plain JSON (no floats, ASCII keys: what a record from the wire is) takes orjson's path,
    which must write exactly what the reference writes."""
    assert signing._plain(value)
    assert canonical(value) == canonical(value, plain=True) == rfc8785.dumps(value)


def test_the_fast_canonical_form_escapes_every_character_as_rfc8785_does():
    """Every code point but the surrogates (which neither writes), in a value of a plain document:
    the one place where orjson and RFC 8785 could still differ is how a character is written."""
    for start in range(0, 0x110000, 0x4000):
        text = "".join(chr(c) for c in range(start, start + 0x4000) if not 0xD800 <= c < 0xE000)
        assert canonical({"k": text, "k2": [text]}) == rfc8785.dumps({"k": text, "k2": [text]})


def test_a_plain_document_nested_past_orjsons_limit_is_still_canonical():
    deep: list = []
    for _ in range(300):
        deep = [deep]
    assert canonical({"d": deep}, plain=True) == rfc8785.dumps({"d": deep})


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


# --- RFC 9421: the fast path against http-message-signatures, the reference -----------------

import base64
import datetime as dt
import hashlib

from http_message_signatures import HTTPMessageSigner, algorithms

from discnode import signing

ALICE, BOB = Identity.from_seed(b"a" * 32), Identity.from_seed(b"b" * 32)
URL = "https://127.0.0.1:8443/v1/profiles/query"
NOW = 1795550400
ALPHABET64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

_odd_urls = st.builds(
    lambda scheme, host, port, path, query, fragment: f"{scheme}://{host}{port}{path}{query}{fragment}",
    st.sampled_from(["https", "http", "HTTPS", "ftp"]),
    st.sampled_from(["127.0.0.1", "localhost", "Node.Example.ORG", "[::1]", "ex ample", "h\u00e9", ""]),
    st.sampled_from(["", ":8443", ":443", ":0443", ":80", ":", ":99999", ":x"]),
    st.one_of(st.just(""), st.just("/v1/profiles/query"),
              st.text(st.sampled_from("/abz09-._~!$&'()*+,;=:@%2Fe %\u00e9\n"), max_size=12).map(lambda t: "/" + t)),
    st.one_of(st.just(""), st.just("?size=thumb"),
              st.text(st.sampled_from("a=b&?/%20 #\t"), max_size=8).map(lambda t: "?" + t)),
    st.sampled_from(["", "", "#frag"]),
)
_plain_urls = st.builds(
    lambda scheme, host, port, path, query: f"{scheme}://{host}{port}{path}{query}",
    st.sampled_from(["https", "http"]), st.sampled_from(["127.0.0.1", "localhost", "Node.Example.ORG"]),
    st.sampled_from(["", ":8443", ":443", ":0443", ":80", ":"]),
    st.one_of(st.just(""), st.text(st.sampled_from("/abzAZ09-._~!$&'()*+,;=:@"), max_size=12).map(lambda t: "/" + t),
              st.just("/v1/images/%2Fx")),
    st.one_of(st.just(""), st.just("?"), st.just("?size=thumb"), st.text(st.sampled_from("a=b&?/"), max_size=6).map(
        lambda t: "?" + t)))
urls = st.one_of(_plain_urls, _plain_urls, _odd_urls)
tokens = st.one_of(st.just("vector-nonce-0001"), st.text(st.sampled_from("aZ09-_.~"), min_size=1, max_size=20),
                   st.text(st.sampled_from('aZ09-_.~ "\\\u00e9\t'), min_size=0, max_size=20))


@settings(max_examples=600, deadline=None)
@given(method=st.sampled_from(["POST", "POST", "POST", "GET", "post", "M-SEARCH", "GE T", ""]), url=urls,
       body=st.binary(max_size=64), destination=st.one_of(st.just(BOB.node_id), tokens), nonce=tokens,
       created=st.one_of(st.just(NOW), st.integers(0, 10**11), st.integers(-10, 10**13)),
       lifetime=st.integers(-5, 90))
def test_request_signing_is_byte_equal_to_the_library(method, url, body, destination, nonce, created, lifetime):
    def run(fn):
        try:
            return fn(ALICE, method, url, body, destination, created, nonce or "n", lifetime)
        except Exception as exc:  # noqa: BLE001 - the two must fail alike, whatever the failure
            return type(exc)
    reference = run(signing._sign_with_library)
    fast = run(signing._sign_fast)
    event("fast path" if isinstance(fast, dict) else "library")
    if fast is not None:  # the fast path took it: same headers, same order, same bytes
        assert fast == reference and list(fast) == list(reference)
    assert run(lambda *a: signing.sign_request(a[0], a[1], a[2], a[3], a[4], now=a[5], nonce=a[6],
                                               lifetime=a[7])) == reference


@settings(max_examples=300, deadline=None)
@given(url=urls, body=st.binary(max_size=32), destination=st.one_of(st.just(BOB.node_id), tokens),
       nonce=tokens, created=st.integers(0, 10**11), lifetime=st.integers(1, 60))
def test_signature_base_is_byte_equal_to_the_library(url, body, destination, nonce, created, lifetime):
    target = signing._fast_target("POST", url)
    if target is None or not all(signing._FAST_TOKEN.fullmatch(t) for t in (destination, nonce)):
        return
    message = signing.Message("POST", url, {signing.DESTINATION_HEADER: destination})
    prepared = HTTPMessageSigner(signature_algorithm=algorithms.ED25519).prepare(
        message, key_id=ALICE.node_id, created=dt.datetime.fromtimestamp(created, dt.timezone.utc),
        expires=dt.datetime.fromtimestamp(created + lifetime, dt.timezone.utc), nonce=nonce,
        label=signing.SIGNATURE_LABEL, tag=signing.SIGNATURE_TAG, covered_component_ids=signing.COVERED, body=body)
    params = signing.signature_params(created, ALICE.node_id, created + lifetime, nonce)
    assert params == prepared.signature_params
    assert signing.signature_base(target, signing.content_digest(body), destination, params) == prepared.signature_base


def _signed(**kw):
    body = kw.pop("body", b'{"limit":50}')
    return signing.sign_request(ALICE, "POST", URL, body, BOB.node_id, now=NOW, nonce="vector-nonce-0001", **kw), body


def _mutate(data, value: str) -> str:
    how = data.draw(st.sampled_from(["keep", "text", "insert", "delete", "replace", "append", "space"]))
    if how == "keep" or not value:
        return value
    if how == "text":
        return data.draw(st.text(st.characters(min_codepoint=9, max_codepoint=0x7f), max_size=40))
    i = data.draw(st.integers(0, len(value) - 1))
    char = data.draw(st.sampled_from(list('a0=:;,"() \\/+-.*?') + ["\t", "\u00e9", "A"]))
    if how == "insert":
        return value[:i] + char + value[i:]
    if how == "delete":
        return value[:i] + value[i + 1:]
    if how == "replace":
        return value[:i] + char + value[i + 1:]
    if how == "append":
        return value + data.draw(st.sampled_from([", discnode=:AAAA:", ", other=();tag=\"x\"", ";x=1", ", sha-512=:AA==:"]))
    return " " + value + "\t"


def _variants(headers, body):
    """Well-formed neighbours of a valid request that the library judges one way or the other."""
    sig_input, sig, digest = headers["Signature-Input"], headers["Signature"], headers["Content-Digest"]
    params = sig_input.split(";")
    b64 = sig.split(":")[1]
    last = ALPHABET64.index(b64[85])  # its low 4 bits are padding: zero in canonical base64
    sha512 = "sha-512=:" + base64.b64encode(hashlib.sha512(body).digest()).decode() + ":"
    return {
        "as sent": {},
        "no alg": {"Signature-Input": ";".join(p for p in params if not p.startswith("alg="))},
        "parameters reordered": {"Signature-Input": ";".join([params[0], *reversed(params[1:])])},
        "created with a leading zero": {"Signature-Input": sig_input.replace(";created=", ";created=0")},
        "keyid escaped": {"Signature-Input": sig_input.replace('keyid="', 'keyid="\\')},
        "other label": {"Signature-Input": sig_input.replace("discnode=", "other=", 1),
                        "Signature": sig.replace("discnode=", "other=", 1)},
        "other tag": {"Signature-Input": sig_input.replace("discnode-v1", "discnode-v2")},
        "second signature": {"Signature-Input": sig_input + ', b=("@method");keyid="x";tag="zzz"',
                             "Signature": sig + ", b=:AAAA:"},
        "same label twice": {"Signature-Input": sig_input + ", " + sig_input},
        "signature base64 not canonical": {"Signature": sig.replace(b64, b64[:85] + ALPHABET64[last | 1] + "==")},
        "signature short": {"Signature": "discnode=:" + base64.b64encode(base64.b64decode(b64)[:63]).decode() + ":"},
        "digest sha-512 too": {"Content-Digest": digest + ", " + sha512},
        "digest sha-512 only": {"Content-Digest": sha512},
        "digest member upper case": {"Content-Digest": digest.replace("sha-256", "SHA-256")},
        "digest unpadded": {"Content-Digest": digest.replace("=:", ":")},
        "header names lower case": {"signature-input": sig_input, "signature": sig, "content-digest": digest,
                                    "Signature-Input": None, "Signature": None, "Content-Digest": None},
        "repeated under another case": {"signature": sig},
        "destination padded": {signing.DESTINATION_HEADER: " " + BOB.node_id},
        "destination other": {signing.DESTINATION_HEADER: ALICE.node_id},
        "no digest": {"Content-Digest": None},
    }


def _outcome(fn):
    try:
        return fn()
    except Unauthenticated:
        return "refused"


@settings(max_examples=1000, deadline=None)
@given(st.data())
def test_fast_verifier_agrees_with_the_library_on_malformed_headers(data):
    headers, body = _signed(body=data.draw(st.sampled_from([b"", b'{"limit":50}'])))
    variant = data.draw(st.sampled_from(["as sent"] * 8 + sorted(_variants(headers, body))))
    for name, value in _variants(headers, body)[variant].items():
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    # mostly one disturbance at a time, so that the fast path's own decisions are exercised too
    for name in data.draw(st.lists(st.sampled_from(["Signature-Input", "Signature", "Content-Digest"]),
                                   max_size=2, unique=True)):
        if name in headers:
            headers[name] = _mutate(data, headers[name])
    url = data.draw(st.sampled_from([URL] * 6 + [URL.replace("query", "queries"), URL.upper(),
                                     "https://127.0.0.1:443/v1/profiles/query", URL + "?"]))
    if data.draw(st.integers(0, 5)) == 0:
        body = body + b" "
    keys = data.draw(st.sampled_from([{ALICE.node_id: ALICE.public_key}] * 6 + [
        {}, {ALICE.node_id: BOB.public_key}, {ALICE.node_id: b"short"}]))
    args = ("POST", url, headers, body, keys.get)
    reference = _outcome(lambda: signing._verify_with_library(*args))
    try:
        fast = signing._verify_fast(*args, BOB.node_id)
    except signing._Weak:
        fast = "weak"
    event(f"fast path: {type(fast).__name__ if fast not in (None, 'weak') else fast}; library: "
          f"{'refused' if reference == 'refused' else 'accepted'}")
    if isinstance(fast, signing._Signed):  # whatever the fast path accepts, the library accepts alike
        assert fast == reference
    if reference == "refused":  # whatever the library refuses, the fast path leaves it or refuses
        assert fast in (None, "weak")
    # and the verifier as a whole decides as the library (plus discnode's rules) does
    expected = reference if reference == "refused" else _outcome(lambda: signing._discnode_rules(
        reference, BOB.node_id, NOW + 5))
    assert _outcome(lambda: signing.verify_request(*args, BOB.node_id, now=NOW + 5)) == expected


def test_a_request_of_the_exact_shape_takes_the_fast_path():
    for body in (b"", b'{"limit":50}'):
        headers, body = _signed(body=body)
        fast = signing._verify_fast("POST", URL, headers, body, {ALICE.node_id: ALICE.public_key}.get, BOB.node_id)
        assert fast == signing._verify_with_library("POST", URL, headers, body, {ALICE.node_id: ALICE.public_key}.get)
        assert isinstance(fast, signing._Signed) and fast.key_id == ALICE.node_id


def test_a_signature_without_alg_is_refused_though_the_library_accepts_it():
    message = signing.Message("POST", URL, {signing.DESTINATION_HEADER: BOB.node_id})
    HTTPMessageSigner(signature_algorithm=algorithms.ED25519,
                      key_resolver=signing._library().Keys(private=ALICE.crypto_private_key())).sign(
        message, key_id=ALICE.node_id, created=dt.datetime.fromtimestamp(NOW, dt.timezone.utc),
        expires=dt.datetime.fromtimestamp(NOW + 30, dt.timezone.utc), nonce="vector-nonce-0001",
        label="discnode", tag="discnode-v1", include_alg=False, covered_component_ids=signing.COVERED, body=b"")
    lookup = {ALICE.node_id: ALICE.public_key}.get
    assert signing._verify_with_library("POST", URL, message.headers, b"", lookup).alg is None
    with pytest.raises(Unauthenticated, match="alg"):
        signing.verify_request("POST", URL, message.headers, b"", lookup, BOB.node_id, now=NOW + 5)


def test_a_forgery_under_a_small_order_key_is_refused_though_the_library_accepts_it():
    identity_point = bytes([1] + [0] * 31)  # the neutral element: R = it and S = 0 verify any message
    params = signing.signature_params(NOW, "WEAKKEY", NOW + 30, "vector-nonce-0001")
    headers = {signing.DESTINATION_HEADER: BOB.node_id, "Content-Digest": signing.content_digest(b""),
               "Signature-Input": "discnode=" + params,
               "Signature": "discnode=:" + base64.b64encode(identity_point + bytes(32)).decode() + ":"}
    lookup = {"WEAKKEY": identity_point}.get
    assert signing._verify_with_library("POST", URL, headers, b"", lookup).key_id == "WEAKKEY"
    with pytest.raises(Unauthenticated, match="libsodium"):
        signing.verify_request("POST", URL, headers, b"", lookup, BOB.node_id, now=NOW + 5)


def test_signing_and_verifying_the_exact_shape_loads_neither_the_library_nor_cryptography():
    """A serving node stays ~10 MB smaller: the library (and `cryptography` under it) loads only
    for a request of another shape."""
    import subprocess
    import sys
    code = """
import sys
import discnode.server
from discnode.identity import Identity
from discnode import signing
a, b = Identity.generate(), Identity.generate()
h = signing.sign_request(a, "POST", "https://127.0.0.1:8443/v1/profiles/query", b"{}", b.node_id)
signing.verify_request("POST", "https://127.0.0.1:8443/v1/profiles/query", h, b"{}", {a.node_id: a.public_key}.get,
                       b.node_id)
print(sorted({m.split(".")[0] for m in sys.modules if m.startswith(("cryptography", "http_message", "http_sf"))}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
