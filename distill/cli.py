"""The `distill` command. Only this module talks to the terminal or exits.

Each command parses its arguments, calls the library, prints, and maps
`DistillError`s to exit codes: 2 for wrong input, 1 for failed work, 130 for an
interrupted run. A user error never prints a traceback.
"""

from __future__ import annotations

import functools
import os
import shlex
import sys
import tempfile
from typing import Callable

import click

import distill
from distill.errors import DistillError, RunInterrupted
from distill.reporting import Reporter

# TensorFlow's C++ logging (CUDA probing, oneDNN notices) is noise on a
# terminal; a user who wants it sets TF_CPP_MIN_LOG_LEVEL themselves.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its start-up chatter on stderr hidden.

    TensorFlow 2.20+ logs from C++ before its log level applies, so the
    environment variable alone cannot silence it. stderr is pointed at a
    temporary file during the import; if the import fails, what it said is shown.
    """
    if "tensorflow" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"] in ("0", "1"):
        import tensorflow  # noqa: F401, PLC0415

        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401, PLC0415
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    # Each stage builds a new model and so new tf.functions; TensorFlow's Python
    # logger then warns of "retracing", which is expected here, not a slowdown.
    import tensorflow as tf  # noqa: PLC0415

    tf.get_logger().setLevel("ERROR")


def _command_line() -> list[str]:
    """The command as typed, recorded in the run: `distill` also for `python -m distill`."""
    return ["distill"] + sys.argv[1:]


def _fail(error: DistillError) -> None:
    message = str(error)
    click.secho("error: ", fg="red", bold=True, err=True, nl=False)
    click.echo(message, err=True)
    if isinstance(error, RunInterrupted) and error.run_dir:
        click.echo(f"The summary in {error.run_dir} marks the run 'interrupted'.", err=True)
    sys.exit(error.exit_code)


def reports_errors(command: Callable) -> Callable:
    """Decorator: print a `DistillError` as one paragraph and exit with its code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DistillError as error:
            _fail(error)
        except KeyboardInterrupt:
            click.echo("\ninterrupted.", err=True)
            sys.exit(130)

    return wrapper


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _describe_loss(loss: dict) -> str:
    """`kd T=4 alpha=0.1`, or `0.1*ce + 0.9*kd(T=4) + 1*dist(...)` for terms."""
    def arguments(declaration: dict, skip: tuple) -> str:
        keys = sorted((key for key in declaration if key not in skip),
                      key=lambda key: key != "temperature")  # T first, then as resolved
        shown = [f"{'T' if key == 'temperature' else key}={_fmt_number(declaration[key])}"
                 for key in keys]
        return " ".join(shown)

    if "terms" not in loss:
        return f"{loss['method']} {arguments(loss, ('method',))}".strip()
    parts = [f"{_fmt_number(loss['hard_label_weight'])}*ce"]
    for term in loss["terms"]:
        inner = arguments(term, ("method", "weight", "name"))
        parts.append(f"{_fmt_number(term['weight'])}*{term['method']}({inner})")
    return " + ".join(parts)


def _fmt_number(value: object) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


