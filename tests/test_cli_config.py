"""The config commands (validate, show, schema, init) and the error for each kind of mistake."""

from __future__ import annotations

import json
import os
import pathlib

import pytest
import yaml
from click.testing import CliRunner

from distill.cli import cli
from distill.config.scaffold import template_names
from distill.config.schema import load_schema
from tests.conftest import CONFIGS


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


# Each mistake: how to make it in the tiny config, the key path and line the message names.
MISTAKES = {
    "unknown key": (lambda t: t.replace("  batch_size: 16", "  batch_sise: 16"),
                    "data.batch_sise", 8, "Did you mean 'batch_size'?"),
    "unknown model": (lambda t: t.replace("model: student", "model: studnet"),
                      "stages[1].model", 27, "Did you mean 'student'?"),
    "unknown layer": (lambda t: t.replace("Dense: {units: 8,", "Dence: {units: 8,"),
                      "models.student.layers[0]", 18, "Did you mean 'Dense'?"),
    "unknown optimizer": (lambda t: t.replace("    epochs: 2\n  - name: student",
                                              "    optimizer: {name: adamw2}\n    epochs: 2\n"
                                              "  - name: student"),
                          "stages[0].optimizer.name", 24, "Did you mean 'adamw'?"),
    "unknown dataset": (lambda t: t.replace("dataset: mnist", "dataset: fashion"),
                        "data.dataset", 5, "Did you mean 'fashion_mnist'?"),
    "unknown method": (lambda t: t.replace("method: kd", "method: kdd"),
                       "stages[1].loss.method", 29, "Did you mean 'kd'?"),
    "wrong type": (lambda t: t.replace("seed: 3", "seed: three"),
                   "experiment.seed", 3, "must be an integer, got the string 'three'"),
    "negative temperature": (lambda t: t.replace("temperature: 4", "temperature: -1"),
                             "stages[1].loss.temperature", 29, "must be > 0, got -1"),
    "alpha outside [0, 1]": (lambda t: t.replace("alpha: 0.1", "alpha: 1.2"),
                             "stages[1].loss.alpha", 29, "must be <= 1, got 1.2"),
    "zero epochs": (lambda t: t.replace("    epochs: 2\n  - name: student",
                                        "    epochs: 0\n  - name: student"),
                    "stages[0].epochs", 24, "must be >= 1, got 0"),
    "teacher stage missing": (lambda t: t.replace("teacher: teacher", "teacher: techer"),
                              "stages[1].teacher", 28, "Did you mean 'teacher'?"),
    "teacher never trained": (lambda t: t.replace("  - name: teacher\n    type: train\n"
                                                  "    model: teacher\n    epochs: 2\n", ""),
                              "stages[0].teacher", 24, "never trained or loaded"),
    "student output size": (lambda t: t.replace("      - Dense: {units: 10}\nstages",
                                                "      - Dense: {units: 12}\nstages"),
                            "models.student.layers[1]", 19, "10 classes"),
    "softmax on logits": (lambda t: t.replace("      - Dense: {units: 10}\nstages",
                                              "      - Dense: {units: 10, activation: softmax}\n"
                                              "stages"),
                          "models.student.layers[1]", 19, "must output logits"),
    "duplicate key": (lambda t: t.replace("  seed: 3", "  seed: 3\n  seed: 4"),
                      "experiment.seed", 4, "duplicate key 'seed'"),
    "tab": (lambda t: t.replace("  seed: 3", "\tseed: 3"), None, 3, "spaces"),
    "syntax error": (lambda t: t.replace("  seed: 3", "  seed: [3"), None, None,
                     "YAML syntax error"),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_mistake_exits_2_naming_key_and_line(mistake, tiny_config_text, write_config):
    edit, key, line, text = MISTAKES[mistake]
    config = write_config(edit(tiny_config_text))
    for command in ("validate", "run"):
        result = invoke(command, config)
        assert result.exit_code == 2, result.output
        assert text in result.output
        if key:
            assert f": {key}: " in result.output
        if line:
            assert f"{config}:{line}:" in result.output
        assert "Traceback" not in result.output


def test_empty_and_list_files(write_config):
    for text, expected in (("", "the file is empty"), ("- a\n", "got a list")):
        result = invoke("validate", write_config(text))
        assert result.exit_code == 2 and expected in result.output


def test_yaml_one_one_words(tiny_config_text, write_config):
    # Booleans where the schema wants a boolean; names where it wants a name.
    text = (tiny_config_text.replace("  batch_size: 16", "  batch_size: 16\n  scale: no")
            .replace("  student:\n", "  off:\n").replace("model: student", "model: off"))
    result = invoke("show", write_config(text))
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output.split("\n# models")[0])
    assert shown["data"]["scale"] is False
    assert shown["stages"][1]["model"] == "off" and "off" in shown["models"]


