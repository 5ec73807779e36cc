"""`dist`: relations instead of exact probabilities (Huang et al., 2022)."""

from __future__ import annotations

import keras
from keras import ops

from distill.losses.registry import register_method
from distill.losses.targets import check_number, safe_sqrt, teacher_log_probs


def pearson_rows(a, b, epsilon: float):
    """Pearson correlation of each row of `a` with the same row of `b`.

        rho(u, v) = <u - mean(u), v - mean(v)> / (||u - mean(u)|| * ||v - mean(v)|| + epsilon)

    A constant row has no defined correlation; `epsilon` makes it 0.
    """
    a = a - ops.mean(a, axis=-1, keepdims=True)
    b = b - ops.mean(b, axis=-1, keepdims=True)
    norms = safe_sqrt(ops.sum(a * a, axis=-1)) * safe_sqrt(ops.sum(b * b, axis=-1))
    return ops.sum(a * b, axis=-1) / (norms + epsilon)


@register_method("dist")
@keras.saving.register_keras_serializable(package="distill")
class DIST(keras.distillation.DistillationLoss):
    """DIST: match the teacher's relations, not its probabilities (Huang et al., 2022).

    With Y_s = softmax(s / tau) and Y_t = softmax(t / tau), both (batch, classes):

        inter = 1 - mean_i rho(Y_s[i, :], Y_t[i, :])   (over classes, per sample)
        intra = 1 - mean_c rho(Y_s[:, c], Y_t[:, c])   (over the batch, per class)
        dist(t, s) = tau**2 * (beta * inter + gamma * intra)

    with rho the Pearson correlation (see `pearson_rows`, epsilon = 1e-8 in its
    denominator). Correlation ignores the scale and shift of the probabilities,
    which a weaker student cannot match when the teacher is much stronger. It is
    0 when student = teacher, up to epsilon, with one exception the formula
    implies: a class whose probability is the same for every sample of the
    batch (always the case for a batch of one) has no defined intra-class
    correlation; it counts as 0, so that class adds gamma * tau**2 / classes,
    a constant with no gradient. With several teachers, Y_t is their weighted
    mean sum_k w_k softmax(t_k / tau).

    Paper: T. Huang, S. You, F. Wang, C. Qian, C. Xu, "Knowledge Distillation
    from A Stronger Teacher", NeurIPS 2022 (arXiv:2205.10536). Defaults are the
    paper's: beta = gamma = 1, tau = 1; its recipe adds the cross-entropy with
    weight 1.

    Args:
        beta: Weight of the inter-class relation, >= 0.
        gamma: Weight of the intra-class relation, >= 0.
        tau: Softmax temperature, > 0.
    """

    epsilon = 1e-8

    def __init__(self, beta: float = 1.0, gamma: float = 1.0, tau: float = 1.0):
        self.beta = check_number("beta", beta, minimum=0)
        self.gamma = check_number("gamma", gamma, minimum=0)
        self.tau = check_number("tau", tau, above=0)

    def compute_loss(self, teacher_outputs, student_outputs, teacher_weights=None, **kwargs):
        """Return tau**2 * (beta * inter + gamma * intra), a scalar.

        Args:
            teacher_outputs: Teacher logits, (batch, classes) or (batch, teachers, classes).
            student_outputs: Student logits, (batch, classes).
            teacher_weights: Per-teacher weights when there are several.
        """
        y_t = ops.exp(teacher_log_probs(teacher_outputs, self.tau, teacher_weights))
        y_s = ops.softmax(ops.cast(student_outputs, "float32") / self.tau, axis=-1)
        inter = 1.0 - ops.mean(pearson_rows(y_s, y_t, self.epsilon))
        intra = 1.0 - ops.mean(pearson_rows(ops.transpose(y_s), ops.transpose(y_t), self.epsilon))
        return (self.tau ** 2) * (self.beta * inter + self.gamma * intra)

    def get_config(self) -> dict:
        return {"beta": self.beta, "gamma": self.gamma, "tau": self.tau}

    @classmethod
    def from_config(cls, config: dict) -> "DIST":
        return cls(**config)
