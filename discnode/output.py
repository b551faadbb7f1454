"""Printing for people (rich tables) and for scripts (--json, CSV); the one place that does either.

Most of what is printed came from somewhere else: partner nodes (partnership names, profile fields,
error messages), import files, the administrator's own typing. None of it may act on the terminal,
so every such string goes through `safe` (for rich) or `printable` (for plain output: CSV, images)
before it is shown. The same rule holds for any future face (HTML escapes in its templates).
"""

from __future__ import annotations

import csv
import json
import re
import sys

import orjson
from typing import Any, Collection, Iterable, Sequence

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import handling, tablelayout, wirejson
from .text import printable

# emoji=False: ':police_car:' in a partner's text is shown as typed, not as a picture.
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)


def safe(value: object) -> str:
    """Any untrusted text, ready to put in rich markup: printable, and its square brackets taken
    literally (a partnership named 'Evil [/] BCRP' is shown as that, not parsed as a closing tag)."""
    return escape(printable(value))


_JSON_UNSAFE = re.compile("[\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]")


def emit_json(data: Any) -> None:
    # orjson, not json: with indent, the standard library's encoder falls back to pure Python
    # (0.65 s for a walk of 18,000 profiles; orjson takes a few tens of ms for the same output).
    text = orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS |
                        orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE)
    # orjson writes C0 controls as \\uXXXX but DEL, C1 controls and bidi or zero-width characters
    # as they are; those can only be inside strings, where the same escape is valid JSON.
    sys.stdout.write(_JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text.decode()))


_NOT_ASCII = re.compile("[^\x20-\x7e\n]")


def _ascii_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code > 0xFFFF:  # as a UTF-16 surrogate pair, as the standard library writes it
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def json_ascii(data: Any, *, float_free: Collection[Any] = ()) -> str:
    """`json.dumps(data, indent=2, sort_keys=True, default=str) + "\\n"`, byte for byte, from orjson:
    the standard library's encoder falls back to pure Python with `indent` (most of a served
    `search --all --json` of 18,000 profiles). orjson writes text as UTF-8 and leaves DEL as it is;
    outside strings it writes only printable ASCII and newlines, so every other character is inside
    a string, where it becomes the standard library's \\uXXXX. Dates, datetimes and dataclasses go
    to `default` as they would there. Data holding a float (the protocol has none), and anything orjson refuses (a lone surrogate, an integer past 64
    bits) is written by the standard library. test_cli_output.py checks it against json.dumps.

    float_free: lists and objects within data that the caller knows hold no float, such as the
    records a walk read from replies its reader found float-free (dataview.walk); the scan for
    floats, most of this function's time for a walk of 18,000 profiles, passes them by. By
    identity: the caller's collection keeps them alive, so no other object can take their id."""
    vouched = frozenset(map(id, float_free))
    if not isinstance(data, (dict, list, tuple)) or not wirejson.float_free(data, vouched):  # orjson writes 1e-05 as 0.00001
        return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    try:
        raw = orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS |
                           orjson.OPT_APPEND_NEWLINE | orjson.OPT_PASSTHROUGH_DATETIME |
                           orjson.OPT_PASSTHROUGH_DATACLASS)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    if not raw.translate(None, _PRINTABLE):  # nothing _NOT_ASCII would match: at C speed, not by re.sub
        return raw.decode("ascii")
    return _NOT_ASCII.sub(_ascii_escape, raw.decode())


_PRINTABLE = bytes(range(0x20, 0x7F)) + b"\n"  # what _NOT_ASCII does not match


def json_error(code: str, message: str) -> None:
    """A failure for scripts: the peer API's error shape, on stderr."""
    sys.stderr.write(json.dumps({"error": {"code": code, "message": message}}, sort_keys=True) + "\n")


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
          nowrap: Sequence[str] = (), whole: Sequence[str] = (), words: Sequence[str] = ()) -> None:
    """A table of untrusted values. `whole` columns (node IDs, references to paste) are never
    wrapped or cut, however narrow the terminal; `words` ones wrap between words but never inside
    one (offence tags); `nowrap` ones are cut with an ellipsis; the rest fold."""
    shown = [[printable(v) for v in row] for row in rows]  # measured as the reader will see them
    kinds, fixed, min_widths = column_kinds(columns, shown, nowrap=nowrap, whole=whole, words=words)
    # Laid out by hand for speed where that is proven byte-equal to rich (tablelayout.py); else rich.
    laid_out = tablelayout.table(console, printable(title) if title else None, columns, shown, kinds, fixed=fixed,
                                 min_widths=min_widths, narrow=narrow())
    if laid_out is not None:
        console.print(laid_out)
        return
    rich_table(title, columns, shown, kinds, fixed, min_widths)


