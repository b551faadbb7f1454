"""Editing a profile after it is written: identifying an ID-sought person, images, incidents,
exclusions and aliases. Through the real CLI against a real node home; every change re-signs the
record and is audited, and a bad number, hash or alias changes nothing."""

import pytest

from discnode import audit, profiles
from discnode.errors import Conflict
from discnode.home import Home
from discnode.signing import verify_document
from tests.conftest import db_counts, jpeg_with_gps, tree_files


def _audit_events(cli):
    h = Home.open(cli.home)
    try:
        return [(e["event"], e["detail"]) for e in audit.entries(h.db)]
    finally:
        h.close()


def _verified(cli, record):
    h = Home.open(cli.home)
    try:
        verify_document(record, h.identity.public_key)
    finally:
        h.close()


@pytest.fixture
def sought(cli, tmp_path):
    """An ID-sought profile with two images, an incident and an exclusion notice."""
    r = cli("profile", "add", "--id-sought", "--gender", "female", "--age-min", "25", "--age-max", "35",
            "--marks", "red coat", "--image", jpeg_with_gps(tmp_path / "a.jpg"), "--json").json
    cli("image", "add", r["id"], jpeg_with_gps(tmp_path / "b.jpg", (90, 60)))
    cli("profile", "edit", r["id"], "--incident", "2026-09-30|Boots, High St|theft|Took razors",
        "--exclusion", "2026-10-01|2027-10-01|all member premises")
    return cli("profile", "show", r["id"], "--json").json


def test_an_id_sought_profile_becomes_identified_in_one_edit(cli, sought):
    pid = sought["id"]
    r = cli("profile", "edit", pid, "--status", "identified", "--first-name", "Rita", "--last-name", "Red",
            "--dob", "1990-01-01", "--reason", "named by PC Smith", "--json").json
    assert (r["status"], r["first_name"], r["last_name"], r["dob"]) == ("identified", "Rita", "Red", "1990-01-01")
    assert (r["age_min"], r["age_max"]) == (None, None)
    shown = cli("profile", "show", pid, "--json").json
    for key in ("images", "image", "incidents", "exclusion", "created", "marks", "gender"):
        assert shown[key] == sought[key], key
    _verified(cli, r)
    event, detail = _audit_events(cli)[-1]
    assert event == "profile-identified" and detail["id"] == pid and detail["reason"] == "named by PC Smith"
    assert detail["source"] == "administrator"
    assert [x["id"] for x in cli("profile", "list", "rita", "--json").json] == [pid]


def test_identify_is_one_library_call_for_proposals_too(cli, sought):
    h = Home.open(cli.home)
    try:
        record = profiles.identify(h, sought["id"], first_name="Rita", last_name="Red", dob="1990-01-01",
                                   source="proposal", peer="AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD", reason="confirmed")
        assert record["status"] == "identified"
        with pytest.raises(Conflict):
            profiles.identify(h, sought["id"], first_name="Other", last_name="Name")
    finally:
        h.close()
    event, detail = _audit_events(cli)[-1]
    assert (event, detail["source"], detail["reason"]) == ("profile-identified", "proposal", "confirmed")


def test_identifying_without_names_is_refused_and_changes_nothing(cli, sought):
    r = cli("profile", "edit", sought["id"], "--status", "identified", "--dob", "1990-01-01", ok=False)
    assert "first and a last name" in r.err and len(r.err.strip().splitlines()) == 1
    assert cli("profile", "show", sought["id"], "--json").json == sought


