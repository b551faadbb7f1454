"""Who acted: every audit entry of a local action names the administrator who took it: the
operating-system user for the command line (from the socket's peer credentials for a command the
daemon runs for it), a named account for a web session; entries without one still verify."""

from __future__ import annotations

import os
import pwd

import pytest

from discnode import audit, fastpath, localapi
from discnode.home import Home
from tests.web_fixtures import build, get, stop

ME = f"os:{pwd.getpwuid(os.getuid()).pw_name}"


def _entries(home_path, event):
    h = Home.open(home_path)
    try:
        return [e for e in audit.entries(h.db) if e["event"] == event]
    finally:
        h.close()


def test_an_audit_entry_names_the_os_user(cli, monkeypatch):
    monkeypatch.setenv("USER", "mallory")  # a claim anyone can make: not what is recorded
    monkeypatch.setenv("LOGNAME", "mallory")
    pid = cli("profile", "add", "--first-name", "Ann", "--last-name", "Example", "--json").json["id"]
    (entry,) = _entries(cli.home, "profile-added")
    assert entry["actor"] == ME and entry["detail"]["id"] == pid
    shown = cli("audit", "--json").json
    assert [e["actor"] for e in shown if e["event"] == "profile-added"] == [ME]
    assert ME in cli("audit").out
    assert audit.ACTOR.get() == ""  # the command's actor does not outlive it


def test_a_forwarded_command_names_the_user_of_the_socket_peer_credentials(network, monkeypatch):
    a = network.node("A")
    running = network.loop.run(localapi.start(a.home))
    try:
        monkeypatch.setenv("USER", "mallory")
        got = fastpath._exchange(a.cli.home, {"op": "cli", "argv": ["search", "--json"], "width": 80, "tty": False,
                                               "actor": "web:mallory", "user": "mallory"}, 60)
        assert got is not None and got[0]["code"] == 0
        # The daemon checks an account name itself, whatever the command line checked.
        refused = fastpath.request(a.cli.home, "ui-login", account="\x1b[31mroot")
        assert refused is not None and "url" not in refused and "account name" in refused["error"]
    finally:
        network.loop.run(running.stop())
    (entry,) = _entries(a.cli.home, "search")
    assert entry["actor"] == ME


def test_a_web_session_names_the_account_its_login_token_named(network, tmp_path):
    import re

    import aiohttp

    net = build(network, tmp_path, a_people=1, b_people=2)
    try:
        async def make_jar() -> aiohttp.CookieJar:
            return aiohttp.CookieJar(unsafe=True)
        jar = network.loop.run(make_jar())
        status, _, _ = get(net, net.login_url("Sam Tester").removeprefix(net.origin), jar=jar)
        assert status == 303
        _, _, body = get(net, "/mine", jar=jar)
        csrf = re.search(rb'name="csrf" value="([^"]+)"', body).group(1).decode()
        status, _, _ = get(net, f"/partners/{net.c.node_id}/accept", jar=jar, method="POST", data={"csrf": csrf})
        assert status == 303
    finally:
        stop(net)
    accepted = _entries(net.a.cli.home, "consent-accept-sent")
    assert [e["actor"] for e in accepted if e["peer"] == net.c.node_id] == ["web:Sam Tester"]
    assert [e["actor"] for e in accepted if e["peer"] == net.b.node_id] == [ME]  # B's offer, accepted at the CLI
    # The peer's side of the same exchange is a peer request: no local actor.
    received = _entries(net.c.cli.home, "consent-accept-received")
    assert received and all(e["actor"] == "" for e in received)


def test_ui_login_refuses_a_bad_account_name(cli):
    for bad in ("x" * 61, "tab\there", "   "):
        r = cli("ui", "--as", bad, ok=False)
        assert "account name" in r.err


def test_entries_without_an_actor_still_verify_and_a_changed_actor_is_caught(cli):
    h = Home.open(cli.home)
    try:
        audit.append(h.db, "old-style", "", n=1)  # outside any command: no actor, hashed as before
        cli("profile", "add", "--first-name", "Ann", "--last-name", "Example")
        assert [e["actor"] for e in audit.entries(h.db)][-2:] == ["", ME]
        assert audit.verify(h.db).ok
        seq = audit.entries(h.db)[-1]["seq"]
        h.db.execute("DROP TRIGGER audit_no_update")
        h.db.execute("UPDATE audit SET actor = 'os:someone-else' WHERE seq = ?", [seq])
        verdict = audit.verify(h.db)
        assert not verdict.ok and verdict.first_bad == seq
    finally:
        h.close()


@pytest.mark.parametrize("value, expected", [(None, ME.removeprefix("os:")), ("", ME.removeprefix("os:")),
                                             ("  Sam  ", "Sam")])
def test_an_account_defaults_to_the_callers_os_user(value, expected):
    assert localapi.account_name(value, os.getuid()) == expected