def test_validate_reports_every_problem_in_every_file(tiny_config_text, write_config):
    good = write_config(tiny_config_text, "good.yaml")
    bad = write_config(tiny_config_text.replace("alpha: 0.1", "alpha: 2")
                       .replace("seed: 3", "seed: -3"), "bad.yaml")
    result = invoke("validate", good, bad)
    assert result.exit_code == 2
    assert f"{good}: valid" in result.output
    assert f"{bad}: 2 problems" in result.output
    assert "stages[1].loss.alpha" in result.output and "experiment.seed" in result.output


def test_every_shipped_config_validates():
    files = sorted(CONFIGS.glob("*.yaml"))
    result = invoke("validate", *files)
    assert result.exit_code == 0, result.output
    assert result.output.count(": valid:") == len(files)


def test_validate_with_overrides(tiny_config_text, write_config):
    config = write_config(tiny_config_text)
    assert invoke("validate", config, "--set", "stages.1.loss.temperature=8").exit_code == 0
    result = invoke("validate", config, "--set", "stages.1.loss.temperature=0")
    assert result.exit_code == 2
    assert "--set stages.1.loss.temperature=0: stages[1].loss.temperature: must be > 0" in result.output


def test_show_prints_resolved_config_models_and_ratio(tiny_config_text, write_config):
    result = invoke("show", write_config(tiny_config_text), "--set", "stages.student.epochs=9")
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load(result.output.split("\n# models")[0])
    assert resolved["stages"][1]["epochs"] == 9
    assert resolved["runtime"]["cache_teacher_logits"] == "auto"  # defaults shown
    assert "teacher: 25,450 parameters" in result.output  # 784*32+32 + 32*10+10
    assert "student: 6,370 parameters" in result.output
    assert "teacher teacher (25,450) / student student (6,370) = 4.00x" in result.output


def test_schema_command_prints_the_schema():
    result = invoke("schema")
    assert result.exit_code == 0 and json.loads(result.output) == load_schema()


def test_init_refuses_to_overwrite_and_knows_its_templates(tmp_path):
    path = tmp_path / "exp.yaml"
    assert invoke("init", path).exit_code == 0
    result = invoke("init", path)
    assert result.exit_code == 2 and "--force" in result.output
    assert invoke("init", path, "--force", "--template", "cnn-fashion-mnist").exit_code == 0
    result = invoke("init", tmp_path / "x.yaml", "--template", "cnn-fashion")
    assert result.exit_code == 2 and "Did you mean 'cnn-fashion-mnist'?" in result.output


@pytest.mark.parametrize("template", template_names())
def test_init_output_validates_and_runs_an_epoch(template, tmp_path, real_mnist):
    path = tmp_path / f"{template}.yaml"
    assert invoke("init", path, "--template", template).exit_code == 0
    text = path.read_text()
    assert f"name: {template}\n" in text  # named after the file
    assert invoke("validate", path).exit_code == 0
    dataset = yaml.safe_load(text)["data"]["dataset"]
    if dataset == "fashion_mnist" and not os.path.isdir("/usr/share/datasets/fashion-mnist"):
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    overrides = ["data.limit={train: 600, test: 200}", "data.validation_split=100"]
    if dataset == "mnist":
        overrides.append(f"data.path={real_mnist}")
    stages = len(yaml.safe_load(text)["stages"])
    overrides += [f"stages.{i}.epochs=1" for i in range(stages)]
    args = ["run", path, "--logs-dir", tmp_path / "logs"]
    for override in overrides:
        args += ["--set", override]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    run_dir = result.output.strip().splitlines()[-1]
    summary = json.loads(pathlib.Path(run_dir, "summary.json").read_text())
    assert summary["status"] == "completed" and summary["overrides"] == overrides
    saved = pathlib.Path(run_dir, "config.yaml").read_text()
    assert "--set data.validation_split=100" in saved  # the header records the overrides
    assert yaml.safe_load(saved)["data"]["validation_split"] == 100
