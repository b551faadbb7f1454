"""The web Dataview in a real browser: Debian's Chromium driven by Playwright (CI installs it in
.ci/run). Most flows run with JavaScript off, as the pages must work without it; the checks that
hostile strings stay inert and that photos load run with it on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.web_fixtures import HOSTILE, WebNet, build, stop

CHROMIUM = os.environ.get("DISCNODE_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@contextlib.contextmanager
def outside_playwright():
    """Playwright's sync API marks its event loop as running in this thread, which would stop the
    real CLI (asyncio.run) from running here: step out of it while the CLI runs."""
    loop = asyncio.events._get_running_loop()
    asyncio.events._set_running_loop(None)
    try:
        yield
    finally:
        asyncio.events._set_running_loop(loop)


def cli(node, *args):  # type: ignore[no-untyped-def]
    with outside_playwright():
        return node.cli(*args)


@pytest.fixture
def net(network, tmp_path, browser):
    with outside_playwright():
        n = build(network, tmp_path, a_people=6, b_people=30)
    yield n
    stop(n)


def new_page(browser: Browser, *, js: bool = False) -> tuple[Page, list[str]]:
    context = browser.new_context(java_script_enabled=js, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:  # type: ignore[no-untyped-def]
        dialogs.append(dialog.message)
        dialog.dismiss()
    page.on("dialog", on_dialog)
    return page, dialogs


def logged_in(browser: Browser, net: WebNet, *, js: bool = False) -> tuple[Page, list[str]]:
    page, dialogs = new_page(browser, js=js)
    page.goto(net.login_url())
    expect(page).to_have_url(re.compile(r"/dataview$"))
    return page, dialogs


def facet_counts(page: Page, title: str) -> dict[str, int]:
    section = page.locator("section.facet", has=page.locator("h3", has_text=title))
    out = {}
    for item in section.locator("li").all():
        link = item.locator("a")
        if link.count():
            out[link.inner_text().strip()] = int(item.locator(".count").inner_text())
    return out


def test_login_with_the_token_and_refused_without_it(browser, net):
    page, _ = new_page(browser)
    page.goto(net.origin + "/dataview")
    expect(page.locator("body")).to_contain_text("Not logged in")
    page.goto(net.origin + "/login?token=guessed")
    expect(page.locator("body")).to_contain_text("invalid, used or expired")
    url = net.login_url()
    page.goto(url)
    expect(page.locator("h3", has_text="Partnership")).to_be_visible()
    other, _ = new_page(browser)
    other.goto(url)  # the same link again, in another browser: used up
    expect(other.locator("body")).to_contain_text("invalid, used or expired")


def test_filter_to_a_known_set_changes_the_facet_counts_and_pages(browser, net):
    page, _ = logged_in(browser, net)
    page.goto(net.origin + "/dataview?limit=10")
    before = facet_counts(page, "Gender")
    assert before["Male"] > 0 and before["Female"] > 0
    total = int(page.locator(".total strong").inner_text())
    assert total == 6 + 30
    page.locator("section.facet", has=page.locator("h3", has_text="Gender")).get_by_role("link", name="Female").click()
    after = facet_counts(page, "Gender")
    assert after == {"Female": before["Female"]}
    assert int(page.locator(".total strong").inner_text()) == before["Female"]
    page.get_by_role("link", name="Partnership").count()  # noqa: B018 - the facet exists
    first_page = page.locator(".card .name").all_inner_texts()
    assert len(first_page) == min(10, before["Female"])
    page.get_by_role("link", name="Next page »").click()
    second_page = page.locator(".card .name").all_inner_texts()
    assert second_page and not set(second_page) & set(first_page)
    assert facet_counts(page, "Gender") == {"Female": before["Female"]}  # paging keeps the query
    page.get_by_role("link", name="List").click()
    expect(page.locator("table.list")).to_be_visible()
    assert page.locator("table.list tbody tr").count() == len(second_page)


def test_partnership_status_and_latency_are_shown(browser, net):
    page, _ = logged_in(browser, net)
    item = page.locator("section.partnerships li", has_text="B BCRP")
    expect(item.locator(".status")).to_have_text(re.compile(r"ok · \d+ ms"))


def test_open_a_profile_and_see_its_photo(browser, net):
    page, _ = logged_in(browser, net, js=True)
    page.goto(net.origin + f"/dataview?partnership={net.b.node_id}&q=Bob03")
    page.locator(".card a").first.click()
    expect(page.locator("h1")).to_contain_text("Bob03 Partner")
    expect(page.locator(".provenance")).to_contain_text("B BCRP")
    expect(page.locator(".provenance")).to_contain_text("checked")
    photo = page.locator(".photos img").first
    expect(photo).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=photo.element_handle())
    assert photo.evaluate("img => img.naturalWidth") > 50
    assert photo.get_attribute("src").startswith(f"/thumb/{net.b.node_id}/")


def test_accept_an_offer_with_its_terms_shown_then_revoke_it(browser, net):
    page, _ = logged_in(browser, net)
    page.goto(net.origin + "/partners")
    section = page.locator("section.partner", has_text="C BCRP")
    expect(section.locator(".state")).to_have_text("pending")
    expect(section.locator("dl.terms")).to_contain_text("Tackling shop theft")
    expect(section.locator("dl.terms")).to_contain_text("profiles, images")
    section.get_by_role("button", name="Accept these terms").click()
    section = page.locator("section.partner", has_text="C BCRP")
    expect(section.locator(".state")).to_have_text("active")
    assert cli(net.c, "peer", "list", "--json").json[0]["state"] == "active"  # C was told
    section.get_by_role("link", name="Revoke…").click()
    expect(page.locator("h1")).to_contain_text("Stop sharing with C BCRP?")
    page.get_by_role("button", name="Revoke the agreement now").click()
    section = page.locator("section.partner", has_text="C BCRP")
    expect(section.locator(".state")).to_have_text("revoked")
    assert cli(net.c, "peer", "list", "--json").json[0]["state"] == "revoked"


def offer_form_to_a_new_node(browser: Browser, net: WebNet, network):  # type: ignore[no-untyped-def]
    """A new partnership D, and this node's offer form filled in with D's address and ID."""
    with outside_playwright():
        d = network.node("D")
    page, _ = logged_in(browser, net)
    page.goto(net.origin + "/partners")
    form = page.locator("form#offer")
    form.locator("input[name=url]").fill(d.url)
    form.locator("input[name=expect]").fill(d.node_id)
    return page, form, d


def test_make_an_offer_from_the_partners_page_and_the_partner_sees_it_pending(browser, net, network, tmp_path):
    """As `peer add`: the node's ID is checked first (a wrong one: refused, shown, nothing stored),
    then the signed offer with the typed terms reaches the other node. (Also docs/web-offer.png.)"""
    page, form, d = offer_form_to_a_new_node(browser, net, network)
    form.locator("input[name=purpose]").fill("Shop theft in the twin towns")
    form.locator("input[name=share][value=images]").uncheck()
    form.locator("input[name=review_by]").fill("2027-06-30")
    out = Path(os.environ.get("DISCNODE_SCREENSHOTS") or tmp_path)
    page.screenshot(path=str(out / "web-offer.png"), full_page=False)

    form.locator("input[name=expect]").fill(net.b.node_id)  # a real node ID, but not the one at that address
    form.get_by_role("button", name="Check the node and send the offer").click()
    expect(page.locator("form#offer .offer-error")).to_contain_text(f"does not have the ID {net.b.node_id}; NOT adding it")
    form = page.locator("form#offer")
    expect(form.locator("input[name=url]")).to_have_value(d.url)  # kept as typed
    expect(form.locator("input[name=share][value=images]")).not_to_be_checked()
    assert d.node_id not in {r["node_id"] for r in cli(net.a, "peer", "list", "--json").json}
    assert cli(d, "peer", "list", "--json").json == []

    form.locator("input[name=expect]").fill(d.node_id)
    form.get_by_role("button", name="Check the node and send the offer").click()
    expect(page.locator("#offered")).to_contain_text("Offer signed and sent to D BCRP")
    section = page.locator("section.partner", has_text="D BCRP")
    expect(section.locator(".state")).to_have_text("offered")
    expect(section.locator("dl.terms")).to_contain_text("Shop theft in the twin towns")
    expect(section.locator("dl.terms")).to_contain_text("2027-06-30")

    seen = {r["node_id"]: r for r in cli(d, "peer", "list", "--json").json}
    assert seen[net.a.node_id]["state"] == "pending"
    terms = cli(d, "peer", "show", net.a.node_id, "--json").json["terms"]
    assert (terms["purpose"], terms["share"], terms["review_by"], terms["offered_by"]) == (
        "Shop theft in the twin towns", ["profiles"], "2027-06-30", "them")
    sent = [e for e in cli(net.a, "audit", "--json").json if e["event"] == "consent-offer-sent"]
    assert [(e["peer"], e["detail"]["url"]) for e in sent] == [(d.node_id, d.url)]  # as `peer add` audits it


def test_offer_c_graded_records_under_ticked_conditions_from_the_partners_page(browser, net, network):
    page, form, d = offer_form_to_a_new_node(browser, net, network)
    form.locator("input[name=share][value=conditional]").check()
    form.locator("input[name=handling_condition][value=not-evidential]").check()
    form.get_by_role("button", name="Check the node and send the offer").click()
    expect(page.locator("#offered")).to_contain_text("Offer signed and sent to D BCRP")
    section = page.locator("section.partner", has_text="D BCRP")
    expect(section.locator("dl.terms")).to_contain_text("C records under")
    expect(section.locator("dl.terms")).to_contain_text("not-evidential")
    terms = cli(d, "peer", "show", net.a.node_id, "--json").json["terms"]
    assert (terms["share"], terms["handling_conditions"]) == (["profiles", "images", "conditional"], ["not-evidential"])


def test_a_script_in_partner_data_renders_inert(browser, net):
    page, dialogs = logged_in(browser, net, js=True)
    page.goto(net.origin + "/dataview?q=script")
    card = page.locator(".card .name").first
    expect(card).to_have_text(f"{HOSTILE} {HOSTILE}")
    card.click()
    expect(page.locator("h1")).to_contain_text(HOSTILE)
    page.goto(net.origin + "/partners")
    expect(page.locator("section.partner", has_text="C BCRP")).to_contain_text(HOSTILE)
    page.goto(net.origin + "/dataview?q=script&view=list")
    expect(page.locator("table.list")).to_contain_text(HOSTILE)
    assert dialogs == []
    assert page.evaluate("typeof window.owned") == "undefined"


def test_add_edit_review_and_delete_my_own_profile(browser, net, tmp_path):
    from discnode.synthetic import portrait
    photo = tmp_path / "new.jpg"
    photo.write_bytes(portrait(7))
    page, _ = logged_in(browser, net)
    page.goto(net.origin + "/mine/new")
    page.fill("input[name=first_name]", "Newly")
    page.fill("input[name=last_name]", "Added")
    page.select_option("select[name=gender]", "female")
    page.check("input[name=tags][value=shoplifting]")
    page.set_input_files("input[name=image]", str(photo))
    page.get_by_role("button", name="Add profile").click()
    expect(page.locator("h1")).to_contain_text("Newly Added")
    expect(page.locator(".photos img")).to_have_count(1)
    page.get_by_role("link", name="Edit").click()
    page.fill("input[name=marks]", "scar over left eye")
    second = tmp_path / "second.jpg"
    second.write_bytes(portrait(8))
    page.set_input_files("input[name=image]", str(second))
    page.get_by_role("button", name="Save").click()
    expect(page.locator("dl.fields")).to_contain_text("scar over left eye")
    expect(page.locator(".photos img")).to_have_count(2)
    page.goto(net.origin + "/mine")
    row = page.locator("tr", has_text="Newly Added")
    row.get_by_role("button", name="Reviewed").click()
    page.locator("tr", has_text="Newly Added").get_by_role("link", name="Delete…").click()
    expect(page.locator("h1")).to_have_text("Delete this profile?")
    page.get_by_role("button", name="Delete it and its photos").click()
    expect(page.locator("table.list")).not_to_contain_text("Newly Added")
    assert "Added" not in cli(net.a, "profile", "list", "--json").out


def test_bad_input_gets_a_clear_error_page(browser, net):
    page, _ = logged_in(browser, net)
    response = page.goto(net.origin + "/dataview?gender=martian")
    assert response is not None and response.status == 400
    expect(page.locator(".error .message")).to_contain_text("martian")


SHOTS = [("dataview", "/dataview?gender=female&limit=24"), ("dataview-list", "/dataview?view=list&limit=24"),
         ("profile", None), ("partners", "/partners"), ("audit", "/audit?limit=30")]


def test_screenshots_of_the_main_pages(browser, net, tmp_path):
    """Also how docs/ gets its pictures: DISCNODE_SCREENSHOTS=docs pytest tests/test_web_browser.py -k screenshots"""
    out = Path(os.environ.get("DISCNODE_SCREENSHOTS") or tmp_path)
    page, _ = logged_in(browser, net, js=True)
    for name, path in SHOTS:
        if path is None:
            page.goto(net.origin + f"/dataview?partnership={net.b.node_id}&q=Bob01")
            page.locator(".card a").first.click()
        else:
            page.goto(net.origin + path)
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(out / f"web-{name}.png"), full_page=False)
        assert (out / f"web-{name}.png").stat().st_size > 10_000


def test_confirm_a_partners_proposal_from_the_inbox(browser, net, tmp_path):
    """B tells A who A's ID-sought person is; A's administrator sees it in the inbox, confirms it
    with a reason, and the profile is identified. (Also docs/web-inbox.png, as the screenshots.)"""
    x = cli(net.a, "profile", "add", "--id-sought", "--age-min", "20", "--age-max", "30", "--marks", "red coat",
            "--json").json["id"]
    bob = {r["first_name"]: r["id"] for r in cli(net.b, "profile", "list", "--json").json}["Bob05"]
    pid = cli(net.b, "propose", f"{net.a.node_id}:{x}", "--as", bob, "--note", "known at Market St",
              "--json").json["id"]
    page, _ = logged_in(browser, net)
    page.get_by_role("link", name="Inbox").click()
    expect(page.locator("h1")).to_have_text("Inbox")
    item = page.locator(f"#item-{pid}")
    expect(item).to_contain_text(f"proposes profile {x} is Bob05 Partner")
    expect(item).to_contain_text(net.b.node_id)
    expect(page.locator("section.kind-offer")).to_contain_text("C BCRP offers to share")
    expect(page.locator("section.kind-offer").get_by_role("link", name="Answer it on the Partners page")).to_be_visible()
    out = Path(os.environ.get("DISCNODE_SCREENSHOTS") or tmp_path)
    page.screenshot(path=str(out / "web-inbox.png"), full_page=False)
    item.locator("input[name=reason]").fill("Our PCSO knows her from Market St")
    item.get_by_role("button", name="Confirm: identify the profile").click()
    expect(page).to_have_url(re.compile(r"/inbox$"))
    expect(page.locator(f"#item-{pid}")).to_have_count(0)
    page.goto(net.origin + f"/profile/{net.a.node_id}/{x}")
    expect(page.locator("h1")).to_contain_text("Bob05 Partner")
    shown = cli(net.a, "profile", "show", x, "--json").json
    assert (shown["status"], shown["first_name"], shown["marks"]) == ("identified", "Bob05", "red coat")
    sent = {p["id"]: p for p in cli(net.b, "proposal", "list", "--json").json}[pid]
    assert (sent["state"], sent["outcome_reason"]) == ("confirmed", "Our PCSO knows her from Market St")
