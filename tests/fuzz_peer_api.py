"""Property-based fuzzing of the peer API, driven by protocol/openapi.json, every request signed by a
consenting peer.

Two real nodes on loopback (real HTTPS, SQLite, keys): the server node holds synthetic profiles
with images; the fuzzing node has an active agreement with it and signs every request (RFC 9421)
with its own key, so that requests get past authentication and into the handlers. For every
operation in openapi.json, Hypothesis generates schema-valid inputs (from the operation's request
schema and parameter schemas) and schema-breaking ones (wrong types, huge integers, floats, deep
nesting, duplicate names, bad UTF-8 and other encodings, NaN, lone surrogates, bad path and query
parameters, tampered signature headers). Every reply must be below 500, have a status that
openapi.json lists for the operation, and match the schema it names for that status (so 4xx
bodies have the one error shape).

    python -m tests.fuzz_peer_api                 # 1,000 cases per endpoint, prints a table
    python -m tests.fuzz_peer_api --cases 200 --json fuzz.json

tests/test_fuzz.py runs a small, derandomized slice of the same thing in the test suite.

hypothesis-jsonschema would turn the schemas into strategies, but its 0.23.1 does not run on the
Hypothesis versions current here (it calls an internal API that Hypothesis removed), so `valid`
below does it for the handful of keywords our schemas use, and refuses any other keyword loudly
rather than generate wrong data.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import ssl
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import aiohttp
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from yarl import URL

from discnode import match, oprf, peering, profiles, schemas, server
from discnode.consent import Action, Terms
from discnode.home import Config, Home, today
from discnode.identity import Identity
from discnode.signing import sign_document, sign_request
from discnode.synthetic import People, portrait

ROOT = Path(__file__).resolve().parent.parent
OPENAPI = ROOT / "protocol" / "openapi.json"
ERROR_SCHEMA = "error"


# --- JSON Schema -> strategy (valid documents) -----------------------------------------------

_KNOWN = {"type", "properties", "required", "additionalProperties", "enum", "const", "pattern", "format",
          "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "items", "additionalItems",
          "uniqueItems", "oneOf", "allOf", "description", "title", "x-labels", "if", "then", "else", "default"}


def _text(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    pattern = schema.get("pattern")
    if schema.get("format") in ("date", "date-time"):
        form = st.dates(dt.date(1900, 1, 1), dt.date(2100, 1, 1)).map(dt.date.isoformat) \
            if schema["format"] == "date" else st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2100, 1, 1)).map(
                lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ"))
        return form.filter(lambda text: re.search(pattern, text) is not None) if pattern else form
    if pattern:
        return st.from_regex(pattern, fullmatch=True)
    return st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 60), 60))


def valid(schema: dict[str, Any], full: bool = False) -> st.SearchStrategy[Any]:
    """Values that match `schema` (an inlined, draft-07 schema from discnode.schemas). full: objects
    have every property (the base of a schema-breaking input, so that every field gets broken)."""
    unknown = set(schema) - _KNOWN
    if unknown:
        raise ValueError(f"fuzz: no strategy for schema keywords {sorted(unknown)}")
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "oneOf" in schema:
        base = {k: v for k, v in schema.items() if k != "oneOf"}
        return st.one_of([valid({**base, **branch}, full) for branch in schema["oneOf"]])
    if "allOf" in schema:
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            merged = {**part, **merged}
        return valid(merged, full)
    kinds = schema.get("type", "object" if "properties" in schema else None)
    if isinstance(kinds, list):
        return st.one_of([valid({**schema, "type": k}, full) for k in kinds])
    if kinds == "null":
        return st.none()
    if kinds == "boolean":
        return st.booleans()
    if kinds == "integer":
        # JSON Schema's integer includes 20.0 (a zero fraction): send both spellings.
        ints = st.integers(schema.get("minimum", -(2**53) + 1), schema.get("maximum", 2**53 - 1))
        return st.one_of(ints, ints.map(float))
    if kinds == "string":
        return _text(schema)
    if kinds == "array":
        items = schema.get("items", {})
        if isinstance(items, list):  # prefixItems, in draft-07 words
            return st.tuples(*(valid(i, full) for i in items)).map(list)
        return st.lists(valid(items, full), min_size=max(schema.get("minItems", 0), int(full)),
                        max_size=min(schema.get("maxItems", 5), 5), unique=bool(schema.get("uniqueItems")))
    if kinds == "object":
        props = schema.get("properties", {})
        required = set(props) if full else set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {k: valid(v, full) for k, v in props.items() if k in required},
            optional={k: valid(v) for k, v in props.items() if k not in required})
    raise ValueError(f"fuzz: no strategy for {schema}")


def wire_schema(name: str) -> dict[str, Any]:
    original = schemas.schema(name)
    return schemas._draft7(schemas._inline(original, original["$id"]))


# --- schema-breaking inputs -------------------------------------------------------------------

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.text(max_size=30),
    st.integers(-(2**53) + 1, 2**53 - 1),
    st.integers(2**53, 10**40), st.integers(-(10**40), -(2**53)),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([20.0, -0.0, 0.5, 1e300, 2**63, 2**64, -(2**63) - 1]),
)
ANY_JSON = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
RAW_LITERALS = st.sampled_from([
    b"NaN", b"Infinity", b"-Infinity", b'"\\ud800"', b'"\\udc00x"', b"123456789012345678901",
    b"1e400", b"-1e400", b"20.0", b"2e1", b"0.0000001", b'"\\u0000"', b'"\x01"', b"tru", b"nul",
    b'"' + "\u202e".encode() + b'"', b"[]", b"{}", b'""',
])


_HOLE = "\u0000fuzz-hole\u0000"


def _locations(doc: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in doc a value sits (object members and array items, at any depth)."""
    out: list[tuple[Any, ...]] = [here] if here else []
    children = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in children:
        out.extend(_locations(value, here + (key,)))
    return out


