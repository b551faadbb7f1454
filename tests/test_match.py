"""Match-only agreements between real nodes: hit or no-hit through an oblivious PRF, the daily
quota, reveal, and the scopes a node advertises."""

import json
import logging

import pytest

from discnode import consent, oprf, server
from discnode.consent import Terms, new_offer
from discnode.home import today
from discnode.signing import sign_document
from tests.nodes import send, signed

#: A name the asker asks about and the holder does not hold: it must never reach the holder.
SECRET_FIRST, SECRET_LAST, SECRET_DOB = "Zebedee", "Quixotically", "1977-03-04"


def _match_pair(network, quota=50):
    """A (asker) offers B (holder) a match-only agreement; B holds three profiles."""
    a, b = network.node("A"), network.node("B")
    b.cli("profile", "add", "--first-name", "Seán", "--last-name", "O’Brien", "--dob", "1985-07-30",
          "--alias", "Johnny Bee")
    b.cli("profile", "add", "--first-name", "Mary", "--last-name", "Smith-Jones", "--dob", "2001-12-31")
    b.cli("profile", "add", "--first-name", "Local", "--last-name", "Only", "--dob", "1990-01-01", "--local-only")
    a.cli("peer", "add", b.url, "--expect", b.node_id, "--share", "match", "--match-quota", str(quota))
    assert b.cli("peer", "accept", a.node_id, "--json").json["state"] == "active"
    return a, b


def _ask(a, first, last, dob, ok=True):
    return a.cli("match", "--first-name", first, "--last-name", last, "--dob", dob, "--json", ok=ok)


def _result(reply):
    [partner] = reply.json["partners"]
    assert partner["status"] == "ok", partner
    return partner["results"]


def test_match_only_partners_profiles_never_appear_in_search(network):
    a, b = _match_pair(network)
    terms = b.cli("peer", "show", a.node_id, "--json").json["terms"]
    assert terms["share"] == ["match"] and terms["match_daily_quota"] == 50
    assert "50 names a day" in b.cli("peer", "show", a.node_id).out
    a.cli("profile", "add", "--first-name", "Own", "--last-name", "Record")
    for args in ((), ("--all",)):
        found = a.cli("search", *args, "--json").json
        assert [r["last_name"] for r in found["results"]] == ["Record"]
        assert all(p["node_id"] != b.node_id for p in found["peers"])
    for method, path, payload in (("POST", "/v1/profiles/query", {}),
                                  ("GET", f"/v1/profiles/{'a' * 12}", None),
                                  ("GET", f"/v1/images/{'0' * 64}", None)):
        status, body = send(b, method, path, *signed(a.home.identity, b, method, path, payload))
        assert status == 403 and "does not share" in body["error"]["message"], (path, body)


def test_a_matching_name_is_a_hit_and_another_is_not(network):
    a, b = _match_pair(network)
    [hit] = _result(_ask(a, "SEAN", "o'brien", "1985-07-30"))
    assert hit["result"] == "hit" and len(hit["ref"]) == 16
    [alias] = _result(_ask(a, "johnny", "BEE", "1985-07-30"))
    assert alias["result"] == "hit" and alias["ref"] != hit["ref"]
    [wrong_dob] = _result(_ask(a, "Sean", "OBrien", "1985-07-31"))
    [stranger] = _result(_ask(a, SECRET_FIRST, SECRET_LAST, SECRET_DOB))
    [local_only] = _result(_ask(a, "Local", "Only", "1990-01-01"))
    assert wrong_dob["result"] == stranger["result"] == local_only["result"] == "no-hit"
    assert wrong_dob["ref"] is None
    shown = a.cli("match", "--first-name", "Mary", "--last-name", "smith-jones", "--dob", "2001-12-31").out
    print(shown)
    assert "hit" in shown and f"{b.node_id}:" in shown


