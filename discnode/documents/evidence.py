"""Evidence bundles (protocol/evidence-v1.md): profiles disclosed to police, each as its origin
signed it, checkable offline by anyone with this file alone. Pure: build, encode and verify; the
export (which records, images, audit) is evidence.py.

The file is exactly the RFC 8785 form of the bundle, so that "any byte changed" is something a
verifier can see: a change either breaks the JSON, leaves it no longer canonical, or changes a value
that a signature, an image hash or the whole-bundle digest covers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .. import PROTOCOL_VERSION, schemas, wirejson
from ..errors import DiscnodeError, InvalidInput, Tampered
from ..identity import Identity, b64u, b64u_decode, node_id_for
from ..signing import canonical, document_hash, sign_document, verify_document

TYPE = "evidence-bundle"
#: Largest bundle `verify` reads: a bundle carries full images (up to ~2 MB each as JPEG, a third
#: more as base64), and the whole file is parsed in memory.
MAX_BUNDLE_BYTES = 1 << 30


def digest_of(bundle: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the RFC 8785 form of the bundle without `digest` and `sig`."""
    return hashlib.sha256(canonical({k: v for k, v in bundle.items() if k not in ("digest", "sig")})).hexdigest()


def image_entry(sha256: str, jpeg: bytes | None, omitted: str = "") -> dict[str, str]:
    """The image a record names: its bytes when the exporter may disclose them, else why not."""
    if jpeg is None:
        return {"sha256": sha256, "omitted": omitted or "not available to the exporter"}
    return {"sha256": sha256, "jpeg": b64u(jpeg)}


def reference(record: Mapping[str, Any], origin: Mapping[str, Any], reason: str) -> dict[str, Any]:
    """Where a partner's record is, and how to tell it is the one meant, without what it says:
    police ask its origin (the partnership named here) for it."""
    ref = {"origin": record["origin"], "origin_name": origin["name"], "origin_url": origin["url"],
           "id": record["id"], "updated": record["updated"], "record_digest": document_hash(record),
           "reason": reason}
    if "revision" in record:  # absent from records of nodes older than revisions
        ref["revision"] = record["revision"]
    return ref


