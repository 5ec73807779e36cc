"""The one exception family of distill.

Every error a user can cause or fix is a `DistillError`. Each carries the exit
code the CLI maps it to, and renders as one short paragraph that names the
place (file, line, key), what was expected and what was found. The CLI prints
`str(error)` without a traceback; anything that is not a `DistillError` is a
bug in distill and is shown with its traceback.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

EXIT_USAGE = 2  # the input is wrong: a config, a path, a dataset
EXIT_FAILED = 1  # the input was fine but the work failed (NaN loss, full disk)
EXIT_INTERRUPTED = 130  # the conventional 128 + SIGINT


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located as precisely as known.

    Attributes:
        message: What was expected and what was found.
        file: The file it is in, as the user named it.
        line: 1-based line in `file`.
        column: 1-based column in `file`.
        key: The key path inside the file, e.g. `stages[1].loss.temperature`.
        hint: How to fix it, when that is clear.
        path: The key path as a tuple (("stages", 1, "loss")), for programs.
    """

    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    key: str | None = None
    hint: str | None = None
    path: tuple | None = dataclasses.field(default=None, compare=False)

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
        prefix = ": ".join(part for part in (where, self.key) if part)
        text = f"{prefix}: {self.message}" if prefix else self.message
        if self.hint:
            text += f" {self.hint}"
        return text


class DistillError(Exception):
    """Base class of every error distill reports to a user."""

    exit_code = EXIT_FAILED


class ConfigError(DistillError):
    """An experiment file (or an override of it) is wrong.

    Holds every problem found in one pass, so that a user fixes them all at once.
    """

    exit_code = EXIT_USAGE

    def __init__(self, problems: Problem | Sequence[Problem]):
        if isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


class DataError(DistillError):
    """A dataset cannot be found or read."""

    exit_code = EXIT_USAGE


class RunError(DistillError):
    """A run started but could not finish (NaN loss, unwritable folder...).

    Attributes:
        run_dir: The run folder that keeps what was finished, if one exists.
    """

    def __init__(self, message: str, run_dir: str | None = None):
        self.run_dir = run_dir
        super().__init__(message)


class RunInterrupted(RunError):
    """The user stopped a run (Ctrl-C); finished work is kept in `run_dir`."""

    exit_code = EXIT_INTERRUPTED


class DeclarationError(ValueError):
    """A part of a declaration is wrong; raised by the builders, located by config.

    Builders (models, optimizers, losses) know the declaration they were given,
    not the file it came from. They raise this with `path` relative to that
    declaration; `distill.config` turns it into a located `ConfigError`.

    Attributes:
        path: Key path inside the declaration, e.g. ("layers", 2).
        message: What was expected and what was found.
        hint: How to fix it, when that is clear.
    """

    def __init__(self, path: tuple, message: str, hint: str | None = None):
        self.path = tuple(path)
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} {hint}")


class RunFolderError(DistillError):
    """A run folder named by the user is missing, is not a run, or cannot be resumed."""

    exit_code = EXIT_USAGE
