"""Checks the schema cannot express: references, order, and what Keras accepts.

They run on a config after the schema check. When the schema found problems,
they still run on every part the schema accepted (`broken` lists the paths it
refused), so that one pass reports every problem in a file.
"""

from __future__ import annotations

import json
import os
from typing import Iterator, Sequence

from distill.config.loader import Path, Source
from distill.errors import DeclarationError, Problem
from distill.naming import suggest


class _Scope:
    """Which parts of the config the schema accepted."""

    def __init__(self, broken: Sequence[Path]):
        self.broken = [tuple(path) for path in broken]

    def usable(self, path: Path) -> bool:
        """True when nothing at, above or below `path` was refused."""
        path = tuple(path)
        return not any(b[:len(path)] == path or path[:len(b)] == b for b in self.broken)


def _located(source: Source, prefix: tuple, error: DeclarationError) -> Problem:
    return source.problem(prefix + error.path, error.message, error.hint,
                          prefer_key=bool(error.path) and isinstance(error.path[-1], str))


def _stages(config: dict) -> list[tuple[int, dict]]:
    stages = config.get("stages")
    if not isinstance(stages, list):
        return []
    return [(i, s) for i, s in enumerate(stages) if isinstance(s, dict)]


def check_references(config: dict, source: Source, scope: _Scope) -> list[Problem]:
    """Stage names, model names, teacher references and data sizes; no Keras needed."""
    problems: list[Problem] = []
    data = config.get("data")
    if isinstance(data, dict) and scope.usable(("data",)):
        problems.extend(_check_split(data, source))
    models = config.get("models")
    known_models = isinstance(models, dict)
    models = models if known_models else {}
    seen: dict[str, int] = {}
    for index, stage in _stages(config):
        where = ("stages", index)
        name = stage.get("name")
        if isinstance(name, str) and scope.usable(where + ("name",)):
            if name in seen:
                problems.append(source.problem(
                    where + ("name",), f"stage name '{name}' is already used by "
                                       f"stages[{seen[name]}].",
                    "Stage names name folders in the run: make them unique."))
        model = stage.get("model")
        if isinstance(model, str) and scope.usable(where + ("model",)) and known_models \
                and model not in models:
            problems.append(source.problem(
                where + ("model",), f"no model named '{model}' in models.",
                suggest(model, models) or f"Models: {', '.join(models)}."))
        kind = stage.get("type") if scope.usable(where + ("type",)) else None
        if kind == "train":
            for key in ("teacher", "teachers", "teacher_weights", "loss"):
                if key in stage:
                    problems.append(source.problem(
                        where + (key,), f"a train stage takes no {key}.",
                        "Set type: distill to learn from a teacher.", prefer_key=True))
        elif kind == "distill":
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
            elif "teacher" in stage and scope.usable(where + ("teacher",)):
                problems.extend(_check_teacher(config, source, index, seen, stage["teacher"],
                                               where + ("teacher",)))
            elif "teachers" in stage and scope.usable(where + ("teachers",)) \
                    and scope.usable(where + ("teacher_weights",)):
                problems.extend(_check_teachers(config, source, index, seen))
            if "teacher_weights" in stage and "teachers" not in stage:
                problems.append(source.problem(
                    where + ("teacher_weights",), "teacher_weights weigh several 'teachers'; "
                                                  "this stage has one teacher.", prefer_key=True))
        if isinstance(name, str):
            seen.setdefault(name, index)
    for name, model in models.items():
        if not isinstance(model, dict) or not scope.usable(("models", name)):
            continue
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


