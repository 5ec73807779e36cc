"""`base:` inheritance and `--set` overrides."""

from __future__ import annotations

import pytest

from distill.config import load_config, parse_config
from distill.errors import ConfigError


def only(call):
    with pytest.raises(ConfigError) as caught:
        call()
    problems = caught.value.problems
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


# --- overrides -------------------------------------------------------------------------


def test_override_is_typed_by_the_schema(tiny_config_text):
    config = parse_config(tiny_config_text, overrides=[
        "stages.1.loss.temperature=2.5", "experiment.seed=7", "data.scale=false",
        "stages.teacher.optimizer.learning_rate=1e-2", "runtime.jit_compile=no"])
    data = config.data
    assert data["stages"][1]["loss"]["temperature"] == 2.5
    assert data["experiment"]["seed"] == 7
    assert data["data"]["scale"] is False
    assert data["stages"][0]["optimizer"]["learning_rate"] == 0.01
    assert data["runtime"]["jit_compile"] is False
    assert config.overrides[0] == "stages.1.loss.temperature=2.5"


def test_override_by_stage_name_and_whole_mapping(tiny_config_text):
    data = parse_config(tiny_config_text, overrides=[
        "stages.student.loss={method: kd, temperature: 8}"]).data
    assert data["stages"][1]["loss"] == {"method": "kd", "temperature": 8, "alpha": 0.1}


def test_override_with_wrong_value_is_located_at_the_argument(tiny_config_text):
    problem = only(lambda: parse_config(tiny_config_text,
                                        overrides=["stages.1.loss.temperature=-1"]))
    assert problem.file == "--set stages.1.loss.temperature=-1"
    assert problem.key == "stages[1].loss.temperature" and "must be > 0, got -1" in problem.message
    assert str(problem).startswith("--set stages.1.loss.temperature=-1: stages[1].loss.temperature:")


def test_override_of_unknown_key_suggests_the_known_one(tiny_config_text):
    problem = only(lambda: parse_config(tiny_config_text, overrides=["stages.1.loss.temprature=3"]))
    assert problem.file.startswith("--set") and "Did you mean 'temperature'?" in problem.hint


@pytest.mark.parametrize("override, expected", [
    ("stages.1.loss.temperature", "KEY=VALUE"),
    ("=3", "KEY=VALUE"),
    ("stages.9.epochs=1", "has 2 item(s), numbered 0 to 1; there is no item 9"),
    ("stages.pupil.epochs=1", "no item named 'pupil'"),
    ("experiment.seed.x=1", "cannot set a key inside experiment.seed"),
    ("experiment.seed=[1", "not valid YAML"),
    ("experiment.seed=abc", "must be an integer"),
])
def test_bad_overrides(tiny_config_text, override, expected):
    problem = only(lambda: parse_config(tiny_config_text, overrides=[override]))
    assert expected in str(problem)


def test_empty_override_value_means_null(tiny_config_text):
    data = parse_config(tiny_config_text, overrides=["data.limit.train="]).data
    assert data["data"]["limit"]["train"] is None


# --- base ------------------------------------------------------------------------------


def test_base_merges_mappings_and_replaces_lists(tiny_config_text, tmp_path):
    (tmp_path / "base.yaml").write_text(tiny_config_text)
    (tmp_path / "sub").mkdir()
    child = tmp_path / "sub" / "child.yaml"
    child.write_text("base: ../base.yaml\n"
                     "experiment: {name: child}\n"
                     "stages:\n"
                     "  - {name: only, type: train, model: student, epochs: 1}\n")
    data = load_config(child).data
    assert data["experiment"] == {"name": "child", "seed": 3, "logs_dir": "logs"}  # deep merge
    assert [stage["name"] for stage in data["stages"]] == ["only"]  # lists replace
    assert "base" not in data
    assert data["data"]["batch_size"] == 16


def test_errors_point_into_the_file_that_holds_the_value(tiny_config_text, tmp_path):
    (tmp_path / "base.yaml").write_text(tiny_config_text.replace("temperature: 4", "temperature: -4"))
    child = tmp_path / "child.yaml"
    child.write_text("base: base.yaml\nexperiment:\n  name: child\n  sed: 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(child)
    found = {problem.key: problem for problem in caught.value.problems}
    assert found["experiment.sed"].file == str(child) and found["experiment.sed"].line == 4
    assert found["stages[1].loss.temperature"].file.endswith("base.yaml")
    assert found["stages[1].loss.temperature"].line == 29


def test_base_cycle_and_missing_base(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    problem = only(lambda: load_config(tmp_path / "a.yaml"))
    assert "cycle" in problem.message and "a.yaml -> " in problem.message
    (tmp_path / "c.yaml").write_text("experiment: {name: c}\nbase: nowhere.yaml\n")
    problem = only(lambda: load_config(tmp_path / "c.yaml"))
    assert "base file not found" in problem.message and problem.line == 2


def test_base_of_shipped_config(tmp_path):
    from tests.conftest import CONFIGS
    child = tmp_path / "t3.yaml"
    child.write_text(f"base: {CONFIGS / 'mnist.yaml'}\n"
                     "experiment: {name: mnist_t3}\n")
    data = load_config(child, overrides=["stages.student.loss.temperature=3"]).data
    assert data["stages"][1]["loss"]["temperature"] == 3
    assert data["experiment"]["name"] == "mnist_t3" and data["experiment"]["seed"] == 42


def test_base_in_text_is_refused(tiny_config_text):
    problem = only(lambda: parse_config("base: x.yaml\n" + tiny_config_text))
    assert "read only from files" in problem.message


def test_star_sets_every_item_of_a_list(tiny_config_text):
    data = parse_config(tiny_config_text, overrides=["stages.*.epochs=1"]).data
    assert [stage["epochs"] for stage in data["stages"]] == [1, 1]
    problem = only(lambda: parse_config(tiny_config_text, overrides=["data.*.x=1"]))
    assert "'*' stands for every item of a list" in problem.message


def test_null_in_a_file_removes_the_base_key(tiny_config_text, tmp_path):
    import keras
    model_file = tmp_path / "teacher.keras"
    keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)]).save(model_file)
    (tmp_path / "base.yaml").write_text(tiny_config_text)
    child = tmp_path / "child.yaml"
    child.write_text("base: base.yaml\n"
                     f"models:\n  teacher: {{layers: null, path: {model_file}}}\n"
                     "stages:\n"
                     "  - {name: student, type: distill, model: student, teacher: teacher,\n"
                     "     loss: {method: kd}}\n")
    data = load_config(child).data
    assert "layers" not in data["models"]["teacher"]
    assert data["models"]["teacher"]["path"] == str(model_file)
