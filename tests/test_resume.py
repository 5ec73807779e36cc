"""Reproducible and resumable runs: the same numbers again, and after a kill.

One uninterrupted run of a small two-stage experiment (a student with dropout
and a cosine learning-rate schedule) is the reference every other run here is
compared with, row by row and exactly.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml
from click.testing import CliRunner

from distill.cli import cli
from distill.config import parse_config
from distill.errors import ConfigError, RunFolderError, RunInterrupted
from distill.reporting import Reporter
from distill.runs import read_metrics, resume_experiment, run_experiment
from distill.runs.environment import configure_determinism
from distill.runs.folder import RunFolder
from tests.conftest import REPO

CONFIG = """\
experiment: {{name: resumable, seed: 11}}
data: {{dataset: mnist, path: {data}, validation_split: 0.2, batch_size: 16}}
runtime: {{steps_per_execution: 4}}
models:
  teacher:
    layers:
      - Dense: {{units: 32, activation: relu}}
      - Dense: {{units: 10}}
  student:
    layers:
      - Dense: {{units: 16, activation: relu}}
      - Dropout: {{rate: 0.3}}
      - Dense: {{units: 10}}
stages:
  - {{name: teacher, type: train, model: teacher, epochs: 2}}
  - name: student
    type: distill
    model: student
    teacher: teacher
    loss: {{method: kd, temperature: 4, alpha: 0.1}}
    optimizer:
      name: adam
      learning_rate: {{name: cosine_decay, initial_learning_rate: 0.01, decay_steps: 150}}
    epochs: 10
"""
STAGES = ("teacher", "student")


@pytest.fixture(scope="module")
def config_text(tiny_data) -> str:
    return CONFIG.format(data=tiny_data)


@pytest.fixture(scope="module")
def reference(config_text, tmp_path_factory) -> str:
    """The run folder of one uninterrupted run."""
    return run_experiment(parse_config(config_text),
                          logs_dir=str(tmp_path_factory.mktemp("reference"))).run_dir


def rows(run_dir: str, stage: str) -> list[dict]:
    """A stage's metrics rows without the wall time, the one column that never repeats."""
    return [{k: v for k, v in row.items() if k != "seconds"}
            for row in read_metrics(os.path.join(run_dir, stage, "metrics.csv"))]


def summary(run_dir: str) -> dict:
    return json.loads(pathlib.Path(run_dir, "summary.json").read_text())


def assert_same_numbers(run_dir: str, reference: str, stages=STAGES) -> None:
    ours, theirs = summary(run_dir)["stages"], summary(reference)["stages"]
    for stage in stages:
        assert rows(run_dir, stage) == rows(reference, stage), stage
        for key in ("test_accuracy", "test_loss", "epochs_completed"):
            assert ours[stage][key] == theirs[stage][key], (stage, key)


def test_the_same_config_twice_gives_identical_metrics(config_text, reference, tmp_path):
    again = run_experiment(parse_config(config_text), logs_dir=str(tmp_path)).run_dir
    assert_same_numbers(again, reference)
    assert len(rows(reference, "student")) == 10
    rates = [row["learning_rate"] for row in rows(reference, "student")]
    assert rates == sorted(rates, reverse=True) and len(set(rates)) == 10  # the schedule moved


def test_a_different_seed_gives_different_numbers(config_text, reference, tmp_path):
    text = config_text.replace("seed: 11", "seed: 12").replace("epochs: 10", "epochs: 1")
    other = run_experiment(parse_config(text), logs_dir=str(tmp_path)).run_dir
    for stage in STAGES:
        assert rows(other, stage)[0]["loss"] != rows(reference, stage)[0]["loss"]
    assert summary(other)["data"]["files"] == summary(reference)["data"]["files"]


def test_the_run_folder_records_what_explains_a_difference(reference):
    record = summary(reference)
    assert set(record["versions"]) >= {"distill", "python", "tensorflow", "keras", "numpy",
                                       "platform"}
    assert record["machine"]["cpu"] and isinstance(record["machine"]["gpus"], list)
    if (REPO / ".git").exists():  # distill runs from this checkout
        assert re.fullmatch(r"[0-9a-f]{40}", record["source"]["commit"])
        assert isinstance(record["source"]["dirty"], bool)
    assert record["overrides"] == []
    files = record["data"]["files"]
    assert len(files) == 4 and all(re.fullmatch(r"[0-9a-f]{64}", f["sha256"]) for f in files)
    saved = pathlib.Path(reference, "config.yaml")
    assert record["config_sha256"] == __import__("hashlib").sha256(saved.read_bytes()).hexdigest()
    # A finished stage keeps its model, not its checkpoint.
    for stage in STAGES:
        assert sorted(os.listdir(os.path.join(reference, stage))) == ["metrics.csv", "model.keras"]


class StopAt(Reporter):
    """Presses Ctrl-C as `stage` reports epoch `epoch` (its row is written, its checkpoint not)."""

    def __init__(self, stage: str, epoch: int):
        self.stage, self.epoch = stage, epoch

    def epoch_ended(self, stage: dict, row: dict) -> None:
        if stage["name"] == self.stage and row["epoch"] == self.epoch:
            raise KeyboardInterrupt


