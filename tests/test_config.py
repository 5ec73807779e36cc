"""Reading experiment files: defaults, and an actionable error for each mistake."""

from __future__ import annotations

import json

import pytest

from distill.config import load_config, parse_config
from distill.config.schema import load_schema
from distill.data import DATASETS
from distill.errors import ConfigError
from tests.conftest import CONFIGS, TINY_CONFIG


def problems(text: str, build: bool = True) -> list:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "exp.yaml", build=build)
    return caught.value.problems


def only(text: str, build: bool = True):
    found = problems(text, build)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def test_shipped_configs_validate():
    for path in sorted(CONFIGS.glob("*.yaml")):
        config = load_config(path)
        assert config.data["stages"], path


def test_defaults_are_filled_in(tiny_config_text):
    data = parse_config(tiny_config_text).data
    assert data["version"] == 1
    assert data["experiment"]["logs_dir"] == "logs"
    assert data["data"]["scale"] is True and data["data"]["flatten"] is True
    assert data["data"]["limit"] == {"train": None, "test": None}
    assert data["runtime"]["jit_compile"] is True
    assert data["runtime"]["cache_teacher_logits"] == "auto"
    teacher, student = data["stages"]
    assert teacher["optimizer"] == {"name": "adam", "learning_rate": 0.001}
    assert teacher["batch_size"] == 16  # from data.batch_size
    assert student["loss"] == {"method": "kd", "temperature": 4, "alpha": 0.1}


def test_resolved_config_is_stable_when_resolved_again(tiny_config_text):
    import yaml
    once = parse_config(tiny_config_text).data
    twice = parse_config(yaml.safe_dump(once)).data
    assert twice == once


def test_schema_lists_exactly_the_known_datasets():
    assert sorted(load_schema()["properties"]["data"]["properties"]["dataset"]["enum"]) == sorted(DATASETS)


def test_schema_is_valid_draft_2020_12():
    import jsonschema
    jsonschema.Draft202012Validator.check_schema(load_schema())
    json.dumps(load_schema())


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: file not found"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_syntax_error_has_line_and_column(tiny_config_text):
    text = tiny_config_text.replace("  seed: 3", "  seed: [3")
    problem = only(text)
    assert problem.file == "exp.yaml" and problem.line is not None and problem.column is not None
    assert "YAML syntax error" in problem.message


def test_tab_indentation_is_explained(tiny_config_text):
    problem = only(tiny_config_text.replace("  seed: 3", "\tseed: 3"))
    assert "tab" in str(problem).lower()
    assert problem.line == 3


def test_unknown_key_suggests_the_known_one(tiny_config_text):
    problem = only(tiny_config_text.replace("  batch_size: 16", "  batch_sise: 16"))
    assert problem.key == "data.batch_sise"
    assert "unknown key 'batch_sise'" in problem.message
    assert "Did you mean 'batch_size'?" in problem.hint
    assert problem.line == 8


def test_wrong_type_says_expected_and_found(tiny_config_text):
    problem = only(tiny_config_text.replace("epochs: 2\n  - name: student", "epochs: two\n  - name: student"))
    assert problem.key == "stages[0].epochs"
    assert "must be an integer" in problem.message and "'two'" in problem.message


def test_negative_temperature(tiny_config_text):
    problem = only(tiny_config_text.replace("temperature: 4", "temperature: -1"))
    assert problem.key == "stages[1].loss.temperature"
    assert "must be > 0, got -1" in problem.message
    assert str(problem).startswith("exp.yaml:29:37: ")


def test_alpha_out_of_range(tiny_config_text):
    problem = only(tiny_config_text.replace("alpha: 0.1", "alpha: 1.5"))
    assert problem.key == "stages[1].loss.alpha" and "<= 1" in problem.message


def test_unknown_dataset(tiny_config_text):
    problem = only(tiny_config_text.replace("dataset: mnist", "dataset: mnsit"))
    assert problem.key == "data.dataset"
    assert "Did you mean 'mnist'?" in problem.hint


def test_unknown_layer_name(tiny_config_text):
    problem = only(tiny_config_text.replace("- Dense: {units: 8, activation: relu}",
                                            "- Dence: {units: 8, activation: relu}"))
    assert problem.key == "models.student.layers[0]"
    assert "unknown layer 'Dence'" in problem.message and "Did you mean 'Dense'?" in problem.hint


def test_unknown_layer_argument(tiny_config_text):
    problem = only(tiny_config_text.replace("{units: 8, activation: relu}", "{unit: 8, activation: relu}"))
    assert problem.key == "models.student.layers[0].Dense.unit"
    assert "Did you mean 'units'?" in problem.hint


def test_bad_layer_value_reports_keras_reason(tiny_config_text):
    problem = only(tiny_config_text.replace("{units: 8, activation: relu}", "{units: 8, activation: relx}"))
    assert problem.key.startswith("models.student.layers[0]")
    assert "relx" in problem.message


def test_softmax_on_the_last_layer_is_refused(tiny_config_text):
    problem = only(tiny_config_text.replace("      - Dense: {units: 10}\nstages",
                                            "      - Dense: {units: 10, activation: softmax}\nstages"))
    assert problem.key == "models.student.layers[1]"
    assert "logits" in problem.message and "softmax" in problem.message


def test_softmax_layer_after_logits_is_refused(tiny_config_text):
    problem = only(tiny_config_text.replace("      - Dense: {units: 10}\nstages",
                                            "      - Dense: {units: 10}\n      - Softmax\nstages"))
    assert problem.key == "models.student.layers[2]"


