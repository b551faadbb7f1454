"""Statistics-only sharing: counts released at the source so that no count under 5 leaves a node
or can be derived by subtraction, a signed reply, and nothing else for a statistics-only partner."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random

import pytest

from discnode import audit, profiles, statsask, statistics
from discnode.documents.statistics import check_statistics, new_statistics
from discnode.errors import InvalidInput, Unauthenticated
from discnode.home import today
from discnode.statistics import MIN_COUNT, Incident, Tables, Window, release
from tests.nodes import send, signed

WINDOW = Window(dt.date(2026, 1, 5), dt.date(2026, 4, 26))  # 16 complete ISO weeks
TAGS = ["shoplifting", "violence", "drugs", "fraud"]


def random_incidents(rnd: random.Random, n: int, *, days: int = 112, places: int = 6) -> list[Incident]:
    return [Incident(WINDOW.first + dt.timedelta(days=rnd.randrange(days)),
                     rnd.choice([f"Shop {k}" for k in range(places)]),
                     tuple(sorted(rnd.sample(TAGS, rnd.randint(0, 2))))) for _ in range(n)]


def fragments(incidents: list[Incident]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for i in incidents:
        out[(i.week, i.month)] = out.get((i.week, i.month), 0) + 1
    return out


def adversary_derivations(tables: Tables) -> list[int]:
    """Every number a reader can get by subtracting within a table, from a total, or one table's
    sum from another's: each table's total minus any one cell, minus any two cells, and the
    differences of the tables' sums."""
    out = []
    cells_of = [list(tables.by_week.values()), list(tables.by_month.values()),
                [c["count"] for c in tables.by_area], [c["count"] for c in tables.by_tags]]
    sums = [sum(cells) for cells in cells_of]
    for cells in cells_of:
        for r in (1, 2):
            for chosen in itertools.combinations(range(len(cells)), r):
                out.append(tables.total - sum(cells[k] for k in chosen))
    out += [a - b for a, b in itertools.combinations(sums + [tables.total], 2)]
    return out


@pytest.mark.parametrize("seed", range(300))
def test_no_count_under_5_is_published_or_derivable_by_subtraction(seed):
    rnd = random.Random(seed)
    incidents = random_incidents(rnd, rnd.randint(0, 60), days=rnd.choice([7, 30, 112]),
                                 places=rnd.choice([1, 3, 12]))
    tables = release(incidents, WINDOW)
    assert all(n == 0 or n >= MIN_COUNT for n in tables.numbers())
    assert tables.inconsistency() == ""
    derived = adversary_derivations(tables)
    assert all(d == 0 or d >= MIN_COUNT or d < 0 for d in derived), derived
    # Weeks and months published together fix every week-and-month fragment: each is 0 or >= 5.
    counted = statistics.released(incidents, WINDOW)
    assert len(counted) == tables.total
    assert all(n >= MIN_COUNT for n in fragments(counted).values())
    # The reply depends on the released incidents only: releasing them alone gives the same tables.
    assert release(counted, WINDOW) == tables


def test_independent_rounding_would_let_subtraction_pin_a_suppressed_cell():
    """Why cells are not rounded one by one: weeks {4, 7, 7}, months {18} and places {7, 7, 4} over
    the same 18 incidents, each cell rounded to 5 and suppressed under 5, pin the suppressed week."""
    def rounded(n: int) -> int | None:
        return None if n < 5 else 5 * round(n / 5)

    def bounds(cells: list[int]) -> tuple[int, int]:  # what a reader knows of a table's total
        published = [rounded(n) for n in cells]
        return (sum(0 if p is None else max(5, p - 2) for p in published),
                sum(4 if p is None else p + 2 for p in published))
    weeks, months, places = [4, 7, 7], [18], [7, 7, 4]
    low = max(bounds(months)[0], bounds(places)[0], bounds(weeks)[0])
    high = min(bounds(months)[1], bounds(places)[1], bounds(weeks)[1])
    assert low == high == 18  # the total, exactly
    others_low, others_high = bounds(weeks[1:])
    assert rounded(weeks[0]) is None and max(0, low - others_high) == min(4, high - others_low) == 4
    # Released as this module does, the same incidents give no such handle.
    days = [WINDOW.first + dt.timedelta(days=7 * w) for w in range(3)]
    incidents = [Incident(days[w], f"Shop {p}", ()) for w, p in zip(
        [w for w, n in enumerate(weeks) for _ in range(n)], [p for p, n in enumerate(places) for _ in range(n)])]
    tables = release(incidents, WINDOW)
    assert all(n == 0 or n >= MIN_COUNT for n in tables.numbers()) and tables.inconsistency() == ""
    assert days[0].strftime("%G-W%V") not in tables.by_week


