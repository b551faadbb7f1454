"""The web Dataview over HTTP: who may use it, what it refuses, and that its pages and `.json`
twins carry the same data. (tests/test_web_browser.py drives it in Chromium.)"""

from __future__ import annotations

import datetime as dt
import json
import re

import aiohttp
import pytest

from tests.web_fixtures import HOSTILE as HOSTILE_NAME
from tests.web_fixtures import WebNet, build, get, stop


@pytest.fixture
def net(network, tmp_path):
    n = build(network, tmp_path, a_people=3, b_people=8)
    yield n
    stop(n)


def login(net: WebNet) -> tuple[aiohttp.CookieJar, str]:
    """Log in with a fresh token; the session cookie and the CSRF token of a page."""
    async def make_jar() -> aiohttp.CookieJar:
        return aiohttp.CookieJar(unsafe=True)
    jar = net.network.loop.run(make_jar())
    token_path = net.login_url().removeprefix(net.origin)
    status, headers, _ = get(net, token_path, jar=jar)
    assert status == 303 and headers["Location"] == "/dataview"
    status, _, body = get(net, "/mine", jar=jar)
    assert status == 200
    csrf = re.search(rb'name="csrf" value="([^"]+)"', body).group(1).decode()
    return jar, csrf


def test_pages_refuse_without_a_session(net):
    for path in ("/dataview", "/dataview.json", "/partners", "/audit.json", "/mine"):
        status, _, body = get(net, path)
        assert status == 401, path
        assert b"discnode ui" in body


def test_login_token_works_once_and_sets_a_strict_httponly_cookie(net):
    url = net.login_url().removeprefix(net.origin)
    status, headers, _ = get(net, url)
    assert status == 303
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    status, _, _ = get(net, url)
    assert status == 401  # used up
    status, _, _ = get(net, "/login?token=not-a-token")
    assert status == 401


def test_other_host_names_are_refused(net):
    jar, _ = login(net)
    status, _, _ = get(net, "/dataview", jar=jar, headers={"Host": "evil.example:%d" % net.ui.port})
    assert status == 421
    status, _, _ = get(net, "/dataview", jar=jar, headers={"Host": "localhost"})
    assert status == 421


def test_every_response_has_a_strict_content_security_policy(net):
    jar, _ = login(net)
    for path in ("/dataview", "/login", "/nope", "/static/style.css"):
        _, headers, _ = get(net, path, jar=jar)
        assert "default-src 'none'" in headers["Content-Security-Policy"], path
        assert "script-src" not in headers["Content-Security-Policy"]  # so: no script at all
        assert headers["X-Content-Type-Options"] == "nosniff"


def test_forms_without_the_csrf_token_change_nothing(net):
    jar, csrf = login(net)
    c = net.c.node_id
    status, _, _ = get(net, f"/partners/{c}/accept", jar=jar, method="POST", data={"csrf": "wrong"})
    assert status == 403
    status, _, _ = get(net, f"/partners/{c}/accept", jar=jar, method="POST", data={"csrf": csrf},
                       headers={"Origin": "http://evil.example"})
    assert status == 403
    rows = {r["node_id"]: r for r in json.loads(get(net, "/partners.json", jar=jar)[2])["partners"]}
    assert rows[c]["state"] == "pending"
    status, headers, _ = get(net, f"/partners/{c}/accept", jar=jar, method="POST", data={"csrf": csrf})
    assert status == 303
    rows = {r["node_id"]: r for r in json.loads(get(net, "/partners.json", jar=jar)[2])["partners"]}
    assert rows[c]["state"] == "active"


def _offer_form(url: str, expect: str, *, share: tuple[str, ...] = ("profiles", "images"),
                conditions: tuple[str, ...] = (), **terms: object) -> aiohttp.FormData:
    form = aiohttp.FormData()
    fields = {"url": url, "expect": expect, "purpose": "Shop theft in the twin towns",
              "review_by": (dt.date.today() + dt.timedelta(days=200)).isoformat(),
              **terms}
    for name, value in fields.items():
        form.add_field(name, str(value))
    for kind in share:
        form.add_field("share", kind)
    for code in conditions:
        form.add_field("handling_condition", code)
    return form


