"""Offline value learning for steering: Cal-QL or IQL on an episode dataset of mixed quality.

Both algorithms are `update()` below, side by side: a TD loss on chunk transitions plus either
the Cal-QL regulariser (CQL's logsumexp push-down, with policy-action values floored at the
Monte-Carlo return) or IQL's expectile value and AWR actor. Every `eval_every` steps the
diagnostics that tell over- from under-fitting are logged on held-out episodes: TD error and Q,
Q of dataset vs policy vs random chunks, and Q against the Monte-Carlo return.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from robot_rl.data.chunks import chunk_transitions
from robot_rl.errors import ConfigError, DataError
from robot_rl.policies.ensemble import CriticEnsemble
from robot_rl.policies import base_view
from robot_rl.policies.features import recorded_keys, source_keys, state_matrix
from robot_rl.policies.value.config import ValueConfig
from robot_rl.policies.value.model import ChunkActor, ChunkCritic, ValueFunction, ValueNormalizer, chunk_features


@dataclass
class ValueTrainConfig:
    dataset: str = ""
    out: str = "runs/value"
    val_fraction: float = 0.1
    eval_every: int = 1000
    seed: int = 0
    torch_threads: int = 1
    # the perception generalist whose frozen encoder gives base_features (policies/base_view.py)
    base: str = ""
    # data that is not an arm's joints (no robot): the actions' bounds, e.g. an env's Box action
    # space (`--env`); empty: the data's own range
    action_low: tuple[float, ...] = ()
    action_high: tuple[float, ...] = ()
    env: str = ""  # the gymnasium env (`--env`) the bounds come from, recorded in the checkpoint
    algo: ValueConfig = field(default_factory=ValueConfig)


class ValueLearner:
    def __init__(self, obs_dim: int, cfg: ValueConfig, norm: ValueNormalizer, seed: int = 0):
        torch.manual_seed(seed)
        self.cfg, self.norm = cfg, norm
        self.critic = ChunkCritic(obs_dim, cfg)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor = ChunkActor(obs_dim, cfg)
        self.value = CriticEnsemble(obs_dim, 1, cfg.hidden, cfg.layers, 1) if cfg.algo == "iql" else None
        params = list(self.critic.parameters()) + (list(self.value.parameters()) if self.value else [])
        self.critic_opt = torch.optim.Adam(params, lr=cfg.lr)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr)

    @staticmethod
    def td_loss(q, target):
        """MSE of every member's (E, B) values against the (B,) target."""
        return F.mse_loss(q, target.expand_as(q))

    def update(self, b: dict) -> dict:
        cfg = self.cfg
        o, a, o2 = self.norm.obs(b["obs"]), self.norm.chunk(b["chunk"]), self.norm.obs(b["next_obs"])
        q_data = self.critic(o, a)  # (E, B)
        logs = {}
        # --- critic (and IQL's V) -------------------------------------------------------------
        if cfg.algo == "iql":
            with torch.no_grad():
                q_t = self.critic_target(o, a).min(0).values
                target = b["reward"] + b["discount"] * self.value(o2)[0, :, 0]
            diff = q_t - self.value(o)[0, :, 0]
            v_loss = (torch.where(diff > 0, cfg.iql_expectile, 1 - cfg.iql_expectile) * diff.pow(2)).mean()
            critic_loss = self.td_loss(q_data, target) + v_loss
            logs["v_loss"] = v_loss.item()
        else:
            with torch.no_grad():
                a2, _ = self.actor.sample(o2, 1)
                target = b["reward"] + b["discount"] * self.critic_target(o2, a2[:, 0]).min(0).values
                n, d = cfg.cql_num_actions, cfg.chunk_dim
                rand = torch.empty(len(o), n, d).uniform_(-1, 1)
                pi, logp = self.actor.sample(o, n)
                pi2, logp2 = self.actor.sample(o2, n)
            q_rand, q_pi, q_pi2 = (self._q_many(o, x) for x in (rand, pi, pi2))  # (E, B, n)
            lower = b["mc_return"][None, :, None]
            q_pi, q_pi2 = torch.maximum(q_pi, lower), torch.maximum(q_pi2, lower)  # Cal-QL's floor
            cat = torch.cat([q_rand - d * math.log(0.5), q_pi - logp[None], q_pi2 - logp2[None]], -1)
            push_down = torch.logsumexp(cat / cfg.cql_temperature, -1) * cfg.cql_temperature
            cql = (push_down - q_data).mean()
            critic_loss = self.td_loss(q_data, target) + cfg.cql_alpha * cql
            logs["cql"] = cql.item()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        # --- actor: AWR for IQL, SAC-style for Cal-QL's policy samples ---------------------------
        if cfg.algo == "iql":
            with torch.no_grad():
                adv = self.critic_target(o, a).min(0).values - self.value(o)[0, :, 0]
                weight = torch.exp(cfg.awr_temperature * adv).clamp(max=100.0)
            actor_loss = -(weight * self.actor.log_prob(o, a)).mean()
        else:
            a_new, logp_new = self.actor.sample(o, 1)
            actor_loss = (cfg.entropy_coef * logp_new[:, 0] - self.critic(o, a_new[:, 0]).min(0).values).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        with torch.no_grad():
            for p, p_t in zip(self.critic.parameters(), self.critic_target.parameters()):
                p_t.lerp_(p, cfg.tau)
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(),
                "q_data": q_data.mean().item(), **logs}

    def _q_many(self, o, chunks):
        """Q for n chunks per observation: (B, n, D) -> (E, B, n)."""
        bsz, n, d = chunks.shape
        q = self.critic(o.repeat_interleave(n, 0), chunks.reshape(bsz * n, d))
        return q.reshape(q.shape[0], bsz, n)

    @torch.no_grad()
    def diagnostics(self, data: dict) -> dict:
        """Held-out TD error and Q; dataset vs policy vs random chunk values; Q vs MC return."""
        o, a = self.norm.obs(data["obs"]), self.norm.chunk(data["chunk"])
        q = self.critic(o, a).min(0).values
        if self.value is not None:
            nxt = self.value(self.norm.obs(data["next_obs"]))[0, :, 0]
        else:
            a2, _ = self.actor.sample(self.norm.obs(data["next_obs"]), 1)
            nxt = self.critic_target(self.norm.obs(data["next_obs"]), a2[:, 0]).min(0).values
        td = q - (data["reward"] + data["discount"] * nxt)
        pi, _ = self.actor.sample(o, 1)
        q_pi = self.critic(o, pi[:, 0]).min(0).values
        q_rand = self.critic(o, torch.empty_like(a).uniform_(-1, 1)).min(0).values
        mc = data["mc_return"]
        corr = torch.corrcoef(torch.stack([q, mc]))[0, 1].item() if mc.std() > 0 else float("nan")
        return {"val_td_error": td.abs().mean().item(), "val_q_data": q.mean().item(),
                "val_q_policy": q_pi.mean().item(), "val_q_random": q_rand.mean().item(),
                "val_mc_return": mc.mean().item(), "val_q_mc_corr": corr}


