"""The serving path's shortcuts give what the paths they replaced gave: the agreement kept between
requests, the one trip to a reader thread for a query, the audit detail's ASCII fast path."""

import asyncio
import datetime as dt
import json
import re
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from discnode import audit, peers, server, store
from discnode.consent import Action, Terms, new_offer, new_response
from discnode.handling import Audience
from discnode.home import Config, Home, today
from discnode.server import NONCE_LINGER, STATE, Limits, NodeState, _unicode, page_body
from discnode.signing import document_hash, sign_document
from discnode.store import now_ts
from tests.nodes import send, signed
from tests.test_server import QUERY, add_profiles, query


def _home(path, name: str, port: int) -> Home:
    return Home.create(path, Config(name=name, host="127.0.0.1", port=port))


def _state(home: Home) -> NodeState:
    return NodeState(home=home, limits=Limits(), sql=None, fair=None)  # type: ignore[arg-type]


def test_kept_agreement_equals_a_fresh_derivation_through_offer_accept_renewal_and_revoke(tmp_path):
    """After every document, from whichever connection it was written, the agreement the server
    keeps is the one peers.agreement derives afresh (state, offer, share, what it lets through)."""
    me, other = _home(tmp_path / "me", "Me", 1), _home(tmp_path / "other", "Other", 2)
    for a, b in ((me, other), (other, me)):
        peers.remember(a.db, b.descriptor())
    state = _state(me)
    writer = Home.open(me.path)  # another connection, as the CLI's would be

    def check() -> None:
        kept, audience = state._agreement_in(me.db, other.node_id)
        fresh = peers.agreement(me.db, me.node_id, other.node_id, today())
        assert kept == fresh and audience == Audience.of_agreement(fresh)
        assert state._agreement_in(me.db, other.node_id) == (kept, audience)  # kept, and still equal

    check()  # no documents: no agreement
    terms = Terms.default(today(), share=("profiles", "images"))
    offer = sign_document(new_offer(other.node_id, me.node_id, terms, other.descriptor(), now_ts(), None),
                          other.identity)
    peers.add_document(writer.db, other.node_id, offer, delivered=True, own=me.identity)
    check()  # pending
    accept = sign_document(new_response(Action.ACCEPT, me.node_id, other.node_id, document_hash(offer), now_ts()),
                           me.identity)
    peers.add_document(writer.db, other.node_id, accept, delivered=True, own=me.identity)
    check()  # active: profiles, images
    assert state._agreement_in(me.db, other.node_id)[0].active
    wider = Terms.default(today(), share=("profiles", "images", "ethnicity", "minors"))
    renewal = sign_document(new_offer(other.node_id, me.node_id, wider, other.descriptor(), now_ts(),
                                      document_hash(offer)), other.identity)
    peers.add_document(writer.db, other.node_id, renewal, delivered=True, own=me.identity)
    check()  # the renewal, not yet accepted
    accept2 = sign_document(new_response(Action.ACCEPT, me.node_id, other.node_id, document_hash(renewal),
                                         now_ts()), me.identity)
    peers.add_document(writer.db, other.node_id, accept2, delivered=True, own=me.identity)
    check()  # active again, wider
    assert state._agreement_in(me.db, other.node_id)[1] == Audience(ethnicity=True, minors=True)
    revoke = sign_document(new_response(Action.REVOKE, other.node_id, me.node_id, document_hash(renewal),
                                        now_ts()), other.identity)
    peers.add_document(writer.db, other.node_id, revoke, delivered=True, own=me.identity)
    check()  # revoked
    assert not state._agreement_in(me.db, other.node_id)[0].active


