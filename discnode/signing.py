"""Signed JSON documents (RFC 8785 canonical form + Ed25519) and RFC 9421 HTTP request signatures.

Pure functions: nothing here touches the network, the disk or the clock unless given it.

A signed document is a JSON object with a member ``sig``: base64url(Ed25519(JCS(document without
sig))). The signer is named inside the document (``origin``, ``from`` or ``node_id``) and the
verifier looks that key up; a signature never vouches for a key it carries itself, except the
self-signed node descriptor whose node ID *is* the key's fingerprint.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import nacl.exceptions
import nacl.signing
import orjson
import rfc8785

from .errors import InvalidInput, Unauthenticated
from .identity import Identity, b64u, b64u_decode

#: The longest a request signature may be valid for (expires - created), and the clock skew allowed.
MAX_SIGNATURE_WINDOW = 60
CLOCK_SKEW = 30
#: Header carrying the node ID a request is meant for; covered by the signature, so a request
#: captured on its way to one node cannot be replayed against another.
DESTINATION_HEADER = "discnode-destination"
COVERED = ("@method", "@authority", "@path", "@query", "content-digest", DESTINATION_HEADER)
SIGNATURE_LABEL = "discnode"
SIGNATURE_TAG = "discnode-v1"
SIGNATURE_ALG = "ed25519"

#: Library refusals whose words describe the request itself (its headers and parameters), and so
#: may go back to the peer as they are. Anything else (a wrapped Python exception, a parser's
#: detail) becomes the one plain reason below.
_PLAIN_REASONS = (
    "Content-Digest", "Content digest", "Duplicate content digest", "Unsupported content digest",
    "Invalid sha-", "Expected \"", "Malformed structured header field", "Multiple signatures found",
    "No signatures found", "Signature-Input and Signature headers", "Unexpected algorithm",
    "Signature is missing a required", "Parameter \"", "Signature member", "Signature-Input member",
    "Signature missing expected label", "Unexpected signature metadata parameter", "Required component",
    "The message body requires a signed Content-Digest",
)


def _plain(node: Any) -> bool:
    """True if node holds no floats and only ASCII keys: JSON whose RFC 8785 form is exactly what
    orjson writes with its keys sorted (same key order, same string escapes, same integers; orjson
    escapes every character as RFC 8785 does, checked for each code point by tests/test_signing.py).
    Floats (ECMAScript number formatting) and non-ASCII keys (UTF-16 key order, where orjson sorts
    by UTF-8 bytes) are where the two differ; those go to the rfc8785 package."""
    kind = type(node)
    if kind is dict:
        return all(type(k) is str and k.isascii() and _plain(v) for k, v in node.items())
    if kind is list:
        return all(_plain(v) for v in node)
    if kind is int:
        return abs(node) < 2**53  # JCS limits integers to IEEE 754 doubles' exact range
    return kind is str or kind is bool or node is None


def canonical(document: Any, *, plain: bool = False) -> bytes:
    """RFC 8785 (JCS) canonical bytes. Every signature and hash in the protocol rests on this; the
    fast path (orjson, in Rust) is ~60x quicker than the rfc8785 package for our records, and 6x
    quicker than the standard library's json.dumps (12.8 -> ~2 us a profile, on every record a
    first walk checks); tests/test_signing.py proves it byte-equal to the rfc8785 package.
    plain=True: the caller knows the document is plain (see _plain), e.g. a schema-valid record
    parsed from JSON that held no floats, and the check is skipped."""
    try:
        if plain or _plain(document):
            with contextlib.suppress(orjson.JSONEncodeError):  # e.g. nested past orjson's 255 levels
                return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
        return rfc8785.dumps(document)  # the reference: it writes, or refuses, the rest
    except (rfc8785.CanonicalizationError, TypeError, ValueError, UnicodeEncodeError):
        raise InvalidInput("document has no RFC 8785 canonical form (a number or string JSON cannot "
                           "carry exactly)") from None


def document_hash(document: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical form of a whole signed document, signature included (hex)."""
    return hashlib.sha256(canonical(dict(document))).hexdigest()


