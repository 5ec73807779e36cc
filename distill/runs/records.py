"""Read run folders back: find them, read their numbers, compare two of them.

Only summary.json and the metrics CSVs are read (no TensorFlow), so listing
and comparing runs is quick.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from distill.errors import RunFolderError
from distill.runs.folder import METRICS_FILE, SUMMARY_FILE, RunFolder, read_metrics

NOT_COMPARED = ("epoch", "seconds")  # the epoch is the row's key; wall time never repeats
TEST_METRICS = ("test_accuracy", "test_loss")
ENVIRONMENT = ("versions", "source", "machine")


@dataclasses.dataclass
class RunRecord:
    """One run folder as read back.

    Attributes:
        path: The folder.
        summary: Its summary.json, or None if it could not be read.
        problem: Why it could not be read.
        locked: Whether a process is writing it now.
    """

    path: str
    summary: dict | None
    problem: str | None = None
    locked: bool = False

    @property
    def status(self) -> str:
        """The summary's status; a `running` run that no process writes was `killed`."""
        if self.summary is None:
            return "unreadable"
        status = self.summary.get("status", "?")
        return "killed" if status == "running" and not self.locked else status

    def stage_rows(self, stage: str) -> list[dict]:
        """The stage's metrics rows (none if it never finished an epoch)."""
        path = os.path.join(self.path, stage, METRICS_FILE)
        return read_metrics(path) if os.path.isfile(path) else []


def read_run(path: str) -> RunRecord:
    """Read one run folder.

    Raises:
        RunFolderError: if `path` is missing or not a run folder, or its summary is unreadable.
    """
    folder = RunFolder.open(path)
    return RunRecord(path, folder.read_summary(), locked=folder.is_locked())


def find_runs(folder: str) -> list[RunRecord]:
    """Every run at or below `folder` (a logs folder, an experiment's folder, a run), oldest first.

    Raises:
        RunFolderError: if `folder` does not exist.
    """
    if not os.path.isdir(folder):
        raise RunFolderError(f"{folder}: no such folder.")
    records = []
    for root, dirs, files in os.walk(folder):
        depth = os.path.relpath(root, folder).count(os.sep) + (root != folder)
        if SUMMARY_FILE in files:
            dirs.clear()  # a run's stage folders hold no runs
            try:
                records.append(read_run(root))
            except RunFolderError as error:
                records.append(RunRecord(root, None, problem=str(error)))
        elif depth >= 2:  # <logs>/<experiment>/<run>: nothing deeper
            dirs.clear()
        dirs.sort()
    return sorted(records, key=lambda r: ((r.summary or {}).get("started_at") or "", r.path))


@dataclasses.dataclass
class Value:
    """One number (or status) of two runs side by side.

    Attributes:
        stage: The stage it belongs to.
        epoch: Its epoch (1-based), or None for the stage's test metrics and status.
        metric: The metrics.csv column (`loss`, `val_accuracy` ...), or a summary key
            (`test_accuracy`, `test_loss`, `status`).
        original: Its value in the first run (None where it has none).
        reproduced: Its value in the second run.
    """

    stage: str
    epoch: int | None
    metric: str
    original: Any
    reproduced: Any

    @property
    def difference(self) -> float | None:
        """|reproduced - original| for two numbers, else None."""
        a, b = self.original, self.reproduced
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b)):
            return None
        if math.isnan(a) and math.isnan(b):
            return 0.0
        return abs(b - a)

    def agrees(self, tolerance: float) -> bool:
        difference = self.difference
        if difference is None:
            return self.original == self.reproduced
        return difference <= tolerance  # a NaN on one side never agrees


@dataclasses.dataclass
class Comparison:
    """Two runs' numbers, value by value.

    Attributes:
        original: The first run folder.
        reproduced: The second run folder.
        tolerance: The largest absolute difference counted as agreeing.
        values: Every value compared: each metric of each epoch of each stage, then
            each stage's test metrics and status.
        environment: What differs between the runs' versions, source and machine,
            as {"versions.tensorflow": (original, reproduced), ...}.
    """

    original: str
    reproduced: str
    tolerance: float
    values: list[Value]
    environment: dict[str, tuple[Any, Any]]

    @property
    def disagreements(self) -> list[Value]:
        return [value for value in self.values if not value.agrees(self.tolerance)]

    @property
    def agree(self) -> bool:
        return bool(self.values) and not self.disagreements

    def last_epoch(self) -> list[Value]:
        """Per stage, the values of its last epoch, then its test metrics and status."""
        last: dict[str, int] = {}
        for value in self.values:
            if value.epoch is not None:
                last[value.stage] = max(last.get(value.stage, 0), value.epoch)
        return [value for value in self.values
                if value.epoch is None or value.epoch == last.get(value.stage)]


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_flatten(f"{prefix}.{key}", item))
        return out
    return {prefix: value}


def _environment_differences(a: dict, b: dict) -> dict[str, tuple[Any, Any]]:
    flat_a, flat_b = {}, {}
    for key in ENVIRONMENT:
        flat_a.update(_flatten(key, a.get(key)))
        flat_b.update(_flatten(key, b.get(key)))
    return {key: (flat_a.get(key), flat_b.get(key)) for key in sorted(set(flat_a) | set(flat_b))
            if flat_a.get(key) != flat_b.get(key)}


def compare_runs(original: str, reproduced: str, tolerance: float = 0.0) -> Comparison:
    """Compare two runs' per-epoch metrics, test metrics and stage statuses.

    Args:
        original: A run folder.
        reproduced: Another run folder, usually of the same config.
        tolerance: The largest absolute difference counted as agreeing; 0 asks
            for identical numbers.

    Raises:
        RunFolderError: if either is not a readable run folder.
    """
    a, b = read_run(original), read_run(reproduced)
    stages = list(a.summary["stages"])
    stages += [name for name in b.summary["stages"] if name not in stages]
    values: list[Value] = []
    for stage in stages:
        rows_a = {row["epoch"]: row for row in a.stage_rows(stage)}
        rows_b = {row["epoch"]: row for row in b.stage_rows(stage)}
        for epoch in sorted(set(rows_a) | set(rows_b)):
            row_a, row_b = rows_a.get(epoch, {}), rows_b.get(epoch, {})
            columns = list(row_a) + [key for key in row_b if key not in row_a]
            values += [Value(stage, epoch, key, row_a.get(key), row_b.get(key))
                       for key in columns if key not in NOT_COMPARED]
        entry_a = a.summary["stages"].get(stage, {})
        entry_b = b.summary["stages"].get(stage, {})
        values += [Value(stage, None, key, entry_a.get(key), entry_b.get(key))
                   for key in TEST_METRICS + ("status",)]
    return Comparison(original, reproduced, tolerance, values,
                      _environment_differences(a.summary, b.summary))