def _put(doc: Any, where: tuple[Any, ...], value: Any) -> Any:
    if not where:
        return value
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    # A new member (the only place in an empty object) has no value to descend into.
    copy[where[0]] = value if len(where) == 1 else _put(copy[where[0]], where[1:], value)
    return copy


def _somewhere(doc: Any) -> st.SearchStrategy[tuple[Any, ...]]:
    """A place in doc: an existing member or item at any depth, or a new top-level member."""
    places = _locations(doc) or [("x",)]
    return st.sampled_from(places)


def _set_member(doc: Any, value: Any) -> st.SearchStrategy[Any]:
    """doc with the value at one place (at any depth) replaced by value."""
    if not isinstance(doc, (dict, list)):
        return st.just({"x": value})
    return _somewhere(doc).map(lambda where: _put(doc, where, value))


def _raw_member(doc: Any, raw: bytes) -> st.SearchStrategy[bytes]:
    """doc's JSON text with the value at one place replaced by raw bytes (text no Python value
    serialises to: NaN, 5,000-deep nesting, a lone surrogate escape)."""
    return _set_member(doc, _HOLE).map(lambda d: json.dumps(d).encode().replace(
        json.dumps(_HOLE).encode(), raw, 1))


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth if depth % 2 else b'{"a":' * depth + b"1" + b"}" * depth


def _get(doc: Any, where: tuple[Any, ...]) -> Any:
    for key in where:
        doc = doc[key]
    return doc


