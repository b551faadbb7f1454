"""The benchmark runs end to end in its fast mode, so that it never rots. Figures are not asserted:
they belong to benchmarks/README.md, measured on a quiet machine."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_dataview_benchmark_fast_mode_writes_its_report(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "dataview.py"), "--fast", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [q["name"].split()[0] for q in report["queries"]] == ["1", "2", "3", "4", "4c", "4d", "5"]
    for q in report["queries"]:
        assert q["runs"] >= 1 and q["federated_p50_ms"] > 0 and q["baseline_p50_ms"] > 0
        assert "equal to both baselines" in q["note"] or "same bytes" in q["note"]
    assert 0 < int(report["queries"][3]["note"].split()[0]) <= 90  # of 3 nodes x 30, the shareable ones
    assert set(report["first_page_by_nodes"]) == {"2", "3"}
    for key in ("serving", "serving_pinned"):
        serving = report[key]
        assert serving["queries"] > 0 and serving["failed"] == 0 and serving["node_cpu_ms_per_query"] > 0
        assert serving["connections_established_max"] >= serving["connections"]
        assert 0 < serving["rss_mb_before"] <= serving["rss_mb_peak_under_load"] and serving["rss_samples"] > 0
    assert "ratio" in r.stdout and "First page" in r.stdout


def test_dataview_serving_only_fast_mode_serves_from_both_codes_with_failures_by_status(tmp_path):
    out = tmp_path / "serving.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "dataview.py"), "--serving-only", "--fast",
                        "--base", "HEAD", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads(out.read_text())
    assert len(report["summary"]) == 2  # this checkout and the base commit, round by round
    for label, runs in report["rounds"].items():
        for run in runs:
            for key in ("serving", "serving_pinned"):
                serving = run[key]
                assert serving["queries"] > 0 and serving["failed"] == sum(serving["failed_by_status"].values())
                assert serving["failed"] == 0  # every load process a partner within its fair share
                assert set(serving["node_cpu_ms_per_query_by_thread"]) == {"event loop", "other threads"}
    assert report["disclosure_index"]["entries"] > 0 and report["disclosure_index"]["rows"] > 0


def test_web_counts_benchmark_fast_mode_finds_one_request_per_partner_and_equal_answers(tmp_path):
    out = tmp_path / "web_counts.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "web_counts.py"), "--fast", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads(out.read_text())
    by_path = {(row["query"], row["path"]): row for row in report["rows"]}
    for query in ("first page", "gender=female, tag=shoplifting"):
        # 3 partnerships: a query and a facets request each, against one request carrying both (and,
        # on both paths alike, any second rounds of the first page: dataview.round_two).
        two, one = (by_path[(query, path)]["requests_per_page"] for path in ("two requests", "one request"))
        assert one >= 3 and two - one == 3
        assert by_path[(query, "one request")]["partners_cpu_ms"] >= 0


def test_serving_stages_times_each_stage_of_answered_queries(tmp_path):
    out = tmp_path / "stages.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "serving_stages.py"), "--profiles", "20",
                        "--seconds", "1", "--connections", "2", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["queries"] > 0 and report["failed"] == {}
    stages = report["stages_us_per_query"]
    for stage in ("verify_request (RFC 9421, reader)", "Ed25519 verify, libsodium (reader)",
                  "agreement check (reader)", "audit.append_many (writer)"):
        assert stages[stage]["us"] > 0, stage
    # every answered query verified once, and its page read once (warm or after a commit)
    assert 0.9 <= stages["Ed25519 verify, libsodium (reader)"]["calls"] <= 1.1
    searches = sum(v["calls"] for k, v in stages.items() if k.startswith("store.search_served"))
    assert 0.9 <= searches <= 1.1
    assert {"event loop", "sql-reader", "sql-writer"} <= set(report["threads_us_per_query"])


def test_first_walk_benchmark_fast_mode_compares_both_codes_on_equal_rows(tmp_path):
    out = tmp_path / "first_walk.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "first_walk.py"), "--fast", "--base", "HEAD",
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads(out.read_text())
    assert 0 < report["records"] <= 90 and set(report["sides"]) == {"this", "base"}  # the rows equal, or it stops
    for side in report["sides"].values():
        assert side["wall_p50_ms"] > 0 and side["workers_cpu_ms"] > 0 and side["total_cpu_ms"] > 0


def test_repeat_walk_benchmark_fast_mode_compares_both_codes_on_the_same_bytes(tmp_path):
    out = tmp_path / "repeat.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "repeat_walk.py"), "--fast", "--base", "HEAD",
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["same_bytes"] is True and len(report["sides"]) == 2  # the base commit and this checkout
    for side in report["sides"].values():
        assert side["walk_cpu"]["runs"] == 2 and side["walk_cpu"]["mean_ms"] > 0
        assert side["command_cpu"]["runs"] == 1 and side["command_cpu"]["mean_ms"] > 0
    assert "this/base" in r.stdout


def test_lone_request_benchmark_fast_mode_measures_both_codes_request_by_request(tmp_path):
    out = tmp_path / "lone.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "lone_request.py"), "--fast", "--base", "HEAD",
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [row["code"] for row in rows] == ["this", "base (HEAD)"]
    for row in rows:
        assert row["requests"] == 20 and 0 < row["p25_us"] <= row["median_us"] <= row["p75_us"]


def test_first_page_benchmark_fast_mode_compares_both_codes_page_by_page_on_the_same_pages(tmp_path):
    out = tmp_path / "first_page.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "first_page.py"), "--fast", "--base", "HEAD",
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["same_pages"] is True and len(report["rows"]) == 2  # the pages equal, or it stops
    for row in report["rows"].values():
        assert row["pages"] == 5 and row["cpu_ms_p50"] > 0 and row["wall_ms_p50"] > 0
    assert "this/base" in r.stdout


def test_disclosure_index_benchmark_fast_mode_compares_both_layouts_on_equal_answers(tmp_path):
    out = tmp_path / "disclosure_index.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "disclosure_index.py"), "--fast", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert set(report["rows"]) == {"old", "new"} and report["hot_profile_disclosures"] > 0
    assert all(row["catch_up_ms_per_entry"] > 0 and row["index_mb"] > 0 for row in report["rows"].values())
