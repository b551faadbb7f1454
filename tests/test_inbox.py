"""`discnode inbox`: one list of everything waiting for the administrator, each item with its id,
kind, who it is from, what it is about and when it came, built on the review queue."""

import datetime as dt

from discnode.home import today


def test_inbox_json_lists_each_kind_with_from_and_about(network):
    a, b, c, d = (network.node(n) for n in "ABCD")
    network.agree(a, b)
    network.agree(a, d)
    c.cli("peer", "add", a.url, "--expect", a.node_id)                                  # offer
    past = (today() - dt.timedelta(days=2)).isoformat()
    old = a.cli("profile", "add", "--first-name", "Old", "--last-name", "Due", "--review-by", past,
                "--json").json["id"]                                                   # review
    x = a.cli("profile", "add", "--id-sought", "--json").json["id"]
    p = a.cli("profile", "add", "--first-name", "Len", "--last-name", "Two", "--dob", "1980-05-05",
              "--json").json["id"]
    y = b.cli("profile", "add", "--first-name", "Len", "--last-name", "Two", "--dob", "1980-05-05",
              "--json").json["id"]
    proposal = b.cli("propose", f"{a.node_id}:{x}", "--as", y, "--json").json               # proposal
    seen = b.cli("sighting", f"{a.node_id}:{p}", "--at", "Market", "--json").json           # sighting
    link = b.cli("link", "propose", y, f"{a.node_id}:{p}", "--json").json                   # link
    d.stop()
    a.cli("peer", "revoke", d.node_id)                                                     # undelivered

    items = a.cli("inbox", "--json").json
    by_kind = {}
    for item in items:
        assert set(item) >= {"id", "kind", "from", "about", "created"}
        by_kind.setdefault(item["kind"], []).append(item)
    assert set(by_kind) == {"offer", "review", "proposal", "sighting", "link", "undelivered"}
    assert [(i["id"], i["from"]) for i in by_kind["offer"]] == [(c.node_id, c.node_id)]
    assert [i["about"] for i in by_kind["review"]] == [old]
    assert [(i["id"], i["from"], i["about"]) for i in by_kind["proposal"]] == [(proposal["id"], b.node_id, x)]
    assert [(i["id"], i["from"], i["about"]) for i in by_kind["sighting"]] == [(seen["id"], b.node_id, p)]
    assert [(i["id"], i["from"], i["about"]) for i in by_kind["link"]] == [(link["id"], b.node_id, p)]
    assert [i["about"] for i in by_kind["undelivered"]] == [d.node_id]
    for kind in ("proposal", "sighting", "link", "undelivered"):
        assert by_kind[kind][0]["created"]
    table = a.cli("inbox").out
    assert proposal["id"] in table and "Inbox: 6 item(s)" in table and "proposal confirm" in table
