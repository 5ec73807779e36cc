"""Run a whole experiment: data, then each stage in order, into a run folder.

    result = run_experiment(load_config("configs/mnist.yaml"))
    result.summary["stages"]["student"]["test_accuracy"]

    resume_experiment("logs/mnist_kd/20261203-141532")  # continue a killed run
    reproduce_run("logs/mnist_kd/20261203-141532")      # run it again, compare the numbers

Works the same from the CLI, a test or a notebook: it prints nothing itself and
reports progress to a `Reporter`.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
import tempfile
import time
from typing import Any

import keras

import distill
from distill.config import ExperimentConfig, load_config
from distill.data import Splits, load_raw, make_splits
from distill.data.sources import sha256_of
from distill.errors import (DeclarationError, DistillError, RunError, RunFolderError,
                            RunInterrupted)
from distill.models import build_model, load_model, saved_model_file
from distill.reporting import Reporter
from distill.runs.environment import configure_determinism, environment
from distill.runs.folder import (CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, MODEL_FILE,
                                 SUMMARY_FILE, MetricsWriter, RunFolder, atomic_write,
                                 readable_as_umask_allows, reported_write, write_json, write_yaml)
from distill.runs.records import Comparison, compare_runs
from distill.stages import StageResult, run_stage
from distill.stages.checkpoint import Checkpoint, CheckpointMismatch


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


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def save_model(model: keras.Model, path: str) -> None:
    """Save a model atomically (Keras needs the `.keras` suffix on the temporary name)."""
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-",
                                         suffix=".keras")
    readable_as_umask_allows(handle)
    os.close(handle)
    try:
        model.save(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


class _Run:
    """The mutable state of one run; the functions below are its only users."""

    def __init__(self, config: ExperimentConfig, folder: RunFolder, reporter: Reporter,
                 summary: dict):
        self.config = config.data
        self.folder = folder
        self.reporter = reporter
        self.summary = summary
        self.started = time.perf_counter()
        self.earlier_seconds = summary.get("wall_seconds") or 0.0  # of the sessions it resumes
        self.models: dict[str, keras.Model] = {}

    @staticmethod
    def new_summary(config: ExperimentConfig, folder: RunFolder,
                    command: list[str] | None) -> dict[str, Any]:
        resolved = config.data
        return {
            "experiment": resolved["experiment"]["name"],
            "status": "running",
            "run_dir": folder.path,
            "config_file": config.file,
            "config_sha256": sha256_of(folder.file(CONFIG_FILE)),
            "command": command,
            "overrides": list(config.overrides),
            "started_at": _now(),
            "finished_at": None,
            "wall_seconds": None,
            "data": None,
            "stages": {stage["name"]: {"type": stage["type"], "model": stage["model"],
                                       "status": "pending", "epochs": stage["epochs"]}
                       for stage in resolved["stages"]},
            **environment(),  # versions, source commit, machine
            "resumed": [],
        }

    def writing(self, path: str):
        """Report an OSError while writing `path` as a RunError that says how to go on."""
        return reported_write(path, f", then continue the run with `distill run --resume "
                                    f"{self.folder.path}`")

    def save_summary(self) -> None:
        self.summary["wall_seconds"] = round(
            self.earlier_seconds + time.perf_counter() - self.started, 3)
        path = self.folder.file(SUMMARY_FILE)
        with self.writing(path):
            write_json(path, self.summary)

    def finish(self, status: str, error: str | None = None) -> None:
        self.summary["status"] = status
        self.summary["finished_at"] = _now()
        if error:
            self.summary["error"] = error
        try:
            self.save_summary()
        except RunError:
            pass  # e.g. the disk is full: the last summary written stays, whole
        self.folder.unlock()
        self.reporter.run_ended(self.summary)

    def load_data(self) -> Splits:
        data = self.config["data"]
        raw = load_raw(data["dataset"], data["path"])
        files = [{"path": path, "sha256": digest} for path, digest in raw.files]
        earlier = (self.summary.get("data") or {}).get("files")
        if earlier is not None and (sorted(f["sha256"] for f in earlier)
                                    != sorted(f["sha256"] for f in files)):
            raise RunFolderError(
                f"the data files differ from those the run read first (was: "
                f"{', '.join(f['path'] + ' ' + f['sha256'][:12] for f in earlier)}; now: "
                f"{', '.join(f['path'] + ' ' + f['sha256'][:12] for f in files)}), so its "
                "finished epochs would not match the rest. Put the original files back.")
        splits = make_splits(raw, seed=self.config["experiment"]["seed"],
                             validation_split=data["validation_split"], scale=data["scale"],
                             flatten=data["flatten"], limit_train=data["limit"]["train"],
                             limit_test=data["limit"]["test"])
        self.summary["data"] = {
            "dataset": data["dataset"],
            "source": splits.source,
            **splits.sizes(),
            "input_shape": list(splits.input_shape),
            "files": files,
        }
        self.save_summary()
        self.reporter.data_ready(splits)
        return splits

    def model(self, name: str, splits: Splits) -> keras.Model:
        declaration = self.config["models"][name]
        try:
            model = build_model(name, declaration, splits.input_shape, splits.num_classes)
        except DeclarationError as error:  # e.g. a model file deleted since validation
            raise RunError(f"models.{name}: {error}") from None
        path = saved_model_file(declaration)
        if path is not None:  # a checksum tells later whether the same file was used
            self.summary.setdefault("loaded_models", {})[name] = {"path": path,
                                                                  "sha256": sha256_of(path)}
        return model

    def teacher(self, stage: dict, splits: Splits) -> keras.Model | list[keras.Model]:
        """The stage's `teacher`, or the list of its `teachers`."""
        if "teachers" in stage:
            return [self.teacher_model(name, splits) for name in stage["teachers"]]
        return self.teacher_model(stage["teacher"], splits)

    def teacher_model(self, name: str, splits: Splits) -> keras.Model:
        """The model an earlier stage trained (in this session or before a resume), or a
        model in `models` loaded from a file."""
        if name in self.models:
            return self.models[name]
        earlier = self.summary["stages"].get(name)
        if earlier is not None and earlier["status"] == "completed":
            # A stage that finished before this run was resumed: its saved model.
            path = self.folder.file(name, MODEL_FILE)
            try:
                self.models[name] = load_model(path, splits.input_shape, splits.num_classes,
                                               name=earlier["model"])
            except DeclarationError as error:
                raise RunError(f"stage '{name}' completed earlier, but its model cannot be "
                               f"loaded: {error}") from None
            return self.models[name]
        return self.model(name, splits)

    def read_checkpoint(self, path: str, name: str) -> Checkpoint | None:
        if not os.path.exists(path):
            return None
        try:
            return Checkpoint.read(path)
        except (OSError, ValueError) as error:
            raise RunError(f"stage '{name}': cannot read its checkpoint {path} ({error}). Delete "
                           "it to train the stage again from its first epoch.") from None

    def run_stage(self, index: int, stage: dict, splits: Splits, resume: bool = False) -> None:
        name = stage["name"]
        entry = self.summary["stages"][name]
        if resume and entry["status"] == "completed":
            self.reporter.stage_kept(index, stage, entry)
            return
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
        checkpoint_path = os.path.join(stage_dir, CHECKPOINT_FILE)
        checkpoint, earlier_rows = None, []
        if resume:
            checkpoint = self.read_checkpoint(checkpoint_path, name)
            with self.writing(metrics.path):
                earlier_rows = metrics.resume(checkpoint.epoch if checkpoint else 0)
        entry.update(status="running", params=model.count_params(),
                     metrics_file=os.path.join(name, METRICS_FILE),
                     epochs_completed=len(earlier_rows),
                     checkpoint_file=os.path.join(name, CHECKPOINT_FILE))
        self.save_summary()
        self.reporter.stage_started(index, stage, entry["params"])
        if checkpoint is not None:
            self.reporter.note(f"continues after epoch {checkpoint.epoch} of {stage['epochs']}, "
                               f"from {os.path.join(name, CHECKPOINT_FILE)}")

        def on_epoch(row: dict) -> None:
            with self.writing(metrics.path):
                metrics.append(row)
            entry["epochs_completed"] = row["epoch"]
            self.reporter.epoch_ended(stage, row)

        def on_checkpoint(state: Checkpoint) -> None:
            with self.writing(checkpoint_path):
                atomic_write(checkpoint_path, state.write, binary=True)
            self.save_summary()

        try:
            result: StageResult = run_stage(
                index=index, stage=stage, model=model, teacher=teacher, splits=splits,
                runtime=self.config["runtime"], seed=seed, on_epoch=on_epoch,
                on_note=self.reporter.note, on_checkpoint=on_checkpoint, resume_from=checkpoint)
        except CheckpointMismatch as error:
            entry["status"] = "failed"
            raise RunError(f"stage '{name}': its checkpoint {checkpoint_path} does not fit the "
                           f"model config.yaml declares: {error}. Delete it to train the stage "
                           "again from its first epoch.") from None
        except BaseException as error:
            entry["status"] = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
            raise
        model_path = os.path.join(stage_dir, MODEL_FILE)
        with self.writing(model_path):
            save_model(result.model, model_path)
        self.models[name] = result.model
        rows = earlier_rows + result.history
        last = rows[-1] if rows else {}
        entry.pop("checkpoint_file")
        entry.update(
            status="completed",
            test_accuracy=result.test["accuracy"],
            test_loss=result.test["loss"],
            val_accuracy=last.get("val_accuracy"),
            epochs_completed=len(rows),
            wall_seconds=round(result.seconds + sum(row["seconds"] for row in earlier_rows), 3),
            model_file=os.path.join(name, MODEL_FILE),
        )
        if result.cached_teacher_logits is not None:
            entry["cached_teacher_logits"] = result.cached_teacher_logits
        self.save_summary()
        # model.keras and the summary now hold what the checkpoint was kept for.
        if os.path.exists(checkpoint_path):
            os.unlink(checkpoint_path)
        self.reporter.stage_ended(stage, entry)


