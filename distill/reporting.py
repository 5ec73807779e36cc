"""How a run reports progress, without knowing who listens.

The library calls a `Reporter`; the CLI's subclass prints. This module imports
nothing heavy, so the CLI can subclass it before TensorFlow is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distill.data import Splits


class Reporter:
    """Receives a run's progress. The base class ignores everything."""

    def run_started(self, run_dir: str, config: dict) -> None:
        """The run folder exists and holds the resolved config."""

    def data_ready(self, splits: Splits) -> None:
        """The data are read and split."""

    def stage_started(self, index: int, stage: dict, params: int) -> None:
        """A stage built its model and starts training."""

    def note(self, text: str) -> None:
        """A one-line remark about the work in progress."""

    def epoch_ended(self, stage: dict, row: dict) -> None:
        """An epoch finished; `row` is its line of metrics.csv."""

    def stage_ended(self, stage: dict, entry: dict) -> None:
        """A stage finished; `entry` is its part of summary.json."""

    def stage_kept(self, index: int, stage: dict, entry: dict) -> None:
        """A resumed run keeps a stage that completed before; `entry` is its summary part."""

    def run_ended(self, summary: dict) -> None:
        """The run finished (completed, failed or interrupted); `summary` is summary.json."""