def sign_document(document: Mapping[str, Any], identity: Identity) -> dict[str, Any]:
    body = {k: v for k, v in document.items() if k != "sig"}
    return {**body, "sig": b64u(identity.sign(canonical(body)))}


def signed_message(document: Mapping[str, Any], *, plain: bool = False) -> tuple[bytes, str]:
    """What a document's signature covers (the canonical form without `sig`), and the signature."""
    sig = document.get("sig")
    if not isinstance(sig, str):
        raise Unauthenticated("document has no signature")
    body = dict(document)  # a copy less one member: ~10x quicker than a comprehension over them all
    del body["sig"]
    try:
        return canonical(body, plain=plain), sig
    except InvalidInput:
        raise Unauthenticated("document signature does not verify") from None


def verify_signature(message: bytes, sig: str, public_key: bytes) -> None:
    try:
        nacl.signing.VerifyKey(public_key).verify(message, b64u_decode(sig))
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, InvalidInput, TypeError):
        raise Unauthenticated("document signature does not verify") from None


def verify_document(document: Mapping[str, Any], public_key: bytes, *, plain: bool = False) -> None:
    """Raise Unauthenticated unless `sig` is a valid signature by public_key."""
    verify_signature(*signed_message(document, plain=plain), public_key)


# --- RFC 9421 request signatures -------------------------------------------------------------


