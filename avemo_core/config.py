"""Frozen, flat, validated config dataclasses that round-trip through plain dicts.

Saved data and checkpoints carry their configs as dicts (`to_dict`), and `from_dict` rebuilds the
exact object, refusing keys it does not know so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Self


class ConfigError(ValueError):
    """A config value is out of range or a config dict does not match its class."""


@dataclasses.dataclass(frozen=True)
class FrozenConfig:
    """Base for every component config: subclasses are frozen dataclasses with a `validate`."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError when a field is out of range; subclasses extend it."""

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {unknown}")
        kwargs = {}
        for key, value in data.items():
            kwargs[key] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)


def require(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless condition holds: one line per rule in `validate`."""
    if not condition:
        raise ConfigError(message)