class ConsoleReporter(Reporter):
    """Prints a run's progress: a header per stage, a line per epoch, a summary."""

    def __init__(self, echo: Callable[[str], None] = click.echo):
        self.echo = echo
        self.stages = 0

    def run_started(self, run_dir: str, config: dict) -> None:
        self.stages = len(config["stages"])
        self.echo(f"distill {distill.__version__}: experiment {config['experiment']['name']}, "
                  f"seed {config['experiment']['seed']}")
        self.echo(f"run folder: {run_dir}")

    def data_ready(self, splits) -> None:
        sizes = splits.sizes()
        self.echo(f"data: {splits.source}: train {sizes['train']:,}, validation "
                  f"{sizes['validation']:,}, test {sizes['test']:,}; input {splits.input_shape}")

    def stage_started(self, index: int, stage: dict, params: int) -> None:
        optimizer = stage["optimizer"]
        text = (f"\n[{index + 1}/{self.stages}] {stage['name']}: {stage['type']} model "
                f"'{stage['model']}' ({params:,} params)")
        if stage["type"] == "distill":
            teachers = stage.get("teachers") or [stage["teacher"]]
            text += (f" from {', '.join(repr(name) for name in teachers)}, "
                     f"{_describe_loss(stage['loss'])}")
        lr = optimizer.get("learning_rate")
        if isinstance(lr, dict):  # a schedule: its name and where it starts
            lr = f"{lr['name']} from {lr.get('initial_learning_rate', '?')}"
        epochs = f"{stage['epochs']} epoch{'s' if stage['epochs'] != 1 else ''}"
        text += (f"; {epochs}, batch {stage['batch_size']}, {optimizer['name']}"
                 + (f" lr {lr:g}" if isinstance(lr, float) else f" lr {lr}" if lr else ""))
        self.echo(text)

    def note(self, text: str) -> None:
        self.echo(f"  {text}")

    def epoch_ended(self, stage: dict, row: dict) -> None:
        shown = [key for key in row if key not in ("epoch", "learning_rate", "seconds")]
        metrics = "  ".join(f"{key} {_fmt(row[key])}" for key in shown)
        self.echo(f"  epoch {row['epoch']}/{stage['epochs']}  {metrics}  {row['seconds']:.1f}s")

    def stage_ended(self, stage: dict, entry: dict) -> None:
        self.echo(f"  done in {entry['wall_seconds']:.1f}s: test accuracy "
                  f"{entry['test_accuracy']:.4f}, test loss {entry['test_loss']:.4f}")

    def stage_kept(self, index: int, stage: dict, entry: dict) -> None:
        self.echo(f"\n[{index + 1}/{self.stages}] {stage['name']}: completed before the "
                  f"interruption, kept (test accuracy {entry['test_accuracy']:.4f})")

    def run_ended(self, summary: dict) -> None:
        rows = [("stage", "type", "model", "params", "test acc", "test loss", "epochs", "seconds")]
        for name, entry in summary["stages"].items():
            rows.append((name, entry["type"], entry["model"],
                         f"{entry['params']:,}" if "params" in entry else "-",
                         _fmt(entry.get("test_accuracy", "-")), _fmt(entry.get("test_loss", "-")),
                         str(entry.get("epochs_completed", 0)),
                         f"{entry['wall_seconds']:.1f}" if "wall_seconds" in entry else "-"))
        self.echo("\nsummary")
        self.echo(_table(rows))
        self.echo(f"total {summary['wall_seconds']:.1f}s")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(distill.__version__, prog_name="distill")
def cli() -> None:
    """Knowledge-distillation experiments declared in YAML, on Keras 3 / TensorFlow."""


set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Override one key of the file, typed by the schema; repeatable. Lists take an index "
         "or an item's name: --set stages.1.loss.temperature=4, "
         "--set stages.student.epochs=10.")


@cli.command()
@click.argument("config_file", type=click.Path(dir_okay=False, path_type=str), required=False)
@set_option
@click.option("--logs-dir", type=click.Path(file_okay=False, path_type=str),
              help="Write the run under this folder instead of experiment.logs_dir.")
@click.option("--resume", "resume_dir", metavar="RUN_DIR", type=click.Path(path_type=str),
              help="Continue the killed or interrupted run in RUN_DIR (instead of CONFIG_FILE).")
@reports_errors
def run(config_file: str | None, overrides: tuple[str, ...], logs_dir: str | None,
        resume_dir: str | None) -> None:
    """Train and distill as CONFIG_FILE declares, into a new run folder.

    Prints a line per epoch and a summary; the last line is the run folder.
    With --resume RUN_DIR it continues that run in its own folder instead: the
    stages it finished are kept, the one it was in continues after its last
    finished epoch.
    """
    if (config_file is None) == (resume_dir is None):
        raise click.UsageError("give a CONFIG_FILE to start a run, or --resume RUN_DIR to "
                               "continue one (not both).")
    if resume_dir is not None and overrides:
        raise click.UsageError("--set does not go with --resume: a resumed run keeps the config "
                               "it started with.")
    if resume_dir is not None and logs_dir is not None:
        raise click.UsageError("--logs-dir does not go with --resume: a resumed run stays in "
                               "its folder.")
    import_tensorflow_quietly()
    from distill.config import load_config  # noqa: PLC0415 - TensorFlow loads only when needed
    from distill.runs import resume_experiment, run_experiment  # noqa: PLC0415

    command = _command_line()
    if resume_dir is not None:
        result = resume_experiment(resume_dir, reporter=ConsoleReporter(), command=command)
    else:
        config = load_config(config_file, overrides)
        result = run_experiment(config, logs_dir=logs_dir, reporter=ConsoleReporter(),
                                command=command)
    click.echo(result.run_dir)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
@set_option
@reports_errors
def validate(files: tuple[str, ...], overrides: tuple[str, ...]) -> None:
    """Check experiment FILES without training: every problem in each, at once.

    Exit code 0 when all files are valid, 2 when any is not.
    """
    import_tensorflow_quietly()  # validation builds every model once
    from distill.config import load_config  # noqa: PLC0415
    from distill.errors import ConfigError  # noqa: PLC0415

    failed = 0
    for file in files:
        try:
            config = load_config(file, overrides)
        except ConfigError as error:
            failed += 1
            count = len(error.problems)
            click.secho(f"{file}: {count} problem{'s' if count != 1 else ''}", fg="red", err=True)
            for problem in error.problems:
                click.echo(f"  {problem}", err=True)
            continue
        stages = ", ".join(f"{stage['name']} ({stage['type']})" for stage in config.data["stages"])
        click.echo(f"{file}: valid: experiment {config.name}; stages {stages}")
    if failed:
        sys.exit(2)


