"""Level Two: people known to several partnerships, matched strictly (name or alias, and birth date)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from discnode.leveltwo import fold, groups


def person(origin, pid, first, last, dob="1988-04-02", aliases=(), status="identified"):
    return {"origin": origin, "origin_name": f"{origin} BCRP", "id": pid, "first_name": first, "last_name": last,
            "aliases": list(aliases), "dob": dob, "status": status, "last_seen": None}


def test_same_name_and_birth_date_in_two_partnerships_is_one_group():
    found = groups([person("A", "a1", "Dale", "Wanderer"), person("C", "c1", "dale", "WANDERER"),
                    person("A", "a2", "Someone", "Else")])
    assert [(g.name, g.dob, g.partnerships) for g in found] == [("Dale Wanderer", "1988-04-02", ["A BCRP", "C BCRP"])]


@pytest.mark.parametrize("other", [
    person("C", "c1", "Dale", "Wanderer", dob="1988-04-03"),  # another birth date
    person("C", "c1", "Dale", "Wanderer", dob=None),          # no birth date: a name alone never links
    person("C", "c1", "", "", dob="1988-04-02", status="id-sought"),
])
def test_no_link_without_the_same_birth_date_and_a_name(other):
    assert groups([person("A", "a1", "Dale", "Wanderer"), other]) == []


def test_one_partnership_alone_is_not_level_two():
    assert groups([person("A", "a1", "Dale", "Wanderer"), person("A", "a2", "Dale", "Wanderer")]) == []


def test_aliases_link_and_links_chain():
    found = groups([person("A", "a1", "Dale", "Wanderer"),
                    person("B", "b1", "D", "Walker", aliases=["Dale Wanderer"]),
                    person("C", "c1", "Danny", "Walker", aliases=["D Walker"])])
    assert len(found) == 1 and found[0].partnerships == ["A BCRP", "B BCRP", "C BCRP"]
    assert groups(found[0].profiles, min_partnerships=4) == []


def test_folding_ignores_case_accents_and_punctuation():
    assert fold("  O’Brien,  Seán ") == fold("obrien sean") == "obrien sean"


@given(st.lists(st.tuples(st.sampled_from("ABC"), st.sampled_from(["Ann Lee", "Bo Ray", "Cy Ode"]),
                          st.sampled_from(["1990-01-01", "1991-02-02", None])), max_size=25))
def test_groups_are_disjoint_span_partnerships_and_share_a_birth_date(rows):
    records = [person(o, f"p{i}", *name.split(), dob=dob) for i, (o, name, dob) in enumerate(rows)]
    found = groups(records)
    ids = [p["id"] for g in found for p in g.profiles]
    assert len(ids) == len(set(ids))
    for g in found:
        assert len(g.partnerships) >= 2 and {p["dob"] for p in g.profiles} == {g.dob}
    expected = {(name, dob) for o, name, dob in rows if dob
                and len({o2 for o2, n2, d2 in rows if (n2, d2) == (name, dob)}) >= 2}
    assert {(g.name, g.dob) for g in found} == expected


def add_wanderer(node, **names):
    first, last = names.get("first", "Dale"), names.get("last", "Wanderer")
    return node.cli("profile", "add", "--first-name", first, "--last-name", last, "--gender", "male",
                    "--ethnicity", "IC1", "--build", "slim", "--dob", "1988-04-02", "--json").json["id"]


def test_level_two_across_real_nodes_sees_only_consenting_partnerships(network):
    a, b, c = network.node("A"), network.node("B"), network.node("C")
    network.agree(a, b)
    network.agree(b, c)
    ids = {"A": add_wanderer(a), "C": add_wanderer(c, last="WANDERER")}
    add_wanderer(a, first="Other")
    r = b.cli("level-two", "--json").json
    assert [(g["name"], g["partnerships"]) for g in r["groups"]] == [("Dale Wanderer", ["A BCRP", "C BCRP"])]
    assert {(p["origin"], p["id"]) for p in r["groups"][0]["profiles"]} == {(a.node_id, ids["A"]), (c.node_id, ids["C"])}
    assert r["profiles"] == 3 and {p["status"] for p in r["peers"]} == {"ok"}
    assert a.cli("level-two", "--json").json["groups"] == []  # A never sees C
    assert "Dale Wanderer" in b.cli("level-two").out
    assert [e for e in b.cli("audit", "--json").json if e["event"] == "level-two"]


@pytest.mark.parametrize("args, words", [(["--min-partnerships", "1"], "--min-partnerships"),
                                         (["--timeout", "0"], "timeout")])
def test_level_two_refuses_bad_options(cli, args, words):
    before = cli("audit", "--json").json
    assert words in cli("level-two", *args, ok=False).err
    assert cli("audit", "--json").json == before


def test_group_name_does_not_depend_on_which_partnership_came_first():
    rows = [person("A", "a1", "Dale", "WANDERER"), person("C", "c1", "Dale", "Wanderer")]
    assert groups(rows)[0].name == groups(rows[::-1])[0].name == "Dale Wanderer"
