"""Build a Keras optimizer from `{name: adam, learning_rate: 0.001, ...}`."""

from __future__ import annotations

import functools
import inspect

import keras

from distill.errors import DeclarationError
from distill.naming import accepted_arguments, suggest

_NOT_DECLARABLE = {"Optimizer", "LossScaleOptimizer", "MultiOptimizer"}


@functools.cache
def optimizer_classes() -> dict[str, type]:
    """Keras' optimizers by lower-case name (`adam`, `adamw`, `sgd`, ...)."""
    return {name.lower(): obj for name, obj in vars(keras.optimizers).items()
            if inspect.isclass(obj) and issubclass(obj, keras.optimizers.Optimizer)
            and name not in _NOT_DECLARABLE}


def build_optimizer(declaration: dict) -> keras.optimizers.Optimizer:
    """Make the optimizer a stage declares, through Keras' deserialization.

    Args:
        declaration: `name` (any case: `adam`, `Adam`) and the optimizer's arguments.

    Raises:
        DeclarationError: for an unknown optimizer or argument, or a value Keras refuses.
    """
    arguments = dict(declaration)
    name = str(arguments.pop("name"))
    classes = optimizer_classes()
    cls = classes.get(name.lower())
    if cls is None:
        raise DeclarationError(("name",), f"unknown optimizer '{name}'.",
                               suggest(name, classes) or f"Known: {', '.join(sorted(classes))}.")
    accepted = accepted_arguments(cls, keras.optimizers.Optimizer)
    for argument in arguments:
        if accepted is not None and argument not in accepted:
            raise DeclarationError((argument,), f"{cls.__name__} has no argument '{argument}'.",
                                   suggest(argument, accepted)
                                   or f"Its arguments: {', '.join(sorted(accepted))}.")
    try:
        return keras.optimizers.deserialize({"class_name": cls.__name__, "config": arguments})
    except Exception as error:  # noqa: BLE001 - Keras raises many kinds for a bad value
        message = (str(error).strip() or type(error).__name__).splitlines()[0]
        raise DeclarationError((), f"{cls.__name__}: {message}") from None