@cli.command()
@click.argument("config_file", type=click.Path(dir_okay=False, path_type=str))
@set_option
@reports_errors
def show(config_file: str, overrides: tuple[str, ...]) -> None:
    """Print the fully resolved CONFIG_FILE and each model's layers and size, without training."""
    import_tensorflow_quietly()
    import yaml  # noqa: PLC0415

    from distill.config import load_config  # noqa: PLC0415
    from distill.data import DATASETS, input_shape  # noqa: PLC0415
    from distill.models import build_model  # noqa: PLC0415

    config = load_config(config_file, overrides)
    data = config.data
    header = f"# {config_file}, resolved" + (
        " with " + " ".join(f"--set {text}" for text in overrides) if overrides else "")
    click.echo(header)
    click.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100).rstrip())
    info = DATASETS[data["data"]["dataset"]]
    shape = input_shape(info.image_shape, data["data"]["flatten"])
    params = {}
    click.echo("\n# models (input shape %s)" % (shape,))
    for name, declaration in data["models"].items():
        model = build_model(name, declaration, shape, info.num_classes)
        params[name] = model.count_params()
        rows = [("layer", "class", "output shape", "params")]
        rows += [(layer.name, type(layer).__name__, str(tuple(layer.output.shape)[1:]),
                  f"{layer.count_params():,}") for layer in model.layers[1:]]
        click.echo(f"{name}: {params[name]:,} parameters"
                   + (f", loaded from {declaration['path']}" if "path" in declaration else "")
                   + (f", loaded from stage {declaration['stage']} of {declaration['run']}"
                      if "run" in declaration else ""))
        click.echo(_table(rows))
    distills = [s for s in data["stages"] if s["type"] == "distill"]
    if distills:
        click.echo("\n# teacher/student size")
        models_of = {s["name"]: s["model"] for s in data["stages"]}
        for stage in distills:
            teacher = models_of.get(stage["teacher"], stage["teacher"])
            ratio = params[teacher] / params[stage["model"]]
            click.echo(f"{stage['name']}: teacher {teacher} ({params[teacher]:,}) / student "
                       f"{stage['model']} ({params[stage['model']]:,}) = {ratio:.2f}x")


@cli.command()
def schema() -> None:
    """Print the JSON Schema of experiment files (for editors and other tools)."""
    import json  # noqa: PLC0415

    from distill.config.schema import load_schema  # noqa: PLC0415

    click.echo(json.dumps(load_schema(), indent=2))


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=str))
@click.option("--template", "-t", default="mlp-mnist", show_default=True,
              help="Which starting config: mlp-mnist, cnn-fashion-mnist.")
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
@reports_errors
def init(path: str, template: str, force: bool) -> None:
    """Write a commented starting config to PATH that validates and runs as written."""
    from distill.config.scaffold import write_template  # noqa: PLC0415

    write_template(template, path, force=force)
    quoted = shlex.quote(path)
    click.echo(f"wrote {path} (template {template}). Next: distill show {quoted}; "
               f"distill run {quoted}")


# Run folders: reproduce one, list them, compare them.

