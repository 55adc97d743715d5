"""diffusion_policy: a diffusion policy checkpoint driving the arm through ros2_control topics.

This file is the ROS side (parameters, topics, callbacks, publishing); every rule below runs in
robot_rl/runtime/diffusion_runner.py, without ROS.

The arm. `robot` (empty: the robot the checkpoint records), `joint_names` (the controller's
order), `joint_name_map` and the step limits are robot_rl.runtime.arm's ArmConfig: /joint_states
is read by name onto the checkpoint's joint order, commands go out in the controller's order, and
a checkpoint of another robot, or joint names that do not match, is refused at start.

Observations. The checkpoint's `obs_keys` decide the subscriptions: joint_pos / joint_vel from
/joint_states (by name, extra joints ignored), ee_pos / ee_quat computed from those joint
positions with the robot's forward kinematics (robot_rl.robot.kinematics, the TCP the
simulator reports), object_poses from /task/object_poses, `<cam>_rgb` from
/camera/<cam>/image_raw, `<cam>_depth` from /camera/<cam>/depth/image_raw, and points from
/camera/<points_camera>/points. Topic names are remappable with `--ros-args -r`.

Control ticks. A tick is a /joint_states message whose stamp is due (one per `control_dt` of
observation time: every message of the simulator, a subsample of a faster
joint_state_broadcaster). It samples the latest message of every other observation topic (a
tick waits, without answering, for one stamped within `sync_tolerance` of the joint states),
appends the frame to the policy's observation history, and asks the chunk executor
(robot_rl.runtime.chunk_executor) for this tick's action. A tick never runs inference: a
chunk request hands the observation history to the worker thread, which runs
`sample_chunks` and delivers the chunk under the node's lock. Requests come every Ta ticks and
a chunk holds Ta + `request_lead` actions, so with inference faster than `request_lead` ticks
every tick is answered at once; a tick with no action waits and is answered the moment its
chunk arrives (in a lock-step simulator with request_lead 0 this is exactly
`DiffusionPolicy.act`). Latency compensation: a chunk is stamped with its observation's time
and the actions whose time has passed on arrival are skipped. Every tick is answered exactly
once (lock-step simulators count answers): a waiting tick overtaken by the next one is answered
with the last safe command.

Outputs. Per answered tick one command on /forward_position_controller/commands
(Float64MultiArray in `joint_names` order), always through CommandGuard (joint limits, max step
per tick from the URDF's velocity limits, scaled by the time since the previous command;
non-finite or wrong-length actions are refused with a logged error and the last safe command is
sent instead). Each executed chunk on /policy/action_chunk (JointTrajectory:
header.stamp = observation time, point j at time_from_start j * control_dt, Ta + request_lead
points). With `num_samples` N > 1, the N chunks sampled from the same observation on
/policy/candidates (layout in robot_rl/ros/candidates.py; the node executes candidate 0).
/policy/action_chunk carries the chunk that drives the arm, so it has one publisher: with
`publish_commands: false` and N > 1 the node is a pure candidate generator (a steering node
chooses, commands and publishes the chosen chunk there) and publishes no /policy/action_chunk;
with N == 1 it still publishes its chunk there (the base of a residual node). A
JSON status on ~/status (transient local): loaded checkpoint, counts, inference time. At log
level debug, one line per chunk with its inference and hand-over times.

Staleness. When a needed observation is older than `max_age` (another topic's stamp vs the
joint states' stamp, or the joint states received longer ago than that on the node clock) the
node holds position: it commands nothing new, logging one warning until observations are fresh
again.

Resets. The simulator announces each episode on /sim/episode_start (std_msgs/Header, latched,
stamped with the episode's first observation time, published before that observation): the node
resets right before ticking that observation, so no action of the old episode reaches the new
one. ~/reset (std_srvs/Trigger), a backwards jump of the node clock (/clock under use_sim_time)
and /joint_states stamps that go back also reset the observation history, the chunk in execution
and the request in flight (its chunk is dropped when it arrives). The i-th reset seeds the
policy's noise with `seed + i`. The simulator's stamps keep increasing across
/sim/reset, so an episode runner calls ~/reset right after /sim/reset (in that order: a chunk
from the old episode then runs for at most the ticks between the two calls).

Hot reload. Setting the `checkpoint` parameter (or publishing a path on ~/load_checkpoint,
std_msgs/String) loads the new checkpoint in the worker thread, warms it up, and swaps it in
atomically on the executor thread (the new model starts from a fresh history). A path that is
not a checkpoint folder is refused at once; one that fails to load logs one error, keeps the
old model and sets the parameter back. The other parameters are read at start-up only.
"""
from __future__ import annotations

import json
import sys

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import JumpThreshold
from rclpy.duration import Duration
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, Header, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from robot_rl.ros import msgs
from robot_rl.ros.base_node import BaseNode
from robot_rl.ros.candidates import candidates_to_msg
from robot_rl.ros.observation_topics import subscribe_observation
from robot_rl.ros.params import config_fields, declare_config
from robot_rl.ros.spin import run_node
from robot_rl.runtime.diffusion_runner import DiffusionPolicyConfig, DiffusionRunner, LoadedPolicy, Outputs, topic_for

