"""benchmarks/cli_search.py and benchmarks/web.py run end to end in their fast modes, so that they
never rot. Figures are not asserted: they belong to benchmarks/README.md."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(script: str, out: Path) -> tuple[dict, str]:
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--fast", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(out.read_text()), r.stdout


def test_cli_search_benchmark_fast_mode_writes_its_report(tmp_path):
    report, stdout = run("cli_search.py", tmp_path / "cli.json")
    names = [row["name"] for row in report["rows"]]
    assert any("(served)" in n for n in names) and any("(cold CLI)" in n for n in names)
    assert all(row["p50_ms"] > 0 for row in report["rows"])
    assert report["keepalive"]["partner_audit_entries_during_idle"] == 0
    assert "ratios" in stdout


def test_web_benchmark_fast_mode_writes_its_report(tmp_path):
    report, stdout = run("web.py", tmp_path / "web.json")
    pages = [row for row in report["rows"] if "first page" in row["name"]]
    assert len(pages) == 2 and all(row["note"].split()[0] != "0" for row in pages)  # faces were shown
    assert set(report["ratios"]) == {"web_2_vs_central_profile_list", "web_3_vs_central_profile_list"}
