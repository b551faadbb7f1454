"""Handling codes, children and ethnicity: what each partner is served, by its agreement's terms
(discnode/handling.py; protocol/discnode-v1.md section 8.9). Real nodes throughout."""

import datetime as dt
import json

import pytest

from discnode import handling, schemas, store
from discnode.consent import Terms
from discnode.errors import InvalidInput
from discnode.home import today
from discnode.signing import verify_document
from discnode.synthetic import portrait
from tests.nodes import send, signed

QUERY, FACETS = "/v1/profiles/query", "/v1/profiles/facets"


def ask(src, dst, method, path, payload=None):
    body, headers = signed(src.home.identity, dst, method, path, payload)
    return send(dst, method, path, body, headers)


def served_ids(src, dst, query=None):
    status, body = ask(src, dst, "POST", QUERY, query or {"limit": 200})
    assert status == 200, body
    return {r["id"] for r in body["records"]}


def add(node, *args, image=None, tmp_path=None):
    extra = []
    if image is not None:
        path = tmp_path / f"{image}.jpg"
        path.write_bytes(portrait(image))
        extra = ["--image", str(path)]
    return node.cli("profile", "add", *args, *extra, "--json").json


def born_years_ago(years: int, days: int = 0) -> str:
    return (handling.years_before(today(), years) + dt.timedelta(days=days)).isoformat()


# --- children --------------------------------------------------------------------------------


@pytest.fixture
def child(network, tmp_path):
    """B holds a 16-year-old's profile (with a photo) and an adult's; A has default terms with B."""
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    kid = add(b, "--first-name", "Kit", "--last-name", "Young", "--dob", born_years_ago(16),
              "--minor-reason", "Repeat thefts; parents informed", image=1, tmp_path=tmp_path)
    adult = add(b, "--first-name", "Al", "--last-name", "Grown", "--dob", "1980-01-01")
    return a, b, kid, adult


def test_minor_profile_is_local_only_by_default(child):
    a, b, kid, adult = child
    assert served_ids(a, b) == {adult["id"]}
    status, _ = ask(a, b, "GET", f"/v1/profiles/{kid['id']}")
    assert status == 404
    status, _ = ask(a, b, "GET", f"/v1/images/{kid['image']}?size=thumb")
    assert status == 404
    status, counts = ask(a, b, "POST", FACETS, {})
    assert counts["total"] == 1
    shown = a.cli("search", "--json").json
    assert {r["id"] for r in shown["results"]} == {adult["id"]}
    # Its own node sees it, marked as a child's, with its reason and a short review.
    own = b.cli("profile", "show", kid["id"]).out
    assert "under 18" in own and "Repeat thefts" in own
    assert kid["review_by"] <= (today() + dt.timedelta(days=handling.MINOR_REVIEW_DAYS)).isoformat()


def test_minor_profile_is_shared_under_the_minors_scope(network, child):
    _, b, kid, adult = child
    c = network.node("C")
    network.agree(c, b, "profiles", "images", "minors")
    assert served_ids(c, b) == {kid["id"], adult["id"]}
    status, body = ask(c, b, "GET", f"/v1/profiles/{kid['id']}")
    assert status == 200 and body["record"]["minor_reason"] == "Repeat thefts; parents informed"
    status, _ = ask(c, b, "GET", f"/v1/images/{kid['image']}?size=thumb")
    assert status == 200


def test_a_minor_needs_a_reason_and_nothing_is_written_without_one(cli):
    r = cli("profile", "add", "--first-name", "Kit", "--last-name", "Young", "--dob", born_years_ago(17), ok=False)
    assert "--minor-reason" in r.err and "Traceback" not in r.err
    assert store.count_profiles(store.connect(cli.home / "discnode.db")) == 0
    # An age range whose upper bound is under 18 is a child's too.
    r = cli("profile", "add", "--id-sought", "--age-min", "14", "--age-max", "17", ok=False)
    assert "--minor-reason" in r.err
    adult = cli("profile", "add", "--first-name", "Al", "--last-name", "Grown", "--dob", "1990-01-01", "--json").json
    r = cli("profile", "edit", adult["id"], "--dob", born_years_ago(17), ok=False)
    assert "--minor-reason" in r.err
    assert cli("profile", "show", adult["id"], "--json").json["dob"] == "1990-01-01"
    edited = cli("profile", "edit", adult["id"], "--dob", born_years_ago(17), "--minor-reason", "Held on police advice",
                 "--json").json
    assert edited["minor_reason"] == "Held on police advice"
    assert edited["review_by"] <= (today() + dt.timedelta(days=handling.MINOR_REVIEW_DAYS)).isoformat()
    far = (today() + dt.timedelta(days=300)).isoformat()
    r = cli("profile", "edit", adult["id"], "--review-by", far, ok=False)
    assert "under 18" in r.err


