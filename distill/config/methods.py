"""Fill a `loss:` block with its methods' defaults, read from the schema.

Which defaults apply depends on the method (`temperature` is 4 for kd and 2 for
logit_std; dist has none), so they cannot be plain schema defaults. They live
in the schema's `$defs/methods` and are filled here, after validation, so that
the resolved config says every value a run uses. Nothing here imports Keras.

The weights of the two forms (see `distill.losses.build`) are filled too:
`alpha` in the one-method shorthand, `hard_label_weight` and each term's
`weight` with `terms`.
"""

from __future__ import annotations

from distill.config.schema import load_schema

DEFAULT_ALPHA = 0.1
DEFAULT_HARD_LABEL_WEIGHT = 1.0
DEFAULT_TERM_WEIGHT = 1.0


def method_defaults(method: str) -> dict:
    """A method's arguments and their defaults, e.g. {"temperature": 4.0} for kd."""
    methods = load_schema()["$defs"]["methods"]["properties"]
    if method not in methods:
        return {}
    return {name: about["default"] for name, about in methods[method]["properties"].items()}


def _with_defaults(declaration: dict, skip: tuple = ()) -> dict:
    filled = dict(declaration)
    for name, default in method_defaults(declaration.get("method", "")).items():
        if name not in skip:
            filled.setdefault(name, default)
    return filled


def fill_loss(loss: dict) -> dict:
    """Return a schema-valid `loss:` block with every default filled in.

    Blocks that mix the two forms are returned as they are, for the checks to report.
    """
    if "terms" in loss:
        if "method" in loss or "alpha" in loss:
            return dict(loss)
        filled = dict(loss)
        filled.setdefault("hard_label_weight", DEFAULT_HARD_LABEL_WEIGHT)
        filled["terms"] = [_with_defaults({"weight": DEFAULT_TERM_WEIGHT, **term})
                           for term in loss["terms"]]
        return filled
    if "method" not in loss or "hard_label_weight" in loss:
        return dict(loss)
    # The shorthand's alpha weighs the labels: a method's own alpha is never filled in.
    filled = _with_defaults(loss, skip=("alpha",))
    filled.setdefault("alpha", DEFAULT_ALPHA)
    return filled
