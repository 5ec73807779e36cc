"""Checks the schema cannot express: references, order, and what Keras accepts.

They run on a config the schema has already accepted, so every key has the
type the schema promises.
"""

from __future__ import annotations

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
            for key in ("teacher", "teachers", "teacher_weights", "loss"):
                if key in stage:
                    problems.append(source.problem(
                        where + (key,), f"a train stage takes no {key}.",
                        "Set type: distill to learn from a teacher.", prefer_key=True))
        else:
            for key in ("teacher", "loss"):
                if key not in stage and not (key == "teacher" and "teachers" in stage):
                    problems.append(source.problem(
                        where, f"a distill stage needs a '{key}' key.",
                        "E.g. teacher: teacher and loss: {method: kd, temperature: 4, alpha: 0.1}."
                        if key == "loss" else "Name an earlier stage, or a model with a path "
                                              "(or several in 'teachers').",
                        prefer_key=True))
            if "teacher" in stage and "teachers" in stage:
                problems.append(source.problem(
                    where + ("teachers",), "give either 'teacher' (one) or 'teachers' (several), "
                                           "not both.", prefer_key=True))
            elif "teacher" in stage:
                problems.extend(_check_teacher(config, source, index, seen, stage["teacher"],
                                               where + ("teacher",)))
            elif "teachers" in stage:
                problems.extend(_check_teachers(config, source, index, seen))
            if "teacher_weights" in stage and "teachers" not in stage:
                problems.append(source.problem(
                    where + ("teacher_weights",), "teacher_weights weigh several 'teachers'; "
                                                  "this stage has one teacher.", prefer_key=True))
        seen.setdefault(name, index)
    for name, model in models.items():
        has_layers, has_path = "layers" in model, "path" in model
        if has_layers == has_path:
            problems.append(source.problem(
                ("models", name), "a model needs exactly one of 'layers' (build it) and 'path' "
                                  f"(load a .keras file); it has {'both' if has_layers else 'neither'}.",
                prefer_key=True))
        if "safe_mode" in model and not has_path:
            problems.append(source.problem(("models", name, "safe_mode"),
                                           "safe_mode applies only to a model loaded from a path.",
                                           prefer_key=True))
    return problems


def _check_teachers(config: dict, source: Source, index: int, earlier: dict) -> list[Problem]:
    """Each of a stage's `teachers`, and its `teacher_weights`."""
    stage = config["stages"][index]
    teachers = stage["teachers"]
    where = ("stages", index)
    problems: list[Problem] = []
    for position, teacher in enumerate(teachers):
        if teacher in teachers[:position]:
            problems.append(source.problem(
                where + ("teachers", position), f"teacher '{teacher}' is listed twice.",
                "To give a teacher more weight, use teacher_weights."))
            continue
        problems.extend(_check_teacher(config, source, index, earlier, teacher,
                                       where + ("teachers", position)))
    weights = stage.get("teacher_weights")
    if weights is not None:
        if len(weights) != len(teachers):
            problems.append(source.problem(
                where + ("teacher_weights",), f"has {len(weights)} weight(s) for "
                                              f"{len(teachers)} teacher(s); give one per teacher, "
                                              "in the order of 'teachers'."))
        elif not any(weight > 0 for weight in weights):
            problems.append(source.problem(
                where + ("teacher_weights",), "the weights are all zero, so no teacher would "
                                              "count.", "Give at least one a positive weight."))
    return problems


def _check_teacher(config: dict, source: Source, index: int, earlier: dict, teacher: str,
                   where: tuple) -> list[Problem]:
    if teacher in earlier:
        return []
    later = [i for i, s in enumerate(config["stages"]) if s["name"] == teacher and i >= index]
    if later:
        return [source.problem(where, f"stage '{teacher}' runs at stages[{later[0]}], not before "
                                      "this stage, so it has not trained a teacher yet.",
                               "Move it before this stage.")]
    model = config["models"].get(teacher)
    if model is not None and "path" in model:
        return []
    if model is not None:
        return [source.problem(where, f"teacher '{teacher}' is never trained or loaded: no earlier "
                                      "stage has that name, and models."
                                      f"{teacher} has no path.",
                               f"Add a train stage named '{teacher}' before this one, or give "
                               f"models.{teacher}.path a .keras file.")]
    names = list(earlier) + [n for n, m in config["models"].items() if "path" in m]
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
        if ("layers" in declaration) == ("path" in declaration):
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
