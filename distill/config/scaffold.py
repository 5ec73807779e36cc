"""Starting configs for `distill init`: commented templates that validate and run."""

from __future__ import annotations

import os
import re
from importlib import resources

from distill.errors import ConfigError, Problem

DEFAULT_TEMPLATE = "mlp-mnist"


def template_names() -> list[str]:
    """The shipped templates, e.g. `mlp-mnist`, `cnn-fashion-mnist`."""
    folder = resources.files("distill.config").joinpath("templates")
    return sorted(entry.name[:-5] for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def render(template: str, path: str) -> str:
    """The text of `template` for a file at `path` (its name names the experiment).

    Raises:
        ConfigError: for an unknown template.
    """
    names = template_names()
    if template not in names:
        from distill.naming import suggest  # noqa: PLC0415

        raise ConfigError(Problem(f"unknown template '{template}'.", key="--template",
                                  hint=suggest(template, names) or f"Templates: {', '.join(names)}."))
    text = resources.files("distill.config").joinpath("templates", f"{template}.yaml").read_text(
        "utf-8")
    stem = os.path.splitext(os.path.basename(path))[0]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).lstrip("_.-") or "experiment"
    return text.replace("__NAME__", name).replace("__FILE__", path)


def write_template(template: str, path: str, force: bool = False) -> None:
    """Write a starting config to `path`; refuses to overwrite unless `force`.

    Raises:
        ConfigError: if the file exists (and not `force`) or cannot be written.
    """
    text = render(template, path)
    if os.path.exists(path) and not force:
        raise ConfigError(Problem("already exists; distill init does not overwrite files.",
                                  file=path, hint="Choose another path, or pass --force."))
    try:
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as error:
        raise ConfigError(Problem(f"cannot write the file: {error.strerror}.", file=path)) from None
