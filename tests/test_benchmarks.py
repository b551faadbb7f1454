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
    assert [q["name"].split()[0] for q in report["queries"]] == ["1", "2", "3", "4", "4b", "4c", "4d", "5"]
    assert report["queries"][3]["note"] == report["queries"][4]["note"]  # both walks find every profile
    for q in report["queries"]:
        assert q["runs"] >= 1 and q["federated_p50_ms"] > 0 and q["baseline_p50_ms"] > 0
    assert set(report["first_page_by_nodes"]) == {"2", "3"}
    assert report["serving"]["queries"] > 0 and report["serving"]["peak_rss_mb_one_node"] > 0
    assert 0 < report["serving"]["rss_mb_before_load"] <= report["serving"]["peak_rss_mb_one_node"]
    assert report["queries"][3]["note"].endswith(" profiles")
    assert "ratio" in r.stdout and "First page" in r.stdout
