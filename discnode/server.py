"""The peer API: aiohttp over HTTPS (TLS 1.3, the node's own certificate).

Authentication, replay and rate checks happen in one middleware before any handler, so a handler
receives an already-verified peer ID; consent is checked on every data request, never cached past
a change to the database. Every request to /v1/ is audited, served or refused; refusals of callers
that did not authenticate as a known peer are counted per address and minute (refusals.py).
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import datetime as dt
import functools
import json
import logging
import math
import signal
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from . import (audit, disclosures, keys, links, logs, match, memory, peers, proposals, replay, schemas,
               sightings, store, wirejson, witness)
from .audithead import check_head
from .documents.succession import verify_chain
from .consent import Agreement, check_incoming, check_supported
from .fairshare import FairShare
from .handling import Audience
from .errors import (Busy, DiscnodeError, InvalidInput, NotFound, RateLimited, Refused, TooLarge,
                     Unauthenticated)
from .home import DESCRIPTOR_PATH, Home, today
from .images import read as read_image
from . import loops, oprf
from .query import Query, widest_page
from .refusals import Refusals
from .replay import Nonces
from .sqlthreads import SqlThreads
from .transport import ACCEPT_BURST, ConnectionLimits, Connections, connection_cap, descriptor_limit, source
from .signing import CLOCK_SKEW, MAX_SIGNATURE_WINDOW, verify_document, verify_request

log = logging.getLogger("discnode.server")

T = TypeVar("T")

#: The longest an accepted nonce waits for its request's audit entry to carry it to disk (seen_nonce).
NONCE_LINGER = 0.05


@dataclass(frozen=True)
class Limits:
    max_body: int = 256 * 1024
    #: Sustained requests per second per peer, and the burst allowed above it.
    rate: float = 200.0
    burst: int = 400
    #: A request head must arrive within this long of its first byte (or of the connection's start,
    #: TLS handshake included), and the whole request, head, body and reply, within request_timeout.
    header_timeout: float = 10.0
    request_timeout: float = 30.0
    keepalive: float = 15.0
    #: One address may send this many times a peer's allowance (several partnerships behind one NAT).
    address_factor: int = 5
    #: Connections held at once in all (0: sized from the file-descriptor limit), and from one address.
    max_connections: int = 0
    connections_per_address: int = 64
    #: Connections of one partner kept when the total is reached (its own client holds at most
    #: 20 to a node: client.py); past them, its connections give way as strangers' do.
    connections_per_peer: int = 32
    #: Requests served at once, and how many more one partner may have waiting for a turn.
    slots: int = 8
    peer_queue: int = 16
    #: Read buffer per TLS connection: one TLS record (asyncio's default is 256 KiB; see serve_forever).
    tls_read_buffer: int = 17 * 1024


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class NodeState:
    home: Home
    limits: Limits
    sql: SqlThreads
    fair: FairShare
    nonces: Nonces = field(default_factory=Nonces)
    buckets: dict[str, _Bucket] = field(default_factory=dict)
    #: Per peer: the hashes of the consent documents its agreement was derived from, the day, the
    #: agreement and what it lets through (see _agreement_in).
    _agreements: dict[str, tuple[tuple[str, ...], dt.date, Agreement, Audience]] = field(default_factory=dict)
    descriptor: dict[str, Any] = field(default_factory=dict)
    #: Called with a peer's node ID when it shows it is back (it announced its descriptor), so that
    #: consent documents waiting for it go now rather than at the end of a retry back-off.
    peer_back: Callable[[str], None] = field(default=lambda node_id: None)
    #: Called with a partner's node ID when it erased or corrected one of its records (a notice,
    #: server_notices.py), so that the daemon's in-memory caches of its data (the web pages') go.
    notice_taken: Callable[[str], None] = field(default=lambda origin: None)
    #: Marks the connection of a verified request as a peer's (see transport.Connections.admit).
    trust: Callable[[web.BaseRequest, str], None] = field(default=lambda request, peer: None)
    #: This node's own set evaluated under each agreement's match key: (peer, offer hash) -> set.
    match_sets: dict[tuple[str, str], match.Evaluated] = field(default_factory=dict)
    match_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _own_keys: tuple[tuple[Any, ...], dict[bytes, list[str]]] | None = None
    #: Run a query's read in the group commit that writes its audit entry (read_and_audit): one
    #: trip to a SQL thread where a reader's trip and the commit's made two. Off: the path it replaced.
    fuse_reads: bool = True

    def _nonces_first(self) -> Callable[[store.DB], None] | None:
        """What runs before each write on the writer thread: the nonces accepted and not yet saved,
        committed in a transaction of their own. A handler that changes the node (a match quota
        charged, a document kept) commits its change before the group commit of its request's
        audit entry, which carries its nonce; a crash between the two (SIGKILL, power) must not
        leave the change on disk without the nonce, or a restart would carry out the same captured
        request again while its signature is fresh. They stay queued for the group commit too:
        a write cancelled before it runs saves nothing. A request that writes nothing (a query)
        still costs one commit (T2, T162)."""
        if not self.nonces.unsaved:
            return None
        rows, now = list(self.nonces.unsaved), time.time()
        return lambda db: replay.write(db, rows, now)

    def own_match_keys(self, db: store.DB) -> dict[bytes, list[str]]:
        """This node's Level Two keys (match.own_keys), read again only when its profiles may have
        changed (their count, latest update, row IDs, sharing or sizes) or the day has (reviews
        lapse): reading and folding 18,000 records takes about 0.3 s, a fingerprint of them a few
        milliseconds. Called under match_lock."""
        stamp = (today(), *db.execute("SELECT count(*), max(updated), sum(rowid), sum(local_only), "
                                      "sum(length(record)) FROM profiles WHERE batch IS NULL").fetchone())
        if self._own_keys is None or self._own_keys[0] != stamp:
            self._own_keys = (stamp, match.own_keys(db, self.me, stamp[0]))
        return self._own_keys[1]

    @property
    def me(self) -> str:
        return self.home.node_id

    @property
    def max_limit(self) -> int:
        """The largest query `limit` this node serves, from its own descriptor (spec 8.1): what it
        serves is what it told its partners."""
        return widest_page(self.descriptor.get("scopes", ()))

    def _agreement_in(self, db: store.DB, peer: str) -> tuple[Agreement, Audience]:
        # The agreement is a function of the documents held with the peer (their hashes name them;
        # a stored document never changes) and of the day (an agreement lapses): derived again
        # whenever either changes, whoever wrote the documents (the CLI: accept, revoke; this
        # daemon's writer), never used after a change. Reading the hashes costs one indexed query;
        # deriving, every document parsed (PRAGMA data_version, used before, changed with every
        # audit commit, so under load the agreement was derived again on most requests).
        hashes = peers.consent_hashes(db, peer)
        day = today()
        cached = self._agreements.get(peer)
        if cached and cached[0] == hashes and cached[1] == day:
            return cached[2], cached[3]
        agreement, hashes = peers.agreement_and_hashes(db, self.me, peer, day)
        audience = Audience.of_agreement(agreement)
        self._agreements[peer] = (hashes, day, agreement, audience)
        return agreement, audience

    async def agreement(self, peer: str) -> Agreement:
        return (await self.sql.read(lambda db: self._agreement_in(db, peer)))[0]

    #: What the next group commit writes, in order: (None, (event, peer, detail), done) for an entry;
    #: (read, entry, done) for a read whose result entry(result) describes (read_and_audit).
    _audit_queue: list[tuple[Any, Any, asyncio.Future[Any]]] = field(default_factory=list)
    _flusher: asyncio.Task[None] | None = None
    _nonce_timer: asyncio.TimerHandle | None = None
    refusals: Refusals = field(default_factory=Refusals)
    _refusals_timer: asyncio.TimerHandle | None = None

    async def refused(self, request: web.Request, exc: DiscnodeError, claimed: str) -> None:
        """Audit a refusal of a request that did not authenticate as a known peer: the first from
        its address this minute in full, before the reply; the rest of the minute as one counted
        row when the minute is over (refusals.py), so junk cannot flood the log."""
        remote = request.remote or ""
        request[COUNTED] = True
        if self.refusals.add(time.time(), remote, exc.status, str(exc), claimed):
            await self.audit("refused", "", path=request.path[:200], method=request.method, status=exc.status,
                             reason=str(exc), claimed=claimed, remote=remote)
        elif self._refusals_timer is None:
            loop = asyncio.get_running_loop()
            self._refusals_timer = loop.call_later(self.refusals.next_due(time.time()) + 0.5,
                                                   self._write_refusals)

    def _write_refusals(self, everything: bool = False) -> None:
        self._refusals_timer = None
        entries = self.refusals.drain() if everything else self.refusals.due(time.time())
        if entries:  # into the next group commit, on the writer thread; nobody waits for them
            loop = asyncio.get_running_loop()
            for event, peer, detail in entries:
                self._audit_queue.append((None, (event, peer, detail), loop.create_future()))
            self._schedule_flush()
        if self.refusals.pending and not everything:
            self._refusals_timer = asyncio.get_running_loop().call_later(
                self.refusals.next_due(time.time()) + 0.5, self._write_refusals)

    def _write_counted_refusals(self) -> None:
        """At shutdown: queue what is counted but not yet written (close() commits it)."""
        if self._refusals_timer is not None:
            self._refusals_timer.cancel()
        self._write_refusals(everything=True)

    async def audit(self, event: str, peer: str = "", **detail: Any) -> None:
        """Append to the audit log before the reply goes out. Entries queued while the previous
        commit is under way are written together in the next (group commit): one commit for many
        requests, and no request is answered before its entry is on disk."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._audit_queue.append((None, (event, peer, _unicode(detail)), done))
        self._schedule_flush()
        await done

    async def read_and_audit(self, read: Callable[[store.DB], T],
                             entry: Callable[[T], tuple[str, str, dict[str, Any]]]) -> T:
        """read(db), and the audit entry that says what it read, written by the next group commit
        in its transaction on the writer thread: one trip to a SQL thread where a query made two
        (a reader for the read, the writer for the group commit), each a wake-up of a thread and
        of this loop. Alone, the commit is this request's own; under load, the reads of the
        requests queued together run one after another in one commit, as their entries did. The
        entry is on disk before this returns, as `audit` promises. If read (or entry) raises,
        its request gets the exception and writes no entry here (its caller audits the refusal
        as ever); the others' entries and the nonces are committed all the same."""
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._audit_queue.append((read, entry, done))
        self._schedule_flush()
        return await done

    def _schedule_flush(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush(), name="audit-group-commit")

    async def _flush(self) -> None:
        """Commit queued audit entries and newly accepted nonces on the writer thread, one
        transaction per batch, until nothing is queued."""
        await asyncio.sleep(0)  # let this loop turn's entries join the first batch
        failed = False
        # After a failed commit, go on only while entries wait: those queued during it must each
        # be tried (or failed) now, not left waiting for some later request to start a flush; the
        # nonces it gave back are tried with them, or with the next flush.
        while self._audit_queue or (self.nonces.unsaved and not failed):
            batch, self._audit_queue = self._audit_queue, []
            rows = self.nonces.take_unsaved()
            if self._nonce_timer is not None:  # every nonce accepted so far is in this batch
                self._nonce_timer.cancel()
                self._nonce_timer = None
            now = time.time()

            def commit(db: store.DB) -> list[tuple[Any, BaseException | None]]:
                return _commit_batch(batch, rows, now, db)
            try:
                outcomes = await self.sql.write(commit)
            except Exception as exc:  # noqa: BLE001 - every waiting request must learn of it
                log.error("audit commit failed: %s", exc)
                self.nonces.unsaved[:0] = rows  # still owed to the table; tried with the next batch
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                failed = True
                continue
            for (*_, done), (result, error) in zip(batch, outcomes):
                if done.done():
                    continue
                if error is not None:
                    done.set_exception(error)
                else:
                    done.set_result(result)

    async def close(self) -> None:
        """Queue the counted refusals and unsaved nonces, finish the last group commit, then close
        the SQL threads."""
        self._write_counted_refusals()
        if self.nonces.unsaved:
            self._schedule_flush()
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        self.sql.close()

    def forget_agreements(self) -> None:
        self._agreements.clear()

    def seen_nonce(self, key_id: str, nonce: str, expires: int, now: float) -> bool:
        """Replay check. A nonce need only be remembered until its signature could no longer pass
        the freshness checks (expiry plus clock skew). It is saved in the group commit that holds
        its request's audit entry, before the reply goes out: every verified request's outcome is
        audited (_audited), and a commit takes every nonce accepted before it. Committing it at
        once, apart, cost a lone request a second transaction and a second trip to the writer.
        For a request that ends with no entry of its own (a refusal counted rather than written,
        a peer gone before its reply), NONCE_LINGER seconds later at the latest."""
        if self.nonces.seen(key_id, nonce, expires + CLOCK_SKEW + MAX_SIGNATURE_WINDOW, now):
            return True
        if self._nonce_timer is None:
            self._nonce_timer = asyncio.get_running_loop().call_later(NONCE_LINGER, self._save_nonces)
        return False

    def _save_nonces(self) -> None:
        self._nonce_timer = None
        if self.nonces.unsaved:
            self._schedule_flush()

    def allow(self, key: str, now: float, factor: int = 1) -> bool:
        """Token bucket per key (a peer's node ID, or an address)."""
        burst, rate = float(self.limits.burst * factor), self.limits.rate * factor
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) > 10_000:  # forget idle buckets rather than grow without end
                self.buckets = {k: b for k, b in self.buckets.items() if now - b.stamp < 60}
            bucket = self.buckets[key] = _Bucket(burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def retry_after(self, key: str, factor: int = 1) -> int:
        """Whole seconds until `key`'s bucket holds a token again."""
        bucket = self.buckets.get(key)
        missing = 1 - bucket.tokens if bucket else 0
        return max(1, math.ceil(missing / (self.limits.rate * factor)))


def _commit_batch(batch: list[tuple[Any, Any, asyncio.Future[Any]]], rows: list[Any], now: float,
                  db: store.DB) -> list[tuple[Any, BaseException | None]]:
    """One group commit, on the writer thread: each queued read run and its entry made from what
    it read, the entries appended in the order queued, the nonces saved; one transaction. Returns
    each queued item's (result, error). A read that raises costs its own request its entry and
    nothing else: reads write nothing, so the transaction holds what it held before it; unless
    SQLite itself rolled the transaction back (an I/O error, a full disk), and then the whole
    batch fails as a failed commit does."""
    outcomes: list[tuple[Any, BaseException | None]] = []
    entries: list[tuple[str, str, dict[str, Any]]] = []
    with store.write(db):
        for read, entry, done in batch:
            if read is None:
                entries.append(entry)
                outcomes.append((None, None))
                continue
            if done.cancelled():  # its request is gone: nothing read, nothing served, no entry
                outcomes.append((None, None))  # (read across threads, as _Threads does: at worst it runs)
                continue
            try:
                result = read(db)
                event, peer, detail = entry(result)
            except Exception as exc:  # noqa: BLE001 - handed to its request, as a reader's trip would
                if not db.conn.in_transaction:
                    raise
                outcomes.append((None, exc))
                continue
            entries.append((event, peer, _unicode(detail)))
            outcomes.append((result, None))
        if entries:
            audit.append_many(db, entries)
        replay.write(db, rows, now)
    return outcomes


def _unicode(value: Any) -> Any:
    """value with every string made valid Unicode. Header bytes that are not UTF-8 reach us as lone
    surrogates (surrogateescape); in an audit entry they would make the batch's canonical form
    fail, and with it every entry and every reply waiting on that batch."""
    if isinstance(value, str):
        # An ASCII string holds no surrogate: it is its own answer (most of an entry, and the
        # disclosure pairs of a served page are ~1.5 kB of it).
        if type(value) is str and value.isascii():
            return value
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if type(value) is dict:
        # An entry's detail is mostly ASCII names to ASCII strings and integers: a copy as it is.
        for k, v in value.items():
            if not (type(k) is str and k.isascii() and (type(v) is int or type(v) is str and v.isascii())):
                break
        else:
            return dict(value)
    if isinstance(value, dict):
        return {_unicode(k): _unicode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_unicode(v) for v in value]
    return value


STATE = web.AppKey("state", NodeState)
PEER = web.RequestKey("peer", str)      # the verified node ID of the caller
BODY = web.RequestKey("body", bytes)    # the raw body, read once and digest-checked
#: What a handler served, for the request's one audit entry: (event, detail).
OUTCOME = web.RequestKey("outcome", tuple)
#: Set when a refusal was counted with other strangers' (refusals.py) instead of audited alone.
COUNTED = web.RequestKey("counted", bool)
#: Set when the handler committed the request's own audit entry itself (NodeState.read_and_audit).
AUDITED = web.RequestKey("audited", bool)


def note(request: web.Request, event: str, **detail: Any) -> None:
    """Name what this request did, for the one audit entry the middleware writes for it."""
    request[OUTCOME] = (event, detail)


#: The most of a reply's body handed to TLS at once: one TLS record's data (see Sent).
TLS_RECORD = 16 * 1024


class Sent(web.Response):
    """A response that lets go of its body once it is sent, and hands it to TLS a record at a time.

    aiohttp keeps each keep-alive connection's last response (its request loop holds it while it
    waits for the connection's next request): with 50 connections, 50 pages of ~53 KB (50 records)
    stayed resident, 2.7 MB, for nothing (memory.py).

    TLS encrypts what it is given into a memory buffer (OpenSSL's BIO) from which the event loop
    sends; that buffer keeps the size of the largest write it ever held for the connection's life.
    A whole page in one write left ~81 KB of TLS state on each keep-alive connection, a record at
    a time ~39 KB (measured: benchmarks/README.md, "Serving RSS"). The bytes on the wire are the
    same records either way. Only a plain body is split (not a HEAD reply's, nor a compressed one)."""

    async def write_eof(self, data: bytes = b"") -> None:
        body = self.body
        if (isinstance(body, bytes) and len(body) > TLS_RECORD and not data
                and getattr(self, "_must_be_empty_body", True) is False
                and getattr(self, "_compressed_body", True) is None):
            view = memoryview(body)
            last = (len(body) - 1) // TLS_RECORD * TLS_RECORD
            for start in range(0, last, TLS_RECORD):
                await self.write(view[start:start + TLS_RECORD])
            await web.StreamResponse.write_eof(self, view[last:])  # type: ignore[arg-type]
        else:
            await super().write_eof(data)
        self.body = None


def _sent_json(data: Any) -> Sent:
    """web.json_response's reply, as a Sent."""
    return Sent(text=json.dumps(data), content_type="application/json")


def _error(status: int, code: str, message: str, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                            ) -> web.StreamResponse:
    """One JSON error shape for everything; a peer's bad input is a 4xx, never a 5xx."""
    try:
        return await handler(request)
    except DiscnodeError as exc:
        response = _error(exc.status, exc.code, str(exc), exc.retry_after)
        if isinstance(exc, TooLarge):
            response.force_close()  # the body is not read: the connection closes after the reply
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, "http", exc.reason)
    except Exception:  # noqa: BLE001 - a bug of ours; the peer gets no detail, the log gets all
        log.exception("internal error on %s %s", request.method, request.path)
        return _error(500, "internal", "internal error")


