"""The wire's JSON Schemas (from protocol/schemas) and the shared code lists they define."""

from __future__ import annotations

import datetime as dt
import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, cast

import fastjsonschema

if TYPE_CHECKING:  # loaded only to explain a refusal: ~1 MB the serving daemon need not hold
    import jsonschema
    from jsonschema import Draft202012Validator
    from referencing import Registry

from .errors import InvalidInput

_BASE = "https://discnode.example/protocol/v1/"


def schema_dir() -> Path:
    """protocol/schemas: shipped inside the wheel, or beside the package in a source checkout."""
    packaged = Path(__file__).parent / "_protocol" / "schemas"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "protocol" / "schemas"


@functools.cache
def _schemas() -> dict[str, dict[str, Any]]:
    """Every published schema by name (`profile` for profile.schema.json)."""
    return {path.name.removesuffix(".schema.json"): json.loads(path.read_text())
            for path in sorted(schema_dir().glob("*.schema.json"))}


@functools.cache
def _by_uri() -> dict[str, dict[str, Any]]:
    return {schema["$id"]: schema for schema in _schemas().values()}


@functools.cache
def _registry() -> Registry:
    """The schemas as `referencing` (the JSON Schema reference resolver) holds them: the judge of
    any reference `_resolve` does not take itself, and the reference it is tested against."""
    from referencing import Registry, Resource
    registry: Registry = Registry()
    for uri, schema in _by_uri().items():
        registry = registry.with_resource(uri, Resource.from_contents(schema))
    return registry


def schema(name: str) -> dict[str, Any]:
    return _schemas()[name]


def _resolve_by_library(ref: str, base: str) -> tuple[Any, str]:
    resolver = _registry().resolver(base_uri=base)
    return resolver.lookup(ref).contents, (ref.split("#")[0] and _BASE + ref.split("#")[0]) or base


def _resolve(ref: str, base: str) -> tuple[Any, str]:
    """What `ref` points to, and the base URI for the references inside it.

    By hand, for the two forms our schemas use (`name.schema.json` and `name.schema.json#/pointer`
    or `#/pointer`, the pointer in plain RFC 6901 words): `referencing` and the `rpds` it needs are
    ~1.4 MB that a serving node would hold for its whole life only to compile its validators at
    start (benchmarks/README.md, "Serving RSS"). Any other form goes to `referencing`, and
    test_schemas.py proves both give the same for every reference in every schema."""
    target, _, pointer = ref.partition("#")
    uri = _BASE + target if target else base
    node: Any = _by_uri().get(uri)
    if node is None or "/" in target or "%" in pointer or (pointer and not pointer.startswith("/")):
        return _resolve_by_library(ref, base)
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or token not in node:
            return _resolve_by_library(ref, base)  # the library says what is wrong with it
        node = node[token]
    return node, uri


def _inline(node: Any, base: str) -> Any:
    """The schema with every $ref replaced by what it points to. Our schemas are not recursive, and
    a validator that never resolves references is ~4x faster: it checks every record a peer sends."""
    if isinstance(node, list):
        return [_inline(item, base) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _inline(v, base) for k, v in node.items() if k not in ("$ref", "$id", "$defs", "$schema")}
    if "$ref" in node:
        target, target_base = _resolve(node["$ref"], base)
        inlined = _inline(target, target_base)
        if set(out) <= {"description", "title"}:
            return inlined
        out = {"allOf": [inlined], **out}
    return out


@functools.cache
def validator(name: str) -> Draft202012Validator:
    """The reference validator (jsonschema, draft 2020-12): the one that explains a refusal."""
    from jsonschema import Draft202012Validator, FormatChecker
    original = _schemas()[name]
    # Our own format checks, as the fast validator's: jsonschema's date-time check needs a package
    # that may be absent, and then the two would disagree and a refusal could not be explained.
    formats = FormatChecker(())
    formats.checks("date")(lambda value: not isinstance(value, str) or _is_date(value))
    formats.checks("date-time")(lambda value: not isinstance(value, str) or _is_timestamp(value))
    return Draft202012Validator(_inline(original, original["$id"]), format_checker=formats)


