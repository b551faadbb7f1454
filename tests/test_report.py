"""`discnode report`: figures across this node, a profiles partner and a statistics-only partner,
equal to direct counts over the same records; tables, JSON, CSV, charts and the web page."""

from __future__ import annotations

import csv
import datetime as dt
import json
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from discnode import profiles, report, statistics, store
from discnode.home import today
from discnode.synthetic import portrait

MIN = statistics.MIN_COUNT


def _add(node, first, last, incidents, *, tags=("shoplifting",), dob="1990-01-02", **fields):
    return profiles.add(node.home, {
        "status": "identified", "first_name": first, "last_name": last, "dob": dob, "tags": list(tags),
        "incidents": [{"date": d.isoformat(), "place": place, "type": "theft", "summary": ""}
                      for d, place in incidents], **fields})


@pytest.fixture
def trio(network):
    """A (us) shares profiles with B; C shares statistics only with A."""
    a, b, c = network.node("A"), network.node("B"), network.node("C")
    network.agree(a, b)
    a.cli("peer", "add", c.url, "--expect", c.node_id, "--share", "statistics")
    c.cli("peer", "accept", a.node_id)
    now = today()
    last_week = now - dt.timedelta(days=now.weekday() + 7)      # a Monday
    two_weeks = last_week - dt.timedelta(days=7)
    long_ago = now - dt.timedelta(days=40)                      # in the previous period
    _add(a, "Jane", "Repeat", [(last_week, "Boots"), (two_weeks, "Boots"), (long_ago, "Boots")],
         tags=("shoplifting", "violence"))
    _add(a, "Solo", "Ours", [(last_week, "Co-op")], tags=())
    _add(a, "Kept", "Home", [(last_week, "Co-op")] * 3, local_only=True)   # ours: counted in our report
    profiles.add(a.home, {"status": "id-sought", "tags": ["shoplifting"],
                          "incidents": [{"date": last_week.isoformat(), "place": "Boots", "type": "theft",
                                         "summary": ""}]}, image_data=[portrait(3)])
    # B: Jane Repeat again (Level Two with A), an exclusion in force, a local-only profile never seen.
    _add(b, "JANE", "Repeat", [(last_week, "Tesco")], tags=("shoplifting",),
         exclusion={"from": (now - dt.timedelta(days=10)).isoformat(),
                    "until": (now + dt.timedelta(days=100)).isoformat(), "where": "all member premises"})
    _add(b, "Bea", "Partner", [(two_weeks, "Tesco")] * 2 + [(long_ago, "Tesco")] * 4, tags=("drugs",), dob="1985-05-05")
    _add(b, "Hidden", "Local", [(last_week, "Tesco")] * 7, local_only=True)
    # C: 6 + 2 incidents last week; the 2 at a lone place are withheld by C's release.
    _add(c, "Cee", "Stats", [(last_week, "Market")] * 6 + [(last_week, "Lone")] * 2, tags=("fraud",))
    return a, b, c, now - dt.timedelta(days=27), now


def _direct(node, me_only_shareable: bool, since: dt.date, until: dt.date) -> dict:
    """Counted straight from a node's database: its own records (shareable ones only if a partner's)."""
    where = "origin = ? AND batch IS NULL" + (" AND local_only = 0 AND review_by >= ?" if me_only_shareable else "")
    params = [node.node_id] + ([today().isoformat()] if me_only_shareable else [])
    records = [json.loads(r[0]) for r in node.home.db.execute(f"SELECT record FROM profiles WHERE {where}", params)]
    incidents = [(i, r) for r in records for i in r["incidents"] if since.isoformat() <= i["date"] <= until.isoformat()]
    tags: dict[str, int] = {}
    for _, r in incidents:
        for t in r["tags"] or [report.UNTAGGED]:
            tags[t] = tags.get(t, 0) + 1
    per_profile = {}
    for _, r in incidents:
        per_profile[r["id"]] = per_profile.get(r["id"], 0) + 1
    return {"total": len(incidents), "tags": tags, "repeat": sum(1 for n in per_profile.values() if n >= 2),
            "excluded": sum(1 for r in records if r["exclusion"]
                            and r["exclusion"]["from"] <= today().isoformat() <= r["exclusion"]["until"]),
            "new_images": sum(1 for r in records if r["status"] == "id-sought" and r["image"]
                              and since.isoformat() <= r["created"][:10] <= until.isoformat())}


