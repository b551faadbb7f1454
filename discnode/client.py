"""Outbound peer calls: one shared aiohttp session, RFC 9421-signed requests, pinned TLS.

The only module that sends to peers. A peer's certificate is pinned by the SHA-256 fingerprint in
its signed descriptor (aiohttp.Fingerprint, checked on every new connection), so no CA is involved
and a swapped certificate fails. No request ever follows a redirect: a 3xx is refused (Redirected),
so no peer can point this node at another address, an internal service included.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

import aiohttp

from . import wirejson
from .errors import (DiscnodeError, InvalidInput, PeerError, PeerTimeout, RateLimited, Redirected, Refused,
                     ReplyTooLarge, Unauthenticated)
from .home import DESCRIPTOR_PATH
from .identity import Identity
from .peers import Peer, verify_descriptor
from .signing import sign_request
from .untrusted import peer_url

DEFAULT_TIMEOUT = 5.0
MAX_RESPONSE = 16 * 1024 * 1024


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str
    #: Seconds the peer asked us to wait (Retry-After on 429 and 503), if it said.
    retry_after: float | None = None
    #: The reply's Date header: the peer's clock (contact.offset_from_date).
    date: str | None = None

    def json(self) -> Any:
        return self.json_without_floats()[0]

    def json_without_floats(self) -> tuple[Any, bool]:
        """The JSON (strict I-JSON: wirejson), and whether it held no number that is not an integer
        (the protocol has none; knowing it lets a record's canonical form skip a walk of the whole
        structure)."""
        try:
            value, floats = wirejson.loads_checked(self.body)
        except InvalidInput as exc:
            raise PeerError(f"peer sent a reply that is not I-JSON: {exc}") from None
        return value, not floats


class _CertificateSeen(aiohttp.Fingerprint):
    """For fetching a descriptor from an address not pinned yet: accepts any certificate, and
    records the SHA-256 of the one presented, on the live connection, while the TLS session is up.

    The descriptor is self-authenticating (signed, and checked against the node ID the
    administrators exchanged) and names the certificate its node presents; the spec requires the
    client to check that the certificate it was served over is that one. aiohttp releases the
    connection as soon as a small body has arrived, so the certificate cannot be read reliably
    from the response; aiohttp calls `check` on every new TLS connection made with this object,
    which is the one hook it offers at that moment."""

    def __init__(self) -> None:
        super().__init__(bytes(32))
        self.sha256: str | None = None
        self.tls_version: str | None = None

    def check(self, transport: asyncio.Transport) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        cert = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self.sha256 = hashlib.sha256(cert).hexdigest() if cert else None
        self.tls_version = ssl_object.version() if ssl_object is not None else None


class _OldTLS(aiohttp.ServerFingerprintMismatch):
    """A pinned peer's connection negotiated a TLS version below 1.3. A subclass of aiohttp's
    mismatch error because that is the one exception on which aiohttp closes the new connection
    (rather than pooling it) when a fingerprint check fails."""

    def __init__(self, version: str | None) -> None:
        super().__init__(b"", b"", "", 0)
        self.version = version


class _Pinned(aiohttp.Fingerprint):
    """The pinned certificate, and TLS 1.3 or later, on every new connection to a partner.
    aiohttp builds its own client context for a fingerprint (which allows TLS 1.2), so the
    version is checked here, on the live connection, as the spec's transport section requires."""

    def check(self, transport: asyncio.Transport) -> None:
        super().check(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        version = ssl_object.version() if ssl_object is not None else None
        if version in (None, "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2"):
            raise _OldTLS(version)


def _redirect(status: int, where: str) -> Redirected:
    return Redirected(f"{where} answered with a redirect (HTTP {status}); discnode never follows redirects: "
                      "a peer's address is https://HOST:PORT of the node itself")


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    """Retry-After in seconds (RFC 9110 10.2.3); the HTTP-date form is not used between nodes."""
    value = resp.headers.get("Retry-After", "")
    return float(value) if value.isdigit() and len(value) <= 9 else None


def _describe(exc: BaseException, where: str, timeout: float) -> str:
    """A transport failure in words an administrator can act on."""
    if isinstance(exc, asyncio.TimeoutError):
        return f"{where} did not answer within {timeout:g}s"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS with {where} failed ({getattr(exc, 'os_error', exc)})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {where} ({exc.os_error.strerror or 'refused'}); is `discnode serve` running there?"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"{where} closed the connection"
    return f"cannot reach {where}: {exc.__class__.__name__}"


def _error_message(reply: Reply) -> str:
    try:
        return str(wirejson.loads(reply.body)["error"]["message"])[:2000]
    except (InvalidInput, KeyError, TypeError):
        return f"HTTP {reply.status}"


async def read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, or PeerError past `limit` bytes. (StreamReader.read(n) returns only what has
    arrived so far, which for a large reply is a fragment.)"""
    if resp.content_length is not None and resp.content_length > limit:
        raise ReplyTooLarge(f"reply of {resp.content_length} bytes is over the {limit}-byte limit")
    chunks, total = [], 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > limit:
            raise ReplyTooLarge(f"reply is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


@functools.lru_cache(maxsize=32)
def _timeout(total: float) -> aiohttp.ClientTimeout:
    """aiohttp's timeout for `total` seconds: a frozen value, made once, not per request."""
    return aiohttp.ClientTimeout(total=total)


#: Seconds after which this side closes an idle pooled connection: before a peer does (its
#: server.Limits.keepalive, 15 s). At aiohttp's default, also 15 s, a request could go out on a
#: connection the peer was closing at that moment and fail as "unreachable". Longer than the
#: daemon's keep-warm interval (localapi.KEEPALIVE_EVERY), so warm connections stay open.
IDLE_CLOSE = 12.0


class PeerClient:
    def __init__(self, identity: Identity, *, timeout: float = DEFAULT_TIMEOUT, limit: int = 100) -> None:
        self.identity = identity
        self.timeout = timeout
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        # aiohttp pools connections by the identity of the `ssl` argument: one Fingerprint object per
        # pinned certificate, or no connection is ever reused (a TLS handshake per request, and an
        # idle connection left behind each time).
        self._pins: dict[str, _Pinned] = {}

    async def __aenter__(self) -> "PeerClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, limit_per_host=20, ttl_dns_cache=300,
                                               keepalive_timeout=IDLE_CLOSE),
                # No cookie jar: peers authenticate by signature, and nothing a peer sets should ride
                # along on later requests (it also spares a jar lookup on every request).
                cookie_jar=aiohttp.DummyCookieJar(), trust_env=False, auto_decompress=True)
        return self._session

    def _pin(self, fingerprint: str) -> "_Pinned":
        pin = self._pins.get(fingerprint)
        if pin is None:
            pin = self._pins[fingerprint] = _Pinned(bytes.fromhex(fingerprint))
        return pin

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch_descriptor(self, url: str, expect: str | None = None, timeout: float | None = None) -> Peer:
        """The signed descriptor of the node at `url` (https://HOST:PORT), checked: it verifies, it
        is `expect` if given, and the certificate this very connection presented is the one it names."""
        base = peer_url(url)
        seen = _CertificateSeen()
        try:
            # A fresh connection (the pool is keyed by the `ssl` object, and this one is new) that is
            # closed afterwards: the certificate recorded is the one this reply came over.
            async with self.session.get(base + DESCRIPTOR_PATH, ssl=seen, allow_redirects=False,
                                        headers={"Connection": "close"},
                                        timeout=aiohttp.ClientTimeout(total=timeout or self.timeout)) as resp:
                if 300 <= resp.status < 400:
                    raise _redirect(resp.status, base)
                if resp.status != 200:
                    raise PeerError(f"{base} did not serve a node descriptor (HTTP {resp.status})")
                body = await read_limited(resp, 64 * 1024)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            kind = PeerTimeout if isinstance(exc, asyncio.TimeoutError) else PeerError
            raise kind(_describe(exc, base, timeout or self.timeout)) from None
        try:
            descriptor = wirejson.loads(body)
        except InvalidInput as exc:
            raise PeerError(f"{base} served a descriptor that is not I-JSON: {exc}") from None
        peer = verify_descriptor(descriptor, expect)
        if seen.tls_version in (None, "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2"):
            raise PeerError(f"{base} spoke {seen.tls_version or 'no TLS'}; nodes speak TLS 1.3 or later")
        if seen.sha256 is None or seen.sha256 != peer.tls_fingerprint:
            raise Unauthenticated(f"{base} presented a TLS certificate its descriptor does not name; NOT adding it")
        return peer

    async def request(self, peer: Peer, method: str, path: str, payload: Any = None, *,
                      timeout: float | None = None, body: bytes | None = None) -> Reply:
        """Send one signed request to a pinned peer. Raises PeerError for transport failures; HTTP
        errors come back as a Reply so that callers can tell refused from broken. body: the
        payload already encoded (send_json(payload)), for a caller sending one payload to many
        peers; then payload is not given."""
        if body is None and payload is not None:
            body = send_json(payload)
        url = peer_url(peer.url, f"address of {peer.name}") + path
        headers = sign_request(self.identity, method, url, body or b"", peer.node_id)
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self.session.request(
                method, url, data=body, headers=headers,
                ssl=self._pin(peer.tls_fingerprint), allow_redirects=False,
                timeout=_timeout(timeout or self.timeout),
            ) as resp:
                if 300 <= resp.status < 400:
                    raise _redirect(resp.status, f"{peer.name} at {peer.url}")
                data = await read_limited(resp, MAX_RESPONSE)
                return Reply(resp.status, data, resp.content_type, _retry_after(resp), resp.headers.get("Date"))
        except _OldTLS as exc:
            raise PeerError(f"{peer.name} at {peer.url} spoke {exc.version or 'no TLS'}; "
                            "nodes speak TLS 1.3 or later") from None
        except aiohttp.ServerFingerprintMismatch:
            raise Unauthenticated(f"{peer.name} presented a TLS certificate that is not the pinned one") from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            kind = PeerTimeout if isinstance(exc, asyncio.TimeoutError) else PeerError
            raise kind(_describe(exc, f"{peer.name} at {peer.url}", timeout or self.timeout)) from None

    async def keepalive(self, peer: Peer, timeout: float = 5.0) -> bool:
        """GET the peer's descriptor over a pinned pooled connection, keeping that connection open
        (a peer closes idle ones after 15 s). Unsigned and not under /v1/, so not audited there."""
        try:
            async with self.session.get(peer_url(peer.url, f"address of {peer.name}") + DESCRIPTOR_PATH,
                                        ssl=self._pin(peer.tls_fingerprint), allow_redirects=False,
                                        timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                await read_limited(resp, 64 * 1024)
                return resp.status == 200  # a redirect is not followed, and not a success
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, DiscnodeError):
            return False

    async def call_json(self, peer: Peer, method: str, path: str, payload: Any = None, *,
                        timeout: float | None = None) -> Any:
        reply = await self.request(peer, method, path, payload, timeout=timeout)
        if reply.status >= 400:
            raise error_for(reply.status, f"{peer.name}: {_error_message(reply)}")
        return reply.json()


def error_for(status: int, message: str) -> DiscnodeError:
    if status == 403:
        return Refused(message)
    if status == 401:
        return Unauthenticated(message)
    if status == 429:
        return RateLimited(message)
    return PeerError(message)


def send_json(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
