"""Golden values of every distillation method, against NumPy written here, and its traps.

Each reference below is an independent float64 NumPy implementation of the
formula in the method's docstring, in probability space (no shared code with
distill). Every method is checked on ordinary logits, on very peaked logits at a
low temperature, on a batch of identical rows, with student = teacher, with
several teachers, and for finite gradients in all those cases.
"""

from __future__ import annotations

import inspect
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from distill.config.methods import method_defaults
from distill.losses import DIST, DKD, KD, METHODS, LogitStandardization
from distill.losses.dist import pearson_rows


# --- references: float64 NumPy, probability space -------------------------------------------

def softmax(z, temperature=1.0):
    z = np.asarray(z, np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def teacher_probs(t, temperature, weights=None):
    """softmax(t / T); for t of shape (batch, teachers, classes), its weighted mean."""
    t = np.asarray(t, np.float64)
    if t.ndim == 2:
        return softmax(t, temperature)
    w = np.ones(t.shape[1]) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    return np.einsum("k,bkc->bc", w, softmax(t, temperature))


def kl_rows(p, q):
    """KL(p || q) per row, with 0 * log(0 / q) = 0."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    safe_p = np.where(p > 0, p, 1.0)
    return np.where(p > 0, p * (np.log(safe_p) - np.log(np.where(p > 0, q, 1.0))), 0.0).sum(-1)


def ref_kd(t, s, temperature=4.0, weights=None):
    p_t, p_s = teacher_probs(t, temperature, weights), softmax(s, temperature)
    return temperature ** 2 * kl_rows(p_t, p_s).mean()


def ref_pearson(a, b, eps=1e-8):
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + eps)


def ref_dist(t, s, beta=1.0, gamma=1.0, tau=1.0, weights=None):
    y_t, y_s = teacher_probs(t, tau, weights), softmax(s, tau)
    inter = 1 - ref_pearson(y_s, y_t).mean()
    intra = 1 - ref_pearson(y_s.T, y_t.T).mean()
    return tau ** 2 * (beta * inter + gamma * intra)


def ref_dkd(t, s, labels, alpha=1.0, beta=8.0, temperature=4.0, factor=1.0, weights=None):
    p_t, p_s = teacher_probs(t, temperature, weights), softmax(s, temperature)
    tckd, nckd = [], []
    for i, g in enumerate(labels):
        others = [k for k in range(p_t.shape[1]) if k != g]
        b_t = np.array([p_t[i, g], p_t[i, others].sum()])
        b_s = np.array([p_s[i, g], p_s[i, others].sum()])
        tckd.append(kl_rows(b_t, b_s))
        nckd.append(kl_rows(p_t[i, others] / p_t[i, others].sum(),
                            p_s[i, others] / p_s[i, others].sum()))
    return factor * temperature ** 2 * (alpha * np.mean(tckd) + beta * np.mean(nckd))


def ref_standardize(z, eps=1e-7):
    z = np.asarray(z, np.float64)
    return (z - z.mean(-1, keepdims=True)) / (z.std(-1, keepdims=True) + eps)


def ref_logit_std(t, s, temperature=2.0, epsilon=1e-7, weights=None):
    return ref_kd(ref_standardize(t, epsilon), ref_standardize(s, epsilon), temperature, weights)


# --- the methods under test, each with a way to call it and its reference -------------------

def make(method: str, **arguments):
    """(loss object, reference function of (t, s, labels, weights))."""
    if method == "kd":
        return KD(**arguments), lambda t, s, y, w: ref_kd(t, s, weights=w, **arguments)
    if method == "dist":
        return DIST(**arguments), lambda t, s, y, w: ref_dist(t, s, weights=w, **arguments)
    if method == "dkd":
        arguments = {"warmup_epochs": 0, **arguments}
        reference = {k: v for k, v in arguments.items() if k != "warmup_epochs"}
        return DKD(**arguments), lambda t, s, y, w: ref_dkd(t, s, y, weights=w, **reference)
    if method == "logit_std":
        return (LogitStandardization(**arguments),
                lambda t, s, y, w: ref_logit_std(t, s, weights=w, **arguments))
    raise AssertionError(method)


def value_and_gradient(loss, teacher, student, labels, **kwargs):
    student = tf.Variable(np.asarray(student, "float32"))
    with tf.GradientTape() as tape:
        value = loss.compute_loss(tf.constant(np.asarray(teacher, "float32")), student,
                                  labels=tf.constant(labels), **kwargs)
    return float(value), tape.gradient(value, student).numpy()


def check(method, teacher, student, labels, weights=None, rel=1e-4, abs_=1e-5, **arguments):
    loss, reference = make(method, **arguments)
    value, gradient = value_and_gradient(loss, teacher, student, labels, teacher_weights=weights)
    expected = reference(np.asarray(teacher), np.asarray(student), labels, weights)
    assert math.isfinite(value), (method, value)
    assert np.all(np.isfinite(gradient)), (method, gradient)
    assert value == pytest.approx(expected, rel=rel, abs=abs_), (method, value, expected)
    return value, gradient


METHOD_CASES = [
    ("kd", {"temperature": 4.0}),
    ("kd", {"temperature": 1.0}),
    ("dist", {}),
    ("dist", {"beta": 2.0, "gamma": 0.5, "tau": 4.0}),
    ("dkd", {}),
    ("dkd", {"alpha": 0.5, "beta": 2.0, "temperature": 1.0}),
    ("logit_std", {}),
    ("logit_std", {"temperature": 4.0, "epsilon": 1e-3}),
]
IDS = [f"{m}-{'-'.join(f'{k}{v:g}' for k, v in a.items()) or 'defaults'}" for m, a in METHOD_CASES]


def random_batch(seed=0, batch=16, classes=10, scale=3.0):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, scale, (batch, classes)), rng.normal(0, scale, (batch, classes)),
            rng.integers(0, classes, batch))


# --- hand-computed values ---------------------------------------------------------------------

def test_hand_computed_values():
    # kd: teacher [2, 1, 0], student [0, 0, 0], T = 2 (the existing golden value).
    assert float(KD(2.0).compute_loss(np.array([[2.0, 1, 0]], "float32"),
                                      np.zeros((1, 3), "float32"))) == pytest.approx(0.313684,
                                                                                    abs=1e-5)
    # dist, one sample: Y_t = [1, 0, 0] and Y_s = [0, 0, 1] (saturated softmax).
    # Centered: [2, -1, -1]/3 and [-1, -1, 2]/3, correlation -1/2, so inter = 3/2; a batch of
    # one has no intra-class correlation (0), so intra = 1. tau = 0.5: 0.25 * (1.5 + 1).
    value = DIST(tau=0.5).compute_loss(np.array([[100.0, 0, -100]], "float32"),
                                       np.array([[-100.0, 0, 100]], "float32"))
    assert float(value) == pytest.approx(0.625, abs=1e-6)
    # dkd, same logits, label 0, T = 0.5: t/T = [200, 0, -200], s/T = [-200, 0, 200].
    # TCKD = KL([1, 0] || [e^-400, 1]) = 400; NCKD over classes 1, 2:
    # KL([1, 0] || [e^-200, 1]) = 200. T^2 (1 * 400 + 8 * 200) = 500; in epoch 3 of a
    # 20-epoch warm-up the weight is 3/20: 75.
    value = DKD(temperature=0.5).compute_loss(
        np.array([[100.0, 0, -100]], "float32"), np.array([[-100.0, 0, 100]], "float32"),
        labels=np.array([0]), epoch=3)
    assert float(value) == pytest.approx(75.0, rel=1e-6)
    # logit_std: z-scoring [3, 0, 0]: mean 1, std sqrt(2), so [2, -1, -1] / sqrt(2);
    # it equals z-scoring [30, 0, 0] (the scale is gone), so the loss is 0.
    value = LogitStandardization().compute_loss(np.array([[3.0, 0, 0]], "float32"),
                                                np.array([[30.0, 0, 0]], "float32"))
    assert float(value) == pytest.approx(0.0, abs=1e-6)


def test_dkd_with_two_classes_is_kd():
    # With two classes there is one non-target class: NCKD = 0 and TCKD is KD's KL.
    t, s, y = random_batch(seed=4, classes=2)
    dkd = float(DKD(alpha=1.0, beta=8.0, temperature=3.0).compute_loss(
        t.astype("float32"), s.astype("float32"), labels=y))
    assert dkd == pytest.approx(ref_kd(t, s, 3.0), rel=1e-4)


def test_dkd_decomposes_kd_per_sample():
    # Zhao et al., eq. 1: KL(p_t || p_s) = TCKD + (1 - p_t[g]) * NCKD, sample by sample.
    t, s, y = random_batch(seed=5, batch=1)
    p_g = softmax(t, 4.0)[0, y[0]]
    tckd = float(DKD(alpha=1, beta=0, temperature=4.0).compute_loss(t, s, labels=y))
    nckd = float(DKD(alpha=0, beta=1, temperature=4.0).compute_loss(t, s, labels=y))
    assert tckd + (1 - p_g) * nckd == pytest.approx(ref_kd(t, s, 4.0), rel=1e-4)


# --- the four cases of the issue, for every method -------------------------------------------

@pytest.mark.parametrize("method, arguments", METHOD_CASES, ids=IDS)
def test_ordinary_logits_match_the_reference(method, arguments):
    for seed in range(3):
        t, s, y = random_batch(seed)
        check(method, t, s, y, **arguments)


@pytest.mark.parametrize("method, arguments", METHOD_CASES, ids=IDS)
def test_peaked_logits_at_low_temperature_stay_finite(method, arguments):
    # Logits of 100 at T = 0.5: probabilities underflow to exactly 0 in float32.
    low = {"kd": "temperature", "dkd": "temperature", "logit_std": "temperature", "dist": "tau"}
    arguments = {**arguments, low[method]: 0.5}
    teacher = np.array([[100.0, 0, -100], [0, 100, 0], [-100, -100, 100], [100, 100, -100]])
    student = np.array([[-100.0, 0, 100], [100, 0, 0], [-100, -100, 100], [0, 0, 0]])
    labels = np.array([0, 1, 2, 0])
    check(method, teacher, student, labels, rel=1e-4, abs_=1e-4, **arguments)
    # The student equal to a peaked teacher is also fine.
    check(method, teacher, teacher, labels, rel=1e-4, abs_=1e-4, **arguments)


@pytest.mark.parametrize("method, arguments", METHOD_CASES, ids=IDS)
def test_a_batch_of_identical_rows_equals_one_row(method, arguments):
    t, s, y = random_batch(seed=7, batch=1)
    one, one_gradient = check(method, t, s, y, **arguments)
    many, many_gradient = check(method, np.repeat(t, 5, 0), np.repeat(s, 5, 0), np.repeat(y, 5),
                                **arguments)
    assert many == pytest.approx(one, rel=1e-5, abs=1e-6)
    # A batch mean: each of the 5 rows carries a fifth of the single row's gradient.
    assert np.allclose(many_gradient.sum(0), one_gradient[0], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method, arguments", METHOD_CASES, ids=IDS)
def test_student_equal_to_teacher_gives_zero(method, arguments):
    t, _, y = random_batch(seed=8)
    value, gradient = check(method, t, t, y, **arguments)
    assert value == pytest.approx(0.0, abs=1e-5)
    assert np.allclose(gradient, 0.0, atol=1e-5)


def test_dist_counts_an_undefined_intra_class_correlation_as_zero():
    # A batch of one: every class column is constant, so intra = 1 even for student = teacher.
    t = np.array([[1.0, 2.0, 3.0]], "float32")
    value, gradient = value_and_gradient(DIST(gamma=2.0, tau=2.0), t, t, np.array([0]))
    assert value == pytest.approx(4.0 * 2.0 * 1.0, abs=1e-5)  # tau^2 * gamma * intra
    assert np.allclose(gradient, 0.0, atol=1e-5)


def test_logit_std_ignores_the_scale_and_shift_of_the_student():
    t, _, y = random_batch(seed=9)
    value, _ = value_and_gradient(LogitStandardization(), t, 3.0 * t + 7.0, y)
    assert value == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("method, arguments", METHOD_CASES, ids=IDS)
def test_constant_student_logits_have_finite_gradients(method, arguments):
    # A freshly zero-initialized student: a zero standard deviation, a zero norm.
    t, _, y = random_batch(seed=10, batch=4)
    check(method, t, np.zeros_like(t), y, **arguments)


# --- several teachers ------------------------------------------------------------------------

@pytest.mark.parametrize("method, arguments", METHOD_CASES, ids=IDS)
@pytest.mark.parametrize("weights", [None, [0.2, 0.5, 0.3], [2.0, 0.0, 1.0]])
def test_several_teachers_mix_their_probabilities(method, arguments, weights):
    rng = np.random.default_rng(11)
    teachers = rng.normal(0, 3, (8, 3, 10))
    student = rng.normal(0, 3, (8, 10))
    labels = rng.integers(0, 10, 8)
    check(method, teachers, student, labels, weights=weights, **arguments)


@pytest.mark.parametrize("method, arguments", METHOD_CASES, ids=IDS)
def test_a_teacher_of_weight_zero_is_ignored_and_copies_change_nothing(method, arguments):
    t, s, y = random_batch(seed=12, batch=6)
    loss, _ = make(method, **arguments)
    single = float(loss.compute_loss(t, s, labels=y))
    other = np.random.default_rng(13).normal(0, 3, t.shape)
    ignored = float(loss.compute_loss(np.stack([t, other], 1), s, labels=y,
                                      teacher_weights=[1.0, 0.0]))
    copies = float(loss.compute_loss(np.stack([t, t, t], 1), s, labels=y))
    assert ignored == pytest.approx(single, rel=1e-5, abs=1e-6)
    assert copies == pytest.approx(single, rel=1e-5, abs=1e-6)


def test_several_peaked_teachers_stay_finite():
    teachers = np.array([[[100.0, 0, -100], [-100, 100, 0]]])  # they disagree completely
    student = np.array([[0.0, 0, 100]])
    for method, arguments in METHOD_CASES:
        check(method, teachers, student, np.array([0]), rel=1e-4, abs_=1e-4,
              **{**arguments, ("tau" if method == "dist" else "temperature"): 0.5})


# --- objects: arguments, defaults, serialization ---------------------------------------------

@pytest.mark.parametrize("method", sorted(METHODS))
def test_defaults_in_the_schema_are_the_constructors(method):
    parameters = inspect.signature(METHODS[method].__init__).parameters
    constructor = {name: p.default for name, p in parameters.items() if name != "self"}
    assert method_defaults(method) == constructor


@pytest.mark.parametrize("method", sorted(METHODS))
def test_serializes_with_exactly_its_constructor_arguments(method):
    cls = METHODS[method]
    defaults = method_defaults(method)
    changed = {name: (value + 1 if isinstance(value, int) and not isinstance(value, bool)
                      else value * 1.5) for name, value in defaults.items()}
    loss = cls(**changed)
    assert loss.get_config() == changed
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(clone) is cls and clone.get_config() == changed


@pytest.mark.parametrize("cls, bad", [
    (DIST, {"tau": 0}), (DIST, {"beta": -1}), (DIST, {"gamma": "1"}),
    (DKD, {"alpha": -0.5}), (DKD, {"temperature": 0}), (DKD, {"warmup_epochs": 1.5}),
    (DKD, {"warmup_epochs": -1}), (LogitStandardization, {"epsilon": 0}),
    (LogitStandardization, {"temperature": True}),
])
def test_constructors_refuse_bad_arguments(cls, bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=f"{name} must be .* Received: {name}="):
        cls(**bad)


def test_dkd_without_labels_says_what_it_needs():
    with pytest.raises(ValueError, match="DKD needs the labels"):
        DKD().compute_loss(np.zeros((2, 3), "float32"), np.zeros((2, 3), "float32"))


def test_dkd_warm_up_grows_linearly_then_stays_at_one():
    t, s, y = random_batch(seed=14)
    loss = DKD(warmup_epochs=4)
    full = float(loss.compute_loss(t, s, labels=y))
    ramp = [float(loss.compute_loss(t, s, labels=y, epoch=e)) / full for e in (1, 2, 4, 9)]
    assert ramp == pytest.approx([0.25, 0.5, 1.0, 1.0], rel=1e-5)


@pytest.mark.parametrize("cls", [KD, DIST, LogitStandardization])
def test_label_free_methods_work_in_keras_own_distiller(cls):
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])
    student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])
    distiller = keras.distillation.Distiller(teacher, student, cls(), student_loss_weight=0.0)
    distiller.compile(optimizer="adam",
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(3).normal(size=(8, 4)).astype("float32")
    value = float(distiller.compute_loss(x=x, y=np.zeros(8, "int32"), y_pred=student(x)))
    expected = float(cls().compute_loss(teacher(x), student(x)))
    assert value == pytest.approx(expected, rel=1e-5)


def test_pearson_rows_of_constant_rows_is_zero_with_a_finite_gradient():
    a = tf.Variable(np.ones((2, 4), "float32"))
    with tf.GradientTape() as tape:
        rho = pearson_rows(a, tf.constant(np.ones((2, 4), "float32")), 1e-8)
    assert np.allclose(rho.numpy(), 0.0)
    assert np.all(np.isfinite(tape.gradient(rho, a).numpy()))