def test_holder_stores_and_logs_no_name_it_was_asked_about(network, caplog):
    caplog.set_level(logging.DEBUG)
    a, b = _match_pair(network)
    [stranger] = _result(_ask(a, SECRET_FIRST, SECRET_LAST, SECRET_DOB))
    assert stranger["result"] == "no-hit"
    b.cli("audit", "--json")
    b.stop()  # everything on disk: the WAL is checkpointed into the database file
    files = [p for p in b.cli.home.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".db") for p in files)
    stored = b"".join(p.read_bytes() for p in files)
    logged = caplog.text.encode()
    for secret in (SECRET_FIRST, SECRET_LAST, SECRET_DOB, SECRET_FIRST.lower(), SECRET_LAST.lower()):
        assert secret.encode() not in stored, secret
        assert secret.encode() not in logged, secret


def test_holders_audit_counts_names_and_the_askers_names_none(network):
    a, b = _match_pair(network)
    _ask(a, SECRET_FIRST, SECRET_LAST, SECRET_DOB)
    held = json.dumps(b.cli("audit", "--json").json)
    asked = json.dumps(a.cli("audit", "--json").json)
    assert "match-evaluated" in held and '"count": 1' in held
    assert "match-asked" in asked and '"names": 1' in asked
    for text in (held, asked):
        assert SECRET_LAST not in text and SECRET_DOB not in text


def test_asker_cannot_test_a_name_without_the_holder(network):
    a, b = _match_pair(network)
    [hit] = _result(_ask(a, "Seán", "O’Brien", "1985-07-30"))
    assert hit["result"] == "hit"
    [[key]] = b.home.db.execute("SELECT key FROM match_keys").fetchall()
    status, published = send(b, "GET", "/v1/match/set", *signed(a.home.identity, b, "GET", "/v1/match/set"))
    assert status == 200 and len(published["outputs"]) == 3  # Seán's name and alias, Mary; not local-only
    reply_text = json.dumps(published)
    asker_bytes = b"".join(p.read_bytes() for p in a.cli.home.rglob("*") if p.is_file())
    from discnode.match import b64
    for form in (bytes(key), bytes(key).hex().encode(), b64(bytes(key)).encode()):
        assert form not in asker_bytes and form.decode("latin-1") not in reply_text
    # Everything the asker could compute alone for a name it knows is held misses the set.
    data = b"sean obrien|1985-07-30"
    alone = {b64(oprf.output(oprf.new_key(), data)), b64(oprf.finalize(data, oprf.hash_to_group(data))),
             b64(oprf.hash_to_group(data))}
    assert not alone & set(published["outputs"])
    # With the holder's key (which only the holder has), the same name is in the set.
    assert b64(oprf.output(bytes(key), data)) in published["outputs"]


def test_the_quota_refuses_the_next_name(network):
    a, b = _match_pair(network, quota=3)
    names = a.cli.home.parent / "names.csv"
    names.write_text("first_name,last_name,dob\nSean,OBrien,1985-07-30\nAnn,Other,1980-01-01\n")
    reply = a.cli("match", "--file", str(names), "--json").json
    assert [r["result"] for r in reply["partners"][0]["results"]] == ["hit", "no-hit"]
    assert reply["partners"][0]["quota"] == {"limit": 3, "used": 2, "day": reply["partners"][0]["quota"]["day"]}
    _ask(a, "Mary", "Smith-Jones", "2001-12-31")
    [partner] = _ask(a, "Mary", "Smith-Jones", "2001-12-31").json["partners"]
    assert partner["status"] == "error" and "daily match quota reached" in partner["error"]
    assert "allows 3 names a day, 3 asked today" in partner["error"]
    [[used]] = b.home.db.execute("SELECT used FROM match_quota").fetchall()
    assert used == 3  # the refused name was not counted


