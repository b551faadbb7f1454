"""Signed JSON documents (RFC 8785 canonical form + Ed25519) and RFC 9421 HTTP request signatures.

Pure functions: nothing here touches the network, the disk or the clock unless given it.

A signed document is a JSON object with a member ``sig``: base64url(Ed25519(JCS(document without
sig))). The signer is named inside the document (``origin``, ``from`` or ``node_id``) and the
verifier looks that key up; a signature never vouches for a key it carries itself, except the
self-signed node descriptor whose node ID *is* the key's fingerprint.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import nacl.exceptions
import nacl.signing
import rfc8785
from cryptography.hazmat.primitives.asymmetric import ed25519
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    algorithms,
)
from http_message_signatures.exceptions import HTTPMessageSignaturesException

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
    json.dumps(sort_keys, compact, ensure_ascii=False) writes (same key order, same string escapes,
    same integers). Floats (ECMAScript number formatting) and non-ASCII keys (UTF-16 key order) are
    where the two differ; those go to the rfc8785 package."""
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
    fast path is 10x quicker for our records and tests/test_signing.py proves it byte-equal.
    plain=True: the caller knows the document is plain (see _plain), e.g. a schema-valid record
    parsed from JSON that held no floats, and the check is skipped."""
    try:
        if plain or _plain(document):
            return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        return rfc8785.dumps(document)
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
    try:
        return canonical({k: v for k, v in document.items() if k != "sig"}, plain=plain), sig
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


class _Keys(HTTPSignatureKeyResolver):
    def __init__(self, private: ed25519.Ed25519PrivateKey | None = None,
                 lookup: Callable[[str], bytes | None] | None = None) -> None:
        self.private = private
        self.lookup = lookup

    def resolve_private_key(self, key_id: str) -> ed25519.Ed25519PrivateKey:
        assert self.private is not None  # signer construction guarantees it; not peer input
        return self.private

    def resolve_public_key(self, key_id: str) -> ed25519.Ed25519PublicKey:
        raw = self.lookup(key_id) if self.lookup else None
        if raw is None:
            raise Unauthenticated(f"unknown key {json.dumps(key_id[:60])}")
        return ed25519.Ed25519PublicKey.from_public_bytes(raw)


def sign_request(
    identity: Identity, method: str, url: str, body: bytes, destination: str,
    *, now: int | None = None, nonce: str | None = None, lifetime: int = 30, include_alg: bool = True,
) -> dict[str, str]:
    """The headers (Content-Digest, Signature-Input, Signature, destination) to send with a request.
    include_alg=False only makes the refused form for test vectors: the protocol requires alg."""
    created = int(now if now is not None else dt.datetime.now(dt.timezone.utc).timestamp())
    message = Message(method.upper(), url, {DESTINATION_HEADER: destination})
    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519,
                               key_resolver=_Keys(private=identity.crypto_private_key()))
    signer.sign(
        message,
        key_id=identity.node_id,
        created=dt.datetime.fromtimestamp(created, dt.timezone.utc),
        expires=dt.datetime.fromtimestamp(created + lifetime, dt.timezone.utc),
        nonce=nonce or secrets.token_urlsafe(18),
        label=SIGNATURE_LABEL,
        tag=SIGNATURE_TAG,
        covered_component_ids=COVERED,
        body=body,
        include_alg=include_alg,
    )
    return dict(message.headers)


class _Verifier(HTTPMessageVerifier):
    """The library checks created/expires against the wall clock; discnode applies its own
    freshness rules (below) against a clock the caller passes, so that vectors and tests can fix it."""

    def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
        return None


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
    message = Message(method.upper(), url, dict(headers))
    verifier = _Verifier(signature_algorithm=algorithms.ED25519, key_resolver=_Keys(lookup=lookup))
    try:
        results = verifier.verify(message, max_age=None, expect_tag=SIGNATURE_TAG,
                                  expect_label=SIGNATURE_LABEL, require_components=COVERED, body=body)
    except Unauthenticated:
        raise
    except (HTTPMessageSignaturesException, ValueError, TypeError) as exc:
        if isinstance(exc.__cause__, Unauthenticated):  # our key lookup's refusal, wrapped by the library
            raise exc.__cause__ from None
        raise Unauthenticated(f"bad request signature: {_reason(exc)}") from None
    if len(results) != 1:
        raise Unauthenticated("expected exactly one discnode signature")
    params = results[0].parameters
    if params.get("alg") != SIGNATURE_ALG:
        # The library verifies with ed25519 whatever alg says, or without one; the spec requires
        # the parameter, so that no reader of a signature has to guess its algorithm (RFC 9421 7.3.6).
        raise Unauthenticated(f'signature must carry alg="{SIGNATURE_ALG}"')
    created, expires, nonce = params.get("created"), params.get("expires"), params.get("nonce")
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
    destination = results[0].covered_components.get(f'"{DESTINATION_HEADER}"')
    if destination != my_node_id:
        raise Unauthenticated(f"request is addressed to {destination!r}, not this node")
    return VerifiedRequest(str(params["keyid"]), nonce, created, expires)