def test_ctrl_c_keeps_finished_epochs_and_resume_gives_the_uninterrupted_numbers(
        config_text, reference, tmp_path):
    with pytest.raises(RunInterrupted) as caught:
        run_experiment(parse_config(config_text), logs_dir=str(tmp_path),
                       reporter=StopAt("student", 4))
    run_dir = caught.value.run_dir
    assert f"distill run --resume {run_dir}" in str(caught.value)
    assert caught.value.exit_code == 130
    record = summary(run_dir)
    assert record["status"] == "interrupted"
    assert record["stages"]["teacher"]["status"] == "completed"
    assert record["stages"]["student"]["status"] == "interrupted"
    assert len(rows(run_dir, "student")) == 4  # every finished epoch's row is kept
    assert os.path.isfile(os.path.join(run_dir, "student", "checkpoint.npz"))

    teacher_model = pathlib.Path(run_dir, "teacher", "model.keras")
    written = teacher_model.stat().st_mtime_ns
    result = resume_experiment(run_dir)
    assert result.status == "completed" and result.run_dir == run_dir
    assert_same_numbers(run_dir, reference)
    assert teacher_model.stat().st_mtime_ns == written  # the finished stage was not redone
    assert summary(run_dir)["resumed"][0]["was"] == "interrupted"
    assert not os.path.exists(os.path.join(run_dir, "student", "checkpoint.npz"))


