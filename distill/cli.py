"""The `distill` command. Only this module talks to the terminal or exits.

Each command parses its arguments, calls the library, prints, and maps
`DistillError`s to exit codes: 2 for wrong input, 1 for failed work, 130 for an
interrupted run. A user error never prints a traceback.
"""

from __future__ import annotations

import functools
import os
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
        shown = [f"{'T' if key == 'temperature' else key}={_fmt_number(value)}"
                 for key, value in declaration.items() if key not in skip]
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
        text += (f"; {stage['epochs']} epochs, batch {stage['batch_size']}, {optimizer['name']}"
                 + (f" lr {lr:g}" if lr is not None else ""))
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

    def run_ended(self, summary: dict) -> None:
        rows = [("stage", "type", "model", "params", "test acc", "test loss", "epochs", "seconds")]
        for name, entry in summary["stages"].items():
            rows.append((name, entry["type"], entry["model"], f"{entry.get('params', 0):,}",
                         _fmt(entry.get("test_accuracy", "-")), _fmt(entry.get("test_loss", "-")),
                         str(entry.get("epochs_completed", 0)),
                         f"{entry.get('wall_seconds', 0):.1f}"))
        self.echo("\nsummary")
        for line in _table(rows):
            self.echo("  " + line)
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
@click.argument("config_file", type=click.Path(dir_okay=False, path_type=str))
@set_option
@click.option("--logs-dir", type=click.Path(file_okay=False, path_type=str),
              help="Write the run under this folder instead of experiment.logs_dir.")
@reports_errors
def run(config_file: str, overrides: tuple[str, ...], logs_dir: str | None) -> None:
    """Train and distill as CONFIG_FILE declares, into a new run folder.

    Prints a line per epoch and a summary; the last line is the run folder.
    """
    import_tensorflow_quietly()
    from distill.config import load_config  # noqa: PLC0415 - TensorFlow loads only when needed
    from distill.runs import run_experiment  # noqa: PLC0415

    config = load_config(config_file, overrides)
    result = run_experiment(config, logs_dir=logs_dir, reporter=ConsoleReporter(),
                            command=[os.path.basename(sys.argv[0])] + sys.argv[1:])
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
                   + (f", loaded from {declaration['path']}" if "path" in declaration else ""))
        for line in _table(rows):
            click.echo(f"  {line}")
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
    click.echo(f"wrote {path} (template {template}). Next: distill show {path}; "
               f"distill run {path}")


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows as left-aligned columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
            for row in rows]


def main() -> None:
    """Entry point of the `distill` console script."""
    cli(prog_name="distill")
