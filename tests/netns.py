"""Two test hosts joined by a veth pair, each in a network namespace that the test creates itself:
a real, isolated link with real multicast for mDNS. Needs root (as CI has) and iproute2."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass
class Host:
    ns: str
    address: str
    #: The host's address on the second link, if the Link has one.
    address2: str = ""
    procs: list[subprocess.Popen] = field(default_factory=list)

    def cmd(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *args]

    def discnode(self, home: Path, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        r = subprocess.run(self.cmd(sys.executable, "-m", "discnode", "--home", str(home), *args),
                           capture_output=True, text=True, timeout=timeout, env=_env())
        if check and r.returncode != 0:
            raise AssertionError(f"discnode {' '.join(args)} in {self.ns} failed: {r.stderr}")
        return r

    def start(self, *argv: str, log: Path) -> subprocess.Popen:
        fh = open(log, "w")
        proc = subprocess.Popen(self.cmd(*argv), stdout=fh, stderr=subprocess.STDOUT, env=_env())
        self.procs.append(proc)
        return proc

    def remove(self) -> None:
        """Stop what the host started (SIGTERM, then SIGKILL after 10 s), then delete its namespace."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)

    def serve(self, home: Path, log: Path) -> subprocess.Popen:
        proc = self.start(sys.executable, "-m", "discnode", "--home", str(home), "serve", log=log)
        wait_for_log(log, "serving")
        return proc


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    return env


def wait_for_log(log: Path, words: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and words in log.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"{log.name} never said {words!r}: {log.read_text() if log.exists() else ''}")


class Link:
    """Two hosts joined by a veth pair; with second=True, by a second pair too (another subnet, so
    another interface on each host)."""

    def __init__(self, second: bool = False) -> None:
        tag = f"{os.getpid() % 100000}"
        subnet = os.getpid() % 200 + 20
        self.hosts = [Host(f"dn{tag}a", f"10.231.{subnet}.1", f"10.232.{subnet}.1" if second else ""),
                      Host(f"dn{tag}b", f"10.231.{subnet}.2", f"10.232.{subnet}.2" if second else "")]
        self.veth = (f"dn{tag}va", f"dn{tag}vb")
        self.veth2 = (f"dn{tag}wa", f"dn{tag}wb")
        self.second = second

    def __enter__(self) -> "Link":
        if shutil.which("ip") is None:
            raise RuntimeError("iproute2 is needed for the discovery test (apt-get install iproute2)")
        self.__exit__()
        a, b = self.hosts
        for host in self.hosts:
            _ip("netns", "add", host.ns)
        _ip("link", "add", self.veth[0], "type", "veth", "peer", "name", self.veth[1])
        for host, dev in zip(self.hosts, self.veth):
            _ip("link", "set", dev, "netns", host.ns)
            _ip("-n", host.ns, "addr", "add", f"{host.address}/24", "dev", dev)
            _ip("-n", host.ns, "link", "set", dev, "up")
            _ip("-n", host.ns, "link", "set", "lo", "up")
        if self.second:
            _ip("link", "add", self.veth2[0], "type", "veth", "peer", "name", self.veth2[1])
            for host, dev in zip(self.hosts, self.veth2):
                _ip("link", "set", dev, "netns", host.ns)
                _ip("-n", host.ns, "addr", "add", f"{host.address2}/24", "dev", dev)
                _ip("-n", host.ns, "link", "set", dev, "up")
        return self

    def probe(self, host: Host, interface: str, seconds: float = 3.0) -> dict[str, list[str]]:
        """What an mDNS listener on `host`, joined on one interface (by its address) only, hears:
        {node ID: the addresses announced for it}."""
        import json
        r = subprocess.run(host.cmd(sys.executable, str(Path(__file__).with_name("mdns_probe.py")), interface,
                                    str(seconds)), capture_output=True, text=True, timeout=60, env=_env())
        if r.returncode != 0:
            raise AssertionError(f"mdns probe failed: {r.stderr}")
        return json.loads(r.stdout)

    def __exit__(self, *exc: object) -> None:
        for host in self.hosts:
            host.remove()


class LocalPrefixes:
    """One host alone in a namespace of its own: loopback up, `address` on it, and each IPv6 prefix
    routed locally, so that a socket with IP_FREEBIND may send from any address in it (as a host
    given a whole /64 can)."""

    def __init__(self, address: str, prefixes: list[str]) -> None:
        self.host = Host(f"dn{os.getpid() % 100000}l6", address)
        self.prefixes = prefixes

    def __enter__(self) -> Host:
        if shutil.which("ip") is None:
            raise RuntimeError("iproute2 is needed for the namespace tests (apt-get install iproute2)")
        self.__exit__()
        ns = self.host.ns
        _ip("netns", "add", ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "-6", "addr", "add", f"{self.host.address}/128", "dev", "lo", "nodad")
        for prefix in self.prefixes:
            _ip("-n", ns, "-6", "route", "add", "local", prefix, "dev", "lo")
        return self.host

    def __exit__(self, *exc: object) -> None:
        self.host.remove()