def _table(rows: list[tuple[str, ...]], indent: str = "  ") -> str:
    """Rows of cells as aligned columns; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths))
                     .rstrip() for row in rows)


def _exact(value: object) -> str:
    """A value with every digit it has, so that equal-looking numbers are equal."""
    if value is None:
        return "-"
    return repr(value) if isinstance(value, float) else str(value)


def _label(path: str, base: str = ".") -> str:
    """`path` relative to `base` when it lies inside it, else as given."""
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(base))
    return path if relative.startswith("..") else relative


def _where(value) -> str:
    """`student epoch 2`, or `student` for a value that belongs to no epoch."""
    return value.stage + (f" epoch {value.epoch}" if value.epoch is not None else "")


def _print_comparison(comparison) -> None:
    click.echo(f"\noriginal    {_label(comparison.original)}")
    click.echo(f"reproduced  {_label(comparison.reproduced)}")
    rows = [("stage", "epoch", "metric", "original", "reproduced", "difference")]
    for value in comparison.last_epoch():
        if value.epoch is not None:
            epoch = str(value.epoch)
        else:
            epoch = "" if value.metric == "status" else "test"
        difference = value.difference
        rows.append((value.stage, epoch, value.metric, _exact(value.original),
                     _exact(value.reproduced), "" if difference is None else f"{difference:.3g}"))
    click.echo("\n" + _table(rows))
    click.echo("  (the last epoch of each stage is shown; every epoch is compared)")
    if comparison.environment:
        click.echo("environment differs: " + "; ".join(
            f"{key} {_exact(a)} -> {_exact(b)}" for key, (a, b) in comparison.environment.items()))
    else:
        click.echo("environment: the same versions, source commit and machine.")
    total, bad = len(comparison.values), comparison.disagreements
    within = "identical" if comparison.tolerance == 0 else f"within {comparison.tolerance:g}"
    if not bad:
        click.echo(f"agree: all {total} values (every metric of every epoch, the test metrics "
                   f"and statuses) are {within}.")
        return
    worst = max((v for v in bad if v.difference is not None), key=lambda v: v.difference,
                default=None)
    text = (f"differ: {len(bad)} of {total} values are not {within}; first: "
            f"{_where(bad[0])} {bad[0].metric}")
    if worst is not None:
        text += f"; largest: {worst.difference:.3g} ({_where(worst)} {worst.metric})"
    click.echo(text + ".")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=str))
@click.option("--tolerance", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Largest absolute difference of a metric still counted as agreeing. 0 asks "
                   "for identical numbers, as on the same machine and versions; loosen it "
                   "(e.g. 1e-4) to compare across machines.")
@click.option("--logs-dir", type=click.Path(file_okay=False, path_type=str),
              help="Write the new run under this folder instead of beside RUN_DIR.")
@reports_errors
def reproduce(run_dir: str, tolerance: float, logs_dir: str | None) -> None:
    """Run RUN_DIR's saved config again into a new run folder and compare the two.

    Prints both runs' stage metrics side by side. Exits 0 when every metric of
    every epoch agrees within the tolerance, 1 when one does not.
    """
    import_tensorflow_quietly()
    from distill.runs import reproduce_run  # noqa: PLC0415

    _, comparison = reproduce_run(run_dir, tolerance=tolerance, logs_dir=logs_dir,
                                  reporter=ConsoleReporter(),
                                  command=_command_line())
    _print_comparison(comparison)
    sys.exit(0 if comparison.agree else 1)


@cli.command("runs")
@click.argument("folder", default="logs", type=click.Path(path_type=str))
@reports_errors
def list_runs(folder: str) -> None:
    """List the runs in FOLDER (default: logs), oldest first.

    Shows each run's experiment, start time, status and the test accuracy of
    each stage. A run marked `killed` stopped without saying so (e.g. SIGKILL);
    `distill run --resume` continues it, as it does `interrupted` and `failed` ones.
    """
    from distill.runs.records import find_runs  # noqa: PLC0415

    if folder == "logs" and not os.path.exists(folder):
        click.echo("no runs yet: there is no logs folder here (`distill run` makes it)")
        return
    records = find_runs(folder)
    if not records:
        click.echo(f"no runs in {folder}")
        return
    rows = [("run", "experiment", "started", "status", "test accuracy")]
    for record in records:
        summary = record.summary or {}
        accuracy = "  ".join(
            f"{name} {_fmt(entry.get('test_accuracy') if 'test_accuracy' in entry else '-')}"
            for name, entry in summary.get("stages", {}).items())
        rows.append((_label(record.path, folder), summary.get("experiment", "?"),
                     (summary.get("started_at") or "?")[:19].replace("T", " "), record.status,
                     accuracy or (record.problem or "")))
    click.echo(_table(rows, indent=""))


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=str))
@reports_errors
def compare(run_dirs: tuple[str, ...]) -> None:
    """Print the final metrics of every stage of each RUN_DIR in one table.

    Training and validation metrics are those of the last finished epoch; test
    metrics are measured after the stage's last epoch.
    """
    from distill.runs.records import read_run  # noqa: PLC0415

    columns = ("loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy")
    rows = [("run", "stage", "status", "epochs") + columns + ("params", "seconds")]
    for run_dir in run_dirs:
        record = read_run(run_dir)
        for name, entry in record.summary["stages"].items():
            stage_rows = record.stage_rows(name)
            last = {**(stage_rows[-1] if stage_rows else {}), **entry}
            seconds = entry.get("wall_seconds")
            rows.append((_label(run_dir), name, entry.get("status", "?"),
                         f"{len(stage_rows)}/{entry.get('epochs', '?')}",
                         *(_fmt(last[key]) if last.get(key) is not None else "-"
                           for key in columns),
                         f"{entry['params']:,}" if "params" in entry else "-",
                         f"{seconds:.1f}" if seconds is not None else "-"))
    click.echo(_table(rows, indent=""))


def main() -> None:
    """Entry point of the `distill` console script."""
    cli(prog_name="distill")
