"""A distill stage's loss as a weighted sum of terms: building it, computing it, logging it."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import yaml

from distill.config import parse_config
from distill.config import methods as config_methods
from distill.errors import ConfigError, DeclarationError
from distill.losses import DIST, DKD, KD, build_loss
from distill.losses import build as losses_build
from distill.losses.build import Term
from distill.stages import Distillation, hard_label_loss
from tests.conftest import TINY_CONFIG
from tests.test_methods import ref_dist, ref_dkd, ref_kd, ref_logit_std

TERMS_LOSS = """    loss:
      hard_label_weight: 0.2
      terms:
        - {method: kd, weight: 0.5, temperature: 2}
        - {method: dist, weight: 1.5}
"""


def student_model():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])


def with_loss(text: str, loss: str) -> str:
    """The tiny config with its distill stage's loss replaced by `loss` (indented block)."""
    return text.replace("    loss: {method: kd, temperature: 4, alpha: 0.1}\n", loss)


def problem_of(text: str):
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "exp.yaml")
    problems = caught.value.problems
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


# --- building ---------------------------------------------------------------------------------

def test_terms_form_builds_weighted_terms():
    spec = build_loss({"hard_label_weight": 0.1, "terms": [
        {"method": "kd", "weight": 0.9, "temperature": 4},
        {"method": "dist", "weight": 1.0, "beta": 1, "gamma": 2, "tau": 1}]})
    assert spec.hard_label_weight == pytest.approx(0.1)
    assert [(t.name, t.weight) for t in spec.terms] == [("kd", 0.9), ("dist", 1.0)]
    assert isinstance(spec.terms[0].loss, KD) and spec.terms[0].loss.temperature == 4
    assert isinstance(spec.terms[1].loss, DIST) and spec.terms[1].loss.gamma == 2


def test_shorthand_means_alpha_ce_plus_one_minus_alpha_method():
    spec = build_loss({"method": "dist", "alpha": 0.25, "tau": 2.0})
    assert spec.hard_label_weight == 0.25
    assert spec.terms[0].name == "dist" and spec.terms[0].weight == pytest.approx(0.75)
    assert spec.terms[0].loss.tau == 2.0


def test_weights_not_written_take_the_documented_defaults():
    spec = build_loss({"terms": [{"method": "dkd"}]})
    assert spec.hard_label_weight == 1.0 and spec.terms[0].weight == 1.0
    assert build_loss({"method": "kd"}).hard_label_weight == 0.1
    # One number, stated twice (config fills, losses builds): the two must agree.
    for name in ("DEFAULT_ALPHA", "DEFAULT_HARD_LABEL_WEIGHT", "DEFAULT_TERM_WEIGHT"):
        assert getattr(config_methods, name) == getattr(losses_build, name), name


def test_a_repeated_method_gets_numbered_metric_names():
    spec = build_loss({"terms": [{"method": "kd", "temperature": 1}, {"method": "dist"},
                                 {"method": "kd", "temperature": 8}]})
    assert [t.name for t in spec.terms] == ["kd_1", "dist", "kd_2"]
    named = build_loss({"terms": [{"method": "kd", "name": "kd_sharp", "temperature": 1},
                                  {"method": "kd"}]})
    assert [t.name for t in named.terms] == ["kd_sharp", "kd"]


@pytest.mark.parametrize("declaration, path, message", [
    ({"terms": [{"method": "kd", "name": "a"}, {"method": "dist", "name": "a"}]},
     ("terms", 1, "name"), "two terms are named 'a'"),
    ({"terms": [{"method": "kd", "name": "ce"}]}, ("terms", 0, "name"), "cannot be named 'ce'"),
    ({"terms": [{"method": "kd", "tau": 2}]}, ("terms", 0, "tau"), "kd has no argument 'tau'"),
    ({"method": "kd", "terms": [{"method": "kd"}]}, ("method",), "one-method form"),
    ({"alpha": 0.5, "terms": [{"method": "kd"}]}, ("alpha",), "one-method form"),
    ({"temperature": 2, "terms": [{"method": "kd"}]}, ("temperature",), "goes inside a term"),
    ({"method": "kd", "hard_label_weight": 0.5}, ("hard_label_weight",), "weighs the labels"),
    ({"method": "dkd"}, ("method",), "dkd has an 'alpha' of its own"),
    ({"method": "dist", "temperature": 2}, ("temperature",), "dist has no argument"),
    ({}, (), "needs 'method'"),
])
def test_build_errors_name_the_key(declaration, path, message):
    with pytest.raises(DeclarationError) as caught:
        build_loss(declaration)
    assert caught.value.path == path and message in caught.value.message


