"""The Level Two key: a person's name (or an alias) and date of birth, folded so that two
partnerships typing the same person differently still agree. Pure.

One function for everything that compares names across partnerships: the Level Two sweep links
profiles by it, and private matching (match-only agreements) hashes it into the group. The rules are
specified language-neutrally in protocol/match-v1.md section 2, with vectors in
protocol/vectors/match/, so that a second implementation folds the same names the same way.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from typing import Any, Mapping

from .errors import InvalidInput


def fold(name: str) -> str:
    """A name as matching sees it: 'O’Brien, Seán' and 'obrien sean' are the same.
    NFKD, combining marks dropped, case folded, only letters, digits and spaces kept, runs of
    space collapsed."""
    decomposed = unicodedata.normalize("NFKD", name)
    letters = "".join(c for c in decomposed if not unicodedata.combining(c))
    kept = "".join(c if c.isalnum() or c.isspace() else "" for c in letters.casefold())
    return " ".join(kept.split())


def names(record: Mapping[str, Any]) -> set[str]:
    """Every folded name a profile goes by: first and last name together, and each alias."""
    full = fold(f"{record.get('first_name', '')} {record.get('last_name', '')}")
    return {n for n in {full, *(fold(a) for a in record.get("aliases", []) or [])} if n}


def check_dob(dob: str) -> str:
    try:
        day = dt.date.fromisoformat(dob)
    except (TypeError, ValueError):
        raise InvalidInput(f"date of birth {dob!r} is not a date YYYY-MM-DD") from None
    if len(dob) != 10 or day.isoformat() != dob:
        raise InvalidInput(f"date of birth {dob!r} is not a date YYYY-MM-DD")
    return dob


def key(name: str, dob: str) -> bytes:
    """The key's bytes: the folded name, '|', the date of birth as YYYY-MM-DD, in UTF-8. A folded
    name holds no '|', so the split is unambiguous."""
    folded = fold(name)
    if not folded:
        raise InvalidInput(f"name {name!r} has no letters or digits to match on")
    return f"{folded}|{check_dob(dob)}".encode()


def keys(record: Mapping[str, Any]) -> list[bytes]:
    """A profile's keys (one per name it goes by), if it has a date of birth; sorted."""
    dob = record.get("dob")
    if not dob:
        return []
    return sorted(f"{n}|{check_dob(dob)}".encode() for n in names(record))
