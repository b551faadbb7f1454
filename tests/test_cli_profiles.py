"""Issue 2's must-shows, through the real CLI entry point against real node homes."""

import csv
import subprocess
import sys

import pytest
from PIL import Image

from discnode.synthetic import People
from tests.conftest import db_counts, jpeg_with_gps, png_bytes, tree_files

FULL = ["--first-name", "Jane", "--last-name", "Doe", "--gender", "female", "--ethnicity", "IC3",
        "--build", "athletic", "--dob", "1990-02-03", "--height-cm", "170", "--alias", "JD",
        "--alias", "Janey", "--tag", "shoplifting", "--tag", "violence", "--marks", "rose tattoo, left wrist",
        "--notes", "Uses a pushchair to conceal goods", "--last-seen", "2026-10-01",
        "--review-by", "2027-06-30", "--local-only"]


def test_init_refuses_to_overwrite(cli):
    before = (cli.home / "identity.key").read_bytes()
    r = cli("init", "--name", "Again", ok=False)
    assert "already holds a node" in r.err
    assert (cli.home / "identity.key").read_bytes() == before


def test_id_json_has_the_documented_keys(cli):
    info = cli("id", "--json").json
    assert {"node_id", "name", "url", "public_key", "tls_fingerprint"} <= info.keys()
    assert info["name"] == "Test BCRP" and info["url"] == "https://127.0.0.1:8443"


def test_add_then_show_round_trips_every_field(cli, tmp_path):
    photo = jpeg_with_gps(tmp_path / "photo.jpg")
    added = cli("profile", "add", *FULL, "--image", photo, "--json").json
    cli("profile", "edit", added["id"], "--incident", "2026-09-30|Boots, High St|theft|Took razors",
        "--exclusion", "2026-10-01|2027-10-01|all member premises")
    shown = cli("profile", "show", added["id"], "--json").json
    expected = {
        "first_name": "Jane", "last_name": "Doe", "gender": "female", "ethnicity": "IC3", "build": "athletic",
        "dob": "1990-02-03", "height_cm": 170, "aliases": ["JD", "Janey"], "tags": ["shoplifting", "violence"],
        "marks": "rose tattoo, left wrist", "notes": "Uses a pushchair to conceal goods",
        "last_seen": "2026-10-01", "review_by": "2027-06-30", "local_only": True, "status": "identified",
        "incidents": [{"date": "2026-09-30", "place": "Boots, High St", "type": "theft", "summary": "Took razors"}],
        "exclusion": {"from": "2026-10-01", "until": "2027-10-01", "where": "all member premises"},
    }
    for key, value in expected.items():
        assert shown[key] == value, key
    for key in ("id", "origin", "created", "image"):
        assert shown[key] == added[key]
    # The stored copy of the photo carries no EXIF or GPS.
    stored = next((cli.home / "images" / "full").rglob("*.jpg"))
    assert shown["image"] == stored.stem
    assert not Image.open(stored).getexif()
    assert b"SpyCam" not in stored.read_bytes()


def test_id_sought_with_age_range(cli):
    r = cli("profile", "add", "--id-sought", "--gender", "male", "--age-min", "20", "--age-max", "30",
            "--marks", "neck tattoo", "--json").json
    assert r["status"] == "id-sought" and (r["age_min"], r["age_max"]) == (20, 30)


@pytest.mark.parametrize("name, data, words", [
    ("truncated.png", png_bytes((200, 200))[:150], "damaged or truncated"),
    ("notes.jpg", b"Just some text pretending to be a JPEG.\n" * 20, "not a JPEG, PNG or WebP"),
    ("bomb.png", png_bytes((10_000, 10_000), "1"), "decompression bomb"),
    ("huge.jpg", b"\xff\xd8\xff" + b"\0" * (10 * 1024 * 1024), "limit"),
], ids=["truncated-png", "text-named-jpg", "decompression-bomb", "oversized"])
def test_bad_images_refused_and_leave_nothing(cli, tmp_path, name, data, words):
    path = tmp_path / name
    path.write_bytes(data)
    before = tree_files(cli.home / "images")
    r = cli("profile", "add", "--first-name", "A", "--last-name", "B", "--image", path, ok=False)
    assert words in r.err and "Traceback" not in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert db_counts(cli.home) == (0, 0)
    assert tree_files(cli.home / "images") == before
    # Adding it to an existing profile is refused too, and leaves that profile as it was.
    pid = cli("profile", "add", "--first-name", "A", "--last-name", "B", "--json").json["id"]
    before_show = cli("profile", "show", pid, "--json").json
    cli("image", "add", pid, path, ok=False)
    assert cli("profile", "show", pid, "--json").json == before_show
    assert db_counts(cli.home) == (1, 0)


@pytest.mark.parametrize("option, value", [("--ethnicity", "IC7"), ("--build", "tall"), ("--gender", "x"),
                                           ("--tag", "jaywalking"), ("--dob", "1990-13-40"),
                                           ("--dob", "2999-01-01")])
