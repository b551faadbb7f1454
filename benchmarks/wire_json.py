"""What the strict I-JSON loader (discnode/wirejson.py) costs against the lenient parse it replaced,
on the largest JSON a node reads: a query reply page of 200 signed records.

    python benchmarks/wire_json.py                 # prints a table, writes benchmarks/results/wire_json.json
    python benchmarks/wire_json.py --runs 1000 --out FILE.json

Times are process CPU time (the machines here are shared: wall-clock medians swing with the load,
CPU time much less), median of --runs, both parsers in the same run, alternating.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from discnode import wirejson  # noqa: E402


def page(records: int) -> bytes:
    record = json.loads((ROOT / "protocol" / "examples" / "query-reply.json").read_text())["records"][0]
    return json.dumps({"records": [dict(record, id=f"x{i:011d}") for i in range(records)]},
                      separators=(",", ":")).encode()


def lenient(body: bytes) -> Any:
    """The parse before: stdlib json, floats noted, nothing refused."""
    floats: list[str] = []
    return json.loads(body, parse_float=lambda text: floats.append(text) or float(text))


def measure(runs: int, body: bytes) -> dict[str, float]:
    timings: dict[str, list[float]] = {"lenient": [], "strict": []}
    parsers: dict[str, Callable[[bytes], Any]] = {"lenient": lenient, "strict": wirejson.loads_checked}
    for _ in range(runs):
        for name, parse in parsers.items():
            started = time.process_time()
            parse(body)
            timings[name].append(time.process_time() - started)
    return {name: statistics.median(values) * 1000 for name, values in timings.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Strict I-JSON loader against the lenient parse")
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "wire_json.json")
    args = parser.parse_args(argv)
    rows = []
    for records in (1, 50, 200):
        body = page(records)
        ms = measure(args.runs, body)
        rows.append({"records": records, "bytes": len(body), "lenient_ms": round(ms["lenient"], 3),
                     "strict_ms": round(ms["strict"], 3), "ratio": round(ms["strict"] / ms["lenient"], 2)})
    print("| records | bytes | lenient ms | strict ms | ratio |\n|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['records']} | {r['bytes']:,} | {r['lenient_ms']} | {r['strict_ms']} | {r['ratio']}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": args.runs, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
