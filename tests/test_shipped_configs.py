"""Every shipped config runs, through the CLI, for one epoch per stage on a slice of its data.

Real data: MNIST from $DISTILL_DATA_DIR (see conftest), Fashion-MNIST from Debian's
`dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist, installed by .ci/run).
Each run uses 1,000 training images (200 of them for validation) and 300 test images.
"""

from __future__ import annotations

import json
import math
import os
import pathlib

import pytest
import yaml
from click.testing import CliRunner

from distill.cli import cli
from distill.data import DATASETS
from distill.data.sources import candidate_folders
from distill.losses import METHODS
from distill.runs import read_metrics
from tests.conftest import CONFIGS, mnist_dir

METHOD_CONFIGS = ["mnist_methods.yaml", "fashion_mnist_methods.yaml", "ensemble_mnist.yaml"]


def dataset_folder(dataset: str) -> str | None:
    """Where the dataset's IDX files are on this machine, or None."""
    if dataset == "mnist":
        folder = mnist_dir()
        return str(folder) if folder else None
    for folder in candidate_folders(DATASETS[dataset], None):
        if os.path.isfile(os.path.join(folder, "train-images-idx3-ubyte.gz")):
            return folder
    return None


def methods_of(stage: dict) -> set[str]:
    loss = stage.get("loss", {})
    return {term["method"] for term in loss.get("terms", [])} | (
        {loss["method"]} if "method" in loss else set())


def shipped() -> list[tuple[str, dict]]:
    return [(path.name, yaml.safe_load(path.read_text()))
            for path in sorted(CONFIGS.glob("*.yaml"))]


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_every_method_has_a_shipped_config_on_each_dataset(dataset):
    covered = set()
    for _, config in shipped():
        if config["data"]["dataset"] == dataset:
            for stage in config["stages"]:
                covered |= methods_of(stage)
    assert covered >= set(METHODS), sorted(set(METHODS) - covered)


@pytest.mark.parametrize("name", METHOD_CONFIGS)
def test_shipped_config_runs_one_epoch_on_a_slice(name, tmp_path):
    config = yaml.safe_load((CONFIGS / name).read_text())
    folder = dataset_folder(config["data"]["dataset"])
    if folder is None:
        pytest.skip(f"{config['data']['dataset']} not found on this machine")
    config["data"].update(path=folder, limit={"train": 1000, "test": 300}, validation_split=200)
    for stage in config["stages"]:
        stage["epochs"] = 1
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))

    result = CliRunner().invoke(cli, ["run", str(path), "--logs-dir", str(tmp_path / "logs")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run_dir = result.output.strip().splitlines()[-1]
    summary = json.loads(pathlib.Path(run_dir, "summary.json").read_text())
    assert summary["status"] == "completed"
    for stage in config["stages"]:
        entry = summary["stages"][stage["name"]]
        assert entry["status"] == "completed", stage["name"]
        assert entry["test_accuracy"] > 0.3, (stage["name"], entry)  # chance is 0.1
        row = read_metrics(os.path.join(run_dir, stage["name"], "metrics.csv"))[0]
        for method in methods_of(stage):
            losses = [key for key in row if key.startswith(method) and key.endswith("_loss")
                      and not key.startswith("val_")]
            assert losses and all(math.isfinite(row[key]) for key in losses), (stage["name"], row)
