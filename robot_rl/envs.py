"""Environments that are not robot_rl's simulated arm: any gymnasium env with a dict observation.

`--env` names one as a registered gymnasium id (`gymnasium.make`) or `module:Class` (imported and
built without arguments). Success is read from `info["success"]` (robot_rl's ArmEnv) or
`info["is_success"]` (the gymnasium-robotics convention); the sparse reward is 1 on success. The
action limits are the env's Box action space.
"""
from __future__ import annotations

import importlib

import numpy as np

from robot_rl.errors import ConfigError


def make_env(spec: str):
    """The environment `spec` names (a gymnasium id or module:Class); one clear line if it cannot be made."""
    import gymnasium

    try:
        module, _, name = spec.rpartition(":")
        if module and name.isidentifier():  # module:Class; "module:Env-v0" is a gymnasium id with its module
            env = getattr(importlib.import_module(module), name)()
        else:
            env = gymnasium.make(spec)
    except (ImportError, AttributeError, gymnasium.error.Error, TypeError) as e:
        raise ConfigError(f"--env {spec}: cannot make it ({type(e).__name__}: {e}); pass a registered gymnasium "
                          "id or module:Class importable from here (PYTHONPATH)") from None
    if not isinstance(env.observation_space, gymnasium.spaces.Dict):
        raise ConfigError(f"--env {spec}: its observation space is {type(env.observation_space).__name__}; "
                          "robot_rl's policies read a Dict observation (named keys)")
    if not isinstance(env.action_space, gymnasium.spaces.Box):
        raise ConfigError(f"--env {spec}: its action space is {type(env.action_space).__name__}, not a Box")
    return env


def action_limits(env) -> tuple[np.ndarray, np.ndarray]:
    """The Box action space's bounds (ResidualConfig refuses unbounded ones)."""
    return np.asarray(env.action_space.low, np.float64), np.asarray(env.action_space.high, np.float64)


def success_of(info: dict) -> bool:
    return bool(info.get("success", info.get("is_success", False)))


def sparse_reward(info: dict) -> float:
    return float(info["sparse_reward"]) if "sparse_reward" in info else float(success_of(info))


def episode_limit(env, max_steps: int | None = None) -> int:
    """Steps before an episode is cut: given, the env's own max_steps, its spec's, else 10000."""
    spec = getattr(env, "spec", None)
    return int(max_steps or getattr(env, "max_steps", None) or (spec and spec.max_episode_steps) or 10_000)