def load_transitions(dataset, cfg: ValueConfig, episodes, base=None) -> dict[str, torch.Tensor]:
    """Chunk transitions of `episodes`, each chunk as the critic's features (`chunk_features`);
    `base`: the perception generalist whose scene features are base_features."""
    eps, objects = [], []
    seen = base_view.KEY in source_keys(cfg.obs_keys)
    cameras = [*base.config.rgb_keys, *base.config.points_keys] if seen else []
    keys = list(dict.fromkeys([*recorded_keys(cfg.obs_keys), *cameras,
                               *(["object_poses"] if cfg.task_space else []), "action", "success"]))
    for i in episodes:
        ep = dataset.load_episode(int(i), keys=keys)
        if seen:
            ep[base_view.KEY] = base_view.of_episode(base, ep)
        states = state_matrix(ep, cfg.obs_keys, robot=cfg.robot or None)
        eps.append((states, ep["action"], ep["success"]))
        objects.append(ep.get("object_poses"))
    data = chunk_transitions(eps, cfg.chunk, cfg.gamma, cfg.reward)
    at = list(zip(data.pop("episode"), data.pop("step")))
    poses = np.stack([objects[e][t] for e, t in at]) if cfg.task_space else None
    data["chunk"] = chunk_features(data["chunk"], poses, cfg)
    return {k: torch.from_numpy(v) for k, v in data.items()}


def action_range(dataset) -> tuple[np.ndarray, np.ndarray]:
    """The actions' min and max over the dataset (a constant dimension gets +-1 around its value)."""
    actions = dataset.concat_episodes(["action"])[0]["action"].reshape(-1, dataset.keys["action"]["shape"][0])
    low, high = actions.min(0), actions.max(0)
    flat = high - low < 1e-6
    return np.where(flat, low - 1, low), np.where(flat, high + 1, high)


