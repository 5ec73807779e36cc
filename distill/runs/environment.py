"""What a run's numbers depend on besides its config: versions, code, machine.

Recorded in every run's summary.json, so that two runs that differ can be told
apart by more than their config, and set up (`configure_determinism`) before a
run starts.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess

import keras
import numpy as np
import tensorflow as tf

import distill


def versions() -> dict[str, str]:
    """Versions of everything that can change a run's numbers."""
    return {
        "distill": distill.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def source_commit() -> dict | None:
    """The git commit distill runs from, when it runs from a checkout.

    Returns:
        {"commit": sha, "dirty": whether tracked files differ from it, and when they
        do "diff_sha256": a checksum of the differences}, or None when distill is
        installed from a package (or git is missing).
    """
    folder = os.path.dirname(os.path.abspath(distill.__file__))

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", folder, *args], capture_output=True, text=True,
                                  timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    diff = git("diff", "HEAD", "--no-color")
    if diff is None:
        return {"commit": commit, "dirty": None}
    source = {"commit": commit, "dirty": bool(diff)}
    if diff:  # tells two runs from the same commit with different edits apart
        source["diff_sha256"] = hashlib.sha256(diff.encode()).hexdigest()
    return source


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """The CPU and the GPUs TensorFlow sees."""
    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        gpus.append(details.get("device_name") or device.name)
    return {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "gpus": gpus}


def environment() -> dict:
    """Everything above, as summary.json records it."""
    return {"versions": versions(), "source": source_commit(), "machine": machine()}


def configure_determinism(deterministic: bool) -> None:
    """Turn TensorFlow's deterministic ops on or off, as `runtime.deterministic` says.

    The setting is TensorFlow's, for the whole process: each run sets it, so a
    notebook that runs two configs gets each one's. TensorFlow's public API can
    only switch it on; off goes through the function its own tests use.
    """
    if deterministic:
        tf.config.experimental.enable_op_determinism()
        return
    from tensorflow.python.framework import config as tf_config  # noqa: PLC0415

    disable = getattr(tf_config, "disable_op_determinism", None)
    if disable is not None:
        disable()
