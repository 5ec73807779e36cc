"""Turn a raw dataset into the arrays the stages train on."""

from __future__ import annotations

import dataclasses

import numpy as np

from distill.data.sources import RawDataset
from distill.errors import DataError


@dataclasses.dataclass
class Splits:
    """Train, validation and test images and labels, plus how to preprocess them.

    Images stay uint8 as stored (a quarter of the memory of float32); `preprocess`
    turns a batch into model inputs inside the input pipeline. The validation
    split is held out of the training set once, from a seeded permutation, so it
    is the same in every epoch and every stage and never overlaps the training
    samples.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    image_shape: tuple[int, ...]
    scale: bool
    flatten: bool
    source: str
    files: list[tuple[str, str]]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return input_shape(self.image_shape, self.flatten)

    def preprocess(self, images):
        """Model inputs (float32) for a batch of stored images (NumPy or tf.Tensor)."""
        import tensorflow as tf  # noqa: PLC0415 - only the pipeline needs TensorFlow

        x = tf.cast(images, tf.float32)
        if self.scale:
            x = x / 255.0
        return tf.reshape(x, (-1,) + self.input_shape)

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


def make_splits(raw: RawDataset, *, seed: int, validation_split: float, scale: bool,
                flatten: bool, limit_train: int | None = None,
                limit_test: int | None = None) -> Splits:
    """Split off validation data and set how images become model inputs.

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
        The splits: uint8 images, int32 labels.
    """
    order = np.random.default_rng(seed).permutation(len(raw.x_train))
    if limit_train is not None:
        order = order[:limit_train]
    n_val = validation_count(validation_split, len(order))
    val_idx, train_idx = order[:n_val], order[n_val:]
    # Sorted indices keep the stored order within each split: reading them is
    # cache-friendly and the split is defined by the set, not by its order.
    train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)
    x_test, y_test = raw.x_test, raw.y_test
    if limit_test is not None:
        x_test, y_test = x_test[:limit_test], y_test[:limit_test]
    return Splits(
        x_train=raw.x_train[train_idx], y_train=raw.y_train[train_idx],
        x_val=raw.x_train[val_idx] if n_val else None,
        y_val=raw.y_train[val_idx] if n_val else None,
        x_test=x_test, y_test=y_test, num_classes=raw.info.num_classes,
        image_shape=raw.info.image_shape,
        scale=scale, flatten=flatten, source=raw.source, files=raw.files,
    )