def _duplicate(doc: Any) -> st.SearchStrategy[bytes]:
    """doc's text with one object (at any depth) given a second member of a name it has, before or
    after the first, with the same or another value."""
    objects = [w for w in [()] + _locations(doc) if isinstance(_get(doc, w), dict) and _get(doc, w)]
    if not objects:
        return st.just(b'{"a":1,"a":1}')

    def build(where: tuple[Any, ...], pick: int, other: Any, same: bool, before: bool) -> bytes:
        obj = _get(doc, where)
        key = sorted(obj)[pick % len(obj)]
        member = json.dumps(key).encode() + b":" + json.dumps(obj[key] if same else other).encode()
        text = json.dumps(obj).encode()
        dup = b"{" + member + b"," + text[1:] if before else text[:-1] + b"," + member + b"}"
        if not where:
            return dup
        return json.dumps(_put(doc, where, _HOLE)).encode().replace(json.dumps(_HOLE).encode(), dup, 1)
    return st.builds(build, st.sampled_from(objects), st.integers(0, 50), ANY_JSON, st.booleans(), st.booleans())


def _encodings(doc: Any) -> st.SearchStrategy[bytes]:
    text = json.dumps(doc, ensure_ascii=False)
    return st.one_of(
        st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"]).map(text.encode),
        st.just(json.dumps({"text": "Zo\u00eb"}).encode("latin-1", "replace").replace(b"?", b"\xeb")),
        st.tuples(st.integers(0, len(text)), st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88",
                                                              b"\x00", b"\xe2\x82"])).map(
            lambda p: text.encode()[:p[0]] + p[1] + text.encode()[p[0]:]),
        st.integers(0, max(len(text) - 1, 0)).map(lambda n: text.encode()[:n]),  # truncated
        st.binary(max_size=64),
    )


def breaking_body(doc: Any) -> st.SearchStrategy[bytes]:
    """JSON bodies that break the schema, the I-JSON rules or JSON itself, built around doc."""
    dumped: Callable[[Any], bytes] = lambda d: json.dumps(d).encode()  # noqa: E731
    return st.one_of(
        ANY_JSON.flatmap(lambda v: _set_member(doc, v)).map(dumped),                     # wrong types
        st.integers(2**53, 10**40).flatmap(lambda v: _set_member(doc, v)).map(dumped),     # huge ints
        st.floats(allow_nan=False).flatmap(lambda v: _set_member(doc, v)).map(dumped),     # floats
        st.tuples(st.text(max_size=12), ANY_JSON).map(lambda kv: dumped({**(doc if isinstance(doc, dict) else {}),
                                                                         kv[0]: kv[1]})),  # unknown member
        st.sampled_from([20, 31, 33, 100, 1000, 5000]).flatmap(lambda d: _raw_member(doc, _nested(d))),
        _duplicate(doc),
        RAW_LITERALS.flatmap(lambda raw: _raw_member(doc, raw)),
        _encodings(doc),
        ANY_JSON.map(dumped),                                                              # any JSON at all
        st.sampled_from([b"", b"null", b"[]", b'"x"', b"0", b"{", b"}", b"{}{}", b'{"a":1}garbage',
                         b"/* c */ {}", b"{'a': 1}", b" " * 100]),
    )


# --- the two nodes ----------------------------------------------------------------------------


def _free_port() -> int:
    from tests.nodes import free_port  # the suite's: no other process (nor xdist worker) is handed it
    return free_port()


