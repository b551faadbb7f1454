"""The searching side's first page: this code against an earlier commit's, page by page, in the same run.

    python benchmarks/first_page.py --base main                 # 30 partnerships x 600, 100 pages each
    python benchmarks/first_page.py --base main --loop uvloop   # on the loop the daemon searches on
    python benchmarks/first_page.py --base main --fast          # a small network, for a quick look

One network (localnet.py: every partnership a `discnode serve` process, all running this checkout's
code), and two searching processes, each a hub calling `dataview.search` in process with its own warm
client (as benchmarks/dataview.py's first-page rows do): one importing this checkout, the other the
`--base` commit's `discnode` (git archive, first on PYTHONPATH). They take turns, one page each, the
order swapped every round, so that both meet the same partners, the same moment, the same load.
For each page: the searching process's own CPU time (time.process_time: all its threads; the
partners' CPU is not in it) and wall time. Every page of both sides must be the same page (rows,
order, each partnership's status and count); a run where they differ stops.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import localnet  # noqa: E402
from localnet import pct  # noqa: E402


def worker(hub: str, loop: str) -> None:
    """One side: a line on stdin asks for one first page; a JSON line answers (CPU, wall, digest)."""
    import asyncio
    from dataclasses import replace

    from discnode import loops
    from discnode.client import PeerClient
    from discnode.dataview import search
    from discnode.home import Home
    from discnode.query import Query

    home = Home.open(Path(hub))
    query = Query(sort="last-seen", desc=True, limit=50)

    async def run() -> None:
        async with PeerClient(home.identity, timeout=30, limit=200) as client:
            for _ in range(3):  # warm: connections, validators, caches
                await search(home, query, client=client, timeout=30)
            while sys.stdin.readline().strip():
                cpu, started = time.process_time(), time.perf_counter()
                page = await search(home, query, client=client, timeout=30)
                wall, cpu = (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000
                shown = [page.results, [replace(s, ms=0).to_json() for s in page.peers], page.next_cursor is not None]
                digest = hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()
                bad = [s.name for s in page.peers if s.status != "ok"]
                print(json.dumps({"cpu_ms": cpu, "wall_ms": wall, "digest": digest, "bad": bad}), flush=True)

    loops.run(run(), loop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="the commit to compare against")
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--profiles", type=int, default=600)
    parser.add_argument("--pages", type=int, default=100, help="first pages per side")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="the searching processes' event loop (benchmarks/dataview.py measures on asyncio's)")
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--out", type=Path, default=localnet.ROOT / "benchmarks" / "results" / "first_page.json")
    parser.add_argument("--worker", nargs=2, metavar=("HUB", "LOOP"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0
    if args.fast:
        args.nodes, args.profiles, args.pages = 3, 30, 5
    commits = {ref: subprocess.run(["git", "rev-parse", "--short", ref], cwd=localnet.ROOT, check=True,
                                   capture_output=True, text=True).stdout.strip() for ref in (args.base, "HEAD")}
    loads = [("start", localnet.load())]
    with tempfile.TemporaryDirectory(prefix="discnode-first-page-") as tmp:
        base_tree = localnet.code_tree(args.base, Path(tmp) / "base")
        with localnet.running(Path(tmp), args.nodes, args.nodes, args.profiles, quiet=not args.fast) as net:
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            me = [sys.executable, __file__, "--worker", str(net.hub_small), args.loop]
            sides = {f"base ({commits[args.base]})": subprocess.Popen(
                         me, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/",
                         env={**env, "PYTHONPATH": str(base_tree)}),
                     f"this ({commits['HEAD']})": subprocess.Popen(
                         me, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/", env=env)}
            got: dict[str, list[dict]] = {name: [] for name in sides}
            try:
                loads.append(("before pages", localnet.load()))
                for i in range(args.pages):
                    digests = set()
                    for name in (list(sides) if i % 2 == 0 else list(sides)[::-1]):
                        proc = sides[name]
                        proc.stdin.write("go\n")
                        proc.stdin.flush()
                        line = json.loads(proc.stdout.readline())
                        if line["bad"]:
                            raise RuntimeError(f"{name}: partnerships not ok: {line['bad'][:3]}")
                        got[name].append(line)
                        digests.add(line["digest"])
                    if len(digests) != 1:
                        raise AssertionError(f"page {i}: the two codes gave different pages")
                loads.append(("after pages", localnet.load()))
            finally:
                for proc in sides.values():
                    proc.stdin.write("\n")
                    proc.stdin.flush()
                    proc.wait(30)
    rows = {name: {"pages": len(v),
                   "cpu_ms_p50": round(statistics.median(r["cpu_ms"] for r in v), 2),
                   "cpu_ms_mean": round(statistics.fmean(r["cpu_ms"] for r in v), 2),
                   "wall_ms_p50": round(pct([r["wall_ms"] for r in v], 50), 1),
                   "wall_ms_p95": round(pct([r["wall_ms"] for r in v], 95), 1)} for name, v in got.items()}
    base, this = rows.values()
    report = {"when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load": loads},
              "network": {"partnerships": args.nodes, "profiles_per_partnership": args.profiles},
              "loop": args.loop, "rows": rows, "same_pages": True,
              "ratios": {k: round(this[k] / base[k], 3) for k in ("cpu_ms_p50", "cpu_ms_mean", "wall_ms_p50")},
              "command": "python benchmarks/first_page.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    print(f"\nFirst page (50, by last seen) at {args.nodes} partnerships x {args.profiles}, in process, "
          f"{args.loop} loop; ms; CPU = the searching process's own")
    print(f"{'code':<24} {'pages':>5} {'CPU p50':>8} {'CPU mean':>9} {'wall p50':>9} {'wall p95':>9}")
    for name, r in rows.items():
        print(f"{name:<24} {r['pages']:>5} {r['cpu_ms_p50']:>8} {r['cpu_ms_mean']:>9} {r['wall_ms_p50']:>9} "
              f"{r['wall_ms_p95']:>9}")
    print(f"{'this/base':<24} {'':>5} {report['ratios']['cpu_ms_p50']:>8} {report['ratios']['cpu_ms_mean']:>9} "
          f"{report['ratios']['wall_ms_p50']:>9}")
    print(f"every page the same on both sides; load average (1, 5, 15 min): {loads}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
