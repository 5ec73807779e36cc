"""Build a model from its YAML declaration, or load it from a `.keras` file.

A declaration is a list of Keras layers by Keras' own class names and
arguments. Each is made by `keras.layers.deserialize`, the same path Keras uses
to rebuild a saved model, so every layer Keras has is available without a table
of our own. The layers are applied in order to an input of the data's shape and
wrapped in a functional `keras.Model`, which can be saved, reloaded and tapped at
any layer.
"""

from __future__ import annotations

import functools
import inspect
import os
import re

import keras

from distill.errors import DeclarationError
from distill.naming import check_arguments, suggest

# Layers a YAML file must not declare: they run stored Python code or wrap
# models of other frameworks, which a config from a stranger must never do.
NOT_DECLARABLE = {
    "Lambda": "it runs arbitrary Python code",
    "TFSMLayer": "it loads a TensorFlow SavedModel; use models.<name>.path for saved models",
    "TorchModuleWrapper": "it wraps a PyTorch module",
    "JaxLayer": "it wraps JAX code",
    "FlaxLayer": "it wraps a Flax module",
    "Layer": "it is the abstract base class",
    "Wrapper": "it is an abstract base class",
    "InputLayer": "distill adds the input from the data's shape itself",
}

PROBABILITY_ACTIVATIONS = ("softmax", "log_softmax", "sigmoid")


@functools.cache
def layer_classes() -> dict[str, type]:
    """Every layer class Keras exports, by class name."""
    return {name: obj for name, obj in vars(keras.layers).items()
            if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer)}


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def parse_layer(item: object, index: int) -> tuple[str, dict]:
    """Split one `layers` entry into (class name, arguments)."""
    if isinstance(item, str):
        return item, {}
    if isinstance(item, dict) and len(item) == 1:
        (name, arguments), = item.items()
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise DeclarationError(("layers", index, name),
                                   f"the arguments of {name} must be a mapping, got {arguments!r}.",
                                   f"Write '- {name}: {{...}}', or '- {name}' for none.")
        return str(name), dict(arguments)
    raise DeclarationError(("layers", index),
                           f"a layer is a class name or a mapping of one class name to its "
                           f"arguments, got {item!r}.", "E.g. '- Dense: {units: 10}'.")


def build_layer(item: object, index: int) -> keras.layers.Layer:
    """Make the layer declared at `layers[index]`.

    Raises:
        DeclarationError: for an unknown or forbidden class, an unknown argument,
            or a value Keras refuses.
    """
    class_name, arguments = parse_layer(item, index)
    classes = layer_classes()
    where = ("layers", index)
    if class_name not in classes:
        raise DeclarationError(
            where, f"unknown layer '{class_name}'.",
            suggest(class_name, classes) or "Layers are named by their Keras class names, "
                                            "e.g. Dense, Conv2D, Flatten, Dropout.")
    if class_name in NOT_DECLARABLE:
        raise DeclarationError(where, f"{class_name} cannot be declared in a config: "
                                      f"{NOT_DECLARABLE[class_name]}.")
    cls = classes[class_name]
    check_arguments(cls, arguments, where + (class_name,), class_name, keras.layers.Layer)
    arguments.setdefault("name", f"{_snake(class_name)}_{index}")
    try:
        return keras.layers.deserialize(
            {"module": "keras.layers", "class_name": class_name, "config": arguments})
    except Exception:  # noqa: BLE001 - Keras hides the cause; construct directly to get it
        try:
            cls(**arguments)
        except Exception as error:  # noqa: BLE001
            raise DeclarationError(where + (class_name,),
                                   f"{class_name}: {_first_line(error)}") from None
        raise


def _first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def _activation_name(layer: keras.layers.Layer) -> str | None:
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    try:
        return keras.activations.serialize(activation)
    except Exception:  # noqa: BLE001 - a custom callable: not one we can name
        return getattr(activation, "__name__", None)


