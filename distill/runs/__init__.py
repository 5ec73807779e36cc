"""Runs: the run folder and the experiment driver that fills it."""

from distill.reporting import Reporter
from distill.runs.experiment import RunResult, run_experiment, save_model, versions
from distill.runs.folder import RunFolder, read_metrics

__all__ = ["Reporter", "RunFolder", "RunResult", "read_metrics", "run_experiment", "save_model",
           "versions"]
