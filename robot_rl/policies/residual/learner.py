"""The residual learner: networks, optimisers and the TD3 update, and the demonstrations it learns from.

TD3 with a LayerNorm critic ensemble (target = min of a random pair, actor loss = mean over
members), n-step returns, RLPD symmetric sampling against base-relabelled demonstrations and
gradient clipping. The whole update is `Learner.update()`. The in-process trainer
(robot_rl.train.residual) and the online learner of the ROS node (online.py) both use it.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from robot_rl.data.replay import NStepWriter, ReplayBuffer, sample_symmetric
from robot_rl.policies.chunk_context import act_with_context
from robot_rl.policies.features import BASE_KEYS, recorded_keys, state_matrix
from robot_rl.policies.residual.config import ResidualConfig
from robot_rl.policies.residual.model import ResidualActor, ResidualCritic
from robot_rl.policies.residual.space import space_for


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
        self.online = ReplayBuffer(cfg.buffer_size, obs_dim, cfg.action_dim, cfg.correction_dim)
        self.demos = ReplayBuffer(cfg.buffer_size, obs_dim, cfg.action_dim, cfg.correction_dim)
        self.updates = 0
        self.stats = {"critic_loss": float("nan"), "actor_loss": float("nan"), "q_mean": float("nan")}

    @torch.no_grad()
    def td_target(self, b: dict, pair) -> torch.Tensor:
        """n-step TD3 target: smoothed target-actor correction, min over the critic pair `pair`."""
        cfg = self.cfg
        noise = (torch.randn_like(b["action"]) * cfg.target_noise).clamp(-cfg.noise_clip, cfg.noise_clip)
        next_correction = (self.actor_target.raw(b["next_obs"], b["next_base"]) + noise).clamp(-1, 1)
        q_next = self.critic_target(b["next_obs"], b["next_base"], next_correction,
                                    torch.as_tensor(pair))  # only the pair's two heads
        target = b["reward"] + b["discount"] * q_next.min(0).values
        # A sparse 0/1 reward bounds every return to [v_min, v_max]: a target outside is bootstrap
        # error, and letting it through feeds the overestimation the actor then exploits.
        return target.clamp(cfg.v_min, cfg.v_max)

    def update(self, train_actor: bool) -> None:
        cfg = self.cfg
        b = sample_symmetric(self.online, self.demos, cfg.batch_size, self.rng)
        target = self.td_target(b, self.rng.choice(cfg.num_critics, 2, replace=False))
        critic_loss = ((self.critic(b["obs"], b["base"], b["action"]) - target) ** 2).mean()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.critic.ensemble.parameters(), cfg.grad_clip)
        self.critic_opt.step()
        self.updates += 1
        self.stats["critic_loss"] = critic_loss.item()

        if train_actor and self.updates % cfg.actor_delay == 0:
            pre = self.actor.pre(b["obs"], b["base"])
            q_pi = self.critic(b["obs"], b["base"], torch.tanh(pre))
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
    """Every demonstration with what the base does at each of its steps: its action (`base`),
    chunk context and, for a base with cameras, what it sees (features.BASE_KEYS), running the
    base from each episode's start. Keeps the keys the residual's state is made of, the action,
    reward and success."""
    keep = [*recorded_keys(obs_keys), "action", "reward", "success"]
    labelled = []
    for i in range(dataset.num_episodes):
        ep = dataset.load_episode(i)
        base.reset(seed=i)
        steps = [act_with_context(base, {k: ep[k][t] for k in ep}, obs_keys) for t in range(len(ep["action"]))]
        out = {k: ep[k] for k in dict.fromkeys(keep)}
        out["base"] = np.stack([a for a, _ in steps])
        out.update({k: np.stack([o[k] for _, o in steps]) for k in BASE_KEYS if k in steps[0][1]})
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
        vecs = state_matrix(ep, cfg.obs_keys, bases, cfg.robot)
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


def demo_states(labelled: list[dict], obs_keys, robot) -> np.ndarray:
    """Every labelled demonstration step as a state vector: the normaliser's statistics."""
    return np.concatenate([state_matrix(ep, obs_keys, ep["base"], robot) for ep in labelled])
