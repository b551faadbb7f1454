"""The `search` results table and the partners' status lines, laid out by hand as rich lays them out.

Why by hand: rich is the reference for how these look, but its general layout engine (a Padding, a
Text, a markup parse and a measurement per cell, segments cropped and re-padded at every level)
spends 20-26 ms of CPU on a search page (50 rows x 7 columns and 30 partners' status lines), on a
served `search` whose whole budget is 150 ms; this module prints the same bytes in ~3 ms. For the
one table shape `output.table` builds (SIMPLE_HEAD box, left-justified columns that are whole,
word-wrapped at a fixed width, cut with an ellipsis, or folded) and the status lines, it computes
the column widths by rich's rules and builds each line as text. Cells too long for their column,
and the title, are wrapped by rich's own `Text.wrap`; character widths are rich's `cell_len` and
`set_cell_size`; the segments go to the console's `print`, which writes them (styles included) as
it writes anything else.

Every function returns None for a case outside what tests/test_tablelayout.py proves byte-equal to
rich (a console that is not UTF-8 or soft-wraps, a table wider than the terminal, a column with no
room, a status line that would wrap or holds markup-like text), and the caller then uses rich.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from rich.cells import cell_len, set_cell_size
from rich.console import Console, ConsoleOptions, RenderResult
from rich.markup import escape
from rich.markup import render as render_markup
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text

# Two of rich's own steps for shrinking columns, reused rather than copied; a rich without them
# (they are private) gets its own layout engine for every table.
try:
    from rich._ratio import ratio_reduce
    _collapse_widths = Table._collapse_widths
except (ImportError, AttributeError):  # pragma: no cover - another rich than the tests prove
    ratio_reduce = _collapse_widths = None  # type: ignore[assignment]

#: What a column does with text longer than its width (output.table's keywords).
WHOLE, WORDS, ELLIPSIS, FOLD = "whole", "words", "ellipsis", "fold"

_BLANK = Style.null()


@dataclass(frozen=True)
class Rendered:
    """Segments already laid out, printed by `console.print` (which crops to the console's width,
    applies styles for its colour system and writes to its file, capture or recording)."""

    segments: list[Segment]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self.segments


def usable(console: Console) -> bool:
    """Whether the console renders as the tests prove: UTF-8 (rich swaps in an ASCII box
    otherwise), not a legacy Windows console, not a notebook, not soft-wrapping (which leaves
    a long title whole)."""
    return (console.encoding.lower().startswith("utf") and not console.legacy_windows
            and not console.is_jupyter and not console.soft_wrap)


def as_rich_shows(text: str) -> str:
    """The text rich shows for `escape(text)` as markup: the text itself, except where rich's
    escaping does not round-trip (a trailing backslash is shown doubled). Parsed only when a
    backslash or bracket is there to matter."""
    if "\\" not in text and "[" not in text:
        return text
    return render_markup(escape(text), emoji=False).plain


def _measure(texts: Iterable[str], limit: int, pad: int) -> tuple[int, int]:
    """rich's Measurement.get of a column's cells (each a Padding of a Text), as Table measures
    them: (the widest word, the widest line), plus the padding, within `limit`."""
    low, high, any_cell = 0, 0, False
    for text in texts:
        any_cell = True
        if limit - pad < 1:  # Padding.__rich_measure__
            lo, hi = _get(limit, limit, limit)
        else:
            hi = cell_len(text)  # printable: one line
            words = text.split()
            lo = max(map(cell_len, words)) if words else hi
            if 0 <= lo <= hi:  # what the steps below come to then (measured by the tests)
                lo, hi = min(lo + pad, limit), min(hi + pad, limit)
            else:
                lo, hi = _get(lo, hi, limit)
                lo, hi = _get(min(lo + pad, limit), min(hi + pad, limit), limit)
        low, high = max(low, lo), max(high, hi)
    return (low, high) if any_cell else (1, limit)


def _get(lo: int, hi: int, limit: int) -> tuple[int, int]:
    """Measurement.get's normalize, with_maximum, zero and normalize again."""
    lo = min(max(0, lo), hi)
    lo, hi = max(0, lo), max(0, max(lo, hi))
    lo, hi = min(lo, limit), min(hi, limit)
    if hi < 1:
        return 0, 0
    lo = min(max(0, lo), hi)
    return max(0, lo), max(0, max(lo, hi))


def _column_range(texts: Sequence[str], kind: str, fixed: int | None, min_width: int | None,
                  limit: int, pad: int) -> tuple[int, int]:
    """Table._measure_column for one of our columns."""
    if limit < 1:
        return 0, 0
    if fixed is not None:
        return min(fixed + pad, limit), min(fixed + pad, limit)
    lo, hi = _measure(texts, limit, pad)
    lo, hi = min(lo, limit), min(hi, limit)
    if min_width is not None:
        floor = max(0, min_width + pad)
        lo, hi = max(lo, floor), max(hi, floor)
    return lo, hi


def _cell_lines(text: str, width: int, pad: int, kind: str) -> list[str] | None:
    """One cell as its lines of text, each `width` cells (its right padding included)."""
    inner = width - pad
    if inner < 1:
        return None
    size = cell_len(text)
    if kind == WHOLE:  # no_wrap, overflow "ignore": shown whole, then cropped to the cell
        return [set_cell_size(text, inner) + " " * pad]
    if kind == ELLIPSIS:  # no_wrap: cut with an ellipsis
        shown = text + " " * (inner - size) if size <= inner else set_cell_size(text, inner - 1) + "…"
        return [shown + " " * pad]
    if size <= inner and len(text) <= inner:  # fits: Text.wrap would only pad it
        return [text + " " * (inner - size + pad)]
    wrapped = Text(text).wrap(_WRAP_CONSOLE, inner, justify="left", overflow="fold")
    return [set_cell_size(line.plain, inner) + " " * pad for line in wrapped]