class Nodes:
    """A server node with profiles and images, and a consenting fuzzing node, on one event loop in
    a background thread (the fuzzing runs in the calling thread, as Hypothesis wants)."""

    def __init__(self, root: Path, *, profiles_count: int = 12) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="fuzz-nodes")
        self.thread.start()
        self.server_home = Home.create(root / "server", Config(name="Fuzzed BCRP", port=_free_port()))
        self.peer_home = Home.create(root / "peer", Config(name="Fuzzing BCRP", port=_free_port()))
        people = People(seed=7)
        for i in range(profiles_count):
            fields = {**people.fields(), "local_only": False}
            profiles.add(self.server_home, fields, image_data=[portrait(i)] if i % 2 == 0 else [])
        # The server answers as fast as it can: rate limits would turn the fuzz into a 429 test.
        limits = server.Limits(rate=1e9, burst=10**9, address_factor=1)
        self.servers = [self.run(server.start(h, limits)) for h in (self.server_home, self.peer_home)]
        self.run(peering.add_peer(self.peer_home, self.server_home.config.url, self.server_home.node_id,
                                  Terms.default(today(), share=("profiles", "images", "match", "statistics"),
                                                match_daily_quota=10_000)))
        self.run(peering.respond(self.server_home, self.peer_home.node_id, Action.ACCEPT))
        self.session: aiohttp.ClientSession = self.run(self._session())

    async def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4), trust_env=False, auto_decompress=False)

    def run(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def identity(self) -> Identity:
        return self.peer_home.identity

    def profile_ids(self) -> list[str]:
        return [r[0] for r in self.server_home.db.execute("select id from profiles order by id")]

    def image_hashes(self) -> list[str]:
        return [r[0] for r in self.server_home.db.execute("select sha256 from images order by sha256")]

    def match_refs(self) -> list[str]:
        """The references of the server's own set under the agreement's match key."""
        from discnode import peers
        db, me = self.server_home.db, self.server_home.node_id
        offer_hash = peers.agreement(db, me, self.peer_home.node_id, today()).offer_hash
        if offer_hash is None:
            return []
        key = match.key_for(db, self.peer_home.node_id, offer_hash)
        return sorted(match.ref_of(oprf.output(key, k)) for k in match.own_keys(db, me, today()))

    def agreement_active(self) -> bool:
        from discnode import peers
        return peers.agreement(self.server_home.db, self.server_home.node_id, self.peer_home.node_id,
                               today()).active

    async def _send(self, method: str, target: str, body: bytes, headers: dict[str, str]
                    ) -> tuple[int, str, bytes]:
        url = URL(self.server_home.config.url + target, encoded=True)
        async with self.session.request(method, url, data=body if body or method == "POST" else None,
                                        headers=headers, ssl=aiohttp.Fingerprint(
                                            bytes.fromhex(self.server_home.tls_fingerprint)),
                                        timeout=aiohttp.ClientTimeout(total=30)) as resp:
            return resp.status, resp.content_type, await resp.read()

    async def _send_raw(self, method: str, target: str, body: bytes, headers: dict[str, bytes]
                        ) -> tuple[int, str, bytes]:
        """The request as bytes on a TLS socket: for header bytes no HTTP client will send."""
        tls = ssl.create_default_context()
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
        reader, writer = await asyncio.open_connection("127.0.0.1", self.server_home.config.port, ssl=tls)
        head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{self.server_home.config.port}\r\n" \
               f"Content-Length: {len(body)}\r\nConnection: close\r\n".encode()
        head += b"".join(k.encode() + b": " + v + b"\r\n" for k, v in headers.items())
        writer.write(head + b"\r\n" + body)
        data = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        head_part, _, payload = data.partition(b"\r\n\r\n")
        lines = head_part.split(b"\r\n")
        fields = dict(line.split(b": ", 1) for line in lines[1:] if b": " in line)
        content_type = fields.get(b"Content-Type", b"").split(b";")[0].decode()
        return int(lines[0].split()[1]), content_type, payload

    def send(self, method: str, target: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, bytes]:
        if "X-Fuzz-Raw" in headers:  # a header value with bytes that are not UTF-8
            raw = {k: v.encode() for k, v in headers.items() if k != "X-Fuzz-Raw"}
            raw["Signature-Input"] = raw.get("Signature-Input", b"").replace(b"discnode-v1", b"discnode-v1\xff\xfe")
            return self.run(self._send_raw(method, target, body, raw))
        return self.run(self._send(method, target, body, headers))

    def close(self) -> None:
        self.run(self.session.close())
        for running in self.servers:
            self.run(running.stop())
        for home in (self.server_home, self.peer_home):
            home.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


# --- requests ---------------------------------------------------------------------------------


@dataclass
class Case:
    """One request: what is sent, and how its signature headers are tampered with (if at all)."""

    method: str
    target: str            # path and query, percent-encoded as sent
    body: bytes = b""
    tamper: str = "none"
    sign_body: bytes | None = None  # the signature covers these bytes instead (a digest mismatch)


TAMPERS = ["none"] * 12 + ["no-alg", "wrong-alg", "no-signature", "garbage-input", "bad-digest", "other-destination",
                           "non-ascii-header", "non-utf8-header", "expired"]


def signed_headers(nodes: Nodes, case: Case) -> dict[str, str]:
    url = nodes.server_home.config.url + case.target
    destination = nodes.server_home.node_id if case.tamper != "other-destination" else nodes.peer_home.node_id
    now = int(time.time()) - (600 if case.tamper == "expired" else 0)
    headers = sign_request(nodes.identity, case.method, url, case.sign_body if case.sign_body is not None
                           else case.body, destination, now=now, include_alg=case.tamper != "no-alg")
    if case.tamper == "wrong-alg":
        headers["Signature-Input"] = headers["Signature-Input"].replace('alg="ed25519"', 'alg="hmac-sha256"')
    elif case.tamper == "no-signature":
        del headers["Signature"]
    elif case.tamper == "garbage-input":
        headers["Signature-Input"] = 'discnode=("@method";created=x;;keyid=' + "(" * 50
    elif case.tamper == "bad-digest":
        headers["Content-Digest"] = "sha-256=:AAAA:, md5=:zz:"
    elif case.tamper == "non-utf8-header":
        headers["X-Fuzz-Raw"] = "1"
    elif case.tamper == "non-ascii-header":
        headers["Signature-Input"] = headers["Signature-Input"].replace("discnode-v1", "discnode-v1\u00e9")
    if case.body or case.method == "POST":
        headers["Content-Type"] = "application/json"
    return headers


_QUOTE_SAFE = re.compile(r"[^A-Za-z0-9\-._~]")


def quoted(text: str) -> str:
    return _QUOTE_SAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8", "surrogatepass")),
                           text)


