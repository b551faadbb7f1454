"""`discnode serve` as an administrator runs it: a real process, replaced in place by the lean daemon."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.nodes import free_port

DISCNODE = [sys.executable, "-m", "discnode"]


@pytest.fixture
def node_home(tmp_path: Path) -> tuple[Path, int]:
    port = free_port()
    home = tmp_path / "node"
    subprocess.run([*DISCNODE, "--home", str(home), "init", "--name", "Daemon BCRP", "--port", str(port)],
                   check=True, capture_output=True)
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