def test_sigkill_in_the_middle_of_a_stage_then_resume_gives_the_uninterrupted_numbers(
        config_text, reference, tmp_path):
    config = tmp_path / "resumable.yaml"
    config.write_text(config_text)
    logs = tmp_path / "logs"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    stderr = tmp_path / "stderr.txt"
    metrics = None
    with open(stderr, "wb") as errors, subprocess.Popen(
            [sys.executable, "-m", "distill", "run", str(config), "--logs-dir", str(logs)],
            stdout=subprocess.DEVNULL, stderr=errors, env=env, cwd=tmp_path) as process:
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            found = list(logs.glob("resumable/*/student/metrics.csv"))
            # Two finished epochs: the checkpoint of the first is surely written.
            if found and found[0].read_text().count("\n") >= 3:
                process.send_signal(signal.SIGKILL)
                metrics = found[0]
                break
            time.sleep(0.005)
        process.wait(timeout=60)
    assert metrics is not None, stderr.read_text()[-2000:]
    run_dir = str(metrics.parent.parent)
    killed = summary(run_dir)
    assert killed["status"] == "running"  # nothing could mark it: it was killed
    assert killed["stages"]["student"]["status"] == "running"
    assert len(rows(run_dir, "student")) < 10
    assert os.path.isfile(os.path.join(run_dir, "student", "checkpoint.npz"))

    listed = CliRunner().invoke(cli, ["runs", str(logs)])
    assert re.search(r"resumable\s+\S+ \S+\s+killed", listed.output), listed.output

    done = subprocess.run([sys.executable, "-m", "distill", "run", "--resume", run_dir],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "teacher: completed before the interruption, kept" in done.stdout
    assert re.search(r"continues after epoch \d+ of 10, from student/checkpoint.npz", done.stdout)
    assert done.stdout.strip().splitlines()[-1] == run_dir
    assert_same_numbers(run_dir, reference)
    assert summary(run_dir)["resumed"][0]["was"] == "killed"


def resume(*args: str):
    return CliRunner().invoke(cli, ["run", *args], catch_exceptions=False)


def test_resume_refuses_what_it_cannot_continue(reference, tmp_path):
    result = resume("--resume", str(tmp_path / "nowhere"))
    assert result.exit_code == 2 and "no such run folder" in result.output
    result = resume("--resume", str(tmp_path))
    assert result.exit_code == 2 and "not a run folder" in result.output
    result = resume("--resume", reference)
    assert result.exit_code == 2
    assert "the run completed; there is nothing to resume" in result.output
    assert f"distill reproduce {reference}" in result.output
    result = resume(str(tmp_path / "x.yaml"), "--resume", reference)
    assert result.exit_code == 2 and "not both" in result.output
    assert "Traceback" not in result.output


def interrupted_copy(reference: str, tmp_path: pathlib.Path) -> str:
    """A copy of the reference run folder that says it was interrupted."""
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(reference, run_dir)
    record = summary(str(run_dir))
    record["status"] = "interrupted"
    (run_dir / "summary.json").write_text(json.dumps(record))
    return str(run_dir)


def test_resume_refuses_a_changed_or_invalid_config_and_a_running_run(reference, tmp_path):
    run_dir = interrupted_copy(reference, tmp_path)
    config = pathlib.Path(run_dir, "config.yaml")
    config.write_text(config.read_text().replace("seed: 11", "seed: 12"))
    result = resume("--resume", run_dir)
    assert result.exit_code == 2 and "changed since the run started" in result.output

    # A config that no longer validates (as after an upgrade), though unchanged.
    config.write_text(config.read_text().replace("seed: 12", "seed: -1"))
    record = summary(run_dir)
    record["config_sha256"] = __import__("hashlib").sha256(config.read_bytes()).hexdigest()
    pathlib.Path(run_dir, "summary.json").write_text(json.dumps(record))
    result = resume("--resume", run_dir)
    assert result.exit_code == 2
    assert f"{config}:" in result.output and "experiment.seed: must be >= 0" in result.output

    holder = RunFolder(run_dir)
    holder.lock()  # as a live run holds it
    try:
        with pytest.raises(RunFolderError, match="still running"):
            resume_experiment(run_dir)
    finally:
        holder.unlock()


def test_a_teacher_from_an_earlier_run_folder(reference, tiny_data, tmp_path):
    text = f"""\
experiment: {{name: reuse, seed: 1}}
data: {{dataset: mnist, path: {tiny_data}, validation_split: 0.2, batch_size: 16}}
models:
  teacher: {{run: {reference}, stage: teacher}}
  student:
    layers: [{{Dense: {{units: 10}}}}]
stages:
  - {{name: student, type: distill, model: student, teacher: teacher, epochs: 1,
      loss: {{method: kd}}}}
"""
    result = run_experiment(parse_config(text), logs_dir=str(tmp_path))
    assert result.status == "completed"
    loaded = result.summary["loaded_models"]["teacher"]
    model_file = os.path.join(reference, "teacher", "model.keras")
    assert loaded["path"] == model_file
    assert loaded["sha256"] == __import__("hashlib").sha256(
        pathlib.Path(model_file).read_bytes()).hexdigest()

    def problems(edited: str) -> str:
        with pytest.raises(ConfigError) as caught:
            parse_config(edited, file="reuse.yaml")
        return str(caught.value)

    assert "models.teacher.stage: the run" in problems(text.replace("stage: teacher",
                                                                     "stage: teachr"))
    assert "Did you mean 'teacher'?" in problems(text.replace("stage: teacher", "stage: teachr"))
    missing = problems(text.replace(f"run: {reference}", f"run: {tmp_path / 'gone'}"))
    assert "models.teacher.run:" in missing and "no such folder" in missing
    assert "'run' and 'stage' go together" in problems(text.replace(", stage: teacher", ""))
    unfinished = interrupted_copy(reference, tmp_path)
    record = summary(unfinished)
    record["stages"]["teacher"]["status"] = "interrupted"
    pathlib.Path(unfinished, "summary.json").write_text(json.dumps(record))
    message = problems(text.replace(f"run: {reference}", f"run: {unfinished}"))
    assert "did not complete" in message and f"distill run --resume {unfinished}" in message


def test_the_saved_config_of_a_schedule_run_is_plain_yaml(reference):
    saved = yaml.safe_load(pathlib.Path(reference, "config.yaml").read_text())
    assert saved["stages"][1]["optimizer"]["learning_rate"]["name"] == "cosine_decay"
    assert saved["runtime"]["deterministic"] is False


def test_runtime_deterministic_switches_tensorflow_op_determinism(config_text, tmp_path):
    from tensorflow.python.framework import config as tf_config

    seen = []

    class Watch(Reporter):
        def stage_started(self, index, stage, params):
            seen.append(tf_config.is_op_determinism_enabled())

    text = config_text.replace("epochs: 10", "epochs: 1").replace("epochs: 2", "epochs: 1")
    deterministic = text.replace("runtime: {", "runtime: {deterministic: true, ")
    try:
        result = run_experiment(parse_config(deterministic), logs_dir=str(tmp_path),
                                reporter=Watch())
        assert result.status == "completed"  # and without Keras' warning about XLA
        assert seen == [True, True]
    finally:
        configure_determinism(False)  # what the next run with the default does first
    assert not tf_config.is_op_determinism_enabled()


def test_resume_of_a_stage_with_several_teachers_uses_their_trained_models(tiny_data, tmp_path):
    text = f"""\
experiment: {{name: ensemble, seed: 5}}
data: {{dataset: mnist, path: {tiny_data}, validation_split: 0.2, batch_size: 16}}
runtime: {{steps_per_execution: 4}}
models:
  a: {{layers: [Dense: {{units: 24, activation: relu}}, Dense: {{units: 10}}]}}
  b: {{layers: [Dense: {{units: 12, activation: relu}}, Dense: {{units: 10}}]}}
  student: {{layers: [Dense: {{units: 8, activation: relu}}, Dense: {{units: 10}}]}}
stages:
  - {{name: first, type: train, model: a, epochs: 2}}
  - {{name: second, type: train, model: b, epochs: 2}}
  - name: student
    type: distill
    model: student
    teachers: [first, second]
    loss: {{method: kd, temperature: 4, alpha: 0.5}}
    epochs: 3
"""
    whole = run_experiment(parse_config(text), logs_dir=str(tmp_path / "whole"))
    with pytest.raises(RunInterrupted) as caught:
        run_experiment(parse_config(text), logs_dir=str(tmp_path / "cut"),
                       reporter=StopAt("student", 2))
    result = resume_experiment(caught.value.run_dir)
    assert result.status == "completed"
    assert_same_numbers(result.run_dir, whole.run_dir, stages=("first", "second", "student"))
