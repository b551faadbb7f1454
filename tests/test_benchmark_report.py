"""benchmarks/report.py runs end to end in its quick mode, so that it never rots. Figures are not
asserted: they belong to benchmarks/README.md."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_report_benchmark_quick_mode_writes_its_table_and_json(tmp_path):
    out = tmp_path / "report.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "report.py"), "--quick", "--out", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads(out.read_text())
    names = [row["name"] for row in report["rows"]]
    assert any("federated" in n for n in names) and any("central SQLite" in n for n in names)
    assert any(n.startswith("statistics from 6 partnerships") for n in names)
    assert all(row["p50_ms"] > 0 and len(row["load_1min"]) == 2 for row in report["rows"])
    assert set(report["ratios"]) >= {"report_federated_vs_central_command", "statistics_asked_vs_local"}
    assert "ratios" in r.stdout and "CPU p50" in r.stdout
