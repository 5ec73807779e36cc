"""distill: knowledge-distillation experiments declared in YAML, on Keras 3 / TensorFlow.

    from distill import load_config, run_experiment
    result = run_experiment(load_config("configs/mnist.yaml"))

Importing `distill` is cheap; TensorFlow is imported by the first use of
`run_experiment` (or of the modules that need it).
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_config", "run_experiment"]


def __getattr__(name):
    # Lazy, so that `distill --help` and config checks start without TensorFlow.
    if name == "load_config":
        from distill.config import load_config

        return load_config
    if name == "run_experiment":
        from distill.runs import run_experiment

        return run_experiment
    raise AttributeError(f"module 'distill' has no attribute {name!r}")
