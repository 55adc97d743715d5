"""Residual off-policy RL (ResFiT): learn a per-step correction on top of a frozen base policy.

TD3 with a LayerNorm critic ensemble (target = min of a random pair, actor loss = mean over
members), n-step returns, update-to-data ratio > 1, RLPD symmetric sampling against base-relabelled
demonstrations, warm-up phases (base + small noise; critic-only updates) and gradient clipping.
The whole update is `update()` below; the loop around it collects data and evaluates.
"""
from __future__ import annotations

import copy
import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from robot_rl.data.replay import NStepWriter, ReplayBuffer, sample_symmetric
from robot_rl.policies.hlgauss import HLGauss
from robot_rl.policies.residual.config import ResidualConfig
from robot_rl.policies.chunk_context import KEYS as CHUNK_KEYS, act_with_context
from robot_rl.policies.features import feature_columns, recorded_keys, state_matrix, state_vector
from robot_rl.policies.residual.model import ResidualActor, ResidualCritic, ResidualPolicy, residual_normalizer
from robot_rl.policies.residual.noise import ExplorationNoise
from robot_rl.policies.residual.space import space_for
from robot_rl.sim.env import ArmEnv
from robot_rl.sim.rollout import evaluate


@dataclass
class ResidualTrainConfig:
    task: str = "lift"
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


class Learner:
    """Networks, optimisers and the TD3 update; shared by the in-process trainer and the ROS node."""

    def __init__(self, obs_dim: int, cfg: ResidualConfig, normalizer, seed: int = 0):
        torch.manual_seed(seed)
        self.cfg = cfg
        self.rng = np.random.default_rng(seed)
        self.actor = ResidualActor(obs_dim, cfg, normalizer)
        self.critic = ResidualCritic(obs_dim, cfg, normalizer)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.net.parameters(), lr=cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.ensemble.parameters(), lr=cfg.critic_lr)
        self.hl = HLGauss(cfg.v_min, cfg.v_max, cfg.hl_bins) if cfg.hl_gauss else None
        self.online = ReplayBuffer(cfg.buffer_size, obs_dim, cfg.action_dim, cfg.correction_dim)
        self.demos = ReplayBuffer(cfg.buffer_size, obs_dim, cfg.action_dim, cfg.correction_dim)
        self.updates = 0
        self.stats = {"critic_loss": float("nan"), "actor_loss": float("nan"), "q_mean": float("nan")}

    def q_values(self, critic, obs, base, correction, members=None) -> torch.Tensor:
        out = critic(obs, base, correction, members)
        return self.hl.to_scalar(out) if self.hl is not None else out

    @torch.no_grad()
    def td_target(self, b: dict, pair) -> torch.Tensor:
        """n-step TD3 target: smoothed target-actor correction, min over the critic pair `pair`."""
        cfg = self.cfg
        noise = (torch.randn_like(b["action"]) * cfg.target_noise).clamp(-cfg.noise_clip, cfg.noise_clip)
        next_correction = (self.actor_target.raw(b["next_obs"], b["next_base"]) + noise).clamp(-1, 1)
        q_next = self.q_values(self.critic_target, b["next_obs"], b["next_base"], next_correction,
                               torch.as_tensor(pair))  # only the pair's two heads
        target = b["reward"] + b["discount"] * q_next.min(0).values
        # A sparse 0/1 reward bounds every return to [v_min, v_max]: a target outside is bootstrap
        # error, and letting it through feeds the overestimation the actor then exploits.
        return target.clamp(cfg.v_min, cfg.v_max)

    def update(self, train_actor: bool) -> None:
        cfg = self.cfg
        b = sample_symmetric(self.online, self.demos, cfg.batch_size, self.rng)
        target = self.td_target(b, self.rng.choice(cfg.num_critics, 2, replace=False))
        out = self.critic(b["obs"], b["base"], b["action"])
        if self.hl is not None:
            critic_loss = self.hl.loss(out, target.expand(cfg.num_critics, -1))
        else:
            critic_loss = ((out - target) ** 2).mean()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.critic.ensemble.parameters(), cfg.grad_clip)
        self.critic_opt.step()
        self.updates += 1
        self.stats["critic_loss"] = critic_loss.item()

        if train_actor and self.updates % cfg.actor_delay == 0:
            pre = self.actor.pre(b["obs"], b["base"])
            q_pi = self.q_values(self.critic, b["obs"], b["base"], torch.tanh(pre))
            actor_loss = -q_pi.mean() + cfg.residual_penalty * pre.pow(2).mean()  # Q: mean over members
            if cfg.bc_weight > 0 and b["demo"].any():  # TD3+BC on the demo rows: their corrections
                demo = b["demo"].bool()
                bc = (torch.tanh(pre[demo]) - b["action"][demo].clamp(-1, 1)).pow(2).mean()
                actor_loss = actor_loss + cfg.bc_weight * bc
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            torch.nn.utils.clip_grad_norm_(self.actor.net.parameters(), cfg.grad_clip)
            self.actor_opt.step()
            self.stats.update(actor_loss=actor_loss.item(), q_mean=q_pi.mean().item())
        with torch.no_grad():  # Polyak averaging of both targets
            for net, tgt in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
                for p, p_t in zip(net.parameters(), tgt.parameters()):
                    p_t.lerp_(p, cfg.tau)