def _draft7(node: Any) -> Any:
    """2020-12's prefixItems in draft-07 words (items as a list), the one keyword we use that differs."""
    if isinstance(node, list):
        return [_draft7(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _draft7(v) for k, v in node.items()}
    if "prefixItems" in out:
        out["items"] = out.pop("prefixItems")
        out.setdefault("additionalItems", False)
    return out


#: Keywords that constrain only values of one non-null type (strings, numbers, objects, arrays) or
#: only annotate: a null satisfies each of them, whatever its value.
_TYPED_ONLY = frozenset({"type", "pattern", "format", "minLength", "maxLength", "minimum", "maximum",
                         "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "properties", "required",
                         "additionalProperties", "patternProperties", "minProperties", "maxProperties",
                         "items", "additionalItems", "minItems", "maxItems", "uniqueItems", "description",
                         "title"})


def _null_last(node: Any) -> Any:
    """`oneOf: [{type: null}, X]`, where X's own `type` excludes null, compiled without a oneOf.

    Why: fastjsonschema runs every oneOf branch and raises and catches an exception in each that
    fails, so every `dob`, `last_seen`, `image` and `exclusion` of a profile cost one (4 per record,
    a fifth of a profile's check). The same set of documents, two ways: if X holds only keywords
    that a null satisfies (_TYPED_ONLY), X with null added to its types (`type: [string, null]`,
    the pattern and format then apply only to strings); otherwise `anyOf: [X, {type: null}]` (no
    value is both null and of X's type, so "exactly one branch" and "at least one" agree).
    test_schemas.py checks the compiled validator against the reference, which compiles the
    published schemas as written (they keep oneOf, which reads better)."""
    if isinstance(node, list):
        return [_null_last(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _null_last(v) for k, v in node.items()}
    branches = out.get("oneOf")
    if isinstance(branches, list) and len(branches) == 2 and {"type": "null"} in branches:
        other = branches[1 - branches.index({"type": "null"})]
        kinds = other.get("type") if isinstance(other, dict) else None
        if isinstance(kinds, str) and kinds != "null":
            del out["oneOf"]
            if set(other) <= _TYPED_ONLY and not set(other) & set(out):
                out.update({**other, "type": [kinds, "null"]})
            else:
                out["anyOf"] = [other, {"type": "null"}]
    return out


def _is_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
        return len(text) == 10
    except ValueError:
        return False


def _is_timestamp(text: str) -> bool:
    try:
        dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


@functools.cache
def fast_validator(name: str) -> Callable[[Any], Any]:
    """The same schema compiled to Python by fastjsonschema: ~13x faster than the reference, which
    matters because a search checks every record that reaches the page. Formats use the same checks
    as the reference validator, so the two accept exactly the same documents."""
    original = _schemas()[name]
    schema = {"$schema": "http://json-schema.org/draft-07/schema#",
              **_null_last(_draft7(_inline(original, original["$id"])))}
    return fastjsonschema.compile(schema, formats={"date": _is_date, "date-time": _is_timestamp})


#: The schemas checked by jsonschema-rs first: a profile, which a walk checks for every record it
#: receives. The others stay with fastjsonschema, so that a node that only serves never loads it.
IN_RUST = frozenset({"profile"})


@functools.cache
def rust_validator(name: str) -> Callable[[Any], bool]:
    """The published schema as jsonschema-rs (in Rust) compiles it, draft 2020-12 as written, with
    our own format checks: 7 us a profile, where fastjsonschema's generated Python takes 25 (its
    if/then/else and enums are Python code; its exceptions, a third of it, are control flow).
    Like the fast validator it only says yes or no; the reference explains a refusal. test_schemas.py
    checks that it accepts exactly what the reference and the fast validator accept."""
    import jsonschema_rs
    original = _schemas()[name]
    return cast(Callable[[Any], bool], jsonschema_rs.Draft202012Validator(
        _inline(original, original["$id"]), formats={"date": _is_date, "date-time": _is_timestamp},
        validate_formats=True).is_valid)


def _rust_accepts(name: str, document: Any) -> bool:
    try:
        return rust_validator(name)(document)
    except ValueError:  # not JSON it can read (a key that is not a string): the others decide
        return False


def codes(name: str) -> list[str]:
    """The values of one shared code list, e.g. codes("ethnicity")."""
    return list(schema("codes")["$defs"][name]["enum"])


def code_labels(name: str) -> dict[str, str]:
    return dict(schema("codes")["$defs"][name].get("x-labels", {}))


def check_code(list_name: str, value: str, field: str | None = None) -> str:
    if value not in codes(list_name):
        raise InvalidInput(
            f"{field or list_name}: {value!r} is not a known code (one of {', '.join(codes(list_name))})"
        )
    return value


_KINDS = {"integer": "an integer", "string": "a string", "boolean": "true or false", "array": "an array",
          "object": "an object", "null": "null", "number": "a number"}


def _where(error: jsonschema.ValidationError) -> str:
    """The field in the document's own terms: `after[0]`, `terms.share[1]`; never a schema path."""
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def _shown(value: Any) -> str:
    """A value from the document, short: the sender sees what we mean, not the whole of it."""
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "an array"
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(error: jsonschema.ValidationError) -> str:
    """One refusal in the sender's terms: the field, and what it must be. No validator wording,
    schema paths or Python reprs (they name our internals and can echo back a whole document)."""
    where, kind, want = _where(error), error.validator, error.validator_value
    if kind == "enum":
        return f"{where}: {_shown(error.instance)} is not a known code (one of {', '.join(map(str, cast(list[Any], want)))})"
    if kind in ("oneOf", "anyOf") and error.context:
        # null-or-X unions: report the non-null branch, which is what the user meant to give.
        best = [e for e in error.context if e.validator != "type" or "null" not in str(e.validator_value)]
        # Of several branches (offer, or accept/reject/revoke), the one the document came nearest.
        branches: dict[Any, list[jsonschema.ValidationError]] = {}
        for e in best:
            branches.setdefault(e.relative_schema_path[0] if e.relative_schema_path else None, []).append(e)
        if branches:
            def distance(errors: list[jsonschema.ValidationError]) -> tuple[bool, int]:
                wrong_kind = any(list(e.relative_path) == ["type"] for e in errors)  # the discriminator
                return wrong_kind, len(errors)
            if all(distance(errors)[0] for errors in branches.values()):
                kinds = [e for errors in branches.values() for e in errors if list(e.relative_path) == ["type"]]
                allowed = [v for e in kinds for v in ([e.validator_value] if e.validator == "const"
                                                      else cast(list[Any], e.validator_value))]
                return f"type: {_shown(kinds[0].instance)} is not one of {', '.join(map(str, allowed))}"
            best = min(branches.values(), key=distance)
        if best:
            from jsonschema.exceptions import best_match
            return _describe(best_match(best))
    if kind == "pattern":
        return f"{where}: {_shown(error.instance)} is not in the expected form"
    if kind == "format":
        form = {"date": "date (YYYY-MM-DD)", "date-time": "time (YYYY-MM-DDTHH:MM:SSZ)"}.get(str(want), str(want))
        return f"{where}: {_shown(error.instance)} is not a valid {form}"
    if kind == "type":
        kinds = [want] if isinstance(want, str) else list(want)
        return f"{where}: must be {' or '.join(_KINDS.get(k, k) for k in kinds)}"
    if kind == "required":
        missing = [k for k in want if isinstance(error.instance, dict) and k not in error.instance]
        return f"{where}: missing {', '.join(missing) or 'a required member'}"
    if kind in ("additionalProperties", "unevaluatedProperties"):
        known = set(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in known] if isinstance(error.instance, dict) else []
        return f"{where}: unknown field {_shown(extra[0]) if extra else ''}".rstrip()
    if kind in ("additionalItems", "items", "unevaluatedItems"):
        return f"{where}: too many items"
    if kind == "minimum":
        return f"{where}: must be at least {want}"
    if kind == "maximum":
        return f"{where}: must be at most {want}"
    if kind == "minLength":
        return f"{where}: must be at least {want} characters"
    if kind == "maxLength":
        return f"{where}: must be at most {want} characters"
    if kind == "minItems":
        return f"{where}: must have at least {want} items"
    if kind == "maxItems":
        return f"{where}: must have at most {want} items"
    if kind == "const":
        return f"{where}: must be {_shown(want)}"
    if kind == "uniqueItems":
        return f"{where}: items must not repeat"
    return f"{where}: is not valid here"


def validate(name: str, document: Any) -> None:
    """Raise InvalidInput with a one-line reason if document does not match schema `name`."""
    if name in IN_RUST and _rust_accepts(name, document):
        return
    try:
        fast_validator(name)(document)
        return
    except fastjsonschema.JsonSchemaException:
        pass
    errors = sorted(validator(name).iter_errors(document),
                    key=lambda e: (e.validator != "enum", list(map(str, e.absolute_path))))
    if errors:
        reasons = list(dict.fromkeys(_describe(e) for e in errors))
        more = f" (and {len(reasons) - 3} more)" if len(reasons) > 3 else ""
        raise InvalidInput("; ".join(reasons[:3]) + more)
    raise InvalidInput(f"{name}: the document does not match its schema")
