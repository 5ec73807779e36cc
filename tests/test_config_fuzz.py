"""Property: any mutation of a valid config either loads or raises ConfigError.

Never a KeyError, TypeError or Keras exception from deep inside: whatever a
person types, the answer is the tool's own located message.
"""

from __future__ import annotations

import copy

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distill.config import parse_config
from distill.errors import ConfigError
from tests.conftest import CONFIGS

VALID = yaml.safe_load((CONFIGS / "mnist.yaml").read_text())
VALID_TEXT = (CONFIGS / "mnist.yaml").read_text()

JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["Dense", "adam", "kd", "mnist", "teacher", "softmax", "1e-3", "no", "-1",
                     "0", "", "~", "[1, 2]"]),
    st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(st.text(max_size=6), st.integers(0, 3), max_size=2),
)

FUZZ = settings(max_examples=250, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def paths(value, prefix=()):
    """Every key path in a nested structure, containers included."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, prefix + (index,))


def parent_and_key(value, path):
    for part in path[:-1]:
        value = value[part]
    return value, path[-1]


def loads_or_config_error(text: str) -> None:
    try:
        parse_config(text, "fuzz.yaml")
    except ConfigError as error:
        assert error.problems and all(str(problem) for problem in error.problems)


@FUZZ
@given(st.data())
def test_structural_mutations(data):
    config = copy.deepcopy(VALID)
    for _ in range(data.draw(st.integers(1, 3))):
        candidates = [p for p in paths(config) if p]
        if not candidates:
            break
        path = data.draw(st.sampled_from(candidates))
        parent, key = parent_and_key(config, path)
        action = data.draw(st.sampled_from(["drop", "swap", "insert"]))
        if action == "drop":
            del parent[key]
        elif action == "swap":
            parent[key] = data.draw(JUNK)
        elif isinstance(parent[key], dict):
            parent[key][data.draw(st.text(min_size=1, max_size=8))] = data.draw(JUNK)
        elif isinstance(parent[key], list):
            parent[key].insert(data.draw(st.integers(0, len(parent[key]))), data.draw(JUNK))
    loads_or_config_error(yaml.safe_dump(config))


@FUZZ
@given(st.integers(0, len(VALID_TEXT)), st.text(max_size=6))
def test_truncated_and_garbled_text(cut, insert):
    loads_or_config_error(VALID_TEXT[:cut] + insert)
    loads_or_config_error(VALID_TEXT[:cut] + insert + VALID_TEXT[cut:])