def test_wrong_number_of_outputs(tiny_config_text):
    problem = only(tiny_config_text.replace("      - Dense: {units: 10}\nstages",
                                            "      - Dense: {units: 12}\nstages"))
    assert "10 classes" in problem.message


def test_duplicate_keys_are_refused(tiny_config_text):
    problem = only(tiny_config_text.replace("  seed: 3", "  seed: 3\n  seed: 4"), build=False)
    assert "duplicate key 'seed'" in problem.message and problem.line == 4


def test_unknown_model_reference(tiny_config_text):
    problem = only(tiny_config_text.replace("model: student", "model: studnet"), build=False)
    assert problem.key == "stages[1].model" and "Did you mean 'student'?" in problem.hint


def test_teacher_never_trained(tiny_config_text):
    text = tiny_config_text.replace("teacher: teacher", "teacher: student")
    problem = only(text, build=False)
    assert problem.key == "stages[1].teacher"
    assert "runs at stages[1]" in problem.message or "never trained" in problem.message


def test_teacher_declared_but_never_trained(tiny_config_text):
    text = tiny_config_text.replace("  - name: teacher\n    type: train\n    model: teacher\n    epochs: 2\n", "")
    problem = only(text, build=False)
    assert "never trained or loaded" in problem.message


def test_distill_stage_needs_a_loss(tiny_config_text):
    text = tiny_config_text.replace("    loss: {method: kd, temperature: 4, alpha: 0.1}\n", "")
    assert "needs a 'loss'" in only(text, build=False).message


def test_every_problem_is_reported_at_once(tiny_config_text):
    text = (tiny_config_text.replace("alpha: 0.1", "alpha: 2").replace("seed: 3", "seed: -3")
            .replace("batch_size: 16", "batch_sise: 16"))
    assert len(problems(text)) == 3


def test_numbers_written_like_1e_3_are_numbers(tiny_config_text):
    text = tiny_config_text.replace("    epochs: 2\n  - name: student",
                                    "    epochs: 2\n    optimizer: {name: adam, learning_rate: 1e-3}\n"
                                    "  - name: student")
    data = parse_config(text).data
    assert data["stages"][0]["optimizer"]["learning_rate"] == 0.001


def test_yaml_one_one_words_are_names_where_a_name_is_expected(tiny_config_text):
    text = tiny_config_text.replace("  student:\n", "  'no':\n").replace("model: student", "model: no")
    data = parse_config(text).data
    assert data["stages"][1]["model"] == "no"


def test_empty_file_and_list_file():
    assert "empty" in only("").message
    assert "got a list" in only("- a\n- b\n").message


def test_yaml_tags_that_would_run_code_are_refused():
    problem = only("experiment: !!python/object/apply:os.system ['echo hi']\n")
    assert "tag" in problem.message


def test_unknown_optimizer(tiny_config_text):
    text = tiny_config_text.replace("    epochs: 2\n  - name: student",
                                    "    epochs: 2\n    optimizer: {name: adamm}\n  - name: student")
    problem = only(text)
    assert problem.key == "stages[0].optimizer.name" and "Did you mean 'adam'?" in problem.hint


def test_lambda_layers_cannot_be_declared(tiny_config_text):
    problem = only(tiny_config_text.replace("- Dense: {units: 8, activation: relu}",
                                            "- Lambda: {function: print}"))
    assert "arbitrary Python code" in problem.message


def test_missing_model_file(tiny_data, tmp_path):
    missing = tmp_path / "missing.keras"
    text = TINY_CONFIG.format(data=tiny_data).split("models:")[0] + (
        "models:\n"
        f"  teacher: {{path: {missing}}}\n"
        "  student:\n"
        "    layers: [Dense: {units: 10}]\n"
        "stages:\n"
        "  - {name: student, type: distill, model: student, teacher: teacher, loss: {method: kd}}\n")
    problem = only(text)
    assert problem.key == "models.teacher.path" and "not found" in problem.message


def test_schema_and_reference_problems_are_reported_together(tiny_config_text):
    text = (tiny_config_text.replace("temperature: 4", "temperature: -4")
            .replace("model: student", "model: studnet")
            .replace("Dense: {units: 32,", "Dence: {units: 32,"))
    found = {p.key: p for p in problems(text)}
    assert set(found) == {"stages[1].loss.temperature", "stages[1].model",
                          "models.teacher.layers[0]"}
    assert [p.line for p in problems(text)] == sorted(p.line for p in problems(text))


def test_whole_numbers_are_fine_where_keras_wants_floats(tiny_config_text):
    text = tiny_config_text.replace("    epochs: 2\n  - name: student",
                                    "    optimizer: {name: sgd, learning_rate: 1, momentum: 1}\n"
                                    "    epochs: 2\n  - name: student")
    from distill.stages import build_optimizer
    optimizer = build_optimizer(parse_config(text).data["stages"][0]["optimizer"])
    assert float(optimizer.learning_rate) == 1.0 and optimizer.momentum == 1.0


def test_a_validation_split_that_leaves_nothing_to_train_on(tiny_config_text):
    problem = only(tiny_config_text.replace("validation_split: 0.2",
                                            "validation_split: 500\n  limit: {train: 400}"))
    assert problem.key == "data.validation_split"
    assert "holds out 500 of the 400 training samples that data.limit.train keeps" in problem.message