def test_an_offer_form_without_the_csrf_token_offers_nothing(net):
    d = net.network.node("D")
    jar, csrf = login(net)
    for token, headers in (("wrong", {}), (csrf, {"Origin": "http://evil.example"})):
        form = _offer_form(d.url, d.node_id)
        form.add_field("csrf", token)
        status, _, _ = get(net, "/partners/offer", jar=jar, method="POST", data=form, headers=headers)
        assert status == 403
    assert d.node_id not in {r["node_id"] for r in net.a.cli("peer", "list", "--json").json}
    assert d.cli("peer", "list", "--json").json == []


def test_an_offer_with_bad_terms_is_refused_with_the_reason_and_stores_nothing(net):
    d = net.network.node("D")
    jar, csrf = login(net)
    before = net.a.cli("audit", "--limit", "1000", "--json").json
    for terms, reason in (({"review_by": "2001-01-01"}, b"review-by must be in the future"),
                          ({"review_by": "soon"}, b"is not a date YYYY-MM-DD"),
                          ({"purpose": " "}, b"purpose must be 1 to 500 characters"),
                          ({"match_quota": "lots"}, b"is not a whole number"),
                          ({"expect": "NOT-AN-ID"}, b"node ID"),
                          ({"url": "http://127.0.0.1:1/path"}, b"a peer URL is https://HOST:PORT only")):
        url = terms.pop("url", d.url)
        form = _offer_form(url, terms.pop("expect", d.node_id), **terms)  # type: ignore[arg-type]
        form.add_field("csrf", csrf)
        status, _, body = get(net, "/partners/offer", jar=jar, method="POST", data=form)
        assert status == 400, terms
        shown = re.search(rb'<p class="offer-error" role="alert">Not offered: ([^<]*)</p>', body)
        assert shown is not None and reason in shown.group(1), (terms, shown and shown.group(1))
        assert b"Shop theft in the twin towns" in body or terms.get("purpose") == " "  # shown as typed
    assert d.node_id not in {r["node_id"] for r in net.a.cli("peer", "list", "--json").json}
    assert d.cli("peer", "list", "--json").json == []
    assert net.a.cli("audit", "--limit", "1000", "--json").json == before


def test_an_offer_of_c_graded_records_carries_the_ticked_handling_conditions(net):
    """`peer add --share conditional --handling-condition ...` from the web form: without a
    condition ticked it is refused as the CLI refuses it (nothing stored or sent); with them, the
    partner receives signed terms naming exactly those conditions, and both pages show them."""
    d = net.network.node("D")
    jar, csrf = login(net)
    share = ("profiles", "images", "conditional")
    form = _offer_form(d.url, d.node_id, share=share)
    form.add_field("csrf", csrf)
    status, _, body = get(net, "/partners/offer", jar=jar, method="POST", data=form)
    assert status == 400 and b"needs the handling conditions the partner accepts" in body
    assert d.cli("peer", "list", "--json").json == []
    for bad in (("refer-to-originator", "not-a-condition"),):
        form = _offer_form(d.url, d.node_id, share=share, conditions=bad)
        form.add_field("csrf", csrf)
        status, _, body = get(net, "/partners/offer", jar=jar, method="POST", data=form)
        assert status == 400 and b"not-a-condition" in body
    assert d.cli("peer", "list", "--json").json == []

    form = _offer_form(d.url, d.node_id, share=share, conditions=("staff-only", "refer-to-originator"))
    form.add_field("csrf", csrf)
    status, _, _ = get(net, "/partners/offer", jar=jar, method="POST", data=form)
    assert status == 303
    terms = d.cli("peer", "show", net.a.node_id, "--json").json["terms"]
    assert terms["share"] == ["profiles", "images", "conditional"]
    assert terms["handling_conditions"] == ["refer-to-originator", "staff-only"]
    rows = {r["node_id"]: r for r in json.loads(get(net, "/partners.json", jar=jar)[2])["partners"]}
    assert rows[d.node_id]["terms"]["handling_conditions"] == ["refer-to-originator", "staff-only"]
    _, _, html = get(net, "/partners", jar=jar)
    assert b"<dt>C records under</dt><dd>refer-to-originator, staff-only</dd>" in html


