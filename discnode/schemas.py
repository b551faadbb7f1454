"""The wire's JSON Schemas (from protocol/schemas) and the shared code lists they define."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from .errors import InvalidInput

_BASE = "https://discnode.example/protocol/v1/"


def schema_dir() -> Path:
    """protocol/schemas: shipped inside the wheel, or beside the package in a source checkout."""
    packaged = Path(__file__).parent / "_protocol" / "schemas"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "protocol" / "schemas"


@functools.cache
def _registry() -> tuple[Registry, dict[str, dict[str, Any]]]:
    schemas: dict[str, dict[str, Any]] = {}
    registry: Registry = Registry()
    for path in sorted(schema_dir().glob("*.schema.json")):
        schema = json.loads(path.read_text())
        name = path.name.removesuffix(".schema.json")
        schemas[name] = schema
        registry = registry.with_resource(schema["$id"], Resource.from_contents(schema))
    return registry, schemas


def schema(name: str) -> dict[str, Any]:
    return _registry()[1][name]


@functools.cache
def validator(name: str) -> Draft202012Validator:
    registry, schemas = _registry()
    return Draft202012Validator(
        schemas[name], registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


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


def _describe(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "(document)"
    if error.validator == "enum":
        return f"{where}: {error.instance!r} is not a known code (one of {', '.join(map(str, error.validator_value))})"
    if error.validator == "oneOf" and error.context:
        # null-or-X unions: report the non-null branch, which is what the user meant to give.
        best = [e for e in error.context if e.validator != "type" or "null" not in str(e.validator_value)]
        if best:
            return _describe(jsonschema.exceptions.best_match(best))
    if error.validator == "pattern":
        return f"{where}: {error.instance!r} is not in the expected form"
    if error.validator == "format":
        return f"{where}: {error.instance!r} is not a valid {error.validator_value}"
    return f"{where}: {error.message}"


def validate(name: str, document: Any) -> None:
    """Raise InvalidInput with a one-line reason if document does not match schema `name`."""
    errors = sorted(validator(name).iter_errors(document),
                    key=lambda e: (e.validator != "enum", list(map(str, e.absolute_path))))
    if errors:
        reasons = list(dict.fromkeys(_describe(e) for e in errors))
        more = f" (and {len(reasons) - 3} more)" if len(reasons) > 3 else ""
        raise InvalidInput("; ".join(reasons[:3]) + more)
