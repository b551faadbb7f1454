"""The disclosure log with real nodes: every reply served to a partner names the records (ID and
revision) and images it carried, in the audit hash chain, and disclosures.py answers who received
what, before and after the index catches up."""

from __future__ import annotations

import pytest

from discnode import audit, disclosures
from discnode.home import Home
from tests.conftest import jpeg_with_gps


def _served(node, what):
    h = Home.open(node.cli.home)
    try:
        return [e for e in audit.entries(h.db) if e["event"] == "served" and e["detail"].get("what") == what]
    finally:
        h.close()


def _ask(node, fn, *args):
    h = Home.open(node.cli.home)
    try:
        return fn(h.db, *args)
    finally:
        h.close()


@pytest.fixture
def abc(network, tmp_path):
    a, b, c = network.node("A"), network.node("B"), network.node("C")
    network.agree(a, b)
    network.agree(a, c)
    x = a.cli("profile", "add", "--first-name", "Xena", "--last-name", "Shared", "--json").json["id"]
    y = a.cli("profile", "add", "--first-name", "Yann", "--last-name", "Pictured", "--image",
              str(jpeg_with_gps(tmp_path / "y.jpg")), "--json").json["id"]
    hidden = a.cli("profile", "add", "--first-name", "Hal", "--last-name", "Hidden", "--local-only",
                   "--json").json["id"]
    return a, b, c, x, y, hidden


def test_profiles_carry_a_revision_that_every_edit_raises(abc):
    a, _b, _c, x, *_ = abc
    assert a.cli("profile", "show", x, "--json").json["revision"] == 1
    a.cli("profile", "edit", x, "--notes", "seen twice")
    a.cli("profile", "edit", x, "--incident", "2026-01-02|Boots|theft|took razors")
    assert a.cli("profile", "show", x, "--json").json["revision"] == 3
    assert "revision" in a.cli("profile", "show", x).out


def test_disclosure_entry_names_the_records_served(abc):
    a, b, c, x, y, hidden = abc
    a.cli("profile", "edit", x, "--notes", "revised once")  # x at revision 2, y at 1
    found = b.cli("search", "--partnership", a.node_id, "--json").json
    assert {r["id"] for r in found["results"]} == {x, y}

    (entry,) = _served(a, "query")
    assert entry["peer"] == b.node_id and entry["detail"]["count"] == 2
    assert sorted(disclosures.decode(entry["detail"]["records"])) == sorted([(x, 2), (y, 1)])
    assert hidden not in entry["detail"]["records"]

    # One profile, and an image: each names the profile (and revision) it disclosed.
    shown = b.cli("profile", "show", f"{a.node_id}:{y}", "--save-images", str(a.cli.home.parent / "out"),
                  "--json").json
    assert shown["revision"] == 1
    (one,) = _served(a, "profile")
    assert list(disclosures.decode(one["detail"]["records"])) == [(y, 1)]
    images = _served(a, "image-full")
    assert images and all(list(disclosures.decode(e["detail"]["records"])) == [(y, 1)] for e in images)

    # The read API, before the index has caught up and after: the same answer.
    for catch_up in (False, True):
        if catch_up:
            assert _ask(a, disclosures.catch_up) > 0
        assert _ask(a, disclosures.recipients, x) == {b.node_id}
        assert _ask(a, disclosures.recipients, y) == {b.node_id}
        assert _ask(a, disclosures.recipients, hidden) == set()
        of_y = _ask(a, disclosures.of_profile, y)
        assert {d.what for d in of_y} == {"query", "profile", "image-full"}
        assert all(d.peer == b.node_id and d.revision == 1 and d.ts for d in of_y)
        assert [d.seq for d in of_y] == sorted(d.seq for d in of_y)
        assert [(d.revision, d.what) for d in _ask(a, disclosures.of_profile, x)] == [(2, "query")]
    assert _ask(a, disclosures.catch_up) == 0  # nothing new since

    # C asks for x: the index keeps what it had and the tail adds C.
    c.cli("profile", "show", f"{a.node_id}:{x}")
    assert _ask(a, disclosures.recipients, x) == {b.node_id, c.node_id}
    assert audit.verify(Home.open(a.cli.home).db).ok


def test_a_record_without_revision_from_an_older_peer_stays_valid():
    import json
    from pathlib import Path

    from discnode import schemas
    from discnode.identity import b64u_decode
    from discnode.signing import verify_document

    vectors = Path(__file__).resolve().parent.parent / "protocol" / "vectors" / "document"
    for name in ("002-profile.json", "006-profile-without-revision.json"):
        given = json.loads((vectors / name).read_text())["input"]
        schemas.validate("profile", given["document"])
        verify_document(given["document"], b64u_decode(given["public_key"]))
    assert "revision" not in json.loads((vectors / "006-profile-without-revision.json").read_text())["input"]["document"]
