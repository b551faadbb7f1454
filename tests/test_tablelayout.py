"""tablelayout.py prints exactly what rich prints: the results table (any columns output.table
builds) and the partners' status lines, byte for byte, at every width from 40 to 250 columns, to a
terminal (each colour system) and to a pipe, for any printable text a partner could send. Where it
does not lay a table out itself (returns None), output.table uses rich, so equality holds there
trivially; the last tests check that the hand-written path is the one taken for real pages."""

from __future__ import annotations

import io
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from discnode import output, tablelayout
from discnode.text import printable

#: Text that has tripped table renderers: wide CJK, combining marks, emoji with skin tones and
#: joiners, a variation selector, zero-width characters (made visible by printable), long
#: unbroken words, markup and escapes that rich must not interpret, trailing spaces and backslashes.
SPECIAL = ["", " ", "漢字テスト", "e\u0301te\u0301", "a\u0300\u0301\u0302", "👍🏽", "👨\u200d👩\u200d👧", "❤\ufe0f",
           "\u200b", "\u200d", "\ufe0f", "x" * 70, "Ω" * 45, "漢" * 40, "[bold]x[/]", "[/]", "\\[not]", "a\\",
           "\\", "[link=http://e.example]y[/link]", ":police_car:", "  lead", "trail  ", "a  b", "…", "─",
           "Seán Ó Ríordáin", "٣٤٥ عربي", "\u0301start", "ｗｉｄｅ"]

texts = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=30),
    st.sampled_from(SPECIAL),
    st.lists(st.one_of(st.sampled_from(SPECIAL), st.text("ab 漢e\u0301-", max_size=12)), max_size=5).map(" ".join),
    st.from_regex(r"[a-z]{1,15}( [a-z]{1,15}){0,6}", fullmatch=True),
).map(printable)  # as output.table shows every value

NAMES = ["partnership", "from", "id", "name", "look", "look, born", "born", "last seen", "tags", "x", "status"]
KINDS = ["whole", "words", "nowrap", "fold"]


def console_for(width: int, tty: bool, colours: str | None) -> Console:
    """The console forward.py gives a forwarded command (and output.py's own, on a terminal)."""
    return Console(file=io.StringIO(), width=width, height=25, force_terminal=tty,
                   color_system=colours if tty else None, highlight=True, emoji=False)


def printed(console: Console, fast: bool, title: str | None, columns: list[str], rows: list[list[str]],
            kinds: list[str]) -> tuple[str, bool]:
    """What output.table prints, through tablelayout (fast) or rich; and whether tablelayout laid it out."""
    saved = output.console
    output.console = console
    try:
        shown = [[printable(v) for v in row] for row in rows]
        named = {k: tuple(c for c, kind in zip(columns, kinds) if kind == k) for k in KINDS}
        layout = output.column_kinds(columns, shown, nowrap=named["nowrap"], whole=named["whole"], words=named["words"])
        laid = None
        if fast:
            laid = tablelayout.table(console, printable(title) if title else None, columns, shown, *layout[:1],
                                     fixed=layout[1], min_widths=layout[2], narrow=output.narrow())
            if laid is not None:
                console.print(laid)
        if laid is None:
            output.rich_table(title, columns, shown, *layout)
    finally:
        output.console = saved
    return console.file.getvalue(), laid is not None  # type: ignore[attr-defined]


terminals = st.tuples(st.integers(40, 250), st.booleans(), st.sampled_from(["standard", "256", "truecolor"]))


@st.composite
def tables(draw: Any) -> tuple[str | None, list[str], list[list[str]], list[str]]:
    count = draw(st.integers(1, 7))
    columns = draw(st.lists(st.sampled_from(NAMES), min_size=count, max_size=count, unique=True))
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=count, max_size=count))
    rows = draw(st.lists(st.lists(texts, min_size=count, max_size=count), max_size=6))
    title = draw(st.one_of(st.none(), texts.filter(bool), st.just("Dataview of Hub BCRP: 50 result(s)")))
    return title, columns, rows, kinds


def assert_same(terminal: tuple[int, bool, str], title: str | None, columns: list[str],
                rows: list[list[str]], kinds: list[str]) -> bool:
    width, tty, colours = terminal
    fast, laid = printed(console_for(width, tty, colours), True, title, columns, rows, kinds)
    reference, _ = printed(console_for(width, tty, colours), False, title, columns, rows, kinds)
    assert fast == reference, (width, tty, colours)
    return laid


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(terminals, tables())
def test_any_table_prints_the_same_bytes_as_rich(terminal, table):
    assert_same(terminal, *table)


