"""`profile import`: stable keys, repeats, incidents, exclusions and images, all-or-nothing in short
steps, and a node that keeps serving while a long import runs."""

import csv
import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from discnode.profiles import CSV_COLUMNS
from discnode.synthetic import People
from tests.conftest import db_counts, jpeg_with_gps, png_bytes, tree_files
from tests.nodes import send, signed
from tests.test_server import QUERY, add_profiles

DISCNODE = [sys.executable, "-m", "discnode"]
README = Path(__file__).parent.parent / "README.md"


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def synthetic(n: int, *, refs: bool = True, seed: int = 5) -> list[dict[str, str]]:
    people = People(seed=seed)
    rows = []
    for i in range(n):
        fields = people.fields()
        row = {k: (";".join(v) if isinstance(v, list) else ("" if v is None else str(v)))
               for k, v in fields.items() if k not in ("incidents", "exclusion")}
        if refs:
            row["ref"] = f"NT-{i:06d}"
        rows.append(row)
    return rows


def listed(cli) -> list[dict]:
    return cli("profile", "list", "--limit", "200", "--json").json


def test_reimport_with_refs_updates_rather_than_duplicates(cli, tmp_path):
    rows = synthetic(5)
    path = write_csv(tmp_path / "members.csv", rows)
    first = cli("profile", "import", path, "--json").json
    assert first["added"] == 5
    ids = {p["first_name"]: p["id"] for p in listed(cli)}
    rows[2]["notes"] = "Seen again on the High St"
    write_csv(path, rows)
    again = cli("profile", "import", path, "--json").json
    assert (again["added"], again["updated"], again["unchanged"]) == (0, 1, 4)
    after = listed(cli)
    assert len(after) == 5 and {p["first_name"]: p["id"] for p in after} == ids  # same profiles, same IDs
    assert [p["notes"] for p in after if p["id"] == ids[rows[2]["first_name"]]] == ["Seen again on the High St"]


def test_rows_without_ref_that_repeat_a_profile_are_not_added_twice(cli, tmp_path):
    rows = synthetic(4, refs=False)
    path = write_csv(tmp_path / "members.csv", rows + [dict(rows[0])])  # a repeat inside the file too
    assert cli("profile", "import", path, "--json").json["duplicates"] == 1
    again = cli("profile", "import", path, "--json").json
    assert (again["added"], again["duplicates"]) == (0, 5)
    assert len(listed(cli)) == 4


def test_a_ref_given_twice_in_one_file_is_refused(cli, tmp_path):
    rows = synthetic(3)
    rows[2]["ref"] = rows[0]["ref"]
    r = cli("profile", "import", write_csv(tmp_path / "m.csv", rows), ok=False)
    assert "row 3" in r.err and "also on row 1" in r.err
    assert db_counts(cli.home) == (0, 0)


def test_import_carries_incidents_exclusions_and_images(cli, tmp_path):
    (tmp_path / "photos").mkdir()
    jpeg_with_gps(tmp_path / "photos" / "jane.jpg")
    (tmp_path / "jane2.png").write_bytes(png_bytes((40, 50)))
    row = {"ref": "NT-1", "first_name": "Jane", "last_name": "Doe", "gender": "female", "ethnicity": "IC1",
           "build": "slim", "incidents": "2026-10-01|Boots, High St|theft|Took razors\n"
                                         "2026-10-08|Co-op, Mill Rd|abuse|Shouted at staff",
           "exclusion": "2026-10-02|2027-10-01|all members", "images": "photos/jane.jpg; jane2.png"}
    r = cli("profile", "import", str(write_csv(tmp_path / "m.csv", [row])), "--json", ok=None)
    assert r.code == 0, r.err
    result = r.json
    assert result["images"] == 2
    (profile,) = listed(cli)
    shown = cli("profile", "show", profile["id"], "--json").json
    assert [i["type"] for i in shown["incidents"]] == ["theft", "abuse"]
    assert shown["exclusion"] == {"from": "2026-10-02", "until": "2027-10-01", "where": "all members"}
    assert len(shown["images"]) == 2 and shown["image"] in shown["images"]
    assert db_counts(cli.home) == (1, 2)
    # JSON carries the same, typed.
    doc = [{"ref": "NT-2", "first_name": "Rita", "last_name": "Red", "incidents": [
        {"date": "2026-09-01", "place": "Tesco", "type": "theft", "summary": "Wine"}],
        "exclusion": {"from": "2026-09-02", "until": "2027-09-01", "where": "Tesco"}, "images": ["jane2.png"]}]
    (tmp_path / "m.json").write_text(json.dumps(doc))
    assert cli("profile", "import", str(tmp_path / "m.json"), "--json").json["added"] == 1


@pytest.mark.parametrize("name", ["../outside.png", "/etc/passwd", "photos/../../outside.png"])
def test_image_paths_outside_the_import_folder_are_refused(cli, tmp_path, name):
    folder = tmp_path / "import"
    folder.mkdir()
    (tmp_path / "outside.png").write_bytes(png_bytes())
    before = tree_files(cli.home)
    rows = synthetic(3)
    rows[1]["images"] = name
    r = cli("profile", "import", write_csv(folder / "m.csv", rows), ok=False)
    assert "row 2" in r.err and "not inside the import file's folder" in r.err
    assert db_counts(cli.home) == (0, 0) and tree_files(cli.home) == before


def test_a_bad_image_on_a_late_row_leaves_no_image_files(cli, tmp_path):
    (tmp_path / "ok.png").write_bytes(png_bytes())
    (tmp_path / "bad.png").write_bytes(b"not an image")
    before = tree_files(cli.home)
    rows = synthetic(3)
    rows[0]["images"], rows[2]["images"] = "ok.png", "bad.png"
    r = cli("profile", "import", write_csv(tmp_path / "m.csv", rows), ok=False)
    assert "row 3" in r.err and "nothing was imported" in r.err
    assert db_counts(cli.home) == (0, 0) and tree_files(cli.home) == before


