"""The residual_policy node's core, without ROS: joint states, object poses or a perception base's
cameras, and the base's chunks in, guarded base + residual commands out (and, learning,
transitions to OnlineResidual).

The node (robot_rl/ros/residual_policy_node.py, whose docstring states the rules) converts
messages and publishes; ticks, holding, resets, the base action of each tick (ChunkExecutor) and
the residual's step are here.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch

from robot_rl.errors import ConfigError, DataError
from robot_rl.policies import base_view, chunk_context
from robot_rl.policies.chunk_context import KEYS as CHUNK_KEYS
from robot_rl.policies.features import feature_columns, source_keys, state_vector
from robot_rl.policies.residual.config import ResidualConfig
from robot_rl.policies.residual.model import ResidualActor, ResidualPolicy, default_normalizer, residual_normalizer
from robot_rl.policies.residual.online import OnlineResidual
from robot_rl.policies.residual.space import space_for
from robot_rl.robot import load_robot
from robot_rl.runtime.arm import ArmConfig, ArmInterface
from robot_rl.runtime.camera_feed import CameraCallbacks, CameraConfig, CameraFeed, open_base_view
from robot_rl.runtime.chunk_executor import ChunkExecutor
from robot_rl.runtime.control_ticks import ControlTicks
from robot_rl.runtime.episode_start import EpisodeStart
from robot_rl.runtime.observations import LatestMessages, Missing
from robot_rl.runtime.logs import WarnOnce

OBS_KEYS = ("joint_pos", "joint_vel", "ee_pos", "ee_quat", "object_poses")
OVERRIDES = ("warmup_steps", "critic_warmup_updates", "batch_size", "utd_ratio", "exploration_noise")


@dataclass
class ResidualPolicyConfig(ArmConfig, CameraConfig):
    residual_checkpoint: str = field(default="", metadata={"help": "residual checkpoint folder; empty: a zero residual (the base exactly)"})
    control_dt: float = field(default=0.1, metadata={"help": "control period (s of observation time); the base's chunk spacing"})
    max_age: float = field(default=0.5, metadata={"help": "hold when an observation, or a tick's wait for its base action, is older than this (s)"})
    sync_tolerance: float = field(default=0.02, metadata={"help": "object poses within this (s) of the joint states are one observation"})
    learn: bool = field(default=False, metadata={"help": "explore and train the residual online (TD3 in a learner thread)"})
    reward: str = field(default="success", metadata={"help": "learn: success (1 on /task/success, sparse) or reward (/task/reward)"})
    out_dir: str = field(default="runs/residual_online", metadata={"help": "learn: checkpoint/ and replay.npz are written here"})
    checkpoint_every: int = field(default=1000, metadata={"help": "learn: save a checkpoint every this many updates"})
    warmup_steps: int = field(default=-1, metadata={"help": "learn: steps of base + small noise before updates; -1: the checkpoint's"})
    critic_warmup_updates: int = field(default=-1, metadata={"help": "learn: critic-only updates before the actor moves; -1: the checkpoint's"})
    batch_size: int = field(default=-1, metadata={"help": "learn: batch size; -1: the checkpoint's"})
    utd_ratio: int = field(default=-1, metadata={"help": "learn: updates per transition; -1: the checkpoint's"})
    exploration_noise: float = field(default=-1.0, metadata={"help": "learn: noise std in units of residual_scale; -1: the checkpoint's"})
    residual_space: str = field(default="", metadata={"help": "learn without residual_checkpoint: joint or task (held TCP offset); empty: ResidualConfig's default"})
    demo_dataset: str = field(default="", metadata={"help": "learn: demonstrations for the demo buffer (needs base_checkpoint)"})
    base_checkpoint: str = field(default="", metadata={"help": "the base as a policy, to relabel demo_dataset (a checkpoint folder, expert:<task> or hold), and the perception base whose frozen encoder gives base_features (read from its camera topics)"})
    chunk_lead: int = field(default=1, metadata={"help": "actions at the end of each base chunk that only bridge its next inference (the diffusion_policy node's request_lead); the chunk features end before them"})
    seed: int = field(default=0, metadata={"help": "seed of the exploration noise and the networks"})
    torch_threads: int = field(default=1, metadata={"help": "torch threads (small MLPs: one is fastest)"})

    def __post_init__(self):
        super().__post_init__()
        for name in ("control_dt", "max_age"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.sync_tolerance < 0 or self.chunk_lead < 0 or self.checkpoint_every < 1 or self.torch_threads < 1:
            raise ConfigError("sync_tolerance and chunk_lead must be >= 0, checkpoint_every and torch_threads >= 1")
        if self.reward not in ("success", "reward"):
            raise ConfigError(f"reward must be success or reward, got {self.reward!r}")
        if self.residual_space and self.residual_checkpoint:
            raise ConfigError("residual_space is the checkpoint's: set it only to learn without residual_checkpoint")
        self.check_cameras()

    def overrides(self) -> dict:
        """The learning knobs set here (not -1), for dataclasses.replace on the ResidualConfig."""
        knobs = {k: getattr(self, k) for k in OVERRIDES if getattr(self, k) >= 0}
        if self.residual_space:  # its own default scale: the sizes differ between spaces
            knobs.update(residual_space=self.residual_space, residual_scale=())
        return knobs


def chunk_on_grid(times: np.ndarray, actions: np.ndarray, dt: float) -> np.ndarray:
    """A chunk's actions at 0, dt, 2 dt, ... (linear interpolation when its points are spaced otherwise)."""
    grid = np.arange(int(np.floor(times[-1] / dt + 1e-6)) + 1) * dt
    if len(grid) == len(times) and np.allclose(times, grid, atol=1e-6):
        return actions
    if np.any(np.diff(times) <= 0):
        raise DataError("chunk times must increase")
    return np.stack([np.interp(grid, times, actions[:, j]) for j in range(actions.shape[1])], 1)


