"""One stage: build its trainer, feed it, train it, test the result."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from distill.data import Splits
from distill.errors import RunError
from distill.losses import build_loss
from distill.stages.checkpoint import Checkpoint, capture, restore
from distill.stages.distillation import INPUTS, TEACHER_LOGITS, Distillation
from distill.stages.fit import (EpochMonitor, evaluate, evaluation_dataset, predict_logits,
                                training_dataset)
from distill.stages.optimizers import build_optimizer


@dataclasses.dataclass
class StageResult:
    """What a finished stage produced.

    Attributes:
        model: The trained model (the student alone for a distill stage).
        history: One row of epoch-mean metrics per epoch.
        test: {"loss": CE on the test set, "accuracy": ...}.
        params: The trained model's parameter count.
        seconds: Wall time of the whole stage, teacher logits included.
        cached_teacher_logits: Whether the teachers ran once (True) or per batch.
    """

    model: keras.Model
    history: list[dict]
    test: dict
    params: int
    seconds: float
    cached_teacher_logits: bool | None = None


def should_cache(setting: object) -> bool:
    """Resolve `runtime.cache_teacher_logits` (`auto`, true or false)."""
    # 'auto' caches: this format version has no random augmentation, so a
    # teacher in inference mode gives the same logits for a sample every epoch.
    return setting is not False


def teacher_logits(teacher: keras.Model | Sequence[keras.Model], x: np.ndarray, batch_size: int,
                   preprocess) -> np.ndarray:
    """Logits of a teacher (n, classes), or of a list of them, stacked (n, teachers, classes)."""
    if not isinstance(teacher, (list, tuple)):
        return predict_logits(teacher, x, batch_size, preprocess)
    return np.stack([predict_logits(model, x, batch_size, preprocess) for model in teacher], axis=1)


def run_stage(*, index: int, stage: dict, model: keras.Model,
              teacher: keras.Model | Sequence[keras.Model] | None,
              splits: Splits, runtime: dict, seed: int,
              on_epoch: Callable[[dict], None] = lambda row: None,
              on_note: Callable[[str], None] = lambda text: None,
              on_checkpoint: Callable[[Checkpoint], None] | None = None,
              resume_from: Checkpoint | None = None) -> StageResult:
    """Train `model` as the (defaults-filled) `stage` says.

    Args:
        index: The stage's position in the experiment (seeds its data order).
        stage: The stage's resolved config.
        model: A fresh model to train.
        teacher: The trained teacher of a distill stage, a list of them for a stage
            with `teachers:`, else None.
        splits: The data.
        runtime: The resolved `runtime` block.
        seed: The experiment seed.
        on_epoch: Receives each finished epoch's metrics row.
        on_note: Receives one-line notes on the work (e.g. caching teacher logits).
        on_checkpoint: Receives the stage's checkpoint after each finished epoch,
            after `on_epoch` has its row.
        resume_from: A checkpoint of this stage to continue from, after its epoch.

    Raises:
        RunError: if the loss stops being finite.
        CheckpointMismatch: if `resume_from` does not fit the model.
    """
    started = time.perf_counter()
    terms, hard_label_weight = (), 1.0
    if stage["type"] == "distill":
        spec = build_loss(stage["loss"])
        terms, hard_label_weight = spec.terms, spec.hard_label_weight

    train_inputs = {INPUTS: splits.x_train}
    val_inputs = {INPUTS: splits.x_val} if splits.x_val is not None else None
    cached = None
    if teacher is not None:
        cached = should_cache(runtime["cache_teacher_logits"])
        if cached:
            tick = time.perf_counter()
            train_inputs[TEACHER_LOGITS] = teacher_logits(
                teacher, splits.x_train, runtime["eval_batch_size"], splits.preprocess)
            if val_inputs is not None:
                val_inputs[TEACHER_LOGITS] = teacher_logits(
                    teacher, splits.x_val, runtime["eval_batch_size"], splits.preprocess)
            whose = (f"{len(teacher)} teachers'" if isinstance(teacher, (list, tuple))
                     else "teacher")
            on_note(f"{whose} logits cached for {len(splits.x_train)} train and "
                    f"{len(splits.x_val) if splits.x_val is not None else 0} validation samples "
                    f"in {time.perf_counter() - tick:.1f}s")

    trainer = Distillation(model, teacher, terms=terms, hard_label_weight=hard_label_weight,
                           teacher_weights=stage.get("teacher_weights"),
                           name=f"{stage['name']}_trainer")
    trainer.compile(optimizer=build_optimizer(stage["optimizer"]),
                    metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                    # Keras compiles without XLA under deterministic ops; asking earns a warning.
                    jit_compile=runtime["jit_compile"] and not runtime.get("deterministic"),
                    steps_per_execution=runtime["steps_per_execution"])
    initial_epoch = 0
    if resume_from is not None:
        # Built as fit would build it, so that its variables exist to be restored.
        trainer.optimizer.build(trainer.trainable_variables)
        restore(resume_from, trainer, trainer.optimizer)
        initial_epoch = min(resume_from.epoch, stage["epochs"])
    steps = math.ceil(len(splits.y_train) / stage["batch_size"])
    validation = (evaluation_dataset(val_inputs, splits.y_val, runtime["eval_batch_size"],
                                     splits.preprocess)
                  if val_inputs is not None else None)
    history: list[dict] = []

    def record(row: dict) -> None:
        history.append(row)
        on_epoch(row)
        if on_checkpoint is not None:
            # Cached teacher logits are not stored: a resume computes them again from the
            # teacher named here, in inference mode, bit for bit.
            on_checkpoint(capture(trainer, trainer.optimizer, row["epoch"], stage=stage["name"],
                                  stage_index=index, seed=seed, epochs=stage["epochs"],
                                  teacher=stage.get("teacher"), cached_teacher_logits=cached))

    monitor = EpochMonitor(record)
    # Converted once: each epoch's dataset gathers from these tensors.
    train_tensors = {key: tf.convert_to_tensor(value) for key, value in train_inputs.items()}
    train_labels = tf.convert_to_tensor(splits.y_train)
    for epoch in range(initial_epoch, stage["epochs"]):
        # One fit per epoch, on exactly that epoch's batches: a multi-step execution
        # (steps_per_execution) then ends with the epoch instead of running on into
        # the next one, so epoch e trains on epoch_order(e), resumed or not.
        dataset, _ = training_dataset(train_tensors, train_labels,
                                      batch_size=stage["batch_size"], seed=seed,
                                      stage_index=index, epochs=epoch + 1,
                                      initial_epoch=epoch, preprocess=splits.preprocess)
        trainer.fit(dataset, initial_epoch=epoch, epochs=epoch + 1, validation_data=validation,
                    callbacks=[monitor], shuffle=False, verbose=0)
        if monitor.bad_loss is not None:
            break
    if monitor.bad_loss is not None:
        epoch, batch, value = monitor.bad_loss
        raise RunError(
            f"stage '{stage['name']}': the loss became {value} in epoch {epoch}, by batch "
            f"{min(batch, steps)} of {steps}. Likely causes: a learning rate too high for this model (try a tenth of "
            f"stages[{index}].optimizer.learning_rate), or, in a distill stage, a very small "
            "temperature with very large logits.")
    test = evaluate(model, splits.x_test, splits.y_test, runtime["eval_batch_size"],
                    splits.preprocess)
    return StageResult(model=model, history=history, test=test, params=model.count_params(),
                       seconds=time.perf_counter() - started, cached_teacher_logits=cached)
