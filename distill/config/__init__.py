"""Experiment files: read safely, validate fully, resolve every default.

    load_config("configs/mnist.yaml") -> ExperimentConfig

The steps, each of which reports every problem it finds before stopping:
`yaml.safe_load`-equivalent parsing with duplicate keys refused and positions
kept (`loader`); merging `base:` files and applying `--set` overrides
(`compose`); reading each scalar as the schema wants it and validating
against the JSON Schema (`schema`); checking references and building every
model, optimizer and loss once (`checks`); and filling in every default, so that
the resolved config says everything the run will do.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from typing import Any, Sequence

from distill.config import checks, methods, schema
from distill.config.compose import apply_overrides, read_with_bases
from distill.config.loader import Source, format_path, parse_yaml
from distill.errors import ConfigError, Problem

__all__ = ["ExperimentConfig", "format_path", "load_config", "parse_config", "resolve"]


@dataclasses.dataclass
class ExperimentConfig:
    """A validated experiment with every default filled in.

    Attributes:
        data: The resolved config as plain data (what `config.yaml` in a run holds).
        file: The file it was read from, as given.
        overrides: The `--set KEY=VALUE` overrides applied on top of the file.
    """

    data: dict
    file: str
    overrides: list[str] = dataclasses.field(default_factory=list)

    @property
    def name(self) -> str:
        return self.data["experiment"]["name"]


def _fill(config: dict) -> dict:
    """Defaults the schema cannot state: those that depend on other keys."""
    config = schema.apply_defaults(config)
    for stage in config["stages"]:
        stage.setdefault("batch_size", config["data"]["batch_size"])
        if "loss" in stage:
            stage["loss"] = methods.fill_loss(stage["loss"])
    for model in config["models"].values():
        for key in ("path", "run"):
            if key in model:
                model[key] = os.path.abspath(os.path.expanduser(model[key]))
                model.setdefault("safe_mode", True)
    if config["data"]["path"] is not None:
        config["data"]["path"] = os.path.abspath(os.path.expanduser(config["data"]["path"]))
    return config


def resolve(value: Any, source: Source, build: bool = True) -> dict:
    """Validate parsed YAML and fill in its defaults.

    Args:
        value: What the YAML parser returned.
        source: Where its values came from.
        build: Also build every model, optimizer and loss once (imports Keras).

    Returns:
        The resolved config.

    Raises:
        ConfigError: listing every problem found.
    """
    if value is None:
        raise ConfigError(Problem(
            "the file is empty.", file=source.file,
            hint="An experiment needs the keys experiment, data, models and stages; "
                 "`distill init` writes a starting file."))
    if not isinstance(value, dict):
        raise ConfigError(Problem(
            f"the file must be a mapping with the keys experiment, data, models and stages, "
            f"got {schema.describe_value(value)}.", file=source.file, line=1))
    if "base" in value:
        raise ConfigError(source.problem(("base",), "a base is read only from files.",
                                         "Use load_config(path) for a file that names a base."))
    value = schema.coerce(value, source)
    problems = schema.validate(value, source)
    if problems:
        # Also check what the schema accepted, so that one pass reports every problem.
        broken = [problem.path for problem in problems if problem.path is not None]
        filled = schema.apply_defaults(copy.deepcopy(value))
        problems += checks.iter_problems(filled, source, build=build, broken=broken)
        raise ConfigError(checks.in_file_order(problems, source.file))
    resolved = _fill(copy.deepcopy(value))
    problems = list(checks.iter_problems(resolved, source, build=build))
    if problems:
        raise ConfigError(checks.in_file_order(problems, source.file))
    return resolved


def parse_config(text: str, file: str = "<config>", overrides: Sequence[str] = (),
                 build: bool = True) -> ExperimentConfig:
    """Validate and resolve config text (handy in tests and notebooks; no `base:`)."""
    value, source = parse_yaml(text, file)
    value = apply_overrides(value, source, overrides)
    return ExperimentConfig(resolve(value, source, build=build), file, list(overrides))


def load_config(path: str | os.PathLike, overrides: Sequence[str] = (),
                build: bool = True) -> ExperimentConfig:
    """Read, validate and resolve an experiment file.

    Args:
        path: The YAML file.
        overrides: `KEY=VALUE` strings, as given to `--set`.
        build: Also build every model, optimizer and loss once (imports Keras).

    Raises:
        ConfigError: if the file, a base file or an override is wrong; it lists
            every problem found.
    """
    file = os.fspath(path)
    value, source = read_with_bases(file)
    value = apply_overrides(value, source, overrides)
    return ExperimentConfig(resolve(value, source, build=build), file, list(overrides))