def test_every_import_column_is_documented_in_the_readme():
    text = README.read_text()
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, re.M))
    assert set(CSV_COLUMNS) <= documented, set(CSV_COLUMNS) - documented


def test_import_progress_moves_while_rows_are_checked(home, tmp_path):
    from discnode.importer import import_file
    path = write_csv(tmp_path / "m.csv", synthetic(600))
    seen: list[tuple[str, int, int]] = []
    import_file(home, path, progress=lambda phase, done, total: seen.append((phase, done, total)))
    checking = [done for phase, done, _ in seen if phase == "checking"]
    assert checking[:3] == [1, 2, 3] and checking[-1] == 600  # from the first row, not after all of them
    first_write = next(i for i, (phase, *_) in enumerate(seen) if phase == "writing")
    assert all(phase != "writing" for phase, *_ in seen[:first_write])
    assert seen[-1] == ("writing", 600, 600)


# --- long imports, in real processes ------------------------------------------------------------


def _staged(home: Path) -> int:
    with sqlite3.connect(home / "discnode.db") as db:
        return db.execute("SELECT count(*) FROM profiles WHERE batch IS NOT NULL").fetchone()[0]


def _write_lock_held(home: Path) -> bool:
    db = sqlite3.connect(home / "discnode.db", timeout=0, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        db.close()


def _start_import(home: Path, path: Path) -> subprocess.Popen[str]:
    # Ctrl-C as a terminal delivers it: a shell that runs the suite in the background without job
    # control (a CI script's `&`) hands its children SIGINT ignored, and Python then keeps it ignored,
    # so the import would run to the end and exit 0 (the one failed CI run of stop 20).
    return subprocess.Popen([*DISCNODE, "--home", str(home), "profile", "import", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_until(proc: subprocess.Popen[str], check, bound: float = 300) -> None:
    """Poll `check` until it holds, while the import runs (the bound only stops a broken test)."""
    end = time.monotonic() + bound
    while not check():
        assert proc.poll() is None, f"the import ended first: {proc.communicate()}"
        assert time.monotonic() < end, "the import never got there"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("big") / "big.csv", synthetic(12_000, refs=False, seed=9))


def test_ctrl_c_during_import_says_in_one_line_that_nothing_was_written(cli, big_csv):
    proc = _start_import(cli.home, big_csv)
    _wait_until(proc, lambda: _staged(cli.home) > 0)  # in the writing phase: rows staged
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "Import stopped: nothing was written." and "Traceback" not in err
    assert listed(cli) == [] and _staged(cli.home) == 0


def test_killed_import_leaves_no_profiles_and_the_next_import_clears_it(cli, big_csv, tmp_path):
    proc = _start_import(cli.home, big_csv)
    _wait_until(proc, lambda: _staged(cli.home) > 0)
    proc.kill()
    proc.wait(30)
    assert _staged(cli.home) > 0  # the killed import's rows are on disk...
    assert listed(cli) == []      # ...and nobody sees them
    assert cli("profile", "import", write_csv(tmp_path / "small.csv", synthetic(2, seed=1)), "--json").json["added"] == 2
    assert _staged(cli.home) == 0 and len(listed(cli)) == 2


def test_peer_queries_are_answered_during_a_long_import(network, big_csv):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    add_profiles(b, 3)
    proc = _start_import(b.cli.home, big_csv)
    answers: list[tuple[int, int]] = []
    try:
        _wait_until(proc, lambda: _write_lock_held(b.cli.home))  # the import is writing
        while proc.poll() is None and len(answers) < 200:
            body, headers = signed(a.home.identity, b, "POST", QUERY, {"limit": 200})
            status, reply = send(b, "POST", QUERY, body, headers)
            answers.append((status, len(reply.get("records", [])) if isinstance(reply, dict) else -1))
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert answers and all(status == 200 for status, _ in answers), answers
    # Answered, again and again, while the import was writing: its rows not yet visible, so only
    # B's own 3. (A node whose event loop waits on the import's write lock answers once, late.)
    assert answers.count((200, 3)) >= 3, answers
    body, headers = signed(a.home.identity, b, "POST", QUERY, {"limit": 200})
    assert send(b, "POST", QUERY, body, headers) [1]["records"].__len__() == 200  # and then all of them


def test_serving_loop_never_waits_on_a_held_write_lock(network):
    """Another process (an import, a CLI command) holds SQLite's write lock: a partner's query waits
    for its audit entry, but the node's event loop does not, and answers other requests meanwhile."""
    import threading
    from concurrent.futures import Future

    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    add_profiles(b, 1)
    lock = sqlite3.connect(b.cli.home / "discnode.db", isolation_level=None, check_same_thread=False)
    lock.execute("BEGIN IMMEDIATE")
    query: Future = Future()
    try:
        body, headers = signed(a.home.identity, b, "POST", QUERY, {})
        threading.Thread(target=lambda: query.set_result(send(b, "POST", QUERY, body, headers)), daemon=True).start()
        time.sleep(0.5)  # the query is in, waiting for its audit commit
        assert not query.done()
        with socket_to(b) as tls:  # meanwhile, the descriptor is served at once
            tls.sendall(b"GET /.well-known/discnode HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = tls.recv(100)
        assert reply.startswith(b"HTTP/1.1 200"), reply
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    status, reply = query.result(timeout=60)
    assert status == 200 and len(reply["records"]) == 1


def socket_to(node):
    import socket
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", int(node.url.rsplit(":", 1)[1])), timeout=8)
    return ctx.wrap_socket(raw)
