"""The per-batch step of every stage: a Keras model that trains a student.

`Distillation` wraps the model being trained. Its `compute_loss` is the whole
per-batch objective, written in `keras.ops`:

    loss = hard_label_weight * CE(y, s) + sum_i weight_i * term_i(t, s)

with `s` the student's logits and `t` the teacher's. A `train` stage is the
same model with no terms and a hard-label weight of 1. Keeping the step in
`compute_loss` (not in callbacks) lets `Model.fit` drive it today and a custom
loop under `tf.distribute` (`strategy.run(model.train_step, ...)`) drive it
later.

It extends Keras' `keras.distillation.Distiller` idea rather than subclassing
it: that class runs one teacher on every batch, while distill also feeds cached
teacher logits (computed once per stage) through the input pipeline, aligned
with the samples through every shuffle.
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
    """Trains `student` on labels and, optionally, on a frozen teacher's logits.

    Batches are `({"x": inputs, "teacher_logits": t}, labels)` when the teacher's
    logits are cached, or `({"x": inputs}, labels)` when the teacher runs on each
    batch (in inference mode: dropout off, batch-norm statistics fixed).

    Logged per epoch (as epoch means): `loss` (the total), `ce_loss` (hard
    labels), `<term>_loss` for each distillation term, and the compiled metrics.

    Args:
        student: The model being trained; it must output logits.
        teacher: The frozen teacher, needed unless every batch carries cached logits.
        terms: Weighted distillation terms; none trains on the labels alone.
        hard_label_weight: Weight of the cross-entropy with the labels.
    """

    def __init__(self, student: keras.Model, teacher: keras.Model | None = None,
                 terms: Sequence[Term] = (), hard_label_weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.terms = tuple(terms)
        self.hard_label_weight = float(hard_label_weight)
        self.ce_tracker = keras.metrics.Mean(name="ce_loss")
        self.term_trackers = [keras.metrics.Mean(name=f"{term.name}_loss") for term in self.terms]

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
        """The batch's cached teacher logits, or the teacher's output on it."""
        if isinstance(x, dict) and TEACHER_LOGITS in x:
            return x[TEACHER_LOGITS]
        if self.teacher is None:
            raise ValueError("A distillation term needs teacher logits: pass a teacher or "
                             f"feed '{TEACHER_LOGITS}' with each batch.")
        return self.teacher(x[INPUTS] if isinstance(x, dict) else x, training=False)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """hard_label_weight * CE(y, s) + sum_i weight_i * term_i(t, s), a scalar."""
        batch = ops.cast(ops.shape(y)[0], "float32")
        hard = hard_label_loss(y, y_pred)
        self.ce_tracker.update_state(hard, sample_weight=batch)
        total = self.hard_label_weight * hard
        if self.terms:
            teacher_logits = ops.stop_gradient(self.teacher_logits(x))
            for term, tracker in zip(self.terms, self.term_trackers):
                value = term.loss.compute_loss(teacher_logits, y_pred)
                tracker.update_state(value, sample_weight=batch)
                total = total + term.weight * value
        return total

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "student": keras.saving.serialize_keras_object(self.student),
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "hard_label_weight": self.hard_label_weight,
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
        teacher = keras.saving.deserialize_keras_object(teacher) if teacher else None
        terms = tuple(Term(t["name"], keras.saving.deserialize_keras_object(t["loss"]), t["weight"])
                      for t in config.pop("terms"))
        return cls(student=student, teacher=teacher, terms=terms, **config)
