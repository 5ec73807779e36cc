"""Read YAML safely and remember where every value came from.

Only `yaml.SafeLoader` constructs values, so no tag can import or call code.
On top of PyYAML this module refuses duplicate keys (PyYAML keeps the last one
silently) and records, for every key path, the line and column of the key and
of its value, and the text of every plain scalar. The later steps use those to
put `file:line:column` on each error and to read a YAML 1.1 word such as `no`
as the name it was meant to be.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import yaml

from distill.errors import ConfigError, Problem

Path = tuple  # a key path: ("stages", 1, "loss", "temperature")


def format_path(path: Path) -> str:
    """Render a key path the way errors show it: `stages[1].loss.temperature`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


Mark = tuple  # (file, line, column); line and column are 1-based, or None


@dataclasses.dataclass
class Source:
    """Where the values of a config came from: a file, the files it is based on,
    and `--set` overrides.

    Attributes:
        file: The main file's name as the user gave it (used in messages).
        values: Key path -> Mark of the value.
        keys: Key path -> Mark of the key that names it.
        plain_scalars: Key path -> text of a plain (unquoted) scalar.
    """

    file: str
    values: dict = dataclasses.field(default_factory=dict)
    keys: dict = dataclasses.field(default_factory=dict)
    plain_scalars: dict = dataclasses.field(default_factory=dict)

    def mark(self, node: yaml.Node) -> Mark:
        return (self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def locate(self, path: Path, prefer_key: bool = False) -> Mark:
        """Return the Mark of `path`, or of its nearest known parent."""
        path = tuple(path)
        while True:
            table_order = (self.keys, self.values) if prefer_key else (self.values, self.keys)
            for table in table_order:
                if path in table:
                    return table[path]
            if not path:
                return (self.file, None, None)
            path = path[:-1]

    def forget(self, prefix: Path) -> None:
        """Drop what is known about `prefix` and everything below it."""
        prefix = tuple(prefix)
        for table in (self.values, self.keys, self.plain_scalars):
            for path in [p for p in table if p[:len(prefix)] == prefix]:
                del table[path]

    def overlay(self, other: "Source", prefix: Path = ()) -> None:
        """Take `other`'s positions for everything it has at or below `prefix`."""
        prefix = tuple(prefix)
        for mine, theirs in ((self.values, other.values), (self.keys, other.keys),
                             (self.plain_scalars, other.plain_scalars)):
            mine.update({p: m for p, m in theirs.items() if p[:len(prefix)] == prefix})

    def problem(self, path: Path, message: str, hint: str | None = None,
                prefer_key: bool = False) -> Problem:
        """Build a `Problem` located at `path`."""
        file, line, column = self.locate(path, prefer_key=prefer_key)
        return Problem(message, file=file, line=line, column=column,
                       key=format_path(path) or None, hint=hint, path=tuple(path))


def _problem_from_yaml_error(file: str, error: yaml.YAMLError) -> Problem:
    mark = getattr(error, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    column = mark.column + 1 if mark is not None else None
    what = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    message = f"YAML syntax error: {what}"
    if context:
        message += f" ({context})"
    hint = None
    if "\t" in what or "\\t" in what or "tab" in what:
        hint = "YAML indents with spaces only: replace the tab with spaces."
    elif isinstance(error, yaml.constructor.ConstructorError):
        message = f"YAML tag not allowed: {what}"
        hint = ("distill reads plain YAML only (mappings, lists, strings, numbers, "
                "booleans); remove the '!' tag.")
    return Problem(message + ".", file=file, line=line, column=column, hint=hint)


_COLLECTION_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:omap")


def _problem_from_reader_error(file: str, text: str, error: yaml.reader.ReaderError) -> Problem:
    before = text[:error.position]
    line = before.count("\n") + 1
    column = error.position - (before.rfind("\n") + 1) + 1
    return Problem(f"the character U+{error.character:04X} is not allowed in YAML.", file=file,
                   line=line, column=column, hint="Delete it (it is invisible in most editors).")


class _Walker:
    """Turn a composed node tree into Python values, recording marks."""

    def __init__(self, loader: yaml.SafeLoader, source: Source):
        self.loader = loader
        self.source = source
        self.problems: list[Problem] = []

    def value(self, node: yaml.Node, path: Path) -> Any:
        self.source.values[path] = self.source.mark(node)
        if (isinstance(node, (yaml.MappingNode, yaml.SequenceNode))
                and node.tag not in _COLLECTION_TAGS):
            # Scalars go through SafeLoader, which refuses unknown tags; collections
            # are walked here, so their tags are checked here.
            raise yaml.constructor.ConstructorError(
                None, None, f"could not determine a constructor for the tag {node.tag!r}",
                node.start_mark)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, path + (index,)) for index, item in enumerate(node.value)]
        value = self.loader.construct_object(node, deep=True)
        if node.style is None and isinstance(node, yaml.ScalarNode):
            self.source.plain_scalars[path] = node.value
        return value

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict:
        self.loader.flatten_mapping(node)  # applies YAML merge keys (`<<: *base`)
        result: dict = {}
        for key_node, value_node in node.value:
            key = self.loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                # Keys are names; `1:` or `yes:` as a key is read as its text.
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key)
            key_path = path + (key,)
            mark = self.source.mark(key_node)
            if key in result:
                first_line = self.source.keys[key_path][1]
                self.problems.append(Problem(
                    f"duplicate key '{key}' (first given on line {first_line}).",
                    file=mark[0], line=mark[1], column=mark[2], key=format_path(key_path),
                    hint="YAML would silently keep only the last one: delete one of them."))
                continue
            self.source.keys[key_path] = mark
            result[key] = self.value(value_node, key_path)
        return result


def parse_yaml(text: str, file: str) -> tuple[Any, Source]:
    """Parse one YAML document safely, recording where each value came from.

    Args:
        text: The YAML text.
        file: The name to use in error messages.

    Returns:
        The parsed value (usually a dict) and its `Source`.

    Raises:
        ConfigError: on a syntax error, a disallowed tag, several documents or a
            duplicate key.
    """
    source = Source(file=file)
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as error:  # a control character, found before parsing
        raise ConfigError(_problem_from_reader_error(file, text, error)) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None, source
        walker = _Walker(loader, source)
        value = walker.value(node, ())
    except yaml.reader.ReaderError as error:
        raise ConfigError(_problem_from_reader_error(file, text, error)) from None
    except yaml.YAMLError as error:
        raise ConfigError(_problem_from_yaml_error(file, error)) from None
    finally:
        loader.dispose()
    if walker.problems:
        raise ConfigError(walker.problems)
    return value, source


def read_yaml_file(path: str | os.PathLike) -> tuple[Any, Source]:
    """Read and parse a YAML file, with errors that say what to do.

    Raises:
        ConfigError: if the file is missing, unreadable, not UTF-8 or not valid YAML.
    """
    file = os.fspath(path)
    try:
        with open(file, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ConfigError(Problem(
            "file not found.", file=file,
            hint="Check the path; `distill init` writes a starting config.")) from None
    except IsADirectoryError:
        raise ConfigError(Problem("is a directory, not a YAML file.", file=file)) from None
    except PermissionError:
        raise ConfigError(Problem("permission denied while reading the file.", file=file)) from None
    except UnicodeDecodeError as error:
        raise ConfigError(Problem(
            f"is not UTF-8 text (byte {error.start}).", file=file,
            hint="Save the file as UTF-8.")) from None
    return parse_yaml(text, file)
