"""Subject access: a bundle (JSON, a self-contained HTML page, the photos) of everything the node
holds about a person, with every disclosure of it to partners; by ID or by name and date of birth."""

from __future__ import annotations

import json
import stat

import pytest

from discnode import audit, auditarchive
from discnode.home import Home
from discnode.synthetic import portrait

HOSTILE = '<script>alert("x")</script>'


@pytest.fixture
def shared(network, tmp_path):
    """A holds one profile (photo, incident, alias, date of birth), shared with B, which searched it."""
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    photo = tmp_path / "p.jpg"
    photo.write_bytes(portrait(3))
    pid = a.cli("profile", "add", "--first-name", "Jo", "--last-name", "Bloggs", "--dob", "1990-04-02",
                "--alias", "Joey B", "--notes", HOSTILE, "--image", str(photo), "--json").json["id"]
    a.cli("profile", "edit", pid, "--incident", "2026-10-01|Market Street|theft|took two bottles of gin")
    found = b.cli("search", "Bloggs", "--json").json
    assert [r["id"] for r in found["results"]] == [pid]
    return a, b, pid


def _bundle(out):
    return json.loads((out / "subject-access.json").read_text()), (out / "subject-access.html").read_text()


def test_a_subject_access_bundle_lists_a_disclosure_to_b_and_holds_the_profile_images_and_incidents(shared, tmp_path):
    a, b, pid = shared
    out = tmp_path / "sar"
    written = a.cli("subject-access", pid, "--out", str(out), "--json").json
    assert written["profiles"] == [pid] and written["disclosures"] >= 1
    answer, html = _bundle(out)
    (person,) = answer["profiles"]
    assert person["profile"]["id"] == pid and person["profile"]["aliases"] == ["Joey B"]
    assert person["profile"]["incidents"][0]["summary"] == "took two bottles of gin"
    (image,) = person["images"]
    assert (out / "images" / f"{image['sha256']}.jpg").read_bytes()[:2] == b"\xff\xd8"
    to_b = [d for d in person["disclosures"] if d["to"] == b.node_id]
    assert to_b and to_b[0]["to_name"] == "B BCRP" and to_b[0]["revision"] == person["profile"]["revision"]
    assert to_b[0]["when"] and to_b[0]["audit_entry"] > 0
    assert [h["event"] for h in person["history"]][:2] == ["profile-added", "profile-edited"]
    assert person["notices"] == []  # not corrected since B received it
    assert all(h["by"].startswith("os:") for h in person["history"])
    # The page: readable, self-contained, every value escaped.
    assert b.node_id in html and "B BCRP" in html and "took two bottles of gin" in html
    assert "data:image/jpeg;base64," in html and "http://" not in html and "https://" not in html
    assert HOSTILE not in html and "&lt;script&gt;" in html
    for f in [out / "subject-access.json", out / "subject-access.html", *(out / "images").iterdir()]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    h = Home.open(a.cli.home)
    try:
        (entry,) = [e for e in audit.entries(h.db) if e["event"] == "subject-access"]
    finally:
        h.close()
    assert entry["detail"]["ids"] == [pid] and entry["detail"]["to"] == str(out.resolve())
    assert entry["actor"].startswith("os:")


def test_a_correction_after_a_disclosure_is_in_the_answer_with_its_receipt(shared, tmp_path):
    a, b, pid = shared
    a.cli("profile", "edit", pid, "--notes", "corrected: the earlier notes were wrong")
    out = tmp_path / "corrected"
    a.cli("subject-access", pid, "--out", str(out))
    answer, html = _bundle(out)
    (notice,) = answer["profiles"][0]["notices"]
    assert (notice["to"], notice["kind"], notice["receipt"]) == (b.node_id, "rectification", True)
    assert "rectification" in html


def test_by_name_and_date_of_birth_finds_the_profile_by_name_or_alias(shared, tmp_path):
    a, _, pid = shared
    other = a.cli("profile", "add", "--first-name", "Joey", "--last-name", "B", "--dob", "1990-04-02",
                  "--json").json["id"]
    a.cli("profile", "add", "--first-name", "Jo", "--last-name", "Bloggs", "--dob", "1991-04-02")  # another person
    out = tmp_path / "by-name"
    got = a.cli("subject-access", "--name", "  jo   BLOGGS ", "--dob", "1990-04-02", "--out", str(out), "--json").json
    assert got["profiles"] == [pid]
    out2 = tmp_path / "by-alias"
    got = a.cli("subject-access", "--name", "Joey B", "--dob", "1990-04-02", "--out", str(out2), "--json").json
    assert sorted(got["profiles"]) == sorted([pid, other])  # several matches: all of them, each named
    assert len(_bundle(out2)[0]["profiles"]) == 2


def test_disclosures_stay_in_the_answer_after_the_audit_log_is_archived(shared, tmp_path):
    a, b, pid = shared
    a.cli("search", "anything")  # an entry after the served one, so that the served one is archived
    h = Home.open(a.cli.home)
    try:
        served = [e["seq"] for e in audit.entries(h.db) if e["event"] == "served" and e["peer"] == b.node_id
                  and pid in e["detail"].get("records", "")]
        archived = auditarchive.archive(h, "9999-01-01T00:00:00Z")  # every entry but the last
        assert served and archived is not None and archived.upto >= max(served)
        assert not [e for e in audit.entries(h.db) if e["seq"] in served]
    finally:
        h.close()
    out = tmp_path / "after"
    a.cli("subject-access", pid, "--out", str(out))
    (person,) = _bundle(out)[0]["profiles"]
    assert b.node_id in {d["to"] for d in person["disclosures"]}
    # Who added and edited it, from the archive file.
    assert [(h["event"], h["archived"]) for h in person["history"]][:2] == [("profile-added", True),
                                                                           ("profile-edited", True)]


@pytest.mark.parametrize("args, words", [
    (["{pid}", "--name", "Jo Bloggs", "--dob", "1990-04-02"], "not both"),
    ([], "give a profile ID"),
    (["--name", "Jo Bloggs"], "give a profile ID"),
    (["--name", "Jo Bloggs", "--dob", "02/04/1990"], "not a date"),
    (["--name", "Nobody Here", "--dob", "1990-04-02"], "no profile on this node"),
    (["nosuchprofil"], "no profile"),
])
def test_bad_subject_access_requests_write_nothing(shared, tmp_path, args, words):
    a, _, pid = shared
    out = tmp_path / "never"
    r = a.cli("subject-access", *[x.format(pid=pid) for x in args], "--out", str(out), ok=False)
    assert words in r.err
    assert not out.exists()


def test_subject_access_refuses_a_folder_that_is_not_empty(shared, tmp_path):
    a, _, pid = shared
    out = tmp_path / "full"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    r = a.cli("subject-access", pid, "--out", str(out), ok=False)
    assert "not empty" in r.err and sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    a.cli("subject-access", pid, "--out", str(empty))
    assert (empty / "subject-access.html").exists()
