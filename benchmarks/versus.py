"""This code against an earlier commit's, side by side on one network, in the same run.

    python benchmarks/versus.py --base 88f3a3a            # 30 partnerships x 600 profiles
    python benchmarks/versus.py --base main --fast         # a small network, for a quick look

The machine is shared, so wall-clock figures move with everyone else's work; CPU time much less.
This benchmark builds one network (localnet.py: every partnership a `discnode serve` process) with
two hubs agreed with the same partnerships, runs one hub's daemon and CLI from this checkout and
the other's from `--base` (extracted with `git archive` and put first on PYTHONPATH), and
interleaves them run by run: the same partners, the same moment, the same load. For each whole
command or page it reports wall-clock p50/p95 and the CPU time spent, from the kernel's own
accounting: the command's process (getrusage of the reaped child), the hub daemon and every
process under it (its check workers; /proc/PID/stat, user + system, children included), and the
30 partnerships' daemons together. The load average is reported before and after each row.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.cookiejar
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import localnet  # noqa: E402
from localnet import DISCNODE, pct  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # after "pid (comm) "


def tree_cpu(pid: int) -> float:
    """CPU seconds of pid and every live process under it (user + system, reaped children included)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields:
                parents[int(entry)] = int(fields[1])
    tree, frontier = {pid}, [pid]
    while frontier:
        p = frontier.pop()
        for child, parent in parents.items():
            if parent == p and child not in tree:
                tree.add(child)
                frontier.append(child)
    total = 0
    for p in tree:
        fields = _stat(p)
        if fields:  # utime stime cutime cstime: fields 14-17 of stat, 11-14 after the name
            total += sum(int(x) for x in fields[11:15])
    return total / TICK


def own_cpu(pids: list[int]) -> float:
    total = 0
    for p in pids:
        fields = _stat(p)
        if fields:
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Side:
    label: str
    hub: Path
    env: dict[str, str]
    daemon: subprocess.Popen | None = None
    wall: dict[str, list[float]] = field(default_factory=dict)
    cli_cpu: dict[str, list[float]] = field(default_factory=dict)
    hub_cpu: dict[str, list[float]] = field(default_factory=dict)
    partner_cpu: dict[str, list[float]] = field(default_factory=dict)
    opener: urllib.request.OpenerDirector | None = None
    origin: str = ""

    def command(self, *argv: str) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run([DISCNODE, "--home", str(self.hub), *argv], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "120", **self.env}, cwd="/")
        if done.returncode != 0:
            raise RuntimeError(f"{self.label}: discnode {' '.join(argv)} failed: {done.stderr.decode()[-400:]}")
        return done


def measure(side: Side, name: str, partners: list[int], action) -> None:  # type: ignore[no-untyped-def]
    assert side.daemon is not None
    hub0, partners0, cli0 = tree_cpu(side.daemon.pid), own_cpu(partners), children_cpu()
    started = time.perf_counter()
    action()
    wall = (time.perf_counter() - started) * 1000
    time.sleep(0.05)  # let the daemon finish its bookkeeping (audit commit) inside the window
    side.wall.setdefault(name, []).append(wall)
    side.cli_cpu.setdefault(name, []).append((children_cpu() - cli0) * 1000)
    side.hub_cpu.setdefault(name, []).append((tree_cpu(side.daemon.pid) - hub0) * 1000)
    side.partner_cpu.setdefault(name, []).append((own_cpu(partners) - partners0) * 1000)


def start_daemon(side: Side) -> subprocess.Popen:
    log = open(side.hub / "serve.log", "a")
    proc = subprocess.Popen([DISCNODE, "--home", str(side.hub), "serve", "--no-advertise", "--rate-limit", "1000000"],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **side.env}, cwd="/")
    localnet._wait_for(side.hub, proc, "socket")
    return proc


def login(side: Side) -> None:
    url = json.loads(subprocess.run([DISCNODE, "--home", str(side.hub), "ui", "--json"], check=True, cwd="/",
                                    capture_output=True, env={**os.environ, **side.env}).stdout)["url"]
    jar = http.cookiejar.CookieJar()
    side.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    side.opener.open(url).read()
    side.origin = url.split("/login")[0]


