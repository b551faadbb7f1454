"""Profile references as administrators type them (NODE_ID:PROFILE_ID), and the agreement check
every document a partner sends about profiles needs (proposals, sightings, links)."""

from __future__ import annotations

from . import peers
from .errors import InvalidInput, Refused
from .home import Home, today
from .identity import parse_node_id


def parse_ref(text: str) -> tuple[str, str]:
    """NODE_ID:PROFILE_ID, checked."""
    node, sep, profile_id = text.rpartition(":")
    if not sep or not node:
        raise InvalidInput("give the profile as NODE_ID:PROFILE_ID (as search lists it)")
    return parse_node_id(node), check_profile_id(profile_id)


def check_profile_id(text: str) -> str:
    text = text.strip().lower()
    if len(text) != 12 or any(c not in "abcdefghijklmnopqrstuvwxyz234567" for c in text):
        raise InvalidInput(f"{text[:40]!r} is not a profile ID (12 characters a-z, 2-7)")
    return text


def check_text(value: str, what: str, limit: int) -> str:
    """One line of an administrator's text, stripped; InvalidInput if too long or not printable."""
    value = value.strip()
    if len(value) > limit or any(not ch.isprintable() for ch in value):
        raise InvalidInput(f"{what} must be at most {limit} printable characters on one line")
    return value


def require_active(home: Home, peer: str, what: str) -> None:
    agreement = peers.agreement(home.db, home.node_id, peer, today())
    if not agreement.active or "profiles" not in agreement.share:
        raise Refused(f"no active agreement sharing profiles with {peer} (it is {agreement.state.value}): "
                      f"no {what}")