def test_places_and_tag_combinations_under_5_are_recoded_as_other():
    day = WINDOW.first
    incidents = ([Incident(day, "Boots,  High St", ("shoplifting",))] * 6
                 + [Incident(day, "boots, high st", ("shoplifting",))] * 1
                 + [Incident(day, f"Corner {k}", ("violence",)) for k in range(5)])
    tables = release(incidents, WINDOW)
    assert tables.total == 12
    assert tables.by_area == [{"area": "Boots, High St", "count": 7}, {"area": None, "count": 5}]
    assert tables.by_tags == [{"tags": ["shoplifting"], "count": 7}, {"tags": ["violence"], "count": 5}]
    assert tables.tag_counts() == ({"shoplifting": 7, "violence": 5}, 0)


def test_a_small_other_cell_withholds_its_incidents_everywhere():
    day = WINDOW.first
    incidents = [Incident(day, "Main", ())] * 5 + [Incident(day, "Lone", ())] * 2
    tables = release(incidents, WINDOW)
    assert tables.total == 5 and tables.by_week == {day.strftime("%G-W%V"): 5}
    assert tables.by_area == [{"area": "Main", "count": 5}]


def test_incidents_outside_the_window_are_not_counted():
    inside = [Incident(WINDOW.first, "A", ())] * 5
    outside = [Incident(WINDOW.last + dt.timedelta(days=1), "A", ())] * 9
    assert release(inside + outside, WINDOW).total == 5


def test_the_window_is_complete_iso_weeks_before_the_current_one():
    window = Window.ending_before(dt.date(2026, 11, 26))  # a Thursday
    assert window.last == dt.date(2026, 11, 22) and window.last.weekday() == 6
    assert window.first.weekday() == 0 and window.to_wire()["weeks"] == statistics.WINDOW_WEEKS


# --- real nodes ------------------------------------------------------------------------------

STATS = "/v1/statistics"


def last_monday() -> dt.date:
    now = today()
    return now - dt.timedelta(days=now.weekday() + 7)


def add_profile(node, incidents: list[tuple[dt.date, str]], *, tags=("shoplifting",), **fields):
    return profiles.add(node.home, {
        "status": "identified", "first_name": "Pat", "last_name": f"Example{random.randrange(10**6)}",
        "tags": list(tags),
        "incidents": [{"date": d.isoformat(), "place": place, "type": "theft", "summary": ""} for d, place in incidents],
        **fields})


def ask(src, dst, payload=None):
    body, headers = signed(src.home.identity, dst, "POST", STATS, {} if payload is None else payload)
    return send(dst, "POST", STATS, body, headers)


@pytest.fixture
def stats_pair(network):
    """A has a statistics-only agreement with B. B holds 8 incidents at Boots and 2 at a corner shop
    last week (shared), 9 on a local-only profile and 6 on a profile due for review tomorrow."""
    a, b = network.node("A"), network.node("B")
    a.cli("peer", "add", b.url, "--expect", b.node_id, "--share", "statistics")
    b.cli("peer", "accept", a.node_id)
    day = last_monday()
    add_profile(b, [(day, "Boots, High St")] * 5)
    add_profile(b, [(day, "Boots, High St")] * 3 + [(day, "Corner Shop")] * 2, tags=("violence",))
    add_profile(b, [(day, "Boots, High St")] * 9, local_only=True)
    add_profile(b, [(day, "Boots, High St")] * 6, review_by=(today() + dt.timedelta(days=1)).isoformat())
    return a, b