def test_a_minor_becomes_an_adult_on_the_18th_birthday(child, monkeypatch):
    a, b, _, adult = child
    # Eighteen tomorrow: a child's profile today, an adult's (shared by default terms) from tomorrow.
    nearly = add(b, "--first-name", "Nea", "--last-name", "Rly", "--dob", born_years_ago(18, days=1),
                 "--minor-reason", "Threatened staff")
    assert nearly["id"] not in served_ids(a, b)
    tomorrow = today() + dt.timedelta(days=1)
    monkeypatch.setattr("discnode.server.today", lambda: tomorrow)
    assert nearly["id"] in served_ids(a, b)


def test_the_age_rule_on_a_leap_day_birthday():
    record = {"dob": "2008-02-29"}
    assert handling.is_minor(record, dt.date(2026, 2, 28))
    assert not handling.is_minor(record, dt.date(2026, 3, 1))
    assert not handling.is_minor({"dob": None, "age_max": 18}, dt.date(2026, 1, 1))
    assert handling.is_minor({"dob": None, "age_max": 17}, dt.date(2026, 1, 1))
    assert not handling.is_minor({"dob": None, "age_max": None}, dt.date(2026, 1, 1))


# --- ethnicity -------------------------------------------------------------------------------


@pytest.fixture
def coded(network):
    """B holds one IC3 profile; A's terms with B exclude ethnicity, C's include it."""
    a, b, c = network.node("A"), network.node("B"), network.node("C")
    network.agree(a, b)
    network.agree(c, b, "profiles", "images", "ethnicity")
    person = add(b, "--first-name", "Eth", "--last-name", "Nic", "--ethnicity", "IC3", "--dob", "1985-05-05")
    return a, b, c, person


def test_ethnicity_withheld_from_a_partner_whose_terms_exclude_it(coded):
    a, b, c, person = coded
    status, body = ask(a, b, "POST", QUERY, {})
    (record,) = body["records"]
    assert "ethnicity" not in record and record["withheld"] == ["ethnicity"]
    assert "IC3" not in json.dumps(body)
    from discnode.peers import get
    verify_document(record, get(a.home.db, b.node_id).public_key)  # the origin's signature still verifies
    status, one = ask(a, b, "GET", f"/v1/profiles/{person['id']}")
    assert status == 200 and "ethnicity" not in one["record"]
    verify_document(one["record"], get(a.home.db, b.node_id).public_key)
    # Through the real Dataview: verified (not dropped), shown without it, and the status says why.
    shown = a.cli("search", "--json").json
    b_status = next(p for p in shown["peers"] if p["node_id"] == b.node_id)
    assert b_status["status"] == "ok" and b_status["dropped"] == 0 and b_status["withheld"] == ["ethnicity"]
    assert "ethnicity withheld" in a.cli("search").out
    fetched = a.cli("profile", "show", f"{b.node_id}:{person['id']}").out
    assert "withheld" in fetched and "IC3" not in fetched
    # The partner whose terms include it gets it.
    status, body = ask(c, b, "POST", QUERY, {})
    assert body["records"][0]["ethnicity"] == "IC3" and "withheld" not in body["records"][0]


def test_a_filter_on_withheld_ethnicity_is_not_an_oracle(coded):
    a, b, c, person = coded
    # Whatever the code asked for, the right one or a wrong one: no rows and no counts from B.
    for code in ("IC3", "IC1"):
        assert served_ids(a, b, {"ethnicity": [code]}) == set()
        status, counts = ask(a, b, "POST", FACETS, {"ethnicity": [code]})
        assert status == 200 and counts["total"] == 0
    status, counts = ask(a, b, "POST", FACETS, {})
    assert counts["total"] == 1 and counts["facets"]["ethnicity"] == {}
    assert a.cli("search", "--ethnicity", "IC3", "--json").json["results"] == []
    # Under terms that share it, the filter works as a filter.
    assert served_ids(c, b, {"ethnicity": ["IC3"]}) == {person["id"]}
    assert served_ids(c, b, {"ethnicity": ["IC1"]}) == set()
    status, counts = ask(c, b, "POST", FACETS, {})
    assert counts["facets"]["ethnicity"] == {"IC3": 1}