def test_kept_agreement_is_derived_again_on_another_day(tmp_path, monkeypatch):
    """An agreement lapses at its review date: what is kept is for one day only."""
    me, other = _home(tmp_path / "me", "Me", 1), _home(tmp_path / "other", "Other", 2)
    for a, b in ((me, other), (other, me)):
        peers.remember(a.db, b.descriptor())
    terms = Terms.default(today(), share=("profiles",))
    offer = sign_document(new_offer(other.node_id, me.node_id, terms, other.descriptor(), now_ts(), None),
                          other.identity)
    accept = sign_document(new_response(Action.ACCEPT, me.node_id, other.node_id, document_hash(offer), now_ts()),
                           me.identity)
    for doc in (offer, accept):
        peers.add_document(me.db, other.node_id, doc, delivered=True, own=me.identity)
    state = _state(me)
    assert state._agreement_in(me.db, other.node_id)[0].active
    later = dt.date.fromisoformat(terms.review_by) + dt.timedelta(days=1)
    import discnode.server as server
    monkeypatch.setattr(server, "today", lambda: later)
    kept = state._agreement_in(me.db, other.node_id)[0]
    assert not kept.active and kept == peers.agreement(me.db, me.node_id, other.node_id, later)


def test_a_bad_query_body_is_refused_only_after_the_agreement_is_checked(network):
    """The query is read before the agreement is (one trip to SQL), but refused in the old order:
    a node without an agreement gets 403 for any body, a partner 400 for a bad one."""
    a, b, c = network.node("A"), network.node("B"), network.node("C")
    network.agree(a, b)
    add_profiles(b, 2)
    for payload, status in (({"limit": "many"}, 400), ({"sort": 7}, 400), ({}, 200)):
        assert query(a, b, payload)[0] == status
    body, headers = signed(c.home.identity, b, "POST", QUERY, {"limit": "many"})
    assert send(b, "POST", QUERY, body, headers)[0] == 403
    network.agree(c, b, "match")  # an agreement for private matching only, not profiles
    status, reply = query(c, b, {"limit": "many"})
    assert status == 403 and "does not share profiles" in reply["error"]["message"]
    last = audit.entries(b.home.db)[-1]
    assert last["event"] == "refused" and last["detail"]["status"] == 403


def test_a_partner_is_served_at_once_after_a_revoke_and_a_new_agreement_under_load_of_audit_commits(network):
    """Served entries commit between the requests (each moves SQLite's data_version); the kept
    agreement still follows a revoke and a new agreement made by the command line at once."""
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    add_profiles(b, 2)
    for _ in range(5):
        assert query(a, b)[0] == 200
    b.cli("peer", "revoke", a.node_id)
    assert query(a, b)[0] == 403
    network.agree(a, b)
    assert query(a, b)[0] == 200