@dataclass
class Message:
    """The minimal request shape http-message-signatures reads: method, absolute URL, headers."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


@functools.cache
def _library() -> Any:
    """http-message-signatures, the reference and the fallback, loaded on first use: a node whose
    peers all send discnode's exact shape never loads it, nor the `cryptography` it rests on
    (~10 MB of RSS)."""
    from types import SimpleNamespace

    from cryptography.hazmat.primitives.asymmetric import ed25519
    from http_message_signatures import HTTPMessageSigner, HTTPMessageVerifier, HTTPSignatureKeyResolver, algorithms
    from http_message_signatures.exceptions import HTTPMessageSignaturesException

    class Keys(HTTPSignatureKeyResolver):
        def __init__(self, private: Any = None, lookup: Callable[[str], bytes | None] | None = None) -> None:
            self.private = private
            self.lookup = lookup

        def resolve_private_key(self, key_id: str) -> Any:
            assert self.private is not None  # signer construction guarantees it; not peer input
            return self.private

        def resolve_public_key(self, key_id: str) -> Any:
            raw = self.lookup(key_id) if self.lookup else None
            if raw is None:
                raise Unauthenticated(f"unknown key {json.dumps(key_id[:60])}")
            return ed25519.Ed25519PublicKey.from_public_bytes(raw)

    class Verifier(HTTPMessageVerifier):
        """The library checks created/expires against the wall clock; discnode applies its own
        freshness rules (_discnode_rules) against a clock the caller passes, so that vectors and
        tests can fix it."""

        def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
            return None

    return SimpleNamespace(Signer=HTTPMessageSigner, Verifier=Verifier, Keys=Keys, ED25519=algorithms.ED25519,
                           Error=HTTPMessageSignaturesException)


def sign_request(
    identity: Identity, method: str, url: str, body: bytes, destination: str,
    *, now: int | None = None, nonce: str | None = None, lifetime: int = 30, include_alg: bool = True,
) -> dict[str, str]:
    """The headers (destination, Content-Digest, Signature-Input, Signature) to send with a request.
    include_alg=False only makes the refused form for test vectors: the protocol requires alg."""
    created = int(now if now is not None else dt.datetime.now(dt.timezone.utc).timestamp())
    nonce = nonce or secrets.token_urlsafe(18)
    fast = _sign_fast(identity, method, url, body, destination, created, nonce, lifetime) if include_alg else None
    if fast is not None:
        return fast
    return _sign_with_library(identity, method, url, body, destination, created, nonce, lifetime, include_alg)


def _sign_with_library(identity: Identity, method: str, url: str, body: bytes, destination: str,
                       created: int, nonce: str, lifetime: int, include_alg: bool = True) -> dict[str, str]:
    """The reference: what sign_request sends, by http-message-signatures."""
    lib = _library()
    message = Message(method.upper(), url, {DESTINATION_HEADER: destination})
    signer = lib.Signer(signature_algorithm=lib.ED25519, key_resolver=lib.Keys(private=identity.crypto_private_key()))
    signer.sign(
        message,
        key_id=identity.node_id,
        created=dt.datetime.fromtimestamp(created, dt.timezone.utc),
        expires=dt.datetime.fromtimestamp(created + lifetime, dt.timezone.utc),
        nonce=nonce,
        label=SIGNATURE_LABEL,
        tag=SIGNATURE_TAG,
        covered_component_ids=COVERED,
        body=body,
        include_alg=include_alg,
    )
    return dict(message.headers)


# --- the fast path: the one signature shape discnode sends -----------------------------------
#
# http-message-signatures parses and re-serialises every Structured Field generically: ~0.4 ms a
# request, most of a node's CPU per signed query, where the Ed25519 operation is ~0.05 ms. discnode
# signs and expects one fixed shape (label, tag, COVERED, parameters in the signer's order, one
# SHA-256 digest). For exactly that shape, written in canonical form (what the library itself
# serialises, so that the received text *is* the signature base's last line), the base is built here
# directly; any other request -- another label, other or reordered parameters, a repeated field, an
# escape, an unusual URL, a bad signature or digest -- goes to the library, which stays the reference
# and the only judge of a refusal. tests/test_signing.py proves the bases byte-equal and fuzzes the
# verifier against the library with malformed headers. No library offers a faster RFC 9421.

_TOKEN = r"[A-Za-z0-9._~-]+"  # node IDs, nonces (token_urlsafe): need no escape anywhere
_PCHAR = r"(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})"
_FAST_URL = re.compile(rf"(?P<scheme>https?)://(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>[0-9]*))?"
                       rf"(?P<path>/(?:{_PCHAR}|/)*)?(?:\?(?P<query>(?:{_PCHAR}|[/?])*))?")
_FAST_TOKEN = re.compile(_TOKEN)
_FAST_METHOD = re.compile(r"[A-Z]+")
_COVERED_LIST = "(" + " ".join(f'"{c}"' for c in COVERED) + ")"
_INT = r"(0|[1-9][0-9]{0,14})"  # RFC 8941 Integer, canonical (no leading zeros, no sign)
_FAST_SIGNATURE_INPUT = re.compile(
    re.escape(f"{SIGNATURE_LABEL}={_COVERED_LIST}")
    + rf';created={_INT};keyid="({_TOKEN})";alg="ed25519";expires={_INT};nonce="({_TOKEN})";'
    + re.escape(f'tag="{SIGNATURE_TAG}"'))
_FAST_SIGNATURE = re.compile(re.escape(SIGNATURE_LABEL) + r"=:([A-Za-z0-9+/]{86}==):")
_FAST_DIGEST = re.compile(r"sha-256=:([A-Za-z0-9+/]{43}=):")
_SIGNED_FIELDS = ("signature-input", "signature", "content-digest", DESTINATION_HEADER)
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _fast_target(method: str, url: str) -> tuple[str, str, str, str] | None:
    """(@method, @authority, @path, @query) as RFC 9421 and the library derive them, for the
    plain URLs discnode uses; None for anything else."""
    match = _FAST_URL.fullmatch(url)
    if match is None or _FAST_METHOD.fullmatch(method) is None:
        return None
    host, port = match["host"].lower(), match["port"]
    if port and port.lstrip("0") == _DEFAULT_PORTS[match["scheme"]]:
        port = None
    return method, f"{host}:{port}" if port else host, match["path"] or "/", "?" + (match["query"] or "")


#: _fast_target for signing: a pure function of its text, and a search signs for the same few URLs.
#: (Not for verifying, where the URL is a stranger's to choose.)
_sign_target = functools.lru_cache(maxsize=256)(_fast_target)


def signature_params(created: int, key_id: str, expires: int, nonce: str) -> str:
    return (f'{_COVERED_LIST};created={created};keyid="{key_id}";alg="ed25519";expires={expires};'
            f'nonce="{nonce}";tag="{SIGNATURE_TAG}"')


def signature_base(target: tuple[str, str, str, str], digest: str, destination: str, params: str) -> bytes:
    """The RFC 9421 signature base (section 2.5) of discnode's COVERED components."""
    values = (*target, digest, destination)
    lines = [f'"{name}": {value}' for name, value in zip(COVERED, values)]
    return "\n".join([*lines, f'"@signature-params": {params}']).encode()