def test_report_figures_equal_a_direct_count_over_the_same_records(trio, tmp_path):
    a, b, c, since, until = trio
    data = a.cli("report", "--since", since, "--until", until, "--json").json
    ours, theirs = _direct(a, False, since, until), _direct(b, True, since, until)
    # C's part: its own release, computed here from its database, whole weeks of the period.
    window = statistics.Window.ending_before(today())
    released = statistics.release(statistics.own_incidents(c.home.db, c.node_id, today(), window), window)
    whole = report.Period(since, until).whole_weeks()
    c_total = sum(n for w, n in released.by_week.items() if w in whole)
    assert c_total == 6
    by_partnership = {r["node_id"]: r["count"] for r in data["by_partnership"]}
    assert by_partnership == {a.node_id: ours["total"], b.node_id: theirs["total"], c.node_id: c_total}
    assert data["incidents"]["count"] == ours["total"] + theirs["total"] + c_total
    assert sum(r["count"] for r in data["by_week"]) == data["incidents"]["count"]
    expected_tags = {t: ours["tags"].get(t, 0) + theirs["tags"].get(t, 0) for t in set(ours["tags"]) | set(theirs["tags"])}
    assert {r["tag"]: r["count"] for r in data["by_tag"] if r["count"]} == expected_tags
    assert data["repeat_people"]["count"] == ours["repeat"] + theirs["repeat"] == 3
    assert data["exclusions_in_force"]["count"] == ours["excluded"] + theirs["excluded"] == 1
    assert data["new_id_sought_images"]["count"] == ours["new_images"] + theirs["new_images"] == 1
    assert [g["partnerships"] for g in data["level_two"]["people"]] == [["A BCRP", "B BCRP"]]
    assert data["level_two"]["count"] == 1
    stats = data["statistics_partners"]
    assert [(s["name"], s["status"], s["period_total"], s["tags"]) for s in stats] == [("C BCRP", "ok", 6, {"fraud": 6})]
    # B's local-only profile never reached us; its 7 incidents are nowhere.
    assert "Hidden" not in json.dumps(data)


def test_change_against_the_previous_period(trio):
    a, b, c, since, until = trio
    data = a.cli("report", "--since", since, "--until", until, "--json").json
    prev = report.Period(since, until).previous()
    ours, theirs = _direct(a, False, prev.since, prev.until), _direct(b, True, prev.since, prev.until)
    assert data["incidents"]["previous"] == ours["total"] + theirs["total"] == 5
    row = {r["node_id"]: r for r in data["by_partnership"]}[b.node_id]
    assert (row["previous"], row["change"]) == (4, row["count"] - 4)