def label_demos(dataset, base, obs_keys) -> list[dict]:
    """Every demonstration with what the base does at each of its steps: its action (`base`) and
    chunk context (chunk_context.KEYS), running the base from each episode's start. Keeps the
    keys the residual's state is made of, the action, reward and success."""
    keep = [*recorded_keys(obs_keys), "action", "reward", "success"]
    labelled = []
    for i in range(dataset.num_episodes):
        ep = dataset.load_episode(i)
        base.reset(seed=i)
        steps = [act_with_context(base, {k: ep[k][t] for k in ep}) for t in range(len(ep["action"]))]
        out = {k: ep[k] for k in dict.fromkeys(keep)}
        out["base"] = np.stack([a for a, _ in steps])
        out.update({k: np.stack([o[k] for _, o in steps]) for k in CHUNK_KEYS})
        labelled.append(out)
    return labelled


def relabel_demos(learner: Learner, labelled: list[dict], cfg: ResidualConfig, successful_only: bool = True) -> int:
    """Labelled demonstrations (label_demos) into the demo buffer, with the base's actions.

    An episode ends at its first success, written as a terminal step with its reward (the
    successor state is never bootstrapped from, so the dataset need not hold it). An episode
    without success ends one step early: its last step has no stored successor to bootstrap from.
    """
    writer = NStepWriter(learner.demos, cfg.n_step, cfg.gamma)
    space, count = space_for(cfg), 0
    for ep in labelled:
        hits = np.flatnonzero(ep["success"])
        if successful_only and not hits.size:
            continue
        bases, steps = ep["base"], len(ep["action"])
        vecs = state_matrix(ep, cfg.obs_keys, bases)
        last = int(hits[0]) if hits.size else steps - 2
        space.reset()
        for t in range(last + 1):
            state = np.concatenate([vecs[t], space.features()])
            correction = space.follow(bases[t], ep["action"][t])  # the offset the demo holds, in task space
            after = min(t + 1, steps - 1)  # a terminal step's successor only fills the row
            writer.step(state, bases[t], correction, ep["reward"][t], np.concatenate([vecs[after], space.features()]),
                        bases[after], terminal=bool(hits.size) and t == last, episode_end=t == last)
            count += 1
    return count


def demo_states(labelled: list[dict], obs_keys) -> np.ndarray:
    """Every labelled demonstration step as a state vector: the normaliser's statistics."""
    return np.concatenate([state_matrix(ep, obs_keys, ep["base"]) for ep in labelled])


def train(tc: ResidualTrainConfig, make_base, demos=None, progress: bool = True) -> dict:
    """Run residual RL on `tc.task`; `make_base()` builds a fresh base policy (train and eval copies)."""
    torch.set_num_threads(tc.torch_threads)
    cfg, out = tc.algo, Path(tc.out)
    out.mkdir(parents=True, exist_ok=True)
    env = ArmEnv(tc.task)
    base, eval_base = make_base(), make_base()
    obs, _ = env.reset(seed=tc.seed)
    base.reset(seed=tc.seed)
    base_action, obs = act_with_context(base, obs)
    labelled = label_demos(demos, make_base(), cfg.obs_keys) if demos is not None and demos.num_episodes else []
    states = demo_states(labelled, cfg.obs_keys) if labelled else state_vector(obs, cfg.obs_keys, base_action)
    norm = residual_normalizer(cfg, states, feature_columns(obs, cfg.obs_keys, base_action))
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
        result = evaluate(tc.task, eval_policy, eval_seeds, progress=False)
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
    explore = ExplorationNoise(cfg.correction_dim, cfg.noise_correlation, learner.rng)

    def state(o: dict, base_action: np.ndarray) -> np.ndarray:
        return np.concatenate([state_vector(o, cfg.obs_keys, base_action), space.features()])

    vec = state(obs, base_action)
    for step in bar:
        warm = step <= cfg.warmup_steps
        # Warm-up rollouts are the base plus small noise; then the actor plus exploration noise.
        noise = cfg.exploration_noise * (0.5 if warm else 1.0)
        tried = learner.actor.correction(vec, base_action, explore.sample(noise), use_actor=not warm)
        action = space.command(base_action, tried)
        next_obs, _, terminated, truncated, info = env.step(action)
        correction = space.follow(base_action, action)
        next_base, next_obs = act_with_context(base, next_obs)
        next_vec = state(next_obs, next_base)
        writer.step(vec, base_action, correction, info["sparse_reward"], next_vec, next_base,
                    terminal=terminated, episode_end=terminated or truncated)
        if terminated or truncated:
            episode += 1
            explored.append(float(terminated))
            next_obs, _ = env.reset(seed=tc.seed + episode)
            base.reset(seed=tc.seed + episode)  # the base's chunk queue must not cross episodes
            space.reset()
            explore.reset()
            next_base, next_obs = act_with_context(base, next_obs)
            next_vec = state(next_obs, next_base)
        vec, base_action = next_vec, next_base
        if not warm and learner.online.size + learner.demos.size >= cfg.batch_size:
            for _ in range(cfg.utd_ratio):
                learner.update(train_actor=learner.updates >= cfg.critic_warmup_updates)
        if step % tc.eval_every == 0:
            run_eval(step)
            saved = ResidualPolicy(None, learner.actor, cfg)
            meta = {"task": tc.task, "base": tc.base, "base_noise_scale": tc.base_noise_scale,
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