_WRAP_CONSOLE = Console(width=80, file=None, color_system=None)  # Text.wrap only reads its tab size


def table(console: Console, title: str | None, columns: Sequence[str], rows: Sequence[Sequence[str]],
          kinds: Sequence[str], *, fixed: Sequence[int | None], min_widths: Sequence[int | None],
          narrow: bool) -> Rendered | None:
    """output.table's Table(box=SIMPLE_HEAD, pad_edge=False, collapse_padding=True, header_style
    "bold", padding (0, 0) and no edge when narrow, else (0, 1) and an edge), as rich would print
    it on this console; None outside the proven cases. `rows` hold printable text (not markup)."""
    if (not usable(console) or not columns or any("[" in c or not c.isprintable() for c in columns)
            or ratio_reduce is None or _collapse_widths is None):
        return None  # headers are rich markup there: ours are plain words
    count = len(columns)
    edge = not narrow
    pads = [0 if narrow or i == count - 1 else 1 for i in range(count)]
    extra = (2 if edge else 0) + count - 1
    limit = console.width - extra
    if not all(v.isprintable() for row in rows for v in row) or not (title or "").isprintable():
        return None  # what the tests prove: text as output.printable leaves it (no line breaks)
    cells = [list(columns), *([as_rich_shows(v) for v in row] for row in rows)]
    by_column = list(zip(*cells))
    ranges = [_column_range(by_column[i], kinds[i], fixed[i], min_widths[i], limit, pads[i]) for i in range(count)]
    widths = [hi or 1 for _, hi in ranges]
    if sum(widths) > limit:
        wrapable = [fixed[i] is None and kinds[i] not in (WHOLE, ELLIPSIS) for i in range(count)]
        widths = _collapse_widths(widths, wrapable, limit)
        if sum(widths) > limit:
            widths = ratio_reduce(sum(widths) - limit, [1] * count, widths, widths)
        widths = [_column_range(by_column[i], kinds[i], fixed[i], min_widths[i], widths[i], pads[i])[1]
                  for i in range(count)]
    table_width = sum(widths) + extra
    if table_width > console.width or table_width < 1:
        return None  # rich would crop the table's lines: left to rich

    segments: list[Segment] = []
    line = Segment.line()
    if title:
        title_style = console.get_style("table.title")
        for text in Text(as_rich_shows(title)).wrap(_WRAP_CONSOLE, table_width, justify="center", overflow="fold"):
            if text.plain:
                segments.append(Segment(text.plain, title_style))
            segments.append(line)
    if edge:
        segments += [Segment(" " * table_width), line]
    bold = console.get_style("bold")
    for index, row in enumerate(cells):
        rendered = []
        for i, text in enumerate(row):
            lines = _cell_lines(text, widths[i], pads[i], kinds[i])
            if lines is None:
                return None
            rendered.append(lines)
        height = max(map(len, rendered))
        if index == 0:  # the header: bold, its cells aligned to the bottom
            header = [_header_cell(row[i], widths[i], pads[i], kinds[i], rendered[i], height, bold)
                      for i in range(count)]
            for n in range(height):
                if edge:
                    segments.append(Segment(" "))
                for i in range(count):
                    if i:
                        segments.append(Segment(" ", _BLANK))
                    segments += header[i][n]
                if edge:
                    segments.append(Segment(" "))
                segments.append(line)
            segments += [Segment((" " if edge else "") + "─".join("─" * w for w in widths) + (" " if edge else "")),
                         line]
            continue
        for n in range(height):
            parts = [r[n] if n < len(r) else " " * widths[i] for i, r in enumerate(rendered)]
            text = " ".join(parts)
            segments += [Segment(f" {text} " if edge else text), line]
    if edge:
        segments += [Segment(" " * table_width), line]
    return Rendered(segments)


def _header_cell(text: str, width: int, pad: int, kind: str, lines: list[str], height: int,
                 bold: Style) -> list[list[Segment]]:
    """The header cell's segments line by line, split where rich splits them (the text, the
    padding a whole column's text gets, the cell's right padding), so that a terminal gets the
    same escape codes: each segment is styled on its own."""
    inner = width - pad
    out: list[list[Segment]] = [[Segment(" " * width, bold)]] * (height - len(lines))
    for shown in lines:
        body = shown[:len(shown) - pad] if pad else shown
        parts: list[Segment] = []
        if kind == WHOLE and cell_len(text) < inner:
            if text:
                parts.append(Segment(text, bold))
            parts.append(Segment(" " * (inner - cell_len(text)), bold))
        elif body:
            parts.append(Segment(body, bold))
        if pad:
            parts.append(Segment(" " * pad, bold))
        out.append(parts)
    return out


def status_line(console: Console, head: str, status_style: str, status: str, rest: str) -> Rendered | None:
    """`console.print(f"{head}[{status_style}]{escape(status)}[/]{escape(rest)}", highlight=False)`
    for printable head, status and rest, when the line fits the console."""
    if not usable(console):
        return None
    whole = head + status + rest
    if (len(whole) > console.width or cell_len(whole) > console.width or "\\" in whole or "[" in whole
            or not whole.isprintable()):
        return None  # wrapped, or markup-looking text (rich's escapes do not round-trip next to a tag)
    segments = []
    if head:
        segments.append(Segment(head, _BLANK))
    if status:
        segments.append(Segment(status, console.get_style(status_style)))
    if rest:
        segments.append(Segment(rest, _BLANK))
    segments.append(Segment.line())
    return Rendered(segments)