def test_the_signed_reply_carries_no_count_under_5_and_only_shareable_records(stats_pair, monkeypatch):
    a, b = stats_pair
    monkeypatch.setattr("discnode.server_statistics.today", lambda: today() + dt.timedelta(days=2))
    status, doc = ask(a, b)
    assert status == 200
    tables = check_statistics(doc, b.node_id, a.node_id, b.home.identity.public_key)
    # 10 shared incidents; the local-only and the overdue profiles' 15 are never counted. The
    # 2 at the corner shop go to "other places", which is then under 5: those 2 are withheld, and
    # so the violence combination (3 left) is withheld with them: 5 remain.
    numbers = tables.numbers()
    assert numbers and all(n == 0 or n >= MIN_COUNT for n in numbers)
    assert tables.total == 5 and tables.by_area == [{"area": "Boots, High St", "count": 5}]
    assert tables.by_tags == [{"tags": ["shoplifting"], "count": 5}]
    raw = json.dumps(doc)
    assert "Corner" not in raw and "Pat" not in raw and "Example" not in raw
    counts = {k: v for k, v in doc.items() if k != "v"}  # the protocol version is not a count
    assert not any(0 < n < MIN_COUNT for n in _all_ints(counts))
    served = [e for e in audit.entries(b.home.db) if e["detail"].get("what") == "statistics"]
    assert served and served[-1]["peer"] == a.node_id and served[-1]["detail"]["count"] == tables.total


def _all_ints(value):
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _all_ints(v)
    elif isinstance(value, list):
        for v in value:
            yield from _all_ints(v)


def test_counts_are_exact_over_what_is_released(stats_pair):
    a, b = stats_pair
    add_profile(b, [(last_monday(), "Boots, High St")] * 3, tags=("violence",))  # violence: 6 now
    status, doc = ask(a, b)
    assert status == 200
    tables = check_statistics(doc, b.node_id, a.node_id, b.home.identity.public_key)
    # Shared and in review: 5 + 3 + 3 at Boots, 2 at the corner shop (withheld: other places under 5),
    # and the profile due tomorrow's 6 (still within its review date today).
    assert tables.total == 17
    assert tables.by_area == [{"area": "Boots, High St", "count": 17}]
    assert tables.tag_counts() == ({"shoplifting": 11, "violence": 6}, 0)
    assert doc["window"]["weeks"] == statistics.WINDOW_WEEKS


def test_a_statistics_only_partner_gets_403_on_every_profile_and_image_endpoint(stats_pair):
    a, b = stats_pair
    record = profiles.add(b.home, {"status": "identified", "first_name": "Shown", "last_name": "Never"},
                          image_data=[_jpeg()])
    sha = record["image"]
    for method, path, payload in [
            ("POST", "/v1/profiles/query", {}), ("POST", "/v1/profiles/facets", {}),
            ("GET", f"/v1/profiles/{record['id']}", None), ("GET", f"/v1/images/{sha}", None),
            ("GET", f"/v1/images/{sha}?size=full", None),
            ("GET", "/v1/match/set", None), ("POST", "/v1/match/evaluate", {"blinded": []}),
            ("POST", "/v1/match/reveal", {"ref": "0" * 16}),
            ("POST", "/v1/proposals", {}), ("POST", "/v1/sightings", {}), ("POST", "/v1/links", {})]:
        body, headers = signed(a.home.identity, b, method, path, payload)
        status, reply = send(b, method, path, body, headers)
        assert status == 403, (path, status, reply)
    assert ask(a, b)[0] == 200


def test_a_profiles_partner_without_statistics_gets_403(network):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)  # profiles and images
    status, body = ask(a, b)
    assert status == 403 and "does not share statistics" in body["error"]["message"]
    refused = [e for e in audit.entries(b.home.db) if e["event"] == "refused" and e["detail"].get("path") == STATS]
    assert refused and refused[-1]["detail"]["status"] == 403


def test_a_stranger_and_a_bad_body_are_refused(network, stats_pair):
    a, b = stats_pair
    assert ask(network.node("C"), b)[0] == 403
    status, body = ask(a, b, {"since": "2026-01-01"})
    assert status == 400


def test_the_asker_verifies_and_reports_each_partner(stats_pair):
    a, b = stats_pair
    assert [p.node_id for p in statsask.statistics_partners(a.home)] == [b.node_id]
    got = a.loop.run(statsask.ask(a.home))
    assert [(g.name, g.status) for g in got] == [("B BCRP", "ok")] and got[0].tables.total >= MIN_COUNT


