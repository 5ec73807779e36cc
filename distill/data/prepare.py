"""Turn a raw dataset into the arrays the stages train on."""

from __future__ import annotations

import dataclasses

import numpy as np

from distill.data.sources import RawDataset
from distill.errors import DataError


@dataclasses.dataclass
class Splits:
    """Train, validation and test arrays, preprocessed, plus what made them.

    The validation split is held out of the training set once, from a seeded
    permutation, so it is the same in every epoch and every stage and never
    overlaps the training samples.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: str
    files: list[tuple[str, str]]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.x_train),
                "validation": 0 if self.x_val is None else len(self.x_val),
                "test": len(self.x_test)}


def input_shape(image_shape: tuple[int, ...], flatten: bool) -> tuple[int, ...]:
    """The shape of one model input for a dataset's images."""
    return (int(np.prod(image_shape)),) if flatten else tuple(image_shape)


def validation_count(validation_split: float, n: int) -> int:
    """How many of `n` training samples `validation_split` holds out.

    Raises:
        DataError: if that leaves no training sample.
    """
    count = int(round(n * validation_split)) if validation_split < 1 else int(validation_split)
    if count >= n:
        raise DataError(f"data.validation_split {validation_split:g} holds out {count} of the "
                        f"{n} training samples, leaving none to train on.",)
    return count


def _preprocess(images: np.ndarray, image_shape: tuple[int, ...], scale: bool,
                flatten: bool) -> np.ndarray:
    x = images.astype(np.float32)
    if scale:
        x /= 255.0
    return x.reshape((len(x),) + input_shape(image_shape, flatten))


def make_splits(raw: RawDataset, *, seed: int, validation_split: float, scale: bool,
                flatten: bool, limit_train: int | None = None,
                limit_test: int | None = None) -> Splits:
    """Preprocess a dataset and split off validation data.

    Args:
        raw: The dataset as read from disk.
        seed: Seeds the permutation that draws the train limit and the validation split.
        validation_split: Fraction (below 1) or count (1 or more) of the (limited)
            training set held out.
        scale: Divide pixels by 255.
        flatten: Make each image a vector.
        limit_train: Keep this many training samples (a seeded random subset).
        limit_test: Keep the first this many test samples.

    Returns:
        The splits, as float32 inputs and int32 labels.
    """
    order = np.random.default_rng(seed).permutation(len(raw.x_train))
    if limit_train is not None:
        order = order[:limit_train]
    n_val = validation_count(validation_split, len(order))
    val_idx, train_idx = order[:n_val], order[n_val:]
    # Sorted indices keep the stored order within each split: reading them is
    # cache-friendly and the split is defined by the set, not by its order.
    train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)
    shape = raw.info.image_shape
    x_test, y_test = raw.x_test, raw.y_test
    if limit_test is not None:
        x_test, y_test = x_test[:limit_test], y_test[:limit_test]
    return Splits(
        x_train=_preprocess(raw.x_train[train_idx], shape, scale, flatten),
        y_train=raw.y_train[train_idx],
        x_val=_preprocess(raw.x_train[val_idx], shape, scale, flatten) if n_val else None,
        y_val=raw.y_train[val_idx] if n_val else None,
        x_test=_preprocess(x_test, shape, scale, flatten),
        y_test=y_test,
        num_classes=raw.info.num_classes,
        source=raw.source,
        files=raw.files,
    )
