"""Refused requests from nodes that did not authenticate as a known peer, counted per source address
and minute, so that a stranger cannot grow the audit log (and fill the disk) by sending junk.

Pure bookkeeping; the server writes what it returns. Per source address and minute, the first
refusal is audited in full at once (evidence the moment an attack starts), and the rest of that
minute as one row with their count, written when the minute is over. At most `max_sources`
addresses a minute are told apart; refusals from any more are counted together under "other", so
even a caller with many addresses adds at most 2 x (max_sources + 1) rows a minute.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

OTHER = "other"
_REASONS_KEPT = 5
_CLAIMS_KEPT = 5


@dataclass
class _Rest:
    count: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    claimed: list[str] = field(default_factory=list)


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Refusals:
    window: int = 60
    max_sources: int = 1000
    _first: set[tuple[int, str]] = field(default_factory=set)
    _rest: dict[tuple[int, str], _Rest] = field(default_factory=dict)
    _minute: int = -1

    def add(self, now: float, source: str, status: int, reason: str, claimed: str = "") -> bool:
        """Count one refusal. True if it is the first from `source` this minute: audit it in full now."""
        minute = int(now // self.window)
        if minute != self._minute:  # a new minute: who came first in the last ones no longer matters
            self._minute = minute
            self._first = {k for k in self._first if k[0] >= minute}
        key = (minute, source or OTHER)
        if key not in self._first:
            if sum(1 for m, _ in self._first if m == minute) >= self.max_sources:
                key = (minute, OTHER)
            if key not in self._first:
                self._first.add(key)
                return True
        rest = self._rest.setdefault(key, _Rest())
        rest.count += 1
        rest.statuses[str(status)] += 1
        reason = reason[:120]
        if reason in rest.reasons or len(rest.reasons) < _REASONS_KEPT:
            rest.reasons[reason] += 1
        if claimed and claimed not in rest.claimed and len(rest.claimed) < _CLAIMS_KEPT:
            rest.claimed.append(claimed[:60])
        return False

    @property
    def pending(self) -> bool:
        return bool(self._rest)

    def next_due(self, now: float) -> float:
        """Seconds until the current minute is over (when its counts are due)."""
        return self.window - (now % self.window)

    def due(self, now: float) -> list[tuple[str, str, dict[str, Any]]]:
        """Audit entries (event, peer, detail) for every minute that is over; forgets them."""
        return self._take(lambda minute: minute < int(now // self.window))

    def drain(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Everything counted so far (at shutdown)."""
        return self._take(lambda minute: True)

    def _take(self, over: Any) -> list[tuple[str, str, dict[str, Any]]]:
        out = []
        for (minute, source), rest in sorted(self._rest.items()):
            if over(minute):
                out.append(("refused-repeated", "", {
                    "remote": source, "from": _iso(minute * self.window), "to": _iso((minute + 1) * self.window),
                    "count": rest.count, "status": dict(rest.statuses), "reasons": dict(rest.reasons),
                    "claimed": rest.claimed}))
                del self._rest[(minute, source)]
        self._first = {key for key in self._first if not over(key[0])}
        return out