def test_rows_from_before_the_migration_get_their_withheld_view_signed(coded):
    a, b, _, person = coded
    db = b.home.db
    with store.write(db):
        db.execute("UPDATE profiles SET record_withheld = ''")  # as migration 016 leaves them
    assert served_ids(a, b) == set()  # never the full record in its place
    assert store.sign_missing_views(db, b.home.identity) == 1
    assert served_ids(a, b) == {person["id"]}
    assert a.cli("search", "--json").json["peers"][1]["dropped"] == 0


# --- handling codes --------------------------------------------------------------------------


@pytest.fixture
def graded(network, tmp_path):
    """B holds a C-graded profile (with a photo), a P profile with a C incident, and a P one.
    A has default terms; C takes C records under refer-to-originator; D only under staff-only."""
    a, b, c, d = (network.node(n) for n in "ABCD")
    network.agree(a, b)
    network.agree(c, b, "profiles", "images", "conditional", conditions=("refer-to-originator", "not-evidential"))
    network.agree(d, b, "profiles", "images", "conditional", conditions=("staff-only",))
    cond = add(b, "--first-name", "Con", "--last-name", "Ditional", "--grading", "2/B/C:refer-to-originator",
               image=2, tmp_path=tmp_path)
    mixed = add(b, "--first-name", "Mix", "--last-name", "Ed", "--grading", "1/A/P",
                "--incident", "2026-10-01|Co-op, High St|theft|razors|3/D/C:not-evidential")
    plain = add(b, "--first-name", "Plain", "--last-name", "Pee", "--grading", "1/A/P")
    return a, b, c, d, cond, mixed, plain


def test_c_graded_record_not_served_to_a_partner_without_its_conditions(graded):
    a, b, c, d, cond, mixed, plain = graded
    for partner in (a, d):
        assert served_ids(partner, b) == {plain["id"]}
        status, _ = ask(partner, b, "GET", f"/v1/profiles/{cond['id']}")
        assert status == 404
        status, _ = ask(partner, b, "GET", f"/v1/profiles/{mixed['id']}")
        assert status == 404
        status, _ = ask(partner, b, "GET", f"/v1/images/{cond['image']}?size=full")
        assert status == 404
        status, counts = ask(partner, b, "POST", FACETS, {})
        assert counts["total"] == 1


def test_c_graded_record_served_to_a_partner_accepting_its_conditions(graded):
    a, b, c, d, cond, mixed, plain = graded
    assert served_ids(c, b) == {cond["id"], mixed["id"], plain["id"]}
    status, body = ask(c, b, "GET", f"/v1/profiles/{cond['id']}")
    assert status == 200 and body["record"]["grading"] == {"source": 2, "intelligence": "B", "handling": "C",
                                                           "conditions": ["refer-to-originator"]}
    status, _ = ask(c, b, "GET", f"/v1/images/{cond['image']}?size=thumb")
    assert status == 200
    status, counts = ask(c, b, "POST", FACETS, {})
    assert counts["total"] == 3
    shown = c.cli("profile", "show", f"{b.node_id}:{mixed['id']}").out
    assert "1/A/P" in shown and "3/D/C:not-evidential" in shown
    # Both administrators can read the conditions they agreed to (`peer show` left them out once).
    for me, them in ((c, b), (b, c)):
        assert me.cli("peer", "show", them.node_id, "--json").json["terms"]["handling_conditions"] == [
            "not-evidential", "refer-to-originator"]
        assert "C records under" in me.cli("peer", "show", them.node_id).out


def test_a_grading_is_checked_and_shown(cli):
    for bad in ("4/A/P", "1/F/P", "1/A/C", "1/A/P:staff-only", "1/A/C:made-up", "nonsense"):
        r = cli("profile", "add", "--first-name", "A", "--last-name", "B", "--grading", bad, ok=False)
        assert "grading" in r.err or "condition" in r.err or "handling" in r.err, (bad, r.err)
        assert "Traceback" not in r.err
    record = cli("profile", "add", "--first-name", "A", "--last-name", "B", "--json").json
    assert record["grading"] == handling.DEFAULT_GRADING
    assert "2/C/P" in cli("profile", "show", record["id"]).out


def test_import_takes_gradings_and_minor_reasons(cli, tmp_path):
    path = tmp_path / "people.json"
    path.write_text(json.dumps([
        {"first_name": "G", "last_name": "Raded", "grading": "1/B/C:staff-only,refer-to-originator",
         "incidents": "2026-09-01|Boots|theft|lipsticks|2/A/P"},
        {"first_name": "K", "last_name": "Id", "dob": born_years_ago(16), "minor_reason": "Youth referral"},
    ]))
    assert cli("profile", "import", str(path), "--json").json["added"] == 2
    rows = cli("profile", "list", "--json").json
    graded = next(r for r in rows if r["first_name"] == "G")
    assert graded["grading"]["conditions"] == ["refer-to-originator", "staff-only"]
    assert graded["incidents"][0]["grading"]["intelligence"] == "A"
    path.write_text(json.dumps([{"first_name": "K2", "last_name": "Id", "dob": born_years_ago(16)}]))
    r = cli("profile", "import", str(path), ok=False)
    assert "row 1" in r.err and "minor" in r.err and "nothing was imported" in r.err


