"""The experiment file's JSON Schema: load it, read values by it, check against it.

The schema (`schema.json`, draft 2020-12) is the single description of the file
format: its types and ranges validate a file, its `default`s fill in what a file
leaves out, and its `description`s are what an editor shows while typing.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from importlib import resources
from typing import Any

import jsonschema

from distill.config.loader import Path, Source
from distill.errors import Problem
from distill.naming import suggest


@functools.cache
def load_schema() -> dict:
    """Return the experiment file's JSON Schema as a dict (do not mutate it)."""
    text = resources.files("distill.config").joinpath("schema.json").read_text("utf-8")
    return json.loads(text)


def _resolve(schema: dict) -> dict:
    """Follow a local `$ref` (`#/$defs/name`)."""
    while isinstance(schema, dict) and "$ref" in schema:
        target: Any = load_schema()
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        schema = target
    return schema


def subschema(schema: dict, key: str | int) -> dict | None:
    """The schema of `key` inside an object or array described by `schema`."""
    schema = _resolve(schema)
    if isinstance(key, int):
        items = schema.get("items")
        return _resolve(items) if isinstance(items, dict) else None
    properties = schema.get("properties", {})
    if key in properties:
        return _resolve(properties[key])
    extra = schema.get("additionalProperties")
    return _resolve(extra) if isinstance(extra, dict) else None


def schema_at(path: Path) -> dict | None:
    """The schema of the value at a key path, or None where the schema is silent."""
    schema: dict | None = load_schema()
    for key in path:
        if schema is None:
            return None
        schema = subschema(schema, key)
    return schema


def default_at(path: Path) -> Any:
    """The schema's default for the value at `path` (a fresh copy), or None."""
    parent = schema_at(path[:-1]) if path else None
    if parent is None:
        return None
    raw = _resolve(parent).get("properties", {}).get(path[-1])
    if raw is None:
        return None
    default = raw.get("default", _resolve(raw).get("default"))
    return copy.deepcopy(default)


def _types(schema: dict) -> set[str]:
    declared = schema.get("type", [])
    return {declared} if isinstance(declared, str) else set(declared)


def coerce_scalar(schema: dict, value: Any, plain_text: str | None) -> Any:
    """Read one scalar the way the schema wants it.

    YAML 1.1 (PyYAML) reads `1e-3` as a string, and `no`, `on`, `off`, `yes` as
    booleans. Where the schema wants a number, a numeric string becomes that
    number; where it wants a name (a string), an unquoted scalar is taken as
    written, so `model: no` names the model `no`. Booleans stay booleans where
    the schema wants a boolean.
    """
    types = _types(schema)
    enum = schema.get("enum")
    if isinstance(value, str) and types & {"number", "integer"} and "string" not in types:
        try:
            number = float(value)
        except ValueError:
            return value
        if math.isfinite(number):
            value = number
    if isinstance(value, float) and "integer" in types and "number" not in types:
        if value.is_integer():
            return int(value)
    if (not isinstance(value, str) and plain_text is not None
            and not isinstance(value, (dict, list))):
        wants_text = "string" in types and not (types & _json_types(value))
        if enum is not None and plain_text in enum and value not in enum:
            wants_text = True
        if wants_text:
            return plain_text
    return value


def _json_types(value: Any) -> set[str]:
    if value is None:
        return {"null"}
    if isinstance(value, bool):
        return {"boolean"}
    if isinstance(value, int):
        return {"integer", "number"}
    if isinstance(value, float):
        return {"number"} | ({"integer"} if value.is_integer() else set())
    if isinstance(value, str):
        return {"string"}
    if isinstance(value, list):
        return {"array"}
    return {"object"}


def coerce(value: Any, source: Source, schema: dict | None = None, path: Path = ()) -> Any:
    """Return `value` with every scalar read the way the schema wants it."""
    if schema is None:
        schema = load_schema()
    schema = _resolve(schema)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            child = subschema(schema, key)
            out[key] = coerce(item, source, child, path + (key,)) if child else item
        return out
    if isinstance(value, list):
        child = subschema(schema, 0)
        return [coerce(item, source, child, path + (i,)) if child else item
                for i, item in enumerate(value)]
    return coerce_scalar(schema, value, source.plain_scalars.get(path))


