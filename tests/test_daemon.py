"""`discnode serve` as an administrator runs it: a real process, replaced in place by the lean daemon."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.nodes import free_port

DISCNODE = [sys.executable, "-m", "discnode"]


@pytest.fixture
def node_home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, int]:
    """A node's home, made by the real CLI in this process (as the `cli` fixture does): these tests
    are about the `serve` process, not `init`'s, and an interpreter start-up a test is ~1 s of CPU."""
    port = free_port()
    home = tmp_path / "node"
    Cli(home, capsys)("init", "--name", "Daemon BCRP", "--port", str(port))
    return home, port


def start(home: Path, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*DISCNODE, "--home", str(home), "serve", "--no-advertise", *extra],
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    for line in proc.stderr:
        if "serving Daemon BCRP" in line:
            return proc
        assert time.monotonic() < deadline, "serve did not start"
    raise AssertionError(f"serve exited with {proc.wait()}")


def test_serve_becomes_the_lean_daemon_in_the_same_process(node_home):
    home, _ = node_home
    proc = start(home)
    try:
        assert "discnode.daemon" in Path(f"/proc/{proc.pid}/cmdline").read_text()
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "_pydantic_core" not in maps, "the daemon must not hold the command line's libraries"
        # Nor the web Dataview's, the contact sheets' or the charts' (measured: none loads to serve).
        assert not [lib for lib in ("PIL/", "markupsafe", "matplotlib", "numpy") if lib in maps]
        # Nor a walk's process pool or the schema reference resolver (benchmarks/README.md, "Serving RSS").
        assert not [lib for lib in ("/_multiprocessing", "/rpds/") if lib in maps]
        assert "libstdc++" not in maps  # frozenlist's C++ extension, for aiohttp's signal lists
    finally:
        proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0


def _thread_heaps(pid: int) -> int:
    """glibc's malloc heaps other than the main one, from the process's memory map: each is a
    64 MiB-aligned anonymous mapping, the part in use read-write and the rest reserved (---p), 64 MiB
    in all."""
    spans = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        spans.append((start, end, fields[1], len(fields) == 5))
    heap = 64 << 20
    return sum(1 for (start, end, perms, anon), (start2, end2, perms2, anon2) in zip(spans, spans[1:])
               if anon and anon2 and perms == "rw-p" and perms2 == "---p" and start % heap == 0
               and end == start2 and end2 == start + heap)


def test_the_daemons_threads_share_its_malloc_heaps(node_home):
    """Set at the daemon's start (memory.limit_arenas), before its threads: the delivery thread,
    the audit writer and the SQL reader that a request starts share two heaps, instead of one each
    that only they could reuse."""
    import asyncio

    from discnode import memory
    from discnode.home import Home
    from tests.nodes import _raw

    home, port = node_home
    fingerprint = Home.open(home).tls_fingerprint
    proc = start(home)
    try:
        async def unsigned_queries() -> list[int]:  # refused (401) and audited: reader and writer at work
            return [s for s, _ in await asyncio.gather(*(_raw(f"https://127.0.0.1:{port}", fingerprint, "POST",
                                                              "/v1/profiles/query", b"{}", {}) for _ in range(8)))]
        assert asyncio.run(unsigned_queries()) == [401] * 8
        threads = len(list(Path(f"/proc/{proc.pid}/task").iterdir()))
        assert threads >= 4, threads  # the loop, delivery, writer, reader(s)
        assert _thread_heaps(proc.pid) <= memory.ARENAS - 1
    finally:
        proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0


def _port_is_free(port: int) -> bool:
    import socket
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_sigterm_right_after_serving_is_logged_always_exits_cleanly(node_home):
    home, port = node_home
    outcomes = []
    for _ in range(10):
        proc = start(home)
        proc.send_signal(signal.SIGTERM)  # at once: the moment an administrator (or systemd) could
        _, rest = proc.communicate(timeout=30)
        outcomes.append((proc.returncode, "stopped" in rest, _port_is_free(port)))
    assert outcomes == [(0, True, True)] * 10


def test_sigterm_the_moment_serve_becomes_the_daemon_exits_cleanly(node_home):
    home, _ = node_home
    outcomes = []
    for _ in range(5):
        proc = subprocess.Popen([*DISCNODE, "--home", str(home), "serve", "--no-advertise"],
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while "discnode.daemon" not in Path(f"/proc/{proc.pid}/cmdline").read_text():
            assert time.monotonic() < deadline and proc.poll() is None, "serve never became the daemon"
        proc.send_signal(signal.SIGTERM)  # before the daemon has even imported its modules
        _, err = proc.communicate(timeout=30)
        outcomes.append((proc.returncode, "Traceback" in err))
    assert outcomes == [(0, False)] * 5


def test_second_serve_on_a_busy_port_fails_with_one_line(node_home):
    home, port = node_home
    first = start(home)
    try:
        r = subprocess.run([*DISCNODE, "--home", str(home), "serve", "--no-advertise"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in r.stderr
        assert "Traceback" not in r.stderr
    finally:
        first.send_signal(signal.SIGINT)
    assert first.wait(15) == 0


@pytest.mark.parametrize("args, words", [(["--rate-limit", "0"], "--rate-limit"), ([], "no node at")])
def test_serve_refuses_bad_options_before_starting(tmp_path, node_home, args, words):
    home, _ = node_home
    target = home if args else tmp_path / "nowhere"
    r = subprocess.run([*DISCNODE, "--home", str(target), "serve", "--no-advertise", *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and words in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "nowhere").exists()
