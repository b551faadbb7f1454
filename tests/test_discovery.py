"""Discovery over real multicast DNS between two test hosts (network namespaces with a veth link),
real `discnode serve` processes, and real HTTPS across the link. No mocks; runs in CI as root."""

import json
import signal
import sys

import pytest

from tests.conftest import Cli
from tests.netns import Link, wait_for_log


@pytest.fixture
def link():
    with Link() as l:
        yield l


def _json(result):
    return json.loads(result.stdout)


def two_nodes(link, tmp_path, capsys, *, announce=("--announce",), host_a=None):
    """A node on each test host: (host a, host b, home a, home b, node ID a, node ID b).
    `init` and `id` touch no network: the real CLI runs them in this process (as the `cli` fixture
    does), saving four interpreter start-ups a test; what talks on the link runs in its namespace."""
    a, b = link.hosts
    home_a, home_b = tmp_path / "a", tmp_path / "b"
    Cli(home_a, capsys)("init", "--name", "Alpha BCRP", "--host", host_a or a.address, *announce)
    Cli(home_b, capsys)("init", "--name", "Beta BCRP", "--host", b.address, *announce)
    id_a = Cli(home_a, capsys)("id", "--json").json["node_id"]
    id_b = Cli(home_b, capsys)("id", "--json").json["node_id"]
    return a, b, home_a, home_b, id_a, id_b


def test_two_nodes_discover_each_other_and_agree_over_the_link(link, tmp_path, capsys):
    a, b, home_a, home_b, id_a, id_b = two_nodes(link, tmp_path, capsys)
    serve_a = a.serve(home_a, tmp_path / "a.log")
    b.serve(home_b, tmp_path / "b.log")

    seen_by_b = _json(b.discnode(home_b, "peer", "discover", "--timeout", "3", "--json"))
    assert [(n["node_id"], n["name"], n["address"]) for n in seen_by_b] == [(id_a, "Alpha BCRP", a.address)]
    seen_by_a = _json(a.discnode(home_a, "peer", "discover", "--timeout", "3", "--json"))
    assert [n["node_id"] for n in seen_by_a] == [id_b]

    # Discovery gives the address; trust still comes from the ID checked against the signed descriptor.
    b.discnode(home_b, "peer", "add", "--discovered", id_a, "--json")
    a.discnode(home_a, "peer", "accept", id_b)
    assert _json(b.discnode(home_b, "peer", "list", "--json"))[0]["state"] == "active"

    # A moves to another port; on restart it announces its newly signed descriptor, and B takes it.
    serve_a.send_signal(signal.SIGTERM)
    assert serve_a.wait(15) == 0, "serve must shut down cleanly on SIGTERM"
    a.discnode(home_a, "address", "--port", "9555")
    a.serve(home_a, tmp_path / "a2.log")
    wait_for_log(tmp_path / "b.log", "serving")
    import time
    for _ in range(50):  # read in this process: a poll need not start an interpreter each time
        url = Cli(home_b, capsys)("peer", "list", "--json").json[0]["url"]
        if url.endswith(":9555"):
            break
        time.sleep(0.2)
    assert url == f"https://{a.address}:9555"
    r = _json(b.discnode(home_b, "search", "--json"))
    assert {p["name"]: p["status"] for p in r["peers"]}["Alpha BCRP"] == "ok"


def test_descriptor_with_bad_signature_at_discovered_address_is_refused(link, tmp_path, capsys):
    a, b, home_a, home_b, id_a, _ = two_nodes(link, tmp_path, capsys)
    serve_a = a.serve(home_a, tmp_path / "a.log")
    b.discnode(home_b, "peer", "add", f"https://{a.address}:8443", "--expect", id_a)
    serve_a.terminate()
    serve_a.wait(15)
    # An impostor advertises A's node ID at another port, with a descriptor that does not verify.
    a.start(sys.executable, str(__import__("pathlib").Path(__file__).with_name("fake_node.py")), str(home_a), "9666", log=tmp_path / "fake.log")
    wait_for_log(tmp_path / "fake.log", "serving fake descriptor")
    seen = _json(b.discnode(home_b, "peer", "discover", "--timeout", "3", "--json"))
    row = next(n for n in seen if n["node_id"] == id_a)
    assert row["port"] == 9666 and "refused" in row["warning"] and "signature" in row["warning"]
    assert _json(b.discnode(home_b, "peer", "list", "--json"))[0]["url"] == f"https://{a.address}:8443"
    r = b.discnode(home_b, "peer", "add", "--discovered", id_a, check=False)
    assert r.returncode != 0 and "signature" in r.stderr and "Traceback" not in r.stderr


def test_a_stranger_cannot_move_its_pinned_address_by_announcing_or_advertising(link, tmp_path, capsys):
    a, b, home_a, home_b, id_a, id_b = two_nodes(link, tmp_path, capsys)
    serve_a = a.serve(home_a, tmp_path / "a.log")
    b.serve(home_b, tmp_path / "b.log")
    a.discnode(home_a, "peer", "add", f"https://{b.address}:8443", "--expect", id_b)  # B never answers it
    serve_a.send_signal(signal.SIGTERM)
    assert serve_a.wait(15) == 0
    a.discnode(home_a, "address", "--port", "9555")
    a.serve(home_a, tmp_path / "a2.log")  # announces its new address to B at start, and advertises it
    seen = _json(b.discnode(home_b, "peer", "discover", "--timeout", "3", "--json"))
    assert [(n["node_id"], n["port"]) for n in seen] == [(id_a, 9555)]
    (row,) = _json(b.discnode(home_b, "peer", "list", "--json"))
    assert row["state"] == "pending" and row["url"] == f"https://{a.address}:8443"


def test_a_node_not_configured_to_announce_is_not_found(link, tmp_path, capsys):
    a, b, home_a, home_b, id_a, id_b = two_nodes(link, tmp_path, capsys, announce=())
    a.serve(home_a, tmp_path / "a.log")
    assert _json(b.discnode(home_b, "peer", "discover", "--timeout", "3", "--json")) == []
    assert link.probe(b, b.address) == {}
    # Asked for (config.toml announce = true, as `address --announce` writes it), it is found.
    a.discnode(home_a, "address", "--announce")
    assert "announce = true" in (home_a / "config.toml").read_text()
    serve = a.procs[-1]
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(15) == 0
    a.serve(home_a, tmp_path / "a2.log")
    assert link.probe(b, b.address) == {id_a: [a.address]}


def test_a_node_on_loopback_is_not_announced_anywhere(link, tmp_path, capsys):
    a, b, home_a, home_b, _, _ = two_nodes(link, tmp_path, capsys, host_a="127.0.0.1")
    a.serve(home_a, tmp_path / "a.log")
    assert link.probe(b, b.address) == {}
    assert "not announced on the local network: 127.0.0.1 is loopback" in (tmp_path / "a.log").read_text()


@pytest.fixture
def two_links():
    with Link(second=True) as l:
        yield l


def test_a_node_listening_on_one_address_announces_only_that_address_on_its_interface(two_links, tmp_path, capsys):
    link = two_links
    a, b, home_a, _, id_a, _ = two_nodes(link, tmp_path, capsys, host_a=link.hosts[0].address2)
    a.serve(home_a, tmp_path / "a.log")
    assert link.probe(b, b.address2) == {id_a: [a.address2]}
    assert link.probe(b, b.address) == {}, "announced on an interface the node does not listen on"