def apply_defaults(value: Any, schema: dict | None = None) -> Any:
    """Return a copy of `value` with every default of the schema filled in."""
    if schema is None:
        schema = load_schema()
    schema = _resolve(schema)
    if isinstance(value, dict):
        out = dict(value)
        for key, child in schema.get("properties", {}).items():
            # A default may sit beside a $ref ({"$ref": ..., "default": ...}).
            if "default" not in child:
                child = _resolve(child)
            if key not in out and "default" in child:
                out[key] = copy.deepcopy(child["default"])
        for key in out:
            child = subschema(schema, key)
            if child is not None:
                out[key] = apply_defaults(out[key], child)
        # Keys in the schema's order, so every resolved config reads the same way.
        order = list(schema.get("properties", {}))
        return dict(sorted(out.items(),
                           key=lambda item: order.index(item[0]) if item[0] in order else len(order)))
    if isinstance(value, list):
        child = subschema(schema, 0)
        return [apply_defaults(item, child) if child else item for item in value]
    return value


def describe_value(value: Any) -> str:
    """`got ...` text for a value: its YAML type and, for scalars, the value."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value:g}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    return f"a mapping with keys {', '.join(map(str, value))}" if value else "an empty mapping"


_TYPE_WORDS = {
    "object": "a mapping (key: value lines)", "array": "a list ('- ' items)",
    "string": "a string", "integer": "an integer", "number": "a number",
    "boolean": "true or false", "null": "null",
}


def _problems_of(error: jsonschema.ValidationError, source: Source) -> list[Problem]:
    path = tuple(error.absolute_path)
    kind = error.validator
    schema = error.schema
    instance = error.instance
    if kind == "additionalProperties" and isinstance(instance, dict):
        known = list(error.schema.get("properties", {}))
        problems = []
        for key in instance:
            if key in known:
                continue
            hint = suggest(key, known) or f"Known keys here: {', '.join(known)}."
            problems.append(source.problem(path + (key,), f"unknown key '{key}'.",
                                           hint, prefer_key=True))
        return problems
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        parent_schema = _resolve(schema)
        about = _resolve(parent_schema.get("properties", {}).get(missing, {}))
        hint = about.get("description")
        return [source.problem(path, f"missing required key '{missing}'.", hint, prefer_key=True)]
    if kind == "type":
        wanted = [error.validator_value] if isinstance(error.validator_value, str) else error.validator_value
        words = " or ".join(_TYPE_WORDS.get(word, word) for word in wanted)
        return [source.problem(path, f"must be {words}, got {describe_value(instance)}.")]
    if kind == "enum":
        choices = [json.dumps(choice) if not isinstance(choice, str) else choice
                   for choice in error.validator_value]
        hint = suggest(instance, [c for c in error.validator_value if isinstance(c, str)])
        return [source.problem(path, f"must be one of {', '.join(choices)}; got {describe_value(instance)}.",
                               hint or None)]
    if kind == "const":
        return [source.problem(path, f"must be {json.dumps(error.validator_value)}, got {describe_value(instance)}.")]
    bounds = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    if kind in bounds:
        return [source.problem(path, f"must be {bounds[kind]} {error.validator_value}, got {instance}.")]
    if kind == "minItems":
        return [source.problem(path, f"must have at least {error.validator_value} item(s), got {len(instance)}.")]
    if kind == "minProperties":
        return [source.problem(path, f"must have at least {error.validator_value} entry, got none.")]
    if kind == "maxProperties" and isinstance(instance, dict):
        return [source.problem(
            path, f"a layer is one class name mapped to its arguments, got {len(instance)} keys "
                  f"({', '.join(instance)}).",
            "Start each layer with its own '- ', e.g. '- Dense: {units: 10}'.")]
    if kind == "pattern":
        return [source.problem(path, f"{instance!r} is not allowed here: use letters, digits and "
                                     f"underscores (pattern {error.validator_value}).")]
    if kind == "propertyNames":
        return [source.problem(path + (instance,), f"the name {instance!r} is not allowed: use "
                                                   "letters, digits and underscores, not starting "
                                                   "with a digit.", prefer_key=True)]
    return [source.problem(path, error.message + ".")]


def validate(value: Any, source: Source) -> list[Problem]:
    """Check `value` against the schema; return every problem, in file order."""
    validator = jsonschema.Draft202012Validator(load_schema())
    problems: list[Problem] = []
    for error in validator.iter_errors(value):
        problems.extend(_problems_of(error, source))
    unique = {str(problem): problem for problem in problems}
    return sorted(unique.values(), key=lambda p: (p.line or 0, p.column or 0, str(p)))
