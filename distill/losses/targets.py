"""What every logit-based method shares: soft targets from one or several teachers.

A method receives the teachers' logits either as one array of shape
(batch, classes) or, for several teachers, as (batch, teachers, classes). Each
method turns them into its soft targets at its own temperature; for several
teachers the target is the weighted mean of their probabilities

    p_t = sum_k w_k * softmax(t_k / T),    w_k >= 0, sum_k w_k = 1

computed in log space (a log-sum-exp over teachers), so that a probability
that underflows to 0 for one teacher never becomes log(0).

The functions here are written in `keras.ops` and run inside the compiled
training step.
"""

from __future__ import annotations

from keras import ops

# A log-probability low enough that exp() of it is exactly 0 in float32, yet
# finite, so that masked-out classes never produce inf - inf = nan (not even in
# a branch that `where` discards, whose gradient would still be computed).
MASKED_LOG = -1e30


def check_number(name: str, value: object, *, minimum: float | None = None,
                 above: float | None = None, integer: bool = False) -> float:
    """Validate a constructor argument the way Keras does: say what was received.

    Args:
        name: The argument's name, for the message.
        value: What the caller passed.
        minimum: The smallest allowed value (inclusive).
        above: A bound the value must exceed (exclusive).
        integer: Whether the value must be a whole number.

    Returns:
        The value as a float (or int when `integer`).

    Raises:
        ValueError: naming the argument, the expectation and the value received.
    """
    kind = "a whole number" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be {kind}. Received: {name}={value!r}")
    if integer and not float(value).is_integer():
        raise ValueError(f"{name} must be {kind}. Received: {name}={value!r}")
    if above is not None and not value > above:
        raise ValueError(f"{name} must be > {above:g}. Received: {name}={value}")
    if minimum is not None and not value >= minimum:
        raise ValueError(f"{name} must be >= {minimum:g}. Received: {name}={value}")
    return int(value) if integer else float(value)


def is_ensemble(teacher_logits) -> bool:
    """Whether `teacher_logits` holds several teachers: shape (batch, teachers, classes)."""
    return len(ops.shape(teacher_logits)) == 3


def mixture_log_probs(log_probs, teacher_weights=None):
    """log(sum_k w_k * p_k) from per-teacher log-probabilities (batch, teachers, classes).

    Args:
        log_probs: Each teacher's log-probabilities.
        teacher_weights: One non-negative weight per teacher, not all zero;
            normalized here. None weighs the teachers equally.

    Returns:
        The mixture's log-probabilities, shape (batch, classes).
    """
    teachers = ops.shape(log_probs)[1]
    if teacher_weights is None:
        weights = ops.ones((teachers,), "float32")
    else:
        weights = ops.cast(ops.convert_to_tensor(teacher_weights), "float32")
    weights = weights / ops.sum(weights)
    # A teacher with weight 0 contributes log(0) = -inf; keep it finite instead.
    log_weights = ops.where(weights > 0, ops.log(ops.maximum(weights, 1e-38)), MASKED_LOG)
    return ops.logsumexp(log_probs + log_weights[None, :, None], axis=1)


def teacher_log_probs(teacher_logits, temperature: float, teacher_weights=None):
    """log softmax(t / T) for one teacher, or the log of the teachers' weighted mean.

    Args:
        teacher_logits: (batch, classes) or (batch, teachers, classes).
        temperature: T > 0.
        teacher_weights: Per-teacher weights for several teachers (see
            `mixture_log_probs`); ignored for one.

    Returns:
        Log-probabilities of shape (batch, classes), float32.
    """
    log_probs = ops.log_softmax(ops.cast(teacher_logits, "float32") / temperature, axis=-1)
    if is_ensemble(teacher_logits):
        return mixture_log_probs(log_probs, teacher_weights)
    return log_probs


def kl_divergence(teacher_log_probs_, student_log_probs):
    """Batch mean of KL(p_t || p_s) from log-probabilities, summed over classes.

    Summed over classes before the batch mean: a mean over classes would shrink
    the loss by the number of classes.
    """
    per_sample = ops.sum(ops.exp(teacher_log_probs_) * (teacher_log_probs_ - student_log_probs),
                         axis=-1)
    return ops.mean(per_sample)


def safe_sqrt(x):
    """sqrt(x) for x >= 0 whose gradient at 0 is 0 rather than inf (and so never nan)."""
    positive = x > 0
    return ops.where(positive, ops.sqrt(ops.where(positive, x, 1.0)), 0.0)