def _drive(run: _Run, resume: bool) -> RunResult:
    """Load the data and run (or, resuming, finish) every stage; record how it ended."""
    path = run.folder.path
    if not resume:
        try:
            splits = run.load_data()
        except DistillError:
            # Nothing was done yet: a folder would only clutter `distill runs`.
            run.folder.unlock()
            shutil.rmtree(path, ignore_errors=True)
            raise
    try:
        if resume:
            splits = run.load_data()
        for index, stage in enumerate(run.config["stages"]):
            run.run_stage(index, stage, splits, resume=resume)
    except KeyboardInterrupt:
        run.finish("interrupted")
        raise RunInterrupted(f"interrupted; finished stages and epochs are kept in {path}. "
                             f"Continue the run with `distill run --resume {path}`.",
                             run_dir=path) from None
    except DistillError as error:
        run.finish("failed", str(error))
        if isinstance(error, RunError):
            error.run_dir = path
        raise
    except BaseException as error:
        run.finish("failed", f"{type(error).__name__}: {error}")
        raise
    run.finish("completed")
    return RunResult(path, run.summary, run.models)


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
        RunError: if the logs folder cannot be written (before any work), or a
            stage fails (its summary says `failed`; finished stages and epochs stay).
        RunInterrupted: on Ctrl-C (the summary says `interrupted`).
    """
    reporter = reporter or Reporter()
    resolved = config.data
    logs_dir = logs_dir or resolved["experiment"]["logs_dir"]
    configure_determinism(resolved["runtime"]["deterministic"])
    keras.utils.set_random_seed(resolved["experiment"]["seed"])
    folder = RunFolder.create(logs_dir, resolved["experiment"]["name"])
    try:
        folder.lock()
        config_path = folder.file(CONFIG_FILE)
        with reported_write(config_path):  # an unwritable folder or a full disk stops us here
            overrides = "".join(f"#   --set {text}\n" for text in config.overrides)
            write_yaml(config_path, resolved,
                       header=f"# Resolved by distill {distill.__version__} from {config.file} on "
                              f"{_now()}.\n"
                              + (f"# with the overrides (already applied below):\n{overrides}"
                                 if overrides else "")
                              + "# Every default is filled in: `distill run` this file to "
                                "reproduce the run.\n")
        run = _Run(config, folder, reporter, _Run.new_summary(config, folder, command))
        summary_path = folder.file(SUMMARY_FILE)
        with reported_write(summary_path):
            write_json(summary_path, run.summary)
    except BaseException:
        folder.unlock()
        shutil.rmtree(folder.path, ignore_errors=True)  # it holds no work yet
        raise
    reporter.run_started(folder.path, resolved)
    return _drive(run, resume=False)


def _changed_environment(summary: dict) -> dict:
    """What differs between the machine and versions that started a run and these."""
    return {key: {"was": summary.get(key), "now": value} for key, value in environment().items()
            if summary.get(key) != value}


def resume_experiment(run_dir: str, *, reporter: Reporter | None = None,
                      command: list[str] | None = None) -> RunResult:
    """Continue a killed, interrupted or failed run in its own folder.

    Completed stages are kept (a later stage loads its teacher from their
    `model.keras`); the stage that was running continues after the last epoch
    its checkpoint holds, with the same weights, optimizer state, schedule
    position and random state; the stages after it run as usual. On the same
    machine and versions, the numbers are those of an uninterrupted run.

    Args:
        run_dir: The run folder.
        reporter: Receives progress; by default nothing is reported.
        command: The command line, recorded in the summary's `resumed` list.

    Returns:
        As `run_experiment`.

    Raises:
        RunFolderError: if `run_dir` is missing, not a run, completed, still
            running, or its config.yaml changed since the run started.
        ConfigError: if its config.yaml no longer validates.
        DataError, RunError, RunInterrupted: as `run_experiment`.
    """
    reporter = reporter or Reporter()
    folder = RunFolder.open(run_dir)
    summary = folder.read_summary()
    if summary.get("status") == "completed":
        raise RunFolderError(f"{run_dir}: the run completed; there is nothing to resume. "
                             f"`distill reproduce {run_dir}` runs it again into a new folder.")
    folder.lock()
    try:
        config_path = folder.file(CONFIG_FILE)
        recorded = summary.get("config_sha256")
        if recorded is not None and sha256_of(config_path) != recorded:
            raise RunFolderError(
                f"{config_path} changed since the run started, so the epochs it finished do "
                f"not belong to it. Start a new run from it: `distill run {config_path}`.")
        config = load_config(config_path)
        resolved = config.data
        configure_determinism(resolved["runtime"]["deterministic"])
        keras.utils.set_random_seed(resolved["experiment"]["seed"])
        run = _Run(config, folder, reporter, summary)
        changed = _changed_environment(summary)
    except BaseException:
        folder.unlock()
        raise
    summary.setdefault("resumed", []).append(
        {"at": _now(), "command": command,
         "was": "killed" if summary.get("status") == "running" else summary.get("status"),
         **({"changed": changed} if changed else {})})
    summary.update(status="running", finished_at=None)
    summary.pop("error", None)
    try:
        run.save_summary()
    except BaseException:
        folder.unlock()
        raise
    reporter.run_started(folder.path, resolved)
    if changed:
        reporter.note(f"resuming with a different {' and '.join(changed)} than the run started "
                      "with (see summary.json 'resumed'): the rest may not match an "
                      "uninterrupted run.")
    return _drive(run, resume=True)


def reproduce_run(run_dir: str, *, tolerance: float = 0.0, logs_dir: str | None = None,
                  reporter: Reporter | None = None,
                  command: list[str] | None = None) -> tuple[RunResult, Comparison]:
    """Run a run folder's config.yaml again into a new folder and compare the numbers.

    Args:
        run_dir: The run to reproduce.
        tolerance: Largest absolute difference of a metric still counted as agreeing.
        logs_dir: Where the new run goes; by default beside the original
            (`<logs_dir>/<experiment>/<new timestamp>`).
        reporter: Receives the new run's progress.
        command: The command line, recorded in the new run's summary.

    Returns:
        The new run and its comparison with the original.

    Raises:
        RunFolderError: if `run_dir` is not a run folder.
        ConfigError: if its config.yaml no longer validates.
        DataError, RunError, RunInterrupted: as `run_experiment`.
    """
    folder = RunFolder.open(run_dir)
    folder.read_summary()
    config = load_config(folder.file(CONFIG_FILE))
    if logs_dir is None:  # <logs_dir>/<experiment>/<run>, as written when possible
        logs_dir = (os.path.dirname(os.path.dirname(os.path.normpath(run_dir)))
                    or os.path.dirname(os.path.dirname(os.path.abspath(run_dir))))
    result = run_experiment(config, logs_dir=logs_dir, reporter=reporter, command=command)
    return result, compare_runs(run_dir, result.run_dir, tolerance=tolerance)
