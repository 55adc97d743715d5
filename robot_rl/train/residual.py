"""Residual off-policy RL (ResFiT): learn a per-step correction on top of a frozen base policy.

The loop: collect with exploration noise (warm-up phases: base + small noise, then critic-only
updates), `utd_ratio` TD3 updates per env step (`Learner.update` in
policies/residual/learner.py: the whole update in one place), evaluations and checkpoints.
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from robot_rl.data.replay import NStepWriter
from robot_rl.evaluate import env_kwargs_for_policy
from robot_rl.policies.chunk_context import act_with_context
from robot_rl.policies.features import feature_columns, state_vector
from robot_rl.policies.residual.config import ResidualConfig
from robot_rl.policies.residual.learner import Learner, demo_states, label_demos, relabel_demos  # noqa: F401
from robot_rl.policies.residual.model import ResidualPolicy, residual_normalizer
from robot_rl.policies.residual.noise import ExplorationNoise
from robot_rl.policies.residual.space import space_for
from robot_rl.envs import make_env, sparse_reward, success_of
from robot_rl.sim.env import ArmEnv
from robot_rl.sim.rollout import evaluate


@dataclass
class ResidualTrainConfig:
    task: str = "lift"
    env: str = ""  # another gymnasium env (an id or module:Class, robot_rl/envs.py) instead of the arm's task
    total_env_steps: int = 100_000
    eval_every: int = 5_000
    eval_episodes: int = 50
    eval_seed: int = 1_000_000     # evaluation seeds are disjoint from training seeds
    seed: int = 0
    out: str = "runs/residual"
    torch_threads: int = 1  # small MLPs: one thread beats two on a busy 2-core machine
    # The base this residual corrects, written into its checkpoint: a residual learned on a
    # deterministic base (noise_scale 0) must be deployed on one, and eval takes it from there.
    # The same for its action horizon (Ta): None keeps the checkpoint's.
    base: str = ""
    base_noise_scale: float | None = None
    base_action_horizon: int | None = None
    algo: ResidualConfig = field(default_factory=ResidualConfig)


def train(tc: ResidualTrainConfig, make_base, demos=None, progress: bool = True) -> dict:
    """Run residual RL on `tc.task`; `make_base()` builds a fresh base policy (train and eval copies)."""
    torch.set_num_threads(tc.torch_threads)
    cfg, out = tc.algo, Path(tc.out)
    out.mkdir(parents=True, exist_ok=True)
    base, eval_base = make_base(), make_base()
    # the base's cameras (a perception base): the residual reads what it sees (policies/base_view.py)
    if tc.env:
        env, eval_env = make_env(tc.env), make_env(tc.env)
    else:
        env_kwargs = {"robot": cfg.robot, **env_kwargs_for_policy(base, tc.base)}
        env, eval_env = ArmEnv(tc.task, **env_kwargs), ArmEnv(tc.task, **env_kwargs)
    robot = cfg.robot or None  # derived features need one
    obs, _ = env.reset(seed=tc.seed)
    base.reset(seed=tc.seed)
    base_action, obs = act_with_context(base, obs, cfg.obs_keys)
    labelled = label_demos(demos, make_base(), cfg.obs_keys) if demos is not None and demos.num_episodes else []
    states = (demo_states(labelled, cfg.obs_keys, robot) if labelled
              else state_vector(obs, cfg.obs_keys, base_action, robot))
    norm = residual_normalizer(cfg, states, feature_columns(obs, cfg.obs_keys, base_action, robot))
    learner = Learner(len(norm.obs_mean), cfg, norm, tc.seed)
    if labelled:
        print(f"relabelled {relabel_demos(learner, labelled, cfg)} demo transitions with the base")
    writer = NStepWriter(learner.online, cfg.n_step, cfg.gamma)
    eval_policy = ResidualPolicy(eval_base, learner.actor, cfg)
    eval_seeds = range(tc.eval_seed, tc.eval_seed + tc.eval_episodes)
    rows, start, episode = [], time.perf_counter(), 0
    explored = []  # successes of the training (exploring) episodes since the last evaluation

    def run_eval(step: int) -> None:
        learner.actor.eval()
        result = evaluate(tc.task, eval_policy, eval_seeds, progress=False, env=eval_env)
        learner.actor.train()
        train_success = float(np.mean(explored)) if explored else float("nan")
        rows.append({"env_steps": step, "wall_s": round(time.perf_counter() - start, 1),
                     "success": result["success_rate"], "train_success": train_success, "updates": learner.updates,
                     **learner.stats})
        explored.clear()
        bar.write(f"{out.name} step {step}: success {result['success_rate']:.2f} ({tc.eval_episodes} episodes, "
                  f"{rows[-1]['wall_s']:.0f} s; exploring {train_success:.2f})")

    bar = tqdm(range(1, tc.total_env_steps + 1), desc=f"residual {tc.task}", disable=not progress)
    run_eval(0)
    space = space_for(cfg)  # the training episodes' correction state (task space: the held offset)
    explore = ExplorationNoise(cfg.correction_dim, learner.rng)

    def state(o: dict, base_action: np.ndarray) -> np.ndarray:
        return np.concatenate([state_vector(o, cfg.obs_keys, base_action, robot), space.features()])

    vec = state(obs, base_action)
    for step in bar:
        warm = step <= cfg.warmup_steps
        # Warm-up rollouts are the base plus small noise; then the actor plus exploration noise.
        noise = cfg.exploration_noise * (0.5 if warm else 1.0)
        tried = learner.actor.correction(vec, base_action, explore.sample(noise), use_actor=not warm)
        action = space.command(base_action, tried)
        next_obs, _, terminated, truncated, info = env.step(action)
        correction = space.follow(base_action, action)
        next_base, next_obs = act_with_context(base, next_obs, cfg.obs_keys)
        next_vec = state(next_obs, next_base)
        writer.step(vec, base_action, correction, sparse_reward(info), next_vec, next_base,
                    terminal=terminated, episode_end=terminated or truncated)
        if terminated or truncated:
            episode += 1
            explored.append(float(success_of(info)))
            next_obs, _ = env.reset(seed=tc.seed + episode)
            base.reset(seed=tc.seed + episode)  # the base's chunk queue must not cross episodes
            space.reset()
            next_base, next_obs = act_with_context(base, next_obs, cfg.obs_keys)
            next_vec = state(next_obs, next_base)
        vec, base_action = next_vec, next_base
        if not warm and learner.online.size + learner.demos.size >= cfg.batch_size:
            for _ in range(cfg.utd_ratio):
                learner.update(train_actor=learner.updates >= cfg.critic_warmup_updates)
        if step % tc.eval_every == 0:
            run_eval(step)
            saved = ResidualPolicy(None, learner.actor, cfg)
            meta = {"task": tc.task, "env": tc.env, "base": tc.base, "base_noise_scale": tc.base_noise_scale,
                    "base_action_horizon": tc.base_action_horizon}
            saved.save(out / "checkpoint", learner.critic, meta)
            if _best(rows) is rows[-1]:
                saved.save(out / "best", learner.critic, {**meta, "env_steps": step})
            _write_curves(out, rows)
        bar.set_postfix(succ=f"{rows[-1]['success']:.2f}", q=f"{learner.stats['q_mean']:.2f}")
    summary = _summary(rows)
    (out / "summary.json").write_text(json.dumps({"config": asdict(tc), **summary}, indent=2, default=str))
    print(f"residual {tc.task}: success {summary['base_success']:.2f} -> {summary['final_success']:.2f}, "
          f"90% at {summary['env_steps_to_90']} steps, 95% at {summary['env_steps_to_95']} steps, "
          f"{summary['wall_s']:.0f} s; checkpoint {out / 'checkpoint'}, best ({summary['best_success']:.2f} at "
          f"{summary['best_env_steps']} steps) {out / 'best'}")
    return summary


def _first(rows, key, threshold):
    return next((r[key] for r in rows if r["success"] >= threshold), None)


def _best(rows) -> dict:
    """The trained evaluation (not the step-0 base) with the top success; ties go to the later, longer-trained."""
    return max(rows[1:] or rows, key=lambda r: (r["success"], r["env_steps"]))


def _summary(rows) -> dict:
    best = _best(rows)
    return {"base_success": rows[0]["success"], "final_success": rows[-1]["success"],
            "best_success": best["success"], "best_env_steps": best["env_steps"],
            "env_steps_to_90": _first(rows, "env_steps", 0.9), "env_steps_to_95": _first(rows, "env_steps", 0.95),
            "wall_s_to_90": _first(rows, "wall_s", 0.9), "wall_s_to_95": _first(rows, "wall_s", 0.95),
            "wall_s": rows[-1]["wall_s"], "curve": rows}


def _write_curves(out: Path, rows) -> None:
    with open(out / "curves.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, key in zip(axes, ("env_steps", "wall_s")):
        ax.plot([r[key] for r in rows], [r["success"] for r in rows], marker="o")
        ax.set_xlabel(key.replace("_", " "))
        ax.set_ylabel("success")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    plt.close(fig)
