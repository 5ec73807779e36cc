"""The distillation methods by their YAML names (`method: kd`)."""

from __future__ import annotations

from typing import Callable

METHODS: dict[str, type] = {}


def register_method(name: str) -> Callable[[type], type]:
    """Class decorator: make a distillation loss available as `method: <name>`."""

    def register(cls: type) -> type:
        if name in METHODS:
            raise ValueError(f"distillation method {name!r} is registered twice")
        METHODS[name] = cls
        cls.method = name
        return cls

    return register
