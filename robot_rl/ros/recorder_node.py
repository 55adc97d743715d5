"""recorder: records topics into a rosbag2 MCAP bag and finished episodes into the dataset.

    ros2 run robot_rl recorder --ros-args --params-file config/record_demos.yaml
    ros2 service call /recorder/start std_srvs/srv/Trigger
    ros2 service call /recorder/stop_success std_srvs/srv/Trigger   # or stop_failure, discard

Every parameter is a field of robot_rl.data.recorder.RecorderConfig. Subscriptions take raw
serialized bytes (`raw=True`): nothing is deserialised on the way to the bag; the callback only
stamps, counts and enqueues, and the core's threads write the bag and commit episodes. A topic
is subscribed once it has a publisher, with QoS that matches the publishers (best effort if any
of them is, else reliable), like `ros2 bag record`.

Services (std_srvs/Trigger): ~/ready (would ~/start record now? nothing started), ~/start,
~/stop_success, ~/stop_failure, ~/discard; the response
says what happened (`success: false` with the reason when refused). The episode meta (task,
source_*, operator) are dynamic parameters: set them before ~/start.

Diagnostics: /diagnostics (diagnostic_msgs/DiagnosticArray, 1 Hz) with per-topic received,
written and dropped counts (drops: gaps in the publishers' publication sequence numbers, and
messages the disk could not take), MB/s, episode counts and the last episode's outcome.
A disk or permission error stops recording: one error line, and the node exits with code 2.

Times: each message's bag log time is its receive time, strictly increasing in the order the
messages were taken (so every bag reader replays that order); with use_sim_time it is the newest
header stamp seen on any recorded topic (the sim time known to have been reached), not /clock at
the callback, which a busy executor can take ahead of the previous tick's messages. The MCAP
publish time is the middleware's source timestamp, as rosbag2 records it: the synchroniser uses it
to put headerless messages (reward, success, commands) on the clock of the stamped topics, so
alignment does not depend on how the executor interleaved the topics.
"""
from __future__ import annotations

import importlib
import json
import sys
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.parameter import Parameter
from rcl_interfaces.msg import SetParametersResult
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_srvs.srv import Trigger

from robot_rl.data.bag import has_header, header_stamp_ns
from robot_rl.data.recorder import Recorder, RecorderConfig
from robot_rl.errors import ConfigError, DataError, RobotRLError
from robot_rl.ros.base_node import BaseNode
from robot_rl.ros.params import config_fields, coerce, declare_config
from robot_rl.ros.spin import run_node

META_PARAMS = ("task", "source_kind", "source_quality", "source_policy", "source_checkpoint", "operator")
# Reader history: deep enough to ride out ~2 s of a starved executor (500 Hz joint states; ~1 MB
# images at 30 Hz), so a busy machine delays messages instead of dropping them.
DEPTH = {"/joint_states": 1000}
SENSOR_DEPTH, STATE_DEPTH = 60, 200


def message_class(msgtype: str):
    """'sensor_msgs/msg/JointState' -> the rclpy message class."""
    package, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"message type {msgtype} is not installed ({e})") from e