def _unicode_before(value):
    """The function as it was before its ASCII fast path."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_unicode_before(k): _unicode_before(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_unicode_before(v) for v in value]
    return value


_texts = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=()))
_details = st.recursive(st.none() | st.integers() | st.booleans() | _texts,
                        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_texts, inner, max_size=4),
                        max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(_details)
def test_audit_detail_unicode_fast_path_equals_the_old_one(detail):
    new, old = _unicode(detail), _unicode_before(detail)
    assert new == old and type(new) is type(old)


def test_audit_detail_unicode_still_mends_lone_surrogates():
    bad = b"caf\xe9".decode("utf-8", "surrogateescape")
    assert _unicode({"reason": bad, "ok": "ascii"}) == {"reason": "caf\\udce9", "ok": "ascii"}


def test_a_body_of_many_tls_records_is_read_whole_through_the_one_record_read_buffer(network, monkeypatch):
    """The daemon's TLS read buffer holds one record (17 KiB): a 200 kB body arrives in a dozen
    reads, whole (its Content-Digest is checked against what was read: a short read would be 401),
    and is judged on its content (400: a text filter that long is not a query)."""
    import asyncio.sslproto
    monkeypatch.setattr(asyncio.sslproto.SSLProtocol, "max_size", Limits().tls_read_buffer)  # as serve_forever
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    body, headers = signed(a.home.identity, b, "POST", QUERY, {"text": "x" * 200_000})
    assert len(body) > 200_000
    status, reply = send(b, "POST", QUERY, body, headers)
    assert status == 400, reply
    last = audit.entries(b.home.db)[-1]
    assert last["event"] == "refused" and last["detail"]["status"] == 400


def test_replay_cache_holds_a_nonce_in_under_60_bytes_and_still_knows_every_one():
    """replay.Nonces keeps 64-bit keyed digests in flat arrays: 200,000 nonces (150 s at 1,300
    requests a second) in under 12 MB (~41 bytes each), where pairs of strings took ~257 bytes each
    (51 MB) and digests in a set ~88; each is still a replay until its window ends, under any copy of
    its key ID, and a different nonce or key is not."""
    import tracemalloc

    from discnode.replay import Nonces
    nonces = Nonces()
    key_ids = [f"KEY{p:04d}-PARTNER-ID-OF-THIRTY-FIVE" for p in range(5)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(200_000):
        assert not nonces.seen(key_ids[i % 5], f"nonce-{i:016d}", 1000.0 + i // 1000, 0.0)
    nonces.unsaved.clear()  # written to the database at the next group commit; not held
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert held < 200_000 * 60, held
    copy = "".join(list(key_ids[3]))
    assert nonces.seen(copy, f"nonce-{150_003:016d}", 2000.0, 1000.5)  # a replay, under another copy of the ID
    assert not nonces.seen(key_ids[4], f"nonce-{150_003:016d}", 2000.0, 1000.5)  # same nonce, another key
    assert not nonces.seen(key_ids[0], f"nonce-{0:016d}", 3000.0, 1001.5)  # its window (second 1000) ended
    assert (key_ids[1], f"nonce-{2001:016d}") in nonces and (key_ids[1], f"nonce-{1001:016d}") not in nonces
    assert len(nonces) == 200_000 - 2000 + 2


def test_an_idle_keep_alive_connection_does_not_hold_the_page_it_was_sent(network):
    """aiohttp's request loop keeps a connection's last response while it waits for that
    connection's next request: every keep-alive connection held the page it was last sent (~53 KB
    for 50 records; 2.7 MB with 50 connections). A `Sent` reply lets go of its body once written;
    the partner still gets every byte, on a connection still open."""
    import asyncio
    import gc
    import json

    import aiohttp
    from aiohttp import web

    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    add_profiles(b, 3)
    body, headers = signed(a.home.identity, b, "POST", QUERY, {})

    async def one_query_then_idle() -> tuple[int, bytes, int, list[bytes]]:
        tls = aiohttp.Fingerprint(bytes.fromhex(b.home.tls_fingerprint))
        async with aiohttp.ClientSession() as session:
            async with session.post(b.url + QUERY, data=body, headers=headers, ssl=tls) as resp:
                status, raw = resp.status, await resp.read()
            await asyncio.sleep(0.2)  # the server's request loop, on this same loop, waits for the next request
            gc.collect()
            held = [r.body for r in gc.get_objects() if isinstance(r, web.Response) and isinstance(r.body, bytes)
                    and r.body.startswith(b'{"records":[')]
            return status, raw, len(b.running.connections.live), held

    status, raw, open_connections, held = b.loop.run(one_query_then_idle())
    assert status == 200 and len(json.loads(raw)["records"]) == 3
    assert open_connections == 1  # the connection is kept alive: the request loop still runs
    assert held == []


def _nonce(headers: dict[str, str]) -> str:
    return re.search(r';nonce="([^"]+)"', headers["Signature-Input"])[1]


def _saved(node, nonce: str) -> bool:
    return node.home.db.execute("SELECT count(*) FROM nonces WHERE nonce = ?", [nonce]).fetchone()[0] == 1


def test_a_lone_query_is_one_commit_holding_both_its_audit_entry_and_its_nonce(network):
    """A query arriving alone is one transaction on the writer thread, and when its reply arrives
    both its audit entry and its nonce are on disk (a restart refuses its replay:
    test_server.py::test_replayed_request_is_refused). The nonce used to be committed apart, at
    once: two transactions and two writer trips for every lone request."""
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    add_profiles(b, 1)
    state = b.running.runner.app[STATE]
    writes: list[object] = []
    write = state.sql.write

    async def counted(fn):
        writes.append(fn)
        return await write(fn)
    state.sql.write = counted
    for _ in range(3):
        before = len(audit.entries(b.home.db))
        body, headers = signed(a.home.identity, b, "POST", QUERY, {})
        writes.clear()
        assert send(b, "POST", QUERY, body, headers)[0] == 200
        assert len(writes) == 1
        assert _saved(b, _nonce(headers))
        assert len(audit.entries(b.home.db)) == before + 1 and audit.entries(b.home.db)[-1]["event"] == "served"
        time.sleep(2 * NONCE_LINGER)  # alone: nothing else is written after it either
        assert len(writes) == 1


def _count_trips(state, hold_first_write: float = 0.0) -> list[str]:
    """Count the node's trips to its SQL threads ("read", "write", in order), holding the first
    write back `hold_first_write` seconds if asked (so that requests queue for one commit)."""
    trips: list[str] = []
    read, write = state.sql.read, state.sql.write

    async def counted_read(fn):
        trips.append("read")
        return await read(fn)

    async def counted_write(fn):
        trips.append("write")
        if hold_first_write and trips.count("write") == 1:
            await asyncio.sleep(hold_first_write)
        return await write(fn)
    state.sql.read, state.sql.write = counted_read, counted_write
    return trips


def test_a_lone_query_reads_and_commits_its_audit_entry_in_one_trip_as_the_group_commit_would(network):
    """A query served alone reads its page and commits its audit entry (and its nonce) in one trip
    to the writer thread (NodeState.read_and_audit) where it made two (a reader, then the group
    commit). The same requests answered the other way (fuse_lone off: the path it replaces) get the
    same status, the same reply, and the same audit entry (event, peer, detail), refusals included;
    a refusal commits nothing of the one trip and is audited as ever."""
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    add_profiles(b, 12)
    state = b.running.runner.app[STATE]
    read, write = state.sql.read, state.sql.write  # put back at the end
    trips = _count_trips(state)
    payloads = [{}, {"limit": 5}, {"limit": 3, "sort": "name"}, {"gender": ["male"], "counts": True},
                {"text": "B1", "counts": True}, {"limit": 0}, {"sort": "no-such-sort"}, {"counts": "yes", "limit": 2}]
    try:
        for payload in payloads:
            seen = {}
            for fused in (True, False):
                state.fuse_reads = fused
                before = len(audit.entries(b.home.db))
                body, headers = signed(a.home.identity, b, "POST", QUERY, payload)
                trips.clear()
                status, reply = send(b, "POST", QUERY, body, headers)
                entries = audit.entries(b.home.db)
                assert len(entries) == before + 1, payload
                assert _saved(b, _nonce(headers))
                seen[fused] = (status, reply, {k: entries[-1][k] for k in ("event", "peer", "detail")}, list(trips))
            (status, reply, entry, fused_trips), (old_status, old_reply, old_entry, old_trips) = seen[True], seen[False]
            assert (status, reply, entry) == (old_status, old_reply, old_entry), payload
            if status == 200:
                assert entry["event"] == "served" and entry["detail"]["status"] == 200
                assert fused_trips == ["read", "write"] and old_trips == ["read", "read", "write"], payload
            else:  # refused inside the one trip: rolled back, then audited by the group commit
                assert status == 400 and entry["event"] == "refused", payload
                assert fused_trips == ["read", "write", "write"] and old_trips == ["read", "read", "write"], payload
    finally:
        state.sql.read, state.sql.write, state.fuse_reads = read, write, True


def test_a_nonce_whose_request_leaves_no_audit_entry_is_saved_and_saved_at_shutdown(network):
    """A refusal counted rather than written (the second over the rate limit from one address this
    minute) has no audit entry to carry its nonce: it is saved on its own within NONCE_LINGER, and
    at once if the node stops first."""
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    b.stop()
    b.limits = Limits(rate=0.001, burst=1)
    b.start()
    sent = []
    for _ in range(3):  # 200; 429 audited in full; 429 counted
        body, headers = signed(a.home.identity, b, "POST", QUERY, {})
        sent.append((send(b, "POST", QUERY, body, headers)[0], _nonce(headers)))
    assert [status for status, _ in sent] == [200, 429, 429]
    deadline = time.monotonic() + 5
    while not _saved(b, sent[2][1]) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(_saved(b, nonce) for _, nonce in sent)
    body, headers = signed(a.home.identity, b, "POST", QUERY, {})
    assert send(b, "POST", QUERY, body, headers)[0] == 429  # counted too
    b.stop()  # at once, before NONCE_LINGER has passed
    assert Home.open(b.cli.home).db.execute("SELECT count(*) FROM nonces WHERE nonce = ?",
                                            [_nonce(headers)]).fetchone()[0] == 1


def test_entries_queued_during_a_failed_audit_commit_are_still_committed(network):
    """A group commit fails (disk full, I/O error): its requests learn of it at once, and the entries
    queued while it was under way are committed by the same flush, not left waiting until some
    later request happens to start one (their requests would wait until their deadline)."""
    import asyncio
    import sqlite3

    b = network.node("B")
    state = b.running.runner.app[STATE]
    write = state.sql.write
    calls = 0

    async def failing_once(fn):
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0.3)  # the first commit under way while the second entry queues
            raise sqlite3.OperationalError("disk I/O error")
        return await write(fn)
    state.sql.write = failing_once
    before = len(audit.entries(b.home.db))

    async def scenario() -> tuple[BaseException | None, bool]:
        first = asyncio.ensure_future(state.audit("served", "", records=[]))
        await asyncio.sleep(0.1)
        second = asyncio.ensure_future(state.audit("served", "", records=["second"]))
        outcome = (await asyncio.gather(first, return_exceptions=True))[0]
        await asyncio.wait_for(second, 5)  # timed out here before the fix: nothing flushed it
        return outcome if isinstance(outcome, BaseException) else None, second.done()
    try:
        failure, committed = network.loop.run(scenario())
    finally:
        state.sql.write = write
    assert isinstance(failure, sqlite3.OperationalError) and committed
    entries = audit.entries(b.home.db)
    assert len(entries) == before + 1 and entries[-1]["detail"].get("records") == ["second"]


def test_a_request_that_changes_the_node_has_its_nonce_on_disk_before_its_change(network, monkeypatch):
    """A request whose handler writes (a match evaluation charges the partner's daily quota)
    commits that change before the group commit of its audit entry. A crash between the two
    (SIGKILL: a few milliseconds, held open here at exactly that point) must not leave the change
    on disk without the nonce: a restart reads its nonces from disk, so the same captured request,
    replayed while its signature is fresh, would be carried out a second time (the quota charged
    twice). The nonce goes in the same trip to the writer, committed before the change."""
    import asyncio
    import sqlite3
    import threading

    from discnode import oprf
    from discnode.match import b64
    from discnode.sqlthreads import SqlThreads
    from tests.test_match import _match_pair

    a, b = _match_pair(network, quota=5)
    release = threading.Event()
    real = SqlThreads.write

    async def holding(self, fn):  # the audit group commit waits: the crash's point
        if fn.__qualname__.startswith("NodeState._flush"):
            await asyncio.to_thread(release.wait, 10)
        return await real(self, fn)
    monkeypatch.setattr(SqlThreads, "write", holding)
    body, headers = signed(a.home.identity, b, "POST", "/v1/match/evaluate",
                           {"blinded": [b64(oprf.blind(b"x|1990-01-01")[1])]})
    replies: list = []
    sender = threading.Thread(target=lambda: replies.append(send(b, "POST", "/v1/match/evaluate", body, headers)))
    sender.start()
    try:
        on_disk = sqlite3.connect(b.home.db_path)  # what a crash would leave: committed rows only
        deadline = time.monotonic() + 10
        while not on_disk.execute("SELECT count(*) FROM match_quota").fetchone()[0]:
            assert time.monotonic() < deadline, "the quota was never charged"
            time.sleep(0.01)
        saved = on_disk.execute("SELECT count(*) FROM nonces WHERE nonce = ?", [_nonce(headers)]).fetchone()[0]
        on_disk.close()
    finally:
        release.set()
        sender.join(15)
    assert saved == 1
    assert replies and replies[0][0] == 200
    assert send(b, "POST", "/v1/match/evaluate", body, headers)[0] == 401  # and in this run


def _old_page(records: list[str], counts: Any = None) -> bytes:
    """The reply's body as the text path built it before page_body (records read as str)."""
    if counts is not None:
        text = '{"records":[' + ",".join(records) + '],"counts":' + json.dumps(counts) + "}"
    else:
        text = '{"records":[' + ",".join(records) + "]}"
    return text.encode("utf-8")


@given(st.lists(st.text(max_size=40), max_size=8), st.one_of(st.none(), st.dictionaries(
    st.text(alphabet="abcdefgh", max_size=5), st.integers(min_value=0, max_value=10**6), max_size=4)))
@settings(max_examples=200, deadline=None)
def test_page_body_from_bytes_equals_the_text_path_it_replaces(records, counts):
    """The page built from the records' UTF-8 bytes is byte for byte the text path's, encoded."""
    tail = b"]}" if counts is None else b'],"counts":' + json.dumps(counts).encode() + b"}"
    assert page_body([r.encode("utf-8") for r in records], tail) == _old_page(records, counts)


def test_queries_served_together_read_in_one_group_commit_and_answer_as_the_reader_path(network, monkeypatch):
    """Queries arriving together have their reads run in the group commit that writes their audit
    entries (NodeState.read_and_audit): one trip to a SQL thread each, the verification's, where
    they made two (a reader's for the read) plus their share of the commit. The same batches
    answered the other way (fuse_reads off: the path it replaces) get the same statuses, the same
    replies byte for byte (Content-Type included), and the same audit entries; a refused query in
    a batch (400) costs the others nothing. Each 200's body is the old text path's over the same
    records (store.search_served, as str)."""
    import aiohttp

    from discnode.query import Query

    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    add_profiles(b, 12)
    state = b.running.runner.app[STATE]
    read, write = state.sql.read, state.sql.write  # put back at the end
    trips = _count_trips(state, hold_first_write=0.3)  # the others queue for the next commit
    reads_in_commits: list[int] = []
    commit_batch = server._commit_batch

    def counted_batch(batch, *rest):
        reads_in_commits.append(sum(read is not None for read, _, _ in batch))
        return commit_batch(batch, *rest)
    monkeypatch.setattr(server, "_commit_batch", counted_batch)
    payloads = [{}, {"limit": 5}, {"limit": 3, "sort": "name"}, {"gender": ["male"], "counts": True},
                {"sort": "no-such-sort"}, {"text": "B1", "counts": True}, {"limit": 0}, {"limit": 2, "desc": True}]

    async def together(signed_requests):
        tls = aiohttp.Fingerprint(bytes.fromhex(b.home.tls_fingerprint))
        async with aiohttp.ClientSession() as session:
            async def one(body, headers):
                async with session.post(b.url + QUERY, data=body, headers=headers, ssl=tls) as resp:
                    return resp.status, resp.headers.get("Content-Type"), await resp.read()
            return await asyncio.gather(*(one(body, headers) for body, headers in signed_requests))

    seen = {}
    try:
        for fused in (True, False, True):
            state.fuse_reads = fused
            before = len(audit.entries(b.home.db))
            requests = [signed(a.home.identity, b, "POST", QUERY, p) for p in payloads]
            trips.clear()
            reads_in_commits.clear()
            replies = b.loop.run(together(requests))
            entries = audit.entries(b.home.db)[before:]
            assert all(_saved(b, _nonce(headers)) for _, headers in requests)
            made = sorted(json.dumps({k: e[k] for k in ("event", "peer", "detail")}, sort_keys=True) for e in entries)
            seen.setdefault(fused, []).append((replies, made, list(trips)))
            assert (max(reads_in_commits) > 1) if fused else not any(reads_in_commits)
    finally:
        state.sql.read, state.sql.write, state.fuse_reads = read, write, True
    (fused_replies, fused_entries, fused_trips), = seen[True][:1]
    old_replies, old_entries, old_trips = seen[False][0]
    assert fused_replies == old_replies and fused_entries == old_entries
    assert seen[True][1][:2] == seen[True][0][:2]
    statuses = [status for status, _, _ in fused_replies]
    assert statuses == [200, 200, 200, 200, 400, 200, 400, 200]
    assert len(fused_entries) == len(payloads)
    served = sum(status == 200 for status in statuses)
    # Fused: one reader trip (the verification) a request, no reader trip for any read.
    assert fused_trips.count("read") == len(payloads)
    assert old_trips.count("read") == len(payloads) + served + 2  # the refused two read too
    home = Home.open(b.home.path)
    me, day = home.node_id, today()
    audience = state._agreement_in(home.db, a.home.node_id)[1]
    for payload, (status, content_type, raw) in zip(payloads, fused_replies):
        if status != 200:
            continue
        assert content_type == "application/json; charset=utf-8"
        records, _ = store.search_served(home.db, Query.from_wire(payload), day, me, audience)
        counts = None
        if payload.get("counts"):
            from discnode.facets import count
            counts = count(home.db, Query.from_wire(payload), day, served_by=me, audience=audience).to_wire()
        assert raw == _old_page(records, counts), payload


def test_a_queued_read_whose_request_is_gone_is_not_run_nor_audited(tmp_path):
    """A query whose request was cancelled (its connection's deadline, the node stopping) while its
    read waited for the group commit reads nothing and writes no `served` entry; the entries and
    reads queued with it are written and run as ever."""
    import asyncio

    from discnode import store as st_

    db = st_.connect(tmp_path / "node.db")
    st_.migrate(db)
    ran: list[str] = []

    def read(name):
        def run(db_):
            ran.append(name)
            return name
        return run

    async def batch():
        loop = asyncio.get_running_loop()
        gone, kept, plain = loop.create_future(), loop.create_future(), loop.create_future()
        gone.cancel()
        entry = lambda result: ("served", "peer", {"what": result})  # noqa: E731
        return server._commit_batch([(read("gone"), entry, gone), (read("kept"), entry, kept),
                                     (None, ("refused", "peer", {"status": 400}), plain)], [], time.time(), db)

    outcomes = asyncio.run(batch())
    assert ran == ["kept"]
    assert outcomes == [(None, None), ("kept", None), (None, None)]
    assert [(e["event"], e["detail"]) for e in audit.entries(db)] == [("served", {"what": "kept"}),
                                                                      ("refused", {"status": 400})]


def test_a_sent_body_goes_to_tls_a_record_at_a_time_and_arrives_whole(home):
    """TLS encrypts into a memory buffer (OpenSSL's BIO) that keeps, for the connection's life, the
    size of the largest write it held: a whole 50-record page in one write left ~81 KB of TLS state
    on each keep-alive connection, a record at a time ~39 KB. A `Sent` body goes to TLS in writes of
    at most one record's data; the peer gets every byte, with its length; a HEAD reply has no body.
    (asyncio's TLS, whose transport can be watched; uvloop's is the same protocol in C.)"""
    import asyncio
    import asyncio.sslproto
    import hashlib

    import aiohttp
    from aiohttp import web

    from discnode.server import TLS_RECORD, Sent, tls_context
    from tests.nodes import free_port

    body = hashlib.shake_256(b"page").digest(70_000)  # four records and a bit
    writes: list[int] = []
    transport = asyncio.sslproto._SSLProtocolTransport
    plain_write, plain_writelines = transport.write, transport.writelines

    def write(self, data):
        if self._ssl_protocol._server_side:  # not the client's, in this same process
            writes.append(len(data))
        plain_write(self, data)

    def writelines(self, chunks):
        chunks = list(chunks)
        if self._ssl_protocol._server_side:
            writes.append(sum(map(len, chunks)))
        plain_writelines(self, chunks)

    async def page(request: web.Request) -> web.StreamResponse:
        return Sent(body=body, content_type="application/json")

    async def go() -> list[tuple[int, str | None, bytes, list[int]]]:
        app = web.Application()
        app.router.add_get("/page", page)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls_context(home)).start()
        out = []
        try:
            async with aiohttp.ClientSession() as session:
                for method in ("GET", "HEAD", "GET"):
                    writes.clear()
                    async with session.request(method, f"https://127.0.0.1:{port}/page",
                                               ssl=aiohttp.Fingerprint(bytes.fromhex(home.tls_fingerprint))) as resp:
                        out.append((resp.status, resp.headers.get("Content-Length"), await resp.read(), list(writes)))
        finally:
            await runner.cleanup()
        return out

    transport.write, transport.writelines = write, writelines
    try:
        replies = asyncio.run(go())
    finally:
        transport.write, transport.writelines = plain_write, plain_writelines
    (get, got, raw, sizes), (head, head_length, head_raw, head_sizes), again = replies
    assert (get, got, raw) == (200, str(len(body)), body) and again[:3] == (200, str(len(body)), body)
    assert len(sizes) == 5 and max(sizes) <= TLS_RECORD + 1024  # the first carries the headers too
    assert sum(sizes) > len(body)
    assert (head, head_length, head_raw) == (200, str(len(body)), b"") and max(head_sizes) < 1024
