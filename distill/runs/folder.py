"""The run folder: where a run writes its config, metrics, summary and models.

    <logs_dir>/<experiment>/<YYYYmmdd-HHMMSS>/
        config.yaml         the fully resolved config; `distill run` it to reproduce
        summary.json        status, per-stage results, versions
        <stage>/metrics.csv one row of epoch means per epoch
        <stage>/model.keras the trained model (the student alone for distill stages)

Every file except the metrics CSV is written atomically (a temporary file in
the same folder, then a rename), so a kill at any moment leaves the old or the
new file, never half of one. The CSV is appended a whole line at a time and
flushed after each epoch.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import tempfile
from typing import Any, Callable

import yaml

from distill.errors import RunError

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.csv"
MODEL_FILE = "model.keras"


def atomic_write(path: str, write: Callable[[io.IOBase], None], binary: bool = False) -> None:
    """Write a file through a temporary sibling and a rename.

    Args:
        path: The final path.
        write: Writes the content to the open file it is given.
        binary: Open the temporary file in binary mode.
    """
    folder = os.path.dirname(path) or "."
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.",
                                         suffix=".tmp")
    try:
        with os.fdopen(handle, "wb" if binary else "w", encoding=None if binary else "utf-8") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def write_json(path: str, data: Any) -> None:
    atomic_write(path, lambda out: out.write(json.dumps(data, indent=2) + "\n"))


def write_yaml(path: str, data: Any, header: str = "") -> None:
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
    atomic_write(path, lambda out: out.write(header + text))


class RunFolder:
    """One run's folder. Create it with `RunFolder.create`."""

    def __init__(self, path: str):
        self.path = path

    @classmethod
    def create(cls, logs_dir: str, experiment: str,
               now: datetime.datetime | None = None) -> "RunFolder":
        """Make a new, empty run folder; never reuses an existing one.

        Raises:
            RunError: if the logs folder cannot be created or written to.
        """
        now = now or datetime.datetime.now()
        parent = os.path.join(logs_dir, experiment)
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as error:
            raise RunError(f"cannot create the logs folder {parent!r}: {error.strerror}. "
                           "Set experiment.logs_dir to a folder you can write to.") from None
        stamp = now.strftime("%Y%m%d-%H%M%S")
        for attempt in range(1000):
            path = os.path.join(parent, stamp if attempt == 0 else f"{stamp}-{attempt + 1}")
            try:
                os.mkdir(path)  # atomic: fails if another run took the name
                return cls(path)
            except FileExistsError:
                continue
            except OSError as error:
                raise RunError(f"cannot create the run folder {path!r}: {error.strerror}. "
                               "Set experiment.logs_dir to a folder you can write to.") from None
        raise RunError(f"{parent!r} already holds 1000 runs started at {stamp}.")

    def stage_dir(self, stage: str) -> str:
        path = os.path.join(self.path, stage)
        os.makedirs(path, exist_ok=True)
        return path

    def file(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)


class MetricsWriter:
    """Appends one CSV row per epoch to `<stage>/metrics.csv`, flushed each time.

    The columns are those of the first row; a later row with a column the
    header lacks is an error in distill, not silently dropped.
    """

    def __init__(self, path: str):
        self.path = path
        self.columns: list[str] | None = None

    def append(self, row: dict) -> None:
        new = self.columns is None
        if new:
            self.columns = list(row)
        extra = set(row) - set(self.columns)
        if extra:
            raise ValueError(f"metrics row has columns {sorted(extra)} missing from {self.path}")
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerow({key: _csv_value(row.get(key)) for key in self.columns})
        with open(self.path, "a" if not new else "w", encoding="utf-8") as out:
            out.write(buffer.getvalue())
            out.flush()
            os.fsync(out.fileno())


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same float
    return "" if value is None else value


def read_metrics(path: str) -> list[dict]:
    """Read a metrics CSV back, numbers as numbers."""
    with open(path, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [{key: _number(value) for key, value in row.items()} for row in rows]


def _number(text: str) -> Any:
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text
