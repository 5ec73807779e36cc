"""The `distill` command through click's CliRunner: exit codes, messages, run folders."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from distill.cli import cli
from distill.config import load_config
from distill.runs import read_metrics


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_run_writes_a_complete_run_folder(tiny_config_text, write_config, tmp_path):
    config = write_config(tiny_config_text)
    result = invoke("run", str(config), "--logs-dir", str(tmp_path / "logs"))
    assert result.exit_code == 0, result.output
    run_dir = result.output.strip().splitlines()[-1]
    assert run_dir.startswith(str(tmp_path / "logs" / "tiny"))
    assert "epoch 2/2" in result.output and "summary" in result.output

    names = set(os.listdir(run_dir))
    assert {"config.yaml", "summary.json", "teacher", "student"} <= names
    for stage in ("teacher", "student"):
        assert {"metrics.csv", "model.keras"} <= set(os.listdir(os.path.join(run_dir, stage)))
        rows = read_metrics(os.path.join(run_dir, stage, "metrics.csv"))
        assert [row["epoch"] for row in rows] == [1, 2]
        assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(rows[0])

    summary = json.loads(pathlib.Path(run_dir, "summary.json").read_text())
    assert summary["status"] == "completed"
    assert set(summary["versions"]) >= {"distill", "tensorflow", "keras", "python"}
    for name, entry in summary["stages"].items():
        assert entry["status"] == "completed"
        assert {"test_accuracy", "test_loss", "params", "epochs", "wall_seconds"} <= set(entry)
    assert summary["stages"]["student"]["params"] < summary["stages"]["teacher"]["params"]

    # The saved config is complete and runs as it is.
    saved = load_config(os.path.join(run_dir, "config.yaml"))
    assert saved.data == load_config(config).data


def test_run_never_overwrites_an_earlier_run(tiny_config_text, write_config, tmp_path):
    text = tiny_config_text.replace("epochs: 2", "epochs: 1")
    config = write_config(text)
    first = invoke("run", str(config), "--logs-dir", str(tmp_path)).output.strip().splitlines()[-1]
    second = invoke("run", str(config), "--logs-dir", str(tmp_path)).output.strip().splitlines()[-1]
    assert first != second and os.path.isdir(first) and os.path.isdir(second)


@pytest.mark.parametrize("edit, expected", [
    (lambda t: t.replace("seed: 3", "seed: [3"), "YAML syntax error"),
    (lambda t: t.replace("batch_size: 16", "batch_sise: 16"), "data.batch_sise: unknown key"),
    (lambda t: t.replace("seed: 3", "seed: three"), "experiment.seed: must be an integer"),
    (lambda t: t.replace("temperature: 4", "temperature: -1"),
     "stages[1].loss.temperature: must be > 0, got -1"),
    (lambda t: t.replace("dataset: mnist", "dataset: cifar"), "data.dataset: must be one of"),
    (lambda t: t.replace("Dense: {units: 8", "Dence: {units: 8"),
     "models.student.layers[0]: unknown layer 'Dence'. Did you mean 'Dense'?"),
])
def test_bad_input_exits_2_with_one_paragraph(tiny_config_text, write_config, edit, expected):
    config = write_config(edit(tiny_config_text))
    result = invoke("run", str(config))
    assert result.exit_code == 2
    assert expected in result.output
    assert str(config) in result.output
    assert "Traceback" not in result.output


def test_missing_config_file(tmp_path):
    result = invoke("run", str(tmp_path / "missing.yaml"))
    assert result.exit_code == 2 and "missing.yaml: file not found" in result.output


def test_missing_dataset_exits_2_and_says_where_it_looked(tiny_config_text, write_config, tmp_path):
    config = write_config(tiny_config_text.replace(
        f"path: {tiny_config_text.split('path: ')[1].splitlines()[0]}", f"path: {tmp_path / 'none'}"))
    result = invoke("run", str(config), "--logs-dir", str(tmp_path / "logs"))
    assert result.exit_code == 2 and "no mnist files there" in result.output
    # Nothing was done, so no run folder is left to clutter `distill runs`.
    assert not list((tmp_path / "logs").rglob("summary.json"))


def test_python_dash_m_and_version():
    done = subprocess.run([sys.executable, "-m", "distill", "--version"], capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip().startswith("distill, version")


def test_help_lists_run():
    result = invoke("--help")
    assert result.exit_code == 0 and "run" in result.output


def test_saved_config_is_plain_yaml(tiny_config_text, write_config, tmp_path):
    text = tiny_config_text.replace("epochs: 2", "epochs: 1")
    run_dir = invoke("run", str(write_config(text)), "--logs-dir", str(tmp_path)).output.strip().splitlines()[-1]
    saved = yaml.safe_load(pathlib.Path(run_dir, "config.yaml").read_text())
    assert saved["stages"][1]["loss"] == {"method": "kd", "temperature": 4, "alpha": 0.1}
    assert saved["runtime"]["steps_per_execution"] == 4
