"""The identity key kept encrypted at rest (issue 17), and the sealed format it and backups use."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from discnode import sealed
from discnode.errors import BadPassphrase, InvalidInput
from tests.conftest import Cli
from tests.nodes import free_port

DISCNODE = [sys.executable, "-m", "discnode"]
PASSPHRASE = "four random words here"


@pytest.fixture
def pp(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase"
    path.write_text(PASSPHRASE + "\n")
    return path


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISCNODE_PASSPHRASE_FILE", "CREDENTIALS_DIRECTORY")}
    return {**env, **extra}


@pytest.fixture
def sealed_home(tmp_path: Path, pp: Path, capsys: pytest.CaptureFixture[str],
                monkeypatch: pytest.MonkeyPatch) -> tuple[Path, int]:
    """A node whose key is sealed, made by the real CLI in this process (as the `cli` fixture does):
    the tests are about the processes that open it, not `init`'s (an interpreter start-up saved)."""
    port = free_port()
    home = tmp_path / "node"
    with monkeypatch.context() as env:  # as _env() gives the processes: no passphrase but the file's
        env.delenv("DISCNODE_PASSPHRASE_FILE", raising=False)
        env.delenv("CREDENTIALS_DIRECTORY", raising=False)
        Cli(home, capsys)("init", "--name", "Sealed BCRP", "--port", str(port), "--encrypt-key",
                          "--passphrase-file", str(pp))
    return home, port