BAD_SEGMENTS = st.one_of(
    st.text(max_size=80).map(quoted),
    st.sampled_from(["..", "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "%00", "%2F", "ABCDEFGH2345", "abcdefgh234",
                     "abcdefgh23456", "a" * 5000, "%ff%fe", "%C0%AF", "abcdefgh2345%00", "abcdefgh2345.json",
                     "7" * 64, "G" * 64, "0" * 63, "0" * 65, "%20" * 12, "abcdefgh2345/x"]),
)
SIZES = st.one_of(st.sampled_from(["thumb", "full"]), st.text(max_size=20).map(quoted),
                  st.sampled_from(["", "THUMB", "thumb&size=full", "full%00", "x" * 3000]))


@dataclass
class Operation:
    method: str
    path: str
    operation_id: str
    responses: dict[str, Any]
    body_schema: str | None = None
    params: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


def operations() -> list[Operation]:
    """Every operation under /v1/ in openapi.json."""
    spec = json.loads(OPENAPI.read_text())
    out = []
    for path, methods in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in methods.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            ref = body.get("$ref", "")
            out.append(Operation(method.upper(), path, op["operationId"], op["responses"],
                                 Path(ref).name.removesuffix(".schema.json") if ref else None,
                                 op.get("parameters", [])))
    return out


def _signed_consent(nodes: Nodes, doc: Any) -> Any:
    """A generated consent document as the consenting peer would really send it: from it, to the
    server, signed with its key (so the handler's deeper checks run, not just the signature's)."""
    if not isinstance(doc, dict):
        return doc
    doc = {**doc, "from": nodes.peer_home.node_id, "to": nodes.server_home.node_id}
    if doc.get("type") == "offer":
        doc["descriptor"] = nodes.peer_home.descriptor()
    return sign_document(doc, nodes.identity)