def test_tables_csv_and_charts_are_written(trio, tmp_path):
    a, *_ = trio
    out = a.cli("report", "--weeks", "4", "--csv", tmp_path / "csv", "--charts", tmp_path / "charts")
    assert "Incidents by offence tag" in out.out and "Level Two people: 1" in out.out
    with (tmp_path / "csv" / "by_tag.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    data = a.cli("report", "--weeks", "4", "--json").json
    assert [(r["tag"], int(r["count"])) for r in rows] == [(r["tag"], r["count"]) for r in data["by_tag"]]
    for name in report.CHARTS:
        png = tmp_path / "charts" / f"{name}.png"
        with Image.open(png) as image:
            image.verify()
            assert image.format == "PNG"
        root = ET.parse(tmp_path / "charts" / f"{name}.svg").getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert not list(root.iter("{http://www.w3.org/2000/svg}script"))
        assert (png.stat().st_mode & 0o777) == 0o600


def test_bad_periods_are_refused_and_change_nothing(trio):
    a, *_ = trio
    before = a.cli("audit", "--json").out
    for args, words in [(("--weeks", "0"), "--weeks must be"), (("--since", "2026-13-01"), "not a date"),
                        (("--since", "2026-01-10", "--until", "2026-01-01"), "before --since"),
                        (("--weeks", "2", "--since", "2026-01-01"), "not both"),
                        (("--since", (today() + dt.timedelta(days=1)).isoformat()), "future")]:
        err = a.cli("report", *args, ok=False).err
        assert words in err and "Traceback" not in err
    assert a.cli("audit", "--json").out == before


def test_a_report_is_audited(trio):
    a, *_ = trio
    a.cli("report", "--weeks", "2", "--json")
    from discnode import audit
    entries = [e for e in audit.entries(a.home.db) if e["event"] == "report"]
    assert entries and entries[-1]["detail"]["profiles"] >= 1


def test_an_unreachable_statistics_partner_is_reported_not_guessed(trio):
    a, b, c, since, until = trio
    c.stop()
    data = a.cli("report", "--since", since, "--until", until, "--json", "--timeout", "1").json
    row = data["statistics_partners"][0]
    assert row["status"] in ("unreachable", "timeout") and row["period_total"] is None
    assert {r["node_id"]: r["count"] for r in data["by_partnership"]}[c.node_id] == 0


def test_the_web_report_page_its_json_twin_and_its_chart_files(trio, tmp_path):
    from discnode import localapi
    from tests.test_web import login
    from tests.web_fixtures import get

    a, b, c, since, until = trio
    running = a.loop.run(localapi.start(a.home))
    ui = a.loop.run(running.local.start_ui())

    class _Net:  # the parts of web_fixtures.WebNet that get() and login() use
        origin = ui.origin
        network = type("Loop", (), {"loop": a.loop})()

        def login_url(self):
            return ui.login_url("Report Tester")
    try:
        jar, _ = login(_Net())
        query = f"?since={since}&until={until}"
        status, headers, body = get(_Net(), f"/report.json{query}", jar=jar)
        assert status == 200
        data = json.loads(body)
        direct = a.cli("report", "--since", since, "--until", until, "--json").json
        for key in ("incidents", "by_tag", "by_partnership", "by_week", "by_month", "repeat_people", "level_two",
                    "exclusions_in_force", "new_id_sought_images"):
            assert data[key] == direct[key], key
        status, headers, html = get(_Net(), f"/report{query}", jar=jar)
        assert status == 200 and b"<script" not in html
        assert "script-src" not in headers["Content-Security-Policy"] and "default-src 'none'" in headers[
            "Content-Security-Policy"]
        for name in report.CHARTS:
            src = f"/report/chart/{name}.svg?since={since}&amp;until={until}".encode()
            assert src in html
            status, headers, svg = get(_Net(), f"/report/chart/{name}.svg{query}", jar=jar)
            assert status == 200 and headers["Content-Type"].startswith("image/svg+xml")
            assert ET.fromstring(svg).tag == "{http://www.w3.org/2000/svg}svg"
            status, headers, png = get(_Net(), f"/report/chart/{name}.png{query}", jar=jar)
            assert status == 200 and png.startswith(b"\x89PNG\r\n\x1a\n")
        assert get(_Net(), f"/report.json{query}")[0] == 401  # no session, no report
        assert get(_Net(), "/report.json?weeks=x", jar=jar)[0] == 400
    finally:
        a.loop.run(running.stop())


def test_the_progress_callback_hears_from_every_source_once(trio):
    a, b, c, since, until = trio
    heard: list[tuple[str, str]] = []
    data = a.loop.run(report.gather(a.home, report.Period(since, until), on_source=lambda n, s: heard.append((n, s))))
    assert sorted(heard) == [("A BCRP", "ok"), ("B BCRP", "ok"), ("C BCRP", "ok")]
    assert report.total_sources(a.home) == 3 and data["incidents"]["count"] > 0


def test_a_partnership_name_is_drawn_as_typed_never_parsed():
    data = {"period": {"since": "2026-10-26", "until": "2026-11-22"}, "by_week": [], "by_month": [], "by_tag": [],
            "by_partnership": [{"name": "Evil $\\frac{$ BCRP", "count": 3}, {"name": "<script>", "count": 1}]}
    svg = report.chart_bytes(data, "by_partnership", "svg")
    assert ET.fromstring(svg).tag == "{http://www.w3.org/2000/svg}svg" and b"<script" not in svg
    assert report.chart_bytes(data, "by_partnership", "png").startswith(b"\x89PNG")


def _without_timings(data: dict) -> dict:
    return {**{k: v for k, v in data.items() if k != "ms"},
            "sources": [{k: v for k, v in s.items() if k != "ms"} for s in data["sources"]],
            "statistics_partners": [{k: v for k, v in s.items() if k != "ms"} for s in data["statistics_partners"]]}


def test_a_report_forwarded_to_the_daemon_gives_the_same_json_and_audit_entry(trio, network, capsys):
    from discnode import audit, fastpath, localapi
    a, *_ = trio
    running = network.loop.run(localapi.start(a.home))
    try:
        direct = a.cli("report", "--weeks", "4", "--json").json
        capsys.readouterr()
        code = fastpath.forward(["--home", str(a.cli.home), "report", "--weeks", "4", "--json"])
        out = capsys.readouterr().out
        assert code == 0
        via_daemon = json.loads(out)
        assert via_daemon["incidents"]["count"] > 0 and via_daemon["statistics_partners"][0]["status"] == "ok"
        assert _without_timings(via_daemon) == _without_timings(direct)
        reports = [e for e in audit.entries(a.home.db) if e["event"] == "report"]
        assert len(reports) == 2
        assert (reports[0]["detail"], reports[0]["actor"]) == (reports[1]["detail"], reports[1]["actor"])
        # The tables, for the caller's terminal, from the daemon too; files are written only by the
        # command line itself (a relative folder would be the daemon's).
        capsys.readouterr()
        assert fastpath.forward(["--home", str(a.cli.home), "report", "--weeks", "4"]) == 0
        assert "Incidents by offence tag" in capsys.readouterr().out
        for option in ("--csv", "--charts"):
            assert fastpath.forward(["--home", str(a.cli.home), "report", option, "out"]) is None
            assert fastpath.forward(["--home", str(a.cli.home), "report", f"{option}=out"]) is None
        assert fastpath.forwardable(["search", "--csv"])  # a flag there, not a folder
    finally:
        network.loop.run(running.stop())