SEARCH_COLUMNS = {False: ("partnership", "id", "name", "look", "born", "last seen", "tags"),
                  True: ("from", "id", "name", "look, born", "last seen", "tags")}
SEARCH_KINDS = {False: ["words", "whole", "fold", "fold", "nowrap", "nowrap", "words"],
                True: ["words", "whole", "fold", "fold", "nowrap", "words"]}


@st.composite
def search_rows(draw: Any, narrow: bool) -> list[list[str]]:
    """Rows shaped like a search page's (profile_row), with any text in the partner's fields."""
    rows = []
    for _ in range(draw(st.integers(0, 8))):
        origin = draw(st.one_of(texts, st.sampled_from(["Camden", "Westminster BCRP", "漢字 BCRP"])))
        ref = draw(st.one_of(st.from_regex(r"[0-9a-f]{8}-[0-9a-f]{4}", fullmatch=True), texts))
        name = draw(texts)
        look = draw(st.one_of(st.sampled_from(["M W1 slim", "F -- medium", "? B2 heavy 1990"]), texts))
        dates = [draw(st.one_of(st.sampled_from(["1990-01-01", "~20-35y", ""]), texts)) for _ in range(2)]
        tags = draw(st.one_of(st.sampled_from(["shoplifting, violence", "anti-social behaviour", ""]), texts))
        rows.append([origin, ref, name, look, *(dates[1:] if narrow else dates), tags])
    return rows


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(terminals, st.data())
def test_search_pages_print_the_same_bytes_as_rich(terminal, data):
    narrow = terminal[0] < output.WIDE
    rows = data.draw(search_rows(narrow))
    title = data.draw(st.one_of(texts.map(lambda t: f"Dataview of {t}: {len(rows)} result(s)"), st.none()))
    assert_same(terminal, title, list(SEARCH_COLUMNS[narrow]), rows, SEARCH_KINDS[narrow])


@settings(max_examples=400, deadline=None)
@given(terminals, st.lists(st.tuples(st.sampled_from(["green", "red"]), texts, texts), max_size=4))
def test_status_lines_print_the_same_bytes_as_rich(terminal, lines):
    width, tty, colours = terminal
    fast, reference = console_for(width, tty, colours), console_for(width, tty, colours)
    saved = output.console
    try:
        output.console = fast
        output.status_lines(lines)
    finally:
        output.console = saved
    for colour, status, rest in lines:
        reference.print(f"  [{colour}]{output.escape(status)}[/]{output.escape(rest)}", highlight=False)
    assert fast.file.getvalue() == reference.file.getvalue()  # type: ignore[attr-defined]


def page_rows(narrow: bool) -> list[list[str]]:
    people = [("Camden BCRP", "Ann", "Smith", "1988-04-02", "shoplifting, violence"),
              ("Westminster BCRP", "Bob", "O'Brien-Jones", "", "anti-social behaviour"),
              ("Islington and Hackney BCRP", "Seán", "Ó Ríordáin", "1975-11-30", "fraud, criminal damage, drugs")]
    rows = []
    for i in range(50):
        origin, first, last, born, tags = people[i % 3]
        look = "M W1 medium" + (f" {born[:4]}" if narrow else "")
        rows.append([origin.removesuffix(" BCRP") if narrow else origin, f"{i:08x}-7d3c-4b8e", f"{first} {last}",
                     look, *([] if narrow else [born]), "2026-11-20", tags])
    return rows


@pytest.mark.parametrize("width", [80, 100, 120, 160, 250])
@pytest.mark.parametrize("tty", [False, True])
def test_a_real_search_page_is_laid_out_by_hand_and_equal(width, tty):
    """Not only equal: the hand-written layout is the path taken for a page of 50 results."""
    narrow = width < output.WIDE
    laid = assert_same((width, tty, "standard"), "Dataview of Hub BCRP: 50 result(s)", list(SEARCH_COLUMNS[narrow]),
                       page_rows(narrow), SEARCH_KINDS[narrow])
    assert laid


def test_a_table_wider_than_the_terminal_is_left_to_rich():
    """An ID column that must stay whole in 40 columns: rich crops the lines; tablelayout declines."""
    console = console_for(40, False, None)
    shown = [["x" * 60, "name"]]
    assert tablelayout.table(console, None, ["id", "name"], shown, ["whole", "fold"], fixed=[None, None],
                             min_widths=[60, None], narrow=True) is None
