"""A repeat walk's CPU, this code against another commit's, interleaved on one network.

    python benchmarks/repeat_walk.py --base main                 # 30 partnerships x 600 profiles
    python benchmarks/repeat_walk.py --base main --dir /tmp/net  # build once, reuse (a network is ~35 s)
    python benchmarks/repeat_walk.py --base main --fast          # a small network, for a quick look

Every partnership runs as a `discnode serve` process from this checkout. The searching hub walks
the whole merged Dataview (`dataview.walk`, sort by name, in the pages that side's code asks for:
200, or 1,000 of partners that list `query-limit-1000` since that feature; every record's verdict
already remembered by digest: the repeat walk of issue 16) in a child process whose code is this
checkout's or `--base`'s (`git archive`, first on PYTHONPATH), side by side, run by run. For each
walk: the hub's CPU for the walk (getrusage of the child, user + system, before and after), its CPU
to write the records as `search --all --json` does (output.json_ascii), the partners' CPU together
(/proc/PID/stat) and the wall-clock time. Then the whole command, `discnode search --all --json`,
its process's CPU (getrusage of the reaped child) and the partners'. Both sides' output must be
the same bytes (the sources' elapsed times set to 0), or the run stops. The machine is shared:
compare the CPU columns; wall-clock times move with everyone else's work.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import localnet  # noqa: E402

ROOT = localnet.ROOT
TICK = os.sysconf("SC_CLK_TCK")

#: Run in the child: walks, each timed by this process's own accounting; one JSON line a walk.
CHILD = r"""
import asyncio, dataclasses, hashlib, json, resource, sys, time
from discnode import output
from discnode.client import PeerClient
from discnode.dataview import Page, walk
from discnode.home import Home
from discnode.query import Query

def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime

async def main():
    hub, runs = Home.open(sys.argv[1]), int(sys.argv[2])
    query = Query(sort="name", limit=200)
    async with PeerClient(hub.identity, timeout=30) as client:
        await walk(hub, query, timeout=30, client=client)  # remembers every record's check
        for _ in range(runs):
            sys.stdin.readline()
            c0, w0 = cpu(), time.perf_counter()
            results, statuses = await walk(hub, query, timeout=30, client=client)
            c1, w1 = cpu(), time.perf_counter()
            statuses = [dataclasses.replace(s, ms=0) for s in statuses]
            ok = all(s.float_free for s in statuses)
            text = output.json_ascii(Page(results, statuses, None, query).to_json(), float_free=results if ok else [])
            c2 = cpu()
            bad = [s.name for s in statuses if s.status != "ok"]
            print(json.dumps({"walk_cpu": c1 - c0, "write_cpu": c2 - c1, "wall": w1 - w0, "records": len(results),
                              "bad": bad, "sha": hashlib.sha256(text.encode()).hexdigest()}), flush=True)
            del results, statuses, text

