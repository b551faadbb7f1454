"""A synthetic network with running hub daemons, for the benchmarks of what an administrator runs
(cli_search.py, web.py): whole `discnode` commands and web pages, not library calls.

It builds max(nodes, 100) partnerships with examples/network.py, starts each as its own
`discnode serve` process, and two hubs that also run `discnode serve` (so their local API and web
Dataview are up): one agreed with the first `nodes` partnerships, one with all of them. A central
node holds every partnership's profiles in its one SQLite file: the single-database baseline.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import network  # noqa: E402  (examples/network.py)

from discnode import store  # noqa: E402
from discnode.home import Config, Home  # noqa: E402

DISCNODE = str(Path(sys.executable).parent / "discnode")


@dataclass
class Net:
    root: Path
    hub_small: Path      # agreed with the first `nodes` partnerships
    hub_all: Path        # agreed with every partnership
    central: Path        # every profile in one database (no daemon)
    partners: list[Path]
    procs: list[subprocess.Popen]


def code_tree(ref: str, into: Path) -> Path:
    """The discnode package of git `ref` (and its protocol/), extracted into `into`, to go first on
    PYTHONPATH: the benchmarks' "--base" code, run beside this checkout's."""
    import io
    import tarfile
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref, "discnode", "protocol"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def _serve(path: Path) -> subprocess.Popen:
    log = open(path / "serve.log", "w")
    return subprocess.Popen([DISCNODE, "--home", str(path), "serve", "--no-advertise", "--rate-limit", "1000000"],
                            stdout=log, stderr=subprocess.STDOUT)


def _wait_for(path: Path, proc: subprocess.Popen, what: str, timeout: float = 180) -> None:
    import socket
    port = Home.open(path).config.port
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{path.name} exited: {(path / 'serve.log').read_text()[-500:]}")
        ready = (path / "daemon.sock").exists() if what == "socket" else False
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0 and (what != "socket" or ready):
                return
        time.sleep(0.05)
    raise RuntimeError(f"{path.name} did not start")


def _central(root: Path, paths: list[Path]) -> Path:
    home = Home.create(root / "central", Config(name="Central", host="127.0.0.1", port=1))
    for path in paths:
        node = store.connect(path / "discnode.db")
        rows = [json.loads(r[0]) for r in node.execute("SELECT record FROM profiles")]
        store.put_profiles(home.db, rows)
        node.conn.close()
    home.close()
    return home.path


@contextlib.contextmanager
def running(root: Path, nodes: int, total: int, profiles: int, log: callable = print, *,
            quiet: bool = True) -> Iterator[Net]:
    """The network's daemons running; with quiet, only once they have settled (settle)."""
    base_port = network.free_ports(total + 2)
    started = time.monotonic()
    hub_all, paths = network.generate(root / "net", total, profiles, base_port=base_port)
    hub_small = Home.create(root / "net" / "hub-small", Config(name="Small Hub BCRP", host="127.0.0.1",
                                                               port=base_port + total + 1))
    for path in paths[:nodes]:
        node = Home.open(path)
        network.agree_offline(hub_small, node)
        node.close()
    hub_small.close()
    central = _central(root, paths[:nodes])
    log(f"built {total} partnerships x {profiles} profiles in {time.monotonic() - started:.0f} s")
    procs: list[subprocess.Popen] = []
    try:
        for path in paths:
            procs.append(_serve(path))
        for path, proc in zip(paths, procs):
            _wait_for(path, proc, "port")
        for hub in (hub_small.path, hub_all):
            procs.append(_serve(hub))
            _wait_for(hub, procs[-1], "socket")
        log(f"started {len(procs)} daemons")
        if quiet:
            idle = settle()
            log(f"settled: the CPUs {idle:.0%} idle over 2 s (load {load()})")
        yield Net(root, hub_small.path, hub_all, central, paths, procs)
    finally:
        stop(procs)


def stop(procs: list[subprocess.Popen]) -> None:
    """Stop the daemons: all asked at once (SIGTERM), then each waited for, killed after 20 s."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def command_ms(argv: list[str], runs: int, env: dict[str, str] | None = None) -> list[float]:
    """Wall-clock milliseconds of a whole `discnode` command, output to /dev/null."""
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run([DISCNODE, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, "COLUMNS": "120", **(env or {})})
        out.append((time.perf_counter() - started) * 1000)
        if done.returncode != 0:
            raise RuntimeError(f"discnode {' '.join(argv)} failed: {done.stderr.decode()[-300:]}")
    return out


def _cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies of all CPUs since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return values[3] + values[4], sum(values)  # idle + iowait


def settle(idle_wanted: float = 0.9, window: float = 2.0, limit: float = 180.0) -> float:
    """Wait until the machine is quiet again after starting the daemons: the CPUs at least
    idle_wanted idle over `window` seconds (or `limit` seconds passed); the idle fraction seen.
    A hundred daemons importing Python take a minute of both cores; measuring before they have
    finished would measure their start-up, not the page. The 1-minute load average lags by
    a minute, so it is reported, not waited on."""
    ended = time.monotonic() + limit
    while True:
        idle0, total0 = _cpu_times()
        time.sleep(window)
        idle1, total1 = _cpu_times()
        idle = (idle1 - idle0) / max(1, total1 - total0)
        if idle >= idle_wanted or time.monotonic() > ended:
            return idle


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())