def column_kinds(columns: Sequence[str], shown: Sequence[Sequence[str]], *, nowrap: Sequence[str] = (),
                 whole: Sequence[str] = (), words: Sequence[str] = ()
                 ) -> tuple[list[str], list[int | None], list[int | None]]:
    """Each column's kind (tablelayout.WHOLE, WORDS, ELLIPSIS, FOLD), fixed width and minimum width."""
    kinds: list[str] = []
    fixed: list[int | None] = []
    min_widths: list[int | None] = []
    for i, col in enumerate(columns):
        if col in whole:
            kinds.append(tablelayout.WHOLE)
            fixed.append(None)
            min_widths.append(max(max((cell_len(r[i]) for r in shown), default=0), len(col)))
        elif col in words:
            kinds.append(tablelayout.WORDS)
            fixed.append(max(max((cell_len(w) for r in shown for w in r[i].split()), default=0), len(col)))
            min_widths.append(None)
        else:
            kinds.append(tablelayout.ELLIPSIS if col in nowrap else tablelayout.FOLD)
            fixed.append(None)
            min_widths.append(None)
    return kinds, fixed, min_widths


def rich_table(title: str | None, columns: Sequence[str], shown: Sequence[Sequence[str]], kinds: Sequence[str],
               fixed: Sequence[int | None], min_widths: Sequence[int | None]) -> None:
    """output.table through rich's own layout engine (tablelayout.py's reference)."""
    cells = [[escape(v) for v in row] for row in shown]
    # Narrow: one space between columns (the box's own) instead of two, and none at the edges.
    t = Table(title=safe(title) if title else None, show_lines=False, header_style="bold", box=box.SIMPLE_HEAD,
              pad_edge=False, collapse_padding=True, padding=(0, 0) if narrow() else (0, 1),
              show_edge=not narrow())
    for col, kind, width, min_width in zip(columns, kinds, fixed, min_widths):
        if kind == tablelayout.WHOLE:
            t.add_column(col, no_wrap=True, overflow="ignore", min_width=min_width)
        elif kind == tablelayout.WORDS:
            # A fixed width, since rich shrinks a column below its min_width when space is short.
            t.add_column(col, overflow="fold", width=width)
        elif kind == tablelayout.ELLIPSIS:
            t.add_column(col, no_wrap=True, overflow="ellipsis")
        else:
            t.add_column(col, overflow="fold")
    for row in cells:
        t.add_row(*row)
    console.print(t)


def status_lines(lines: Iterable[tuple[str, str, str]]) -> None:
    """`  STATUS rest` lines (colour, status, rest), STATUS in its colour, each folded if wider than
    the terminal. status and rest are printable text (not markup). Lines tablelayout lays out go
    to the console together, one print for all (a print costs ~0.1 ms of rich's bookkeeping)."""
    ready: list[Any] = []
    for colour, status, rest in lines:
        laid_out = tablelayout.status_line(console, "  ", colour, status, rest)
        if laid_out is not None:
            ready += laid_out.segments
            continue
        if ready:
            console.print(tablelayout.Rendered(ready))
            ready = []
        console.print(f"  [{colour}]{escape(status)}[/]{escape(rest)}", highlight=False)
    if ready:
        console.print(tablelayout.Rendered(ready))