def test_dataview_html_and_json_twin_show_the_same_rows_and_facets(net):
    jar, _ = login(net)
    data = json.loads(get(net, "/dataview.json?gender=female", jar=jar)[2])
    _, _, html = get(net, "/dataview?gender=female", jar=jar)
    names = [r["display_name"] for r in data["results"]]
    assert names and all(r["gender"] == "female" for r in data["results"])
    for name in names:
        assert name.encode() in html
    assert data["total"] == len(names)
    assert {r["code"]: r["count"] for r in data["facets"]["gender"]} == {"female": len(names)}
    sources = {s["node_id"]: s for s in data["partnerships"]}
    assert sources[net.b.node_id]["status"] == "ok" and sources[net.b.node_id]["total"] >= 1


def test_hostile_strings_are_escaped(net):
    jar, _ = login(net)
    _, _, html = get(net, "/dataview?q=script", jar=jar)
    assert b"<script>" not in html
    assert b"&lt;script&gt;" in html
    _, _, html = get(net, "/partners", jar=jar)
    assert b"<script>" not in html and b"&lt;script&gt;" in html


def test_facet_counts_never_cover_local_only_records(net):
    net.b.cli("profile", "add", "--first-name", "Hidden", "--last-name", "Localonly", "--local-only")
    jar, _ = login(net)
    data = json.loads(get(net, "/dataview.json?q=Localonly", jar=jar)[2])
    sources = {s["node_id"]: s for s in data["partnerships"]}
    assert sources[net.b.node_id]["total"] == 0
    assert data["results"] == []


def test_thumbnails_of_partners_come_from_the_ui_origin(net):
    jar, _ = login(net)
    data = json.loads(get(net, "/dataview.json?partnership=" + net.b.node_id, jar=jar)[2])
    thumb = data["results"][0]["thumb"]
    assert thumb.startswith(f"/thumb/{net.b.node_id}/")
    status, headers, body = get(net, thumb, jar=jar)
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and body.startswith(b"\xff\xd8")
    status, _, _ = get(net, f"/thumb/{net.b.node_id}/..%2F..%2Fetc%2Fpasswd", jar=jar)
    assert status == 404


def test_ui_listens_on_loopback_only(net):
    assert net.ui.runner.addresses == [("127.0.0.1", net.ui.port)]


def _proposal_from_b(net: WebNet) -> tuple[str, str]:
    """B proposes that an ID-sought profile of A's is B's profile named `<script>...` (real nodes,
    real signatures); returns (A's profile ID, the proposal's ID)."""
    from tests.web_fixtures import HOSTILE
    x = net.a.cli("profile", "add", "--id-sought", "--age-min", "20", "--age-max", "30", "--json").json["id"]
    mine = {r["first_name"]: r["id"] for r in net.b.cli("profile", "list", "--json").json}
    sent = net.b.cli("propose", f"{net.a.node_id}:{x}", "--as", mine[HOSTILE], "--note", "known at Market St",
                     "--json").json
    assert sent["delivered"] is True
    return x, sent["id"]


def test_inbox_page_and_json_twin_list_a_partners_proposal_as_the_cli_does(net):
    x, pid = _proposal_from_b(net)
    jar, _ = login(net)
    data = json.loads(get(net, "/inbox.json", jar=jar)[2])
    cli_items = net.a.cli("inbox", "--json").json
    assert [{k: i[k] for k in c} for i, c in zip(data["items"], cli_items)] == cli_items
    assert len(data["items"]) == len(cli_items)
    proposal = next(i for i in data["items"] if i["id"] == pid)
    assert (proposal["kind"], proposal["from"], proposal["about"]) == ("proposal", net.b.node_id, x)
    assert proposal["created"]
    assert "offer" in {i["kind"] for i in data["items"]}  # C's offer, linked to the Partners page
    status, _, html = get(net, "/inbox", jar=jar)
    assert status == 200
    assert f'action="/inbox/proposal/{pid}/confirm"'.encode() in html
    assert f'formaction="/inbox/proposal/{pid}/decline"'.encode() in html
    assert b'href="/partners">Answer it on the Partners page' in html
    assert b'href="/inbox" class="here"' in html
    assert b"<script>" not in html and b"&lt;script&gt;" in html  # B's person's name, escaped


