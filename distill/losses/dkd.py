"""`dkd`: decoupled knowledge distillation (Zhao et al., 2022)."""

from __future__ import annotations

import keras
from keras import ops

from distill.losses.registry import register_method
from distill.losses.targets import MASKED_LOG, check_number, teacher_log_probs


def split_target(log_probs, target_mask):
    """Split log-probabilities at the target class, in log space.

    Args:
        log_probs: (batch, classes) log-probabilities.
        target_mask: (batch, classes) booleans, True at each sample's target class.

    Returns:
        `binary`: (batch, 2) log [p_target, 1 - p_target]; and `others`:
        (batch, classes) log-probabilities renormalized over the non-target
        classes, with the target class at `MASKED_LOG` (probability 0).
    """
    target = ops.sum(ops.where(target_mask, log_probs, 0.0), axis=-1, keepdims=True)
    masked = ops.where(target_mask, MASKED_LOG, log_probs)
    # log(1 - p_target) as a log-sum-exp over the other classes: exact even when
    # p_target rounds to 1, where log1p(-p_target) would be log(0).
    rest = ops.logsumexp(masked, axis=-1, keepdims=True)
    return ops.concatenate([target, rest], axis=-1), masked - rest


def _kl(teacher_log, student_log):
    return ops.sum(ops.exp(teacher_log) * (teacher_log - student_log), axis=-1)


@register_method("dkd")
@keras.saving.register_keras_serializable(package="distill")
class DKD(keras.distillation.DistillationLoss):
    """Decoupled knowledge distillation (Zhao et al., 2022).

    KD's KL divergence splits into a target-class part and a non-target part;
    DKD weighs them separately. With p = softmax(z / T), g the label,
    b = [p_g, 1 - p_g] and p^ = softmax over the non-target classes
    (p^_k = p_k / (1 - p_g), k != g):

        TCKD = KL(b_t || b_s)
        NCKD = KL(p^_t || p^_s)
        dkd(t, s, y) = min(epoch / warmup_epochs, 1) * T**2 * (alpha * TCKD + beta * NCKD)

    averaged over the batch. `epoch` is the 1-based number of the epoch in
    progress, so the weight grows linearly to 1 over the first `warmup_epochs`
    epochs (1 / warmup_epochs in the first). Everything is computed from
    log-softmax, so it stays finite for peaked logits and small T; it is 0 when
    student = teacher. With several teachers, p_t is their weighted mean
    sum_k w_k softmax(t_k / T), split the same way.

    DKD needs the labels, passed as `labels=` to `compute_loss`; distill's
    `Distillation` passes them and the epoch. Keras' own `Distiller` passes
    neither, so DKD cannot run inside it.

    Paper: B. Zhao, Q. Cui, R. Song, Y. Qiu, J. Liang, "Decoupled Knowledge
    Distillation", CVPR 2022 (arXiv:2203.08679). Defaults are the paper's
    CIFAR-100 setting: alpha = 1, beta = 8, T = 4, 20 warm-up epochs; its recipe
    adds the cross-entropy with weight 1.

    Args:
        alpha: Weight of the target-class term TCKD, >= 0.
        beta: Weight of the non-target-class term NCKD, >= 0.
        temperature: T > 0.
        warmup_epochs: Epochs over which the loss weight grows linearly to 1;
            0 for none.
    """

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0,
                 warmup_epochs: int = 20):
        self.alpha = check_number("alpha", alpha, minimum=0)
        self.beta = check_number("beta", beta, minimum=0)
        self.temperature = check_number("temperature", temperature, above=0)
        self.warmup_epochs = check_number("warmup_epochs", warmup_epochs, minimum=0, integer=True)

    def warmup_factor(self, epoch):
        """min(epoch / warmup_epochs, 1) for the 1-based epoch in progress."""
        if self.warmup_epochs == 0:
            return 1.0
        return ops.minimum(ops.cast(epoch, "float32") / self.warmup_epochs, 1.0)

    def compute_loss(self, teacher_outputs, student_outputs, labels=None, epoch=None,
                     teacher_weights=None, **kwargs):
        """Return the (warmed-up) DKD loss, a scalar.

        Args:
            teacher_outputs: Teacher logits, (batch, classes) or (batch, teachers, classes).
            student_outputs: Student logits, (batch, classes).
            labels: Integer class labels, (batch,). Required.
            epoch: The 1-based epoch in progress; None applies no warm-up.
            teacher_weights: Per-teacher weights when there are several.

        Raises:
            ValueError: without `labels`.
        """
        if labels is None:
            raise ValueError("DKD needs the labels: call compute_loss(teacher, student, "
                             "labels=y). Keras' Distiller does not pass them; use "
                             "distill.stages.Distillation.")
        classes = ops.shape(student_outputs)[-1]
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        target_mask = ops.one_hot(labels, classes) > 0.5
        teacher = teacher_log_probs(teacher_outputs, self.temperature, teacher_weights)
        student = ops.log_softmax(ops.cast(student_outputs, "float32") / self.temperature, axis=-1)
        teacher_binary, teacher_others = split_target(teacher, target_mask)
        student_binary, student_others = split_target(student, target_mask)
        tckd = ops.mean(_kl(teacher_binary, student_binary))
        nckd = ops.mean(_kl(teacher_others, student_others))
        loss = (self.temperature ** 2) * (self.alpha * tckd + self.beta * nckd)
        if epoch is None:
            return loss
        return self.warmup_factor(epoch) * loss

    def get_config(self) -> dict:
        return {"alpha": self.alpha, "beta": self.beta, "temperature": self.temperature,
                "warmup_epochs": self.warmup_epochs}

    @classmethod
    def from_config(cls, config: dict) -> "DKD":
        return cls(**config)