class ResidualRunner(CameraCallbacks):
    def __init__(self, config: ResidualPolicyConfig, log, now: Callable[[], float],
                 command: Callable[[np.ndarray], None]):
        self.config = c = config
        self.log, self.now, self.publish = log, now, command
        self.warn_once = WarnOnce(log)
        torch.set_num_threads(c.torch_threads)
        torch.manual_seed(c.seed)
        self.chunks = ChunkExecutor(c.control_dt, action_horizon=1)

        self.policy = ResidualPolicy.from_checkpoint(c.residual_checkpoint) if c.residual_checkpoint else None  # bad: exit 2
        trained = load_robot(self.policy.cfg.robot) if self.policy else None
        self.arm = ArmInterface.build(c, c.control_dt, trained, what=f"residual {c.residual_checkpoint or '(none)'}")
        try:
            base_cfg = self.policy.cfg if self.policy else ResidualConfig(robot=self.arm.robot.name)
            self.cfg = replace(base_cfg, **c.overrides())
        except (ConfigError, ValueError) as e:
            raise ConfigError(f"node residual_policy: {e}") from e
        self.obs_keys = self.cfg.obs_keys if (self.policy or c.learn) else ("joint_pos",)
        self._features = space_for(self.cfg).feature_dim  # appended to the state vector by the residual
        self._sources = source_keys(self.obs_keys)  # what the topics provide (derived keys: features.py)
        self._with_chunk = any(k in CHUNK_KEYS for k in self._sources)  # chunk_end_rel, chunk_left
        self.needs_poses = "object_poses" in self._sources
        unknown = [k for k in self._sources if k not in OBS_KEYS + CHUNK_KEYS + (base_view.KEY,)]
        if unknown:
            raise ConfigError(f"{c.residual_checkpoint or 'residual config'}: no topic provides the observation keys {unknown}")
        self.base_view, self.camera = (open_base_view(c, c.base_checkpoint, c.residual_checkpoint or "the residual",
                                                      self.arm.robot, self.arm.joints.policy_joints, self.log)
                                       if base_view.KEY in self._sources else (None, None))
        self.camera_topics = self.camera.topics if self.camera is not None else ()  # for the node to subscribe
        self.online: OnlineResidual | None = None
        self._demos = self._open_demos() if c.learn else None
        if c.learn and (self.policy is not None or self._demos is not None):
            self._start_learning(self.policy.actor if self.policy else self._actor_from_demos())

        self._joints = None  # (stamp, receive time, q, v) in the robot's joint order
        self._latest = LatestMessages(c.max_age, c.sync_tolerance)  # /task/object_poses
        self._reward = self._success = None
        self._ticks = ControlTicks(c.control_dt)
        self._waiting = None  # the latest tick, until its base action arrives: (t, received, obs, reward, success)
        self._episode = EpisodeStart()  # from /sim/episode_start
        self._guard_needs_reference = True
        self._stale = False
        self.commands = 0

        self.log.info(f"residual {c.residual_checkpoint or '(none: zero, the base exactly)'}, learn {c.learn}"
                      + (f", out_dir {c.out_dir}" if c.learn else "") + f"; {self.arm.describe()}")
        learned_on = self.policy.base_deployment() if self.policy is not None else {}
        if learned_on:  # the base is a black box on a topic: these are the diffusion node's to set
            self.log.info(f"this residual learned on its base with {learned_on}: give the diffusion_policy "
                          "node the same parameters")

    # ------------------------------------------------------------------ set-up
    def _feed(self) -> CameraFeed | None:  # CameraCallbacks
        return self.camera

    def _positions(self) -> np.ndarray | None:
        return self._joints[2] if self._joints is not None else None

    def _open_demos(self):
        c = self.config
        if not c.demo_dataset:
            return None
        if not c.base_checkpoint:
            self.log.info("demo_dataset given without base_checkpoint: skipping the demos "
                          "(relabelling runs the base itself; a base on a topic cannot)")
            return None
        from robot_rl.data.dataset import EpisodeDataset
        from robot_rl.policies.loading import load_policy
        from robot_rl.policies.residual.learner import label_demos

        dataset, base = EpisodeDataset.open(c.demo_dataset), load_policy(c.base_checkpoint, robot=self.arm.robot)
        return functools.cache(lambda: label_demos(dataset, base, self.obs_keys))  # run the base over them once

    def _actor_from_demos(self) -> ResidualActor:
        """No checkpoint: a zero residual, observations standardised with the demos' statistics."""
        from robot_rl.policies.residual.learner import demo_states

        labelled = self._demos()
        first = {k: v[0] for k, v in labelled[0].items()}  # one step: where each feature sits in the state
        norm = residual_normalizer(self.cfg, demo_states(labelled, self.obs_keys, self.cfg.robot),
                                   feature_columns(first, self.obs_keys, first["base"], self.cfg.robot))
        return ResidualActor(len(norm.obs_mean), self.cfg, norm)

    def _start_learning(self, actor: ResidualActor) -> None:
        c = self.config
        self.online = OnlineResidual(actor, self.cfg, c.out_dir, c.control_dt, c.checkpoint_every, c.seed,
                                     self._demos, log=self.log.info)

    # ------------------------------------------------------------------ helpers
    def _hold(self, reason: str) -> None:
        if not self._stale:  # once per spell
            self.log.warning(f"holding position, no new commands: {reason}")
            self._stale = True

    def _reset(self, reason: str) -> None:
        """New episode (or time went back): no chunk, no waiting tick, a fresh transition chain."""
        self.chunks.reset()
        self._waiting = None
        self._ticks.reset()
        self._guard_needs_reference = True
        if self.online is not None:
            self.online.end_episode()
        if self.policy is not None:
            self.policy.space.reset()  # task space: the held offset belongs to one episode
        self.log.info(f"reset: {reason}")

    # ------------------------------------------------------------------ inputs
    def episode_start(self, start: float) -> None:
        """/sim/episode_start: reset at the episode's first observation (or now, if it came first)."""
        if self._episode.announce(start, self._joints[0] if self._joints else None):
            self._reset(f"episode started at {start:.3f} (announced late)")

    def reward(self, value: float) -> None:
        self._reward = float(value)

    def success(self, value: bool) -> None:
        self._success = bool(value)

    def poses(self, stamp: float, poses: np.ndarray) -> None:
        """/task/object_poses, (K, 7)."""
        self.observation("/task/object_poses", stamp, poses)

    def observation(self, topic: str, stamp: float, value) -> None:
        """The latest message of an observation topic besides /joint_states (poses, the base's cameras)."""
        self._latest.put(topic, stamp, value)
        self._maybe_tick()

    def joint_state(self, names, position, velocity, stamp: float) -> None:
        """A /joint_states message (its names, positions, velocities and stamp)."""
        try:
            q, v = self.arm.joint_state(names, position, velocity)
        except DataError as e:
            self.log.error(f"/joint_states: {e}; ignoring the message", throttle_duration_sec=5.0)
            return
        if self._episode.begins(stamp):
            self._reset(f"episode starting at {self._episode.start:.3f}")
        elif self._joints is not None and stamp < self._joints[0] - 1e-6:
            self._reset(f"/joint_states stamps went back from {self._joints[0]:.3f} to {stamp:.3f}")
        self._joints = (stamp, self.now(), q, v)
        self._maybe_tick()

    def base_chunk(self, names, times: np.ndarray, positions: np.ndarray, stamp: float) -> None:
        """The base's chosen chunk (a /policy/action_chunk: joint names, point times, (M, n) positions)."""
        try:
            if not len(times):
                raise DataError("the chunk has no points")
            actions = chunk_on_grid(times, self.arm.joints.from_points(names, positions),
                                    self.config.control_dt)
        except DataError as e:
            self.log.error(f"/policy/action_chunk: {e}", throttle_duration_sec=5.0)
            return
        if self._episode.before(stamp):
            return  # computed in the previous episode
        if self._episode.begins(stamp):  # the base answered the episode's first observation before we saw it
            self._reset(f"episode starting at {self._episode.start:.3f} (base chunk first)")
        delivery = self.chunks.deliver(stamp, actions, self.chunks.generation)
        if delivery.action is not None and self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            self._act(*waiting, delivery.action, delivery.index)

    def _observation(self, t: float, q: np.ndarray, v: np.ndarray) -> dict | None:
        """The residual's observation at `t`, or None (wait for the poses of this tick, or hold)."""
        obs = {"joint_pos": q.astype(np.float32), "joint_vel": v.astype(np.float32)}
        if "ee_pos" in self._sources or "ee_quat" in self._sources:
            obs["ee_pos"], obs["ee_quat"] = self.arm.ee_pose(q)
        if "object_poses" in self._sources:
            poses = self._synced("/task/object_poses", t)
            if poses is None:
                return None
            obs["object_poses"] = poses.astype(np.float32)
        if self.base_view is not None:  # what the base sees, through its frozen encoder
            frame = {}
            for key, topic in self.camera.key_topics().items():
                frame[key] = self._synced(topic, t)
                if frame[key] is None:
                    return None
                shape = tuple(self.base_view.config.obs_shapes[key])
                if np.shape(frame[key]) != shape:
                    self.warn_once(f"shape:{key}", f"{topic} gives {key} of shape {np.shape(frame[key])}, the base "
                                   f"expects {shape} (another camera size?): holding", error=True)
                    return None
            obs[base_view.KEY] = self.base_view.scene_features(frame)
        return obs

    def _synced(self, topic: str, t: float):
        """`topic`'s message for the tick at `t`, or None (not yet: wait; stale: hold)."""
        value = self._latest.at(topic, t)
        if isinstance(value, Missing):
            if value.kind == "first":
                self.warn_once(topic, value.reason)
            elif value.kind == "stale":
                self._hold(value.reason)  # "pending": this tick's message may still be on its way
            return None
        return value

    def _maybe_tick(self) -> None:
        if self._joints is None:
            return
        c = self.config
        t, received, q, v = self._joints
        if not self._ticks.due(t):
            return  # answered already, or a faster joint state stream: not a control tick
        if self.now() - received > c.max_age:
            self._hold(f"/joint_states received {self.now() - received:.2f} s ago")
            return
        obs = self._observation(t, q, v)
        if obs is None:
            return
        self._ticks.take(t)
        if self._guard_needs_reference:
            self.arm.reset_guard(q)
            self._guard_needs_reference = False
        else:
            self.arm.observe(q)
        if self._waiting is not None:
            self._hold(f"no base action came for the tick at {self._waiting[0]:.3f}")
        if c.learn and self._success is None:
            self.warn_once("reward", "no /task/success yet: recording reward 0 and no terminal until it comes")
        reward = self._reward if c.reward == "reward" else float(bool(self._success))
        self._waiting = (t, received, obs, reward or 0.0, bool(self._success))
        tick = self.chunks.tick(t)
        if tick.action is not None:
            waiting, self._waiting = self._waiting, None
            self._act(*waiting, tick.action, tick.index)

    # ------------------------------------------------------------------ commands
    def _act(self, t, received, obs, reward, success, base, index) -> None:
        """base + residual through the guard, for the tick at `t`; `base` is action `index` of the current chunk."""
        c = self.config
        if self.now() - received > c.max_age:
            self._hold(f"the base action for the tick at {t:.3f} came after max_age")
            return
        if self._with_chunk:
            obs = {**obs, **chunk_context.from_chunk(self.chunks.chunk_actions, index, c.chunk_lead)}
        vec = state_vector(obs, self.obs_keys, base, self.cfg.robot)  # derived keys may read the base action (features.py)
        if self.online is None and c.learn:  # no checkpoint, no demos: the first observation sizes it
            dim = len(vec) + self._features
            self._start_learning(ResidualActor(dim, self.cfg, default_normalizer(dim, limits=self.cfg.limits())))
        actor = self.online.actor if self.online else (self.policy.actor if self.policy else None)
        if actor is not None and len(vec) + self._features != actor.norm.obs_mean.numel():
            self.warn_once("dim", f"the observation {list(self.obs_keys)} has {len(vec)} values, the residual "
                            f"expects {actor.norm.obs_mean.numel()} (a different task?): holding", error=True)
            return
        if self.online is not None:
            self.online.observe(t, vec, base, reward, success)  # closes the previous transition
            action = self.online.act(vec, base)
        elif self.policy is not None:
            action = self.policy.step(vec, base)
        else:
            action = base
        result = self.arm.command(action)
        if result.command is None:
            return  # no reference position yet
        if result.refusal is not None:
            self.log.error(f"action refused: {result.refusal}", throttle_duration_sec=5.0)
        elif self.online is not None:
            self.online.executed(t, vec, base, self.arm.to_policy(result.command))
        self.publish(result.command)
        self.commands += 1
        if self._stale:
            self._stale = False
            self.log.info("base actions and observations are fresh again: resuming")

    def watchdog(self) -> None:
        """Periodically: hold when the joint states, or a tick's base action, stopped coming."""
        if self._waiting is not None and self.now() - self._waiting[1] > self.config.max_age:
            self._hold(f"no base action came for the tick at {self._waiting[0]:.3f} within max_age")
            self._waiting = None
        if self._joints is not None and self.now() - self._joints[1] > self.config.max_age:
            self._hold(f"no /joint_states for {self.now() - self._joints[1]:.2f} s")

    def status(self) -> dict:
        return {"residual": self.config.residual_checkpoint, "holding": self._stale or self._joints is None,
                "commands": self.commands, "learn": self.config.learn,
                "updates": self.online.updates if self.online is not None else 0}

    def close(self) -> None:
        self._joints = None  # no more ticks: commands stop
        self.log.info(f"{self.commands} commands")
        if self.online is not None:
            saved = self.online.close()
            if saved is None:
                self.log.info(f"nothing learned yet: no checkpoint written to {self.config.out_dir}")
            else:
                self.log.info(f"{self.online.updates} updates; saved {saved[0]} and {saved[1]}")