def test_evaluate_refuses_points_outside_the_group_and_charges_nothing(network):
    a, b = _match_pair(network, quota=5)
    from discnode.match import b64
    for bad in (oprf.IDENTITY, bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")):
        good = oprf.blind(b"x|1990-01-01")[1]
        payload = {"blinded": [b64(good), b64(bad)]}
        status, body = send(b, "POST", "/v1/match/evaluate",
                            *signed(a.home.identity, b, "POST", "/v1/match/evaluate", payload))
        assert status == 400 and "blinded element is not a valid group element" in body["error"]["message"]
    assert b.home.db.execute("SELECT count(*) FROM match_quota").fetchone()[0] == 0


def test_reveal_round_trip(network):
    a, b = _match_pair(network)
    [hit] = _result(_ask(a, "Mary", "Smith-Jones", "2001-12-31"))
    target = f"{b.node_id}:{hit['ref']}"
    asked = a.cli("reveal", target, "--json").json
    assert asked["state"] == "pending" and asked["records"] == []
    [request] = b.cli("reveal", "list", "--json").json["requests"]
    assert request["peer"] == a.node_id and request["names"] == ["Mary Smith-Jones"]
    assert request["id"] == asked["request"]
    [item] = [i for i in b.cli("review", "--json").json if i["kind"] == "reveal"]
    assert item["ref"] == request["id"] and "A BCRP asks to see profile" in item["summary"]
    b.cli("reveal", "allow", request["id"])
    assert not [i for i in b.cli("review", "--json").json if i["kind"] == "reveal"]
    revealed = a.cli("reveal", target, "--json").json
    assert revealed["state"] == "allowed"
    [record] = revealed["records"]
    assert record["last_name"] == "Smith-Jones" and record["origin"] == b.node_id
    assert "Smith-Jones" in a.cli("reveal", target).out
    assert "already allowed" in b.cli("reveal", "decline", request["id"], ok=False).err
    held = json.dumps(b.cli("audit", "--json").json)
    asked_log = json.dumps(a.cli("audit", "--json").json)
    assert "reveal-allowed" in held and "revealed" in held and record["id"] in held
    assert "reveal-received" in asked_log and hit["ref"] in asked_log


def test_a_declined_reveal_reveals_nothing(network):
    a, b = _match_pair(network)
    [hit] = _result(_ask(a, "Sean", "OBrien", "1985-07-30"))
    a.cli("reveal", f"{b.node_id}:{hit['ref']}")
    [request] = b.cli("reveal", "list", "--json").json["requests"]
    b.cli("reveal", "decline", request["id"])
    again = a.cli("reveal", f"{b.node_id}:{hit['ref']}", "--json").json
    assert again["state"] == "declined" and again["records"] == []
    assert "no match reference" in a.cli("reveal", f"{b.node_id}:{'a' * 16}", ok=False).err


def _old_descriptor(node):
    """The node's descriptor as a node from before scopes were advertised signs it."""
    doc = {k: v for k, v in node.home.descriptor().items() if k not in ("sig", "scopes")}
    return sign_document(doc, node.home.identity)


def test_an_offer_of_match_to_a_node_without_it_is_refused_and_can_be_sent_after_upgrade(network):
    a, b = network.node("A"), network.node("B")
    state = b.running.runner.app[server.STATE]
    upgraded = state.descriptor
    state.descriptor = _old_descriptor(b)
    err = a.cli("peer", "add", b.url, "--expect", b.node_id, "--share", "match", ok=False).err
    assert "does not support sharing match (it supports profiles, images)" in err
    assert a.cli("peer", "list", "--json").json == [] and b.cli("peer", "list", "--json").json == []
    # Sent anyway (a node that skipped the check): the old node refuses it with the same reason.
    offer = sign_document(new_offer(a.node_id, b.node_id, Terms.default(today(), share=["match"]),
                                    a.home.descriptor(), "2026-11-24T16:00:00Z", None), a.home.identity)
    status, body = send(b, "POST", "/v1/consent", *signed(a.home.identity, b, "POST", "/v1/consent", offer))
    assert status == 403 and "does not support sharing match" in body["error"]["message"]
    assert b.cli("peer", "list", "--json").json == []
    state.descriptor = upgraded  # B upgraded
    assert a.cli("peer", "add", b.url, "--expect", b.node_id, "--share", "match", "--json").json["delivered"]
    assert b.cli("peer", "accept", a.node_id, "--json").json["state"] == "active"


def test_descriptors_and_offers_without_scopes_mean_profiles_and_images():
    assert consent.scopes_of({"node_id": "x"}) == ("profiles", "images")
    consent.check_supported(["profiles", "images"], {})
    with pytest.raises(Exception, match="does not support sharing match"):
        consent.check_supported(["match"], {})


@pytest.mark.parametrize("args, message", [
    (("--share", "match", "--match-quota", "0"), "quota must be 1 to"),
    (("--match-quota", "5"), "only for agreements that share match"),
    (("--share", "images"), "images can only be shared with profiles"),
])
def test_bad_match_terms_are_refused_before_anything_is_sent(network, args, message):
    a, b = network.node("A"), network.node("B")
    assert message in a.cli("peer", "add", b.url, "--expect", b.node_id, *args, ok=False).err
    assert b.cli("peer", "list", "--json").json == []


def test_match_input_is_checked_before_anything_is_sent(network):
    a, b = _match_pair(network, quota=1)
    assert "not a date" in _ask(a, "Ann", "Example", "03/02/1990", ok=False).err
    assert "no letters" in _ask(a, "...", "--", "1990-02-03", ok=False).err
    assert b.home.db.execute("SELECT count(*) FROM match_quota").fetchone()[0] == 0


def test_level_two_asks_match_only_partners_only_when_told(network):
    a, b = _match_pair(network, quota=10)
    a.cli("profile", "add", "--first-name", "Sean", "--last-name", "OBRIEN", "--dob", "1985-07-30")
    a.cli("profile", "add", "--first-name", "Nobody", "--last-name", "Else", "--dob", "1970-01-01")
    assert a.cli("level-two", "--json").json["groups"] == []
    assert b.home.db.execute("SELECT count(*) FROM match_quota").fetchone()[0] == 0  # nothing asked
    found = a.cli("level-two", "--include-match", "--json").json
    [group] = found["groups"]
    assert group["partnerships"] == ["A BCRP", "B BCRP"] and group["dob"] == "1985-07-30"
    [hit] = group["match_hits"]
    assert hit["node_id"] == b.node_id and len(hit["ref"]) == 16
    assert [p["status"] for p in found["match_partners"]] == ["ok"]
    assert found["match_partners"][0]["quota"]["used"] == 2  # both people seen, one name each
    shown = a.cli("level-two", "--include-match").out
    assert f"{b.node_id}:{hit['ref']}" in shown and "4 of 10 names today" in shown


def test_the_holders_set_follows_its_profiles(network):
    a, b = _match_pair(network)
    [before] = _result(_ask(a, "Newly", "Added", "1999-09-09"))
    pid = b.cli("profile", "add", "--first-name", "Newly", "--last-name", "Added", "--dob", "1999-09-09",
                "--json").json["id"]
    [after] = _result(_ask(a, "Newly", "Added", "1999-09-09"))
    assert (before["result"], after["result"]) == ("no-hit", "hit")
    b.cli("profile", "edit", pid, "--local-only")
    [hidden] = _result(_ask(a, "Newly", "Added", "1999-09-09"))
    assert hidden["result"] == "no-hit"


def _add_mary(a):
    a.cli("profile", "add", "--first-name", "Mary", "--last-name", "SMITH-JONES", "--dob", "2001-12-31")


def _level_two_mary(a):
    """A's Level Two with match-only partners, A holding Mary Smith-Jones as B does: her group, B's hit."""
    found = a.cli("level-two", "--include-match", "--json").json
    [group] = found["groups"]
    [hit] = group["match_hits"]
    return group, hit


def test_level_two_says_a_hit_is_not_revealed_until_the_holder_allows_it(network):
    a, b = _match_pair(network)
    _add_mary(a)
    group, hit = _level_two_mary(a)
    target = f"{b.node_id}:{hit['ref']}"
    assert hit["revealed"] is False and [p["origin"] for p in group["profiles"]] == [a.node_id]
    assert f"{target}  B BCRP (match-only): hit, not revealed (discnode reveal {target})" \
        in a.cli("level-two", "--include-match").out
    assert a.cli("reveal", target, "--json").json["state"] == "pending"
    group, hit = _level_two_mary(a)
    assert hit["revealed"] is False and [p["origin"] for p in group["profiles"]] == [a.node_id]
    assert "hit, not revealed" in a.cli("level-two", "--include-match").out


def test_level_two_shows_a_revealed_profile_in_its_group_with_its_partnership(network):
    a, b = _match_pair(network)
    _add_mary(a)
    _, hit = _level_two_mary(a)
    target = f"{b.node_id}:{hit['ref']}"
    request = a.cli("reveal", target, "--json").json["request"]
    b.cli("reveal", "allow", request)
    [record] = a.cli("reveal", target, "--json").json["records"]  # received, verified and kept
    group, hit = _level_two_mary(a)
    assert hit == {"node_id": b.node_id, "name": "B BCRP", "ref": target.split(":")[1], "revealed": True}
    assert group["partnerships"] == ["A BCRP", "B BCRP"]
    [revealed] = [p for p in group["profiles"] if p["origin"] == b.node_id]
    assert revealed == {"origin": b.node_id, "origin_name": "B BCRP", "id": record["id"], "first_name": "Mary",
                        "last_name": "Smith-Jones", "last_seen": record["last_seen"], "revealed_ref": hit["ref"]}
    assert group["suggested"] == []  # no links to propose to a match-only partner
    shown = a.cli("level-two", "--include-match").out
    assert f"{b.node_id}:{record['id']}  B BCRP (match-only, revealed: Mary Smith-Jones; reference {target})" \
        in shown
    assert "not revealed" not in shown
    assert b.home.db.execute("SELECT count(*) FROM reveal_requests").fetchone()[0] == 1  # no new request


def test_a_kept_revealed_record_is_verified_again_before_it_is_shown(network):
    a, b = _match_pair(network)
    _add_mary(a)
    _, hit = _level_two_mary(a)
    target = f"{b.node_id}:{hit['ref']}"
    b.cli("reveal", "allow", a.cli("reveal", target, "--json").json["request"])
    a.cli("reveal", target)
    [[kept]] = a.home.db.execute("SELECT records FROM revealed").fetchall()
    a.home.db.execute("UPDATE revealed SET records = ?", [kept.replace("Smith-Jones", "Forged-Name")])
    group, hit = _level_two_mary(a)
    assert hit["revealed"] is False and [p["origin"] for p in group["profiles"]] == [a.node_id]
    assert "Forged-Name" not in a.cli("level-two", "--include-match").out


def test_a_revealed_record_is_never_served_to_a_third_partner(network):
    a, b = _match_pair(network)
    c = network.node("C")
    network.agree(a, c)  # C shares profiles with A
    _add_mary(a)
    _, hit = _level_two_mary(a)
    target = f"{b.node_id}:{hit['ref']}"
    b.cli("reveal", "allow", a.cli("reveal", target, "--json").json["request"])
    [record] = a.cli("reveal", target, "--json").json["records"]
    assert a.home.db.execute("SELECT count(*) FROM revealed").fetchone()[0] == 1
    found = c.cli("search", "--all", "--json").json
    assert {r["origin"] for r in found["results"]} == {a.node_id}  # A's own Mary, and nothing of B's
    assert record["id"] not in json.dumps(found) and b.node_id not in json.dumps(found)
    status, body = send(a, "POST", "/v1/profiles/query",
                        *signed(c.home.identity, a, "POST", "/v1/profiles/query", {}))
    assert status == 200 and [r["origin"] for r in body["records"]] == [a.node_id]
    assert record["id"] not in json.dumps(body) and "Smith-Jones" not in json.dumps(body)  # A's is SMITH-JONES
    path = f"/v1/profiles/{record['id']}"
    status, body = send(a, "GET", path, *signed(c.home.identity, a, "GET", path))
    assert status == 404 and "Smith-Jones" not in json.dumps(body)
