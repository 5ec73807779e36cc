"""`kd`: knowledge distillation with soft targets (Hinton, Vinyals and Dean, 2015)."""

from __future__ import annotations

import keras
from keras import ops

from distill.losses.registry import register_method
from distill.losses.targets import check_number, kl_divergence, teacher_log_probs


def soft_target_kl(teacher_logits, student_logits, temperature: float, teacher_weights=None):
    """Mean over the batch of KL(softmax(t / T) || softmax(s / T)).

    Written with log-softmax, so it stays finite for large logits and small T,
    and summed over classes before the batch mean (a mean over classes would
    shrink the loss by the number of classes). For several teachers
    (batch, teachers, classes), softmax(t / T) is their weighted mean.
    """
    teacher = teacher_log_probs(teacher_logits, temperature, teacher_weights)
    student = ops.log_softmax(ops.cast(student_logits, "float32") / temperature, axis=-1)
    return kl_divergence(teacher, student)


@register_method("kd")
@keras.saving.register_keras_serializable(package="distill")
class KD(keras.distillation.DistillationLoss):
    """Soft-target distillation on logits (Hinton et al., 2015).

        kd(t, s) = T**2 * KL(softmax(t / T) || softmax(s / T))

    averaged over the batch. In a distill stage with `alpha`, the total loss is

        alpha * CE(y, s) + (1 - alpha) * T**2 * KL(softmax(t / T) || softmax(s / T))

    so `alpha` is the weight of the hard labels. With several teachers,
    softmax(t / T) is replaced by their weighted mean sum_k w_k softmax(t_k / T).
    The object also works as a distillation loss of Keras' own
    `keras.distillation.Distiller`, whose `student_loss_weight` then plays the
    role of `alpha`.

    Paper: G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural
    Network", 2015 (arXiv:1503.02531).

    Args:
        temperature: T > 0. Higher values soften both distributions.
    """

    def __init__(self, temperature: float = 4.0):
        self.temperature = check_number("temperature", temperature, above=0)

    def compute_loss(self, teacher_outputs, student_outputs, teacher_weights=None, **kwargs):
        """Return T**2 * KL(softmax(t / T) || softmax(s / T)), a scalar.

        Args:
            teacher_outputs: Teacher logits, (batch, classes) or (batch, teachers, classes).
            student_outputs: Student logits, (batch, classes).
            teacher_weights: Per-teacher weights when there are several.
        """
        # T**2 keeps the soft-target gradients comparable across temperatures:
        # their magnitude scales as 1 / T**2 (Hinton et al., section 2).
        kl = soft_target_kl(teacher_outputs, student_outputs, self.temperature, teacher_weights)
        return (self.temperature ** 2) * kl

    def get_config(self) -> dict:
        return {"temperature": self.temperature}

    @classmethod
    def from_config(cls, config: dict) -> "KD":
        return cls(**config)
