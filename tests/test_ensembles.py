"""Distilling one student from several teachers: config checks, targets, cached and live paths."""

from __future__ import annotations

import json
import pathlib

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from distill.cli import cli
from distill.config import parse_config
from distill.data import load_raw, make_splits
from distill.errors import ConfigError
from distill.losses import build_loss
from distill.models import build_model
from distill.runs import read_metrics
from distill.stages import Distillation, run_stage
from distill.stages.stage import teacher_logits

ENSEMBLE_CONFIG = """\
experiment:
  name: tiny_ensemble
  seed: 3
data:
  dataset: mnist
  path: {data}
  validation_split: 0.2
  batch_size: 16
runtime:
  steps_per_execution: 4
models:
  wide:
    layers:
      - Dense: {{units: 32, activation: relu}}
      - Dense: {{units: 10}}
  deep:
    layers:
      - Dense: {{units: 16, activation: relu}}
      - Dense: {{units: 16, activation: relu}}
      - Dense: {{units: 10}}
  student:
    layers:
      - Dense: {{units: 8, activation: relu}}
      - Dense: {{units: 10}}
stages:
  - name: wide
    type: train
    model: wide
    epochs: 2
  - name: deep
    type: train
    model: deep
    epochs: 2
  - name: student
    type: distill
    model: student
    teachers: [wide, deep]
    teacher_weights: [2, 1]
    loss:
      hard_label_weight: 0.5
      terms:
        - {{method: kd, temperature: 4}}
        - {{method: dkd, warmup_epochs: 1}}
    epochs: 2
"""


@pytest.fixture
def ensemble_text(tiny_data) -> str:
    return ENSEMBLE_CONFIG.format(data=tiny_data)


def problems(text: str) -> list:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "exp.yaml")
    return caught.value.problems


def only(text: str):
    found = problems(text)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


# --- config ------------------------------------------------------------------------------------

def test_teachers_and_weights_are_read(ensemble_text):
    stage = parse_config(ensemble_text).data["stages"][2]
    assert stage["teachers"] == ["wide", "deep"] and stage["teacher_weights"] == [2, 1]
    assert "teacher" not in stage


@pytest.mark.parametrize("edit, key, message", [
    (("teacher_weights: [2, 1]", "teacher_weights: [2, 1, 1]"), "stages[2].teacher_weights",
     "has 3 weight(s) for 2 teacher(s)"),
    (("teacher_weights: [2, 1]", "teacher_weights: [0, 0]"), "stages[2].teacher_weights",
     "all zero"),
    (("teacher_weights: [2, 1]", "teacher_weights: [2, -1]"), "stages[2].teacher_weights[1]",
     "must be >= 0, got -1"),
    (("teachers: [wide, deep]", "teachers: [wide, wide]"), "stages[2].teachers[1]",
     "teacher 'wide' is listed twice"),
    (("teachers: [wide, deep]", "teachers: [wide, deap]"), "stages[2].teachers[1]",
     "no earlier stage or loadable model named 'deap'"),
    (("teachers: [wide, deep]", "teachers: [wide, student]"), "stages[2].teachers[1]",
     "runs at stages[2]"),
    (("teachers: [wide, deep]", "teachers: []"), "stages[2].teachers", "at least 1 item"),
    (("teachers: [wide, deep]", "teacher: wide\n    teachers: [wide, deep]"),
     "stages[2].teachers", "either 'teacher' (one) or 'teachers' (several)"),
    (("teachers: [wide, deep]", "teacher: wide"), "stages[2].teacher_weights",
     "this stage has one teacher"),
])
def test_teacher_mistakes_are_located(ensemble_text, edit, key, message):
    problem = only(ensemble_text.replace(*edit))
    assert problem.key == key, str(problem)
    assert message in problem.message, str(problem)
    assert problem.file == "exp.yaml" and problem.line is not None


def test_unknown_teacher_suggests_the_stage(ensemble_text):
    problem = only(ensemble_text.replace("teachers: [wide, deep]", "teachers: [wide, deeep]"))
    assert "Did you mean 'deep'?" in problem.hint


def test_a_teacher_may_be_a_saved_model(ensemble_text, tmp_path):
    saved = tmp_path / "saved.keras"
    keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)]).save(saved)
    text = ensemble_text.replace("models:\n", f"models:\n  saved: {{path: {saved}}}\n").replace(
        "teachers: [wide, deep]", "teachers: [wide, saved]")
    assert parse_config(text).data["stages"][2]["teachers"] == ["wide", "saved"]


def test_a_train_stage_takes_no_teachers(ensemble_text):
    text = ensemble_text.replace("    model: wide\n    epochs: 2",
                                 "    model: wide\n    teachers: [deep]\n    epochs: 2")
    problem = only(text)
    assert problem.key == "stages[0].teachers"
    assert "a train stage takes no teachers" in problem.message


