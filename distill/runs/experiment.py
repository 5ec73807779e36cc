"""Run a whole experiment: data, then each stage in order, into a run folder.

    result = run_experiment(load_config("configs/mnist.yaml"))
    result.summary["stages"]["student"]["test_accuracy"]

Works the same from the CLI, a test or a notebook: it prints nothing itself and
reports progress to a `Reporter`.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import tempfile
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import distill
from distill.config import ExperimentConfig
from distill.data import Splits, load_raw, make_splits
from distill.errors import DeclarationError, DistillError, RunError, RunInterrupted
from distill.models import build_model
from distill.reporting import Reporter
from distill.runs.folder import (CONFIG_FILE, METRICS_FILE, MODEL_FILE, SUMMARY_FILE,
                                 MetricsWriter, RunFolder, write_json, write_yaml)
from distill.stages import StageResult, run_stage


@dataclasses.dataclass
class RunResult:
    """What `run_experiment` returns.

    Attributes:
        run_dir: The run folder.
        summary: The content of its summary.json.
        models: The trained models by stage name.
    """

    run_dir: str
    summary: dict
    models: dict[str, keras.Model]

    @property
    def status(self) -> str:
        return self.summary["status"]


def versions() -> dict[str, str]:
    """Versions of everything that can change a run's numbers."""
    return {
        "distill": distill.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def save_model(model: keras.Model, path: str) -> None:
    """Save a model atomically (Keras needs the `.keras` suffix on the temporary name)."""
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-",
                                         suffix=".keras")
    os.close(handle)
    try:
        model.save(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


class _Run:
    """The mutable state of one run; `run_experiment` is its only user."""

    def __init__(self, config: ExperimentConfig, folder: RunFolder, reporter: Reporter,
                 command: list[str] | None):
        self.config = config.data
        self.folder = folder
        self.reporter = reporter
        self.started = time.perf_counter()
        self.models: dict[str, keras.Model] = {}
        self.summary: dict[str, Any] = {
            "experiment": self.config["experiment"]["name"],
            "status": "running",
            "run_dir": folder.path,
            "config_file": config.file,
            "overrides": list(config.overrides),
            "command": command,
            "started_at": _now(),
            "finished_at": None,
            "wall_seconds": None,
            "data": None,
            "stages": {stage["name"]: {"type": stage["type"], "model": stage["model"],
                                       "status": "pending", "epochs": stage["epochs"]}
                       for stage in self.config["stages"]},
            "versions": versions(),
        }

    def save_summary(self) -> None:
        self.summary["wall_seconds"] = round(time.perf_counter() - self.started, 3)
        write_json(self.folder.file(SUMMARY_FILE), self.summary)

    def finish(self, status: str, error: str | None = None) -> None:
        self.summary["status"] = status
        self.summary["finished_at"] = _now()
        if error:
            self.summary["error"] = error
        self.save_summary()
        self.reporter.run_ended(self.summary)

    def load_data(self) -> Splits:
        data = self.config["data"]
        raw = load_raw(data["dataset"], data["path"])
        splits = make_splits(raw, seed=self.config["experiment"]["seed"],
                             validation_split=data["validation_split"], scale=data["scale"],
                             flatten=data["flatten"], limit_train=data["limit"]["train"],
                             limit_test=data["limit"]["test"])
        self.summary["data"] = {
            "dataset": data["dataset"],
            "source": splits.source,
            **splits.sizes(),
            "input_shape": list(splits.input_shape),
            "files": [{"path": path, "sha256": digest} for path, digest in splits.files],
        }
        self.save_summary()
        self.reporter.data_ready(splits)
        return splits

    def model(self, name: str, splits: Splits) -> keras.Model:
        try:
            return build_model(name, self.config["models"][name], splits.input_shape,
                               splits.num_classes)
        except DeclarationError as error:  # e.g. a model file deleted since validation
            raise RunError(f"models.{name}: {error}") from None

    def teacher(self, stage: dict, splits: Splits) -> keras.Model | list[keras.Model]:
        """The stage's `teacher`, or the list of its `teachers`."""
        if "teachers" in stage:
            return [self.models[name] if name in self.models else self.model(name, splits)
                    for name in stage["teachers"]]
        name = stage["teacher"]
        if name in self.models:
            return self.models[name]
        return self.model(name, splits)

    def run_stage(self, index: int, stage: dict, splits: Splits) -> None:
        name = stage["name"]
        entry = self.summary["stages"][name]
        seed = self.config["experiment"]["seed"]
        # Seeding each stage by its index makes its initial weights independent of
        # the stages before it (and of whether they ran in this process).
        keras.utils.set_random_seed(seed + index)
        model = self.model(stage["model"], splits)
        teacher = self.teacher(stage, splits) if stage["type"] == "distill" else None
        if teacher is not None:
            key = "teachers" if "teachers" in stage else "teacher"
            entry[key] = stage[key]
        stage_dir = self.folder.stage_dir(name)
        metrics = MetricsWriter(os.path.join(stage_dir, METRICS_FILE))
        entry.update(status="running", params=model.count_params(),
                     metrics_file=os.path.join(name, METRICS_FILE), epochs_completed=0)
        self.save_summary()
        self.reporter.stage_started(index, stage, entry["params"])

        def on_epoch(row: dict) -> None:
            metrics.append(row)
            entry["epochs_completed"] = row["epoch"]
            self.reporter.epoch_ended(stage, row)

        try:
            result: StageResult = run_stage(
                index=index, stage=stage, model=model, teacher=teacher, splits=splits,
                runtime=self.config["runtime"], seed=seed, on_epoch=on_epoch,
                on_note=self.reporter.note)
        except BaseException as error:
            entry["status"] = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
            raise
        save_model(result.model, os.path.join(stage_dir, MODEL_FILE))
        self.models[name] = result.model
        last = result.history[-1] if result.history else {}
        entry.update(
            status="completed",
            test_accuracy=result.test["accuracy"],
            test_loss=result.test["loss"],
            val_accuracy=last.get("val_accuracy"),
            wall_seconds=round(result.seconds, 3),
            model_file=os.path.join(name, MODEL_FILE),
        )
        if result.cached_teacher_logits is not None:
            entry["cached_teacher_logits"] = result.cached_teacher_logits
        self.save_summary()
        self.reporter.stage_ended(stage, entry)


def run_experiment(config: ExperimentConfig, *, logs_dir: str | None = None,
                   reporter: Reporter | None = None,
                   command: list[str] | None = None) -> RunResult:
    """Run every stage of a resolved experiment into a new run folder.

    Args:
        config: From `distill.config.load_config`.
        logs_dir: Overrides `experiment.logs_dir`.
        reporter: Receives progress; by default nothing is reported.
        command: The command line, recorded in summary.json.

    Returns:
        The run folder, its summary and the trained models.

    Raises:
        DataError: if the dataset cannot be found or read.
        RunError: if a stage fails (its summary says `failed`; finished stages stay).
        RunInterrupted: on Ctrl-C (the summary says `interrupted`).
    """
    reporter = reporter or Reporter()
    resolved = config.data
    logs_dir = logs_dir or resolved["experiment"]["logs_dir"]
    keras.utils.set_random_seed(resolved["experiment"]["seed"])
    folder = RunFolder.create(logs_dir, resolved["experiment"]["name"])
    overrides = "".join(f"#   --set {text}\n" for text in config.overrides)
    write_yaml(folder.file(CONFIG_FILE), resolved,
               header=f"# Resolved by distill {distill.__version__} from {config.file} on "
                      f"{_now()}.\n"
                      + (f"# with the overrides (already applied below):\n{overrides}"
                         if overrides else "")
                      + "# Every default is filled in: `distill run` this file to reproduce "
                        "the run.\n")
    run = _Run(config, folder, reporter, command)
    run.save_summary()
    reporter.run_started(folder.path, resolved)
    try:
        splits = run.load_data()
        for index, stage in enumerate(resolved["stages"]):
            run.run_stage(index, stage, splits)
    except KeyboardInterrupt:
        run.finish("interrupted")
        raise RunInterrupted(f"interrupted; finished stages and epochs are kept in "
                             f"{folder.path}.", run_dir=folder.path) from None
    except DistillError as error:
        run.finish("failed", str(error))
        if isinstance(error, RunError):
            error.run_dir = folder.path
        raise
    except BaseException as error:
        run.finish("failed", f"{type(error).__name__}: {error}")
        raise
    run.finish("completed")
    return RunResult(folder.path, run.summary, run.models)