def test_remove_an_image_and_choose_the_primary(cli, sought):
    pid = sought["id"]
    first, second = sought["images"]
    assert sought["image"] == first
    r = cli("image", "primary", pid, "2", "--json").json
    assert r["image"] == second
    _verified(cli, r)
    r = cli("image", "remove", pid, second[:10], "--json").json
    assert r["image"] == first  # the primary went, so the remaining one is primary
    _verified(cli, r)
    shown = cli("profile", "show", pid, "--json").json
    assert shown["images"] == [first] and shown["incidents"] == sought["incidents"]
    assert not any(second in f for f in tree_files(cli.home / "images"))
    cli("image", "remove", pid, "1")
    assert cli("profile", "show", pid, "--json").json["image"] is None
    assert db_counts(cli.home) == (1, 0) and tree_files(cli.home / "images") == set()
    events = [e for e, _ in _audit_events(cli)]
    assert events[-3:] == ["image-primary", "image-removed", "image-removed"]


@pytest.mark.parametrize("args, words", [
    (["image", "remove", "{pid}", "3"], "has 2 image(s), numbered 1 to 2"),
    (["image", "remove", "{pid}", "0"], "has 2 image(s)"),
    (["image", "primary", "{pid}", "abcdef0123"], "matches 0"),
    (["image", "primary", "{pid}", "zz"], "not an image number"),
    (["profile", "edit", "{pid}", "--remove-incident", "2"], "incident 2: this profile has 1 incident(s)"),
    (["profile", "edit", "{pid}", "--edit-incident", "5|2026-01-01|x|theft|y"], "incident 5"),
    (["profile", "edit", "{pid}", "--edit-incident", "one|2026-01-01|x|theft|y"], "expected 'N|"),
    (["profile", "edit", "{pid}", "--edit-incident", "1|2026-01-01|x|picnic|y"], "picnic"),
    (["profile", "edit", "{pid}", "--remove-alias", "Nobody"], "no alias 'Nobody'"),
    (["profile", "edit", "{pid}", "--rename-alias", "Nobody|Somebody"], "no alias 'Nobody'"),
    (["profile", "edit", "{pid}", "--rename-alias", "no-bar"], "expected 'OLD|NEW'"),
    (["profile", "edit", "{pid}", "--remove-exclusion", "--exclusion", "2026-01-01|2026-02-01|x"], "not both"),
    (["image", "remove", "nosuchprofile", "1"], "no profile"),
])
def test_bad_numbers_hashes_and_aliases_are_one_line_and_change_nothing(cli, sought, args, words):
    pid = sought["id"]
    before_files, before_audit = tree_files(cli.home / "images"), len(_audit_events(cli))
    r = cli(*[a.replace("{pid}", pid) for a in args], ok=False)
    assert words in r.err and "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1
    assert cli("profile", "show", pid, "--json").json == sought
    assert tree_files(cli.home / "images") == before_files and len(_audit_events(cli)) == before_audit


def test_edit_and_remove_incidents_exclusions_and_aliases(cli, sought):
    pid = sought["id"]
    cli("profile", "edit", pid, "--add-alias", "Red Coat", "--add-alias", "RC",
        "--incident", "2026-10-05|Co-op, Mill Rd|abuse|Shouted at staff")
    r = cli("profile", "edit", pid, "--edit-incident", "1|2026-09-30|Boots, High Street|theft|Took razors (two packs)",
            "--rename-alias", "RC|R.C.", "--json").json
    assert r["incidents"][0]["place"] == "Boots, High Street" and r["incidents"][1]["type"] == "abuse"
    assert r["aliases"] == ["Red Coat", "R.C."]
    r = cli("profile", "edit", pid, "--remove-incident", "1", "--remove-alias", "Red Coat", "--remove-exclusion",
            "--json").json
    assert [i["place"] for i in r["incidents"]] == ["Co-op, Mill Rd"]
    assert r["aliases"] == ["R.C."] and r["exclusion"] is None
    _verified(cli, r)
    assert cli("profile", "show", pid, "--json").json["images"] == sought["images"]
    edits = [d["fields"] for e, d in _audit_events(cli) if e == "profile-edited"]
    assert edits[-1] == ["aliases", "exclusion", "incidents"]
    r = cli("profile", "edit", pid, "--remove-exclusion", ok=False)
    assert "no exclusion notice" in r.err