def test_inbox_post_without_csrf_changes_nothing_and_confirming_identifies_the_profile(net):
    x, pid = _proposal_from_b(net)
    jar, csrf = login(net)
    url = f"/inbox/proposal/{pid}/confirm"
    status, _, _ = get(net, url, jar=jar, method="POST", data={"reason": "seen"})
    assert status == 403
    status, _, _ = get(net, url, jar=jar, method="POST", data={"csrf": "wrong", "reason": "seen"})
    assert status == 403
    status, _, _ = get(net, url, jar=jar, method="POST", data={"csrf": csrf, "reason": "seen"},
                       headers={"Origin": "http://evil.example"})
    assert status == 403
    assert net.a.cli("profile", "show", x, "--json").json["status"] == "id-sought"
    assert pid in {i["id"] for i in json.loads(get(net, "/inbox.json", jar=jar)[2])["items"]}
    status, headers, _ = get(net, url, jar=jar, method="POST", data={"csrf": csrf, "reason": "our PCSO knows her"})
    assert (status, headers["Location"]) == (303, "/inbox")
    shown = net.a.cli("profile", "show", x, "--json").json
    assert shown["status"] == "identified" and shown["last_name"] == HOSTILE_NAME
    assert pid not in {i["id"] for i in json.loads(get(net, "/inbox.json", jar=jar)[2])["items"]}
    sent = {p["id"]: p for p in net.b.cli("proposal", "list", "--json").json}
    assert (sent[pid]["state"], sent[pid]["outcome_reason"]) == ("confirmed", "our PCSO knows her")
    status, _, _ = get(net, url, jar=jar, method="POST", data={"csrf": csrf, "reason": "again"})
    assert status == 409  # already confirmed: a clear error, nothing changes


def test_declining_from_the_inbox_needs_a_reason_and_tells_the_proposer(net):
    x, pid = _proposal_from_b(net)
    jar, csrf = login(net)
    url = f"/inbox/proposal/{pid}/decline"
    status, _, body = get(net, url, jar=jar, method="POST", data={"csrf": csrf, "reason": ""})
    assert status == 400 and b"reason" in body
    assert pid in {i["id"] for i in json.loads(get(net, "/inbox.json", jar=jar)[2])["items"]}
    status, _, _ = get(net, url, jar=jar, method="POST", data={"csrf": csrf, "reason": "in custody that day"})
    assert status == 303
    assert net.a.cli("profile", "show", x, "--json").json["status"] == "id-sought"
    sent = {p["id"]: p for p in net.b.cli("proposal", "list", "--json").json}
    assert (sent[pid]["state"], sent[pid]["outcome_reason"]) == ("declined", "in custody that day")


def test_web_dataview_says_which_partnerships_withheld_ethnicity(net):
    """B's agreement with A does not share ethnicity: the facet panel says so, B's rows and profile
    page show it as withheld, and a filter on ethnicity shows only A's own rows."""
    jar, _ = login(net)
    data = json.loads(get(net, "/dataview.json", jar=jar)[2])
    assert data["ethnicity_withheld_by"] == ["B BCRP"]
    sources = {s["node_id"]: s for s in data["partnerships"]}
    assert sources[net.b.node_id]["withheld"] == ["ethnicity"] and sources[net.a.node_id]["withheld"] == []
    assert sum(row["count"] for row in data["facets"]["ethnicity"]) == sources[net.a.node_id]["total"] == 3
    theirs = [r for r in data["results"] if r["origin"] == net.b.node_id]
    assert theirs and all(r["ethnicity_shown"] == "withheld" and r["grading_text"] == "2/C/P" for r in theirs)
    page = get(net, "/dataview", jar=jar)[2].decode()
    assert "Ethnicity withheld by B BCRP" in page
    filtered = json.loads(get(net, "/dataview.json?ethnicity=IC3", jar=jar)[2])
    assert filtered["results"] and {r["origin"] for r in filtered["results"]} == {net.a.node_id}
    profile = get(net, f"/profile/{net.b.node_id}/{theirs[0]['id']}", jar=jar)[2].decode()
    assert "withheld: the agreement with this partnership does not share ethnicity" in profile
    assert "2/C/P" in profile
