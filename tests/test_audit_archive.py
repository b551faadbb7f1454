"""The audit log's retention: old entries archived to a file with a signed head, removed from the
live table, and `audit --verify` still verifying the live chain from that head, the archive file,
and the heads partners witnessed before the archive; tampering with the archive is caught."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import stat

import pytest

from discnode import audit, auditarchive, cli_retention, store
from discnode.home import Home, today


def _shift_clock(monkeypatch, years: int) -> None:
    """`discnode retention` runs as if `years` from now: every entry written today is then old."""
    monkeypatch.setattr(cli_retention, "today", lambda: today() + dt.timedelta(days=366 * years))


@pytest.fixture
def ab(network):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    for i in range(3):
        a.cli("profile", "add", "--first-name", f"Ann{i}", "--last-name", "Archive")
    a.cli("audit", "--checkpoint")  # B now witnesses a head of A's log: it will fall in the archive
    a.cli("search")
    return a, b


def _archive(a, monkeypatch):
    _shift_clock(monkeypatch, 3)
    return a.cli("retention", "--apply", "--json").json["audit_archived"]


def test_archived_audit_entries_still_verify(ab, monkeypatch):
    a, b = ab
    length = a.cli("audit", "--limit", "1000", "--json").json[-1]["seq"]
    archived = _archive(a, monkeypatch)
    # Everything but the last entry (the clock is three years on: the profiles went too, audited).
    assert archived["first"] == 1 and archived["upto"] > length
    path = a.cli.home / auditarchive.FOLDER / archived["file"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    live = a.cli("audit", "--limit", "1000", "--json").json
    assert live[0]["seq"] == archived["upto"] + 1  # the archived entries left the table
    assert live[-1]["event"] == "audit-archived" and live[-1]["detail"]["upto"] == archived["upto"]
    report = a.cli("audit", "--verify", "--json").json
    assert report["ok"] is True and report["archives"] == 1 and report["findings"] == []
    assert [p["status"] for p in report["partners"]] == ["checked"]
    assert report["partners"][0]["witnessed"] <= length  # B's head was checked against the archive file
    a.cli("profile", "add", "--first-name", "Later", "--last-name", "Entry")  # the live chain goes on
    assert a.cli("audit", "--verify", "--json").json["ok"] is True
    assert "archived" in a.cli("audit", "--verify").out
    # Moved to offline storage: the live log still verifies from the signed head; the archive is not checked.
    path.rename(a.cli.home / "elsewhere.jsonl")
    report = a.cli("audit", "--verify", "--json").json
    assert report["ok"] is True and any("not in" in u for u in report["unchecked"])


def _rewrite(path, change):
    lines = path.read_text().splitlines()
    header, entries = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    change(header, entries)
    path.write_text("\n".join(json.dumps(x) for x in [header, *entries]) + "\n")


def test_tampering_with_the_archive_is_detected(ab, monkeypatch):
    a, _ = ab
    archived = _archive(a, monkeypatch)
    path = a.cli.home / auditarchive.FOLDER / archived["file"]
    original = path.read_text()

    def edit_detail(header, entries):
        entries[2]["detail"]["id"] = "aaaaaaaaaaaa"

    def edit_and_rehash(header, entries):
        entries[2]["detail"]["id"] = "aaaaaaaaaaaa"
        prev = header["prev"]
        for e in entries:
            e["prev"] = prev
            e["hash"] = prev = audit._entry_hash(prev, e["seq"], e["ts"], e["event"], e["peer"],
                                                 json.dumps(e["detail"]), e["actor"])

    def drop_one(header, entries):
        del entries[1]

    for change, words in ((edit_detail, "entry 3 was changed"), (edit_and_rehash, "does not end at the signed head"),
                          (drop_one, "entry 2 is missing")):
        path.write_text(original)
        _rewrite(path, change)
        r = a.cli("audit", "--verify", "--json", ok=False)
        report = json.loads(r.out)
        assert report["ok"] is False and report["chain"]["ok"] is True  # the live chain itself is intact
        (finding,) = report["findings"]
        assert finding["kind"] == "archive" and words in finding["message"], finding
    path.write_text(original)
    assert a.cli("audit", "--verify", "--json").json["ok"] is True


def test_a_forged_archive_record_is_caught(ab, monkeypatch):
    """Removing live entries needs an archive record; one not signed by the node is reported."""
    a, _ = ab
    _archive(a, monkeypatch)
    h = Home.open(a.cli.home)
    try:
        (row,) = auditarchive.archives(h.db)
        forged = {**row["checkpoint"], "issued_at": "2020-01-01T00:00:00Z"}  # signature no longer matches
        h.db.execute("DROP TRIGGER IF EXISTS audit_archives_guard")
        with store.write(h.db) as conn:
            conn.execute("UPDATE audit_archives SET checkpoint = ?", [json.dumps(forged)])
    finally:
        h.close()
    report = json.loads(a.cli("audit", "--verify", "--json", ok=False).out)
    assert any(f["kind"] == "forged" and "archive" in f["message"] for f in report["findings"])


def test_entries_no_archive_holds_cannot_be_deleted(ab, monkeypatch):
    a, _ = ab
    archived = _archive(a, monkeypatch)
    h = Home.open(a.cli.home)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            h.db.execute("DELETE FROM audit WHERE seq = ?", [archived["upto"] + 1])
    finally:
        h.close()


def test_nothing_to_archive_changes_nothing(ab, monkeypatch):
    a, _ = ab
    before = a.cli("audit", "--limit", "1000", "--json").json
    assert a.cli("retention", "--apply", "--json").json["audit_archived"] is None  # all entries are new
    assert not (a.cli.home / auditarchive.FOLDER).exists()
    after = a.cli("audit", "--limit", "1000", "--json").json
    assert after[: len(before)] == before


def test_audit_months_zero_never_archives(ab, monkeypatch):
    a, _ = ab
    config = a.cli.home / "config.toml"
    config.write_text(config.read_text().replace("audit_months = 24", "audit_months = 0"))
    _shift_clock(monkeypatch, 30)
    assert a.cli("retention", "--apply", "--json").json["audit_archived"] is None
    assert os.listdir(a.cli.home).count(auditarchive.FOLDER) == 0