# --- the terms -------------------------------------------------------------------------------


def test_terms_for_the_new_scopes_are_checked():
    day = today()
    with pytest.raises(InvalidInput, match="handling conditions"):
        Terms.default(day, share=("profiles", "conditional"))
    with pytest.raises(InvalidInput, match="only be shared with profiles"):
        Terms.default(day, share=("match", "minors"))
    with pytest.raises(InvalidInput, match="only for agreements that share conditional"):
        Terms.default(day, handling_conditions=("staff-only",))
    with pytest.raises(InvalidInput, match="handling condition"):
        Terms.default(day, share=("profiles", "conditional"), handling_conditions=("made-up",))
    terms = Terms.default(day, share=("profiles", "conditional"), handling_conditions=("staff-only",))
    assert terms.to_wire()["handling_conditions"] == ["staff-only"]


def test_old_offers_without_the_new_fields_stay_valid_and_share_none_of_it(coded):
    """An offer as nodes made them before these scopes (profiles and images, nothing else) is still
    valid, and means: no ethnicity, no minors, no C-graded records."""
    a, b, _, person = coded
    from discnode import peers
    agreement = peers.agreement(b.home.db, b.node_id, a.node_id, today())
    assert agreement.active and set(agreement.offer["terms"]) == {"purpose", "share", "review_by"}
    schemas.validate("consent", agreement.offer)
    audience = handling.Audience.of_agreement(agreement)
    assert audience == handling.Audience() and audience.withheld == ["ethnicity"]
    assert served_ids(a, b) == {person["id"]}


def test_a_minors_profile_is_in_the_review_queue_within_6_months_and_reviews_stay_short(cli):
    kid = cli("profile", "add", "--first-name", "Kit", "--last-name", "Young", "--dob", born_years_ago(17),
              "--minor-reason", "Youth referral", "--json").json
    six_months = (today() + dt.timedelta(days=handling.MINOR_REVIEW_DAYS)).isoformat()
    assert kid["review_by"] == six_months
    items = cli("profile", "review", "--due", "--days", str(handling.MINOR_REVIEW_DAYS), "--json").json
    assert [i["ref"] for i in items] == [kid["id"]] and "under 18" in items[0]["summary"]
    # A review of a child's profile extends it by at most 6 months, whatever was asked.
    reviewed = cli("profile", "review", kid["id"], "--reason", "still offending", "--days", "365", "--json").json
    assert reviewed["review_by"] == six_months


@pytest.mark.parametrize("row", [
    {"grading": ["1", "A", "P"]},
    {"grading": {"source": 1, "intelligence": "A", "handling": "P", "conditions": "staff-only"}},
    {"grading": {"source": 7, "intelligence": "A", "handling": "P", "conditions": []}},
    {"incidents": [{"date": "2026-01-01", "place": "x", "type": "theft", "summary": "", "grading": "1/A/P"}]},
    {"incidents": ["2026-01-01|x|theft|"]},
    {"minor_reason": 5},
])
def test_an_import_with_a_malformed_grading_or_reason_is_refused_cleanly(cli, tmp_path, row):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"first_name": "A", "last_name": "B", **row}]))
    r = cli("profile", "import", str(path), ok=False)
    assert "row 1" in r.err and "nothing was imported" in r.err and "Traceback" not in r.err


def test_a_partner_cannot_report_a_sighting_of_a_profile_kept_from_it(child):
    """Documents about a profile follow the same rules as serving it: without `minors`, a partner's
    sighting of a child's profile is refused as if the profile did not exist."""
    from discnode.documents.sighting import new_sighting
    a, b, kid, adult = child
    path = "/v1/sightings"
    seen = today().isoformat()
    about_kid = new_sighting(a.home.identity, b.node_id, kid["id"], "Market", seen, f"{seen}T12:00:00Z")
    status, reply = send(b, "POST", path, *signed(a.home.identity, b, "POST", path, about_kid))
    assert status == 404 and "no shared profile" in reply["error"]["message"]
    about_adult = new_sighting(a.home.identity, b.node_id, adult["id"], "Market", seen, f"{seen}T12:00:00Z")
    status, _ = send(b, "POST", path, *signed(a.home.identity, b, "POST", path, about_adult))
    assert status == 200
