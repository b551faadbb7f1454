"""Retention: a ceiling per node (config.toml [retention]), profiles near it in the review queue, a
review keeps one past it, and what passes it unreviewed is deleted, by `discnode retention --apply`
and by the daemon's run, audited."""

from __future__ import annotations

import datetime as dt

import pytest

from discnode import audit, retention
from discnode.home import Home, today
from discnode.synthetic import portrait
from tests.conftest import db_counts, tree_files


def _ago(months: int, days: int = 0) -> str:
    return (retention.add_months(today(), -months) + dt.timedelta(days=days)).isoformat()


def _person(cli, last: str, incident: str | None = None, image=None) -> str:
    args = ["profile", "add", "--first-name", "Pat", "--last-name", last, "--json"]
    if image:
        args += ["--image", str(image)]
    pid = cli(*args).json["id"]
    if incident:
        cli("profile", "edit", pid, "--incident", f"{incident}|High Street|theft|took razors")
    return pid


@pytest.fixture
def people(cli, tmp_path):
    photo = tmp_path / "old.jpg"
    photo.write_bytes(portrait(7))
    return {"old": _person(cli, "Old", _ago(25), photo),      # past the 24-month ceiling
            "near": _person(cli, "Near", _ago(24, 10)),       # reaches it in 10 days
            "recent": _person(cli, "Recent", _ago(2)),
            "new": _person(cli, "New")}                      # no incident: counted from creation


def _events(home_path, event):
    h = Home.open(home_path)
    try:
        return [e for e in audit.entries(h.db) if e["event"] == event]
    finally:
        h.close()


def test_a_profile_past_the_ceiling_is_deleted_by_retention_apply(cli, people):
    images_before = tree_files(cli.home / "images")
    assert images_before
    dry = cli("retention", "--dry-run", "--json").json
    assert [p["id"] for p in dry["profiles"]] == [people["old"]]
    assert dry["profiles"][0]["basis"] == "last incident" and dry["profiles"][0]["since"] == _ago(25)
    assert db_counts(cli.home)[0] == 4  # the dry run changed nothing
    done = cli("retention", "--apply", "--json").json
    assert [p["id"] for p in done["deleted"]] == [people["old"]] and done["failed"] == []
    assert cli("profile", "show", people["old"], ok=False).code != 0
    assert db_counts(cli.home) == (3, 0)
    assert tree_files(cli.home / "images") == set()  # its photo went with it
    (expired,) = _events(cli.home, "retention-expired")
    assert expired["detail"]["id"] == people["old"] and expired["detail"]["months"] == 24
    assert expired["actor"].startswith("os:") and expired["detail"]["source"] == "command"
    assert [e["detail"]["id"] for e in _events(cli.home, "profile-deleted")] == [people["old"]]
    assert cli("retention", "--apply", "--json").json["deleted"] == []  # nothing more to do


def test_profiles_nearing_the_ceiling_are_in_the_review_queue_and_a_review_keeps_them(cli, people):
    queue = [i for i in cli("review", "--json").json if i["kind"] == "retention"]
    assert [(i["ref"], i["overdue"]) for i in queue] == [(people["old"], True), (people["near"], False)]
    assert queue[1]["due"] == retention.add_months(dt.date.fromisoformat(_ago(24, 10)), 24).isoformat()
    inbox = [i for i in cli("inbox", "--json").json if i["subject"] == "retention"]
    assert {i["id"] for i in inbox} == {people["old"], people["near"]} and {i["kind"] for i in inbox} == {"review"}
    cli("profile", "review", people["old"], "--reason", "court case pending: keep", "--days", "90")
    queue = [i["ref"] for i in cli("review", "--json").json if i["kind"] == "retention"]
    assert queue == [people["near"]]
    listed = cli("retention", "--days", "366", "--json").json["profiles"]
    kept = next(p for p in listed if p["id"] == people["old"])
    assert kept["until"] == (today() + dt.timedelta(days=90)).isoformat() and kept["held"] is True
    assert cli("retention", "--apply", "--json").json["deleted"] == []
    (reviewed,) = _events(cli.home, "profile-reviewed")
    assert reviewed["detail"]["reason"] == "court case pending: keep"


def test_the_node_config_sets_the_ceiling(cli, people):
    config = cli.home / "config.toml"
    assert "[retention]" in config.read_text() and "profiles_months = 24" in config.read_text()
    config.write_text(config.read_text().replace("profiles_months = 24", "profiles_months = 1"))
    gone = {p["id"] for p in cli("retention", "--dry-run", "--json").json["profiles"]}
    assert gone == {people["old"], people["near"], people["recent"]}
    for bad, words in (("profiles_months = 0", "not 1 to 120"), ('profiles_months = "2"', "whole numbers")):
        config.write_text(config.read_text().replace("profiles_months = 1", bad))
        r = cli("retention", "--json", ok=False)
        assert words in r.err and "config" in r.err
        config.write_text(config.read_text().replace(bad, "profiles_months = 1"))
    assert db_counts(cli.home)[0] == 4