def test_unknown_codes_and_bad_values_refused(cli, option, value):
    r = cli("profile", "add", "--first-name", "A", "--last-name", "B", option, value, ok=False)
    assert value in r.err or "future" in r.err
    assert "Traceback" not in r.err
    assert db_counts(cli.home) == (0, 0)


def test_list_filters_and_full_text(cli):
    cli("profile", "add", "--first-name", "Alan", "--last-name", "Archer", "--gender", "male",
        "--ethnicity", "IC1", "--build", "slim", "--marks", "dragon tattoo")
    cli("profile", "add", "--first-name", "Beth", "--last-name", "Baker", "--gender", "female",
        "--ethnicity", "IC2", "--build", "heavy", "--alias", "Betty")
    names = lambda r: [x["last_name"] for x in r.json]  # noqa: E731
    assert names(cli("profile", "list", "drag", "--json")) == ["Archer"]
    assert names(cli("profile", "list", "betty", "--json")) == ["Baker"]
    assert names(cli("profile", "list", "--gender", "female", "--json")) == ["Baker"]
    assert names(cli("profile", "list", "--build", "slim", "--build", "heavy", "--json")) == ["Archer", "Baker"]
    assert names(cli("profile", "list", "--sort", "name", "--desc", "--json")) == ["Baker", "Archer"]
    assert names(cli("profile", "list", 'AND OR "(*', "--json")) == []  # FTS syntax is never passed through
    cli("profile", "list", "--ethnicity", "IC7", ok=False)


def test_edit_and_delete(cli, tmp_path):
    pid = cli("profile", "add", "--first-name", "A", "--last-name", "B", "--image",
              jpeg_with_gps(tmp_path / "p.jpg"), "--json").json["id"]
    r = cli("profile", "edit", pid, "--build", "heavy", "--add-tag", "drugs", "--json").json
    assert r["build"] == "heavy" and r["tags"] == ["drugs"]
    cli("profile", "edit", pid, "--build", "enormous", ok=False)
    assert cli("profile", "show", pid, "--json").json["build"] == "heavy"
    cli("profile", "delete", pid, "--yes")
    assert db_counts(cli.home) == (0, 0)
    assert tree_files(cli.home / "images") == set()
    assert "no profile" in cli("profile", "show", pid, ok=False).err


def _write_csv(path, rows):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["first_name", "last_name", "status", "gender", "ethnicity", "build",
                                           "dob", "age_min", "age_max", "height_cm", "aliases", "tags", "marks",
                                           "last_seen", "local_only", "minor_reason"])
        w.writeheader()
        w.writerows(rows)


def _synthetic_rows(n):
    people = People(seed=7)
    rows = []
    for _ in range(n):
        f = people.fields()
        rows.append({k: (";".join(v) if isinstance(v, list) else ("" if v is None else v))
                     for k, v in f.items() if k not in ("incidents", "exclusion", "notes")})
    return rows


def test_csv_of_1000_imports_in_one_transaction(cli, tmp_path):
    path = tmp_path / "people.csv"
    _write_csv(path, _synthetic_rows(1000))
    r = cli("profile", "import", path)
    assert "Imported 1000" in r.out
    assert db_counts(cli.home) == (1000, 0)


def test_csv_with_one_bad_row_imports_nothing_and_names_it(cli, tmp_path):
    rows = _synthetic_rows(1000)
    rows[636]["ethnicity"] = "IC7"
    path = tmp_path / "people.csv"
    _write_csv(path, rows)
    r = cli("profile", "import", path, ok=False)
    assert "row 637" in r.err and "IC7" in r.err and "nothing was imported" in r.err
    assert db_counts(cli.home) == (0, 0)


def test_json_import(cli, tmp_path):
    import json
    people = People(seed=3)
    path = tmp_path / "p.json"
    path.write_text(json.dumps([people.fields() for _ in range(20)]))
    assert cli("profile", "import", path, "--json").json["added"] == 20
    path.write_text("{not json")
    assert "not valid JSON" in cli("profile", "import", path, ok=False).err


def test_real_process_gives_one_line_error_not_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "discnode", "--home", str(tmp_path / "none"), "profile", "list"],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert "no node at" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args, words", [
    (["search", "--all", "--cursor", "abc"], "takes no --cursor"),
    (["search", "--timeout", "0"], "timeout must be"),
    (["search", "--limit", "201"], "limit must be"),
    (["search", "--contact-sheet", "sheet.jpg"], ".png"),
    (["address"], "give --host, --port, --public-url"),
    (["address", "--port", "70000"], "port 70000"),
    (["peer", "discover", "--timeout", "0.1"], "timeout must be"),
    (["peer", "add", "https://127.0.0.1:9", "--expect", "nonsense"], "not a node ID"),
    (["peer", "add", "https://127.0.0.1:9"], "--expect"),
    (["demo", "--profiles", "0"], "--profiles must be"),
])
def test_bad_options_are_refused_with_one_line_and_change_nothing(cli, args, words):
    before = (cli.home / "config.toml").read_text()
    r = cli(*args, ok=False)
    assert words in r.err and "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1
    assert (cli.home / "config.toml").read_text() == before
    assert db_counts(cli.home) == (0, 0)