class RecorderNode(BaseNode):
    def __init__(self, **kwargs):
        super().__init__("recorder", **kwargs)
        self.config = declare_config(self, RecorderConfig)
        self.recorder = Recorder(self.config, log=self._log)
        self.recorder.now_ns = self._now_ns
        self.sim_time = bool(self.get_parameter("use_sim_time").value)
        self._floor = 0  # under sim time: the newest header stamp seen (sim time is at least that)
        self._failed_reported = False
        self.bag_path = self.recorder.open()
        self._pending = list(self.recorder.topics)  # subscribed once a publisher shows its QoS
        self._subs: dict = {}  # topic -> subscription
        self._subscribe_ready()
        self.create_timer(0.2, self._subscribe_ready)
        self.create_service(Trigger, "~/start", self._on_start)
        self.create_service(Trigger, "~/ready", self._on_ready)
        self.create_service(Trigger, "~/stop_success", lambda req, res: self._on_stop(res, True))
        self.create_service(Trigger, "~/stop_failure", lambda req, res: self._on_stop(res, False))
        self.create_service(Trigger, "~/discard", self._on_discard)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)
        self.create_timer(0.2, self._check_error)
        self.create_timer(0.1, self.recorder.place_deferred)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.get_logger().info(f"recording {len(self.recorder.topics)} topics to {self.bag_path}")

    # ------------------------------------------------------------------ subscriptions

    def _subscribe_ready(self) -> None:
        """Subscribe to each topic once it has a publisher, with QoS that matches every publisher
        (like `ros2 bag record`): reliable unless one of them is best effort."""
        waiting = []
        for spec in self._pending:
            infos = self.get_publishers_info_by_topic(spec.topic)
            if infos:
                best_effort = any(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in infos)
                self._subscribe(spec, self._qos(spec.topic, spec.sensor, best_effort))
            else:
                waiting.append(spec)
        self._pending = waiting

    def _qos(self, topic: str, sensor: bool, best_effort: bool) -> QoSProfile:
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=DEPTH.get(topic, SENSOR_DEPTH if sensor else STATE_DEPTH),
                          reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)

    def _subscribe(self, spec, qos: QoSProfile) -> None:
        cls = message_class(spec.msgtype)
        topic, recorder = spec.topic, self.recorder
        stamped = self.sim_time and has_header(spec.msgtype)
        clock = self.get_clock()

        def on_raw(raw, info):
            if self.sim_time:
                if stamped:
                    stamp = header_stamp_ns(raw)
                    if stamp > self._floor:
                        self._floor = stamp
                t = self._floor
            else:
                t = clock.now().nanoseconds
            gid = info.get("publisher_gid")
            recorder.on_message(topic, raw, t, gid["data"] if gid else None, info.get("publication_sequence_number"),
                                info.get("source_timestamp"))

        # No middleware event handlers (message lost, incompatible QoS): each is one more entity in
        # the executor's wait set, rebuilt for every message; publication-sequence gaps count the
        # losses, and QoS follows the publishers so it cannot be incompatible.
        self._subs[topic] = self.create_subscription(cls, topic, on_raw, qos, raw=True)
        recorder.set_qos(topic, qos.reliability == ReliabilityPolicy.RELIABLE, qos.depth)
        self.get_logger().info(f"subscribed to {topic} ({spec.msgtype}, "
                               f"{'best effort' if qos.reliability == ReliabilityPolicy.BEST_EFFORT else 'reliable'})")

    def _now_ns(self) -> int:
        """The log time of a message received now (see the module docstring)."""
        return self._floor if self.sim_time else self.get_clock().now().nanoseconds

    # ------------------------------------------------------------------ services

    def _answer(self, response, fn):
        try:
            response.message = fn()
            response.success = True
        except RobotRLError as e:
            response.success, response.message = False, str(e)
            self.get_logger().error(str(e))
        return response

    def _not_ready(self) -> str | None:
        """Why an episode started now would miss messages: a frame stream with no connected
        publisher yet, or a topic whose publishers are in the graph but not yet matched to our
        subscription (DDS discovery takes a while, longer on a busy machine). None when ready."""
        waiting = [s.topic for s in self._pending if self.count_publishers(s.topic) > 0]
        waiting += [t for t, sub in self._subs.items() if sub.get_publisher_count() < self.count_publishers(t)]
        # every stream of a frame must be connected: an episode without one of them is refused
        frames = [s.topic for s in self.recorder.sync_config.frame_streams]
        waiting += [t for t in frames if t not in self._subs or self._subs[t].get_publisher_count() == 0]
        return f"not ready: waiting to connect to the publishers of {sorted(set(waiting))}" if waiting else None

    def _on_ready(self, request, response):
        """Whether ~/start would record now (nothing is started): a runner asks before its first reset."""
        reason = self._not_ready()
        response.success, response.message = reason is None, reason or "ready"
        return response

    def _on_start(self, request, response):
        reason = self._not_ready()
        if reason is not None:  # the caller retries (robot-rl episodes does)
            response.success, response.message = False, reason
            return response
        return self._answer(response, lambda: self.recorder.start(wall_ns=time.time_ns()))

    # The markers are placed after the messages sent before the call (wall_ns; see the core's
    # docstring), with the log time of that moment.
    def _on_stop(self, response, success: bool):
        return self._answer(response, lambda: self.recorder.stop(success, wall_ns=time.time_ns()))

    def _on_discard(self, request, response):
        return self._answer(response, lambda: self.recorder.discard(wall_ns=time.time_ns()))

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        fields = config_fields(RecorderConfig)
        updates = {}
        for p in params:
            if p.name == "use_sim_time" or p.name not in fields:
                continue
            if p.name not in META_PARAMS:
                return SetParametersResult(successful=False,
                                           reason=f"{p.name} is fixed while recording; restart the recorder to change it")
            try:
                updates[p.name] = coerce(fields[p.name][0], p.value, p.name)
            except ConfigError as e:
                return SetParametersResult(successful=False, reason=str(e))
        if "source_kind" in updates:
            try:
                RecorderConfig(source_kind=updates["source_kind"])
            except ConfigError as e:
                return SetParametersResult(successful=False, reason=str(e))
        for name, value in updates.items():
            setattr(self.recorder.config, name, value)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ reporting

    def _log(self, level: str, text: str) -> None:
        # one call site per severity: rclpy refuses a call site that changes severity
        if level == "error":
            self.get_logger().error(text)
        elif level == "warn":
            self.get_logger().warning(text)
        else:
            self.get_logger().info(text)

    def _publish_diagnostics(self) -> None:
        d = self.recorder.diagnostics()
        status = DiagnosticStatus(name=f"{self.get_name()}: recorder", hardware_id=d["bag"])
        if d["state"] == "failed":
            status.level, status.message = DiagnosticStatus.ERROR, d["error"]
        elif d["dropped"] or d["episodes_refused"]:
            status.level = DiagnosticStatus.WARN
            status.message = f"{d['state']}: {d['dropped']} messages dropped, {d['episodes_refused']} episodes refused"
        else:
            status.level, status.message = DiagnosticStatus.OK, d["state"]
        values = {k: v for k, v in d.items() if k not in ("topics", "last_result")}
        values["last_result"] = json.dumps(d["last_result"])
        for topic, stats in d["topics"].items():
            for key in ("received", "written", "dropped"):
                values[f"{topic} {key}"] = stats[key]
        status.values = [KeyValue(key=str(k), value=str(v)) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(msg)

    def _check_error(self) -> None:
        if self.recorder.error is not None and not self._failed_reported:
            self._failed_reported = True
            self._publish_diagnostics()
            raise DataError(f"recording stopped: {self.recorder.error}")

    def close(self) -> None:
        self.recorder.close()
        d = self.recorder.diagnostics()
        self.get_logger().info(f"closed bag {d['bag']}: {d['written']} messages, {d['dropped']} dropped, "
                               f"{d['episodes_committed']} episodes committed")


def main(args=None) -> int:
    return run_node(RecorderNode, args)


if __name__ == "__main__":
    sys.exit(main())
