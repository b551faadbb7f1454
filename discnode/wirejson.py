"""JSON as it arrives from the network: I-JSON (RFC 7493), strictly, in one place.

Every JSON text a node receives (request bodies, consent documents, descriptors, the replies its
client parses) goes through `loads`, so that every receiver agrees on what a document says. A
text with two members of one name is refused rather than read as "last one wins": a signature
checked over one reading must not be acted on under another (a second implementation may take
the first). Also refused: text that is not UTF-8 (or starts with a byte order mark), NaN and
Infinity (not JSON), integers outside I-JSON's exact range (they would overflow SQLite and lose
precision in other languages), unpaired surrogate escapes (not Unicode text; they fail later,
when the string is encoded) and nesting deeper than MAX_DEPTH (Python's parser and everything
that walks a document recursively fails near 1,000 levels).

A number with a zero fraction (`20.0`, `2e1`) is read as the integer it denotes: JSON has one
number type, JSON Schema's `integer` accepts it, JavaScript cannot tell the two apart, and RFC
8785 writes both as `20`, so refusing it would be a rule no standard parser can check.

The standard library's parser does the parsing; only what its hooks cannot say (depth, unpaired
surrogates) is checked here by hand, and only when the raw text shows it could be needed.
"""

from __future__ import annotations

import json
import math
import re
from itertools import compress
from typing import AbstractSet, Any

from .errors import InvalidInput

