"""The local API: the daemon's Unix socket, and the command line's fast path through it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from discnode import fastpath, localapi


@pytest.fixture
def pair(network):
    """A with a running local API, sharing with B (which has three profiles)."""
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    for i in range(3):
        b.cli("profile", "add", "--first-name", f"Bee{i}", "--last-name", "Partner", "--gender", "female")
    a.cli("profile", "add", "--first-name", "Ay", "--last-name", "Own")
    running = network.loop.run(localapi.start(a.home))
    yield a, b, running
    network.loop.run(running.stop())


def forwarded(node, capsys, *args):
    capsys.readouterr()
    code = fastpath.forward(["--home", str(node.cli.home), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_socket_is_readable_by_the_node_user_only(pair):
    a, _, running = pair
    assert stat.S_IMODE(os.stat(running.path).st_mode) == 0o600
    assert running.path == a.cli.home / "daemon.sock"


def test_forwarded_search_gives_the_same_results_and_audit_entry_as_the_cli(pair, capsys):
    a, b, _ = pair
    direct = a.cli("search", "--json").json
    code, out, _ = forwarded(a, capsys, "search", "--json")
    assert code == 0
    via_daemon = json.loads(out)
    assert [r["id"] for r in via_daemon["results"]] == [r["id"] for r in direct["results"]]
    assert len(via_daemon["results"]) == 4
    searches = [e for e in a.cli("audit", "--json").json if e["event"] == "search"]
    assert len(searches) == 2 and searches[0]["detail"] == searches[1]["detail"]


def test_forwarded_errors_keep_their_message_and_exit_code(pair, capsys):
    a, _, _ = pair
    direct = a.cli("search", "--gender", "martian", ok=False)
    code, out, err = forwarded(a, capsys, "search", "--gender", "martian")
    assert code == direct.code == 2
    assert "martian" in err and out == ""


def test_forwarded_table_is_rendered_for_the_callers_width(pair, capsys, monkeypatch):
    a, _, _ = pair
    monkeypatch.setenv("COLUMNS", "70")
    code, out, _ = forwarded(a, capsys, "search")
    assert code == 0 and "Bee0" in out
    assert max(len(line) for line in out.splitlines()) <= 70


def test_commands_that_write_or_take_paths_are_not_forwarded(pair):
    a, _, _ = pair
    home = ["--home", str(a.cli.home)]
    for argv in (["profile", "add", "--first-name", "X"], ["search", "--contact-sheet", "x.png"],
                 ["profile", "show", "x", "--save-images", "d"], ["peer", "accept", "X"], ["search", "--help"]):
        assert fastpath.forward(home + argv) is None, argv


def test_without_a_daemon_the_cli_runs_as_before(network, capsys):
    a = network.node("A")
    assert fastpath.forward(["--home", str(a.cli.home), "search", "--json"]) is None


def test_the_fast_path_imports_no_typer_rich_or_aiohttp(pair):
    a, _, _ = pair
    code = ("import sys; from discnode import fastpath; "
            f"c = fastpath.forward(['--home', {str(a.cli.home)!r}, 'search', '--json']); "
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'typer', 'rich', 'aiohttp', 'click', 'jinja2'}); "
            "print(c, heavy, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stderr.strip().splitlines()[-1] == "0 []", done.stderr
    assert json.loads(done.stdout)["results"]


def test_a_second_daemon_for_the_same_home_is_refused(pair, network):
    from discnode.errors import Conflict
    a, _, _ = pair
    with pytest.raises(Conflict):
        network.loop.run(localapi.start(a.home))


def test_ui_prints_a_one_time_login_url_for_the_running_node(pair):
    a, _, running = pair
    url = a.cli("ui", "--json").json["url"]
    assert url.startswith("http://127.0.0.1:") and "/login?token=" in url
    assert running.local.ui is not None and url.startswith(running.local.ui.origin)


def test_ui_without_a_running_node_says_to_start_it(network):
    a = network.node("A")
    result = a.cli("ui", ok=False)
    assert "discnode serve" in result.err


def test_forwarded_walk_checks_in_workers_and_matches_the_cli(pair, capsys):
    """The daemon has threads, so a walk's checking workers come from a forkserver, not a fork."""
    import threading
    a, _, _ = pair
    assert threading.active_count() > 1
    direct = a.cli("search", "--all", "--json").json
    code, out, _ = forwarded(a, capsys, "search", "--all", "--json")
    assert code == 0
    assert [r["id"] for r in json.loads(out)["results"]] == [r["id"] for r in direct["results"]]
    assert len(direct["results"]) == 4 and all(p["status"] == "ok" for p in direct["peers"])


