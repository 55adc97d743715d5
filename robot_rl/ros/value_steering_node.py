"""value_steering: V-GPS at deployment. Picks one of N candidate chunks by a learned Q-function.

It never needs the generalist's weights: candidates arrive on /policy/candidates (N chunks
stacked in one JointTrajectory stamped with their observation, robot_rl/ros/candidates.py) from
any policy. The observation at that stamp (joint states + FK end-effector pose + object poses,
kept in a short buffer; the candidates can overtake it, so scoring waits up to `max_age` for it:
an observation later than that is stale anyway)
and all N chunks go through the critic in one batched forward pass; the
argmax (beta = 0) or a sample of softmax(Q / beta) is executed: each point through CommandGuard,
then published as a JointTrajectory stamped with the observation time to the arm's trajectory
controller (points whose time has passed are skipped by the controller: latency compensation)
and on /policy/action_chunk. Scores go to ~/scores (Float64MultiArray, candidate order) and the
choice to ~/choice. With no critic, or non-finite scores, candidate 0 (the generalist's own
sample) is executed with one warning.

A critic on a perception generalist (no object poses: `robot-rl train value --base G --obs-keys
joint_pos ee_pos base_features --no-task-space`) reads `base_features`: the frozen encoder of
`base_checkpoint` (that generalist) on its camera frame nearest the candidates' stamp, from the
topics the diffusion_policy node reads (points_camera, points_source, camera_link / camera_pose:
runtime/camera_feed.py); the node then subscribes to no /task/object_poses.

The arm (`robot`, `joint_names`, `joint_name_map`, step limits) is robot_rl.runtime.arm's
ArmConfig: candidates and joint states are read by name, the trajectory goes out with the
controller's names in its order, and a critic of another robot is refused at start.

Guard reference. The guard clamps each chunk's first point relative to the previous chunk's
last one; it takes the measured joint positions as its reference at the first /joint_states, at
each episode's first observation (/sim/episode_start, latched, stamped with that observation:
robot_rl/runtime/episode_start.py, as diffusion_policy does), and when it holds. Candidates stamped
before the current episode started are dropped.

Staleness. When the joint states were received longer than `max_age` ago (node clock: sim time
under use_sim_time), or candidates arrive sampled from an observation more than `max_age` older
than the newest joint states, the node holds position: it executes nothing, and once per stale
spell sends the arm's trajectory controller a one-point trajectory (stamp 0: now) at the newest
measured joint positions, which also become the guard's reference. It logs one warning per spell
and resumes with the next fresh candidates.
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from geometry_msgs.msg import PoseArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, Header, Int32
from trajectory_msgs.msg import JointTrajectory

from robot_rl.errors import ConfigError, RobotRLError
from robot_rl.policies.checkpoint import read_json
from robot_rl.policies import base_view
from robot_rl.policies.features import source_keys
from robot_rl.policies.steering import select_candidate
from robot_rl.ros import msgs
from robot_rl.ros.base_node import BaseNode
from robot_rl.ros.candidates import msg_to_candidates
from robot_rl.ros.observation_topics import subscribe_observation
from robot_rl.runtime.camera_feed import CameraCallbacks, CameraConfig, open_base_view
from robot_rl.runtime.episode_start import EpisodeStart
from robot_rl.runtime.stamped_history import StampedHistory
from robot_rl.ros.params import declare_config
from robot_rl.ros.spin import run_node
from robot_rl.robot import load_robot
from robot_rl.runtime.arm import ArmConfig, ArmInterface
from robot_rl.runtime.logs import WarnOnce

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


@dataclass
class ValueSteeringConfig(ArmConfig, CameraConfig):
    value_checkpoint: str = field(default="", metadata={"help": "value checkpoint folder (robot-rl train value); empty: pass candidate 0 through"})
    base_checkpoint: str = field(default="", metadata={"help": "a critic reading base_features: the point-cloud or RGB generalist whose frozen encoder gives them, from its camera topics; empty: the one the critic was trained on (its config's base)"})
    beta: float = field(default=0.0, metadata={"help": "0: execute the argmax; > 0: sample softmax(Q / beta)"})
    sync_tolerance: float = field(default=0.02, metadata={"help": "an observation within this (s) of the candidates' stamp is theirs"})
    control_dt: float = field(default=0.1, metadata={"help": "time between a chunk's points (s): the step limits are per this period"})
    max_age: float = field(default=0.5, metadata={"help": "hold when the joint states, or the candidates' observation, are older than this (s)"})
    seed: int = field(default=0, metadata={"help": "seed of the softmax sampling"})

    def __post_init__(self):
        super().__post_init__()
        if self.beta < 0 or self.sync_tolerance < 0 or self.max_age <= 0 or self.control_dt <= 0:
            raise ConfigError("beta and sync_tolerance must be >= 0, max_age and control_dt > 0")
        self.check_cameras()


class ValueSteeringNode(BaseNode, CameraCallbacks):
    def __init__(self, **kwargs):
        super().__init__("value_steering", **kwargs)
        self.config = c = declare_config(self, ValueSteeringConfig)
        self.value = self._load(c.value_checkpoint)
        trained = load_robot(self.value.cfg.robot) if self.value is not None else None
        self.arm = ArmInterface.build(c, c.control_dt, trained, what=f"critic {c.value_checkpoint or '(none)'}",
                                      startup=False)  # chunk points: each a step from the one before
        self.guard = self.arm.guard  # controller order
        self.rng = np.random.default_rng(c.seed)
        self._lock = threading.Lock()  # guard, episode, staleness
        self.warn_once = WarnOnce(self.get_logger())
        seen = self.value is not None and base_view.KEY in source_keys(self.value.cfg.obs_keys)
        base = c.base_checkpoint or (read_json(Path(c.value_checkpoint) / "config.json").get("base", "") if seen else "")
        self.base_view, self.camera = (open_base_view(c, base, f"critic {c.value_checkpoint}", self.arm.robot,
                                                      self.arm.joints.policy_joints, self.get_logger())
                                       if seen else (None, None))  # a bad base: one line, exit 2
        frames = tuple(self.camera.key_topics().values()) if seen else ()
        # joint_pos in the robot's order; (K, 7) poses; the base's camera frames by topic
        self._history = StampedHistory(("joints", "poses", *frames))
        self._received: float | None = None  # node-clock time the newest joint state came
        self._episode = EpisodeStart()  # from /sim/episode_start
        self._stale = False
        self.decisions = self.fallbacks = 0
        self.pub_traj = self.create_publisher(JointTrajectory, "/joint_trajectory_controller/joint_trajectory", RELIABLE)
        self.pub_chunk = self.create_publisher(JointTrajectory, "/policy/action_chunk", RELIABLE)
        self.pub_scores = self.create_publisher(Float64MultiArray, "~/scores", RELIABLE)
        self.pub_choice = self.create_publisher(Int32, "~/choice", RELIABLE)
        # Created before /joint_states so that, when both are ready, the episode start is seen first.
        self.create_subscription(Header, "/sim/episode_start", self._on_episode_start, LATCHED)
        self.create_subscription(JointState, "/joint_states", self._on_joints, RELIABLE)
        if self.value is None or "object_poses" in self.value.cfg.obs_keys:
            self.create_subscription(PoseArray, "/task/object_poses", self._on_poses, RELIABLE)
        for topic in self.camera.topics if seen else ():  # what the generalist sees: base_features
            subscribe_observation(self, topic, self, c)
        # Scoring runs in its own group so observation callbacks keep flowing meanwhile.
        self.create_subscription(JointTrajectory, "/policy/candidates", self._on_candidates, RELIABLE,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(c.max_age / 2, self._watchdog)
        self._status_every(1.0, lambda: {"critic": c.value_checkpoint, "holding": self._stale or self._received is None,
                                         "decisions": self.decisions, "fallbacks": self.fallbacks})
        self.get_logger().info(f"critic {c.value_checkpoint or '(none: pass-through)'}, beta {c.beta}; {self.arm.describe()}")

    def _load(self, path: str):
        if not path:
            return None
        try:
            from robot_rl.policies.value.model import ValueFunction

            return ValueFunction.from_checkpoint(path)
        except RobotRLError as e:
            self.get_logger().error(f"value_checkpoint: {e}; executing candidate 0 unsteered")
            return None

    def _on_joints(self, msg: JointState) -> None:
        now = self._now()
        try:
            q, _ = self.arm.joint_state(msg.name, msg.position, msg.velocity)
        except RobotRLError as e:
            self.get_logger().error(f"/joint_states: {e}; ignoring the message", throttle_duration_sec=5.0)
            return
        stamp = msgs.from_time(msg.header.stamp)
        with self._lock:
            if self._episode.begins(stamp):  # a new episode's first observation: clamp from here,
                self.get_logger().info(f"episode starting at {stamp:.3f}: guard reference from /joint_states")
                self.arm.reset_guard(q)  # not from the old episode's last command
            elif self.guard.last is None:
                self.arm.reset_guard(q)
            else:
                self.arm.observe(q)
            self._history.put("joints", stamp, q)
            self._received = now

    def _on_episode_start(self, msg: Header) -> None:
        """/sim/episode_start: re-seed the guard at the episode's first observation (now, if it came first)."""
        start = msgs.from_time(msg.stamp)
        with self._lock:
            newest = self._history.newest("joints")
            if self._episode.announce(start, newest[0] if newest else None):
                self.get_logger().info(f"episode started at {start:.3f} (announced late): guard reference from /joint_states")
                self.arm.reset_guard(newest[1])

    def _staleness_locked(self, stamp: float) -> str | None:
        """Why candidates stamped `stamp` must not be executed now (stale inputs), or None."""
        if self._received is None:
            return None  # no joint state yet: nothing is executed anyway (no guard reference)
        age = self._now() - self._received
        if age > self.config.max_age:
            return f"no /joint_states for {age:.2f} s"
        lag = self._history.newest("joints")[0] - stamp
        if lag > self.config.max_age:
            return f"the candidates' observation is {lag:.2f} s older than /joint_states"
        return None

    def _hold_locked(self, reason: str) -> None:
        """Stale inputs: stop where the arm was last measured (once per stale spell)."""
        if self._stale:
            return
        self._stale = True
        self.get_logger().warning(f"inputs are stale ({reason}): holding position until fresh candidates")
        newest = self._history.newest("joints")
        if newest is None:
            return
        self.arm.reset_guard(newest[1])
        self.pub_traj.publish(msgs.trajectory_to_msg(self.guard.joint_names, [0.0], self.guard.last[None], 0.0))

    def _watchdog(self) -> None:
        with self._lock:
            if self._received is not None and not self._stale:
                age = self._now() - self._received
                if age > self.config.max_age:
                    self._hold_locked(f"no /joint_states for {age:.2f} s")

    def _on_poses(self, msg: PoseArray) -> None:
        try:
            self._history.put("poses", msgs.from_time(msg.header.stamp), msgs.poses_from_msg(msg))
        except RobotRLError as e:
            self.get_logger().error(f"/task/object_poses: {e}", throttle_duration_sec=5.0)

    # camera inputs (CameraCallbacks): the made frames go into the history by topic
    def _feed(self):
        return self.camera

    def _positions(self):
        newest = self._history.newest("joints")
        return newest[1] if newest else None

    def observation(self, topic: str, stamp: float, value) -> None:
        self._history.put(topic, stamp, value)

    def _scene_features(self, stamp: float) -> np.ndarray | None:
        """base_features of the camera frames nearest the candidates' stamp (None: none within tolerance)."""
        frame = {}
        for key, topic in self.camera.key_topics().items():
            frame[key] = self._history.nearest(topic, stamp, self.config.sync_tolerance)
            shape = tuple(self.base_view.config.obs_shapes[key])
            if frame[key] is None:
                return None
            if np.shape(frame[key]) != shape:
                self.warn_once(f"shape:{key}", f"{topic} gives {key} of shape {np.shape(frame[key])}, the base "
                               f"expects {shape} (another camera size?): candidate 0 unsteered", error=True)
                return None
        return self.base_view.scene_features(frame)

    def _observation(self, stamp: float) -> dict | None:
        """The observation the candidates were sampled from: messages nearest their stamp."""
        tol = self.config.sync_tolerance
        need = ("joints", "poses") if "object_poses" in self.value.cfg.obs_keys else ("joints",)
        if self.camera is not None:
            need += tuple(self.camera.key_topics().values())
        # scoring has its own thread, so the observation callbacks go on meanwhile; on a busy machine
        # they may run late (a fixed 0.2 s wait made the critic fall back to candidate 0 under load)
        self._history.wait_for(stamp - tol, need, self.config.max_age)
        q = self._history.nearest("joints", stamp, tol)
        if q is None:
            return None
        obs = {"joint_pos": q.astype(np.float32), "ee_pos": self.arm.ee_pose(q)[0]}
        poses = self._history.nearest("poses", stamp, tol)
        if poses is not None:
            obs["object_poses"] = poses.astype(np.float32)
        if self.camera is not None:
            features = self._scene_features(stamp)
            if features is not None:
                obs[base_view.KEY] = features
        return obs

    def _on_candidates(self, msg: JointTrajectory) -> None:
        try:
            names, stamp, times, chunks = msg_to_candidates(msg)
            chunks = np.stack([self.arm.joints.from_points(names, chunk) for chunk in chunks])
        except RobotRLError as e:
            self.get_logger().error(f"/policy/candidates: {e}", throttle_duration_sec=5.0)
            return
        with self._lock:
            if self._episode.before(stamp):
                self.get_logger().info(f"candidates stamped {stamp:.3f}, before the episode that started at "
                                       f"{self._episode.start:.3f}: dropped")
                return
            stale = self._staleness_locked(stamp)
            if stale is not None:
                self._hold_locked(stale)
                return
        scores, reason = None, "no critic"
        if self.value is not None:
            obs = self._observation(stamp)
            if obs is None or any(k not in obs for k in self.value.cfg.obs_keys):
                reason = "no observation matches the candidates' stamp"
            else:
                try:
                    scores = self.value.score(obs, chunks)
                except Exception as e:  # noqa: BLE001 - a broken critic must never stop the arm
                    reason = f"critic failed: {e}"
        choice = select_candidate(scores, self.config.beta, self.rng)
        self.decisions += 1
        if choice.fallback:
            self.fallbacks += 1
            self.get_logger().warning(f"steering fell back to candidate 0: {choice.reason if scores is not None else reason}",
                                      throttle_duration_sec=5.0)
        self._execute(chunks[choice.index], times, stamp)
        if scores is not None:
            self.pub_scores.publish(msgs.array_to_msg(np.nan_to_num(np.asarray(scores, float), nan=-np.inf)))
        self.pub_choice.publish(Int32(data=choice.index))

    def _execute(self, chunk: np.ndarray, times: np.ndarray, stamp: float) -> None:
        with self._lock:  # publishing under the lock: a hold never overtakes a chunk, nor one a hold
            if self.guard.last is None:
                return  # no joint state yet: nothing safe to command relative to
            if self._episode.before(stamp):
                return  # an episode started while the critic scored these
            safe = []
            for point in chunk:  # each point at most one step from the one before
                result = self.arm.command(point)
                if result.refusal:
                    self.get_logger().error(result.refusal, throttle_duration_sec=5.0)
                safe.append(result.command)
            if self._stale:
                self._stale = False
                self.get_logger().info("inputs are fresh again: executing the chosen chunks")
            traj = msgs.trajectory_to_msg(self.guard.joint_names, times, np.stack(safe), stamp)
            self.pub_traj.publish(traj)
            self.pub_chunk.publish(traj)

    def close(self) -> None:
        self.get_logger().info(f"{self.decisions} decisions, {self.fallbacks} fallbacks")


def main(args=None) -> int:
    return run_node(ValueSteeringNode, args, threads=2)


if __name__ == "__main__":
    sys.exit(main())
