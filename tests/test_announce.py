"""Whether and where a node announces itself (mDNS): the configuration, and the pure plan. The
announcements themselves are tested over real multicast in tests/test_discovery.py."""

import pytest

from discnode.discovery import Plan, announce_plan

LOCAL = ["192.168.1.10", "10.0.0.5"]


@pytest.mark.parametrize("host, plan", [
    ("0.0.0.0", Plan(None, LOCAL)),
    ("192.168.1.10", Plan(["192.168.1.10"], ["192.168.1.10"])),
    ("127.0.0.1", None),
    ("127.0.0.53", None),
    ("::1", None),
    ("fe80::1", None),
])
def test_a_node_is_announced_only_where_it_listens(host, plan):
    assert announce_plan(host, LOCAL) == plan


def test_a_node_on_every_interface_of_a_machine_with_no_network_is_not_announced():
    assert announce_plan("0.0.0.0", []) is None


def test_new_nodes_do_not_announce_unless_asked(cli, tmp_path):
    assert "announce = false" in (cli.home / "config.toml").read_text()
    other = type(cli)(tmp_path / "other", cli.capsys)
    other("init", "--name", "Other BCRP", "--announce")
    assert "announce = true" in (other.home / "config.toml").read_text()
    assert cli("address", "--announce", "--json").json["announce"] is True
    assert "announce = true" in (cli.home / "config.toml").read_text()
    cli("address", "--no-announce")
    assert "announce = false" in (cli.home / "config.toml").read_text()


def test_a_config_with_a_bad_announce_value_is_refused_in_one_line(cli):
    path = cli.home / "config.toml"
    path.write_text(path.read_text().replace("announce = false", 'announce = "yes"'))
    r = cli("id", ok=False)
    assert "announce must be true or false" in r.err and len(r.err.strip().splitlines()) == 1
