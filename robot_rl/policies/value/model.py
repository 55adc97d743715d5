"""Networks of offline value learning and the deployable scorer used by steering.

Q(o, chunk) scores a whole action chunk (or one action with chunk=1) with a critic ensemble;
V(o) is IQL's expectile value; a tanh-Gaussian chunk actor gives Cal-QL its policy actions.
`ValueFunction.score` is what the steering node calls: N candidates, one batched forward pass.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from robot_rl.errors import ConfigError, DataError
from robot_rl.policies import checkpoint
from robot_rl.policies.config_fields import check_fields
from robot_rl.policies.ensemble import CriticEnsemble
from robot_rl.policies.features import state_vector
from robot_rl.policies.value.config import ValueConfig
from robot_rl.policies.value.task_space import OFFSET_RANGE, with_offsets
from robot_rl.robot import load_robot


class ValueNormalizer(nn.Module):
    """Observation to [-1, 1] from dataset min/max; actions to [-1, 1] from joint limits, or the
    given bounds for data that is not an arm's joints (and, for `task_offsets` objects, the TCP
    offsets from +-OFFSET_RANGE)."""

    def __init__(self, obs_min, obs_max, act_low=None, act_high=None, task_offsets: int = 0, robot="arm"):
        super().__init__()
        if act_low is None or act_high is None:
            if not robot:
                raise ConfigError("a critic without a robot needs its action bounds (act_low, act_high)")
            act_low, act_high = load_robot(robot).joint_limits()
        low, high = np.asarray(act_low, np.float32), np.asarray(act_high, np.float32)
        if task_offsets:
            span = np.full(3 * task_offsets, OFFSET_RANGE, np.float32)
            low, high = np.concatenate([low, -span]), np.concatenate([high, span])
        self.register_buffer("obs_min", torch.as_tensor(obs_min, dtype=torch.float32))
        self.register_buffer("obs_max", torch.as_tensor(obs_max, dtype=torch.float32))
        self.register_buffer("act_low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("act_high", torch.as_tensor(high, dtype=torch.float32))

    def obs(self, x):
        span = (self.obs_max - self.obs_min).clamp_min(1e-4)
        return 2 * (x - self.obs_min) / span - 1

    def chunk(self, a):
        """(B, H, F) chunk features (`chunk_features`) -> (B, H*F) in [-1, 1]."""
        return (2 * (a - self.act_low) / (self.act_high - self.act_low) - 1).flatten(1)

    def to_json(self) -> dict:
        return {k: v.tolist() for k, v in self.state_dict().items()}


def _mlp(in_dim, hidden, layers, out_dim) -> nn.Sequential:
    blocks, width = [], in_dim
    for _ in range(layers):
        blocks += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.ReLU()]
        width = hidden
    return nn.Sequential(*blocks, nn.Linear(width, out_dim))


class ChunkCritic(nn.Module):
    """Q(o, chunk) -> (E, B) scalars for normalised inputs."""

    def __init__(self, obs_dim: int, cfg: ValueConfig):
        super().__init__()
        self.ensemble = CriticEnsemble(obs_dim + cfg.chunk_dim, cfg.num_critics, cfg.hidden, cfg.layers,
                                       1, layer_norm=True)

    def forward(self, obs_n, chunk_n):
        return self.ensemble(torch.cat([obs_n, chunk_n], -1)).squeeze(-1)


class ChunkActor(nn.Module):
    """tanh-Gaussian over normalised chunks; samples (B, n, D) with their log-probabilities."""

    def __init__(self, obs_dim: int, cfg: ValueConfig):
        super().__init__()
        self.net = _mlp(obs_dim, cfg.hidden, cfg.layers, 2 * cfg.chunk_dim)

    def dist(self, obs_n):
        mean, log_std = self.net(obs_n).chunk(2, -1)
        return torch.distributions.Normal(mean, log_std.clamp(-5, 2).exp())

    def sample(self, obs_n, n: int):
        d = self.dist(obs_n)
        u = d.rsample((n,)).transpose(0, 1)  # (B, n, D)
        a = torch.tanh(u)
        logp = d.log_prob(u.transpose(0, 1)).transpose(0, 1) - torch.log1p(-a.pow(2) + 1e-6)
        return a, logp.sum(-1)

    def log_prob(self, obs_n, a):
        a = a.clamp(-0.999, 0.999)
        u = torch.atanh(a)
        return (self.dist(obs_n).log_prob(u) - torch.log1p(-a.pow(2) + 1e-6)).sum(-1)


def chunk_features(chunks, object_poses, cfg: ValueConfig) -> np.ndarray:
    """(N, >=H, A) joint-target chunks and their (N, K, 7) object poses -> (N, H, F) critic
    inputs (TCP offsets to the objects appended with task_space)."""
    chunks = np.asarray(chunks, np.float32)[:, : cfg.chunk]
    return with_offsets(chunks, object_poses, cfg.robot) if cfg.task_space else chunks


class ValueFunction:
    """A trained critic with its normaliser: scores candidate chunks for an observation."""

    def __init__(self, critic: ChunkCritic, norm: ValueNormalizer, cfg: ValueConfig):
        self.critic, self.norm, self.cfg = critic.eval(), norm, cfg

    @torch.inference_mode()
    def score(self, obs: dict, chunks) -> np.ndarray:
        """(N, >=H, A) candidate chunks -> (N,) values (min over the ensemble: conservative)."""
        objects = (np.broadcast_to(obs["object_poses"], (len(chunks), *np.shape(obs["object_poses"])))
                   if self.cfg.task_space else None)  # a critic on a perception base has no poses
        chunks = torch.from_numpy(chunk_features(chunks, objects, self.cfg))
        o = torch.from_numpy(state_vector(obs, self.cfg.obs_keys, robot=self.cfg.robot or None)).unsqueeze(0)
        o = self.norm.obs(o).expand(len(chunks), -1)
        return self.critic(o, self.norm.chunk(chunks)).min(0).values.numpy()

    def save(self, path, extra_tensors: dict | None = None, extra_config: dict | None = None) -> Path:
        tensors = {f"critic.{k}": v for k, v in self.critic.state_dict().items()}
        tensors.update(extra_tensors or {})
        return checkpoint.save(path, tensors, {"policy": "value", **self.cfg.to_dict(), **(extra_config or {})},
                               self.norm.to_json(), load_robot(self.cfg.robot) if self.cfg.robot else None)

    @classmethod
    def from_checkpoint(cls, path, device: str = "cpu") -> "ValueFunction":
        ckpt = checkpoint.load(path, "value", device)
        raw, nj = ckpt.config, ckpt.normalizer
        raw.setdefault("task_space", False)  # checkpoints from before TCP-offset features scored joints only
        try:
            known = {k: v for k, v in raw.items() if k in ValueConfig.__dataclass_fields__}
            check_fields(ValueConfig, known)
            cfg = ValueConfig(**known)
            norm = ValueNormalizer(nj["obs_min"], nj["obs_max"], nj["act_low"], nj["act_high"], robot=cfg.robot)
            critic = ChunkCritic(len(norm.obs_min), cfg)
            critic.load_state_dict({k[7:]: v for k, v in ckpt.tensors.items() if k.startswith("critic.")})
        except ConfigError as e:
            raise DataError(f"{ckpt.path / checkpoint.CONFIG}: invalid value config ({e})") from None
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise DataError(f"{ckpt.path}: not a readable value checkpoint ({type(e).__name__}: {e})") from None
        return cls(critic, norm, cfg)
