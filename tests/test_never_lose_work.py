"""Never lose work: NaN losses, full disks, unwritable folders, kills while writing."""

from __future__ import annotations

import errno
import json
import os
import pathlib

import pytest
from click.testing import CliRunner

from distill.cli import cli
from distill.config import parse_config
from distill.errors import RunError
from distill.runs import experiment, read_metrics, resume_experiment, run_experiment
from distill.runs.folder import MetricsWriter, atomic_write, write_json


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def summary(run_dir) -> dict:
    return json.loads(pathlib.Path(run_dir, "summary.json").read_text())


def only_run(logs: pathlib.Path) -> str:
    runs = [path.parent for path in logs.rglob("summary.json")]
    assert len(runs) == 1, runs
    return str(runs[0])


def test_a_nan_loss_names_stage_epoch_batch_and_causes_and_keeps_the_logs(
        tiny_config_text, write_config, tmp_path):
    # The rate jumps from 0.001 to 1e27 after the first epoch (15 steps): the
    # first epoch trains, the second blows up.
    text = tiny_config_text.replace(
        "    epochs: 2\n  - name: student",
        "    epochs: 3\n    optimizer: {name: sgd, learning_rate: {name: exponential_decay, "
        "initial_learning_rate: 0.001, decay_steps: 15, decay_rate: 1.0e+30, staircase: true}}\n"
        "  - name: student")
    result = invoke("run", str(write_config(text)), "--logs-dir", str(tmp_path / "logs"))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "stage 'teacher': the loss became" in result.output
    assert "in epoch 2, by batch" in result.output
    assert "learning rate" in result.output and "temperature" in result.output
    run_dir = only_run(tmp_path / "logs")
    record = summary(run_dir)
    assert record["status"] == "failed" and record["stages"]["teacher"]["status"] == "failed"
    assert record["stages"]["student"]["status"] == "pending"
    assert "the loss became" in record["error"]
    assert [row["epoch"] for row in read_metrics(os.path.join(run_dir, "teacher",
                                                              "metrics.csv"))] == [1]


def test_a_full_disk_mid_run_stops_with_a_message_keeps_the_work_and_resumes(
        tiny_config_text, write_config, tmp_path, monkeypatch):
    original = MetricsWriter.append

    def append(self, row):
        if row["epoch"] == 2 and self.path.endswith(os.path.join("student", "metrics.csv")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)
        original(self, row)

    monkeypatch.setattr(MetricsWriter, "append", append)
    result = invoke("run", str(write_config(tiny_config_text)),
                    "--logs-dir", str(tmp_path / "logs"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    run_dir = only_run(tmp_path / "logs")
    assert "the disk is full. Free some space, then continue the run with `distill run " \
           f"--resume {run_dir}`" in result.output
    record = summary(run_dir)
    assert record["status"] == "failed" and record["stages"]["teacher"]["status"] == "completed"
    assert os.path.isfile(os.path.join(run_dir, "teacher", "model.keras"))
    assert os.path.isfile(os.path.join(run_dir, "student", "checkpoint.npz"))

    monkeypatch.setattr(MetricsWriter, "append", original)  # space was freed
    assert resume_experiment(run_dir).status == "completed"
    assert [row["epoch"] for row in read_metrics(os.path.join(run_dir, "student",
                                                              "metrics.csv"))] == [1, 2]


def test_a_full_disk_before_training_is_reported_and_leaves_no_empty_run(
        tiny_config_text, tmp_path, monkeypatch):
    def full(path, data, header=""):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(experiment, "write_yaml", full)
    with pytest.raises(RunError, match=r"config.yaml: the disk is full"):
        run_experiment(parse_config(tiny_config_text), logs_dir=str(tmp_path / "logs"))
    assert list((tmp_path / "logs").rglob("*.yaml")) == []
    assert os.listdir(tmp_path / "logs" / "tiny") == []


def test_an_unwritable_logs_folder_is_reported_before_any_work(tiny_config_text, write_config,
                                                                 tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = invoke("run", str(write_config(tiny_config_text)), "--logs-dir", str(blocker / "logs"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot create the logs folder" in result.output
    assert "data:" not in result.output  # stopped before reading any data


def test_atomic_writes_leave_the_old_file_whole_when_a_write_dies(tmp_path):
    path = tmp_path / "summary.json"
    write_json(str(path), {"status": "running", "epochs": 1})

    def dies(out):
        out.write('{"status": "compl')
        raise KeyboardInterrupt  # or SIGKILL, or a full disk, half way through

    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(path), dies)
    assert json.loads(path.read_text()) == {"status": "running", "epochs": 1}
    assert os.listdir(tmp_path) == ["summary.json"]  # no temporary file left behind


def test_written_files_get_the_mode_a_plain_open_gives(tmp_path):
    import stat
    old = os.umask(0o022)
    try:
        write_json(str(tmp_path / "summary.json"), {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "summary.json").stat().st_mode) == 0o644
