"""The per-batch step of every stage: a Keras model that trains a student.

`Distillation` wraps the model being trained. Its `compute_loss` is the whole
per-batch objective, written in `keras.ops`:

    loss = hard_label_weight * CE(y, s) + sum_i weight_i * term_i(t, s)

with `s` the student's logits and `t` the teacher's (or the teachers', stacked
as (batch, teachers, classes)). A `train` stage is the same model with no terms
and a hard-label weight of 1. Each term also receives the labels, the epoch in
progress and the teacher weights as keyword arguments, and uses what it needs.
Keeping the step in `compute_loss` (not in callbacks) lets `Model.fit` drive it
today and a custom loop under `tf.distribute` (`strategy.run(model.train_step,
...)`) drive it later.

It extends Keras' `keras.distillation.Distiller` idea rather than subclassing
it: that class runs one teacher on every batch, while distill also feeds cached
teacher logits (computed once per stage) through the input pipeline, aligned
with the samples through every shuffle, and distills from several teachers.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from distill.losses.build import Term

INPUTS = "x"
TEACHER_LOGITS = "teacher_logits"


def hard_label_loss(labels, logits):
    """Mean over the batch of the cross-entropy of integer labels and logits."""
    logits = ops.cast(logits, "float32")
    return ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))


@keras.saving.register_keras_serializable(package="distill")
class Distillation(keras.Model):
    """Trains `student` on labels and, optionally, on frozen teachers' logits.

    Batches are `({"x": inputs, "teacher_logits": t}, labels)` when the teachers'
    logits are cached, or `({"x": inputs}, labels)` when the teachers run on each
    batch (in inference mode: dropout off, batch-norm statistics fixed). With one
    teacher `t` is (batch, classes); with several, (batch, teachers, classes).

    Logged per epoch (as epoch means): `loss` (the total), `ce_loss` (hard
    labels), `<term>_loss` for each distillation term, and the compiled metrics.

    `epoch`, a non-trainable variable, holds the 1-based number of the epoch in
    progress, for terms that change over training (DKD's warm-up); `fit` keeps it
    current through an `EpochCounter` callback, and a custom training loop sets
    it with `set_epoch`. It is read inside the compiled step.

    Args:
        student: The model being trained; it must output logits.
        teacher: The frozen teacher, or a list of several; needed unless every
            batch carries cached logits.
        terms: Weighted distillation terms; none trains on the labels alone.
        hard_label_weight: Weight of the cross-entropy with the labels.
        teacher_weights: With several teachers, one non-negative weight each (not
            all zero) for the mean of their soft targets; None weighs them equally.
    """

    def __init__(self, student: keras.Model,
                 teacher: keras.Model | Sequence[keras.Model] | None = None,
                 terms: Sequence[Term] = (), hard_label_weight: float = 1.0,
                 teacher_weights: Sequence[float] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.student = student
        self.several_teachers = isinstance(teacher, (list, tuple))
        self.teachers = list(teacher) if self.several_teachers else (
            [] if teacher is None else [teacher])
        for model in self.teachers:
            model.trainable = False
        self.teacher_weights = (None if teacher_weights is None
                                else [float(w) for w in teacher_weights])
        if self.teacher_weights is not None and (
                min(self.teacher_weights) < 0 or sum(self.teacher_weights) <= 0):
            raise ValueError("teacher_weights must be non-negative and not all zero. "
                             f"Received: teacher_weights={list(teacher_weights)}")
        if self.teacher_weights is not None and self.teachers and (
                len(self.teacher_weights) != len(self.teachers)):
            raise ValueError(f"teacher_weights must have one weight per teacher "
                             f"({len(self.teachers)}). Received: teacher_weights="
                             f"{list(teacher_weights)}")
        self.terms = tuple(terms)
        self.hard_label_weight = float(hard_label_weight)
        self.epoch = self.add_weight(shape=(), initializer="ones", trainable=False,
                                     name="epoch", dtype="float32")
        self.ce_tracker = keras.metrics.Mean(name="ce_loss")
        self.term_trackers = [keras.metrics.Mean(name=f"{term.name}_loss") for term in self.terms]

    @property
    def teacher(self) -> keras.Model | None:
        """The one teacher (None when there are none or several)."""
        return self.teachers[0] if len(self.teachers) == 1 and not self.several_teachers else None

    def set_epoch(self, epoch: int) -> None:
        """Record that the epoch with this 1-based number is in progress."""
        self.epoch.assign(float(epoch))

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, with an `EpochCounter` among the callbacks."""
        args = list(args)
        # `callbacks` is fit's sixth parameter, should a caller pass it by position.
        given = args[5] if len(args) > 5 else kwargs.get("callbacks")
        callbacks = list(given or [])
        if not any(isinstance(callback, EpochCounter) for callback in callbacks):
            callbacks.append(EpochCounter())
        if len(args) > 5:
            args[5] = callbacks
        else:
            kwargs["callbacks"] = callbacks
        return super().fit(*args, **kwargs)

    def call(self, inputs, training=False):
        if isinstance(inputs, dict):
            inputs = inputs[INPUTS]
        return self.student(inputs, training=training)

    def make_test_function(self, force=False):
        # Validation runs once an epoch on a few thousand samples: compiling it
        # with XLA costs more time than it saves. Training keeps `jit_compile`.
        jit_compile, self._jit_compile = self._jit_compile, False
        try:
            return super().make_test_function(force)
        finally:
            self._jit_compile = jit_compile

    def teacher_logits(self, x):
        """The batch's cached teacher logits, or the teachers' outputs on it.

        Returns:
            (batch, classes) for one teacher; (batch, teachers, classes) for several.
        """
        if isinstance(x, dict) and TEACHER_LOGITS in x:
            return x[TEACHER_LOGITS]
        if not self.teachers:
            raise ValueError("A distillation term needs teacher logits: pass a teacher or "
                             f"feed '{TEACHER_LOGITS}' with each batch.")
        inputs = x[INPUTS] if isinstance(x, dict) else x
        outputs = [model(inputs, training=False) for model in self.teachers]
        return ops.stack(outputs, axis=1) if self.several_teachers else outputs[0]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """hard_label_weight * CE(y, s) + sum_i weight_i * term_i(t, s), a scalar."""
        batch = ops.cast(ops.shape(y)[0], "float32")
        hard = hard_label_loss(y, y_pred)
        self.ce_tracker.update_state(hard, sample_weight=batch)
        total = self.hard_label_weight * hard
        if self.terms:
            teacher_logits = ops.stop_gradient(self.teacher_logits(x))
            context = {"labels": y, "epoch": self.epoch, "teacher_weights": self.teacher_weights}
            for term, tracker in zip(self.terms, self.term_trackers):
                value = term.loss.compute_loss(teacher_logits, y_pred, **context)
                tracker.update_state(value, sample_weight=batch)
                total = total + term.weight * value
        return total

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "student": keras.saving.serialize_keras_object(self.student),
            "teacher": keras.saving.serialize_keras_object(
                self.teachers if self.several_teachers else self.teacher),
            "hard_label_weight": self.hard_label_weight,
            "teacher_weights": self.teacher_weights,
            "terms": [{"name": t.name, "weight": t.weight,
                       "loss": keras.saving.serialize_keras_object(t.loss)}
                      for t in self.terms],
        })
        return config

    @classmethod
    def from_config(cls, config: dict) -> "Distillation":
        config = dict(config)
        student = keras.saving.deserialize_keras_object(config.pop("student"))
        teacher = config.pop("teacher")
        if isinstance(teacher, list):
            teacher = [keras.saving.deserialize_keras_object(t) for t in teacher]
        elif teacher:
            teacher = keras.saving.deserialize_keras_object(teacher)
        terms = tuple(Term(t["name"], keras.saving.deserialize_keras_object(t["loss"]), t["weight"])
                      for t in config.pop("terms"))
        return cls(student=student, teacher=teacher, terms=terms, **config)


class EpochCounter(keras.callbacks.Callback):
    """Keeps `Distillation.epoch` at the 1-based number of the epoch in progress.

    Keras numbers epochs from 0 and counts the epochs a resumed fit skips
    (`initial_epoch`), so the count stays right across a resume.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self.model.set_epoch(epoch + 1)
