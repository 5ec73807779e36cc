"""The training step and the stage driver, on tiny synthetic data."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from distill.config import parse_config
from distill.data import load_raw, make_splits
from distill.errors import RunError
from distill.losses import KD
from distill.losses.build import Term
from distill.models import build_model
from distill.stages import Distillation, run_stage
from distill.stages.fit import epoch_order, training_dataset


@pytest.fixture(scope="module")
def splits(tiny_data):
    return make_splits(load_raw("mnist", str(tiny_data)), seed=0, validation_split=0.2,
                       scale=True, flatten=True)


@pytest.fixture
def config(tiny_config_text):
    return parse_config(tiny_config_text).data


def train_teacher(config, splits):
    keras.utils.set_random_seed(0)
    model = build_model("teacher", config["models"]["teacher"], splits.input_shape, 10)
    return run_stage(index=0, stage=config["stages"][0], model=model, teacher=None,
                     splits=splits, runtime=config["runtime"], seed=0)


def distill(config, splits, teacher, **runtime):
    keras.utils.set_random_seed(1)
    student = build_model("student", config["models"]["student"], splits.input_shape, 10)
    return run_stage(index=1, stage=config["stages"][1], model=student, teacher=teacher,
                     splits=splits, runtime={**config["runtime"], **runtime}, seed=0)


def test_epoch_order_depends_only_on_seed_stage_and_epoch():
    assert np.array_equal(epoch_order(50, 1, 2, 3), epoch_order(50, 1, 2, 3))
    assert not np.array_equal(epoch_order(50, 1, 2, 3), epoch_order(50, 1, 2, 4))
    assert sorted(epoch_order(50, 1, 2, 3)) == list(range(50))


def test_each_epoch_sees_every_sample_in_equal_batches_with_rows_aligned():
    n = 23
    x = np.arange(n, dtype="float32")[:, None] * np.ones((1, 3), "float32")
    logits = np.arange(n, dtype="float32")[:, None] * 10 * np.ones((1, 10), "float32")
    labels = np.arange(n, dtype="int32")
    dataset, steps = training_dataset({"x": x, "teacher_logits": logits}, labels, batch_size=5,
                                      seed=0, stage_index=0, epochs=2)
    assert steps == 5
    seen = []
    for inputs, y in dataset.take(2 * steps):
        assert y.shape == (5,)  # the last batch is filled up: one shape for XLA
        assert np.array_equal(inputs["x"][:, 0].numpy(), y.numpy())
        assert np.array_equal(inputs["teacher_logits"][:, 0].numpy(), y.numpy() * 10)
        seen.append(y.numpy())
    first, second = np.concatenate(seen[:steps]), np.concatenate(seen[steps:])
    assert set(first) == set(second) == set(range(n))
    assert len(first) == 25 and list(first[23:]) == list(first[:2])
    assert not np.array_equal(first, second)


def test_train_stage_learns_and_logs_epoch_means(config, splits):
    result = train_teacher(config, splits)
    assert [row["epoch"] for row in result.history] == [1, 2]
    row = result.history[-1]
    assert {"loss", "ce_loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
            "seconds"} <= set(row)
    assert row["loss"] == pytest.approx(row["ce_loss"], rel=1e-5)
    assert result.test["accuracy"] > 0.5  # 10 balanced classes: chance is 0.1
    assert result.params == result.model.count_params()


def test_teacher_is_frozen_bit_for_bit(config, splits):
    teacher = train_teacher(config, splits).model
    before = [w.copy() for w in teacher.get_weights()]
    for cache in (True, False):
        distill(config, splits, teacher, cache_teacher_logits=cache)
        after = teacher.get_weights()
        assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_cached_logits_train_exactly_like_the_per_batch_teacher(config, splits):
    teacher = train_teacher(config, splits).model
    cached = distill(config, splits, teacher, cache_teacher_logits=True)
    live = distill(config, splits, teacher, cache_teacher_logits=False)
    assert cached.cached_teacher_logits is True and live.cached_teacher_logits is False
    for a, b in zip(cached.history, live.history):
        for key in ("loss", "ce_loss", "kd_loss", "val_kd_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-4), key
    assert cached.test["accuracy"] == pytest.approx(live.test["accuracy"], abs=0.02)


def test_distill_stage_logs_each_term_and_the_kd_loss_falls(config, splits):
    teacher = train_teacher(config, splits).model
    result = distill(config, splits, teacher)
    first, last = result.history
    assert {"kd_loss", "ce_loss", "val_kd_loss"} <= set(first)
    assert last["kd_loss"] < first["kd_loss"]
    assert first["loss"] == pytest.approx(0.1 * first["ce_loss"] + 0.9 * first["kd_loss"], rel=1e-4)
    assert result.params == result.model.count_params() < teacher.count_params()


def test_non_finite_loss_stops_the_stage_with_its_place(config, splits):
    stage = dict(config["stages"][0], optimizer={"name": "sgd", "learning_rate": 1e30})
    model = build_model("teacher", config["models"]["teacher"], splits.input_shape, 10)
    with pytest.raises(RunError, match=r"stage 'teacher': the loss became nan in epoch 1, by batch"):
        run_stage(index=0, stage=stage, model=model, teacher=None, splits=splits,
                  runtime=dict(config["runtime"], steps_per_execution=1), seed=0)


def test_distillation_model_round_trips_through_keras_saving(tmp_path):
    student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])
    teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])
    model = Distillation(student, teacher, terms=[Term("kd", KD(3.0), 0.7)], hard_label_weight=0.3)
    model.compile(optimizer="adam")
    model.fit({"x": np.zeros((8, 4), "float32")}, np.zeros(8, "int32"), verbose=0)
    path = str(tmp_path / "d.keras")
    model.save(path)
    clone = keras.saving.load_model(path)
    assert clone.hard_label_weight == pytest.approx(0.3)
    assert clone.terms[0].name == "kd" and clone.terms[0].loss.temperature == 3.0
    assert not clone.teacher.trainable
    x = np.ones((2, 4), "float32")
    assert np.allclose(clone({"x": x}), model({"x": x}))