def test_a_reply_that_is_altered_or_misaddressed_is_refused(stats_pair):
    a, b = stats_pair
    _, doc = ask(a, b)
    key = b.home.identity.public_key
    with pytest.raises(Unauthenticated):
        check_statistics({**doc, "total": doc["total"] + 5}, b.node_id, a.node_id, key)
    with pytest.raises(Unauthenticated):
        check_statistics(doc, a.node_id, a.node_id, key)
    with pytest.raises(InvalidInput):
        check_statistics(doc, b.node_id, b.node_id, key)
    with pytest.raises(InvalidInput):  # a count under 5 is refused by the schema, whoever signed it
        new_statistics(b.home.identity, a.node_id, WINDOW,
                       Tables(3, {"2026-W02": 3}, {"2026-01": 3}, [{"area": "X", "count": 3}],
                              [{"tags": [], "count": 3}]), "2026-11-24T16:00:00Z")


def _jpeg() -> bytes:
    from discnode.synthetic import portrait
    return portrait(1)


def test_records_of_other_origins_in_the_database_are_never_counted(stats_pair):
    a, b = stats_pair
    _, before = ask(a, b)
    foreign = profiles.build_record({"status": "identified", "first_name": "Not", "last_name": "Ours",
                                     "incidents": [{"date": last_monday().isoformat(), "place": "Boots, High St",
                                                    "type": "theft", "summary": ""}] * 9}, a.node_id)
    from discnode.signing import sign_document
    from discnode import store
    store.put_profiles(b.home.db, [sign_document(foreign, a.home.identity)])
    _, after = ask(a, b)
    assert after["total"] == before["total"] and after["by_area"] == before["by_area"]


def _served(node) -> int:
    return sum(1 for e in audit.entries(node.home.db) if e["detail"].get("what") == "statistics")


def _fresh_reply(a, b, doc):
    """The reply computed afresh from b's database, with no cache, signed at the same time."""
    day = today()
    window = Window.ending_before(day)
    incidents = statistics.own_incidents(b.home.db, b.node_id, day, window)
    return new_statistics(b.home.identity, a.node_id, window, release(incidents, window), doc["issued_at"])


def test_a_cached_reply_is_byte_identical_to_a_fresh_one_and_every_request_is_audited(stats_pair):
    a, b = stats_pair
    _, first = ask(a, b)
    _, second = ask(a, b)  # from the cached release
    assert json.dumps(second) == json.dumps(_fresh_reply(a, b, second))
    assert {k: v for k, v in first.items() if k not in ("issued_at", "sig")} == \
        {k: v for k, v in second.items() if k not in ("issued_at", "sig")}
    assert _served(b) == 2


def test_a_profile_write_makes_the_next_statistics_reply_reflect_it(stats_pair):
    a, b = stats_pair
    _, before = ask(a, b)
    assert before["total"] == 11  # see test_counts_are_exact_over_what_is_released
    added = add_profile(b, [(last_monday(), "Boots, High St")] * 5, tags=("drugs",))  # a new record
    _, after_add = ask(a, b)
    assert after_add["total"] == 16
    assert json.dumps(after_add) == json.dumps(_fresh_reply(a, b, after_add))
    profiles.edit(b.home, added["id"], {"incidents": added["incidents"][:4]})  # an edit: drugs under 5
    _, after_edit = ask(a, b)
    assert after_edit["total"] == 11
    assert json.dumps(after_edit) == json.dumps(_fresh_reply(a, b, after_edit))
    profiles.delete(b.home, added["id"])  # an erasure
    _, after_delete = ask(a, b)
    assert after_delete["total"] == 11 and after_delete["by_tags"] == before["by_tags"]
    assert json.dumps(after_delete) == json.dumps(_fresh_reply(a, b, after_delete))
    assert _served(b) == 4


def test_the_statistics_window_moves_when_the_iso_week_rolls_over(stats_pair, monkeypatch):
    a, b = stats_pair
    _, now = ask(a, b)
    monkeypatch.setattr("discnode.server_statistics.today", lambda: today() + dt.timedelta(days=7))
    _, next_week = ask(a, b)
    assert next_week["window"]["from"] == (dt.date.fromisoformat(now["window"]["from"])
                                           + dt.timedelta(days=7)).isoformat()
    assert next_week["window"]["until"] > now["window"]["until"]
