"""What a partner may see of a record: handling codes, children, and the special-category field.

Pure logic; no I/O. Three rules decide, for each of this node's records, whether and in which
signed view it is served to a partner (protocol/discnode-v1.md section 8.9):

- **Handling codes** (the UK 3x5x2 intelligence grading): every profile and every incident carries
  a source evaluation (1-3), an intelligence assessment (A-E) and a handling code, P (lawful sharing
  permitted) or C (sharing with conditions, from the code list `handling_condition`). A record's
  *conditions* are those of the profile and of every incident graded C together: the record travels
  whole and signed, so one C incident makes the whole record conditional. It is served only to a
  partner whose agreement shares `conditional` and whose `terms.handling_conditions` list all of them.
- **Children**: a profile of someone under 18 today (by date of birth; or, without one, an
  approximate age range whose upper bound is under 18) is a minor's. It needs a recorded reason
  (`minor_reason`), is reviewed within 6 months, and is served only under the scope `minors`. Age is
  reckoned against today: on the 18th birthday the profile is an adult's, and is shared from that
  day as any other (an age range does not age: it is an estimate, kept until someone edits it).
- **Ethnicity** (special category) is served only under the scope `ethnicity`. Every record is signed
  twice when written: in full, and without `ethnicity` (its *withheld view*, which says so in a signed
  `withheld` list). A partner without the scope gets the withheld view, whose signature verifies like
  any other; a query or a count filtering on ethnicity gets nothing from this node, so that the filter
  cannot be used to learn the withheld values one by one.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from . import schemas
from .errors import InvalidInput

#: Scopes (consent.SHARE_KINDS) that widen what a `profiles` agreement serves.
ETHNICITY, MINORS, CONDITIONAL = "ethnicity", "minors", "conditional"
#: Fields a view may withhold, and the scope that lets each through.
WITHHOLDABLE = {"ethnicity": ETHNICITY}

#: A record without a grading (written before gradings existed, or by an older node) reads as
#: 2/C/P: an untested source (2), information known to it indirectly (C), lawful sharing permitted
#: (P). It claims no reliability it was never given; and P keeps such a record shared exactly as it
#: was before gradings existed, which its agreement already covered.
DEFAULT_GRADING: dict[str, Any] = {"source": 2, "intelligence": "C", "handling": "P", "conditions": []}

ADULT_AGE = 18
#: A minor's profile is reviewed at least this often (others: profiles.DEFAULT_REVIEW_DAYS).
MINOR_REVIEW_DAYS = 182
MAX_REASON = 500

_GRADING_TEXT = re.compile(r"^\s*([1-3])\s*/?\s*([A-Ea-e])\s*/?\s*([PpCc])\s*(?::\s*(.*))?$")


def grading_of(part: Mapping[str, Any]) -> dict[str, Any]:
    """A profile's or an incident's grading, or the default for one written without it."""
    return dict(part.get("grading") or DEFAULT_GRADING)


def parse_grading(text: str) -> dict[str, Any]:
    """'SOURCE/INTELLIGENCE/HANDLING[:CONDITION,CONDITION]', e.g. '1/A/P' or '2/B/C:refer-to-originator'
    (the CLI's --grading, an import's `grading` column, an incident's fifth part)."""
    match = _GRADING_TEXT.match(text)
    if not match:
        raise InvalidInput(f"grading {text[:40]!r}: expected SOURCE/INTELLIGENCE/HANDLING, e.g. 2/B/P or "
                           "1/A/C:refer-to-originator (source 1-3, intelligence A-E, handling P or C)")
    source, intelligence, handling, rest = match.groups()
    conditions = [c.strip() for c in (rest or "").split(",") if c.strip()]
    return checked_grading({"source": int(source), "intelligence": intelligence.upper(),
                            "handling": handling.upper(), "conditions": conditions})


def checked_grading(grading: Mapping[str, Any]) -> dict[str, Any]:
    """The grading, its conditions sorted; InvalidInput if C has none, P has some, or a code is unknown."""
    given = grading.get("conditions") or []
    if not isinstance(given, list) or not all(isinstance(c, str) for c in given):
        raise InvalidInput("grading conditions must be a list of handling condition codes")
    conditions = sorted(set(given))
    for code in conditions:
        schemas.check_code("handling_condition", code, "handling condition")
    out = {**grading, "conditions": conditions}
    if out.get("handling") == "C" and not conditions:
        raise InvalidInput("handling code C needs one or more conditions "
                           f"({', '.join(schemas.codes('handling_condition'))})")
    if out.get("handling") == "P" and conditions:
        raise InvalidInput("handling code P (lawful sharing permitted) takes no conditions; use C")
    return out


def format_grading(grading: Mapping[str, Any]) -> str:
    text = f"{grading['source']}/{grading['intelligence']}/{grading['handling']}"
    return text + (":" + ",".join(grading["conditions"]) if grading.get("conditions") else "")


def conditions_of(record: Mapping[str, Any]) -> list[str]:
    """Every condition the record is served under: its own and its C-graded incidents', sorted."""
    out = set(grading_of(record)["conditions"])
    for incident in record.get("incidents") or ():
        out.update(grading_of(incident)["conditions"])
    return sorted(out)


# --- children --------------------------------------------------------------------------------


def years_before(today: dt.date, years: int) -> dt.date:
    """The same day `years` earlier (28 February for a 29th): someone born after it is not yet
    `years` old today (query.py reckons ages by the same rule)."""
    try:
        return today.replace(year=today.year - years)
    except ValueError:
        return today.replace(year=today.year - years, day=28)


def is_minor(record: Mapping[str, Any], today: dt.date) -> bool:
    if record.get("dob"):
        return str(record["dob"]) > years_before(today, ADULT_AGE).isoformat()
    age_max = record.get("age_max")
    return age_max is not None and age_max < ADULT_AGE


def minor_sql(today: dt.date) -> tuple[str, list[Any]]:
    """SQL over the profiles table, true for a minor's row: the same rule as is_minor."""
    return ("((dob != '' AND dob > ?) OR (dob = '' AND age_max IS NOT NULL AND age_max < ?))",
            [years_before(today, ADULT_AGE).isoformat(), ADULT_AGE])


def check_minor(record: Mapping[str, Any], today: dt.date) -> None:
    """A minor's profile must say why it is held (the ICO expects extra care for children)."""
    if is_minor(record, today) and not str(record.get("minor_reason") or "").strip():
        raise InvalidInput("this is the profile of someone under 18: give the reason it is held "
                           "(--minor-reason, or the minor_reason column of an import)")


def minor_review_by(record: Mapping[str, Any], today: dt.date) -> str:
    """A minor's review-by date: at most 6 months from today."""
    limit = (today + dt.timedelta(days=MINOR_REVIEW_DAYS)).isoformat()
    return min(str(record["review_by"]), limit)


# --- views and audiences ---------------------------------------------------------------------


def withheld_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record without its special-category fields, saying which it withholds (unsigned)."""
    view = {k: v for k, v in record.items() if k not in WITHHOLDABLE and k != "sig"}
    view["withheld"] = sorted(WITHHOLDABLE)
    return view


@dataclass(frozen=True)
class Audience:
    """What one partner's agreement lets through. The default lets nothing extra through: no
    ethnicity, no minors, no C-graded record (what an offer from before these scopes means)."""

    ethnicity: bool = False
    minors: bool = False
    conditions: frozenset[str] = frozenset()

    @classmethod
    def of(cls, share: Iterable[str], handling_conditions: Iterable[str] = ()) -> "Audience":
        share = set(share)
        return cls(ETHNICITY in share, MINORS in share,
                   frozenset(handling_conditions) if CONDITIONAL in share else frozenset())

    @classmethod
    def of_agreement(cls, agreement: Any) -> "Audience":
        """What a consent.Agreement lets through (nothing at all unless it is active)."""
        return cls.of(agreement.share, agreement.handling_conditions)

    @property
    def withheld(self) -> list[str]:
        """The fields this audience does not get (for the asking side's status lines)."""
        return [] if self.ethnicity else sorted(WITHHOLDABLE)

    def may_see(self, record: Mapping[str, Any], today: dt.date) -> bool:
        if not self.minors and is_minor(record, today):
            return False
        return set(conditions_of(record)) <= self.conditions

    def clauses(self, today: dt.date) -> list[tuple[str, list[Any]]]:
        """SQL conditions over the profiles table for the rows this audience may be served."""
        out: list[tuple[str, list[Any]]] = []
        if not self.minors:
            text, params = minor_sql(today)
            out.append((f"NOT {text}", params))
        if self.conditions:
            marks = ",".join("?" * len(self.conditions))
            out.append((f"(handling_conditions = '[]' OR NOT EXISTS (SELECT 1 FROM json_each(profiles.handling_conditions) "
                        f"WHERE value NOT IN ({marks})))", sorted(self.conditions)))
        else:
            out.append(("handling_conditions = '[]'", []))
        if not self.ethnicity:
            out.append(("record_withheld != ''", []))  # never the full record in its place
        return out


def conditions_column(record: Mapping[str, Any]) -> str:
    return json.dumps(conditions_of(record))
