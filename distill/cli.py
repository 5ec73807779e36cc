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
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        self.echo("\nsummary")
        for row in rows:
            self.echo("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
        self.echo(f"total {summary['wall_seconds']:.1f}s")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(distill.__version__, prog_name="distill")
def cli() -> None:
    """Knowledge-distillation experiments declared in YAML, on Keras 3 / TensorFlow."""


@cli.command()
@click.argument("config_file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--logs-dir", type=click.Path(file_okay=False, path_type=str),
              help="Write the run under this folder instead of experiment.logs_dir.")
@reports_errors
def run(config_file: str, logs_dir: str | None) -> None:
    """Train and distill as CONFIG_FILE declares, into a new run folder.

    Prints a line per epoch and a summary; the last line is the run folder.
    """
    import_tensorflow_quietly()
    from distill.config import load_config  # noqa: PLC0415 - TensorFlow loads only when needed
    from distill.runs import run_experiment  # noqa: PLC0415

    config = load_config(config_file)
    result = run_experiment(config, logs_dir=logs_dir, reporter=ConsoleReporter(),
                            command=[os.path.basename(sys.argv[0])] + sys.argv[1:])
    click.echo(result.run_dir)


def main() -> None:
    """Entry point of the `distill` console script."""
    cli(prog_name="distill")
