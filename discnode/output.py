"""Printing for people (rich tables) and for scripts (--json); the one place that does either."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    t = Table(title=title, show_lines=False, header_style="bold")
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    console.print(t)


def fields(title: str, pairs: Iterable[tuple[str, Any]]) -> None:
    t = Table(title=title, show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for key, value in pairs:
        if isinstance(value, (list, dict)):
            value = json.dumps(value) if value else ""
        t.add_row(key, "" if value is None else str(value))
    console.print(t)


def error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)


def info(message: str) -> None:
    err_console.print(message, highlight=False)


PROFILE_COLUMNS = ("id", "name", "status", "gender", "eth", "build", "dob/age", "tags", "last seen")


def profile_row(r: dict[str, Any]) -> list[Any]:
    name = f"{r['first_name']} {r['last_name']}".strip() or "(unidentified)"
    age = r["dob"] or (f"{r['age_min'] or '?'}-{r['age_max'] or '?'}" if r["age_min"] or r["age_max"] else "")
    return [r["id"], name, r["status"], r["gender"], r["ethnicity"], r["build"], age,
            ", ".join(r["tags"]), r["last_seen"] or ""]
