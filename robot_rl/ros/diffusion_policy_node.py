"""diffusion_policy: a diffusion policy checkpoint driving the arm through ros2_control topics.

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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from geometry_msgs.msg import PoseArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import JumpThreshold
from rclpy.duration import Duration
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState, PointCloud2
from std_msgs.msg import Float64MultiArray, Header, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from robot_rl.errors import ConfigError, DataError, RobotRLError
from robot_rl.runtime.arm import ArmConfig, ArmInterface
from robot_rl.runtime.chunk_executor import ChunkExecutor
from robot_rl.runtime.observations import LatestMessages, Missing
from robot_rl.policies.loading import with_deployment
from robot_rl.ros import msgs
from robot_rl.ros.base_node import BaseNode
from robot_rl.ros.candidates import candidates_to_msg
from robot_rl.runtime.control_ticks import ControlTicks
from robot_rl.runtime.episode_start import EpisodeStart
from robot_rl.ros.params import config_fields, declare_config
from robot_rl.ros.spin import run_node

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
COMMANDS = "/forward_position_controller/commands"
JOINT_KEYS = ("joint_pos", "joint_vel", "ee_pos", "ee_quat")  # all from /joint_states
STATUS_PERIOD = 1.0  # s (wall) between status messages while running


@dataclass
class DiffusionPolicyConfig(ArmConfig):
    checkpoint: str = field(default="", metadata={"help": "diffusion checkpoint folder; settable at runtime (hot reload); empty: hold until one is set"})
    device: str = field(default="cpu", metadata={"help": "torch device for inference: cpu, cuda, cuda:1"})
    control_dt: float = field(default=0.1, metadata={"help": "control period (s of observation time); the policy's training rate"})
    num_samples: int = field(default=1, metadata={"help": "chunks sampled per observation; > 1 also publishes them on /policy/candidates"})
    num_inference_steps: int = field(default=0, metadata={"help": "DDIM steps per chunk; 0: the checkpoint's own"})
    noise_scale: float = field(default=-1.0, metadata={"help": "scale of the initial DDIM noise (0: deterministic chunks); < 0: the checkpoint's own"})
    action_horizon: int = field(default=0, metadata={"help": "Ta, actions executed per chunk; 0: the checkpoint's own"})
    request_lead: int = field(default=1, metadata={"help": "extra actions per chunk that cover the next chunk's inference (ticks)"})
    max_age: float = field(default=0.5, metadata={"help": "hold when an observation is older than this (s)"})
    sync_tolerance: float = field(default=0.02, metadata={"help": "messages stamped within this (s) of the joint states are one observation"})
    points_camera: str = field(default="front", metadata={"help": "the points key reads /camera/<points_camera>/points"})
    seed: int = field(default=0, metadata={"help": "noise seed; the i-th reset uses seed + i"})
    publish_commands: bool = field(default=True, metadata={"help": "false: command nothing (a steering or residual node does): num_samples 1 publishes /policy/action_chunk, > 1 /policy/candidates only"})

    def __post_init__(self):
        super().__post_init__()
        for name in ("control_dt", "max_age"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.sync_tolerance < 0:
            raise ConfigError(f"sync_tolerance must be >= 0, got {self.sync_tolerance}")
        if self.num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {self.num_samples}")
        for name in ("num_inference_steps", "action_horizon", "request_lead"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")


def topic_for(key: str, points_camera: str = "front") -> str | None:
    """The topic an observation key is read from, or None when no topic provides it."""
    if key in JOINT_KEYS:
        return "/joint_states"
    if key == "object_poses":
        return "/task/object_poses"
    if key.endswith("_rgb"):
        return f"/camera/{key[:-4]}/image_raw"
    if key.endswith("_depth"):
        return f"/camera/{key[:-6]}/depth/image_raw"
    if key == "points":
        return f"/camera/{points_camera}/points"
    if key.endswith("_points"):
        return f"/camera/{key[:-7]}/points"
    return None


def _rgb_from_msg(msg: Image) -> np.ndarray:
    image = msgs.image_from_msg(msg)
    return image[..., ::-1].copy() if msg.encoding == "bgr8" else image


# topic kind -> (message type, converter, QoS)
_SOURCES = {
    "poses": (PoseArray, msgs.poses_from_msg, RELIABLE),
    "rgb": (Image, _rgb_from_msg, qos_profile_sensor_data),
    "depth": (Image, msgs.image_from_msg, qos_profile_sensor_data),
    "points": (PointCloud2, msgs.points_from_msg, qos_profile_sensor_data),
}


def _kind(topic: str) -> str:
    if topic == "/task/object_poses":
        return "poses"
    if topic.endswith("/depth/image_raw"):
        return "depth"
    if topic.endswith("/image_raw"):
        return "rgb"
    return "points"


@dataclass
class _Loaded:
    """A policy ready to run, with the execution sizes the node derived for it."""

    policy: object
    path: str
    action_horizon: int  # Ta
    start: int  # index of the action at the observation time in a predicted chunk (To - 1)
    length: int  # actions kept per chunk: Ta + request_lead, at most what the chunk predicts
    topics: tuple[str, ...]  # observation topics other than /joint_states
    arm: ArmInterface  # the robot, joint mapping and guard this checkpoint drives


@dataclass
class _Job:
    stamp: float
    history: dict
    model: _Loaded
    executor: ChunkExecutor
    generation: int
    created: float = field(default_factory=time.perf_counter)  # for the hand-over time


class DiffusionPolicyNode(BaseNode):
    def __init__(self, **kwargs):
        super().__init__("diffusion_policy", **kwargs)
        self.config = c = declare_config(self, DiffusionPolicyConfig)
        self._fields = set(config_fields(DiffusionPolicyConfig))

        self._lock = threading.RLock()  # executor, guard, history, latest messages
        self._cv = threading.Condition()  # worker hand-over: _job, _load_path, _loaded
        self._job: _Job | None = None
        self._load_path: str | None = None
        self._loaded: tuple | None = None
        self._stopping = False
        self._reverting = False

        self.model: _Loaded | None = None
        self.chunks: ChunkExecutor | None = None
        self._joints = None  # (stamp, receive time, q, v) in the checkpoint's joint order
        self._latest = LatestMessages(c.max_age, c.sync_tolerance)  # the observation topics besides /joint_states
        self._subs: dict[str, object] = {}
        self._last_joint_stamp: float | None = None
        self._ticks = ControlTicks(c.control_dt)
        self._last_obs: tuple[float, float, dict] | None = None  # latest tick: (stamp, receive, history)
        self._guard_needs_reference = True
        self._stale = False
        self._resets = 0
        self._episode = EpisodeStart()  # from /sim/episode_start
        self._stats = {"chunks": 0, "late_chunks": 0, "skipped_actions": 0, "commands": 0,
                       "refused": 0, "inference_ms": [], "handoff_ms": []}
        self._last_status = 0.0

        self.pub_cmd = self.create_publisher(Float64MultiArray, COMMANDS, RELIABLE)
        # candidates only (num_samples > 1, no commands): the steering node owns /policy/action_chunk
        self.pub_chunk = (self.create_publisher(JointTrajectory, "/policy/action_chunk", RELIABLE)
                          if c.publish_commands or c.num_samples == 1 else None)
        self.pub_candidates = (self.create_publisher(JointTrajectory, "/policy/candidates", RELIABLE)
                               if c.num_samples > 1 else None)
        self.pub_status = self.create_publisher(String, "~/status", LATCHED)
        # Created before /joint_states so that, when both are ready, the episode start is seen first.
        self.create_subscription(Header, "/sim/episode_start", self._on_episode_start, LATCHED)
        self.create_subscription(JointState, "/joint_states", self._on_joints, RELIABLE)
        self.create_subscription(String, "~/load_checkpoint", self._on_load_topic, RELIABLE)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self._swap = self.create_guard_condition(self._on_loaded)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._jump = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-1_000_000), on_clock_change=False),
            post_callback=self._on_clock_jump)
        self.create_timer(c.max_age / 2, self._watchdog)

        if c.checkpoint:
            self._install(self._prepare(c.checkpoint))  # a bad checkpoint: one line, exit 2
        else:
            self.get_logger().warning("no checkpoint: holding until one is set (parameter checkpoint, "
                                      "or a path on ~/load_checkpoint)")
            self._publish_status()
        self._worker = threading.Thread(target=self._work, name="diffusion_inference", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ helpers
    def _hold(self, reason: str) -> None:
        """Observations are stale or missing: command nothing new (one warning per stale spell)."""
        if not self._stale:
            self.get_logger().warning(f"observations are stale ({reason}): holding position, no new commands")
            self._stale = True
            self._publish_status()

    def _missing(self, topic: str, missing: Missing) -> None:
        if missing.kind == "first":
            self._warn_once(f"wait:{topic}", missing.reason)
        elif missing.kind == "stale":
            self._hold(missing.reason)  # "pending": this tick's message may still be on its way

    # ------------------------------------------------------------------ loading
    def _prepare(self, path: str) -> _Loaded:
        """Load, check and warm up a checkpoint (worker thread, or start-up). Raises RobotRLError."""
        from robot_rl.policies.diffusion.model import DiffusionPolicy

        c = self.config
        policy = with_deployment(DiffusionPolicy.from_checkpoint(path, device=c.device), path,
                                 noise_scale=c.noise_scale if c.noise_scale >= 0 else None)
        pc = policy.config
        arm = ArmInterface.build(c, c.control_dt, policy.robot, pc.joint_names, what=f"checkpoint {path}")
        joints = arm.joints.policy_joints
        if pc.action_dim != len(joints):
            raise DataError(f"{path}: the policy has {pc.action_dim} actions for the {len(joints)} joints {list(joints)}")
        if "joint_pos" in pc.obs_keys and tuple(pc.obs_shapes["joint_pos"]) != (len(joints),):
            raise DataError(f"{path}: joint_pos has shape {pc.obs_shapes['joint_pos']} for the {len(joints)} joints {list(joints)}")
        unknown = [k for k in pc.obs_keys if topic_for(k, c.points_camera) is None]
        if unknown:
            raise DataError(f"{path}: no topic provides the observation keys {unknown}")
        if c.num_inference_steps > pc.num_train_timesteps:
            raise ConfigError(f"num_inference_steps {c.num_inference_steps} is more than the "
                              f"{pc.num_train_timesteps} training timesteps of {path}")
        start = pc.obs_horizon - 1
        available = pc.pred_horizon - start
        ta = c.action_horizon or pc.action_horizon
        if ta > available:
            raise ConfigError(f"action_horizon {ta} is more than the {available} actions {path} predicts from an observation")
        length = min(ta + c.request_lead, available)
        if length < ta + c.request_lead:
            self.get_logger().warning(f"{path}: chunks hold {available} actions from the observation on; "
                                      f"request_lead is effectively {length - ta}")
        history = {}
        for key in pc.obs_keys:  # warm-up: builds the traced step for this batch size
            shape = (pc.obs_horizon, *pc.obs_shapes[key])
            history[key] = np.zeros(shape, np.uint8) if key.endswith("_rgb") else np.zeros(shape, np.float32)
        policy.sample_chunks(history, c.num_samples, num_inference_steps=c.num_inference_steps or None)
        topics = tuple(dict.fromkeys(t for t in (topic_for(k, c.points_camera) for k in pc.obs_keys)
                                     if t != "/joint_states"))
        return _Loaded(policy, str(path), ta, start, length, topics, arm)

    def _install(self, model: _Loaded) -> None:
        """Swap `model` in (executor thread): subscriptions, fresh executor and history."""
        for topic in model.topics:
            if topic not in self._subs:
                msg_type, convert, qos = _SOURCES[_kind(topic)]
                self._subs[topic] = self.create_subscription(
                    msg_type, topic, lambda m, t=topic, f=convert: self._on_observation(t, m, f), qos)
        pc = model.policy.config
        with self._lock:
            waiting = self._waiting_locked()
            self.model = model
            self.chunks = ChunkExecutor(self.config.control_dt, model.action_horizon, model.length - model.action_horizon)
            self._warned.clear()
            self._reset_locked(f"loaded checkpoint {model.path}", log=False, waiting=waiting)
        self.get_logger().info(
            f"loaded checkpoint {model.path}: obs {list(pc.obs_keys)}, To {pc.obs_horizon}, Tp {pc.pred_horizon}, "
            f"Ta {model.action_horizon}, {model.length} actions per chunk, num_samples {self.config.num_samples}; "
            f"{model.arm.describe()}")
        self._publish_status()

    def _on_set_parameters(self, params) -> SetParametersResult:
        for p in params:
            if p.name in self._fields and p.name != "checkpoint":
                return SetParametersResult(successful=False,
                                           reason=f"{p.name} is read at start-up only; restart the node to change it")
        for p in params:
            if p.name != "checkpoint" or self._reverting:
                continue
            path = p.value
            current = self.model.path if self.model else "no checkpoint"
            if not isinstance(path, str) or not (Path(path) / "config.json").is_file():
                reason = f"checkpoint {path!r} is not a checkpoint folder (no config.json); keeping {current}"
                self.get_logger().error(reason)
                return SetParametersResult(successful=False, reason=reason)
            with self._cv:
                self._load_path = path
                self._cv.notify()
            self.get_logger().info(f"loading checkpoint {path} (keeping {current} until it is ready)")
        return SetParametersResult(successful=True)

    def _on_load_topic(self, msg: String) -> None:
        self.set_parameters([Parameter("checkpoint", Parameter.Type.STRING, msg.data)])

    def _on_loaded(self) -> None:
        """Executor thread: the worker finished a load."""
        with self._cv:
            result, self._loaded = self._loaded, None
        if result is None:
            return
        path, model, error = result
        if error is not None:
            keep = self.model.path if self.model else ""
            self.get_logger().error(f"checkpoint {path}: {error}; keeping {keep or 'no checkpoint'}")
            self._reverting = True
            try:
                self.set_parameters([Parameter("checkpoint", Parameter.Type.STRING, keep)])
            finally:
                self._reverting = False
            self._publish_status()
            return
        self._install(model)

    # ------------------------------------------------------------------ observations and ticks
    def _on_joints(self, msg: JointState) -> None:
        now = self._now()
        with self._lock:
            if self.model is None:
                return
            try:
                q, v = self.model.arm.joint_state(msg.name, msg.position, msg.velocity)
            except DataError as e:
                self.get_logger().error(f"/joint_states: {e}; ignoring the message", throttle_duration_sec=5.0)
                return
            stamp = msgs.from_time(msg.header.stamp)
            if self._episode.begins(stamp):  # the first observation of a new episode
                if self._waiting_locked():  # the old episode's last tick: one answer, a hold, not
                    self._command_locked(None)  # a chunk computed from the old episode's state
                self._reset_locked(f"episode starting at {self._episode.start:.3f}", waiting=False)
            if self._last_joint_stamp is not None and stamp < self._last_joint_stamp - 1e-6:
                self._reset_locked(f"/joint_states stamps went back from {self._last_joint_stamp:.3f} to {stamp:.3f}",
                                   time_went_back=True)
            self._last_joint_stamp = stamp
            self._joints = (stamp, now, q, v)
            self._maybe_tick_locked()

    def _on_episode_start(self, msg: Header) -> None:
        """/sim/episode_start: reset at the episode's first observation (or now, if it came first)."""
        start = msgs.from_time(msg.stamp)
        with self._lock:
            if self._episode.announce(start, self._last_joint_stamp):
                # its first observation arrived before this message
                self._reset_locked(f"episode started at {start:.3f} (announced late)", waiting=None)

    def _on_observation(self, topic: str, msg, convert) -> None:
        stamp = msgs.from_time(msg.header.stamp)
        try:
            value = convert(msg)
        except DataError as e:
            self.get_logger().error(f"{topic}: {e}", throttle_duration_sec=5.0)
            return
        with self._lock:
            self._latest.put(topic, stamp, value)
            self._maybe_tick_locked()

    def _frame_locked(self, t: float, q: np.ndarray, v: np.ndarray) -> dict | None:
        """The observation for a tick at `t`, or None (wait for a message in sync, or hold)."""
        c, pc = self.config, self.model.policy.config
        frame, ee = {}, None
        for key in pc.obs_keys:
            if key == "joint_pos":
                value = q
            elif key == "joint_vel":
                value = v
            elif key in ("ee_pos", "ee_quat"):
                ee = ee or self.model.arm.ee_pose(q)
                value = ee[0] if key == "ee_pos" else ee[1]
            else:
                topic = topic_for(key, c.points_camera)
                value = self._latest.at(topic, t)
                if isinstance(value, Missing):
                    self._missing(topic, value)
                    return None
            shape = tuple(pc.obs_shapes[key])
            if np.shape(value) != shape:
                self._warn_once(f"shape:{key}", f"observation {key} has shape {np.shape(value)}, the policy "
                                f"expects {shape} (a different task or camera size?): holding", error=True)
                return None
            frame[key] = value
        return frame

    def _maybe_tick_locked(self) -> None:
        if self.model is None or self._joints is None:
            return
        c = self.config
        t, received, q, v = self._joints
        if not self._ticks.due(t):
            return  # answered already, or a faster joint state stream: not a control tick
        if self._now() - received > c.max_age:
            self._hold(f"/joint_states received {self._now() - received:.2f} s ago")
            return
        frame = self._frame_locked(t, q, v)
        if frame is None:
            return
        self._ticks.take(t)
        if self._stale:
            self._stale = False
            self.get_logger().info("observations are fresh again: resuming")
        if self._guard_needs_reference:
            self.model.arm.reset_guard(q)
            self._guard_needs_reference = False
        else:
            self.model.arm.observe(q)
        if self.chunks.waiting and self.chunks.last_tick is not None and self.chunks.last_tick < t:
            # the previous tick is overtaken before its chunk came: answer it with the last safe
            # command, so every observation gets exactly one answer (lock-step sims count them)
            self._command_locked(None)
        history = self.model.policy.observe(frame)
        self._last_obs = (t, received, history)
        tick = self.chunks.tick(t)
        if tick.request:
            self._request_locked(t, history)
        if tick.action is not None:
            self._command_locked(tick.action)

    # ------------------------------------------------------------------ inference (worker thread)
    def _request_locked(self, stamp: float, history: dict) -> None:
        job = _Job(stamp, history, self.model, self.chunks, self.chunks.generation)
        with self._cv:
            self._job = job  # a newer request replaces one not started yet
            self._cv.notify()

    def _work(self) -> None:
        while True:
            with self._cv:
                while not (self._stopping or self._load_path is not None or self._job is not None):
                    self._cv.wait()
                if self._stopping:
                    return
                path, self._load_path = self._load_path, None
                job = None
                if path is None:
                    job, self._job = self._job, None
            try:
                if path is not None:
                    self._load_in_worker(path)
                else:
                    self._infer(job)
            except Exception as e:  # never let the worker die: log, and keep serving
                if self._stopping or not self.context.ok():
                    return  # shutting down (Ctrl-C shuts the context before close() runs)
                self.get_logger().error(f"inference worker: {type(e).__name__}: {e}", throttle_duration_sec=5.0)

    def _load_in_worker(self, path: str) -> None:
        try:
            result = (path, self._prepare(path), None)
        except RobotRLError as e:
            result = (path, None, str(e))
        except Exception as e:  # torch / safetensors internals: still one line
            result = (path, None, f"{type(e).__name__}: {e}")
        with self._cv:
            self._loaded = result
        self._swap.trigger()

    def _infer(self, job: _Job) -> None:
        c, model = self.config, job.model
        t0 = time.perf_counter()
        handoff_ms = (t0 - job.created) * 1e3
        chunks = model.policy.sample_chunks(job.history, c.num_samples,
                                            num_inference_steps=c.num_inference_steps or None)
        inference_ms = (time.perf_counter() - t0) * 1e3
        windows = np.asarray(chunks[:, model.start: model.start + model.length], dtype=np.float64)
        chosen = windows[0]
        with self._lock:
            if job.executor is not self.chunks:
                return  # a new model was swapped in meanwhile
            if not np.all(np.isfinite(chosen)):
                self.get_logger().error("the policy produced non-finite actions: holding", throttle_duration_sec=5.0)
                if job.generation == self.chunks.generation and self.chunks.pending == job.stamp:
                    self.chunks.pending = None
                return
            d = self.chunks.deliver(job.stamp, chosen, job.generation)
            if d.action is not None:
                _, received, _ = self._last_obs
                if self._now() - received <= c.max_age:
                    self._command_locked(d.action)
                else:
                    self._hold("the chunk arrived after max_age")
            if d.request and self._last_obs is not None:
                self._request_locked(self._last_obs[0], self._last_obs[2])
            s = self._stats
            s["inference_ms"] = (s["inference_ms"] + [inference_ms])[-100:]
            s["handoff_ms"] = (s["handoff_ms"] + [handoff_ms])[-100:]
            if d.accepted:
                s["chunks"] += 1
                s["skipped_actions"] += d.skipped
            elif d.reason == "late":
                s["late_chunks"] += 1
        if d.accepted:
            names = model.arm.joints.mapped  # the controller's names, in the checkpoint's order
            if self.pub_chunk is not None:
                self.pub_chunk.publish(msgs.trajectory_to_msg(names, np.arange(len(chosen)) * c.control_dt,
                                                              chosen, job.stamp))
            if self.pub_candidates is not None:
                self.pub_candidates.publish(candidates_to_msg(names, windows, c.control_dt, job.stamp))
        self.get_logger().debug(f"chunk {job.stamp:.6f}: {d.reason}, inference {inference_ms:.3f} ms, "
                                f"hand-over {handoff_ms:.3f} ms, skipped {d.skipped}")
        if time.monotonic() - self._last_status > STATUS_PERIOD:
            self._publish_status()

    # ------------------------------------------------------------------ commands
    def _command_locked(self, action: np.ndarray | None) -> None:
        """One command through the guard; None: the last safe command again (hold)."""
        if not self.config.publish_commands or self.model is None:
            return
        arm = self.model.arm
        if action is None:
            command = arm.guard.hold()
        else:
            result = arm.command(action)
            if result.refusal is not None:
                self._stats["refused"] += 1
                self.get_logger().error(f"{COMMANDS}: policy action refused: {result.refusal}",
                                        throttle_duration_sec=5.0)
            command = result.command
        if command is None:
            return
        self.pub_cmd.publish(msgs.array_to_msg(command))
        self._stats["commands"] += 1

    # ------------------------------------------------------------------ resets and staleness
    def _waiting_locked(self) -> bool:
        return self.chunks is not None and self.chunks.waiting and self._ticks.last is not None

    def _reset_locked(self, reason: str, log: bool = True, time_went_back: bool = False,
                      waiting: bool | None = None) -> None:
        """Fresh history, no chunk, no request in flight. A latest tick still waiting for its
        chunk is taken again from the fresh history (so it is still answered exactly once)."""
        waiting = self._waiting_locked() if waiting is None else waiting
        self._resets += 1
        if self.model is not None:
            self.model.policy.reset(self.config.seed + self._resets)
        if self.chunks is not None:
            self.chunks.reset()
        self._ticks.next_due = None
        self._last_obs = None
        self._guard_needs_reference = True
        if log:
            self.get_logger().info(f"policy reset: {reason}")
        if time_went_back or waiting:
            self._ticks.last = None  # time_went_back: the caller ticks the new stamp itself
            if waiting:
                self._maybe_tick_locked()

    def _on_reset(self, request, response):
        with self._lock:
            self._reset_locked("~/reset")
            response.success = self.model is not None
            response.message = (f"reset {self._resets}, seed {self.config.seed + self._resets}" if self.model
                                else "no checkpoint loaded")
        self._publish_status()
        return response

    def _on_clock_jump(self, jump) -> None:
        if jump.delta.nanoseconds < 0:
            with self._lock:
                self._last_joint_stamp = None  # the stamps go back with the clock
                self._reset_locked(f"the clock jumped back by {-jump.delta.nanoseconds * 1e-9:.3f} s",
                                   time_went_back=True)

    def _watchdog(self) -> None:
        with self._lock:
            if self.model is not None and self._joints is not None and not self._stale:
                age = self._now() - self._joints[1]
                if age > self.config.max_age:
                    self._hold(f"no /joint_states for {age:.2f} s")

    # ------------------------------------------------------------------ status and shutdown
    def status(self) -> dict:
        with self._lock:
            s, m = self._stats, self.model
            ms = s["inference_ms"]
            return {
                "checkpoint": m.path if m else "",
                "action_horizon": m.action_horizon if m else None,
                "chunk_length": m.length if m else None,
                "num_samples": self.config.num_samples,
                "holding": self._stale or m is None,
                "resets": self._resets,
                "chunks": s["chunks"], "late_chunks": s["late_chunks"],
                "skipped_actions": s["skipped_actions"], "commands": s["commands"], "refused": s["refused"],
                "inference_ms_last": round(ms[-1], 3) if ms else None,
                "inference_ms_p50": round(float(np.median(ms)), 3) if ms else None,
                "handoff_ms_p50": round(float(np.median(s["handoff_ms"])), 3) if s["handoff_ms"] else None,
            }

    def _publish_status(self) -> None:
        self._last_status = time.monotonic()
        self.pub_status.publish(String(data=json.dumps(self.status())))

    def close(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        with self._lock:
            self.model = None  # no more ticks: commands stop
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.join(timeout=5.0)


def main(args=None) -> int:
    return run_node(DiffusionPolicyNode, args)


if __name__ == "__main__":
    sys.exit(main())
