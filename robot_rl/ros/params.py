"""ROS parameters <-> config dataclasses, so every node declares exactly its config's fields.

Each dataclass field becomes one parameter with the same name, its default, and a descriptor
whose description is the field's `metadata["help"]`. Doubles accept integers from YAML/CLI
(`rate_hz: 10`), and empty-list defaults are declared typed so a params file may omit them.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import ParameterUninitializedException
from rclpy.parameter import Parameter

from robot_rl.errors import ConfigError

_SCALARS = {bool: "bool", int: "int", float: "float", str: "str"}
_ARRAY_TYPES = {"bool": Parameter.Type.BOOL_ARRAY, "int": Parameter.Type.INTEGER_ARRAY,
                "float": Parameter.Type.DOUBLE_ARRAY, "str": Parameter.Type.STRING_ARRAY}


def field_kind(annotation) -> str:
    """'bool' | 'int' | 'float' | 'str' or the same with '[]' for tuple[X, ...] fields."""
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if typing.get_origin(annotation) in (tuple, list):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        if len(set(args)) == 1 and args[0] in _SCALARS:
            return _SCALARS[args[0]] + "[]"
    raise TypeError(f"unsupported parameter type {annotation!r}")


def config_fields(cls) -> dict[str, tuple[str, Any, str]]:
    """{name: (kind, default, help)} for a config dataclass: what a node declares."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out[f.name] = (field_kind(hints[f.name]), default, f.metadata.get("help", ""))
    return out


def coerce(kind: str, value, name: str = "?"):
    """A parameter value converted to the field's Python type, or ConfigError."""
    def one(k, v):
        if k == "float" and isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        if k == "int" and isinstance(v, int) and not isinstance(v, bool):
            return v
        if k == "bool" and isinstance(v, bool):
            return v
        if k == "str" and isinstance(v, str):
            return v
        raise ConfigError(f"parameter {name!r} must be {kind}, got {value!r}")

    if kind.endswith("[]"):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"parameter {name!r} must be a list of {kind[:-2]}, got {value!r}")
        return tuple(one(kind[:-2], v) for v in value)
    return one(kind, value)


def declare_config(node, cls):
    """Declare one parameter per field of `cls` on `node`; return the validated config."""
    values = {}
    for name, (kind, default, help_text) in config_fields(cls).items():
        floaty = kind.startswith("float")
        descriptor = ParameterDescriptor(description=help_text, dynamic_typing=floaty)
        if kind.endswith("[]") and not default and floaty:
            node.declare_parameter(name, None, descriptor)  # untyped: [0, 0, 1] (integers) is a float list too
        elif kind.endswith("[]") and not default:
            node.declare_parameter(name, _ARRAY_TYPES[kind[:-2]], descriptor)
        else:
            node.declare_parameter(name, list(default) if kind.endswith("[]") else default, descriptor)
        try:
            value = node.get_parameter(name).value
        except ParameterUninitializedException:
            value = default
        values[name] = coerce(kind, default if value is None else value, name)
    try:
        return cls(**values)
    except (ValueError, TypeError, ConfigError) as e:
        raise ConfigError(f"node {node.get_name()}: {e}") from e