def _check_split(data: dict, source: Source) -> list[Problem]:
    """The validation split must leave training samples, whatever the limit."""
    from distill.data import DATASETS  # noqa: PLC0415 - NumPy only; keep plain parsing light

    split, limit = data["validation_split"], data["limit"]["train"]
    where = ("data", "validation_split")
    if split >= 1 and not float(split).is_integer():
        return [source.problem(where, f"must be a fraction below 1 or a whole count, got {split}.")]
    size = DATASETS[data["dataset"]].train_size
    pool = min(limit, size) if limit is not None else size
    held_out = int(round(pool * split)) if split < 1 else int(split)
    if held_out < pool:
        return []
    what = (f"the {pool} training samples that data.limit.train keeps" if limit is not None
            else f"the {pool} training samples of {data['dataset']}")
    return [source.problem(where, f"holds out {held_out} of {what}, leaving none to train on.",
                           "Use a fraction (e.g. 0.1) or a smaller count, or raise "
                           "data.limit.train.")]


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
    stages = config["stages"]
    if teacher in earlier:
        return []
    later = [i for i, s in enumerate(stages)
             if isinstance(s, dict) and s.get("name") == teacher and i >= index]
    if later:
        return [source.problem(where, f"stage '{teacher}' runs at stages[{later[0]}], not before "
                                      "this stage, so it has not trained a teacher yet.",
                               "Move it before this stage.")]
    models = config.get("models") if isinstance(config.get("models"), dict) else {}
    model = models.get(teacher)
    if isinstance(model, dict) and ("path" in model or "run" in model):
        return []
    if model is not None:
        return [source.problem(where, f"teacher '{teacher}' is never trained or loaded: no earlier "
                                      f"stage has that name, and models.{teacher} has no path.",
                               f"Add a train stage named '{teacher}' before this one, or give "
                               f"models.{teacher}.path a .keras file.")]
    names = list(earlier) + [n for n, m in models.items()
                             if isinstance(m, dict) and ("path" in m or "run" in m)]
    return [source.problem(where, f"no earlier stage or loadable model named '{teacher}'.",
                           suggest(teacher, names) or
                           (f"Earlier stages: {', '.join(earlier)}." if earlier else
                            "A teacher is an earlier stage or a model with a path."))]


def check_buildable(config: dict, source: Source, scope: _Scope) -> list[Problem]:
    """Build every model, optimizer and loss once, as the run will."""
    from distill.data import DATASETS, input_shape  # noqa: PLC0415 - keep Keras out of plain parsing
    from distill.losses import build_loss  # noqa: PLC0415
    from distill.models import build_model  # noqa: PLC0415
    from distill.stages import build_optimizer  # noqa: PLC0415

    problems: list[Problem] = []
    models = config.get("models")
    data = config.get("data")
    if isinstance(models, dict) and isinstance(data, dict) and scope.usable(("data", "dataset")) \
            and scope.usable(("data", "flatten")):
        info = DATASETS[data["dataset"]]
        shape = input_shape(info.image_shape, data["flatten"])
        for name, declaration in models.items():
            if not scope.usable(("models", name)) or not isinstance(declaration, dict):
                continue
            if len({"layers", "path", "run"} & set(declaration)) != 1 or (
                    ("run" in declaration) != ("stage" in declaration)):
                continue  # reported by check_references
            try:
                build_model(name, declaration, shape, info.num_classes)
            except DeclarationError as error:
                problems.append(_located(source, ("models", name), error))
    for index, stage in _stages(config):
        for key, build in (("optimizer", build_optimizer), ("loss", build_loss)):
            where = ("stages", index, key)
            if key in stage and scope.usable(where):
                try:
                    build(stage[key])
                except DeclarationError as error:
                    problems.append(_located(source, where, error))
    return problems


def iter_problems(config: dict, source: Source, build: bool = True,
                  broken: Sequence[Path] = ()) -> Iterator[Problem]:
    """Every problem of a defaults-filled config outside the `broken` paths."""
    scope = _Scope(broken)
    yield from check_references(config, source, scope)
    if build:
        yield from check_buildable(config, source, scope)


def in_file_order(problems: Sequence[Problem], main_file: str) -> list[Problem]:
    """The main file's problems by line, then those of base files and overrides."""
    unique = {str(problem): problem for problem in problems}
    return sorted(unique.values(), key=lambda p: (p.file != main_file, p.file or "",
                                                  p.line or 0, p.column or 0))
