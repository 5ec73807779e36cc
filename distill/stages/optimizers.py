"""Build a Keras optimizer from `{name: adam, learning_rate: 0.001, ...}`.

`learning_rate` is a number or a Keras learning-rate schedule by name and
arguments, `{name: cosine_decay, initial_learning_rate: 0.001, decay_steps: 1000}`.
A schedule is a function of the optimizer's iteration counter (batches trained
in the stage so far), so a resumed stage that restores the counter continues
the schedule where it stopped.
"""

from __future__ import annotations

import functools
import inspect
import re

import keras

from distill.errors import DeclarationError
from distill.naming import check_arguments, suggest

_NOT_DECLARABLE = {"Optimizer", "LossScaleOptimizer", "MultiOptimizer"}


@functools.cache
def optimizer_classes() -> dict[str, type]:
    """Keras' optimizers by lower-case name (`adam`, `adamw`, `sgd`, ...)."""
    return {name.lower(): obj for name, obj in vars(keras.optimizers).items()
            if inspect.isclass(obj) and issubclass(obj, keras.optimizers.Optimizer)
            and name not in _NOT_DECLARABLE}


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


@functools.cache
def schedule_classes() -> dict[str, type]:
    """Keras' learning-rate schedules by snake-case name (`cosine_decay`, ...)."""
    base = keras.optimizers.schedules.LearningRateSchedule
    return {_snake(name): obj for name, obj in vars(keras.optimizers.schedules).items()
            if inspect.isclass(obj) and issubclass(obj, base) and obj is not base}


def _as_floats(cls: type, arguments: dict, *bases: type) -> dict:
    """Integers where `cls` expects floats (its default is a float) become floats.

    YAML reads `learning_rate: 1` and `momentum: 1` as integers, which Keras'
    optimizers refuse ("should be float"); the schema promises any number.
    """
    floats = set()
    for klass in (cls,) + bases:
        for parameter in inspect.signature(klass.__init__).parameters.values():
            if isinstance(parameter.default, float) or "learning_rate" in parameter.name:
                floats.add(parameter.name)
    return {key: float(value) if key in floats and isinstance(value, int)
            and not isinstance(value, bool) else value for key, value in arguments.items()}


def build_schedule(declaration: dict) -> keras.optimizers.schedules.LearningRateSchedule:
    """Make a learning-rate schedule from `{name: cosine_decay, <its arguments>}`.

    Args:
        declaration: `name` (`cosine_decay`, or the class name `CosineDecay`) and the
            arguments of that Keras class; steps count batches.

    Raises:
        DeclarationError: for an unknown schedule or argument, or a value Keras refuses;
            paths are relative to the declaration.
    """
    arguments = dict(declaration)
    name = str(arguments.pop("name"))
    classes = schedule_classes()
    cls = classes.get(name) or classes.get(_snake(name))
    if cls is None:
        raise DeclarationError(("name",), f"unknown learning-rate schedule '{name}'.",
                               suggest(name, classes) or f"Known: {', '.join(sorted(classes))}.")
    check_arguments(cls, arguments, (), cls.__name__)
    arguments = _as_floats(cls, arguments)
    try:
        schedule = keras.optimizers.schedules.deserialize(
            {"class_name": cls.__name__, "config": arguments})
    except Exception:  # noqa: BLE001 - Keras hides the cause; construct directly to get it
        try:
            cls(**arguments)
        except Exception as error:  # noqa: BLE001
            raise DeclarationError((), f"{cls.__name__}: {_first_line(error)}") from None
        raise
    try:
        schedule(0)  # a wrong value (e.g. a string) fails here rather than in the first step
    except Exception as error:  # noqa: BLE001
        raise DeclarationError((), f"{cls.__name__} fails at step 0: {_first_line(error)}",
                               "Its arguments must be numbers (boundaries and values: lists "
                               "of numbers).") from None
    return schedule


def _first_line(error: Exception) -> str:
    text = (str(error).strip() or type(error).__name__).splitlines()[0]
    return re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", text)  # TensorFlow's op prefix


def build_optimizer(declaration: dict) -> keras.optimizers.Optimizer:
    """Make the optimizer a stage declares, through Keras' deserialization.

    Args:
        declaration: `name` (any case: `adam`, `Adam`) and the optimizer's arguments;
            `learning_rate` may be a schedule (see `build_schedule`).

    Raises:
        DeclarationError: for an unknown optimizer, schedule or argument, or a value
            Keras refuses.
    """
    arguments = dict(declaration)
    if isinstance(arguments.get("learning_rate"), dict):
        try:
            arguments["learning_rate"] = build_schedule(arguments["learning_rate"])
        except DeclarationError as error:
            raise DeclarationError(("learning_rate",) + error.path, error.message,
                                   error.hint) from None
    name = str(arguments.pop("name"))
    classes = optimizer_classes()
    cls = classes.get(name.lower())
    if cls is None:
        raise DeclarationError(("name",), f"unknown optimizer '{name}'.",
                               suggest(name, classes) or f"Known: {', '.join(sorted(classes))}.")
    check_arguments(cls, arguments, (), cls.__name__, keras.optimizers.Optimizer)
    arguments = _as_floats(cls, arguments, keras.optimizers.Optimizer)
    try:
        return keras.optimizers.deserialize({"class_name": cls.__name__, "config": arguments})
    except Exception as error:  # noqa: BLE001 - Keras raises many kinds for a bad value
        message = (str(error).strip() or type(error).__name__).splitlines()[0]
        raise DeclarationError((), f"{cls.__name__}: {message}") from None
