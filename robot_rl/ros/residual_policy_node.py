"""residual_policy: ResFiT on a live arm. A learned per-step correction on top of any base policy.

This file is the ROS side (parameters, topics, callbacks, publishing); the rules below run in
robot_rl/runtime/residual_runner.py, without ROS.

The base is a black box that publishes its chosen chunks on /policy/action_chunk
(JointTrajectory stamped with the observation time, point j at j * dt; e.g. the diffusion_policy
node with `publish_commands: false`). This node sends the commands:
a = clip(base + scale * tanh(f(o, base))) with the actor of `residual_checkpoint` (with none
the residual is zero: the base exactly), through CommandGuard, on
/forward_position_controller/commands. The arm (`robot`, `joint_names`, `joint_name_map`, step
limits) is robot_rl.runtime.arm's ArmConfig: joint states and the base's chunks are read by
name, commands go out in the controller's order, a residual of another robot is refused.

Ticks. One per /joint_states message due every `control_dt` (every sim message, a subsample of
a faster joint_state_broadcaster). The observation is the residual's `obs_keys`: joint_pos /
joint_vel from /joint_states (by name), ee_pos / ee_quat from forward kinematics, object_poses
from /task/object_poses within `sync_tolerance` of the joint states, base_features (a residual on a
point-cloud or RGB base, without object poses) from the frozen encoder of `base_checkpoint` on that
base's camera topics (points_camera, points_source, camera_link / camera_pose as the
diffusion_policy node reads them: runtime/camera_feed.py); derived keys (object_rel,
target_rel: policies/features.py) from those and the tick's base action, and chunk_end_rel /
chunk_left from where that action sits in its chunk (policies/chunk_context.py; the chunk's last
`chunk_lead` actions only bridge the base's next inference). The base action for the
tick's time comes from the latest chunk through ChunkExecutor (actions whose time has passed
are skipped); a tick whose chunk has not arrived yet is answered when it arrives.

Holding. When an observation is older than `max_age`, or no base action comes for a tick
within `max_age`, the node commands nothing new (one warning per spell).

Episodes. /sim/episode_start (latched, stamped with the episode's first observation) resets the
chunk, the guard's reference and the transition chain at that observation; chunks stamped
before it are dropped. Stamps going back do the same.

Learning (`learn: true`). robot_rl.policies.residual.online: exploration noise on the executed
action, transitions (obs, base, executed command, reward, next obs, next base) with the reward
from /task/success (`reward: success`, the sparse reward of `robot-rl train residual`) or
/task/reward, terminal on success; TD3 updates in a learner thread (`utd_ratio` per
transition after `warmup_steps`). `out_dir/checkpoint` every `checkpoint_every` updates and at
shutdown, with the online buffer as `out_dir/replay.npz`. The learning knobs set to -1 keep the
checkpoint's values (ResidualConfig's defaults without a checkpoint). With `demo_dataset` and
`base_checkpoint` (the same base, run offline: a checkpoint folder, expert:<task> or hold) the demos
are relabelled into the demo buffer first; a topic base cannot relabel them.
"""
from __future__ import annotations

import sys

from geometry_msgs.msg import PoseArray
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float32, Float64MultiArray, Header
from trajectory_msgs.msg import JointTrajectory

from robot_rl.errors import DataError
from robot_rl.ros import msgs
from robot_rl.ros.base_node import BaseNode
from robot_rl.ros.observation_topics import subscribe_observation
from robot_rl.ros.params import declare_config
from robot_rl.ros.spin import run_node
from robot_rl.runtime.residual_runner import ResidualPolicyConfig, ResidualRunner, chunk_on_grid

__all__ = ["ResidualPolicyConfig", "ResidualPolicyNode", "chunk_on_grid", "main"]

COMMANDS = "/forward_position_controller/commands"
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class ResidualPolicyNode(BaseNode):
    def __init__(self, **kwargs):
        super().__init__("residual_policy", **kwargs)
        self.config = c = declare_config(self, ResidualPolicyConfig)
        self.pub_cmd = self.create_publisher(Float64MultiArray, COMMANDS, RELIABLE)
        self.runner = ResidualRunner(c, self.get_logger(), self._now,  # a bad checkpoint: one line, exit 2
                                     command=lambda command: self.pub_cmd.publish(msgs.array_to_msg(command)))
        # Created before /joint_states: when both are ready, the episode start, this tick's reward
        # and poses are taken first (the sim publishes them before the joint states).
        self.create_subscription(Header, "/sim/episode_start",
                                 lambda m: self.runner.episode_start(msgs.from_time(m.stamp)), LATCHED)
        self.create_subscription(Float32, "/task/reward", lambda m: self.runner.reward(m.data), RELIABLE)
        self.create_subscription(Bool, "/task/success", lambda m: self.runner.success(m.data), RELIABLE)
        if self.runner.needs_poses:
            self.create_subscription(PoseArray, "/task/object_poses", self._on_poses, RELIABLE)
        for topic in self.runner.camera_topics:  # a perception base's cameras: base_features
            subscribe_observation(self, topic, self.runner, c)
        self.create_subscription(JointTrajectory, "/policy/action_chunk", self._on_chunk, RELIABLE)
        self.create_subscription(JointState, "/joint_states", self._on_joints, RELIABLE)
        self.create_timer(c.max_age / 2, self.runner.watchdog)
        self._status_every(1.0, self.runner.status)

    def _on_poses(self, msg: PoseArray) -> None:
        try:
            poses = msgs.poses_from_msg(msg)
        except DataError as e:
            self.get_logger().error(f"/task/object_poses: {e}", throttle_duration_sec=5.0)
            return
        self.runner.poses(msgs.from_time(msg.header.stamp), poses)

    def _on_joints(self, msg: JointState) -> None:
        self.runner.joint_state(msg.name, msg.position, msg.velocity, msgs.from_time(msg.header.stamp))

    def _on_chunk(self, msg: JointTrajectory) -> None:
        try:
            names, times, positions = msgs.trajectory_from_msg(msg)
        except DataError as e:
            self.get_logger().error(f"/policy/action_chunk: {e}", throttle_duration_sec=5.0)
            return
        self.runner.base_chunk(names, times, positions, msgs.from_time(msg.header.stamp))

    def close(self) -> None:
        self.runner.close()


def main(args=None) -> int:
    return run_node(ResidualPolicyNode, args)


if __name__ == "__main__":
    sys.exit(main())
