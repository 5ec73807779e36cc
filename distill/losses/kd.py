"""`kd`: knowledge distillation with soft targets (Hinton, Vinyals and Dean, 2015)."""

from __future__ import annotations

import keras
from keras import ops

from distill.losses.registry import register_method


def soft_target_kl(teacher_logits, student_logits, temperature: float):
    """Mean over the batch of KL(softmax(t / T) || softmax(s / T)).

    Written with log-softmax, so it stays finite for large logits and small T,
    and summed over classes before the batch mean (a mean over classes would
    shrink the loss by the number of classes).
    """
    teacher_log_probs = ops.log_softmax(ops.cast(teacher_logits, "float32") / temperature, axis=-1)
    student_log_probs = ops.log_softmax(ops.cast(student_logits, "float32") / temperature, axis=-1)
    teacher_probs = ops.exp(teacher_log_probs)
    per_sample = ops.sum(teacher_probs * (teacher_log_probs - student_log_probs), axis=-1)
    return ops.mean(per_sample)


@register_method("kd")
@keras.saving.register_keras_serializable(package="distill")
class KD(keras.distillation.DistillationLoss):
    """Soft-target distillation on logits (Hinton et al., 2015).

        kd(t, s) = T**2 * KL(softmax(t / T) || softmax(s / T))

    averaged over the batch. In a distill stage with `alpha`, the total loss is

        alpha * CE(y, s) + (1 - alpha) * T**2 * KL(softmax(t / T) || softmax(s / T))

    so `alpha` is the weight of the hard labels. The object also works as a
    distillation loss of Keras' own `keras.distillation.Distiller`, whose
    `student_loss_weight` then plays the role of `alpha`.

    Args:
        temperature: T > 0. Higher values soften both distributions.
    """

    def __init__(self, temperature: float = 4.0):
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise ValueError(f"temperature must be a number. Received: temperature={temperature!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0. Received: temperature={temperature}")
        self.temperature = float(temperature)

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        """Return T**2 * KL(softmax(t / T) || softmax(s / T)), a scalar."""
        # T**2 keeps the soft-target gradients comparable across temperatures:
        # their magnitude scales as 1 / T**2 (Hinton et al., section 2).
        kl = soft_target_kl(teacher_outputs, student_outputs, self.temperature)
        return (self.temperature ** 2) * kl

    def get_config(self) -> dict:
        return {"temperature": self.temperature}

    @classmethod
    def from_config(cls, config: dict) -> "KD":
        return cls(**config)
