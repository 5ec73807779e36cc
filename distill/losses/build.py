"""Turn a stage's `loss:` block into weighted loss terms."""

from __future__ import annotations

import dataclasses

from distill.errors import DeclarationError
from distill.losses.registry import METHODS


@dataclasses.dataclass(frozen=True)
class Term:
    """One weighted distillation term; `name` names its metric (`<name>_loss`)."""

    name: str
    loss: object  # a keras.distillation.DistillationLoss
    weight: float


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """total = hard_label_weight * CE(y, s) + sum(term.weight * term(t, s))."""

    hard_label_weight: float
    terms: tuple[Term, ...]


def build_loss(declaration: dict) -> LossSpec:
    """Build the loss of a distill stage from its (defaults-filled) `loss:` block.

    The single-method form `{method: kd, temperature: 5, alpha: 0.1}` means
    `alpha * CE + (1 - alpha) * kd`.

    Raises:
        DeclarationError: for an unknown method or an argument the method refuses.
    """
    arguments = dict(declaration)
    method = arguments.pop("method")
    alpha = float(arguments.pop("alpha"))
    if method not in METHODS:
        raise DeclarationError(("method",), f"unknown method '{method}'.",
                               f"Known: {', '.join(sorted(METHODS))}.")
    try:
        loss = METHODS[method](**arguments)
    except (TypeError, ValueError) as error:
        raise DeclarationError((), f"{method}: {error}") from None
    return LossSpec(hard_label_weight=alpha, terms=(Term(method, loss, 1.0 - alpha),))