asyncio.run(main())
"""


def partners_cpu(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text[text.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def serve(paths: list[Path]) -> list[subprocess.Popen]:
    procs = [localnet._serve(path) for path in paths]
    for path, proc in zip(paths, procs):
        localnet._wait_for(path, proc, "port")
    return procs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="the commit to compare against")
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--profiles", type=int, default=600)
    parser.add_argument("--runs", type=int, default=12, help="walks a side")
    parser.add_argument("--commands", type=int, default=6, help="`search --all --json` commands a side")
    parser.add_argument("--dir", type=Path, default=None, help="a network built by an earlier run (else built)")
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "repeat-walk.json")
    args = parser.parse_args(argv)
    if args.fast:
        args.nodes, args.profiles, args.runs, args.commands = 3, 30, 2, 1
    sha = {ref: subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, check=True, capture_output=True,
                               text=True).stdout.strip() for ref in (args.base, "HEAD")}
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "discnode"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip())
    with tempfile.TemporaryDirectory(prefix="discnode-repeat-") as tmp:
        net = args.dir or Path(tmp) / "net"
        if not (net / "node000").exists():
            import network  # examples/network.py (localnet put it on the path)
            network.generate(net, args.nodes, args.profiles, base_port=network.free_ports(args.nodes + 1))
        hub = net / "node000"
        partners = sorted(p for p in net.glob("node[0-9][0-9][0-9]") if p != hub and p.is_dir())
        sides = {f"base ({sha[args.base]})": str(localnet.code_tree(args.base, Path(tmp) / "base")),
                 f"this ({sha['HEAD']}{'+' if dirty else ''})": str(ROOT)}
        procs = serve(partners)
        pids = [p.pid for p in procs]
        rows: dict[str, dict[str, list[float]]] = {s: {} for s in sides}
        shas: set[str] = set()
        try:
            children = {s: subprocess.Popen([sys.executable, "-c", CHILD, str(hub), str(args.runs)], cwd="/",
                                            env={**os.environ, "PYTHONPATH": code}, stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, text=True)
                        for s, code in sides.items()}
            for run in range(args.runs):
                for s in (list(sides) if run % 2 == 0 else list(sides)[::-1]):
                    p0 = partners_cpu(pids)
                    child = children[s]
                    assert child.stdin is not None and child.stdout is not None
                    child.stdin.write("go\n")
                    child.stdin.flush()
                    got = json.loads(child.stdout.readline())
                    time.sleep(0.1)  # the partners' audit commits inside the window
                    if got["bad"]:
                        raise SystemExit(f"{s}: sources not ok: {got['bad']}")
                    shas.add(got["sha"])
                    for name, value in (("walk_cpu", got["walk_cpu"]), ("write_cpu", got["write_cpu"]),
                                        ("wall", got["wall"]), ("partners_cpu", partners_cpu(pids) - p0)):
                        rows[s].setdefault(name, []).append(value)
            for child in children.values():
                child.wait(60)
            if len(shas) != 1:
                raise SystemExit(f"the sides wrote different bytes: {sorted(shas)}")
            for run in range(args.commands):
                for s in (list(sides) if run % 2 == 0 else list(sides)[::-1]):
                    c0, p0 = children_cpu(), partners_cpu(pids)
                    done = subprocess.run([localnet.DISCNODE, "--home", str(hub), "search", "--all", "--json"], cwd="/",
                                          capture_output=True, env={**os.environ, "PYTHONPATH": sides[s]})
                    c1 = children_cpu()
                    time.sleep(0.1)
                    if done.returncode != 0:
                        raise SystemExit(f"{s}: search --all failed: {done.stderr.decode()[-400:]}")
                    doc = json.loads(done.stdout)
                    for peer in doc["peers"]:
                        peer["ms"] = 0
                    shas.add("cmd:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest())
                    rows[s].setdefault("command_cpu", []).append(c1 - c0)
                    rows[s].setdefault("command_partners_cpu", []).append(partners_cpu(pids) - p0)
            if len({x for x in shas if x.startswith("cmd:")}) > 1:
                raise SystemExit("the sides' commands wrote different records")
        finally:
            localnet.stop(procs)
    report = {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "network": {"partnerships": len(partners), "profiles_per_partnership": args.profiles},
        "load": Path("/proc/loadavg").read_text().split()[:3],
        "sides": {s: {name: {"mean_ms": round(statistics.fmean(v) * 1000, 1), "p50_ms": round(localnet.pct(v, 50) * 1000, 1),
                             "runs": len(v)} for name, v in r.items()} for s, r in rows.items()},
        "same_bytes": True,
        "command": "python benchmarks/repeat_walk.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    names = [("walk_cpu", "hub CPU, walk"), ("write_cpu", "hub CPU, writing JSON"), ("partners_cpu", "partners' CPU"),
             ("wall", "walk wall (p50)"), ("command_cpu", "search --all --json, command CPU"),
             ("command_partners_cpu", "  its partners' CPU")]
    labels = list(sides)
    print(f"\n{len(partners)} partnerships x {args.profiles}; repeat walk; ms (means; wall: p50); same bytes on both sides")
    print(f"{'':<36}" + "".join(f"{label:>20}" for label in labels) + f"{'this/base':>11}")
    for key, title in names:
        if key not in rows[labels[0]]:
            continue
        figures = [report["sides"][label][key]["p50_ms" if key == "wall" else "mean_ms"] for label in labels]
        print(f"{title:<36}" + "".join(f"{f:>20}" for f in figures) + f"{figures[1] / max(figures[0], 0.1):>11.2f}")
    print(f"load average: {report['load']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