def build(identity: Identity, exporter: Mapping[str, Any], created_at: str, selection: Mapping[str, Any],
          origins: Iterable[Mapping[str, Any]], records: Iterable[tuple[Mapping[str, Any], dict[str, str] | None]],
          references: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A signed bundle: digest over everything else, then the exporter's signature over that."""
    bundle: dict[str, Any] = {
        "type": TYPE, "v": PROTOCOL_VERSION, "created_at": created_at, "exporter": dict(exporter),
        "selection": dict(selection), "origins": sorted((dict(o) for o in origins), key=lambda d: d["node_id"]),
        "records": [{"record": dict(r), "image": image} for r, image in records],
        "references": list(references),
    }
    bundle["digest"] = digest_of(bundle)
    signed = sign_document(bundle, identity)
    schemas.validate("evidence-bundle", signed)
    return signed


def encode(bundle: Mapping[str, Any]) -> bytes:
    return canonical(dict(bundle))


@dataclass(frozen=True)
class Verified:
    exporter: str
    exporter_name: str
    created_at: str
    digest: str
    records: int
    images: int
    images_omitted: int
    references: int
    origins: list[dict[str, str]]

    def to_json(self) -> dict[str, Any]:
        return {"ok": True, "exporter": self.exporter, "exporter_name": self.exporter_name,
                "created_at": self.created_at, "digest": self.digest, "records": self.records,
                "images": self.images, "images_omitted": self.images_omitted, "references": self.references,
                "origins": self.origins}


def _signed_by(document: Mapping[str, Any], key: bytes) -> bool:
    """Whether `sig` verifies with `key` and is spelt canonically: the last character of base64url
    has unused bits, which the signature check ignores and which only the exporter's signature
    would otherwise leave uncovered."""
    try:
        _strict_b64u(document["sig"])
        verify_document(document, key)
    except DiscnodeError:
        return False
    return True


def _descriptor_key(descriptor: Mapping[str, Any], what: str) -> bytes:
    """The key a descriptor binds to its node ID: self-certifying (the ID is the key's fingerprint)."""
    key = b64u_decode(descriptor["public_key"])
    if len(key) != 32 or node_id_for(key) != descriptor["node_id"]:
        raise Tampered(f"{what}: its node ID {descriptor['node_id']} is not the fingerprint of its key")
    if not _signed_by(descriptor, key):
        raise Tampered(f"{what}: its signature does not verify")
    return key


def _strict_b64u(text: str) -> bytes:
    """base64url without padding, in its one canonical spelling: the standard decoder ignores the
    unused low bits of the last character, so two spellings could carry the same bytes."""
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidInput("not base64url") from None
    if b64u(data) != text:
        raise InvalidInput("not canonical base64url")
    return data


def verify(data: bytes) -> Verified:
    """Check a bundle file with nothing but itself: canonical form, schema, every origin's
    descriptor, every record's signature, every image's hash, the whole-bundle digest and the
    exporter's signature. Tampered, with one line saying what failed, if anything does."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise Tampered(f"the file is over {MAX_BUNDLE_BYTES // (1 << 20)} MiB: not an evidence bundle this "
                       "verifier reads")
    try:
        bundle = wirejson.loads(data)
    except InvalidInput as exc:
        raise Tampered(f"the file is not I-JSON ({exc}): it is not an evidence bundle, or it was changed") from None
    if not isinstance(bundle, dict) or bundle.get("type") != TYPE:
        raise Tampered("the file is not an evidence bundle (no \"type\": \"evidence-bundle\")")
    try:
        canonical_form = canonical(bundle)
    except InvalidInput:
        canonical_form = b""
    if canonical_form != data:
        at = next((i for i, (x, y) in enumerate(zip(canonical_form, data)) if x != y),
                  min(len(canonical_form), len(data)))
        raise Tampered(f"the file is not in the RFC 8785 form it was written in (first difference at byte {at}): "
                       "it was changed after export")
    try:
        schemas.validate("evidence-bundle", bundle)
    except InvalidInput as exc:
        raise Tampered(f"the bundle does not follow evidence-v1: {exc}") from None

    exporter = bundle["exporter"]
    exporter_key = _descriptor_key(exporter, "the exporter's descriptor")
    keys: dict[str, bytes] = {}
    for descriptor in bundle["origins"]:
        if descriptor["node_id"] in keys:
            raise Tampered(f"origin {descriptor['node_id']} is listed twice")
        keys[descriptor["node_id"]] = _descriptor_key(descriptor, f"the descriptor of origin {descriptor['node_id']}")

    images = omitted = 0
    for n, item in enumerate(bundle["records"], 1):
        record, image = item["record"], item["image"]
        where = f"record {n} ({record['origin']}:{record['id']})"
        key = keys.get(record["origin"])
        if key is None:
            raise Tampered(f"{where}: its origin has no descriptor in the bundle")
        if not _signed_by(record, key):
            raise Tampered(f"{where}: its origin's signature does not verify: the record was changed")
        if image is None:
            if record["image"] is not None:
                raise Tampered(f"{where}: the image the record names is missing from the bundle")
            continue
        if image["sha256"] != record["image"]:
            raise Tampered(f"{where}: the bundle's image is not the one the signed record names")
        if "omitted" in image:
            omitted += 1
            continue
        try:
            jpeg = _strict_b64u(image["jpeg"])
        except InvalidInput as exc:
            raise Tampered(f"{where}: its image is {exc}: it was changed") from None
        if hashlib.sha256(jpeg).hexdigest() != image["sha256"]:
            raise Tampered(f"{where}: its image's bytes do not have the SHA-256 the signed record names: "
                           "the image was changed")
        images += 1

    if digest_of(bundle) != bundle["digest"]:
        raise Tampered("the whole-bundle digest does not match its contents: the bundle was changed after export")
    if not _signed_by(bundle, exporter_key):
        raise Tampered(f"the exporter's signature ({exporter['node_id']}) does not verify: "
                       "the bundle was changed after export")
    return Verified(exporter["node_id"], exporter["name"], bundle["created_at"], bundle["digest"],
                    len(bundle["records"]), images, omitted, len(bundle["references"]),
                    [{"node_id": d["node_id"], "name": d["name"]} for d in bundle["origins"]])
