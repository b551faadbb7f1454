"""`discnode demo`, run as a new user would: a real process, real nodes, real Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time


def _env():
    return {**os.environ, "COLUMNS": "100"}


def test_demo_shows_three_dataviews_and_a_never_sees_c(tmp_path):
    r = subprocess.run([sys.executable, "-m", "discnode", "demo", "--once", "--dir", str(tmp_path / "demo"),
                        "--profiles", "5", "--json"], capture_output=True, text=True, timeout=120, env=_env())
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    out = r.stdout
    for name in ("Dataview of Northtown BCRP", "Dataview of Midcity BCRP", "Dataview of Southport BCRP"):
        assert name in out
    summary = json.loads(out[out.rindex("\n{"):])
    assert summary["A"]["sees"] == ["Midcity BCRP", "Northtown BCRP"]
    assert summary["B"]["sees"] == ["Midcity BCRP", "Northtown BCRP", "Southport BCRP"]
    assert summary["C"]["sees"] == ["Midcity BCRP", "Southport BCRP"]
    assert summary["a_sees_c_rows"] == 0 and summary["a_to_c_status"] == 403
    # Midcity sees Dale Wanderer in all three; the synthetic people never collide by chance.
    assert [(g["name"], len(g["partnerships"])) for g in summary["level_two"]] == [("Dale Wanderer", 3)]
    # Each node: its 5 + Dale; peers' shared rows exclude one local-only each; Southport does not
    # see the profile Midcity graded C (its agreement takes no conditional records).
    assert summary["A"]["rows"] == 6 + 5 and summary["B"]["rows"] == 6 + 5 + 5 and summary["C"]["rows"] == 6 + 4
    # Northtown and Midcity share ethnicity; Midcity and Southport withhold it from each other.
    assert summary["A"]["ethnicity_withheld_by"] == [] and summary["B"]["ethnicity_withheld_by"] == ["Southport BCRP"]
    assert summary["C"]["ethnicity_withheld_by"] == ["Midcity BCRP"]
    assert "ethnicity withheld by its terms" in out
    for node in "ABC":
        assert (tmp_path / "demo" / f"contact-sheet-{node}.png").stat().st_size > 10_000


def test_ctrl_c_stops_the_demo_cleanly_and_leaves_nothing(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "discnode", "demo", "--profiles", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    lines = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "Press Ctrl-C" in line:
            break
    text = "".join(lines)
    assert "Press Ctrl-C" in text, text
    ports = [int(u.rsplit(":", 1)[1]) for u in __import__("re").findall(r"https://127\.0\.0\.1:\d+", text)]
    homes = set(__import__("re").findall(r"--home (\S+)/[ABC] ", text))
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, rest
    assert "nothing left running" in rest and "Traceback" not in rest
    import socket
    for port in set(ports):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
    for home in homes:
        assert not os.path.exists(home), "the temporary demo folder must be removed"
