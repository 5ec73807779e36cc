"""Exact values of the distillation loss, and the traps it must not fall into."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from distill.losses import KD, METHODS, build_loss
from distill.losses.build import Term
from distill.stages import Distillation, hard_label_loss


def kd(teacher, student, temperature):
    return float(KD(temperature).compute_loss(np.array(teacher, "float32"),
                                              np.array(student, "float32")))


def reference_kd(teacher, student, temperature):
    """T^2 * KL(softmax(t/T) || softmax(s/T)), batch mean, in float64 NumPy."""
    def log_softmax(z):
        z = np.asarray(z, np.float64) / temperature
        z = z - z.max(axis=-1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    lt, ls = log_softmax(teacher), log_softmax(student)
    return temperature ** 2 * float(np.mean(np.sum(np.exp(lt) * (lt - ls), axis=-1)))


def test_kd_term_golden_value():
    # teacher [2, 1, 0], student [0, 0, 0], T = 2: the T^2-scaled KL term.
    assert kd([[2, 1, 0]], [[0, 0, 0]], 2.0) == pytest.approx(0.313684, abs=1e-5)


def test_cross_entropy_golden_values():
    assert float(hard_label_loss(np.array([0]), np.zeros((1, 3), "float32"))) == pytest.approx(
        math.log(3), abs=1e-6)
    logits = np.zeros((1, 10), "float32")
    logits[0, 0] = 10
    assert float(hard_label_loss(np.array([0]), logits)) == pytest.approx(0.000408516, rel=1e-3)


def test_softmax_applied_twice_would_be_detectably_wrong():
    # The trap the loss must not fall into: probabilities fed where logits belong.
    logits = np.zeros((1, 10), "float32")
    logits[0, 0] = 10
    probabilities = np.asarray(keras.ops.softmax(logits))
    assert float(hard_label_loss(np.array([0]), probabilities)) == pytest.approx(1.4615, abs=1e-4)


def test_loss_is_a_batch_mean_not_a_class_mean():
    row_t, row_s = [[3.0, -1.0, 0.5]], [[0.2, 0.1, -0.4]]
    one = kd(row_t, row_s, 3.0)
    two = kd(row_t * 2, row_s * 2, 3.0)
    assert two == pytest.approx(one, rel=1e-6)
    assert one == pytest.approx(reference_kd(row_t, row_s, 3.0), rel=1e-5)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0, 20.0])
def test_kd_matches_reference_on_random_logits(temperature):
    rng = np.random.default_rng(0)
    t, s = rng.normal(0, 3, (16, 10)), rng.normal(0, 3, (16, 10))
    assert kd(t, s, temperature) == pytest.approx(reference_kd(t, s, temperature), rel=1e-4)


def test_kd_is_finite_for_peaked_logits_and_low_temperature():
    teacher = [[100.0, 0.0, -100.0]]
    student = [[-100.0, 0.0, 100.0]]
    value = kd(teacher, student, 0.5)
    assert math.isfinite(value)
    assert value == pytest.approx(0.25 * 400.0, rel=1e-5)  # T^2 * (200 - (-200))
    import tensorflow as tf
    s = tf.Variable(np.array(student, "float32"))
    with tf.GradientTape() as tape:
        loss = KD(0.5).compute_loss(tf.constant(teacher), s)
    assert np.all(np.isfinite(tape.gradient(loss, s).numpy()))


def test_total_loss_is_zero_when_student_equals_teacher_and_alpha_is_zero():
    logits = np.random.default_rng(1).normal(0, 2, (8, 10)).astype("float32")
    student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])
    spec = build_loss({"method": "kd", "temperature": 3.0, "alpha": 0.0})
    model = Distillation(student, terms=spec.terms, hard_label_weight=spec.hard_label_weight)
    total = model.compute_loss(x={"x": np.zeros((8, 4), "float32"), "teacher_logits": logits},
                               y=np.zeros(8, "int32"), y_pred=logits)
    assert float(total) == pytest.approx(0.0, abs=1e-6)


def test_alpha_weighs_the_hard_labels():
    rng = np.random.default_rng(2)
    t, s = rng.normal(0, 2, (8, 10)).astype("float32"), rng.normal(0, 2, (8, 10)).astype("float32")
    y = rng.integers(0, 10, 8)
    spec = build_loss({"method": "kd", "temperature": 5.0, "alpha": 0.3})
    model = Distillation(keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)]),
                         terms=spec.terms, hard_label_weight=spec.hard_label_weight)
    total = float(model.compute_loss(x={"x": None, "teacher_logits": t}, y=y, y_pred=s))
    expected = 0.3 * float(hard_label_loss(y, s)) + 0.7 * reference_kd(t, s, 5.0)
    assert total == pytest.approx(expected, rel=1e-5)


def test_kd_works_in_keras_own_distiller():
    # Keras' Distiller: student_loss_weight * CE + (1 - it) * distillation loss.
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])
    student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])
    distiller = keras.distillation.Distiller(teacher, student, KD(4.0), student_loss_weight=0.25)
    distiller.compile(optimizer="adam",
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(3).normal(size=(8, 4)).astype("float32")
    t, s = teacher(x), student(x)
    value = float(distiller.compute_loss(x=x, y=np.zeros(8, "int32"), y_pred=s))
    ours = 0.75 * reference_kd(np.asarray(t), np.asarray(s), 4.0)
    ce = float(hard_label_loss(np.zeros(8, "int32"), s))
    assert value == pytest.approx(0.25 * ce + ours, rel=1e-4)


def test_kd_serializes_with_exactly_its_constructor_arguments():
    loss = KD(temperature=2.5)
    assert loss.get_config() == {"temperature": 2.5}
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(clone, KD) and clone.temperature == 2.5


@pytest.mark.parametrize("bad", [0, -1, "4", True])
def test_kd_refuses_bad_temperatures(bad):
    with pytest.raises(ValueError, match="temperature"):
        KD(bad)


def test_registry_and_single_method_form():
    assert METHODS["kd"] is KD
    spec = build_loss({"method": "kd", "temperature": 5.0, "alpha": 0.1})
    assert spec.hard_label_weight == pytest.approx(0.1)
    assert spec.terms == (Term("kd", spec.terms[0].loss, pytest.approx(0.9)),)
    assert spec.terms[0].loss.temperature == 5.0
