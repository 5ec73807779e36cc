"""Drive a `Distillation` model through its epochs with `Model.fit`.

The stage owns the data order: each epoch's permutation comes from a NumPy
generator seeded by (seed, stage index, epoch), so the order of any epoch can
be rebuilt without replaying the ones before it, and cached teacher logits are
gathered with the same indices as their samples.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from distill.stages.distillation import INPUTS


Preprocess = Callable[[tf.Tensor], tf.Tensor]


def _identity(batch: tf.Tensor) -> tf.Tensor:
    return batch


def even_batch_size(n: int, limit: int) -> int:
    """A batch size <= `limit` that splits `n` samples into equal batches, if one is close.

    XLA compiles a function once per input shape, so a smaller last batch costs
    a second compilation. Evaluation results do not depend on the batch size, so
    evaluation uses a divisor of `n` when one lies within half of `limit`.
    """
    if n <= limit:
        return max(n, 1)
    for size in range(limit, limit // 2, -1):
        if n % size == 0:
            return size
    return limit


def inference_dataset(x: np.ndarray, batch_size: int,
                      preprocess: Preprocess = _identity) -> tf.data.Dataset:
    """Unshuffled, preprocessed batches of `x` alone, for predictions."""
    size = even_batch_size(len(x), batch_size)
    return (tf.data.Dataset.from_tensor_slices(x).batch(size)
            .map(preprocess, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))


def predict_logits(model: keras.Model, x: np.ndarray, batch_size: int,
                   preprocess: Preprocess = _identity) -> np.ndarray:
    """The model's logits for `x` in inference mode, as float32."""
    outputs = model.predict(inference_dataset(x, batch_size, preprocess), verbose=0)
    return np.asarray(outputs, dtype=np.float32)


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int,
             preprocess: Preprocess = _identity) -> dict:
    """Cross-entropy and accuracy of a classifier producing logits.

    Returns:
        {"loss": mean CE, "accuracy": fraction correct}.
    """
    logits = predict_logits(model, x, batch_size, preprocess).astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(len(y)), y].mean()
    accuracy = (logits.argmax(axis=1) == y).mean()
    return {"loss": float(loss), "accuracy": float(accuracy)}


def epoch_order(n: int, seed: int, stage_index: int, epoch: int,
                batch_size: int | None = None) -> np.ndarray:
    """The sample order of one epoch of one stage; depends on nothing else.

    With `batch_size`, the order is filled up to a whole number of batches
    with the samples it starts with: every sample is seen in every epoch, a
    few twice, and every batch has the same shape, so XLA compiles the
    training step once instead of once more for a smaller last batch.
    """
    order = np.random.default_rng([seed, stage_index, epoch]).permutation(n).astype(np.int64)
    if batch_size is not None and n % batch_size:
        order = np.concatenate([order, order[: batch_size - n % batch_size]])
    return order


def _preprocessed(preprocess: Preprocess):
    def apply(inputs: dict, labels):
        return {**inputs, INPUTS: preprocess(inputs[INPUTS])}, labels
    return apply


def training_dataset(inputs: dict[str, np.ndarray | tf.Tensor], labels: np.ndarray | tf.Tensor,
                     *, batch_size: int,
                     seed: int, stage_index: int, epochs: int, initial_epoch: int = 0,
                     preprocess: Preprocess = _identity) -> tuple[tf.data.Dataset, int]:
    """Batches for epochs `initial_epoch .. epochs - 1`, shuffled per epoch, then the end.

    Each epoch is `ceil(n / batch_size)` batches of exactly `batch_size` samples
    (see `epoch_order`). The dataset is finite and its length is known, so that
    `Model.fit` on one epoch of it stops a multi-step execution
    (`steps_per_execution`) at the epoch's last batch.

    Args:
        inputs: Arrays with one row per sample, e.g. {"x": ..., "teacher_logits": ...};
            every array is gathered with the same indices, so rows stay aligned.
        labels: One label per sample.
        preprocess: Turns a batch of stored `inputs["x"]` into model inputs.

    Returns:
        The dataset and the number of steps per epoch.
    """
    n = len(labels)
    steps = math.ceil(n / batch_size)
    orders = np.stack([epoch_order(n, seed, stage_index, e, batch_size)
                       for e in range(initial_epoch, epochs)])
    # convert_to_tensor passes tensors through: a stage converts its arrays once, not per epoch.
    tensors = {key: tf.convert_to_tensor(value) for key, value in inputs.items()}
    label_tensor = tf.convert_to_tensor(labels)

    def gather(indices):
        batch = {key: tf.gather(value, indices) for key, value in tensors.items()}
        batch[INPUTS] = preprocess(batch[INPUTS])
        return batch, tf.gather(label_tensor, indices)

    indices = tf.data.Dataset.from_tensor_slices(orders.reshape(-1, batch_size))
    dataset = indices.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE), steps


def evaluation_dataset(inputs: dict[str, np.ndarray], labels: np.ndarray, batch_size: int,
                       preprocess: Preprocess = _identity) -> tf.data.Dataset:
    """Unshuffled, preprocessed batches, for validation."""
    size = even_batch_size(len(labels), batch_size)
    dataset = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(size)
    return dataset.map(_preprocessed(preprocess), num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE)


class EpochMonitor(keras.callbacks.Callback):
    """Times each epoch, reports its metrics, and stops on a non-finite loss.

    Args:
        on_epoch: Called with one row per finished epoch: `epoch` (1-based), the
            epoch means Keras logged, `learning_rate` and `seconds`.
    """

    def __init__(self, on_epoch: Callable[[dict], None]):
        super().__init__()
        self.on_epoch = on_epoch
        self.bad_loss: tuple[int, int, float] | None = None  # (epoch, batch, value), 1-based
        self._epoch = 0
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)) and self.bad_loss is None:
            self.bad_loss = (self._epoch + 1, batch + 1, float(loss))
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.bad_loss is not None:
            return
        logs = {key: float(value) for key, value in (logs or {}).items()}
        train = sorted(k for k in logs if not k.startswith("val_") and k != "loss")
        row = {"epoch": epoch + 1, "loss": logs.get("loss")}
        row.update({key: logs[key] for key in train})
        row.update({f"val_{key}": logs[f"val_{key}"] for key in ["loss"] + train
                    if f"val_{key}" in logs})
        row["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row["seconds"] = round(time.perf_counter() - self._started, 3)
        self.on_epoch(row)
