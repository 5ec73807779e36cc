"""Shared fixtures: tiny synthetic IDX datasets, the real MNIST, config text."""

from __future__ import annotations

import gzip
import os
import pathlib
import textwrap

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"


def write_idx(path: pathlib.Path, array: np.ndarray, compress: bool = True) -> None:
    """Write a uint8 array in the IDX format (the test's own writer, not distill's reader)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as out:
            out.write(data)
    else:
        path.write_bytes(data)


def synthetic_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """28x28 images whose class is a bright 7x7 block at one of 10 places, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 4)
        images[i, 7 * row:7 * row + 7, 7 * col:7 * col + 7] = 255
    return images, labels


def write_dataset(folder: pathlib.Path, n_train: int = 300, n_test: int = 100,
                  compress: bool = True) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    x_train, y_train = synthetic_images(n_train, seed=1)
    x_test, y_test = synthetic_images(n_test, seed=2)
    write_idx(folder / "train-images-idx3-ubyte", x_train, compress)
    write_idx(folder / "train-labels-idx1-ubyte", y_train, compress)
    write_idx(folder / "t10k-images-idx3-ubyte", x_test, compress)
    write_idx(folder / "t10k-labels-idx1-ubyte", y_test, compress)
    return folder


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> pathlib.Path:
    """A folder with a small synthetic dataset in MNIST's IDX format."""
    return write_dataset(tmp_path_factory.mktemp("data") / "mnist")


def mnist_dir() -> pathlib.Path | None:
    """The real MNIST: $DISTILL_DATA_DIR/mnist, else ../shared/data/mnist beside the repo."""
    candidates = []
    if os.environ.get("DISTILL_DATA_DIR"):
        candidates.append(pathlib.Path(os.environ["DISTILL_DATA_DIR"]) / "mnist")
    candidates.append(REPO.parent / "shared" / "data" / "mnist")
    for folder in candidates:
        if (folder / "train-images-idx3-ubyte.gz").is_file():
            return folder
    return None


@pytest.fixture(scope="session")
def real_mnist() -> pathlib.Path:
    folder = mnist_dir()
    if folder is None:
        pytest.skip("real MNIST not found: set DISTILL_DATA_DIR to a folder holding mnist/")
    return folder


TINY_CONFIG = """\
experiment:
  name: tiny
  seed: 3
data:
  dataset: mnist
  path: {data}
  validation_split: 0.2
  batch_size: 16
runtime:
  steps_per_execution: 4
models:
  teacher:
    layers:
      - Dense: {{units: 32, activation: relu}}
      - Dense: {{units: 10}}
  student:
    layers:
      - Dense: {{units: 8, activation: relu}}
      - Dense: {{units: 10}}
stages:
  - name: teacher
    type: train
    model: teacher
    epochs: 2
  - name: student
    type: distill
    model: student
    teacher: teacher
    loss: {{method: kd, temperature: 4, alpha: 0.1}}
    epochs: 2
"""


@pytest.fixture
def tiny_config_text(tiny_data) -> str:
    return TINY_CONFIG.format(data=tiny_data)


@pytest.fixture
def write_config(tmp_path):
    """Write config text to a file and return its path."""

    def write(text: str, name: str = "experiment.yaml") -> pathlib.Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write
