"""Config dataclasses <-> ROS parameters, on a real (in-process) rclpy node."""
from dataclasses import dataclass, field

import pytest

from robot_rl.errors import ConfigError
from robot_rl.ros.params import coerce, config_fields, declare_config, field_kind


@dataclass
class Demo:
    rate_hz: float = field(default=10.0, metadata={"help": "control rate"})
    name: str = "x"
    count: int = 3
    flag: bool = False
    cams: tuple[str, ...] = ()
    gains: tuple[float, ...] = (1.0, 2.0)
    pose: tuple[float, ...] = ()

    def __post_init__(self):
        if self.count < 0:
            raise ConfigError("count must be >= 0")


def test_kinds_and_fields():
    assert field_kind(tuple[str, ...]) == "str[]"
    assert config_fields(Demo)["rate_hz"] == ("float", 10.0, "control rate")
    assert coerce("float", 3) == 3.0 and coerce("float[]", [1, 2.5]) == (1.0, 2.5)
    with pytest.raises(ConfigError):
        coerce("int", "3")


def _node(ros_context, overrides):
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    return Node("params_test", context=ros_context,
                parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])


def test_declare_config_defaults_and_overrides(ros_context):
    node = _node(ros_context, {"rate_hz": 20, "cams": ["front"], "flag": True})
    try:
        cfg = declare_config(node, Demo)
        assert cfg == Demo(rate_hz=20.0, cams=("front",), flag=True)
        assert node.describe_parameter("rate_hz").description == "control rate"
    finally:
        node.destroy_node()


def test_an_empty_float_list_takes_integers_and_floats(ros_context):
    for given, expected in (([0, 0, 1], (0.0, 0.0, 1.0)), ([0.5, 1.0], (0.5, 1.0))):
        node = _node(ros_context, {"pose": given})
        try:
            assert declare_config(node, Demo).pose == expected
        finally:
            node.destroy_node()
    node = _node(ros_context, {})
    try:
        assert declare_config(node, Demo).pose == ()
    finally:
        node.destroy_node()


def test_declare_config_validation_error(ros_context):
    node = _node(ros_context, {"count": -1})
    try:
        with pytest.raises(ConfigError, match="params_test: count must be >= 0"):
            declare_config(node, Demo)
    finally:
        node.destroy_node()