def _perception_base(tc: ValueTrainConfig, cfg: ValueConfig):
    """The generalist whose features a critic reading base_features learns on (None: not needed)."""
    if base_view.KEY not in source_keys(cfg.obs_keys):
        return None
    from robot_rl.policies.loading import load_policy

    if not tc.base:
        raise ConfigError(f"the critic reads {base_view.KEY}: pass --base, the point-cloud or RGB generalist it will steer")
    base = load_policy(tc.base)
    if not base_view.sees(base):
        raise ConfigError(f"--base {tc.base} reads no camera: {base_view.KEY} needs a point-cloud or RGB generalist")
    return base


def train_value(tc: ValueTrainConfig, dataset, progress: bool = True) -> Path:
    """Train on all but a held-out fraction of episodes; write checkpoint, curves and summary."""
    torch.set_num_threads(tc.torch_threads)
    cfg = tc.algo
    if "action" in dataset.keys:  # the critic scores chunks of the dataset's actions, whatever the arm
        cfg = dataclasses.replace(cfg, action_dim=int(dataset.keys["action"]["shape"][0]))
    bounds = (None, None)
    if dataset.robot is not None:
        cfg = dataclasses.replace(cfg, robot=dataset.robot.name)
    elif cfg.task_space:
        raise DataError(f"{dataset.root}: the dataset records no robot, and task_space needs its kinematics; "
                        "train with --no-task-space or record the dataset with robot_rl")
    else:  # not an arm's joints: actions scaled by the bounds given, else by the data's range
        cfg = dataclasses.replace(cfg, robot="")
        bounds = (tc.action_low, tc.action_high) if tc.action_low else action_range(dataset)
    if cfg.task_space:  # the critic sees the TCP offsets to every object in the data
        cfg = dataclasses.replace(cfg, num_objects=int(dataset.keys["object_poses"]["shape"][0]))
    out = Path(tc.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(tc.seed)
    order = rng.permutation(dataset.num_episodes)
    n_val = max(1, int(round(tc.val_fraction * len(order)))) if len(order) > 1 else 0
    train_eps, val_eps = order[n_val:], order[:n_val]
    base = _perception_base(tc, cfg)
    train = load_transitions(dataset, cfg, train_eps, base)
    val = load_transitions(dataset, cfg, val_eps, base) if n_val else train
    norm = ValueNormalizer(train["obs"].min(0).values, train["obs"].max(0).values, *bounds,
                           task_offsets=cfg.offset_objects, robot=cfg.robot)
    learner = ValueLearner(train["obs"].shape[1], cfg, norm, tc.seed)
    rows, start = [], time.perf_counter()
    bar = tqdm(range(1, cfg.num_steps + 1), desc=f"value {cfg.algo}", disable=not progress)
    n = len(train["obs"])
    for step in bar:
        idx = torch.from_numpy(rng.integers(0, n, cfg.batch_size))
        logs = learner.update({k: v[idx] for k, v in train.items()})
        if step % tc.eval_every == 0 or step == cfg.num_steps:
            rows.append({"step": step, "wall_s": round(time.perf_counter() - start, 1), **logs,
                         **learner.diagnostics(val)})
            bar.set_postfix(td=f"{rows[-1]['val_td_error']:.3f}", q=f"{rows[-1]['val_q_data']:.2f}")
    ValueFunction(learner.critic, norm, cfg).save(out / "checkpoint", extra_config={"dataset": str(tc.dataset),
                                                                                  "base": tc.base, "env": tc.env})
    _write_curves(out / "checkpoint", rows)
    last = rows[-1]
    print(f"value {cfg.algo}: {len(train_eps)} train / {len(val_eps)} held-out episodes, "
          f"held-out TD error {last['val_td_error']:.3f}, Q data {last['val_q_data']:.3f} vs policy "
          f"{last['val_q_policy']:.3f} vs random {last['val_q_random']:.3f}, Q~MC corr {last['val_q_mc_corr']:.2f}; "
          f"checkpoint {out / 'checkpoint'}")
    (out / "checkpoint" / "summary.json").write_text(json.dumps({"config": asdict(tc), "final": last}, indent=2, default=str))
    return out / "checkpoint"


def _write_curves(out: Path, rows) -> None:
    with open(out / "curves.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        w.writeheader()
        w.writerows(rows)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    steps = [r["step"] for r in rows]
    axes[0].plot(steps, [r["val_td_error"] for r in rows], label="held-out TD error")
    axes[0].plot(steps, [r["critic_loss"] for r in rows], label="train critic loss")
    for key in ("val_q_data", "val_q_policy", "val_q_random", "val_mc_return"):
        axes[1].plot(steps, [r[key] for r in rows], label=key[4:])
    for ax in axes:
        ax.set_xlabel("gradient step")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    plt.close(fig)
