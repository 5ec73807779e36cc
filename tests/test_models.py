"""Building models from declarations and loading them from files."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from distill.errors import DeclarationError
from distill.models import build_model, load_model

MLP = {"layers": [{"Dense": {"units": 16, "activation": "relu"}}, {"Dense": {"units": 10}}]}


def test_builds_a_functional_model_with_stable_layer_names():
    model = build_model("student", MLP, (784,), 10)
    assert model.name == "student"
    assert [layer.name for layer in model.layers] == ["inputs", "dense_0", "dense_1"]
    assert model.count_params() == 784 * 16 + 16 + 16 * 10 + 10
    assert model(np.zeros((2, 784), "float32")).shape == (2, 10)


def test_bare_class_names_and_null_arguments():
    declaration = {"layers": ["Flatten", {"Dropout": {"rate": 0.1}}, {"Dense": None},]}
    with pytest.raises(DeclarationError) as caught:
        build_model("m", declaration, (28, 28, 1), 10)
    assert caught.value.path[:2] == ("layers", 2)  # Dense without units
    declaration["layers"][2] = {"Dense": {"units": 10}}
    assert build_model("m", declaration, (28, 28, 1), 10).output_shape == (None, 10)


def test_conv_model_on_images():
    declaration = {"layers": [{"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relu"}},
                              {"MaxPooling2D": {}}, "Flatten", {"Dense": {"units": 10}}]}
    model = build_model("cnn", declaration, (28, 28, 1), 10)
    assert model.output_shape == (None, 10)


def test_shape_mismatch_points_at_the_layer():
    declaration = {"layers": [{"Conv2D": {"filters": 4, "kernel_size": 3}}, {"Dense": {"units": 10}}]}
    with pytest.raises(DeclarationError) as caught:
        build_model("m", declaration, (784,), 10)
    assert caught.value.path == ("layers", 0) and "shape (784,)" in caught.value.message


def test_loaded_model_round_trip_and_checks(tmp_path):
    model = build_model("teacher", MLP, (784,), 10)
    path = str(tmp_path / "teacher.keras")
    model.save(path)
    loaded = load_model(path, (784,), 10)
    x = np.random.default_rng(0).random((3, 784)).astype("float32")
    assert np.allclose(loaded(x), model(x))
    with pytest.raises(DeclarationError, match="inputs of shape"):
        load_model(path, (28, 28, 1), 10)


def test_loaded_model_with_softmax_is_refused(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(inputs))
    path = str(tmp_path / "probabilities.keras")
    model.save(path)
    with pytest.raises(DeclarationError, match="applies softmax"):
        load_model(path, (4,), 10)


def test_safe_mode_refuses_code_in_files(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0)(keras.layers.Dense(10)(inputs)))
    path = str(tmp_path / "lambda.keras")
    model.save(path)
    with pytest.raises(DeclarationError) as caught:
        load_model(path, (4,), 10)
    assert "safe_mode: false" in caught.value.hint
    assert load_model(path, (4,), 10, safe_mode=False).output_shape == (None, 10)