#: Deepest nesting of arrays and objects accepted. The protocol's deepest message (a query reply:
#: reply > records > record > incidents > incident) is 5 levels.
MAX_DEPTH = 32
#: I-JSON's exact integer range (IEEE 754 double), RFC 7493 section 2.2.
MAX_INTEGER = 2**53 - 1

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class _Floats:
    """Whether a parse met a number that is not an integer (the protocol has none)."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen = False


def _integer(text: str) -> int:
    if len(text) > 17:  # cheaper than int() on thousands of digits, and int() has its own limit
        raise InvalidInput(f"a number is outside the range +-{MAX_INTEGER} (I-JSON)")
    value = int(text)
    if abs(value) > MAX_INTEGER:
        raise InvalidInput(f"a number is outside the range +-{MAX_INTEGER} (I-JSON)")
    return value


def _number(floats: _Floats) -> Any:
    def parse(text: str) -> int | float:
        value = float(text)
        if not math.isfinite(value):
            raise InvalidInput(f"a number is outside the range +-{MAX_INTEGER} (I-JSON)")
        if value.is_integer():
            if abs(value) > MAX_INTEGER:
                raise InvalidInput(f"a number is outside the range +-{MAX_INTEGER} (I-JSON)")
            return int(value)
        floats.seen = True
        return value
    return parse


def _constant(text: str) -> Any:
    raise InvalidInput(f"{text} is not a JSON number")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                break
            seen.add(key)
        raise InvalidInput(f"member {_short(key)} appears twice in one object (I-JSON forbids duplicate names)")
    return obj


def _short(text: str) -> str:
    shown = text if len(text) <= 40 else text[:40] + "..."
    return json.dumps(shown)


_CONTAINERS = frozenset((dict, list))


def _check_depth(root: Any) -> None:
    """Refuse nesting deeper than MAX_DEPTH, level by level and without recursion (the point is
    deep documents). Picking the containers out of each level is done by C-level iterators (no
    Python code per member), as this runs on every reply page a search receives."""
    level, nodes = 1, [root] if type(root) in _CONTAINERS else []
    while nodes:
        if level > MAX_DEPTH:
            raise InvalidInput(f"nested deeper than {MAX_DEPTH} levels")
        below: list[Any] = []
        for node in nodes:
            members = list(node.values()) if type(node) is dict else node
            below.extend(compress(members, map(_CONTAINERS.__contains__, map(type, members))))
        nodes, level = below, level + 1


def float_free(data: Any, vouched: AbstractSet[int] = frozenset()) -> bool:
    """Whether data holds no float (any depth), not counting the lists and objects whose id() is in
    vouched (known to hold none). Each list's and object's values are typed in one C-level pass
    (set(map(type, ...))); only the lists, tuples and objects among them are gone into."""
    stack = [data]
    while stack:
        value = stack.pop()
        items = value.values() if isinstance(value, dict) else value
        kinds = set(map(type, items))
        if float in kinds or any(issubclass(k, float) for k in kinds):
            return False
        if kinds & _NESTED or any(issubclass(k, (dict, list, tuple)) for k in kinds - _SCALARS):
            stack.extend(v for v in items if isinstance(v, (dict, list, tuple)) and id(v) not in vouched)
    return True


_NESTED = frozenset((dict, list, tuple))
_SCALARS = frozenset((str, int, bool, type(None)))


#: Every byte but the four brackets and the quote: deleted to leave a text's shape (_height).
_NOT_SHAPE = bytes(sorted(set(range(256)) - set(b'"[]{}')))


def _height(raw: bytes) -> int:
    """How deeply a text that has parsed as JSON nests its arrays and objects (capped just past
    MAX_DEPTH), from the text: what _check_depth finds by walking the parsed value, for a quarter of
    its CPU on a reply page. Exact because the text is valid JSON: outside strings only brackets
    nest; within strings a backslash always starts a two-character escape, so dropping the escaped
    backslashes and quotes leaves quotes that delimit strings, and dropping each string's content
    leaves the bracket sequence of the containers. Each round then removes every container that holds
    no container (marked first, so that "{[]}" loses one level a round, not two); the rounds are the
    height. Written by hand: no library reports a JSON text's nesting depth. (tests/test_wirejson.py
    proves it equal to _check_depth.)"""
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Adjacent quotes are a string's two ends, or two strings' facing ends with nothing between:
    # removing either pair keeps every remaining quote's role and every bracket outside a string.
    shape = raw.translate(None, _NOT_SHAPE).replace(b'""', b"")
    if b'"' in shape:
        shape = b"".join(shape.split(b'"')[::2])
    height = 0
    while shape and height <= MAX_DEPTH:
        shape = shape.replace(b"[]", b"x").replace(b"{}", b"x").replace(b"x", b"")
        height += 1
    return height


def _check_strings(root: Any) -> None:
    """Refuse unpaired surrogates in any member name or string, without recursion."""
    stack = [root]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            for key, value in node.items():
                _utf8(key)
                stack.append(value)
        elif type(node) is list:
            stack.extend(node)
        elif type(node) is str:
            _utf8(node)


def _utf8(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("a string holds an unpaired surrogate (\\ud800-\\udfff escape); "
                           "that is not Unicode text") from None


def loads_checked(data: bytes | str) -> tuple[Any, bool]:
    """The value of an I-JSON text, and whether it held a number that is not an integer. Raises
    InvalidInput saying, in the sender's terms, what is wrong."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"not UTF-8 text (bad byte at offset {exc.start})") from None
    else:
        text = data
    if text.startswith("\ufeff"):
        raise InvalidInput("starts with a byte order mark; send UTF-8 without one")
    floats = _Floats()
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_int=_integer, parse_float=_number(floats),
                           parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise InvalidInput(f"nested deeper than {MAX_DEPTH} levels") from None
    # Cheap gates: a text with at most MAX_DEPTH brackets cannot nest deeper, and one without a
    # surrogate escape cannot hold an unpaired surrogate (raw ones are not valid UTF-8).
    if text.count("[") + text.count("{") > MAX_DEPTH:
        raw = bytes(data) if isinstance(data, (bytes, bytearray, memoryview)) else text.encode("utf-8", "surrogatepass")
        if _height(raw) > MAX_DEPTH:
            raise InvalidInput(f"nested deeper than {MAX_DEPTH} levels")
    if _SURROGATE_ESCAPE.search(text) is not None or not isinstance(data, (bytes, bytearray, memoryview)):
        _check_strings(value)
    return value, floats.seen


def loads(data: bytes | str) -> Any:
    """The value of an I-JSON text; InvalidInput if it is not one."""
    return loads_checked(data)[0]
