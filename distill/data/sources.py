"""Find a dataset's files and read them: IDX (gzip or raw) and Keras `.npz`.

The search order, first hit wins:

1. `path:` in the config;
2. `$DISTILL_DATA_DIR/<name>/` (also `<name with a dash>/`);
3. `/usr/share/datasets/<name with a dash>/`, where Debian's dataset packages
   (`dataset-fashion-mnist`) install;
4. Keras' own cache (`~/.keras/datasets`, or `$KERAS_HOME/datasets`);
5. a download through `keras.datasets`.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
from typing import Callable

import numpy as np

from distill.errors import DataError

DATA_DIR_ENV = "DISTILL_DATA_DIR"
SYSTEM_DATA_DIR = "/usr/share/datasets"

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What distill knows about a dataset before reading it."""

    name: str
    image_shape: tuple[int, int, int]
    num_classes: int
    train_size: int  # samples in the standard training set
    npz_name: str | None  # the file name Keras caches it under, if it uses one .npz
    keras_cache_dir: str | None  # the folder under Keras' cache holding IDX .gz files
    keras_loader: str  # the keras.datasets module that downloads it

    @property
    def dirnames(self) -> tuple[str, ...]:
        dashed = self.name.replace("_", "-")
        return (self.name,) if dashed == self.name else (self.name, dashed)


DATASETS = {
    "mnist": DatasetInfo("mnist", (28, 28, 1), 10, 60000, "mnist.npz", None, "mnist"),
    "fashion_mnist": DatasetInfo("fashion_mnist", (28, 28, 1), 10, 60000, None, "fashion-mnist",
                                 "fashion_mnist"),
}


@dataclasses.dataclass
class RawDataset:
    """A dataset as stored: uint8 images (N, 28, 28) and integer labels (N,).

    Attributes:
        source: Where it was read from, for messages and the run record.
        files: (path, sha256) of every file read.
    """

    info: DatasetInfo
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    files: list[tuple[str, str]]


def sha256_of(path: str) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_idx(path: str) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) of unsigned bytes.

    Raises:
        DataError: if the file is truncated or not an IDX file of uint8 values.
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: cannot read the file ({error}).") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number).")
    if data[2] != 0x08:
        raise DataError(f"{path}: IDX data type 0x{data[2]:02x} is not unsigned bytes (0x08).")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = int(np.prod(dims)) if dims else 0
    if len(data) - header != expected:
        raise DataError(f"{path}: IDX header promises {expected} values of shape {tuple(dims)}, "
                        f"the file holds {len(data) - header}; it is truncated or corrupt.")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(folder: str) -> dict[str, str] | None:
    found = {}
    for key, stem in IDX_FILES.items():
        for candidate in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz",
                          stem.replace("-idx", ".idx")):
            if os.path.isfile(os.path.join(folder, candidate)):
                found[key] = os.path.join(folder, candidate)
                break
    return found if len(found) == len(IDX_FILES) else None


def _find_npz(folder: str, info: DatasetInfo) -> str | None:
    for name in filter(None, (info.npz_name, f"{info.name}.npz")):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None


def _read_folder(folder: str, info: DatasetInfo) -> RawDataset | None:
    idx = _find_idx(folder)
    if idx:
        arrays = {key: read_idx(path) for key, path in idx.items()}
        files = [(path, sha256_of(path)) for path in idx.values()]
        return _checked(RawDataset(info, source=f"{folder} (IDX)", files=files, **arrays))
    npz = _find_npz(folder, info)
    if npz:
        try:
            with np.load(npz, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in IDX_FILES}
        except (OSError, ValueError, KeyError) as error:
            raise DataError(f"{npz}: cannot read it as a Keras dataset archive with arrays "
                            f"x_train, y_train, x_test, y_test ({error}).") from None
        return _checked(RawDataset(info, source=f"{npz} (npz)", files=[(npz, sha256_of(npz))],
                                   **arrays))
    return None


def _checked(raw: RawDataset) -> RawDataset:
    height, width, _ = raw.info.image_shape
    for split in ("train", "test"):
        x, y = getattr(raw, f"x_{split}"), getattr(raw, f"y_{split}")
        if x.ndim != 3 or x.shape[1:] != (height, width) or len(x) != len(y):
            raise DataError(f"{raw.source}: {split} images have shape {x.shape} and labels "
                            f"{y.shape}; expected (N, {height}, {width}) images with N labels.")
        if y.size and (y.min() < 0 or y.max() >= raw.info.num_classes):
            raise DataError(f"{raw.source}: {split} labels run from {y.min()} to {y.max()}; "
                            f"expected 0 to {raw.info.num_classes - 1}.")
    raw.y_train = raw.y_train.astype(np.int32)
    raw.y_test = raw.y_test.astype(np.int32)
    return raw


def _keras_cache_dir() -> str:
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "datasets")


def candidate_folders(info: DatasetInfo, path: str | None) -> list[str]:
    """The folders searched for `info`'s files, in order."""
    if path:
        return [os.path.abspath(os.path.expanduser(path))]
    folders = []
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        folders += [os.path.join(os.path.abspath(env), name) for name in info.dirnames]
    folders += [os.path.join(SYSTEM_DATA_DIR, info.dirnames[-1])]
    cache = _keras_cache_dir()
    folders += [os.path.join(cache, info.keras_cache_dir) if info.keras_cache_dir else cache]
    return folders


def load_raw(name: str, path: str | None = None,
             download: Callable[[DatasetInfo], RawDataset] | None = None) -> RawDataset:
    """Find and read a dataset, local files first.

    Args:
        name: A key of `DATASETS`.
        path: The config's `data.path`; when given, only that folder is read.
        download: How to fetch it when no local copy exists (defaults to
            `keras.datasets`; tests pass a fake).

    Raises:
        DataError: if the files are nowhere to be found, cannot be downloaded, or
            are malformed. The message lists every place searched.
    """
    info = DATASETS[name]
    folders = candidate_folders(info, path)
    for folder in folders:
        if os.path.isdir(folder):
            raw = _read_folder(folder, info)
            if raw is not None:
                return raw
    if path:
        raise DataError(
            f"data.path {path!r}: no {name} files there. Expected the four IDX files "
            f"({', '.join(IDX_FILES.values())}, each raw or .gz) or a Keras .npz with arrays "
            "x_train, y_train, x_test, y_test.")
    download = download or _download_with_keras
    try:
        return download(info)
    except Exception as error:  # noqa: BLE001 - any failure to download is reported the same way
        looked = "\n".join(f"  {folder}" for folder in folders)
        raise DataError(
            f"dataset {name!r} was not found and could not be downloaded ({type(error).__name__}: "
            f"{error}). Looked in:\n{looked}\nPut the four IDX files "
            f"({', '.join(name + '.gz' for name in IDX_FILES.values())}) in one of those folders, "
            f"set {DATA_DIR_ENV} to a folder holding {info.dirnames[0]}/, or set data.path in "
            "the config.") from None


def _download_with_keras(info: DatasetInfo) -> RawDataset:
    import keras  # imported late: reading local files should not need it

    loader = getattr(keras.datasets, info.keras_loader)
    (x_train, y_train), (x_test, y_test) = loader.load_data()
    cache = _keras_cache_dir()
    folder = os.path.join(cache, info.keras_cache_dir) if info.keras_cache_dir else cache
    raw = _read_folder(folder, info)
    if raw is not None:  # read back what Keras saved, so the files get checksums
        return raw
    return _checked(RawDataset(info, x_train, y_train, x_test, y_test,
                               source=f"keras.datasets.{info.keras_loader}", files=[]))