def content_digest(body: bytes) -> str:
    """RFC 9530 Content-Digest, SHA-256, as the library serialises it."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def _sign_fast(identity: Identity, method: str, url: str, body: bytes, destination: str,
               created: int, nonce: str, lifetime: int) -> dict[str, str] | None:
    target = _sign_target(method.upper(), url)
    expires = created + lifetime
    # (below 10**11: the library signs through datetime, which ends with the year 9999)
    if (target is None or type(body) is not bytes or not 0 <= created < expires < 10**11
            or not all(_FAST_TOKEN.fullmatch(t) for t in (destination, nonce, identity.node_id))):
        return None
    digest = content_digest(body)
    params = signature_params(created, identity.node_id, expires, nonce)
    signature = identity.sign(signature_base(target, digest, destination, params))
    return {DESTINATION_HEADER: destination, "Content-Digest": digest,
            "Signature-Input": f"{SIGNATURE_LABEL}={params}",
            "Signature": f"{SIGNATURE_LABEL}=:{base64.b64encode(signature).decode()}:"}


@functools.lru_cache(maxsize=4096)
def _verify_key(raw: bytes) -> nacl.signing.VerifyKey:
    return nacl.signing.VerifyKey(raw)


class _Weak(Exception):
    """libsodium refused a signature of the exact shape: see verify_request."""


def _verify_fast(method: str, url: str, headers: Mapping[str, str], body: bytes,
                 lookup: Callable[[str], bytes | None], my_node_id: str) -> "_Signed | None":
    """The signature, if the request has discnode's exact shape, is addressed to my_node_id, and
    verifies; None in every other case (the library then decides, and gives the reason); _Weak if
    all is in order but libsodium refuses the signature itself.

    Ed25519 by libsodium (as documents are), not OpenSSL (as the library does): 40% less CPU, and
    the stricter of the two. Both verify without the cofactor and refuse S >= L, but libsodium also
    refuses small-order keys and R points, under which OpenSSL accepts forgeries (with the identity
    point as key, R = identity and S = 0 verify for every message)."""
    fields: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in _SIGNED_FIELDS:
            if lowered in fields or type(value) is not str:
                return None  # a repeated field: the library's to combine and judge
            fields[lowered] = value
    if len(fields) != len(_SIGNED_FIELDS) or type(body) is not bytes:
        return None
    target = _fast_target(method.upper(), url)
    sig_input = _FAST_SIGNATURE_INPUT.fullmatch(fields["signature-input"])
    sig = _FAST_SIGNATURE.fullmatch(fields["signature"])
    digest = _FAST_DIGEST.fullmatch(fields["content-digest"])
    destination = fields[DESTINATION_HEADER]
    if target is None or sig_input is None or sig is None or digest is None or destination != my_node_id:
        return None
    signature, digest_bytes = base64.b64decode(sig[1]), base64.b64decode(digest[1])
    if base64.b64encode(signature).decode() != sig[1] or base64.b64encode(digest_bytes).decode() != digest[1]:
        return None  # not canonical base64: the library's decoder is the judge of that
    if not hmac.compare_digest(digest_bytes, hashlib.sha256(body).digest()):
        return None
    created, key_id, expires, nonce = int(sig_input[1]), sig_input[2], int(sig_input[3]), sig_input[4]
    raw = lookup(key_id)
    if type(raw) is not bytes or len(raw) != 32:
        return None
    base = signature_base(target, fields["content-digest"], destination,
                          fields["signature-input"][len(SIGNATURE_LABEL) + 1:])
    try:
        _verify_key(raw).verify(base, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, TypeError):
        raise _Weak() from None
    return _Signed(key_id, nonce, created, expires, destination, "ed25519")


@dataclass(frozen=True)
class _Signed:
    """What a verified signature says, before discnode's own rules (freshness, destination)."""

    key_id: str
    nonce: Any
    created: Any
    expires: Any
    destination: Any
    alg: Any


