"""A checkpoint's config.json read strictly: every field of the config there, each of its type.

A field missing from an edited or truncated config.json would silently take today's default and
the same weights would act differently (with `obs_keys` deleted a diffusion policy acted 0.5 rad
off); a value of another type fails much later, deep inside a forward pass. Both are one line,
naming the file, at load.
"""
from __future__ import annotations

import dataclasses

from robot_rl.errors import ConfigError


def check_fields(cls, values: dict) -> None:
    """Every field of dataclass `cls` is in `values`, with a value of its default's kind."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    missing = sorted(set(fields) - set(values))
    if missing:
        raise ConfigError(f"fields {missing} are missing (an edited or truncated config.json?)")
    for name, f in fields.items():
        default = f.default
        if default is dataclasses.MISSING:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if not _same_kind(default, values[name]):
            raise ConfigError(f"field {name} is {values[name]!r}, expected a {type(default).__name__} like {default!r}")


def _same_kind(default, value) -> bool:
    """A JSON value fits a field whose default is `default` (ints are floats; lists are tuples; None: anything)."""
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and (
            isinstance(default, float) or isinstance(value, int))
    if isinstance(default, (tuple, list)):
        return isinstance(value, (tuple, list))
    if isinstance(default, dict):
        return isinstance(value, dict)
    return isinstance(value, type(default))
