"""Run policies in the simulator: single episodes (optionally recorded) and seeded evaluations.

A policy is anything with `reset(seed=None)` and `act(obs) -> action`; the scripted experts,
learned policies and residual wrappers all run through these two functions, so "success rate"
means the same thing everywhere. Any gymnasium env with a dict observation runs through them too
(robot_rl/envs.py: success from info["success"] or info["is_success"]).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from robot_rl.envs import episode_limit, sparse_reward, success_of
from robot_rl.sim.env import ArmEnv


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    steps: int
    total_reward: float
    frames: dict[str, np.ndarray] = field(default_factory=dict)  # obs keys + action/reward/success
    video: list[np.ndarray] = field(default_factory=list)


def run_episode(env: ArmEnv, policy, seed: int, record: bool = False, video: bool = False,
                max_steps: int | None = None) -> EpisodeResult:
    """Reset env and policy with `seed`, act until success or the step limit."""
    obs, _ = env.reset(seed=seed)
    policy.reset(seed=seed)
    columns: dict[str, list] = {}
    frames_video = [env.render()] if video else []
    success, total, steps = False, 0.0, 0
    for steps in range(1, episode_limit(env, max_steps) + 1):
        action = np.asarray(policy.act(obs), np.float32)
        next_obs, reward, terminated, truncated, info = env.step(action)
        if record:
            for key, value in obs.items():
                columns.setdefault(key, []).append(value)
            columns.setdefault("action", []).append(action)
            columns.setdefault("reward", []).append(np.float32(sparse_reward(info)))
            columns.setdefault("success", []).append(success_of(info))
        if video:
            frames_video.append(env.render())
        total += float(reward)
        obs, success = next_obs, success_of(info)
        if terminated or truncated:
            break
    frames = {key: np.stack(values) for key, values in columns.items()}
    return EpisodeResult(seed, success, steps, total, frames, frames_video)


def evaluate(task: str, policy, seeds, env_kwargs: dict | None = None, progress: bool = True,
             env: ArmEnv | None = None) -> dict:
    """Success rate of `policy` on `task` over the given seeds (same seeds -> same starts)."""
    env = env or ArmEnv(task, **(env_kwargs or {}))
    results = []
    bar = tqdm(list(seeds), desc=f"eval {task}", disable=not progress, leave=False)
    for seed in bar:
        results.append(run_episode(env, policy, int(seed)))
        bar.set_postfix(success=f"{np.mean([r.success for r in results]):.2f}")
    successes = [r.success for r in results]
    return {
        "task": task,
        "episodes": len(results),
        "success_rate": float(np.mean(successes)) if results else 0.0,
        "successes": successes,
        "lengths": [r.steps for r in results],
    }