def plain(value: Any) -> str:
    """A field value in words: lists joined, booleans as yes/no, nothing as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(plain(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {plain(v)}" for k, v in value.items())
    return str(value)


class Lines(tuple):  # type: ignore[type-arg]
    """A field value shown one item a line (incidents, saved files)."""


def fields(title: str, pairs: Iterable[tuple[str, Any]]) -> None:
    t = Table(title=safe(title), show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column(overflow="fold")
    for key, value in pairs:
        shown = "\n".join(safe(plain(v)) for v in value) if isinstance(value, Lines) else safe(plain(value))
        t.add_row(safe(key), shown)
    console.print(t)


def profile_fields(record: dict[str, Any], saved: Sequence[str] | None = None) -> list[tuple[str, Any]]:
    """A profile as an administrator reads it: words, not JSON; the images by count and, once
    saved, by where they went."""
    r = record
    name = f"{r['first_name']} {r['last_name']}".strip() or "(not yet identified)"
    if r.get("dob"):
        born = r["dob"]
    elif r.get("age_min") is not None or r.get("age_max") is not None:
        born = f"unknown; looks {r.get('age_min') if r.get('age_min') is not None else '?'}" \
               f" to {r.get('age_max') if r.get('age_max') is not None else '?'} years old"
    else:
        born = "unknown"
    exclusion = r.get("exclusion")
    images = list(r.get("images") or [])
    if saved:
        image_text: Any = f"{len(saved)} photo(s), saved (readable by you only): listed below"
    elif images:
        image_text = f"{len(images)} photo(s); --save-images DIR saves them"
    else:
        image_text = "none"
    pairs: list[tuple[str, Any]] = [("reference", f"{r['origin']}:{r['id']}")]
    if r.get("origin_name"):
        pairs.append(("partnership", r["origin_name"]))
    pairs += [
        ("name", name),
        ("status", r["status"]),
        ("aliases", r.get("aliases") or "none"),
        ("born", born),
        ("gender", r["gender"]),
        ("ethnicity", r["ethnicity"] if "ethnicity" in r else "withheld: the agreement with this partnership "
                                                               "does not share ethnicity"),
        ("build", r["build"]),
        ("height", f"{r['height_cm']} cm" if r.get("height_cm") else "unknown"),
        ("marks", r.get("marks") or ""),
        ("offences", r.get("tags") or "none"),
        ("grading", grading_text(r)),
        ("incidents", Lines(f"{i['date']}  {i['type']} at {i['place']}" + (f": {i['summary']}" if i["summary"] else "")
                            + f"  [{handling.format_grading(handling.grading_of(i))}]"
                            for i in r.get("incidents") or []) or "none"),
        ("excluded", f"{exclusion['from']} to {exclusion['until']}: {exclusion['where']}" if exclusion else "no"),
        ("notes", r.get("notes") or ""),
        ("last seen", r.get("last_seen") or "unknown"),
        ("review by", r["review_by"]),
        ("local only", "yes: never shared with any partner" if r.get("local_only") else "no"),
        ("images", image_text),
        ("created", r["created"]),
        ("updated", r["updated"]),
        *([("revision", str(r["revision"]))] if r.get("revision") else []),
    ]
    from .home import today
    if handling.is_minor(r, today()):
        pairs.insert(5, ("under 18", f"yes: {r.get('minor_reason') or '(no reason recorded)'}"))
    return pairs


def grading_text(r: dict[str, Any]) -> str:
    """The profile's 3x5x2 grading, and the conditions the whole record is shared under."""
    grading = handling.grading_of(r)
    text = handling.format_grading(grading) + ("" if "grading" in r else " (not graded: read as 2/C/P)")
    conditions = handling.conditions_of(r)
    if conditions and conditions != grading["conditions"]:
        text += f"; shared only under {', '.join(conditions)} (its incidents' conditions too)"
    return text


def line(text: str) -> None:
    """One line that must reach the reader whole (a cursor, a path, a reference to paste): never
    wrapped, never highlighted, never parsed as markup."""
    console.print(printable(text), markup=False, highlight=False, soft_wrap=True)


def block(text: str, indent: int = 4) -> None:
    """A paragraph of untrusted text, indented and folded to the terminal's width."""
    from rich.padding import Padding
    from rich.text import Text
    console.print(Padding(Text(printable(text), overflow="fold"), (0, 0, 0, indent)))


def error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {safe(message)}", highlight=False, markup=True, soft_wrap=True)


def info(message: str) -> None:
    err_console.print(safe(message), highlight=False)


def csv_cell(value: Any) -> str:
    """A cell a spreadsheet will not run: text starting with = + - @ (or a tab or carriage return,
    which some spreadsheets skip before looking) gets a leading apostrophe, as OWASP's CSV
    injection advice says. Negative numbers are numbers, not text, and stay as they are."""
    text = printable(plain(value))
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not isinstance(value, (int, float)):
        return "'" + text
    return text


def write_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]], out: Any) -> None:
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])


WIDE = 110


def narrow() -> bool:
    return console.width < WIDE


def profile_columns() -> tuple[str, ...]:
    """At 80 columns the birth year joins the look, so that the tags keep their column."""
    if narrow():
        return ("id", "name", "look, born", "last seen", "tags")
    return ("id", "name", "look", "born", "last seen", "tags")


def profile_row(r: dict[str, Any], is_narrow: bool | None = None) -> list[Any]:
    """A profile's cells; is_narrow is narrow(), passed in by callers printing many rows (asking
    the console its width each time cost a page of 50 rows ~2 ms)."""
    is_narrow = narrow() if is_narrow is None else is_narrow
    name = f"{r['first_name']} {r['last_name']}".strip() or "(ID sought)"
    if r["dob"]:
        born = r["dob"][:4] if is_narrow else r["dob"]
    else:
        born = f"~{r['age_min'] or '?'}-{r['age_max'] or '?'}y" if r["age_min"] or r["age_max"] else ""
    sex = {"male": "M", "female": "F"}.get(r["gender"], "?")
    look = f"{sex} {r.get('ethnicity', '--')} {r['build']}"  # --: withheld by the partnership's terms
    tags = ", ".join(r["tags"])
    if is_narrow:
        return [r["id"], name, f"{look} {born}".rstrip(), r["last_seen"] or "", tags]
    return [r["id"], name, look, born, r["last_seen"] or "", tags]


def short_name(name: str, is_narrow: bool | None = None) -> str:
    return name.removesuffix(" BCRP") if (narrow() if is_narrow is None else is_narrow) else name
