"""The diffusion_policy node's core, without ROS: observations in, guarded commands and chunks out.

The node (robot_rl/ros/diffusion_policy_node.py) converts messages and publishes; everything it
decides is here, so the rules can be read (and run) without a ROS graph:
- ticks: a joint state whose stamp is due (ControlTicks, one per `control_dt`) becomes a frame
  with the latest message of every other observation topic (LatestMessages: within
  `sync_tolerance`, else wait or hold), appended to the policy's history;
- execution: ChunkExecutor (the rules `DiffusionPolicy.act` also runs) says which action answers
  the tick and when to request a chunk; a request goes to the inference thread, whose chunk is
  delivered under the lock; a tick with no action waits for it, and a waiting tick overtaken by
  the next one is answered with the last safe command (every tick exactly once);
- safety: every command goes through the arm's CommandGuard (runtime/arm.py); holding (stale or
  missing observations) commands nothing new;
- resets: a new episode, stamps or the clock going back, or `reset()` forget the history, the
  chunk and the request in flight; the i-th reset seeds the policy's noise with `seed + i`;
- hot reload: `request_load(path)` loads and warms a checkpoint in the inference thread; the
  node installs it (its subscriptions first) with `install`.

One lock serialises ticks, deliveries and resets; inference runs outside it.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from robot_rl.errors import ConfigError, DataError, RobotRLError
from robot_rl.policies.loading import with_deployment
from robot_rl.policies.steering import CANDIDATE_NOISE_SCALE
from robot_rl.runtime.arm import ArmConfig, ArmInterface
from robot_rl.runtime.camera_feed import CameraCallbacks, CameraConfig, CameraFeed, topic_for
from robot_rl.runtime.chunk_executor import ChunkExecutor
from robot_rl.runtime.control_ticks import ControlTicks
from robot_rl.runtime.episode_start import EpisodeStart
from robot_rl.runtime.observations import LatestMessages, Missing
from robot_rl.runtime.logs import WarnOnce

STATUS_PERIOD = 1.0  # s (wall) between status messages while running


@dataclass
class DiffusionPolicyConfig(ArmConfig, CameraConfig):
    checkpoint: str = field(default="", metadata={"help": "diffusion checkpoint folder; settable at runtime (hot reload); empty: hold until one is set"})
    device: str = field(default="cpu", metadata={"help": "torch device for inference: cpu, cuda, cuda:1"})
    control_dt: float = field(default=0.1, metadata={"help": "control period (s of observation time); the policy's training rate"})
    num_samples: int = field(default=1, metadata={"help": "chunks sampled per observation; > 1 also publishes them on /policy/candidates"})
    num_inference_steps: int = field(default=0, metadata={"help": "DDIM steps per chunk; 0: the checkpoint's own"})
    noise_scale: float = field(default=-1.0, metadata={"help": "scale of the initial DDIM noise (0: deterministic chunks); < 0: the checkpoint's own (chosen at training), or 1 for num_samples > 1 (steering candidates)"})
    action_horizon: int = field(default=0, metadata={"help": "Ta, actions executed per chunk; 0: the checkpoint's own"})
    request_lead: int = field(default=1, metadata={"help": "extra actions per chunk that cover the next chunk's inference (ticks)"})
    max_age: float = field(default=0.5, metadata={"help": "hold when an observation is older than this (s)"})
    sync_tolerance: float = field(default=0.02, metadata={"help": "messages stamped within this (s) of the joint states are one observation"})
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
        self.check_cameras()
        for name in ("num_inference_steps", "action_horizon", "request_lead"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class LoadedPolicy:
    """A policy ready to run, with the execution sizes derived for it."""

    policy: object
    path: str
    action_horizon: int  # Ta
    start: int  # index of the action at the observation time in a predicted chunk (To - 1)
    length: int  # actions kept per chunk: Ta + request_lead, at most what the chunk predicts
    topics: tuple[str, ...]  # observation topics other than /joint_states
    arm: ArmInterface  # the robot, joint mapping and guard this checkpoint drives
    camera: CameraFeed | None = None  # its camera keys from their topics


@dataclass
class _Job:
    stamp: float
    history: dict
    model: LoadedPolicy
    executor: ChunkExecutor
    generation: int
    created: float = field(default_factory=time.perf_counter)  # for the hand-over time


@dataclass
class Outputs:
    """What the runner hands back to its node (called from the executor or the inference thread)."""

    command: Callable[[np.ndarray], None]  # a guarded command, in the controller's order
    chunk: Callable[[tuple, float, np.ndarray], None]  # (controller names, stamp, windows (N, L, A)): an accepted chunk
    status: Callable[[dict], None]
    loaded: Callable[[], None]  # a load finished: call take_loaded() on the node's executor thread
    alive: Callable[[], bool] = lambda: True  # False once the node is shutting down


class DiffusionRunner(CameraCallbacks):
    def __init__(self, config: DiffusionPolicyConfig, log, now: Callable[[], float], outputs: Outputs):
        self.config, self.log, self.now, self.out = config, log, now, outputs
        self.warn_once = WarnOnce(log)
        self._lock = threading.RLock()  # executor, guard, history, latest messages
        self._cv = threading.Condition()  # worker hand-over: _job, _load_path, _loaded
        self._job: _Job | None = None
        self._load_path: str | None = None
        self._loaded: tuple | None = None
        self._stopping = False

        self.model: LoadedPolicy | None = None
        self.chunks: ChunkExecutor | None = None
        self._joints = None  # (stamp, receive time, q, v) in the checkpoint's joint order
        self._latest = LatestMessages(config.max_age, config.sync_tolerance)  # topics besides /joint_states
        self._last_joint_stamp: float | None = None
        self._ticks = ControlTicks(config.control_dt)
        self._last_obs: tuple[float, float, dict] | None = None  # latest tick: (stamp, receive, history)
        self._guard_needs_reference = True
        self._stale = False
        self.resets = 0
        self._episode = EpisodeStart()  # from /sim/episode_start
        self._stats = {"chunks": 0, "late_chunks": 0, "skipped_actions": 0, "commands": 0,
                       "refused": 0, "inference_ms": [], "handoff_ms": []}
        self._last_status = 0.0
        self._worker = threading.Thread(target=self._work, name="diffusion_inference", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ loading
    def prepare(self, path: str) -> LoadedPolicy:
        """Load, check and warm up a checkpoint (inference thread, or start-up). Raises RobotRLError."""
        from robot_rl.policies.diffusion.model import DiffusionPolicy

        c = self.config
        # the checkpoint's own noise for one chunk; candidates for steering keep the learned distribution's
        noise = c.noise_scale if c.noise_scale >= 0 else (CANDIDATE_NOISE_SCALE if c.num_samples > 1 else None)
        policy = with_deployment(DiffusionPolicy.from_checkpoint(path, device=c.device), path, noise_scale=noise)
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
            self.log.warning(f"{path}: chunks hold {available} actions from the observation on; "
                             f"request_lead is effectively {length - ta}")
        history = {}
        for key in pc.obs_keys:  # warm-up: builds the traced step for this batch size
            shape = (pc.obs_horizon, *pc.obs_shapes[key])
            history[key] = np.zeros(shape, np.uint8) if key.endswith("_rgb") else np.zeros(shape, np.float32)
        policy.sample_chunks(history, c.num_samples, num_inference_steps=c.num_inference_steps or None)
        camera = CameraFeed(c, pc.obs_keys, pc.obs_shapes, pc.points_use_rgb, path, arm.robot, joints, self.log)
        topics = (("/task/object_poses",) if "object_poses" in pc.obs_keys else ()) + camera.topics
        return LoadedPolicy(policy, str(path), ta, start, length, topics, arm, camera if camera.keys else None)

    def install(self, model: LoadedPolicy) -> None:
        """Swap `model` in: a fresh executor and history (the node subscribed to its topics first)."""
        pc = model.policy.config
        with self._lock:
            waiting = self._waiting_locked()
            self.model = model
            self.chunks = ChunkExecutor(self.config.control_dt, model.action_horizon, model.length - model.action_horizon)
            self.warn_once.clear()
            self._reset_locked(f"loaded checkpoint {model.path}", log=False, waiting=waiting)
        self.log.info(
            f"loaded checkpoint {model.path}: obs {list(pc.obs_keys)}, To {pc.obs_horizon}, Tp {pc.pred_horizon}, "
            f"Ta {model.action_horizon}, {model.length} actions per chunk, num_samples {self.config.num_samples}; "
            f"{model.arm.describe()}")
        self.publish_status()

    def request_load(self, path) -> str | None:
        """Load `path` in the inference thread (the current model runs until it is ready); the
        reason when `path` is not a checkpoint folder at all."""
        current = self.model.path if self.model else "no checkpoint"
        if not isinstance(path, str) or not (Path(path) / "config.json").is_file():
            return f"checkpoint {path!r} is not a checkpoint folder (no config.json); keeping {current}"
        with self._cv:
            self._load_path = path
            self._cv.notify()
        self.log.info(f"loading checkpoint {path} (keeping {current} until it is ready)")
        return None

    def take_loaded(self) -> tuple | None:
        """(path, LoadedPolicy or None, error or None) of the finished load, once."""
        with self._cv:
            result, self._loaded = self._loaded, None
        return result

    # ------------------------------------------------------------------ observations and ticks
    def joint_state(self, names, position, velocity, stamp: float) -> None:
        """A /joint_states message (its names, positions, velocities and stamp)."""
        now = self.now()
        with self._lock:
            if self.model is None:
                return
            try:
                q, v = self.model.arm.joint_state(names, position, velocity)
            except DataError as e:
                self.log.error(f"/joint_states: {e}; ignoring the message", throttle_duration_sec=5.0)
                return
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

    def episode_start(self, start: float) -> None:
        """/sim/episode_start: reset at the episode's first observation (or now, if it came first)."""
        with self._lock:
            if self._episode.announce(start, self._last_joint_stamp):
                self._reset_locked(f"episode started at {start:.3f} (announced late)", waiting=None)

    def observation(self, topic: str, stamp: float, value) -> None:
        """The latest message of an observation topic other than /joint_states, converted."""
        with self._lock:
            self._latest.put(topic, stamp, value)
            self._maybe_tick_locked()

    # ---------------------------------------------------------------- cameras: CameraCallbacks
    def _feed(self) -> CameraFeed | None:
        return self.model.camera if self.model is not None else None

    def _positions(self) -> np.ndarray | None:
        joints = self._joints
        return joints[2] if joints is not None else None

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
                self.warn_once(f"shape:{key}", f"observation {key} has shape {np.shape(value)}, the policy "
                               f"expects {shape} (a different task or camera size?): holding", error=True)
                return None
            frame[key] = value
        return frame

    def _maybe_tick_locked(self) -> None:
        if self.model is None or self._joints is None:
            return
        t, received, q, v = self._joints
        if not self._ticks.due(t):
            return  # answered already, or a faster joint state stream: not a control tick
        if self.now() - received > self.config.max_age:
            self._hold(f"/joint_states received {self.now() - received:.2f} s ago")
            return
        frame = self._frame_locked(t, q, v)
        if frame is None:
            return
        self._ticks.take(t)
        if self._stale:
            self._stale = False
            self.log.info("observations are fresh again: resuming")
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
                if self._stopping or not self.out.alive():
                    return  # shutting down (Ctrl-C shuts the context before close() runs)
                self.log.error(f"inference worker: {type(e).__name__}: {e}", throttle_duration_sec=5.0)

    def _load_in_worker(self, path: str) -> None:
        try:
            result = (path, self.prepare(path), None)
        except RobotRLError as e:
            result = (path, None, str(e))
        except Exception as e:  # torch / safetensors internals: still one line
            result = (path, None, f"{type(e).__name__}: {e}")
        with self._cv:
            self._loaded = result
        self.out.loaded()

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
                self.log.error("the policy produced non-finite actions: holding", throttle_duration_sec=5.0)
                if job.generation == self.chunks.generation and self.chunks.pending == job.stamp:
                    self.chunks.pending = None
                return
            d = self.chunks.deliver(job.stamp, chosen, job.generation)
            if d.action is not None:
                _, received, _ = self._last_obs
                if self.now() - received <= c.max_age:
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
            self.out.chunk(model.arm.joints.mapped, job.stamp, windows)  # controller names, checkpoint order
        self.log.debug(f"chunk {job.stamp:.6f}: {d.reason}, inference {inference_ms:.3f} ms, "
                       f"hand-over {handoff_ms:.3f} ms, skipped {d.skipped}")
        if time.monotonic() - self._last_status > STATUS_PERIOD:
            self.publish_status()

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
                self.log.error(f"policy action refused: {result.refusal}", throttle_duration_sec=5.0)
            command = result.command
        if command is None:
            return
        self.out.command(command)
        self._stats["commands"] += 1

    # ------------------------------------------------------------------ holding and resets
    def _hold(self, reason: str) -> None:
        """Observations are stale or missing: command nothing new (one warning per stale spell)."""
        if not self._stale:
            self.log.warning(f"observations are stale ({reason}): holding position, no new commands")
            self._stale = True
            self.publish_status()

    def _missing(self, topic: str, missing: Missing) -> None:
        if missing.kind == "first":
            self.warn_once(f"wait:{topic}", missing.reason)
        elif missing.kind == "stale":
            self._hold(missing.reason)  # "pending": this tick's message may still be on its way

    def _waiting_locked(self) -> bool:
        return self.chunks is not None and self.chunks.waiting and self._ticks.last is not None

    def _reset_locked(self, reason: str, log: bool = True, time_went_back: bool = False,
                      waiting: bool | None = None) -> None:
        """Fresh history, no chunk, no request in flight. A latest tick still waiting for its
        chunk is taken again from the fresh history (so it is still answered exactly once)."""
        waiting = self._waiting_locked() if waiting is None else waiting
        self.resets += 1
        if self.model is not None:
            self.model.policy.reset(self.config.seed + self.resets)
        if self.chunks is not None:
            self.chunks.reset()
        self._ticks.next_due = None
        self._last_obs = None
        self._guard_needs_reference = True
        if log:
            self.log.info(f"policy reset: {reason}")
        if time_went_back or waiting:
            self._ticks.last = None  # time_went_back: the caller ticks the new stamp itself
            if waiting:
                self._maybe_tick_locked()

    def reset(self, reason: str) -> tuple[bool, str]:
        """~/reset: (success, message)."""
        with self._lock:
            self._reset_locked(reason)
            answer = ((True, f"reset {self.resets}, seed {self.config.seed + self.resets}") if self.model
                      else (False, "no checkpoint loaded"))
        self.publish_status()
        return answer

    def clock_went_back(self, seconds: float) -> None:
        with self._lock:
            self._last_joint_stamp = None  # the stamps go back with the clock
            self._reset_locked(f"the clock jumped back by {seconds:.3f} s", time_went_back=True)

    def watchdog(self) -> None:
        """Periodically: hold when the joint states stopped coming."""
        with self._lock:
            if self.model is not None and self._joints is not None and not self._stale:
                age = self.now() - self._joints[1]
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
                "resets": self.resets,
                "chunks": s["chunks"], "late_chunks": s["late_chunks"],
                "skipped_actions": s["skipped_actions"], "commands": s["commands"], "refused": s["refused"],
                "inference_ms_last": round(ms[-1], 3) if ms else None,
                "inference_ms_p50": round(float(np.median(ms)), 3) if ms else None,
                "handoff_ms_p50": round(float(np.median(s["handoff_ms"])), 3) if s["handoff_ms"] else None,
            }

    def publish_status(self) -> None:
        self._last_status = time.monotonic()
        self.out.status(self.status())

    def close(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        with self._lock:
            self.model = None  # no more ticks: commands stop
        self._worker.join(timeout=5.0)