# --- the total ----------------------------------------------------------------------------------

def test_total_is_hard_weight_times_ce_plus_weighted_terms():
    rng = np.random.default_rng(0)
    t = rng.normal(0, 3, (16, 10)).astype("float32")
    s = rng.normal(0, 3, (16, 10)).astype("float32")
    y = rng.integers(0, 10, 16)
    spec = build_loss({"hard_label_weight": 0.3, "terms": [
        {"method": "kd", "weight": 0.9, "temperature": 4},
        {"method": "dist", "weight": 1.5, "tau": 2},
        {"method": "dkd", "weight": 0.5, "warmup_epochs": 0},
        {"method": "logit_std", "weight": 2.0}]})
    model = Distillation(student_model(), terms=spec.terms,
                         hard_label_weight=spec.hard_label_weight)
    total = float(model.compute_loss(x={"x": None, "teacher_logits": t}, y=y, y_pred=s))
    logits = s.astype(np.float64)
    ce = -np.mean((logits - np.log(np.exp(logits).sum(1, keepdims=True)))[np.arange(16), y])
    expected = (0.3 * ce + 0.9 * ref_kd(t, s, 4.0) + 1.5 * ref_dist(t, s, tau=2.0)
                + 0.5 * ref_dkd(t, s, y) + 2.0 * ref_logit_std(t, s))
    assert total == pytest.approx(expected, rel=1e-4)
    assert float(hard_label_loss(y, s)) == pytest.approx(ce, rel=1e-5)


def fit(terms, epochs=2, learning_rate=1e-2, **compile_options):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 4)).astype("float32")
    t = rng.normal(0, 3, (64, 10)).astype("float32")
    y = rng.integers(0, 10, 64).astype("int32")
    model = Distillation(student_model(), terms=terms, hard_label_weight=0.2)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), **compile_options)
    history = model.fit({"x": x, "teacher_logits": t}, y, batch_size=16, epochs=epochs,
                        shuffle=False, verbose=0)
    return history.history


def test_each_term_is_logged_per_epoch_beside_the_total():
    terms = [Term("kd", KD(2.0), 0.5), Term("dist", DIST(), 1.5)]
    history = fit(terms, jit_compile=True, steps_per_execution=3)
    assert {"loss", "ce_loss", "kd_loss", "dist_loss"} <= set(history)
    for epoch in range(2):
        # Epoch means of a weighted sum are the weighted sum of the epoch means.
        parts = (0.2 * history["ce_loss"][epoch] + 0.5 * history["kd_loss"][epoch]
                 + 1.5 * history["dist_loss"][epoch])
        assert history["loss"][epoch] == pytest.approx(parts, rel=1e-5)


def test_dkd_warm_up_follows_the_epochs_inside_the_compiled_step():
    # A learning rate of 0 keeps the student fixed, so only the warm-up changes the term.
    terms = [Term("dkd", DKD(warmup_epochs=3), 1.0)]
    history = fit(terms, epochs=4, learning_rate=0.0, jit_compile=True, steps_per_execution=3)
    values = np.array(history["dkd_loss"])
    assert values / values[-1] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0], rel=1e-5)


def test_distillation_with_every_method_round_trips_through_keras_saving(tmp_path):
    terms = [Term("kd", KD(3.0), 0.7), Term("dist", DIST(2.0, 0.5, 3.0), 1.0),
             Term("dkd", DKD(0.5, 4.0, 2.0, 3), 1.0)]
    teachers = [keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)]) for _ in range(2)]
    model = Distillation(student_model(), teachers, terms=terms, hard_label_weight=0.3,
                         teacher_weights=[2.0, 1.0])
    model.compile(optimizer="adam")
    model.fit({"x": np.zeros((8, 4), "float32")}, np.zeros(8, "int32"), epochs=2, verbose=0)
    path = str(tmp_path / "d.keras")
    model.save(path)
    clone = keras.saving.load_model(path)
    assert [(t.name, t.weight, t.loss.get_config()) for t in clone.terms] == [
        (t.name, t.weight, t.loss.get_config()) for t in terms]
    assert clone.teacher_weights == [2.0, 1.0] and len(clone.teachers) == 2
    assert all(not teacher.trainable for teacher in clone.teachers)
    assert float(clone.epoch.numpy()) == 2.0
    x = np.ones((2, 4), "float32")
    assert np.allclose(clone({"x": x}), model({"x": x}))


# --- in a config -----------------------------------------------------------------------------

