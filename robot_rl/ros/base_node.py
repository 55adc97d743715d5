"""The rclpy Node the robot_rl nodes build on: seconds on the node clock, and warn-once logging.

The node clock is sim time under use_sim_time (/clock), so ages measured with `_now()` are in
the same time as the simulator's stamps. `_warn_once` is for conditions that last (a topic not
publishing yet, an observation of the wrong size): one line per kind until `_warned` is cleared.
"""
from __future__ import annotations

from rclpy.node import Node


class BaseNode(Node):
    def __init__(self, node_name: str, **kwargs):
        super().__init__(node_name, **kwargs)
        self._warned: set[str] = set()  # the keys _warn_once has logged

    def _now(self) -> float:
        """The node clock's time in seconds."""
        return self.get_clock().now().nanoseconds * 1e-9

    def _warn_once(self, key: str, text: str, error: bool = False) -> None:
        """Log `text` (a warning, or an error) the first time `key` comes; nothing after that."""
        if key not in self._warned:
            self._warned.add(key)
            (self.get_logger().error if error else self.get_logger().warning)(text)
