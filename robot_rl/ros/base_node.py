"""The rclpy Node the robot_rl nodes build on: seconds on the node clock, warn-once logging, and
subscriptions that never let a message kill the node.

The node clock is sim time under use_sim_time (/clock), so ages measured with `_now()` are in
the same time as the simulator's stamps. `_warn_once(key, text)` is for conditions that last (a
topic not publishing yet, an observation of the wrong size): one line per key. Every callback
validates what it reads (a malformed message is a DataError: one rate-limited error, dropped);
`create_subscription` adds the last line of defence: whatever a callback raises on a message is
logged once per topic per LOG_PERIOD and the message dropped, where rclpy would end the spin and
take the node, and a graph that needs it, down.
"""
from __future__ import annotations

import inspect
import json
import time

from rclpy.node import Node

from robot_rl.runtime.logs import WarnOnce

LOG_PERIOD = 5.0  # s between two "message dropped" lines of one topic


class BaseNode(Node):
    def __init__(self, node_name: str, **kwargs):
        super().__init__(node_name, **kwargs)
        self._warn_once = WarnOnce(self.get_logger())
        self._dropped_logged: dict[str, float] = {}  # topic -> when its last drop was logged

    def _now(self) -> float:
        """The node clock's time in seconds."""
        return self.get_clock().now().nanoseconds * 1e-9

    def _status_every(self, period: float, status) -> None:
        """~/status (std_msgs/String, JSON, transient local) every `period` s from `status()`:
        whether the node holds, and its counters, for a monitor or a test to read."""
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from std_msgs.msg import String

        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        pub = self.create_publisher(String, "~/status", latched)
        self.create_timer(period, lambda: pub.publish(String(data=json.dumps(status()))))

    def _error_every(self, key: str, text: str, period: float = LOG_PERIOD) -> None:
        """An error line at most once per `period` per `key` (a topic): rclpy's own throttle is
        per call site, so one converter serving several topics would hide all but the first."""
        now = time.monotonic()
        if now - self._dropped_logged.get(key, -period) >= period:
            self._dropped_logged[key] = now
            self.get_logger().error(text)

    def create_subscription(self, msg_type, topic, callback, qos_profile, **kwargs):
        def run(*args):
            try:
                callback(*args)
            except Exception as e:  # noqa: BLE001 - a message must never end the node
                if not self.context.ok():
                    raise  # shutting down: not the message's fault
                self._error_every(f"dropped:{topic}", f"{topic}: message dropped ({type(e).__name__}: {e})")

        try:  # rclpy passes the message info to a callback that takes two arguments: keep the arity
            inspect.signature(callback).bind(object())
            guarded = lambda msg: run(msg)  # noqa: E731
        except TypeError:
            guarded = lambda msg, info: run(msg, info)  # noqa: E731
        return super().create_subscription(msg_type, topic, guarded, qos_profile, **kwargs)