def test_terms_form_in_a_config_is_filled_with_every_default(tiny_config_text):
    text = with_loss(tiny_config_text, TERMS_LOSS)
    loss = parse_config(text).data["stages"][1]["loss"]
    assert loss == {"hard_label_weight": 0.2, "terms": [
        {"method": "kd", "weight": 0.5, "temperature": 2},
        {"method": "dist", "weight": 1.5, "beta": 1.0, "gamma": 1.0, "tau": 1.0}]}
    again = parse_config(yaml.safe_dump(parse_config(text).data)).data
    assert again["stages"][1]["loss"] == loss


@pytest.mark.parametrize("loss, expected", [
    ("{method: dist}", {"method": "dist", "alpha": 0.1, "beta": 1.0, "gamma": 1.0, "tau": 1.0}),
    ("{method: logit_std, alpha: 0.5}",
     {"method": "logit_std", "alpha": 0.5, "temperature": 2.0, "epsilon": 1e-7}),
    ("{terms: [{method: dkd, warmup_epochs: 2}]}",
     {"hard_label_weight": 1.0, "terms": [{"method": "dkd", "weight": 1.0, "warmup_epochs": 2,
                                           "alpha": 1.0, "beta": 8.0, "temperature": 4.0}]}),
])
def test_method_defaults_are_filled_in(tiny_config_text, loss, expected):
    text = with_loss(tiny_config_text, f"    loss: {loss}\n")
    assert parse_config(text).data["stages"][1]["loss"] == expected


@pytest.mark.parametrize("loss, key, message, hint", [
    ("{method: dkdd}", "stages[1].loss.method", "must be one of kd, dist, dkd, logit_std",
     "Did you mean 'dkd'?"),
    ("{method: kd, temprature: 2}", "stages[1].loss.temprature", "unknown key 'temprature'",
     "Did you mean 'temperature'?"),
    ("{method: kd, gamma: 2}", "stages[1].loss.gamma", "kd has no argument 'gamma'",
     "Its arguments: temperature."),
    ("{method: dkd, alpha: 0.5}", "stages[1].loss.method", "dkd has an 'alpha' of its own",
     "Declare it as a term"),
    ("{terms: [{method: kd, weight: -1}]}", "stages[1].loss.terms[0].weight", "must be >= 0", None),
    ("{terms: [{method: dist, tau: 0}]}", "stages[1].loss.terms[0].tau", "must be > 0", None),
    ("{terms: [{method: dist, temperature: 2}]}", "stages[1].loss.terms[0].temperature",
     "dist has no argument 'temperature'", None),
    ("{terms: [{method: dkd, warmup_epochs: 1.5}]}", "stages[1].loss.terms[0].warmup_epochs",
     "must be an integer", None),
    ("{terms: [{method: kd}, {method: dist, name: kd}]}", "stages[1].loss.terms[1].name",
     "two terms are named 'kd'", None),
    ("{terms: []}", "stages[1].loss.terms", "at least 1 item", None),
    ("{method: kd, terms: [{method: kd}]}", "stages[1].loss.method", "one-method form", None),
    ("{hard_label_weight: 0.5, temperature: 3}", "stages[1].loss", "needs 'method'", None),
])
def test_loss_mistakes_are_located(tiny_config_text, loss, key, message, hint):
    problem = problem_of(with_loss(tiny_config_text, f"    loss: {loss}\n"))
    assert problem.key == key, str(problem)
    assert message in problem.message, str(problem)
    assert problem.line == 29, str(problem)
    if hint:
        assert hint in (problem.hint or ""), str(problem)


def test_schema_errors_inside_terms_point_at_the_term(tiny_config_text):
    text = with_loss(tiny_config_text, TERMS_LOSS.replace("weight: 1.5", "weight: heavy"))
    problem = problem_of(text)
    assert problem.key == "stages[1].loss.terms[1].weight"
    assert "must be a number" in problem.message and problem.line == 33


def test_cli_names_the_terms_in_the_stage_header(tiny_config_text, write_config, tmp_path):
    from click.testing import CliRunner

    from distill.cli import cli

    text = with_loss(tiny_config_text, TERMS_LOSS).replace("epochs: 2", "epochs: 1")
    result = CliRunner().invoke(cli, ["run", str(write_config(text)), "--logs-dir",
                                      str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "from 'teacher', 0.2*ce + 0.5*kd(T=2) + 1.5*dist(beta=1 gamma=1 tau=1)" in result.output
    assert "kd_loss" in result.output and "dist_loss" in result.output


def test_tiny_config_still_reads(tiny_data):
    loss = parse_config(TINY_CONFIG.format(data=tiny_data)).data["stages"][1]["loss"]
    assert loss == {"method": "kd", "temperature": 4, "alpha": 0.1}