def _verify_with_library(method: str, url: str, headers: Mapping[str, str], body: bytes,
                         lookup: Callable[[str], bytes | None]) -> _Signed:
    """The reference: the request's signature as http-message-signatures verifies it."""
    lib = _library()
    message = Message(method.upper(), url, dict(headers))
    verifier = lib.Verifier(signature_algorithm=lib.ED25519, key_resolver=lib.Keys(lookup=lookup))
    try:
        results = verifier.verify(message, max_age=None, expect_tag=SIGNATURE_TAG,
                                  expect_label=SIGNATURE_LABEL, require_components=COVERED, body=body)
    except Unauthenticated:
        raise
    except (lib.Error, ValueError, TypeError) as exc:
        if isinstance(exc.__cause__, Unauthenticated):  # our key lookup's refusal, wrapped by the library
            raise exc.__cause__ from None
        raise Unauthenticated(f"bad request signature: {_reason(exc)}") from None
    if len(results) != 1:
        raise Unauthenticated("expected exactly one discnode signature")
    params = results[0].parameters
    return _Signed(str(params["keyid"]), params.get("nonce"), params.get("created"), params.get("expires"),
                   results[0].covered_components.get(f'"{DESTINATION_HEADER}"'), params.get("alg"))


def _reason(exc: BaseException) -> str:
    """A library refusal in the request's terms, never a Python exception's text."""
    text = str(exc)
    if text.startswith(_PLAIN_REASONS) and len(text) <= 200 and text.isascii():
        return text
    return "the signature does not verify, or Signature-Input is malformed"


@dataclass(frozen=True)
class VerifiedRequest:
    key_id: str
    nonce: str
    created: int
    expires: int


def verify_request(
    method: str, url: str, headers: Mapping[str, str], body: bytes,
    lookup: Callable[[str], bytes | None], my_node_id: str, *, now: float | None = None,
) -> VerifiedRequest:
    """Check a request's RFC 9421 signature, Content-Digest (against the raw body, before anything
    parses it), freshness and destination. Replay (the nonce) is the caller's to check, since it
    needs state. Raises Unauthenticated with the reason."""
    now = now if now is not None else dt.datetime.now(dt.timezone.utc).timestamp()
    try:
        signed = (_verify_fast(method, url, headers, body, lookup, my_node_id)
                  or _verify_with_library(method, url, headers, body, lookup))
    except _Weak:
        _verify_with_library(method, url, headers, body, lookup)  # for its reason, nearly always
        # Stricter than the library: it accepted what libsodium refuses (see _verify_fast).
        raise Unauthenticated("bad request signature: refused by libsodium (a small-order key or "
                              "a non-canonical signature)") from None
    return _discnode_rules(signed, my_node_id, now)


def _discnode_rules(signed: _Signed, my_node_id: str, now: float) -> VerifiedRequest:
    """What discnode asks of a signature beyond RFC 9421, whichever path verified it."""
    if signed.alg != SIGNATURE_ALG:
        # Stricter than the library, which verifies with ed25519 whatever alg says, or without one:
        # the spec requires the parameter, so that no reader of a signature has to guess its
        # algorithm (RFC 9421 section 7.3.6).
        raise Unauthenticated(f'signature must carry alg="{SIGNATURE_ALG}"')
    created, expires, nonce = signed.created, signed.expires, signed.nonce
    if not isinstance(created, int) or not isinstance(expires, int) or not isinstance(nonce, str):
        raise Unauthenticated("signature must carry created, expires and nonce")
    if not 8 <= len(nonce) <= 64:
        raise Unauthenticated("nonce must be 8 to 64 characters")
    if expires - created > MAX_SIGNATURE_WINDOW or expires <= created:
        raise Unauthenticated(f"signature window must be 1 to {MAX_SIGNATURE_WINDOW} seconds")
    if created > now + CLOCK_SKEW:
        raise Unauthenticated("signature created in the future")
    if now > expires + CLOCK_SKEW:
        raise Unauthenticated("signature expired")
    if created < now - MAX_SIGNATURE_WINDOW - CLOCK_SKEW:
        raise Unauthenticated("signature too old")
    if signed.destination != my_node_id:
        raise Unauthenticated(f"request is addressed to {signed.destination!r}, not this node")
    return VerifiedRequest(signed.key_id, nonce, created, expires)