def _signed_descriptor(nodes: Nodes, doc: Any) -> Any:
    """A generated descriptor in the consenting peer's name and key, with its key history (spec
    4.6: the server holds it, and refuses a descriptor without it), so that it verifies."""
    if not isinstance(doc, dict):
        return doc
    own = nodes.peer_home.descriptor()
    doc = {**doc, "node_id": own["node_id"], "public_key": own["public_key"], "key_events": own["key_events"]}
    return sign_document(doc, nodes.identity)


#: Documents about the server's profiles (issue 12), and which member names the profile.
ABOUT = {"proposal": "about", "sighting": "about", "link": "yours"}


def _signed_about(nodes: Nodes, kind: str, doc: Any) -> Any:
    """A generated proposal, sighting or link as the consenting peer would send it: from it, to the
    server, about one of the server's profiles (ID-sought for a proposal), naming only the peer's
    own profile, signed with its key; so that the handler's checks past the signature run."""
    if not isinstance(doc, dict):
        return doc
    sought = [r[0] for r in nodes.server_home.db.execute(
        "select id from profiles where status = 'id-sought' order by id")]
    ids = sought if kind == "proposal" and sought else nodes.profile_ids()
    doc = {**doc, "from": nodes.peer_home.node_id, "to": nodes.server_home.node_id,
           ABOUT[kind]: ids[sum(map(ord, str(doc.get("id", "")))) % len(ids)]}
    if kind == "proposal":
        if doc.get("as") is not None:
            doc["as"] = {**doc["as"], "origin": nodes.peer_home.node_id}
        elif not str(doc.get("reason", "")).strip():
            doc["reason"] = "known to us"
    if kind == "sighting" and isinstance(doc.get("issued_at"), str):
        doc["when"] = doc["issued_at"][:10]
    return sign_document(doc, nodes.identity)


def _signed_notice(nodes: Nodes, doc: Any) -> Any:
    """A generated notice as the partner would send it: from it, to the server, about a record of
    its own (any ID), signed with its key; so that the handler acts on it and answers a receipt."""
    if not isinstance(doc, dict):
        return doc
    about = doc.get("about") if isinstance(doc.get("about"), dict) else {}
    doc = {**doc, "from": nodes.peer_home.node_id, "to": nodes.server_home.node_id,
           "about": {**about, "origin": nodes.peer_home.node_id}}
    return sign_document(doc, nodes.identity)


def body_documents(nodes: Nodes, op: Operation, full: bool = False) -> st.SearchStrategy[Any]:
    """Schema-valid request documents for op: generated, and half the time in the peer's own name
    and signature (consent, descriptor, audit head), so that they get past the signature checks."""
    assert op.body_schema is not None
    docs = valid(wire_schema(op.body_schema), full)
    if op.body_schema == "consent":
        return st.one_of(docs, docs.map(lambda d: _signed_consent(nodes, d)))
    if op.body_schema in ABOUT:
        kind = op.body_schema
        return st.one_of(docs, docs.map(lambda d: _signed_about(nodes, kind, d)))
    if op.body_schema == "notice":
        return st.one_of(docs, docs.map(lambda d: _signed_notice(nodes, d)))
    if op.body_schema == "audit-head":
        return st.one_of(docs, docs.map(lambda d: sign_document({**d, "node_id": nodes.peer_home.node_id},
                                                               nodes.identity) if isinstance(d, dict) else d))
    if op.body_schema == "descriptor":
        # Never the real address: a fuzzed descriptor the server adopts must not move the peer.
        return st.one_of(docs, docs.map(lambda d: _signed_descriptor(nodes, {**d, "issued_at": "2000-01-01T00:00:00Z"})))
    if op.body_schema == "match-evaluate":  # real group elements too, so that some are evaluated
        real = st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=5).map(
            lambda names: {"blinded": [match.b64(oprf.blind(n.encode())[1]) for n in names]})
        return st.one_of(docs, real)
    if op.body_schema == "match-reveal":  # references the server really holds, so that some are found
        refs = nodes.match_refs()
        return st.one_of(docs, st.sampled_from(refs).map(lambda r: {"ref": r})) if refs else docs
    return docs


