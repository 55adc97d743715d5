"""Replay buffer of n-step transitions for off-policy RL, filled from any number of envs.

Each env feeds its steps through an `NStepWriter`, which emits ready-made transitions
(s_t, a_t, R_t^(n), s_{t+n}, discount) as soon as n later steps are known, and flushes shorter
ones at episode end. So the buffer stays a flat ring of independent rows, whatever the
interleaving of envs, and sampling is one fancy-index per field.
"""
from __future__ import annotations

from collections import deque

import numpy as np
import torch

FIELDS = ("obs", "base", "action", "reward", "next_obs", "next_base", "discount")


class ReplayBuffer:
    def __init__(self, capacity: int, obs_dim: int, action_dim: int, correction_dim: int | None = None):
        """`action_dim` wide base actions; `correction_dim` (default the same) wide actions, which
        residual RL stores as corrections to the base (policies/residual/space.py)."""
        self.capacity = capacity
        self.size = 0
        self._next = 0
        self.data = {
            "obs": np.zeros((capacity, obs_dim), np.float32),
            "base": np.zeros((capacity, action_dim), np.float32),
            "action": np.zeros((capacity, correction_dim or action_dim), np.float32),
            "reward": np.zeros(capacity, np.float32),
            "next_obs": np.zeros((capacity, obs_dim), np.float32),
            "next_base": np.zeros((capacity, action_dim), np.float32),
            "discount": np.zeros(capacity, np.float32),
        }

    def add(self, **row) -> None:
        i = self._next
        for key in FIELDS:
            self.data[key][i] = row[key]
        self._next = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        idx = rng.integers(0, self.size, batch_size)
        return {key: torch.from_numpy(value[idx]) for key, value in self.data.items()}

    def save(self, path) -> None:
        """Plain arrays in an .npz (no pickle), so a stopped learner can resume with its data."""
        np.savez_compressed(path, size=self.size, next=self._next,
                            **{k: v[: self.size] for k, v in self.data.items()})

    def load(self, path) -> None:
        with np.load(path, allow_pickle=False) as f:
            n = int(f["size"])
            for key in FIELDS:
                self.data[key][:n] = f[key][: self.capacity]
            self.size, self._next = min(n, self.capacity), int(f["next"]) % self.capacity


def sample_symmetric(online: ReplayBuffer, demos: ReplayBuffer, batch_size: int,
                     rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """RLPD's symmetric sampling: half of every batch online data, half demonstrations; `demo`
    marks the demonstration rows (1.0)."""
    n_online = batch_size if demos.size == 0 else 0 if online.size == 0 else batch_size // 2
    parts = [buf.sample(n, rng) for buf, n in ((online, n_online), (demos, batch_size - n_online)) if n]
    batch = {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
    batch["demo"] = (torch.arange(batch_size) >= n_online).float()
    return batch


class NStepWriter:
    """Turns one env's step stream into n-step transitions for a ReplayBuffer."""

    def __init__(self, buffer: ReplayBuffer, n: int, gamma: float):
        self.buffer, self.n, self.gamma = buffer, n, gamma
        self.pending: deque = deque()

    def step(self, obs, base, action, reward, next_obs, next_base, terminal: bool, episode_end: bool) -> None:
        """Record s_t -> s_{t+1}; `terminal` stops bootstrapping, `episode_end` also covers time limits."""
        self.pending.append((obs, base, action, float(reward)))
        if terminal or episode_end:
            while self.pending:
                self._emit(next_obs, next_base, terminal)
        elif len(self.pending) == self.n:
            self._emit(next_obs, next_base, terminal=False)

    def _emit(self, next_obs, next_base, terminal: bool) -> None:
        """Write the oldest pending step with the return over all pending rewards."""
        obs, base, action, _ = self.pending[0]
        ret = sum(self.gamma**k * r for k, (_, _, _, r) in enumerate(self.pending))
        discount = 0.0 if terminal else self.gamma ** len(self.pending)
        self.buffer.add(obs=obs, base=base, action=action, reward=ret, next_obs=next_obs,
                        next_base=next_base, discount=discount)
        self.pending.popleft()