def _serve(home: Path, *extra: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([*DISCNODE, "--home", str(home), "serve", "--no-advertise", *extra],
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env)


def _serving(proc: subprocess.Popen[str]) -> bool:
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    for line in proc.stderr:
        if "serving Sealed BCRP" in line:
            return True
        assert time.monotonic() < deadline, "serve did not start"
    return False


def test_encrypted_key_serve_refuses_without_passphrase_and_works_with_it(sealed_home, pp, tmp_path):
    home, _ = sealed_home
    assert b"PRIVATE" not in (home / "identity.key").read_bytes()
    assert sealed.is_sealed((home / "identity.key").read_bytes())
    r = subprocess.run([*DISCNODE, "--home", str(home), "serve", "--no-advertise"], capture_output=True, text=True,
                       env=_env(), stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode == 9 and r.stderr.strip().count("\n") == 0
    assert "identity key is encrypted and no passphrase was given" in r.stderr
    wrong = tmp_path / "wrong"
    wrong.write_text("not it at all\n")
    r = subprocess.run([*DISCNODE, "--home", str(home), "serve", "--no-advertise", "--passphrase-file", str(wrong)],
                       capture_output=True, text=True, env=_env(), stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode == 9 and r.stderr.strip() == "error: wrong passphrase for the identity key"
    for how, extra, env in [("--passphrase-file", ["--passphrase-file", str(pp)], _env()),
                            ("systemd credential", [], _env(CREDENTIALS_DIRECTORY=str(_creds(tmp_path, pp))))]:
        proc = _serve(home, *extra, env=env)
        try:
            assert _serving(proc), how
        finally:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, how


def _creds(tmp_path: Path, pp: Path) -> Path:
    d = tmp_path / "credentials"
    d.mkdir(exist_ok=True)
    (d / "discnode-passphrase").write_bytes(pp.read_bytes())
    return d


def test_every_command_needing_the_key_says_the_passphrase_is_missing_in_one_line(sealed_home, pp):
    home, _ = sealed_home
    for args in (["id"], ["peer", "add", "https://127.0.0.1:9", "--expect", "AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA"],
                 ["audit", "--checkpoint"]):
        r = subprocess.run([*DISCNODE, "--home", str(home), *args], capture_output=True, text=True, env=_env(),
                           stdin=subprocess.DEVNULL, timeout=60)
        assert r.returncode == 9 and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert "encrypted and no passphrase was given" in r.stderr
    r = subprocess.run([*DISCNODE, "--home", str(home), "id", "--json"], capture_output=True, text=True,
                       env=_env(DISCNODE_PASSPHRASE_FILE=str(pp)), stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode == 0 and "node_id" in r.stdout
    # status needs no key: a monitoring check must not hold the passphrase
    r = subprocess.run([*DISCNODE, "--home", str(home), "status", "--json"], capture_output=True, text=True,
                       env=_env(), stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode == 10 and '"running": false' in r.stdout


def test_key_encrypt_then_decrypt_keeps_the_same_identity(cli, tmp_path, pp, monkeypatch):
    node_id = cli("id", "--json").json["node_id"]
    cli("key", "encrypt", "--passphrase-file", pp)
    key = cli.home / "identity.key"
    assert sealed.is_sealed(key.read_bytes()) and oct(key.stat().st_mode & 0o777) == "0o600"
    assert cli("id", ok=False).code == 9
    monkeypatch.setenv("DISCNODE_PASSPHRASE_FILE", str(pp))
    assert cli("id", "--json").json["node_id"] == node_id
    cli("key", "decrypt")
    assert not sealed.is_sealed(key.read_bytes())
    monkeypatch.delenv("DISCNODE_PASSPHRASE_FILE")
    assert cli("id", "--json").json["node_id"] == node_id


def test_a_short_passphrase_is_refused_and_nothing_changes(cli, tmp_path):
    short = tmp_path / "short"
    short.write_text("abc\n")
    before = (cli.home / "identity.key").read_bytes()
    r = cli("key", "encrypt", "--passphrase-file", short, ok=False)
    assert r.code == 2 and "at least 8 characters" in r.err
    assert (cli.home / "identity.key").read_bytes() == before


# --- the sealed format (protocol/sealed-v1.md) ----------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096])
def test_sealed_round_trip_at_chunk_edges(size):
    data = os.urandom(size)
    out = io.BytesIO()
    w = sealed.Writer(out, PASSPHRASE, "backup", log2n=10, chunk=4096)
    w.write(data[:size // 2])
    w.write(data[size // 2:])
    w.close()
    assert b"".join(sealed.open_chunks(io.BytesIO(out.getvalue()), PASSPHRASE, "backup")) == data


def test_sealed_refuses_wrong_passphrase_other_kind_and_reordered_chunks():
    out = io.BytesIO()
    w = sealed.Writer(out, PASSPHRASE, "backup", log2n=10, chunk=16)
    w.write(bytes(range(64)))
    w.close()
    blob = out.getvalue()
    with pytest.raises(BadPassphrase):
        list(sealed.open_chunks(io.BytesIO(blob), "another passphrase", "backup"))
    with pytest.raises(InvalidInput, match="not a identity-key"):
        list(sealed.open_chunks(io.BytesIO(blob), PASSPHRASE, "identity-key"))
    head = blob.index(b"\n") + 1
    c = 16 + 16
    chunks = [blob[head + i:head + i + c] for i in range(0, len(blob) - head, c)]
    swapped = blob[:head] + chunks[1] + chunks[0] + b"".join(chunks[2:])
    with pytest.raises(BadPassphrase):  # chunk 0 is checked as chunk 0: a swap fails at once
        list(sealed.open_chunks(io.BytesIO(swapped), PASSPHRASE, "backup"))
    swapped = blob[:head] + chunks[0] + chunks[2] + chunks[1] + b"".join(chunks[3:])
    with pytest.raises(InvalidInput, match="chunk 1"):
        list(sealed.open_chunks(io.BytesIO(swapped), PASSPHRASE, "backup"))


def test_sealed_refuses_a_header_asking_for_too_much_memory():
    blob = sealed.seal_bytes(b"x", PASSPHRASE, "backup", log2n=10).replace(b'"log2n":10', b'"log2n":30')
    with pytest.raises(InvalidInput, match="parameters"):
        sealed.open_bytes(blob, PASSPHRASE, "backup")


def _at_a_terminal(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """Run `args` with a new pseudo-terminal as its controlling terminal (getpass reads /dev/tty)."""
    import fcntl
    import pty
    import termios
    master, slave = pty.openpty()

    def own_terminal() -> None:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, preexec_fn=own_terminal)
    os.close(slave)
    return proc, master


def _read_until(fd: int, word: bytes, seconds: float = 60) -> bytes:
    import select
    seen, deadline = b"", time.monotonic() + seconds
    while word not in seen:
        assert time.monotonic() < deadline, f"never saw {word!r}: {seen[-300:]!r}"
        if select.select([fd], [], [], 0.5)[0]:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    return seen


def test_serve_asks_for_the_passphrase_at_a_terminal_and_serves(sealed_home):
    home, _ = sealed_home
    proc, tty = _at_a_terminal([*DISCNODE, "--home", str(home), "serve", "--no-advertise"], _env())
    try:
        _read_until(tty, b"Passphrase for the identity key:")
        os.write(tty, PASSPHRASE.encode() + b"\n")
        _read_until(tty, b"serving Sealed BCRP")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        os.close(tty)


def test_init_asks_twice_at_a_terminal_and_refuses_two_different_passphrases(tmp_path):
    home = tmp_path / "node"
    proc, tty = _at_a_terminal([*DISCNODE, "--home", str(home), "init", "--name", "T BCRP", "--encrypt-key"], _env())
    try:
        _read_until(tty, b"New passphrase for the identity key:")
        os.write(tty, PASSPHRASE.encode() + b"\n")
        _read_until(tty, b"Again:")
        os.write(tty, b"something else entirely\n")
        out = _read_until(tty, b"differ")
        assert proc.wait(20) == 9 and b"Traceback" not in out
    finally:
        os.close(tty)
    assert not home.exists()


def test_a_rotation_keeps_an_encrypted_key_encrypted(tmp_path, pp, capsys, monkeypatch):
    from tests.conftest import Cli
    node = Cli(tmp_path / "node", capsys)
    node("init", "--name", "Sealed BCRP", "--encrypt-key", "--passphrase-file", pp,
         "--next-key-out", tmp_path / "next.txt")
    monkeypatch.setenv("DISCNODE_PASSPHRASE_FILE", str(pp))
    node_id = node("id", "--json").json["node_id"]
    node("key", "rotate", "--next-key", tmp_path / "next.txt", "--next-key-out", tmp_path / "next2.txt")
    assert sealed.is_sealed((tmp_path / "node" / "identity.key").read_bytes())
    assert node("id", "--json").json["node_id"] == node_id
    monkeypatch.delenv("DISCNODE_PASSPHRASE_FILE")
    assert node("id", ok=False).code == 9