def cases(nodes: Nodes, op: Operation, breaking: bool) -> st.SearchStrategy[Case]:
    tamper = st.sampled_from(TAMPERS) if breaking else st.just("none")
    if op.body_schema is not None:
        docs = body_documents(nodes, op, full=breaking)
        bodies = docs.flatmap(breaking_body) if breaking else docs.map(lambda d: json.dumps(d).encode())
        big = st.just(b'{"text":"' + b"x" * 300_000 + b'"}')  # over the 256 KiB limit: 413
        if breaking:
            bodies = st.one_of(bodies, big)
        return st.builds(Case, st.just(op.method), st.just(op.path), bodies, tamper)
    # GET with path (and query) parameters.
    segment: dict[str, st.SearchStrategy[str]] = {}
    for param in op.params:
        if param["in"] != "path":
            continue
        known = nodes.profile_ids() if param["name"] == "profile_id" else nodes.image_hashes()
        good = st.one_of(st.sampled_from(known), valid(param["schema"]))
        segment[param["name"]] = st.one_of(good, BAD_SEGMENTS) if breaking else good
    queries = [p for p in op.params if p["in"] == "query"]
    unknown = st.tuples(st.text(min_size=1, max_size=10), st.text(max_size=30)).map(
        lambda kv: f"?{quoted(kv[0])}={quoted(kv[1])}")
    query = st.one_of(st.just(""), unknown) if breaking else st.just("")
    if queries:
        size_ok = st.one_of(st.just(""), st.sampled_from(["?size=thumb", "?size=full"]))
        query = st.one_of(size_ok, SIZES.map(lambda s: f"?size={s}"), st.just("?size=thumb&size=full"), unknown) \
            if breaking else size_ok

    def target(values: dict[str, str], q: str) -> str:
        path = op.path
        for name, value in values.items():
            path = path.replace("{" + name + "}", value)
        return path + q
    body = st.one_of(st.just(b""), st.binary(max_size=40), st.just(b"[" * 5000)) if breaking else st.just(b"")
    return st.builds(Case, st.just(op.method), st.builds(target, st.fixed_dictionaries(segment), query), body, tamper)


# --- checks and the run -----------------------------------------------------------------------


@dataclass
class Tally:
    cases: int = 0
    by_class: dict[str, int] = field(default_factory=lambda: {"2xx": 0, "4xx": 0, "5xx": 0})
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def check_reply(op: Operation, status: int, content_type: str, body: bytes) -> str | None:
    """What is wrong with a reply, or None: not a 5xx, a status openapi.json lists for op, and a
    body of the schema it names (the error shape for every 4xx)."""
    if status >= 500:
        return f"{status}: {body[:300]!r}"
    documented = op.responses.get(str(status))
    if documented is None:
        return f"status {status} is not in openapi.json for {op.label}: {body[:200]!r}"
    if content_type == "image/jpeg":
        return None if "image/jpeg" in documented.get("content", {}) and body[:2] == b"\xff\xd8" else \
            f"{status} image/jpeg not documented or not a JPEG"
    ref = documented.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
    name = Path(ref).name.removesuffix(".schema.json")
    if not name or content_type != "application/json":
        return f"{status} {content_type} is not what openapi.json says for {op.label}"
    try:
        schemas.validate(name, json.loads(body))
    except Exception as exc:  # noqa: BLE001 - any failure here is the finding
        return f"{status} body does not match {name}: {exc}: {body[:200]!r}"
    return None