@web.middleware
async def size_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> web.StreamResponse:
    """A declared body over the limit is refused before a byte of it is read (a Content-Length of
    100 GB must not wait for 100 GB, nor for the request deadline)."""
    limit = request.app[STATE].limits.max_body
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"request body over {limit} bytes")
    return await handler(request)


#: transport.source, remembered: a pure function of the peer's address string, which parsing
#: (ipaddress) costs ~6 us of every request's loop time; bounded, as addresses are the sender's.
_source = functools.lru_cache(maxsize=256)(source)


def _rotation_keys(db: store.DB, request: web.Request, body: bytes, key_id: str, now: float) -> list[bytes]:
    """Keys other than the pinned one that may sign a request from key_id now: its former keys
    whose grace period has not ended; and, for an announced descriptor (POST /v1/descriptor), the
    current key of the key history it carries, if that history verifies and continues the one
    held (how a rotation reaches a partner: the request is signed by the new key)."""
    pinned = peers.public_key(db, key_id)
    when = dt.datetime.fromtimestamp(now, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = [k for k in keys.keys_at(db, key_id, when) if k != pinned]
    if request.path == "/v1/descriptor" and pinned is not None:
        try:
            doc = wirejson.loads(body)
            if isinstance(doc, dict) and doc.get("node_id") == key_id and "key_events" in doc:
                fresh = peers.verify_descriptor(doc)
                keys.check_continues(db, verify_chain(doc["key_events"]))
                out.append(fresh.public_key)
        except DiscnodeError:
            pass
    return out


def _lookup(db: store.DB, request: web.Request, body: bytes, unknown: list[str], asked: list[str]
            ) -> Callable[[str], bytes | None]:
    def lookup(key_id: str) -> bytes | None:
        asked.append(key_id)
        key = peers.public_key(db, key_id)
        if key is None and request.path == "/v1/consent":
            # A first offer from a node we have never heard of carries its own signed descriptor,
            # whose node ID is the fingerprint of its key: that key may sign this one request.
            try:
                doc = wirejson.loads(body)
                descriptor = doc.get("descriptor") if isinstance(doc, dict) else None
                if isinstance(descriptor, dict) and descriptor.get("node_id") == key_id:
                    return peers.verify_descriptor(descriptor).public_key
            except DiscnodeError:
                return None
        if key is None:
            unknown.append(key_id)
        return key
    return lookup


@web.middleware
async def auth_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> web.StreamResponse:
    if not request.path.startswith("/v1/"):
        return await handler(request)
    state = request.app[STATE]
    claimed = request.headers.get("Signature-Input", "")[:300]
    address = f"address {_source(request.remote or '')}"  # an IPv6 /64 as one (transport.source)
    if not state.allow(address, time.time(), state.limits.address_factor):
        # Before any verification; counted, not audited one by one (refusals.py).
        exc = RateLimited("rate limit exceeded; slow down",
                          retry_after=state.retry_after(address, state.limits.address_factor))
        await state.refused(request, exc, claimed)
        raise exc
    try:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise TooLarge(f"request body over {state.limits.max_body} bytes") from None
        now = time.time()
        unknown: list[str] = []

        def verify(db: store.DB) -> Any:
            asked: list[str] = []
            try:
                return verify_request(request.method, str(request.url), request.headers, body,
                                      _lookup(db, request, body, unknown, asked), state.me, now=now)
            except Unauthenticated:
                if unknown or not asked:
                    raise
                # A partner that rotated its key (spec 4.6): its former key within the grace
                # period, or the new key its announced descriptor's history proves.
                for key in _rotation_keys(db, request, body, asked[0], now):
                    try:
                        return verify_request(request.method, str(request.url), request.headers, body,
                                              lambda key_id: key if key_id == asked[0] else None, state.me, now=now)
                    except Unauthenticated:
                        continue
                raise
        try:
            verified = await state.sql.read(verify)
        except Unauthenticated:
            if unknown:  # a node we have no agreement with, whatever else is wrong
                raise Refused(f"no agreement with node {unknown[0][:40]}") from None
            raise
        if verified.created < state.nonces.floor:
            raise Unauthenticated("request signed before this node was restored from a backup; sign it again")
        if state.seen_nonce(verified.key_id, verified.nonce, verified.expires, now):
            raise Unauthenticated("replayed request (nonce already used)")
        state.trust(request, verified.key_id)
        if not state.allow(verified.key_id, now):
            raise RateLimited("rate limit exceeded; slow down", retry_after=state.retry_after(verified.key_id))
        turn = state.fair.claim(verified.key_id)
    except DiscnodeError as exc:
        await state.refused(request, exc, claimed)
        raise
    request[PEER] = verified.key_id
    request[BODY] = body
    async with turn:
        return await _audited(request, handler)


async def _audited(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
    """Run the handler for a verified peer and append the request's one audit entry: what the
    handler noted if it answered 2xx, else `refused` (4xx: a 404 for a hidden ID too) or `failed`
    (5xx), with the status and the reason the peer was given. Before the reply goes out."""
    state = request.app[STATE]
    where = {"method": request.method, "path": request.path}
    try:
        response = await handler(request)
    except DiscnodeError as exc:
        if not request.get(COUNTED):  # a stranger's offer over the caps is counted, not a row each
            await state.audit("refused" if exc.status < 500 else "failed", request[PEER], **where,
                              status=exc.status, reason=str(exc))
        raise
    except web.HTTPException as exc:  # aiohttp's own: no such path, method not allowed
        if exc.status >= 400:
            await state.audit("refused" if exc.status < 500 else "failed", request[PEER], **where,
                              status=exc.status, reason=exc.reason)
        raise
    except Exception:  # a bug of ours: the peer learns nothing, the log and the audit say it happened
        await state.audit("failed", request[PEER], **where, status=500, reason="internal error")
        raise
    if request.get(AUDITED):  # its entry is on disk already, written with what it read
        return response
    event, detail = request.get(OUTCOME, ("answered", {}))
    await state.audit(event, request[PEER], **_served_detail(request, response.status, detail))
    return response


def _served_detail(request: web.Request, status: int, detail: dict[str, Any]) -> dict[str, Any]:
    """The detail of a handled request's audit entry: where, the status, what the handler noted.
    One function for both ways an entry is written (_audited, NodeState.read_and_audit)."""
    return {"method": request.method, "path": request.path, "status": status, **detail}


async def _require(request: web.Request, kind: str = "") -> str:
    """The verified peer, if an active agreement (sharing `kind`, if given) is in force; else 403."""
    state = request.app[STATE]
    peer = request[PEER]
    _check_share(await state.agreement(peer), kind)
    return peer


async def _agreed(request: web.Request, kind: str) -> tuple[str, Agreement, Audience]:
    """_require, with the agreement and what it lets through (one trip to a reader thread)."""
    state = request.app[STATE]
    peer = request[PEER]
    agreement, audience = await state.sql.read(lambda db: state._agreement_in(db, peer))
    _check_share(agreement, kind)
    return peer, agreement, audience


def _check_share(agreement: Agreement, kind: str = "") -> None:
    """Refused (403) unless the agreement is active and shares `kind` (if given)."""
    if not agreement.active or (kind and kind not in agreement.share):
        reason = (f"agreement is {agreement.state.value}" if not agreement.active
                  else f"agreement does not share {kind}")
        raise Refused(f"no active agreement to share {kind or 'anything'} ({reason})")


def _json_body(request: web.Request) -> Any:
    """The body as I-JSON (wirejson): UTF-8, no duplicate names, integers in range, shallow."""
    try:
        return wirejson.loads(request[BODY])
    except InvalidInput as exc:
        raise InvalidInput(f"request body: {exc}") from None


async def descriptor(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].descriptor)


async def consent(request: web.Request) -> web.Response:
    state = request.app[STATE]
    peer = request[PEER]
    doc = _json_body(request)
    if not isinstance(doc, dict):
        raise InvalidInput("consent document must be a JSON object")
    schemas.validate("consent", doc)
    if doc["from"] != peer:
        raise Unauthenticated("consent document is not from the node that signed the request")
    if doc["to"] != state.me:
        raise InvalidInput("consent document is addressed to another node")
    if doc["type"] == "offer" and doc["descriptor"]["node_id"] != peer:
        raise InvalidInput("offer carries another node's descriptor")
    if doc["type"] == "offer":  # a scope this node lacks: refused, nothing stored (offer again after an upgrade)
        check_supported(doc["terms"]["share"], state.descriptor)
    remote = request.remote or ""

    def receive(db: store.DB) -> str:
        if doc["type"] == "offer":
            key = peers.verify_descriptor(doc["descriptor"]).public_key
        else:
            if peers.public_key(db, peer) is None:
                raise Refused(f"no agreement with node {peer}")
            key = peers.verify_by_peer(db, peer, doc)
        verify_document(doc, key)
        check_incoming(peers.agreement(db, state.me, peer, today()), doc, state.me)
        with store.write(db):  # all or nothing: no peer row without its offer
            if doc["type"] == "offer":
                peers.admit_offer(db, state.me, peer, remote)
                peers.remember(db, doc["descriptor"], offered_from=remote)
            peers.add_document(db, peer, doc, delivered=True)
        return peers.agreement(db, state.me, peer, today()).state.value

    try:
        after = await state.sql.write(receive)
    except (RateLimited, Busy) as exc:  # a stranger over the caps: counted like other strangers' refusals
        await state.refused(request, exc, peer)
        raise
    state.forget_agreements()
    note(request, f"consent-{doc['type']}-received", state=after)
    return web.json_response({"state": after})


async def new_descriptor(request: web.Request) -> web.Response:
    """A peer's new signed descriptor (its address changed). Adopted only if it verifies as that
    same peer and is newer than the one held."""
    state = request.app[STATE]
    peer = request[PEER]
    descriptor = _json_body(request)
    if not isinstance(descriptor, dict) or descriptor.get("node_id") != peer:
        raise InvalidInput("a node may only announce its own descriptor")

    def adopt(db: store.DB) -> tuple[str, str]:
        if not peers.vouched_for(db, state.me, peer):
            # A stranger's address stays the one pinned when its offer came: the one place this
            # node would ever send it anything (a rejection, once).
            raise Refused("only a node this node offered to or accepted may announce a new address")
        before = peers.get(db, peer).url
        return before, peers.remember(db, descriptor, stranger_ok=False).url

    before, after = await state.sql.write(adopt)
    if before != after:
        note(request, "peer-address-changed", old=before, new=after)
    else:
        note(request, "descriptor-received")
    state.peer_back(peer)
    return web.json_response({"url": after})


async def query_profiles(request: web.Request) -> web.Response:
    state = request.app[STATE]
    peer = request[PEER]
    # The body is read here, on the loop; a bad one is refused only after the agreement is checked,
    # as every handler does (_require first), so that a peer without one learns nothing more.
    query: Query | None = None
    counts = False  # `counts: true` (spec 8.1): the page and its facet counts, from one read
    bad: BaseException | None = None
    try:
        doc = _json_body(request)
        query = Query.from_wire(doc, state.max_limit)
        counts = doc.get("counts") is True
    except Exception as exc:  # noqa: BLE001 - raised below, in the order _require would give
        bad = exc

    def read(db: store.DB) -> tuple[list[bytes], str, Any]:
        # The agreement, its check and the page in one trip to a SQL thread (each trip costs
        # about as much CPU as the page's SQL).
        agreement, audience = state._agreement_in(db, peer)
        _check_share(agreement, "profiles")
        if bad is not None:
            raise bad
        assert query is not None
        if not counts:
            return (*store.search_served_bytes(db, query, today(), state.me, audience), None)
        from .facets import count
        day = today()
        # One read transaction: the page and the counts see one snapshot (WAL). On the writer
        # (read_and_audit) the write transaction is that snapshot already.
        opened = not db.conn.in_transaction
        if opened:
            db.conn.execute("BEGIN")
        try:
            return (*store.search_served_bytes(db, query, day, state.me, audience),
                    count(db, query, day, served_by=state.me, audience=audience))
        finally:
            if opened:
                db.conn.execute("COMMIT")

    def served(result: tuple[list[bytes], str, Any]) -> dict[str, Any]:
        records, names, counted = result
        return ({"what": "query", "count": len(records), "records": names, "counted": counted.total}
                if counted is not None else {"what": "query", "count": len(records), "records": names})

    if state.fuse_reads:  # the read rides in the group commit that writes its entry
        where = _served_detail(request, 200, {})  # read here, on the loop, not on the writer thread
        records, names, counted = await state.read_and_audit(
            read, lambda result: ("served", peer, {**where, **served(result)}))
        request[AUDITED] = True
    else:
        records, names, counted = await state.sql.read(read)
        note(request, "served", **served((records, names, counted)))
    # Stored records are already the signed JSON: send them as they are, unparsed; the counts as
    # the facets endpoint sends them (json.dumps: only ASCII codes and integers).
    tail = b"]}" if counted is None else b'],"counts":' + json.dumps(counted.to_wire()).encode() + b"}"
    return Sent(body=page_body(records, tail), content_type="application/json", charset="utf-8")


def page_body(records: list[bytes], tail: bytes) -> bytes:
    """b'{"records":[' + b",".join(records) + tail, copying the page once rather than three times
    (the join, then each concatenation: ~53 kB each for a page of 50)."""
    if not records:
        return b'{"records":[' + tail
    parts = list(records)
    parts[0] = b'{"records":[' + parts[0]
    parts[-1] = parts[-1] + tail
    return b",".join(parts)


async def count_facets(request: web.Request) -> web.Response:
    """Facet counts over the records this peer could fetch with the same query (facets.py)."""
    from .facets import count

    state = request.app[STATE]
    peer, _, audience = await _agreed(request, "profiles")
    query = Query.from_wire(_json_body(request))
    counts = await state.sql.read(lambda db: count(db, query, today(), served_by=state.me, audience=audience))
    note(request, "served", what="facets", count=counts.total)
    return _sent_json(counts.to_wire())


async def get_profile(request: web.Request) -> web.Response:
    state = request.app[STATE]
    peer, agreement, audience = await _agreed(request, "profiles")
    profile_id = request.match_info["profile_id"]
    shared_images = "images" in agreement.share

    def read(db: store.DB) -> tuple[dict[str, Any], list[str]]:
        record = store.get_shareable(db, profile_id, state.me, today(), audience)
        return record, [i["sha256"] for i in store.images_of(db, profile_id)] if shared_images else []

    record, images = await state.sql.read(read)
    note(request, "served", what="profile", id=profile_id, count=1,
         records=disclosures.encode([(profile_id, record.get("revision", 0))]))
    return _sent_json({"record": record, "images": images})


async def get_image(request: web.Request) -> web.Response:
    state = request.app[STATE]
    peer, _, audience = await _agreed(request, "images")
    sha = request.match_info["sha256"]
    size = request.query.get("size", "thumb")
    if size not in ("thumb", "full"):
        raise InvalidInput("size must be thumb or full")

    def read(db: store.DB) -> tuple[bytes, list[tuple[str, int]]]:
        holders = store.shareable_image(db, sha, state.me, today(), audience)
        if not holders:
            raise NotFound("no such shared image")
        return read_image(state.home.images_root, sha, thumb=size == "thumb"), holders

    data, holders = await state.sql.read(read)
    note(request, "served", what=f"image-{size}", id=sha, count=1, records=disclosures.encode(holders))
    return Sent(body=data, content_type="image/jpeg")


async def _match_key(state: NodeState, peer: str, agreement: Agreement) -> bytes:
    """This node's secret key for the agreement (made on first use, on the writer thread)."""
    assert agreement.offer_hash is not None  # active
    offer_hash = agreement.offer_hash
    held = state.match_sets.get((peer, offer_hash))
    if held is not None:
        return held.key
    key = await state.sql.write(lambda db: match.key_for(db, peer, offer_hash))
    return state.match_sets.setdefault((peer, offer_hash), match.Evaluated(key, {})).key


async def _match_set(state: NodeState, peer: str, agreement: Agreement
                     ) -> tuple[match.Evaluated, dict[bytes, list[str]]]:
    """This node's own set under the agreement's key, brought up to date with its profiles. The
    evaluation (about 0.2 ms a name) runs in a thread, so that the event loop keeps serving."""
    async with state.match_lock:
        await _match_key(state, peer, agreement)
        evaluated = state.match_sets[(peer, str(agreement.offer_hash))]
        keys = await state.sql.read(state.own_match_keys)
        await asyncio.to_thread(evaluated.update, keys)
    return evaluated, keys


async def match_set(request: web.Request) -> web.Response:
    """The holder's own set, evaluated under this agreement's key (protocol/match-v1.md 4.1)."""
    state = request.app[STATE]
    peer = await _require(request, "match")
    evaluated, _ = await _match_set(state, peer, await state.agreement(peer))
    published = evaluated.published()
    note(request, "served", what="match-set", count=len(published))
    return web.json_response({"outputs": published})


async def match_evaluate(request: web.Request) -> web.Response:
    """Evaluate a batch of blinded elements under this agreement's key, against the daily quota."""
    state = request.app[STATE]
    peer = await _require(request, "match")
    body = _json_body(request)
    schemas.validate("match-evaluate", body)
    blinded = [match.unb64(b, oprf.POINT_BYTES, f"blinded[{i}]") for i, b in enumerate(body["blinded"])]
    agreement = await state.agreement(peer)
    key = await _match_key(state, peer, agreement)
    # Every element checked before the quota is charged; in a thread (0.15 ms each) so the loop serves on.
    evaluated = await asyncio.to_thread(lambda: [oprf.evaluate(key, b) for b in blinded])
    day = dt.datetime.now(dt.timezone.utc).date()
    limit = agreement.match_daily_quota
    used = await state.sql.write(lambda db: match.charge(db, peer, day, len(blinded), limit))
    note(request, "match-evaluated", count=len(blinded), used_today=used)
    return web.json_response({"evaluated": [match.b64(z) for z in evaluated],
                              "quota": {"limit": limit, "used": used, "day": day.isoformat()}})


async def match_reveal(request: web.Request) -> web.Response:
    """A partner asks to see the profile behind a hit; the administrator decides (match-v1.md 5)."""
    state = request.app[STATE]
    peer = await _require(request, "match")
    body = _json_body(request)
    schemas.validate("match-reveal", body)
    ref = body["ref"]
    agreement = await state.agreement(peer)
    audience = Audience.of_agreement(agreement)
    evaluated, keys = await _match_set(state, peer, agreement)
    profiles = evaluated.profiles_for(ref, keys)
    if not profiles:
        raise NotFound(f"no match reference {ref} under this agreement")
    asked = await state.sql.write(lambda db: match.ask_reveal(db, peer, ref, profiles))
    reply: dict[str, Any] = {"request": asked["id"], "state": asked["state"]}
    if asked["state"] == "allowed":
        def read(db: store.DB) -> list[dict[str, Any]]:
            records = []
            for profile_id in asked["profiles"]:
                try:
                    records.append(store.get_shareable(db, profile_id, state.me, today(), audience))
                except NotFound:  # made local-only or deleted since it was allowed
                    continue
            return records
        records = await state.sql.read(read)
        reply["records"] = records
        note(request, "served", what="revealed", ref=ref, reveal_request=asked["id"],
             ids=[r["id"] for r in records], count=len(records),
             records=disclosures.encode((r["id"], r.get("revision", 0)) for r in records))
    else:
        note(request, "reveal-asked", ref=ref, reveal_request=asked["id"], state=asked["state"])
    return web.json_response(reply)


async def receive_audit_head(request: web.Request) -> web.Response:
    """A partner's signed audit head, to witness (section 9.4)."""
    state = request.app[STATE]
    peer = await _require(request)
    body = _json_body(request)
    key = await state.sql.read(lambda db: _signer_key(db, peer, body))
    doc = check_head(body, peer, key)

    def keep(db: store.DB) -> tuple[Any, dict[str, Any]]:
        return witness.receive(db, peer, doc), witness.held_for(db, peer)

    outcome, held = await state.sql.write(keep)
    note(request, "audit-head-received", entries=doc["entries"], outcome=outcome.value)
    return web.json_response(held)


async def witnessed_audit_head(request: web.Request) -> web.Response:
    """The heads this node witnessed of the asking partner's own log, never another node's."""
    state = request.app[STATE]
    peer = await _require(request)
    held = await state.sql.read(lambda db: witness.held_for(db, peer))
    note(request, "served", what="audit-head", count=len(held["heads"]) + len(held["evidence"]))
    return web.json_response(held)


def _signer_key(db: store.DB, peer: str, doc: Any) -> bytes:
    """The key of `peer` that signed doc: its pinned key, or (after a rotation, spec 4.6) the
    former key valid at the document's issued_at if that is the one its signature verifies with.
    A document that verifies with neither gets the pinned key, for its module to refuse."""
    pinned = peers.public_key(db, peer)
    if pinned is None:  # an active agreement means a pinned key; kept for the type checker
        raise Refused(f"no agreement with node {peer}")
    if isinstance(doc, dict) and isinstance(doc.get("sig"), str):
        with contextlib.suppress(DiscnodeError):
            return peers.verify_by_peer(db, peer, doc)
    return pinned


async def _partner_key(request: web.Request, doc: Any) -> tuple[str, bytes]:
    """The verified peer and the key that signed its document, if an agreement sharing profiles
    is active; else 403."""
    state = request.app[STATE]
    peer = await _require(request, "profiles")
    return peer, await state.sql.read(lambda db: _signer_key(db, peer, doc))


async def _receive_document(request: web.Request, receive: Callable[[Any, NodeState, str, bytes, Any], Any],
                            event: str, detail: Callable[[Any, Any], dict[str, Any]]) -> web.Response:
    """A partner's signed document (proposal, outcome, sighting, link, answer): checked for an
    active agreement sharing profiles, handed to its module on the writer thread, audited once."""
    state = request.app[STATE]
    doc = _json_body(request)
    peer, key = await _partner_key(request, doc)
    reply = await state.sql.write(lambda db: receive(db, state, peer, key, doc))
    note(request, event, **detail(doc, reply))
    return web.json_response(reply)


async def receive_proposal(request: web.Request) -> web.Response:
    """A partner's proposal about one of our ID-sought profiles it can see (section 8.4)."""
    return await _receive_document(
        request, lambda db, st, peer, key, doc: proposals.receive(db, st.me, peer, key, doc), "proposal-received",
        lambda doc, reply: {"id": reply["id"], "about": doc["about"],
                            "as": doc["as"]["id"] if doc["as"] else None})


async def receive_proposal_outcome(request: web.Request) -> web.Response:
    """The origin's signed outcome of a proposal this node sent it (section 8.4)."""
    return await _receive_document(
        request, lambda db, st, peer, key, doc: proposals.receive_outcome(db, st.me, peer, key, doc),
        "proposal-outcome-received", lambda doc, reply: dict(reply))


async def receive_sighting(request: web.Request) -> web.Response:
    """A partner's sighting of one of our profiles it can see (section 8.5)."""
    return await _receive_document(
        request, lambda db, st, peer, key, doc: sightings.receive(db, st.home.identity, peer, key, doc),
        "sighting-received", lambda doc, reply: {"id": reply["id"]})


async def receive_link(request: web.Request) -> web.Response:
    """A partner's same-person link naming one of our profiles it can see (section 8.6)."""
    return await _receive_document(
        request, lambda db, st, peer, key, doc: links.receive(db, st.me, peer, key, doc), "link-received",
        lambda doc, reply: dict(reply))


async def receive_link_answer(request: web.Request) -> web.Response:
    """A partner's answer to a same-person link this node proposed (section 8.6)."""
    return await _receive_document(
        request, lambda db, st, peer, key, doc: links.receive_answer(db, st.me, peer, key, doc),
        "link-answer-received", lambda doc, reply: dict(reply))


def create_app(home: Home, limits: Limits = Limits()) -> web.Application:
    app = web.Application(middlewares=[errors_middleware, size_middleware, auth_middleware],
                          client_max_size=limits.max_body)
    state = NodeState(home, limits, SqlThreads(home.db_path), nonces=Nonces.load(home.db, time.time()),
                      fair=FairShare(limits.slots, limits.peer_queue))
    state.sql.first = state._nonces_first  # no change of a request on disk before its nonce
    state.descriptor = home.descriptor()
    app[STATE] = state
    app.router.add_get(DESCRIPTOR_PATH, descriptor)
    app.router.add_post("/v1/consent", consent)
    app.router.add_post("/v1/descriptor", new_descriptor)
    app.router.add_post("/v1/profiles/query", query_profiles)
    app.router.add_post("/v1/profiles/facets", count_facets)
    app.router.add_get(r"/v1/profiles/{profile_id:[a-z2-7]{12}}", get_profile)
    app.router.add_get(r"/v1/images/{sha256:[0-9a-f]{64}}", get_image)
    app.router.add_get("/v1/match/set", match_set)
    app.router.add_post("/v1/match/evaluate", match_evaluate)
    app.router.add_post("/v1/match/reveal", match_reveal)
    app.router.add_post(witness.HEAD_PATH, receive_audit_head)
    app.router.add_get(witness.HEAD_PATH, witnessed_audit_head)
    app.router.add_post("/v1/proposals", receive_proposal)
    app.router.add_post("/v1/proposals/outcome", receive_proposal_outcome)
    app.router.add_post("/v1/sightings", receive_sighting)
    app.router.add_post("/v1/links", receive_link)
    app.router.add_post("/v1/links/answer", receive_link_answer)
    from . import server_statistics  # noqa: PLC0415 - it imports this module
    server_statistics.register(app)
    from . import server_notices  # noqa: PLC0415 - it imports this module
    server_notices.register(app)
    from . import recoveryapi
    recoveryapi.register(app)
    return app


def tls_context(home: Home) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(home.tls_cert, home.tls_key)
    return ctx


class Running:
    """A started peer API: the listening server, its connections, and the aiohttp runner behind it."""

    def __init__(self, runner: web.AppRunner, server: asyncio.base_events.Server, port: int,
                 connections: Connections) -> None:
        self.runner, self.server, self.port, self.connections = runner, server, port, connections

    async def stop(self) -> None:
        self.server.close()
        await self.connections.close()
        await self.runner.cleanup()
        await self.runner.app[STATE].close()


def connection_limits(limits: Limits, nofile: int | None = None) -> ConnectionLimits:
    total = limits.max_connections or connection_cap(nofile if nofile is not None else descriptor_limit())
    # One partner never keeps more than half the total from giving way, however small the total.
    return ConnectionLimits(total=total, per_address=min(limits.connections_per_address, total),
                            per_peer=min(limits.connections_per_peer, max(1, total // 2)),
                            header_timeout=limits.header_timeout, request_timeout=limits.request_timeout,
                            handshake_timeout=limits.header_timeout)


async def start(home: Home, limits: Limits = Limits(), *, host: str | None = None, port: int | None = None
                ) -> Running:
    app = create_app(home, limits)
    connections: Connections | None = None

    class ReplySent(AbstractAccessLogger):
        """aiohttp calls this once a reply is written: the connection's request deadline ends,
        and a connection whose reply said `Connection: close` (a refused body left unread) is
        closed now rather than after reading and discarding that body."""

        def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
            guard = connections.guard_of(request.protocol) if connections else None
            if guard is not None:
                guard.reply_sent()
            if not response.keep_alive and request.protocol is not None:
                request.protocol.force_close()

    runner = web.AppRunner(app, access_log_class=ReplySent, access_log=log, keepalive_timeout=limits.keepalive,
                           max_line_size=8190, max_field_size=8190,
                           logger=logs.guard(logging.getLogger("discnode.http"), one_line=True))
    await runner.setup()
    web_server = runner.server
    assert web_server is not None
    make_request = web_server.request_factory

    def request_factory(message: Any, payload: Any, protocol: Any, writer: Any, task: Any, *a: Any) -> Any:
        guard = connections.guard_of(protocol) if connections else None
        if guard is not None:
            guard.head_received()
        return make_request(message, payload, protocol, writer, task, *a)

    def trust(request: web.BaseRequest, peer: str) -> None:
        guard = connections.guard_of(request.protocol) if connections else None
        if guard is not None and connections is not None:
            connections.trust(guard, peer)

    web_server.request_factory = request_factory
    app[STATE].trust = trust
    connections = Connections(connection_limits(limits), tls_context(home), web_server)
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(connections.protocol_factory, host or home.config.host,
                                          port if port is not None else home.config.port, reuse_address=True,
                                          backlog=ACCEPT_BURST)
    except BaseException:
        await connections.close()
        await runner.cleanup()
        await app[STATE].close()
        raise
    bound = server.sockets[0].getsockname()[1]
    return Running(runner, server, bound, connections)


def follow_rotation(side_home: Home, state: NodeState, loop: asyncio.AbstractEventLoop,
                    local: Any = None) -> str:
    """After `discnode key rotate` ran while this daemon serves (spec 4.6): the delivery thread's
    home (side_home) and, on the serving loop, the peer API's descriptor and the local API's client
    move to the new key, without a restart. A new node ID (`discnode key reset`) needs a restart:
    logged, nothing changed. Returns "same", "rotated" or "new-id"."""
    events = keys.own_events(side_home.db)
    if not events or keys.periods(events)[-1].public_key == side_home.identity.public_key:
        return "same"
    if events[0]["node_id"] != state.me:
        log.warning("this node has a new ID (discnode key reset): restart discnode serve")
        return "new-id"
    side_home.reload_identity()

    def apply() -> None:
        state.home.reload_identity()
        state.descriptor = state.home.descriptor()
        client = getattr(getattr(local, "local", None), "_client", None)
        if client is not None:
            client.identity = state.home.identity
        log.info("key rotated: now signing with key %d of this node", len(events) - 1)
    loop.call_soon_threadsafe(apply)
    return "rotated"


async def _shrink(home: Home) -> None:
    memory.shrink(home.db.conn)


async def serve_forever(home: Home, limits: Limits = Limits(), *, advertise: bool = True,
                        deliver_every: float = 30.0, checkpoint_every: float = witness.CHECKPOINT_EVERY,
                        ui_port: int = 0, stop_requested: Callable[[], bool] = lambda: False) -> None:
    """`discnode serve`: the peer API, mDNS advertisement, redelivery of signed documents (consent,
    and the audit heads signed every `checkpoint_every` seconds), and the local API (localapi.py:
    the Unix socket, and the web Dataview on loopback when asked), until SIGINT or SIGTERM. The
    signal handlers go in first, so a stop signal at any moment, even one the caller caught before
    the loop ran (stop_requested), ends in the same clean shutdown."""
    from . import localapi
    from .peering import Retry, deliver_pending

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if stop_requested():
        stop.set()
    # asyncio gives every TLS connection a 256 KiB read buffer, zero-filled, so resident: 12.5 MB
    # for 50 connections. Our requests are at most 256 KiB of body in TLS records of at most
    # 16 KiB of data (16,645 bytes on the wire): a buffer that holds one record reads a signed query
    # in one go, and a large body a record at a time (64 KiB read them in as many loop turns for
    # queries; 17 KiB takes ~35 kB less a connection: 50 connections 1.7 MB). Process-wide, so only
    # the daemon sets it, not the library. uvloop's TLS (loops.py) has its own 256 KiB buffer, not
    # zero-filled: only the pages its reads touch become resident.
    asyncio.sslproto.SSLProtocol.max_size = limits.tls_read_buffer
    # Failed handshakes and the like are logged by asyncio itself, as often as a stranger likes.
    logs.guard(logging.getLogger("asyncio"), one_line=True)
    logs.guard(log)
    store.sign_missing_views(home.db, home.identity)  # rows a crash left unsigned after migration 016
    running = await start(home, limits)
    caps = running.connections.limits
    log.info("at most %d connections (%d per address; file descriptors: %d; event loop: %s)", caps.total,
             caps.per_address, descriptor_limit(), loops.running_kind())
    try:
        local = await localapi.start(home, ui_port=ui_port)
    except BaseException:
        await running.stop()
        raise
    advertiser = None
    try:
        if not advertise:
            log.info("not announced on the local network (announce = false in config.toml, or --no-advertise)")
        else:
            from .discovery import Advertiser, plan_for
            plan = plan_for(home)
            if plan is None:
                log.info("not announced on the local network: %s is loopback (or not an IPv4 address)",
                         home.config.host)
            else:
                advertiser = Advertiser(home, running.port, plan)
                await advertiser.start()
                log.info("announced on the local network (mDNS) as %s on %s", ", ".join(plan.addresses),
                         "every interface" if plan.interfaces is None else "its interface only")
    except BaseException:
        await local.stop()
        await running.stop()
        raise
    # Only now: a supervisor that reads this line may stop the node at once, and must find it stoppable.
    log.info("serving %s (%s) on %s", home.config.name, home.node_id, home.config.url)

    # Redelivery and checkpoints write to SQLite (through home.db, with SQLite's busy handler) and
    # wait on peers: they run on their own thread and event loop, so that neither a write lock held
    # by an import nor a slow peer ever holds the loop that serves partners.
    # It has its own connection: the local API uses home.db on this loop, and a sqlite3 connection
    # shared by two threads would mix their transactions.
    side_home = Home.open(home.path)
    side = loops.new_event_loop()
    side_thread = threading.Thread(target=side.run_forever, name="redelivery", daemon=True)
    retry = Retry(first=deliver_every)
    wake = asyncio.Event()

    def woken(node_id: str) -> None:  # on the side loop
        retry.succeeded(node_id)
        wake.set()

    def peer_back(node_id: str) -> None:
        side.call_soon_threadsafe(woken, node_id)
    running.runner.app[STATE].peer_back = peer_back

    def notice_taken(origin: str) -> None:  # on this loop, as the web pages that fill the cache
        local.local.forget(origin)
    running.runner.app[STATE].notice_taken = notice_taken

    async def redeliver() -> None:
        from .peering import announce
        from .retention import Schedule
        try:
            await announce(side_home)
        except Exception:  # noqa: BLE001
            log.exception("announcing the descriptor failed")
        new_id = False  # after `key reset`, only a restart helps: said once
        retention = Schedule()
        while True:
            try:
                if not new_id:
                    new_id = follow_rotation(side_home, running.runner.app[STATE], loop, local) == "new-id"
            except Exception:  # noqa: BLE001
                log.exception("taking up a rotated key failed")
            try:
                witness.checkpoint_if_due(side_home, checkpoint_every)
            except Exception:  # noqa: BLE001
                log.exception("signing an audit checkpoint failed")
            try:  # the disclosure index, off the serving path (disclosures.py)
                disclosures.catch_up(side_home.db)
            except Exception:  # noqa: BLE001
                log.exception("indexing disclosures failed")
            try:  # profiles past the retention ceiling, and old audit entries (retention.py)
                retention.run_if_due(side_home, time.monotonic())
            except Exception:  # noqa: BLE001
                log.exception("the retention run failed")
            try:
                await deliver_pending(side_home, retry=retry)
            except Exception:  # noqa: BLE001 - keep retrying; each failure is logged
                log.exception("consent redelivery failed")
            # What start-up (compiling validators, reading the database through home.db) and the
            # work above read and freed, back to the system: resident memory is what the node is
            # sized by (memory.py). Each connection's page cache is emptied on its own thread.
            try:
                memory.shrink(side_home.db.conn)
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_shrink(home), loop))
            except Exception:  # noqa: BLE001
                log.exception("emptying SQLite's page caches failed")
            memory.release()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), deliver_every)
            wake.clear()

    side_thread.start()
    task = asyncio.run_coroutine_threadsafe(redeliver(), side)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wrap_future(task)
        side.call_soon_threadsafe(side.stop)
        side_thread.join(10)
        if not side_thread.is_alive():
            side.close()  # uvloop frees its descriptors only then
        side_home.close()
        if advertiser:
            await advertiser.stop()
        await local.stop()
        await running.stop()
        log.info("stopped")
