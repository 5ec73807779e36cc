"""End to end on the real MNIST: the shipped config, through the CLI.

The default run uses a slice (2,000 train / 500 test); the full recipe is
marked slow (`pytest -m slow`).
"""

from __future__ import annotations

import json
import os
import pathlib

import pytest
import yaml
from click.testing import CliRunner

from distill.cli import cli
from distill.runs import read_metrics
from tests.conftest import CONFIGS


def shipped_config(tmp_path, real_mnist, **changes) -> str:
    config = yaml.safe_load((CONFIGS / "mnist.yaml").read_text())
    config["data"]["path"] = str(real_mnist)
    config["data"].update(changes.pop("data", {}))
    for stage in config["stages"]:
        stage.update(changes.get("stages", {}))
    path = tmp_path / "mnist.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def run(config: str, logs: str) -> tuple[str, dict]:
    result = CliRunner().invoke(cli, ["run", config, "--logs-dir", logs], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run_dir = result.output.strip().splitlines()[-1]
    return run_dir, json.loads(pathlib.Path(run_dir, "summary.json").read_text())


def test_mnist_slice_end_to_end(tmp_path, real_mnist):
    config = shipped_config(tmp_path, real_mnist,
                            data={"limit": {"train": 2000, "test": 500}, "validation_split": 200},
                            stages={"epochs": 2})
    run_dir, summary = run(config, str(tmp_path / "logs"))
    stages = summary["stages"]
    assert list(stages) == ["teacher", "student", "scratch"]
    assert summary["data"]["train"] == 1800 and summary["data"]["validation"] == 200
    assert summary["data"]["test"] == 500
    assert len(summary["data"]["files"]) == 4
    for name, entry in stages.items():
        assert entry["status"] == "completed"
        assert entry["test_accuracy"] >= 0.80, (name, entry)  # a 10-class guess scores 0.10
        assert os.path.isfile(os.path.join(run_dir, name, "model.keras"))
    assert stages["student"]["params"] == stages["scratch"]["params"] == 535_818
    assert stages["teacher"]["params"] == 575_050
    rows = read_metrics(os.path.join(run_dir, "student", "metrics.csv"))
    # Not parked near ln(10) = 2.30, the mark of softmax applied twice.
    assert rows[-1]["kd_loss"] < rows[0]["kd_loss"]
    assert rows[-1]["ce_loss"] < 1.0


@pytest.mark.slow
def test_full_mnist_recipe_meets_its_accuracy_floors(tmp_path, real_mnist):
    run_dir, summary = run(shipped_config(tmp_path, real_mnist), str(tmp_path / "logs"))
    stages = summary["stages"]
    assert stages["teacher"]["test_accuracy"] >= 0.975
    assert stages["student"]["test_accuracy"] >= 0.975
    rows = read_metrics(os.path.join(run_dir, "student", "metrics.csv"))
    kd = [row["kd_loss"] for row in rows]
    assert kd[-1] < kd[0] and kd[-1] < 0.5