def test_address_change_keeps_the_retention_settings(cli):
    config = cli.home / "config.toml"
    config.write_text(config.read_text().replace("profiles_months = 24", "profiles_months = 36"))
    cli("address", "--port", "9443")
    assert "profiles_months = 36" in config.read_text()


def test_the_daemon_run_deletes_what_passed_the_ceiling_once_an_hour(cli, people):
    h = Home.open(cli.home)
    try:
        schedule = retention.Schedule(every=3600)
        outcome = schedule.run_if_due(h, 1000.0)
        assert outcome is not None and [s.id for s in outcome.deleted] == [people["old"]]
        assert schedule.run_if_due(h, 1000.0 + 3599) is None  # not due yet
        assert schedule.run_if_due(h, 1000.0 + 3600) is not None
        (expired,) = [e for e in audit.entries(h.db) if e["event"] == "retention-expired"]
        assert expired["detail"]["source"] == "daemon" and expired["actor"] == ""
    finally:
        h.close()


@pytest.mark.parametrize("args, words", [
    (["--apply", "--dry-run"], "not both"),
    (["--days", "-1"], "--days must be 0 to 366"),
])
def test_bad_retention_requests_change_nothing(cli, people, args, words):
    r = cli("retention", *args, ok=False)
    assert words in r.err
    assert db_counts(cli.home)[0] == 4


@pytest.mark.parametrize("day, months, expected", [
    ("2024-01-31", 1, "2024-02-29"), ("2023-01-31", 1, "2023-02-28"), ("2024-11-15", 24, "2026-11-15"),
    ("2024-03-31", -1, "2024-02-29"), ("2024-12-01", 1, "2025-01-01")])
def test_months_are_calendar_months_clamped_to_the_month(day, months, expected):
    assert retention.add_months(dt.date.fromisoformat(day), months).isoformat() == expected


def test_the_ceiling_counts_from_the_latest_of_incident_creation_and_exclusion():
    assert retention.ceiling("2020-05-01T10:00:00Z", None, None, 24, None)[2].isoformat() == "2022-05-01"
    assert retention.ceiling("2020-05-01T10:00:00Z", "2021-01-10", None, 24, None)[:2] == ("last incident", "2021-01-10")
    assert retention.ceiling("2020-05-01T10:00:00Z", "2021-01-10", "2022-06-30", 24, None)[2].isoformat() == "2024-06-30"
    assert retention.ceiling("2020-05-01T10:00:00Z", None, None, 24, "2030-01-01")[2].isoformat() == "2030-01-01"
    assert retention.ceiling("2020-05-01T10:00:00Z", None, None, 24, "2021-01-01")[2].isoformat() == "2022-05-01"


def test_a_profile_past_the_ceiling_is_deleted_and_its_recipients_are_told(network):
    """Retention deletes through the library's delete path: the partner that received the profile
    gets an erasure notice, drops what it kept of it, and returns a receipt; one that never
    received it is not told."""
    from discnode import notices

    a, b, c = network.node("A"), network.node("B"), network.node("C")
    network.agree(a, b)
    network.agree(a, c)
    old = _person(a.cli, "Old", _ago(30))
    b.cli("search", "--all", "--partnership", a.node_id)  # B receives (and checks) A's profile
    h = Home.open(b.cli.home)
    try:
        held = h.db.execute("SELECT count(*) FROM checked_records WHERE origin = ? AND profile_id = ?",
                            [a.node_id, old]).fetchone()[0]
    finally:
        h.close()
    assert held >= 1
    done = a.cli("retention", "--apply", "--json").json
    (deleted,) = done["deleted"]
    assert deleted["id"] == old and deleted["recipients"] == [b.node_id]
    assert deleted["notified"] == [b.node_id] and deleted["receipts"] == [b.node_id]
    h = Home.open(a.cli.home)
    try:
        (sent,) = notices.sent_about(h.db, a.node_id, old)
        deleted_entry = [e for e in audit.entries(h.db) if e["event"] == "profile-deleted"][-1]
    finally:
        h.close()
    assert (sent["to"], sent["kind"], sent["receipt"]) == (b.node_id, "erasure", True)
    assert deleted_entry["detail"]["notify"] == [b.node_id]
    h = Home.open(b.cli.home)
    try:
        assert h.db.execute("SELECT count(*) FROM checked_records WHERE origin = ? AND profile_id = ?",
                            [a.node_id, old]).fetchone()[0] == 0
    finally:
        h.close()
    assert [e["peer"] for e in _events(a.cli.home, "notice-sent")] == [b.node_id]  # C never received it
    text = a.cli("retention", "--apply").out
    assert "Deleted 0 profile(s)" in text
