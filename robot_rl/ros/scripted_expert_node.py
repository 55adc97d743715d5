"""scripted_expert: drives the arm through the same topics a learned policy uses.

It acts once per observation: a /joint_states message paired (by stamp) with the
/task/object_poses of the same tick gives one command on /forward_position_controller/commands,
so in the sim's lock-step mode each tick waits for exactly this node. When either observation is
older than `max_age` it holds (publishes nothing). `~/reset` starts a fresh expert episode.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from geometry_msgs.msg import PoseArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from robot_rl.errors import ConfigError, DataError
from robot_rl.ros import msgs
from robot_rl.ros.base_node import BaseNode
from robot_rl.ros.params import declare_config
from robot_rl.ros.spin import run_node
from robot_rl.runtime.safety import is_stale
from robot_rl.runtime.arm import ArmConfig, ArmInterface

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


@dataclass
class ScriptedExpertConfig(ArmConfig):
    task: str = field(default="reach", metadata={"help": "task: reach, push or lift"})
    quality: str = field(default="expert", metadata={"help": "expert, good, medium, poor, or a number in [0, 1]"})
    seed: int = field(default=0, metadata={"help": "seed of the expert's noise"})
    control_dt: float = field(default=0.1, metadata={"help": "control period (s): the step limits are per this period"})
    max_age: float = field(default=0.5, metadata={"help": "hold when observations are older than this (s, node clock)"})
    sync_tolerance: float = field(default=0.02, metadata={"help": "joint states and poses within this (s) are one observation"})

    def __post_init__(self):
        from robot_rl.sim.experts import quality_value

        super().__post_init__()
        try:
            quality_value(float(self.quality))
        except ValueError:
            quality_value(self.quality)  # a level name, or ConfigError
        if self.max_age <= 0 or self.sync_tolerance < 0 or self.control_dt <= 0:
            raise ConfigError("max_age and control_dt must be > 0, sync_tolerance >= 0")

    @property
    def quality_arg(self):
        try:
            return float(self.quality)
        except ValueError:
            return self.quality


class ScriptedExpertNode(BaseNode):
    def __init__(self, **kwargs):
        super().__init__("scripted_expert", **kwargs)
        self.config = c = declare_config(self, ScriptedExpertConfig)
        from robot_rl.sim.experts import ScriptedExpert
        from robot_rl.sim.tasks import TASKS

        self.arm = ArmInterface.build(c, c.control_dt, what=f"expert {c.task}")
        self.expert = ScriptedExpert(c.task, quality=c.quality_arg, seed=c.seed, robot=self.arm.robot)
        self.objects = TASKS[c.task].object_names  # /task/object_poses rows
        self._joints = None  # (stamp, receive_time, joint_pos in the robot's order, joint_vel)
        self._poses = None  # (stamp, receive_time, (K, 7))
        self._acted_stamp = None
        self._held = False
        self.pub = self.create_publisher(Float64MultiArray, "/forward_position_controller/commands", RELIABLE)
        self.create_subscription(JointState, "/joint_states", self._on_joints, RELIABLE)
        self.create_subscription(PoseArray, "/task/object_poses", self._on_poses, RELIABLE)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self._status_every(1.0, lambda: {"task": c.task, "holding": self._held or self._joints is None})
        self.get_logger().info(f"task {c.task}, quality {c.quality}; {self.arm.describe()}")

    def _on_joints(self, msg: JointState) -> None:
        try:
            q, v = self.arm.joint_state(msg.name, msg.position, msg.velocity)
        except DataError as e:
            self.get_logger().error(f"/joint_states: {e}; ignoring the message", throttle_duration_sec=5.0)
            return
        stamp = msgs.from_time(msg.header.stamp)
        if self._joints is None or stamp < self._joints[0] - 1e-6:
            self.arm.reset_guard(q)  # the first measurement, or a restarted sim: clamp from here
        else:
            self.arm.observe(q)
        self._joints = (stamp, self._now(), q, v)
        self._maybe_act()

    def _on_poses(self, msg: PoseArray) -> None:
        try:
            poses = msgs.poses_from_msg(msg)
            if len(poses) != len(self.objects):
                raise DataError(f"{len(poses)} poses; task {self.config.task} has the objects {list(self.objects)}")
        except DataError as e:
            self._error_every("/task/object_poses", f"/task/object_poses: {e}; ignoring the message")
            return
        self._poses = (msgs.from_time(msg.header.stamp), self._now(), poses)
        self._maybe_act()

    def _maybe_act(self) -> None:
        if self._joints is None or self._poses is None:
            return
        j_stamp, j_recv, q, v = self._joints
        p_stamp, p_recv, poses = self._poses
        if j_stamp == self._acted_stamp or abs(j_stamp - p_stamp) > self.config.sync_tolerance:
            return  # already answered, or the other half of this tick has not arrived yet
        if is_stale(min(j_recv, p_recv), self._now(), self.config.max_age):
            if not self._held:
                self.get_logger().warning("observations are stale: holding (no commands)")
            self._held = True
            return
        self._held = False
        self._acted_stamp = j_stamp
        action = self.expert.act({"joint_pos": q, "joint_vel": v, "object_poses": poses})
        result = self.arm.command(action)
        if result.refusal is not None:
            self.get_logger().error(f"expert action refused: {result.refusal}", throttle_duration_sec=5.0)
        self.pub.publish(msgs.array_to_msg(result.command))

    def _on_reset(self, request, response):
        self.expert.reset()
        if self._joints is not None:
            self.arm.reset_guard(self._joints[2])
        response.success, response.message = True, "expert reset"
        return response

    def close(self) -> None:
        self._joints = self._poses = None  # commands stop


def main(args=None) -> int:
    return run_node(ScriptedExpertNode, args)


if __name__ == "__main__":
    sys.exit(main())
