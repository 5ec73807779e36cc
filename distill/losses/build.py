"""Turn a stage's `loss:` block into weighted loss terms.

A distill stage's loss is always

    loss = hard_label_weight * CE(labels, s) + sum_i weight_i * term_i(t, s)

and the `loss:` block declares it in one of two forms:

    # several terms: hard_label_weight (default 1.0) and each term's weight (default 1.0)
    loss:
      hard_label_weight: 0.1
      terms:
        - {method: kd, weight: 0.9, temperature: 4}
        - {method: dist, weight: 1.0, beta: 1, gamma: 1, tau: 1}

    # one method, the classic shorthand: alpha * CE + (1 - alpha) * method
    loss: {method: kd, temperature: 4, alpha: 0.1}

`alpha` (shorthand) and `hard_label_weight` (terms) both weigh the hard labels;
each form takes only its own. `dkd` has an `alpha` of its own (the TCKD
weight), so it is declared as a term. Each term's metric is `<name>_loss`;
`name` defaults to the method, numbered (`kd_1`, `kd_2`) when a method appears
more than once.
"""

from __future__ import annotations

import collections
import dataclasses

from distill.errors import DeclarationError
from distill.losses.registry import METHODS
from distill.naming import check_arguments, suggest

DEFAULT_ALPHA = 0.1
DEFAULT_HARD_LABEL_WEIGHT = 1.0
DEFAULT_TERM_WEIGHT = 1.0
# Methods with an argument named like the shorthand's `alpha`.
NOT_IN_SHORTHAND = ("dkd",)
# Term names whose metric (`<name>_loss`) the stage already logs.
RESERVED_NAMES = ("ce",)


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


def term_names(terms: list[dict]) -> list[str]:
    """Metric names of declared terms: `name`, else the method, numbered when repeated."""
    counts = collections.Counter(term["method"] for term in terms if "name" not in term)
    seen: collections.Counter = collections.Counter()
    names = []
    for term in terms:
        if "name" in term:
            names.append(term["name"])
            continue
        method = term["method"]
        seen[method] += 1
        names.append(method if counts[method] == 1 else f"{method}_{seen[method]}")
    return names


def build_method(method: str, arguments: dict, path: tuple = ()) -> object:
    """Make one distillation loss by its method name and arguments.

    Raises:
        DeclarationError: for an unknown method or argument, or a value the method refuses.
    """
    if method not in METHODS:
        raise DeclarationError(path + ("method",), f"unknown method '{method}'.",
                               suggest(method, METHODS) or f"Known: {', '.join(sorted(METHODS))}.")
    cls = METHODS[method]
    check_arguments(cls, arguments, path, method)
    try:
        return cls(**arguments)
    except (TypeError, ValueError) as error:
        raise DeclarationError(path, f"{method}: {error}") from None


def build_loss(declaration: dict) -> LossSpec:
    """Build the loss of a distill stage from its `loss:` block (either form).

    Arguments a block leaves out take the method's defaults.

    Raises:
        DeclarationError: for an unknown method or argument, a value a method
            refuses, or keys of one form used in the other.
    """
    arguments = dict(declaration)
    if "terms" in arguments:
        for key in ("method", "alpha"):
            if key in arguments:
                raise DeclarationError((key,), f"'{key}' belongs to the one-method form; with "
                                       "'terms', give each term its method and arguments, and "
                                       "weigh the labels with hard_label_weight.")
        hard_label_weight = float(arguments.pop("hard_label_weight", DEFAULT_HARD_LABEL_WEIGHT))
        declared = arguments.pop("terms")
        if arguments:
            key = next(iter(arguments))
            raise DeclarationError((key,), f"with 'terms', '{key}' goes inside a term.")
        names = term_names(declared)
        for index, name in enumerate(names):
            where = ("terms", index, "name") if "name" in declared[index] else ("terms", index)
            if name in names[:index]:
                raise DeclarationError(where, f"two terms are named '{name}', so both would log "
                                       f"{name}_loss.", "Give each term its own 'name'.")
            if name in RESERVED_NAMES:
                raise DeclarationError(where, f"a term cannot be named '{name}': {name}_loss is "
                                       "the hard-label cross-entropy.")
        terms = []
        for index, (term, name) in enumerate(zip(declared, names)):
            term = dict(term)
            method, weight = term.pop("method"), float(term.pop("weight", DEFAULT_TERM_WEIGHT))
            term.pop("name", None)
            terms.append(Term(name, build_method(method, term, ("terms", index)), weight))
        return LossSpec(hard_label_weight=hard_label_weight, terms=tuple(terms))

    if "method" not in arguments:
        raise DeclarationError((), "a loss needs 'method' (one method) or 'terms' (several).",
                               "E.g. {method: kd, temperature: 4, alpha: 0.1}.")
    if "hard_label_weight" in arguments:
        raise DeclarationError(("hard_label_weight",), "the one-method form weighs the labels "
                               "with alpha (the method gets 1 - alpha); hard_label_weight "
                               "goes with 'terms'.")
    method = arguments.pop("method")
    alpha = float(arguments.pop("alpha", DEFAULT_ALPHA))
    if method in NOT_IN_SHORTHAND:
        raise DeclarationError(("method",), f"{method} has an 'alpha' of its own, so it cannot "
                               "use the one-method form, whose alpha weighs the labels.",
                               f"Declare it as a term: {{hard_label_weight: 1.0, terms: "
                               f"[{{method: {method}}}]}}.")
    loss = build_method(method, arguments)
    return LossSpec(hard_label_weight=alpha, terms=(Term(method, loss, 1.0 - alpha),))