def test_keepalive_pings_add_nothing_to_partners_audit_logs_and_stop_when_idle(pair, capsys, monkeypatch):
    import time
    a, b, running = pair
    monkeypatch.setattr(localapi, "KEEPALIVE_EVERY", 0.2)
    monkeypatch.setattr(localapi, "WARM_FOR", 1.5)
    code, _, _ = forwarded(a, capsys, "search", "--json")
    assert code == 0
    before = len(b.cli("audit", "--limit", "1000", "--json").json)
    pings = []
    original = running.local.client.keepalive

    async def counting(peer, *args, **kw):
        ok = await original(peer, *args, **kw)
        pings.append(ok)
        return ok
    monkeypatch.setattr(running.local.client, "keepalive", counting)
    # Until the warmer stops (idle for WARM_FOR), within the 2.7 s that fixed sleeps used to wait.
    deadline = time.monotonic() + 2.7
    while not (running.local._warmer is not None and running.local._warmer.done()):
        assert time.monotonic() < deadline, "idle: no more pings"
        time.sleep(0.05)
    assert pings and all(pings), "the warmer pinged the partner, and the partner answered"
    assert len(b.cli("audit", "--limit", "1000", "--json").json) == before


def test_the_client_closes_idle_connections_before_partners_do_and_after_the_keep_warm_ping():
    """A pooled connection idle for a partner's keep-alive timeout is one the partner is closing:
    the client drops it sooner (no request goes out on it and fails), but not before the daemon's
    next keep-warm ping uses it."""
    import asyncio

    from discnode import client, localapi, server
    from discnode.identity import Identity

    async def connector_timeout() -> float:
        async with client.PeerClient(Identity.generate()) as c:
            return c.session.connector._keepalive_timeout  # type: ignore[union-attr]
    assert localapi.KEEPALIVE_EVERY < asyncio.run(connector_timeout()) == client.IDLE_CLOSE < server.Limits().keepalive


def test_the_fast_path_imports_only_light_standard_modules():
    """The console script's own imports (what every served command pays before it asks the
    daemon): not pathlib, typing or socket's Python half (selectors), which cost it ~10 ms of CPU."""
    code = ("import re, sys; from discnode import fastpath; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'pathlib', 'typing', 'socket', 'selectors', 'urllib', 'ipaddress'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_the_console_script_prints_the_whole_forwarded_output_and_its_exit_code(pair, capsys):
    """The console script ends a forwarded command with os._exit (no interpreter teardown): what
    the daemon rendered still reaches a pipe whole, on both streams, with the command's code."""
    a, _, _ = pair
    run = "import sys; from discnode.fastpath import main; sys.argv = ['discnode', *sys.argv[1:]]; main()"
    home = ["--home", str(a.cli.home)]
    env = {**os.environ, "COLUMNS": "120"}
    _, expected, _ = forwarded(a, capsys, "search", "--json")
    done = subprocess.run([sys.executable, "-c", run, *home, "search", "--json"], capture_output=True, env=env,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.endswith(b"}\n")
    got = json.loads(done.stdout)["results"]
    assert [r["id"] for r in got] == [r["id"] for r in json.loads(expected)["results"]] and len(got) == 4
    done = subprocess.run([sys.executable, "-c", run, *home, "search"], capture_output=True, env=env, timeout=60)
    assert done.returncode == 0 and done.stdout.decode().count("Bee") == 3 and "ok" in done.stdout.decode()
    failed = subprocess.run([sys.executable, "-c", run, *home, "search", "--gender", "martian"],
                            capture_output=True, env=env, timeout=60)
    assert failed.returncode == 2 and b"martian" in failed.stderr and failed.stdout == b""
