"""Match names a user typed against the names that exist ("did you mean ...?")."""

from __future__ import annotations

import difflib
import inspect
from typing import Iterable

from distill.errors import DeclarationError


def suggest(word: object, choices: Iterable[object]) -> str:
    """Return ` Did you mean 'x'?` for the closest choice, or an empty string."""
    choices = [str(choice) for choice in choices]
    word = str(word)
    by_case = {choice.lower(): choice for choice in choices}
    if word.lower() in by_case:
        return f"Did you mean '{by_case[word.lower()]}'?"
    matches = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not matches:
        matches = difflib.get_close_matches(word.lower(), list(by_case), n=1, cutoff=0.6)
        matches = [by_case[match] for match in matches]
    return f"Did you mean '{matches[0]}'?" if matches else ""


def accepted_arguments(cls: type, *bases: type) -> set[str] | None:
    """Keyword arguments `cls(...)` accepts, or None if it takes arbitrary ones.

    Keras classes pass `**kwargs` on to a base class (`Layer`, `Optimizer`); the
    names of those bases' parameters are added, so that only a true typo is
    flagged.
    """
    names: set[str] = set()
    for klass in (cls,) + bases:
        parameters = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in parameters
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"}
        if klass is cls and not any(p.kind is p.VAR_KEYWORD for p in parameters):
            return names
    return names if bases else None


def check_arguments(cls: type, arguments: Iterable[str], where: tuple, label: str,
                    *bases: type) -> None:
    """Refuse an argument `cls(...)` does not take, suggesting the one meant.

    Args:
        cls: The class the arguments are for.
        arguments: The argument names a config gives.
        where: The declaration path of the arguments; the bad one is appended.
        label: How messages name the class (`Dense`, `Adam`, `kd`).
        bases: Classes `cls` passes `**kwargs` on to (see `accepted_arguments`).

    Raises:
        DeclarationError: for the first unknown argument.
    """
    accepted = accepted_arguments(cls, *bases)
    if accepted is None:
        return
    for argument in arguments:
        if argument not in accepted:
            raise DeclarationError(where + (argument,), f"{label} has no argument '{argument}'.",
                                   suggest(argument, accepted)
                                   or f"Its arguments: {', '.join(sorted(accepted))}.")
