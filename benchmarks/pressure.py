"""A node under pressure: legitimate partners' latency against a baseline from the same run.

    python benchmarks/pressure.py                    # 1,000 slow connections, a 32-way flood, 150,000-row import
    python benchmarks/pressure.py --fast             # small figures, for a smoke run

It prints a table and writes JSON (benchmarks/results/pressure.json; the reference run's is in
benchmarks/reference/pressure.json).

Node B is a real `discnode serve` process on loopback. Partner C measures signed queries to it
(sequential, so each figure is one request's latency) with nothing else going on, then:
1. while 1,000 slow-body connections are held open (from 127.0.0.2-127.0.0.20, a head and one body
   byte each, then nothing);
2. while partner A floods it from another process (32 requests in flight, no pause);
3. while a 150,000-row import runs into B's database (`discnode profile import`, another process).
Loopback only; every loop is bounded in count and time. The machine is shared: compare the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import multiprocessing
import os
import resource
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from discnode.home import Home  # noqa: E402
from discnode.profiles import FIELD_COLUMNS  # noqa: E402
from discnode.signing import sign_request  # noqa: E402
from discnode.synthetic import People  # noqa: E402

DISCNODE = [sys.executable, "-m", "discnode"]
QUERY = "/v1/profiles/query"
console = Console()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args: str) -> str:
    r = subprocess.run([*DISCNODE, *args], capture_output=True, text=True, timeout=600)
    if r.returncode:
        raise SystemExit(f"discnode {' '.join(args)}: {r.stderr}")
    return r.stdout


def write_csv(path: Path, n: int, seed: int) -> Path:
    people = People(seed=seed)
    with path.open("w", newline="") as f:
        writer = None
        for i in range(n):
            fields = people.fields()
            row = {k: (";".join(v) if isinstance(v, list) else ("" if v is None else str(v)))
                   for k, v in fields.items() if k not in ("incidents", "exclusion")}
            row["ref"] = f"B-{seed}-{i:07d}"
            if writer is None:
                writer = csv.DictWriter(f, fieldnames=["ref", *FIELD_COLUMNS])
                writer.writeheader()
            writer.writerow(row)
    return path


class Target:
    def __init__(self, home: Path) -> None:
        info = json.loads(run("--home", str(home), "id", "--json"))
        self.url, self.node_id, self.fingerprint = info["url"], info["node_id"], info["tls_fingerprint"]


async def timed_queries(identity: Any, target: Target, count: int, seconds: float, *,
                        until: Any = None) -> list[float]:
    """Sequential signed queries; latencies in ms. Stops after `count`, `seconds`, or when until() holds."""
    import aiohttp
    pin = aiohttp.Fingerprint(bytes.fromhex(target.fingerprint))
    out: list[float] = []
    end = time.monotonic() + seconds
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        while len(out) < count and time.monotonic() < end and not (until and until()):
            body = json.dumps({"limit": 50}).encode()
            headers = sign_request(identity, "POST", target.url + QUERY, body, target.node_id)
            headers["Content-Type"] = "application/json"
            started = time.perf_counter()
            async with session.post(target.url + QUERY, data=body, headers=headers, ssl=pin) as resp:
                await resp.read()
                if resp.status != 200:
                    out.append(float("nan"))
                    continue
            out.append((time.perf_counter() - started) * 1000)
    return out


def _flood(home: str, url: str, node_id: str, fingerprint: str, seconds: float, width: int, queue: Any) -> None:
    """The flooding partner, in its own process."""
    import aiohttp

    identity = Home(Path(home)).identity
    statuses: dict[int, int] = {}

    async def main() -> None:
        pin = aiohttp.Fingerprint(bytes.fromhex(fingerprint))
        end = time.monotonic() + seconds
        connector = aiohttp.TCPConnector(limit=0, local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=connector) as session:
            async def worker() -> None:
                while time.monotonic() < end:
                    body = json.dumps({"limit": 50}).encode()
                    headers = sign_request(identity, "POST", url + QUERY, body, node_id)
                    headers["Content-Type"] = "application/json"
                    try:
                        async with session.post(url + QUERY, data=body, headers=headers, ssl=pin) as resp:
                            await resp.read()
                            statuses[resp.status] = statuses.get(resp.status, 0) + 1
                            if resp.status == 429:  # a flooder ignores Retry-After
                                await asyncio.sleep(0)
                    except aiohttp.ClientError:
                        statuses[0] = statuses.get(0, 0) + 1
            await asyncio.gather(*(worker() for _ in range(width)))

    asyncio.run(main())
    queue.put(statuses)


def hold_slow_connections(port: int, n: int) -> list[ssl.SSLSocket]:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    held = []
    head = (f"POST {QUERY} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: 100000\r\n\r\n{{").encode()
    for i in range(n):
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=10,
                                           source_address=(f"127.0.0.{2 + i // 55}", 0))
            tls = ctx.wrap_socket(raw)
            tls.sendall(head)
            held.append(tls)
        except OSError:
            continue
    return held


def still_open(held: list[ssl.SSLSocket]) -> int:
    """How many the node has not closed (TLS session tickets may be waiting: that is not a close)."""
    n = 0
    for tls in held:
        tls.setblocking(False)
        try:
            n += tls.recv(1) != b""
        except ssl.SSLWantReadError:
            n += 1
        except OSError:
            pass
    return n


def pct(values: list[float], p: float) -> float:
    clean = sorted(v for v in values if v == v)
    if not clean:
        return float("nan")
    return clean[min(len(clean) - 1, int(round(p / 100 * (len(clean) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--slow", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pressure.json")
    args = parser.parse_args()
    if args.fast:
        args.slow, args.rows = 100, 3000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the attackers' sockets, not the node's
    queries = 40 if args.fast else 200

    root = Path(tempfile.mkdtemp(prefix="pressure-"))
    homes = {name: root / name for name in "ABC"}
    for name, home in homes.items():
        run("--home", str(home), "init", "--name", f"{name} BCRP", "--port", str(free_port()))
    b_home = homes["B"]
    daemon = subprocess.Popen([*DISCNODE, "--home", str(b_home), "serve", "--no-advertise"],
                              stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096)))
    assert daemon.stderr is not None
    for line in daemon.stderr:
        if "serving" in line:
            break
    report: dict[str, Any] = {"slow_connections": args.slow, "import_rows": args.rows, "rows": []}
    try:
        b = Target(b_home)
        for name in "AC":
            run("--home", str(homes[name]), "peer", "add", b.url, "--expect", b.node_id)
            a_id = json.loads(run("--home", str(homes[name]), "id", "--json"))["node_id"]
            run("--home", str(b_home), "peer", "accept", a_id)
        run("--home", str(b_home), "profile", "import", str(write_csv(root / "base.csv", 2000, seed=1)))
        c_identity = Home(homes["C"]).identity
        a_identity = Home(homes["A"]).identity
        loop = asyncio.new_event_loop()

        def measure(**kw: Any) -> list[float]:
            return loop.run_until_complete(timed_queries(c_identity, b, queries, 60, **kw))

        baseline = measure()
        report["rows"].append(("no pressure (baseline)", baseline, ""))

        port = int(b.url.rsplit(":", 1)[1])
        held = hold_slow_connections(port, args.slow)
        during_slow = measure()
        note = f"{len(held)} opened, {still_open(held)} still held after"
        for tls in held:
            tls.close()
        report["rows"].append((f"{args.slow} slow-body connections held", during_slow, note))
        time.sleep(1)

        queue: Any = multiprocessing.get_context("fork").Queue()
        flood_seconds = 20 if args.fast else 40
        flooder = multiprocessing.get_context("fork").Process(
            target=_flood, args=(str(homes["A"]), b.url, b.node_id, b.fingerprint, flood_seconds, 32, queue))
        flooder.start()
        time.sleep(2)
        during_flood = measure()
        statuses = queue.get(timeout=flood_seconds + 120)
        flooder.join(30)
        report["rows"].append(("another partner floods (32 in flight)", during_flood,
                               "flood: " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))))
        report["flood_statuses"] = statuses
        del a_identity

        big = write_csv(root / "big.csv", args.rows, seed=2)
        started = time.monotonic()
        importer = subprocess.Popen([*DISCNODE, "--home", str(b_home), "profile", "import", str(big)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        db = sqlite3.connect(b_home / "discnode.db")
        while importer.poll() is None and db.execute("SELECT count(*) FROM import_batches").fetchone()[0] == 0:
            time.sleep(0.05)
        writing_from = time.monotonic()
        during_import = loop.run_until_complete(
            timed_queries(c_identity, b, 5000, 600, until=lambda: importer.poll() is not None))
        importer.wait(600)
        done = time.monotonic()
        report["rows"].append((f"{args.rows:,}-row import writing", during_import,
                               f"import {done - started:.1f} s, of which writing {done - writing_from:.1f} s; "
                               f"exit {importer.returncode}"))
        report["import_seconds"] = round(done - started, 1)
        report["import_writing_seconds"] = round(done - writing_from, 1)
    finally:
        daemon.terminate()
        daemon.wait(30)

    table = Table(title="Partner C's signed queries to node B (ms; ratio to the baseline of the same run)")
    for col in ("condition", "n", "p50", "p99", "p50 ratio", "p99 ratio", "errors", "note"):
        table.add_column(col)
    base50, base99 = pct(baseline, 50), pct(baseline, 99)
    rows_json = []
    for name, values, note in report["rows"]:
        p50, p99 = pct(values, 50), pct(values, 99)
        errors = sum(1 for v in values if v != v)
        table.add_row(name, str(len(values)), f"{p50:.1f}", f"{p99:.1f}", f"{p50 / base50:.2f}", f"{p99 / base99:.2f}",
                      str(errors), note)
        rows_json.append({"condition": name, "n": len(values), "p50_ms": round(p50, 2), "p99_ms": round(p99, 2),
                          "p50_ratio": round(p50 / base50, 2), "p99_ratio": round(p99 / base99, 2),
                          "errors": errors, "note": note})
    console.print(table)
    report["rows"] = rows_json
    report["machine"] = {"cpus": os.cpu_count(), "load": os.getloadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