def check_logits(model: keras.Model, num_classes: int, where: tuple) -> None:
    """Refuse a model that does not end in `num_classes` raw logits.

    Distillation softens logits with softmax(z / T). Logits that already went
    through softmax would be softened twice, which flattens every target towards
    uniform and parks the loss near ln(num_classes); that is refused here.

    Raises:
        DeclarationError: if the last layer applies softmax (or another
            probability activation) or the output is not (batch, num_classes).
    """
    last = model.layers[-1]
    activation = _activation_name(last)
    if activation in PROBABILITY_ACTIVATIONS:
        raise DeclarationError(
            where, f"the last layer ({last.name}) applies {activation}, but models must output "
                   "logits: distill applies softmax itself, and a second softmax would flatten "
                   "every soft target.",
            "Remove the activation from the last layer (or the Softmax layer after it).")
    shape = tuple(model.output_shape)
    if len(shape) != 2 or shape[-1] != num_classes:
        raise DeclarationError(
            where, f"the model outputs shape {shape[1:]} per sample, but the data have "
                   f"{num_classes} classes.",
            f"End with a layer of {num_classes} units, e.g. '- Dense: {{units: {num_classes}}}'.")


def saved_model_file(declaration: dict) -> str | None:
    """The `.keras` file a declaration loads, or None for one built from layers.

    `{path: file}` names it; `{run: folder, stage: name}` is the model that stage
    of an earlier run trained, `<run>/<stage>/model.keras`.
    """
    if "path" in declaration:
        return declaration["path"]
    if "run" in declaration:
        return os.path.join(declaration["run"], declaration["stage"], "model.keras")
    return None


def build_model(name: str, declaration: dict, input_shape: tuple[int, ...],
                num_classes: int) -> keras.Model:
    """Build a fresh model from `{layers: [...]}`, or load `{path: ...}` or `{run:, stage:}`.

    Args:
        name: The model's name in the config.
        declaration: The config's `models.<name>` mapping.
        input_shape: Shape of one input sample.
        num_classes: Number of logits the model must output.

    Returns:
        An uncompiled functional model producing logits.

    Raises:
        DeclarationError: with a path relative to `declaration`.
    """
    path = saved_model_file(declaration)
    if path is not None:
        try:
            return load_model(path, input_shape, num_classes,
                              safe_mode=declaration.get("safe_mode", True), name=name)
        except DeclarationError as error:
            if "run" not in declaration:
                raise
            raise DeclarationError(("run",), error.message, error.hint) from None
    inputs = keras.Input(shape=input_shape, name="inputs")
    outputs = inputs
    for index, item in enumerate(declaration["layers"]):
        layer = build_layer(item, index)
        try:
            outputs = layer(outputs)
        except Exception as error:  # noqa: BLE001 - Keras raises many kinds for a bad shape
            raise DeclarationError(
                ("layers", index),
                f"{type(layer).__name__} cannot take the output of the layer before it, of shape "
                f"{tuple(outputs.shape)[1:]}: {_first_line(error)}",
                "Check the layer order (e.g. Flatten before Dense, or data.flatten: false for "
                "Conv2D).") from None
    model = keras.Model(inputs, outputs, name=name)
    check_logits(model, num_classes, ("layers", len(declaration["layers"]) - 1))
    return model


def load_model(path: str, input_shape: tuple[int, ...], num_classes: int, *,
               safe_mode: bool = True, name: str | None = None) -> keras.Model:
    """Load a `.keras` model and check it fits the data.

    Raises:
        DeclarationError: with path ("path",) if the file is missing, unreadable,
            refused by safe mode, or does not fit the data.
    """
    where = ("path",)
    if not os.path.isfile(path):
        raise DeclarationError(where, f"model file not found: {path}.",
                               "Give the path of a .keras file, relative to the current folder.")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=safe_mode)
    except Exception as error:  # noqa: BLE001 - Keras raises many kinds for a bad file
        text = _first_line(error)
        hint = None
        if "safe_mode" in str(error):
            hint = ("The file holds code (e.g. a Lambda layer). If you trust it, set "
                    "safe_mode: false on this model.")
        raise DeclarationError(where, f"cannot load {path}: {text}", hint) from None
    expected = tuple(input_shape)
    got = tuple(model.input_shape[1:]) if hasattr(model, "input_shape") else None
    if got is not None and got != expected:
        raise DeclarationError(where, f"{path} takes inputs of shape {got}, but the data give "
                                      f"{expected}.",
                               "Set data.flatten to match the model.")
    check_logits(model, num_classes, where)
    if name and model.name != name:
        model.name = name
    return model
