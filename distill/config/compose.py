"""Build one config out of several sources: `base:` files and `--set` overrides.

`base: other.yaml` (relative to the file that names it) starts an experiment
from another file: mappings merge deeply, lists and scalars replace, and a key
set to null removes the base's key (so that it takes its default, or so that a
model can trade `layers:` for `path:`). Bases may
have bases; a cycle is an error. `--set key.path=value` then changes single
values, addressed by dotted keys with list indices (`stages.1.loss.temperature`),
in lists of named items by name (`stages.student.loss.temperature`), or every
item of a list at once (`stages.*.epochs=1`). A mapping given as the value
replaces the mapping there; set single keys to change only those. The
value is read as a YAML scalar and typed by the schema like any value in a file.

Every value keeps its origin (file and line, or the `--set` argument), so that
an error points at the place to fix.
"""

from __future__ import annotations

import copy
import os
from typing import Any, Sequence

from distill.config.loader import Path, Source, format_path, parse_yaml, read_yaml_file
from distill.config.schema import default_at, describe_value
from distill.errors import ConfigError, Problem

BASE_KEY = "base"


def _merge(base: Any, override: Any, source: Source, other: Source, path: Path) -> Any:
    """Deep-merge `override` onto `base`; `source` (of base) takes other's marks."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            child = path + (key,)
            if key in base and value is None:
                # null removes the base's key, e.g. `layers: null` beside a new `path:`.
                del merged[key]
                source.forget(child)
            elif key in base:
                merged[key] = _merge(base[key], value, source, other, child)
            else:
                merged[key] = value
                source.overlay(other, child)
        if path in other.values:
            source.values[path] = other.values[path]
        return merged
    source.forget(path)
    source.overlay(other, path)
    return override


def read_with_bases(path: str, chain: tuple[str, ...] = ()) -> tuple[Any, Source]:
    """Read an experiment file and, recursively, the files it is based on.

    Raises:
        ConfigError: for a missing or invalid base, or a cycle of bases.
    """
    value, source = read_yaml_file(path)
    if not isinstance(value, dict) or BASE_KEY not in value:
        return value, source
    reference = value[BASE_KEY]
    where = (BASE_KEY,)
    if not isinstance(reference, str) or not reference.strip():
        raise ConfigError(source.problem(where, "must be the path of another experiment file, "
                                                f"got {describe_value(reference)}."))
    base_path = os.path.normpath(os.path.join(os.path.dirname(path), reference))
    here = os.path.realpath(path)
    chain = chain + (here,)
    if os.path.realpath(base_path) in chain:
        cycle = " -> ".join(os.path.relpath(p) for p in chain + (os.path.realpath(base_path),))
        raise ConfigError(source.problem(where, f"the bases form a cycle: {cycle}.",
                                         "Remove `base:` from one of these files."))
    if not os.path.isfile(base_path):
        raise ConfigError(source.problem(
            where, f"base file not found: {base_path}.",
            "A base path is relative to the folder of the file that names it."))
    base_value, base_source = read_with_bases(base_path, chain)
    if not isinstance(base_value, dict):
        raise ConfigError(source.problem(where, f"the base file {base_path} does not hold a "
                                                f"mapping; it holds {describe_value(base_value)}."))
    own = {key: item for key, item in value.items() if key != BASE_KEY}
    source.forget(where)
    merged_source = Source(file=source.file, values=dict(base_source.values),
                           keys=dict(base_source.keys),
                           plain_scalars=dict(base_source.plain_scalars))
    merged = _merge(base_value, own, merged_source, source, ())
    merged_source.values[()] = source.values.get((), (source.file, 1, 1))
    return merged, merged_source


def _step(container: Any, part: str, path: Path, origin: str) -> int | str:
    """The key or index that `part` names inside `container`."""
    if isinstance(container, list):
        if part.lstrip("-").isdigit():
            index = int(part)
            if not -len(container) <= index < len(container):
                raise ConfigError(Problem(
                    f"{format_path(path)} has {len(container)} item(s), numbered 0 to "
                    f"{len(container) - 1}; there is no item {index}.", file=origin))
            return index % len(container)
        named = [i for i, item in enumerate(container)
                 if isinstance(item, dict) and item.get("name") == part]
        if not named:
            names = [item.get("name") for item in container if isinstance(item, dict)]
            raise ConfigError(Problem(
                f"{format_path(path)} has no item named '{part}'.", file=origin,
                hint=f"Use an index (0 to {len(container) - 1})"
                     + (f" or one of the names {', '.join(map(str, names))}." if names else ".")))
        return named[0]
    if isinstance(container, dict):
        return part
    raise ConfigError(Problem(
        f"cannot set a key inside {format_path(path)}: it is {describe_value(container)}, "
        "not a mapping or a list.", file=origin))


def _assign(container: Any, parts: list[str], path: Path, new: Any, raw_source: Source | None,
            source: Source, origin: str) -> None:
    """Set `new` at `parts` below `container`; `*` stands for every item of a list."""
    part, rest = parts[0], parts[1:]
    if part == "*":
        if not isinstance(container, list):
            raise ConfigError(Problem(
                f"'*' stands for every item of a list, but {format_path(path) or 'the file'} is "
                f"{describe_value(container)}.", file=origin))
        for index in range(len(container)):
            _assign(container, [str(index)] + rest, path, new, raw_source, source, origin)
        return
    step = _step(container, part, path, origin)
    path += (step,)
    if not rest:
        container[step] = copy.deepcopy(new)
        source.forget(path)
        source.values[path] = source.keys[path] = (origin, None, None)
        if raw_source is not None:
            for sub, text_value in raw_source.plain_scalars.items():
                source.plain_scalars[path + sub] = text_value
        return
    if isinstance(container, dict) and not isinstance(container.get(step), (dict, list)):
        if step in container and container[step] is not None:
            raise ConfigError(Problem(
                f"cannot set a key inside {format_path(path)}: it is "
                f"{describe_value(container[step])}.", file=origin))
        # A missing mapping starts from its default, so that
        # `--set stages.0.optimizer.learning_rate=0.01` keeps the default optimizer.
        default = default_at(path)
        container[step] = default if isinstance(default, dict) else {}
    _assign(container[step], rest, path, new, raw_source, source, origin)


def apply_overrides(value: Any, source: Source, overrides: Sequence[str]) -> Any:
    """Apply `--set key.path=value` overrides, in order, to parsed config data.

    Unknown keys are not refused here: the schema refuses them afterwards, with a
    "did you mean", located at the `--set` argument.

    Raises:
        ConfigError: for an override that is not KEY=VALUE, a path through a
            scalar, a list index out of range, or a value that is not YAML.
    """
    if not overrides:
        return value
    if not isinstance(value, dict):
        return value  # the file itself is reported as empty or not a mapping
    for text in overrides:
        origin = f"--set {text}"
        key, equals, raw = text.partition("=")
        parts = key.strip().split(".") if key.strip() else []
        if not equals or not parts or any(not part for part in parts):
            raise ConfigError(Problem(
                f"an override is KEY=VALUE with a dotted KEY, got {text!r}.", file="--set",
                hint="E.g. --set stages.1.loss.temperature=4 or --set experiment.seed=7."))
        try:
            new, raw_source = parse_yaml(raw, origin) if raw.strip() else (None, None)
        except ConfigError as error:
            raise ConfigError(Problem(f"the value is not valid YAML: {error.problems[0].message}",
                                      file=origin)) from None
        _assign(value, parts, (), new, raw_source, source, origin)
    return value
