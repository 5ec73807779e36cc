"""Runs: the run folder, the experiment driver that fills it, and reading runs back.

`records` (listing and comparing run folders) imports no TensorFlow; the
driver does, on first use of `run_experiment` and its siblings.
"""

from distill.reporting import Reporter
from distill.runs.folder import RunFolder, read_metrics

__all__ = ["Reporter", "RunFolder", "RunResult", "read_metrics", "reproduce_run",
           "resume_experiment", "run_experiment", "save_model", "versions"]

_DRIVER = {"RunResult", "reproduce_run", "resume_experiment", "run_experiment", "save_model"}


def __getattr__(name):
    # Lazy, so that `distill runs` and `distill compare` start without TensorFlow.
    if name == "versions":
        from distill.runs.environment import versions

        return versions
    if name in _DRIVER:
        from distill.runs import experiment

        return getattr(experiment, name)
    raise AttributeError(f"module 'distill.runs' has no attribute {name!r}")