def get_page(side: Side, path: str) -> None:
    assert side.opener is not None
    with side.opener.open(side.origin + path) as reply:
        body = reply.read()
    if b'class="card"' not in body and not path.endswith(".json"):
        raise RuntimeError(f"{side.label}: {path} showed no faces")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="the commit to compare against")
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--profiles", type=int, default=600)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--walk-runs", type=int, default=6)
    parser.add_argument("--only", default="search,walk,web", help="rows to run: search, walk, web")
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--out", type=Path, default=localnet.ROOT / "benchmarks" / "results" / "versus.json")
    args = parser.parse_args(argv)
    if args.fast:
        args.nodes, args.profiles, args.runs, args.walk_runs = 3, 30, 3, 2
    only = set(args.only.split(","))
    base_commit = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=localnet.ROOT, check=True,
                                 capture_output=True, text=True).stdout.strip()
    head_commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=localnet.ROOT, check=True,
                                 capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "discnode"], cwd=localnet.ROOT,
                                capture_output=True, text=True).stdout.strip())
    loads: list[tuple[str, str]] = [("start", localnet.load())]
    with tempfile.TemporaryDirectory(prefix="discnode-versus-") as tmp:
        old_tree = Path(tmp) / "base"
        old_tree.mkdir()
        archive = subprocess.run(["git", "archive", args.base, "discnode", "protocol"], cwd=localnet.ROOT,
                                 check=True, capture_output=True).stdout
        with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
            tar.extractall(old_tree, filter="data")
        with localnet.running(Path(tmp), args.nodes, args.nodes, args.profiles, quiet=not args.fast) as net:
            # localnet started both hubs from this checkout: restart one from the base commit.
            hub_procs = net.procs[-2:]
            partners = [p.pid for p in net.procs[:-2]]
            old_proc = hub_procs[1]
            old_proc.terminate()
            old_proc.wait(20)
            new = Side(f"this ({head_commit}{'+' if dirty else ''})", net.hub_small, {}, hub_procs[0])
            old = Side(f"base ({base_commit})", net.hub_all, {"PYTHONPATH": str(old_tree)})
            old.daemon = start_daemon(old)
            net.procs[-1] = old.daemon  # stopped with the rest
            sides = (old, new)
            rows = []

            def row(name: str, runs: int, action, warm: int = 2) -> None:  # type: ignore[no-untyped-def]
                for side in sides:
                    for _ in range(warm):
                        action(side)
                before = localnet.load()
                for i in range(runs):
                    for side in (sides if i % 2 == 0 else sides[::-1]):
                        measure(side, name, partners, lambda s=side: action(s))
                rows.append(name)
                loads.append((name, f"{before} -> {localnet.load()}"))
                print(f"  {name}: " + "; ".join(
                    f"{s.label} wall p50 {pct(s.wall[name], 50):.0f} ms, hub CPU {statistics.fmean(s.hub_cpu[name]):.0f} ms"
                    for s in sides) + f" (load {before} -> {localnet.load()})", flush=True)

            if "search" in only:
                row("discnode search (first page, served)", args.runs, lambda s: s.command("search"))
            if "walk" in only:
                row("discnode search --all --json (served, repeat walk)", args.walk_runs,
                    lambda s: s.command("search", "--all", "--json"), warm=2)
            if "web" in only:
                for side in sides:
                    login(side)
                row(f"web /dataview first page, {args.nodes} partnerships (HTML)", args.runs,
                    lambda s: get_page(s, "/dataview"))
    report = {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load": loads},
        "network": {"partnerships": args.nodes, "profiles_per_partnership": args.profiles},
        "base": base_commit, "this": head_commit + ("+" if dirty else ""),
        "rows": [{"name": name, **{s.label: {
            "runs": len(s.wall[name]), "wall_p50_ms": round(pct(s.wall[name], 50), 1),
            "wall_p95_ms": round(pct(s.wall[name], 95), 1),
            "command_cpu_ms": round(statistics.fmean(s.cli_cpu[name]), 1),
            "hub_cpu_ms": round(statistics.fmean(s.hub_cpu[name]), 1),
            "partners_cpu_ms": round(statistics.fmean(s.partner_cpu[name]), 1)} for s in sides}} for name in rows],
        "command": "python benchmarks/versus.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    print(f"\n{args.nodes} partnerships x {args.profiles}; ms; CPU = mean CPU time a run (kernel ticks of 10 ms, so means, not medians)")
    print(f"{'what':<58} {'code':<16} {'runs':>4} {'wall p50':>9} {'p95':>7} {'cmd CPU':>8} {'hub CPU':>8} {'partners CPU':>12}")
    for r in report["rows"]:
        for s in sides:
            f = r[s.label]
            print(f"{r['name']:<58} {s.label:<16} {f['runs']:>4} {f['wall_p50_ms']:>9} {f['wall_p95_ms']:>7} "
                  f"{f['command_cpu_ms']:>8} {f['hub_cpu_ms']:>8} {f['partners_cpu_ms']:>12}")
        a, b = r[old.label], r[new.label]
        print(f"{'':<58} {'this/base':<16} {'':>4} {b['wall_p50_ms'] / a['wall_p50_ms']:>9.2f} {'':>7} "
              f"{'':>8} {b['hub_cpu_ms'] / max(a['hub_cpu_ms'], 0.1):>8.2f}")
    print(f"load average (1, 5, 15 min): {loads}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
