"""Checks the schema cannot express: references, order, and what Keras accepts.

They run on a config the schema has already accepted, so every key has the
type the schema promises.
"""

from __future__ import annotations

import json
import os
from typing import Iterator

from distill.config.loader import Source
from distill.errors import DeclarationError, Problem
from distill.naming import suggest


def _located(source: Source, prefix: tuple, error: DeclarationError) -> Problem:
    return source.problem(prefix + error.path, error.message, error.hint,
                          prefer_key=bool(error.path) and isinstance(error.path[-1], str))


def check_references(config: dict, source: Source) -> list[Problem]:
    """Stage names, model names, teacher references and data sizes; no Keras needed."""
    problems: list[Problem] = []
    split = config["data"]["validation_split"]
    if split >= 1 and not float(split).is_integer():
        problems.append(source.problem(("data", "validation_split"),
                                       f"must be a fraction below 1 or a whole count, got {split}."))
    models = config["models"]
    seen: dict[str, int] = {}
    for index, stage in enumerate(config["stages"]):
        where = ("stages", index)
        name = stage["name"]
        if name in seen:
            problems.append(source.problem(where + ("name",), f"stage name '{name}' is already used "
                                           f"by stages[{seen[name]}].",
                                           "Stage names name folders in the run: make them unique."))
        if stage["model"] not in models:
            problems.append(source.problem(
                where + ("model",), f"no model named '{stage['model']}' in models.",
                suggest(stage["model"], models) or f"Models: {', '.join(models)}."))
        if stage["type"] == "train":
            for key in ("teacher", "loss"):
                if key in stage:
                    problems.append(source.problem(
                        where + (key,), f"a train stage takes no {key}.",
                        "Set type: distill to learn from a teacher.", prefer_key=True))
        else:
            for key in ("teacher", "loss"):
                if key not in stage:
                    problems.append(source.problem(
                        where, f"a distill stage needs a '{key}' key.",
                        "E.g. teacher: teacher and loss: {method: kd, temperature: 4, alpha: 0.1}."
                        if key == "loss" else "Name an earlier stage, or a model with a path.",
                        prefer_key=True))
            if "teacher" in stage:
                problems.extend(_check_teacher(config, source, index, seen))
        seen.setdefault(name, index)
    for name, model in models.items():
        has = [key for key in ("layers", "path", "run") if key in model]
        if len(has) != 1:
            problems.append(source.problem(
                ("models", name), "a model needs exactly one of 'layers' (build it), 'path' "
                                  "(load a .keras file) and 'run' (load a model an earlier run "
                                  f"trained); it has {' and '.join(has) if has else 'none'}.",
                prefer_key=True))
        if "safe_mode" in model and not {"path", "run"} & set(model):
            problems.append(source.problem(("models", name, "safe_mode"),
                                           "safe_mode applies only to a model loaded from a path.",
                                           prefer_key=True))
        if ("run" in model) != ("stage" in model):
            problems.append(source.problem(
                ("models", name, "stage" if "stage" in model else "run"),
                "'run' and 'stage' go together: the run folder and the stage of it whose "
                "trained model to load.", prefer_key=True))
        elif "run" in model:
            problems.extend(_check_run_model(source, name, model))
    return problems


def _check_run_model(source: Source, name: str, model: dict) -> list[Problem]:
    """`models.<name>: {run: folder, stage: name}` names a stage that completed there."""
    run, stage = model["run"], model["stage"]
    where = ("models", name)
    summary_file = os.path.join(run, "summary.json")
    try:
        with open(summary_file, encoding="utf-8") as handle:
            summary = json.load(handle)
        stages = summary["stages"]
    except FileNotFoundError:
        what = "no such folder" if not os.path.isdir(run) else "not a run folder (no summary.json)"
        return [source.problem(where + ("run",), f"{run}: {what}.",
                               "Give the folder `distill run` printed last, e.g. "
                               "logs/<experiment>/<timestamp>.")]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return [source.problem(where + ("run",), f"cannot read {summary_file}: {error}.")]
    if stage not in stages:
        return [source.problem(where + ("stage",), f"the run {run} has no stage '{stage}'.",
                               suggest(stage, stages) or f"Its stages: {', '.join(stages)}.")]
    status = stages[stage].get("status")
    model_file = os.path.join(run, stage, "model.keras")
    if status != "completed" or not os.path.isfile(model_file):
        return [source.problem(where + ("stage",),
                               f"stage '{stage}' of the run {run} did not complete (status "
                               f"{status}), so it saved no model.",
                               f"Resume that run first: `distill run --resume {run}`.")]
    return []


def _check_teacher(config: dict, source: Source, index: int, earlier: dict) -> list[Problem]:
    stage = config["stages"][index]
    teacher = stage["teacher"]
    where = ("stages", index, "teacher")
    if teacher in earlier:
        return []
    later = [i for i, s in enumerate(config["stages"]) if s["name"] == teacher and i >= index]
    if later:
        return [source.problem(where, f"stage '{teacher}' runs at stages[{later[0]}], not before "
                                      "this stage, so it has not trained a teacher yet.",
                               "Move it before this stage.")]
    model = config["models"].get(teacher)
    if model is not None and ("path" in model or "run" in model):
        return []
    if model is not None:
        return [source.problem(where, f"teacher '{teacher}' is never trained or loaded: no earlier "
                                      "stage has that name, and models."
                                      f"{teacher} has no path.",
                               f"Add a train stage named '{teacher}' before this one, or give "
                               f"models.{teacher}.path a .keras file.")]
    names = list(earlier) + [n for n, m in config["models"].items() if "path" in m or "run" in m]
    return [source.problem(where, f"no earlier stage or loadable model named '{teacher}'.",
                           suggest(teacher, names) or
                           (f"Earlier stages: {', '.join(earlier)}." if earlier else
                            "A teacher is an earlier stage or a model with a path."))]


def check_buildable(config: dict, source: Source) -> list[Problem]:
    """Build every model, optimizer and loss once, as the run will."""
    from distill.data import DATASETS, input_shape  # noqa: PLC0415 - keep Keras out of plain parsing
    from distill.losses import build_loss  # noqa: PLC0415
    from distill.models import build_model  # noqa: PLC0415
    from distill.stages import build_optimizer  # noqa: PLC0415

    problems: list[Problem] = []
    info = DATASETS[config["data"]["dataset"]]
    shape = input_shape(info.image_shape, config["data"]["flatten"])
    for name, declaration in config["models"].items():
        if len({"layers", "path", "run"} & set(declaration)) != 1 or (
                ("run" in declaration) != ("stage" in declaration)):
            continue  # reported by check_references
        try:
            build_model(name, declaration, shape, info.num_classes)
        except DeclarationError as error:
            problems.append(_located(source, ("models", name), error))
    for index, stage in enumerate(config["stages"]):
        for key, build in (("optimizer", build_optimizer), ("loss", build_loss)):
            if key in stage:
                try:
                    build(stage[key])
                except DeclarationError as error:
                    problems.append(_located(source, ("stages", index, key), error))
    return problems


def iter_problems(config: dict, source: Source, build: bool = True) -> Iterator[Problem]:
    """Every problem of a schema-valid, defaults-filled config, in file order."""
    problems = check_references(config, source)
    if build:
        problems += check_buildable(config, source)
    yield from sorted(problems, key=lambda p: (p.line or 0, p.column or 0))