__all__ = ["DiffusionPolicyConfig", "DiffusionPolicyNode", "topic_for", "main"]

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
COMMANDS = "/forward_position_controller/commands"


class DiffusionPolicyNode(BaseNode):
    def __init__(self, **kwargs):
        super().__init__("diffusion_policy", **kwargs)
        self.config = c = declare_config(self, DiffusionPolicyConfig)
        self._fields = set(config_fields(DiffusionPolicyConfig))
        self._subs: dict[str, object] = {}
        self._reverting = False

        self.pub_cmd = self.create_publisher(Float64MultiArray, COMMANDS, RELIABLE)
        # candidates only (num_samples > 1, no commands): the steering node owns /policy/action_chunk
        self.pub_chunk = (self.create_publisher(JointTrajectory, "/policy/action_chunk", RELIABLE)
                          if c.publish_commands or c.num_samples == 1 else None)
        self.pub_candidates = (self.create_publisher(JointTrajectory, "/policy/candidates", RELIABLE)
                               if c.num_samples > 1 else None)
        self.pub_status = self.create_publisher(String, "~/status", LATCHED)
        self._swap = self.create_guard_condition(self._on_loaded)
        self.runner = DiffusionRunner(c, self.get_logger(), self._now, Outputs(
            command=lambda command: self.pub_cmd.publish(msgs.array_to_msg(command)),
            chunk=self._publish_chunk,
            status=lambda status: self.pub_status.publish(String(data=json.dumps(status))),
            loaded=self._swap.trigger,
            alive=self.context.ok))
        # Created before /joint_states so that, when both are ready, the episode start is seen first.
        self.create_subscription(Header, "/sim/episode_start",
                                 lambda m: self.runner.episode_start(msgs.from_time(m.stamp)), LATCHED)
        self.create_subscription(JointState, "/joint_states", self._on_joints, RELIABLE)
        self.create_subscription(String, "~/load_checkpoint", self._on_load_topic, RELIABLE)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._jump = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-1_000_000), on_clock_change=False),
            post_callback=self._on_clock_jump)
        self.create_timer(c.max_age / 2, self.runner.watchdog)

        if c.checkpoint:
            self._install(self.runner.prepare(c.checkpoint))  # a bad checkpoint: one line, exit 2
        else:
            self.get_logger().warning("no checkpoint: holding until one is set (parameter checkpoint, "
                                      "or a path on ~/load_checkpoint)")
            self.runner.publish_status()

    # ------------------------------------------------------------------ loading
    def _install(self, model: LoadedPolicy) -> None:
        """Subscribe to the checkpoint's observation topics, then swap it in (executor thread)."""
        for topic in model.topics:
            if topic not in self._subs:
                self._subs[topic] = self._subscribe(topic)
        self.runner.install(model)

    def _subscribe(self, topic: str):
        return subscribe_observation(self, topic, self.runner, self.config)

    def _on_set_parameters(self, params) -> SetParametersResult:
        for p in params:
            if p.name in self._fields and p.name != "checkpoint":
                return SetParametersResult(successful=False,
                                           reason=f"{p.name} is read at start-up only; restart the node to change it")
        for p in params:
            if p.name == "checkpoint" and not self._reverting:
                refused = self.runner.request_load(p.value)
                if refused:
                    self.get_logger().error(refused)
                    return SetParametersResult(successful=False, reason=refused)
        return SetParametersResult(successful=True)

    def _on_load_topic(self, msg: String) -> None:
        self.set_parameters([Parameter("checkpoint", Parameter.Type.STRING, msg.data)])

    def _on_loaded(self) -> None:
        """Executor thread: the inference thread finished a load."""
        result = self.runner.take_loaded()
        if result is None:
            return
        path, model, error = result
        if error is None:
            self._install(model)
            return
        keep = self.runner.model.path if self.runner.model else ""
        self.get_logger().error(f"checkpoint {path}: {error}; keeping {keep or 'no checkpoint'}")
        self._reverting = True
        try:
            self.set_parameters([Parameter("checkpoint", Parameter.Type.STRING, keep)])
        finally:
            self._reverting = False
        self.runner.publish_status()

    # ------------------------------------------------------------------ callbacks
    def _on_joints(self, msg: JointState) -> None:
        self.runner.joint_state(msg.name, msg.position, msg.velocity, msgs.from_time(msg.header.stamp))

    def _publish_chunk(self, names, stamp: float, windows: np.ndarray) -> None:
        dt = self.config.control_dt
        if self.pub_chunk is not None:
            chosen = windows[0]
            self.pub_chunk.publish(msgs.trajectory_to_msg(names, np.arange(len(chosen)) * dt, chosen, stamp))
        if self.pub_candidates is not None:
            self.pub_candidates.publish(candidates_to_msg(names, windows, dt, stamp))

    def _on_reset(self, request, response):
        response.success, response.message = self.runner.reset("~/reset")
        return response

    def _on_clock_jump(self, jump) -> None:
        if jump.delta.nanoseconds < 0:
            self.runner.clock_went_back(-jump.delta.nanoseconds * 1e-9)

    def status(self) -> dict:
        return self.runner.status()

    def close(self) -> None:
        self.runner.close()


def main(args=None) -> int:
    return run_node(DiffusionPolicyNode, args)


if __name__ == "__main__":
    sys.exit(main())