# --- training ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tiny_data):
    """The resolved config, its splits and its two trained teachers."""
    config = parse_config(ENSEMBLE_CONFIG.format(data=tiny_data)).data
    splits = make_splits(load_raw("mnist", str(tiny_data)), seed=0, validation_split=0.2,
                         scale=True, flatten=True)
    teachers = []
    for index in (0, 1):
        keras.utils.set_random_seed(index)
        stage = config["stages"][index]
        model = build_model(stage["model"], config["models"][stage["model"]],
                            splits.input_shape, 10)
        teachers.append(run_stage(index=index, stage=stage, model=model, teacher=None,
                                  splits=splits, runtime=config["runtime"], seed=0).model)
    return config, splits, teachers


def distill(trained, teacher, stage_changes=None, **runtime):
    config, splits, _ = trained
    keras.utils.set_random_seed(7)
    stage = {**config["stages"][2], **(stage_changes or {})}
    student = build_model("student", config["models"]["student"], splits.input_shape, 10)
    return run_stage(index=2, stage=stage, model=student, teacher=teacher, splits=splits,
                     runtime={**config["runtime"], **runtime}, seed=0)


def test_cached_logits_hold_each_teacher(trained):
    _, splits, teachers = trained
    logits = teacher_logits(teachers, splits.x_train, 64, splits.preprocess)
    assert logits.shape == (len(splits.x_train), 2, 10)
    for k, model in enumerate(teachers):
        assert np.allclose(logits[:, k], teacher_logits(model, splits.x_train, 64,
                                                         splits.preprocess))


def test_several_teachers_train_the_same_cached_or_per_batch(trained):
    _, _, teachers = trained
    cached = distill(trained, teachers, cache_teacher_logits=True)
    live = distill(trained, teachers, cache_teacher_logits=False)
    assert cached.cached_teacher_logits is True and live.cached_teacher_logits is False
    for a, b in zip(cached.history, live.history):
        for key in ("loss", "ce_loss", "kd_loss", "dkd_loss", "val_kd_loss", "val_dkd_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-4), key
    assert cached.test["accuracy"] == pytest.approx(live.test["accuracy"], abs=0.02)


def test_a_teacher_of_weight_zero_trains_like_the_other_alone(trained):
    _, _, teachers = trained
    pair = distill(trained, teachers, {"teacher_weights": [1, 0]})
    alone = distill(trained, teachers[0], {"teacher_weights": None})
    for a, b in zip(pair.history, alone.history):
        for key in ("loss", "kd_loss", "dkd_loss", "val_kd_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-4), key


def test_the_ensemble_target_is_the_weighted_mean_of_probabilities(trained):
    _, splits, teachers = trained
    x = splits.preprocess(splits.x_train[:32]).numpy()
    t = np.stack([np.asarray(model(x)) for model in teachers], axis=1).astype(np.float64)
    s = np.random.default_rng(0).normal(0, 2, (32, 10)).astype("float32")
    spec = build_loss({"hard_label_weight": 0.0, "terms": [{"method": "kd", "temperature": 4.0}]})
    model = Distillation(keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)]),
                         teachers, teacher_weights=[2, 1], terms=spec.terms,
                         hard_label_weight=spec.hard_label_weight)
    value = float(model.compute_loss(x={"x": x}, y=np.zeros(32, "int32"), y_pred=s))
    probs = np.exp(t / 4.0 - (t / 4.0).max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    target = (2 * probs[:, 0] + probs[:, 1]) / 3
    z = s.astype(np.float64) / 4.0
    log_student = z - z.max(-1, keepdims=True)
    log_student -= np.log(np.exp(log_student).sum(-1, keepdims=True))
    expected = 16.0 * np.mean(np.sum(target * (np.log(target) - log_student), -1))
    assert value == pytest.approx(expected, rel=1e-4)


def test_ensemble_run_through_the_cli(ensemble_text, write_config, tmp_path):
    config = write_config(ensemble_text.replace("epochs: 2", "epochs: 1"))
    result = CliRunner().invoke(cli, ["run", str(config), "--logs-dir", str(tmp_path)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "2 teachers' logits cached" in result.output
    assert "from 'wide', 'deep'" in result.output
    run_dir = result.output.strip().splitlines()[-1]
    summary = json.loads(pathlib.Path(run_dir, "summary.json").read_text())
    assert summary["stages"]["student"]["teachers"] == ["wide", "deep"]
    rows = read_metrics(str(pathlib.Path(run_dir, "student", "metrics.csv")))
    assert {"ce_loss", "kd_loss", "dkd_loss", "val_kd_loss"} <= set(rows[0])
