"""Private matching: 1,000 names asked of a partner holding 18,000 profiles, against the same
comparison done in the clear in the same run (the floor that privacy pays against).

    python benchmarks/match.py                      # 18,000 profiles, 1,000 names, 3 runs
    python benchmarks/match.py --fast               # small, for a quick check (never asserts figures)
    python benchmarks/match.py --json out.json

The holder is a separate `discnode serve` process on loopback with its own SQLite file, holding a
match-only agreement with the asker. Half the names asked are people the holder knows (hits), half
are not. Timed:
  - cold set: the holder's first evaluation of its own set under the agreement's key (once per
    agreement and daemon start; later requests reuse it);
  - ask: `discnode match` for all the names, end to end (blind, one evaluate request, the published
    set, unblind, finalize, compare, audit), with the holder's set already evaluated;
  - OPRF only: blind, evaluate, unblind and finalize of every name in one process, no network;
  - baseline: the same names compared in the clear (fold, key, set lookup) against the holder's keys.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import network  # noqa: E402  (examples/network.py: the generator)

from discnode import match, namekey, oprf, peers, store  # noqa: E402
from discnode.client import PeerClient  # noqa: E402
from discnode.consent import Action, Terms, new_offer, new_response  # noqa: E402
from discnode.home import Config, Home, today  # noqa: E402
from discnode.matchask import Person, ask  # noqa: E402
from discnode.signing import document_hash, sign_document  # noqa: E402

console = Console()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def agree_match_only(asker: Home, holder: Home, quota: int) -> None:
    for me, other in ((asker, holder), (holder, asker)):
        peers.remember(me.db, other.descriptor())
    terms = Terms.default(today(), share=("match",), match_daily_quota=quota)
    offer = sign_document(new_offer(asker.node_id, holder.node_id, terms, asker.descriptor(), store.now_ts(), None),
                          asker.identity)
    accept = sign_document(new_response(Action.ACCEPT, holder.node_id, asker.node_id, document_hash(offer),
                                        store.now_ts()), holder.identity)
    for me, other in ((asker, holder), (holder, asker)):
        for doc in (offer, accept):
            peers.add_document(me.db, other.node_id, doc, delivered=True, own=me.identity)


def names_to_ask(holder: Home, count: int, seed: int) -> tuple[list[Person], int]:
    """Half people the holder shares (hits), half invented (no-hits); and how many should hit."""
    rng = random.Random(seed)
    rows = holder.db.execute("SELECT record FROM profiles WHERE local_only = 0 AND status = 'identified' "
                             "AND dob IS NOT NULL ORDER BY id").fetchall()
    known = [json.loads(r[0]) for r in rows]
    hits = [Person(r["first_name"], r["last_name"], r["dob"]) for r in rng.sample(known, count // 2)]
    misses = [Person(f"Nobody{i}", f"Unknown{i}", f"19{rng.randint(10, 99)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}")
              for i in range(count - len(hits))]
    people = hits + misses
    rng.shuffle(people)
    return people, len(hits)


def serve(path: Path) -> subprocess.Popen[bytes]:
    log = open(path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "discnode", "--home", str(path), "serve", "--no-advertise",
                             "--rate-limit", "1000000"], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    port = Home.open(path).config.port
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"holder exited: {(path / 'serve.log').read_text()[-500:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("holder did not start")


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used: a figure the machine's load does not inflate."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def run(profiles: int, names: int, runs: int, root: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    holder_path = network.make_node(root, 1, "Holder BCRP", free_port(), profiles, seed=3)
    asker = Home.create(root / "asker", Config(name="Asker BCRP", port=free_port()))
    holder = Home.open(holder_path)
    agree_match_only(asker, holder, quota=10_000)
    people, expected_hits = names_to_ask(holder, names, seed=5)
    holder_keys = match.own_keys(holder.db, holder.node_id, today())
    build_s = time.perf_counter() - t0

    proc = serve(holder_path)
    try:
        peer = peers.get(asker.db, holder.node_id)

        async def cold() -> float:
            async with PeerClient(asker.identity, timeout=120) as client:
                start = time.perf_counter()
                reply = await client.call_json(peer, "GET", "/v1/match/set", timeout=120)
                assert len(reply["outputs"]) == len(holder_keys)
                return time.perf_counter() - start
        cold_s = asyncio.run(cold())
        ask_s, asker_cpu, holder_cpu, hits = [], [], [], 0
        for _ in range(runs):
            start, cpu, held = time.perf_counter(), time.process_time(), cpu_of(proc.pid)
            [partner] = asyncio.run(ask(asker, people))
            ask_s.append(time.perf_counter() - start)
            asker_cpu.append(time.process_time() - cpu)
            holder_cpu.append(cpu_of(proc.pid) - held)
            assert partner["status"] == "ok", partner
            hits = sum(r["result"] == "hit" for r in partner["results"])
            assert hits == expected_hits, (hits, expected_hits)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)

    key = oprf.new_key()
    published = {oprf.output(key, k) for k in list(holder_keys)[:names]}
    oprf_s = []
    for _ in range(runs):
        start = time.perf_counter()
        for person in people:
            data = person.key()
            r, blinded = oprf.blind(data)
            oprf.finalize(data, oprf.unblind(r, oprf.evaluate(key, blinded))) in published
        oprf_s.append(time.perf_counter() - start)
    plain_s = []
    for _ in range(runs):
        start = time.perf_counter()
        plain_hits = sum(namekey.key(f"{p.first_name} {p.last_name}", p.dob) in holder_keys for p in people)
        plain_s.append(time.perf_counter() - start)
    assert plain_hits == expected_hits
    return {
        "profiles": profiles, "keys": len(holder_keys), "names": names, "hits": hits, "runs": runs,
        "build_s": round(build_s, 2), "cold_set_s": round(cold_s, 3), "ask_s": round(median(ask_s), 3),
        "ask_runs_s": [round(x, 3) for x in ask_s], "ask_cpu_asker_s": round(median(asker_cpu), 3),
        "ask_cpu_holder_s": round(median(holder_cpu), 3), "oprf_only_s": round(median(oprf_s), 3),
        "baseline_plain_s": round(median(plain_s), 4),
        "ask_over_baseline": round(median(ask_s) / median(plain_s), 1),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_1min": round(os.getloadavg()[0], 2)},
    }


def print_report(report: dict[str, Any]) -> None:
    table = Table(title=f"Private matching: {report['names']:,} names against {report['profiles']:,} profiles "
                        f"({report['keys']:,} keys), median of {report['runs']}")
    table.add_column("what")
    table.add_column("seconds", justify="right")
    table.add_column("note")
    table.add_row("ask (discnode match, end to end)", f"{report['ask_s']:.3f}",
                  f"{report['hits']} hits; target <= 2 s; runs {report['ask_runs_s']}")
    table.add_row("  of which CPU: asker / holder", f"{report['ask_cpu_asker_s']:.3f} / {report['ask_cpu_holder_s']:.3f}",
                  "CPU seconds, not inflated by the machine's load")
    table.add_row("OPRF only, no network", f"{report['oprf_only_s']:.3f}", "blind, evaluate, unblind, finalize")
    table.add_row("baseline: names compared in the clear", f"{report['baseline_plain_s']:.4f}",
                  f"ask / baseline = {report['ask_over_baseline']}x")
    table.add_row("cold set (holder, once per agreement key)", f"{report['cold_set_s']:.3f}",
                  f"{report['keys']:,} keys evaluated")
    console.print(table)
    console.print(f"load average (1 min) at the end: {report['machine']['load_1min']} on "
                  f"{report['machine']['cpus']} CPUs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=18_000)
    parser.add_argument("--names", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fast", action="store_true", help="300 profiles, 40 names, 1 run")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "match.json")
    args = parser.parse_args(argv)
    if args.fast:
        args.profiles, args.names, args.runs = 300, 40, 1
    with tempfile.TemporaryDirectory(prefix="discnode-match-") as tmp:
        report = run(args.profiles, args.names, args.runs, Path(tmp))
    print_report(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
