"""An oblivious PRF over the edwards25519 prime-order group, in the style of RFC 9497's OPRF mode
(base mode, no verifiability). Pure: bytes in, bytes out; no I/O.

    asker                                   holder (secret scalar k)
    P = H(x);  r random;  B = r*P   --B-->  Z = k*B        (evaluate)
    N = (1/r)*Z = k*P               <--Z--
    y = Finalize(x, N)

The holder never sees x (B is uniformly random to it); the asker gets y = F(k, x) and cannot
compute F for any other input without asking the holder again. Specified in protocol/match-v1.md.

Curve arithmetic is libsodium's (through pynacl): RFC 9497 names ristretto255, which pynacl does
not bind, and we write no group arithmetic by hand. libsodium's edwards25519 functions work in the
prime-order subgroup: `from_uniform` clears the cofactor, `is_valid_point` refuses small-order,
non-canonical and off-subgroup encodings, and `scalarmult_ed25519_noclamp` refuses an identity result.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from nacl import bindings as sodium
from nacl.exceptions import RuntimeError as SodiumError

from .errors import InvalidInput

POINT_BYTES = 32
SCALAR_BYTES = 32
OUTPUT_BYTES = 32
#: Domain separation: a second use of the same group and hash must pick other strings.
HASH_TO_GROUP_DST = b"discnode-match-v1 HashToGroup edwards25519 SHA-512 from_uniform x2"
FINALIZE_DST = b"discnode-match-v1 Finalize"
#: The encoding of the identity (neutral element) of edwards25519.
IDENTITY = bytes([1]) + bytes(31)


def hash_to_group(data: bytes) -> bytes:
    """H(x): SHA-512 of the DST and x; each 32-byte half mapped into the group with libsodium's
    Elligator 2 map (`from_uniform`, which clears the cofactor), and the two points added. Mapping
    two independent halves and adding them is the shape of RFC 9380's random-oracle encoding
    (hash_to_curve), so that H(x) is not confined to the image of a single map."""
    digest = hashlib.sha512(HASH_TO_GROUP_DST + data).digest()
    point = sodium.crypto_core_ed25519_add(sodium.crypto_core_ed25519_from_uniform(digest[:32]),
                                           sodium.crypto_core_ed25519_from_uniform(digest[32:]))
    if point == IDENTITY:  # probability 2^-252; an input that hits it cannot be matched
        raise InvalidInput("input hashes to the identity element")
    return point


def check_point(point: bytes, what: str = "element") -> bytes:
    """A point from the network: 32 bytes, canonical, on the curve, in the prime-order subgroup,
    not of small order (so not the identity). Anything else is refused before it is used."""
    if not isinstance(point, bytes) or len(point) != POINT_BYTES:
        raise InvalidInput(f"{what} must be {POINT_BYTES} bytes")
    if point == IDENTITY or not sodium.crypto_core_ed25519_is_valid_point(point):
        raise InvalidInput(f"{what} is not a valid group element")
    return point


def check_scalar(scalar: bytes) -> bytes:
    """A secret scalar: 32 bytes little-endian, reduced mod the group order, not zero."""
    if len(scalar) != SCALAR_BYTES or scalar == bytes(SCALAR_BYTES):
        raise InvalidInput("scalar must be 32 non-zero bytes")
    if sodium.crypto_core_ed25519_scalar_reduce(scalar + bytes(32)) != scalar:
        raise InvalidInput("scalar is not reduced modulo the group order")
    return scalar


def new_key() -> bytes:
    """A fresh secret scalar k (or blind r), uniform in [1, L-1]."""
    while True:
        # 64 random bytes reduced mod L: uniform to within 2^-260 (pynacl binds no scalar_random).
        scalar = sodium.crypto_core_ed25519_scalar_reduce(secrets.token_bytes(64))
        if scalar != bytes(SCALAR_BYTES):
            return scalar


def _mult(scalar: bytes, point: bytes) -> bytes:
    try:
        return sodium.crypto_scalarmult_ed25519_noclamp(scalar, point)
    except SodiumError:  # the result was the identity: the point had small order
        raise InvalidInput("element is not a valid group element") from None


def blind(data: bytes, blind_scalar: bytes | None = None) -> tuple[bytes, bytes]:
    """(r, B = r*H(x)). Pass r only to reproduce vectors."""
    r = check_scalar(blind_scalar) if blind_scalar is not None else new_key()
    return r, _mult(r, hash_to_group(data))


def evaluate(key: bytes, blinded: bytes) -> bytes:
    """The holder's step: Z = k*B, after checking B."""
    return _mult(check_scalar(key), check_point(blinded, "blinded element"))


def unblind(blind_scalar: bytes, evaluated: bytes) -> bytes:
    """N = (1/r)*Z, after checking Z (it came from the network)."""
    inverse = sodium.crypto_core_ed25519_scalar_invert(check_scalar(blind_scalar))
    return _mult(inverse, check_point(evaluated, "evaluated element"))


def finalize(data: bytes, unblinded: bytes) -> bytes:
    """y = SHA-512(len(x) || x || len(N) || N || DST), first 32 bytes; lengths as 2-byte big-endian,
    as RFC 9497's Finalize (with its own DST in place of "Finalize")."""
    if len(data) > 0xFFFF:
        raise InvalidInput("input too long")
    digest = hashlib.sha512(len(data).to_bytes(2, "big") + data + len(unblinded).to_bytes(2, "big")
                            + unblinded + FINALIZE_DST).digest()
    return digest[:OUTPUT_BYTES]


def output(key: bytes, data: bytes) -> bytes:
    """F(k, x) computed by the key's holder directly: Finalize(x, k*H(x)). Equal to what the asker
    gets through blind, evaluate, unblind, finalize."""
    return finalize(data, _mult(check_scalar(key), hash_to_group(data)))


def same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