def fuzz(nodes: Nodes, op: Operation, *, examples: int, breaking: bool, tally: Tally, derandomize: bool,
         stop_on_failure: bool) -> None:
    @settings(max_examples=examples, derandomize=derandomize, database=None, deadline=None,
              phases=[Phase.generate] if not stop_on_failure else [Phase.generate, Phase.shrink],
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    @given(case=cases(nodes, op, breaking))
    def one(case: Case) -> None:
        status, content_type, body = nodes.send(case.method, case.target, case.body, signed_headers(nodes, case))
        tally.cases += 1
        tally.statuses[status] = tally.statuses.get(status, 0) + 1
        tally.by_class[f"{status // 100}xx"] = tally.by_class.get(f"{status // 100}xx", 0) + 1
        problem = check_reply(op, status, content_type, body)
        if problem:
            tally.failures.append(f"{op.label} {case.target[:80]} body={case.body[:80]!r} tamper={case.tamper}: "
                                  f"{problem}")
            if stop_on_failure:
                raise AssertionError(tally.failures[-1])
    one()


# Consent last: a fuzzed, correctly signed offer may (rightly) change the agreement, and the
# other endpoints need it active to reach their handlers.
LAST = "postConsent"


def run(root: Path, *, per_endpoint: int, derandomize: bool = True, stop_on_failure: bool = False,
        only: list[str] | None = None) -> dict[str, Tally]:
    nodes = Nodes(root)
    try:
        ops = sorted(operations(), key=lambda o: o.operation_id == LAST)
        out: dict[str, Tally] = {}
        for op in ops:
            if only and op.operation_id not in only:
                continue
            tally = out[op.label] = Tally()
            valid_share = per_endpoint // 2
            fuzz(nodes, op, examples=valid_share, breaking=False, tally=tally, derandomize=derandomize,
                 stop_on_failure=stop_on_failure)
            # An operation with few valid inputs (a GET without parameters has one) makes up the
            # count with breaking ones.
            fuzz(nodes, op, examples=per_endpoint - tally.cases, breaking=True, tally=tally,
                 derandomize=derandomize, stop_on_failure=stop_on_failure)
        return out
    finally:
        nodes.close()


def table(results: dict[str, Tally]) -> str:
    rows = [("endpoint", "cases", "2xx", "4xx", "5xx", "statuses")]
    for label, t in results.items():
        rows.append((label, str(t.cases), str(t.by_class.get("2xx", 0)), str(t.by_class.get("4xx", 0)),
                     str(t.by_class.get("5xx", 0)), " ".join(f"{s}:{n}" for s, n in sorted(t.statuses.items()))))
    total = Tally()
    for t in results.values():
        total.cases += t.cases
        for k, v in t.by_class.items():
            total.by_class[k] = total.by_class.get(k, 0) + v
    rows.append(("total", str(total.cases), str(total.by_class["2xx"]), str(total.by_class["4xx"]),
                 str(total.by_class["5xx"]), ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000, help="cases per endpoint (half schema-valid)")
    parser.add_argument("--random", action="store_true", help="a new random seed (default: derandomized)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="discnode-fuzz-") as tmp:
        results = run(Path(tmp), per_endpoint=args.cases, derandomize=not args.random)
    elapsed = time.monotonic() - started
    print(table(results))
    failures = [f for t in results.values() for f in t.failures]
    print(f"\n{sum(t.cases for t in results.values())} cases in {elapsed:.0f} s; {len(failures)} failed checks")
    for failure in failures[:30]:
        print("  " + failure)
    if args.json:
        args.json.write_text(json.dumps({label: {"cases": t.cases, **t.by_class, "statuses": t.statuses,
                                                 "failures": t.failures} for label, t in results.items()},
                                        indent=2) + "\n")
    short = [label for label, t in results.items() if t.cases < args.cases]
    if short:
        print(f"fewer than {args.cases} cases for: {', '.join(short)}")
    return 1 if failures or short else 0


if __name__ == "__main__":
    sys.exit(main())
