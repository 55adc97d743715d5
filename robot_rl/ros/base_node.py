"""The rclpy Node the robot_rl nodes build on: seconds on the node clock, and warn-once logging.

The node clock is sim time under use_sim_time (/clock), so ages measured with `_now()` are in
the same time as the simulator's stamps. `_warn_once(key, text)` is for conditions that last (a
topic not publishing yet, an observation of the wrong size): one line per key.
"""
from __future__ import annotations

from rclpy.node import Node

from robot_rl.runtime.logs import WarnOnce


class BaseNode(Node):
    def __init__(self, node_name: str, **kwargs):
        super().__init__(node_name, **kwargs)
        self._warn_once = WarnOnce(self.get_logger())

    def _now(self) -> float:
        """The node clock's time in seconds."""
        return self.get_clock().now().nanoseconds * 1e-9
