"""Residual actor, critic ensemble, and the deployable ResidualPolicy (base + correction).

a = clip(a_base + scale * tanh(f(o, a_base))) with f's last layer zero-initialised, so an
untrained residual policy is exactly its base (in task space the scaled correction is a TCP
displacement mapped onto the joints: space.py). The base is a black box: an object with
`reset(seed=None)` / `act(obs)`, or (in the ROS node) actions arriving on a topic.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from robot_rl.errors import ConfigError, DataError
from robot_rl.policies import checkpoint
from robot_rl.policies.config_fields import check_fields
from robot_rl.policies.chunk_context import act_with_context
from robot_rl.policies.ensemble import CriticEnsemble
from robot_rl.policies.features import FIXED_STATS, state_vector
from robot_rl.policies.residual.config import ResidualConfig
from robot_rl.policies.residual.space import space_for
from robot_rl.robot import load_robot


class Normalizer(nn.Module):
    """Observation standardisation from demonstration statistics; actions scaled by joint range."""

    def __init__(self, obs_mean, obs_std, act_low, act_high):
        super().__init__()
        self.register_buffer("obs_mean", torch.as_tensor(obs_mean, dtype=torch.float32))
        self.register_buffer("obs_std", torch.as_tensor(obs_std, dtype=torch.float32).clamp_min(1e-3))
        self.register_buffer("act_low", torch.as_tensor(act_low, dtype=torch.float32))
        self.register_buffer("act_high", torch.as_tensor(act_high, dtype=torch.float32))

    def obs(self, x):
        return (x - self.obs_mean) / self.obs_std

    def action(self, a):
        return 2 * (a - self.act_low) / (self.act_high - self.act_low) - 1

    def to_json(self) -> dict:
        return {k: v.tolist() for k, v in self.state_dict().items()}

    @classmethod
    def from_json(cls, d: dict) -> "Normalizer":
        return cls(d["obs_mean"], d["obs_std"], d["act_low"], d["act_high"])


class ResidualActor(nn.Module):
    """f(o, a_base) -> a correction in [-1, 1] units (o includes the CorrectionSpace's features)."""

    def __init__(self, obs_dim: int, cfg: ResidualConfig, normalizer: Normalizer):
        super().__init__()
        layers, width = [], obs_dim + cfg.action_dim
        for _ in range(cfg.actor_layers):
            layers += [nn.Linear(width, cfg.actor_hidden), nn.LayerNorm(cfg.actor_hidden), nn.ReLU()]
            width = cfg.actor_hidden
        last = nn.Linear(width, cfg.correction_dim)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)
        self.norm = normalizer

    def pre(self, obs: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """The correction before its tanh (penalised in training so it never saturates)."""
        return self.net(torch.cat([self.norm.obs(obs), self.norm.action(base)], -1))

    def raw(self, obs: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """The correction in [-1, 1] units of `residual_scale`."""
        return torch.tanh(self.pre(obs, base))

    @torch.inference_mode()
    def correction(self, obs, base, noise=None, use_actor: bool = True) -> np.ndarray:
        """The correction (float64, [-1, 1]) for one observation vector and base action; `noise`
        (correction units) explores. A CorrectionSpace turns it into joint targets."""
        correction = np.zeros(self.net[-1].out_features)
        if use_actor:
            o = torch.as_tensor(np.asarray(obs, np.float32))[None]
            b = torch.as_tensor(np.asarray(base, np.float32))[None]
            correction = self.raw(o, b)[0].double().numpy()
        if noise is not None:
            correction = np.clip(correction + noise, -1.0, 1.0)
        return correction


class ResidualCritic(nn.Module):
    """Q(o, a_base, c) for every ensemble member: (E, B) values; the correction c enters scaled
    by its space's `critic_units` (space.py)."""

    def __init__(self, obs_dim: int, cfg: ResidualConfig, normalizer: Normalizer):
        super().__init__()
        self.ensemble = CriticEnsemble(obs_dim + cfg.action_dim + cfg.correction_dim, cfg.num_critics,
                                       cfg.critic_hidden, cfg.critic_layers, 1, layer_norm=True)
        self.norm = normalizer
        self.register_buffer("units", torch.tensor(space_for(cfg).critic_units(), dtype=torch.float32))

    def forward(self, obs, base, correction, members: torch.Tensor | None = None):
        x = torch.cat([self.norm.obs(obs), self.norm.action(base), correction * self.units], -1)
        return self.ensemble(x, members).squeeze(-1)


class ResidualPolicy:
    """A base policy plus a learned per-step correction; the policy protocol of the sim rollouts.

    Owns the CorrectionSpace whose state (task space: the held TCP offset) lives for an episode.
    """

    def __init__(self, base, actor: ResidualActor, cfg: ResidualConfig):
        self.base, self.actor, self.cfg = base, actor, cfg
        self.space = space_for(cfg)
        self.last_base: np.ndarray | None = None
        # noise_scale of the diffusion base it learned on (from its checkpoint; None: the base's
        # own): it corrects that base, not another
        self.base_noise_scale: float | None = None
        self.base_action_horizon: int | None = None  # and its Ta, the same way

    def base_deployment(self) -> dict:
        """The base settings it learned on that differ from the base checkpoint's (with_deployment's keywords)."""
        settings = {"noise_scale": self.base_noise_scale, "action_horizon": self.base_action_horizon}
        return {k: v for k, v in settings.items() if v is not None}

    def reset(self, seed: int | None = None) -> None:
        self.space.reset()
        if self.base is not None:  # chunk queues must not leak across episodes
            self.base.reset(seed=seed)

    def step(self, obs_vec: np.ndarray, base_action) -> np.ndarray:
        """Joint targets (float64) for a state vector and the base's action for this step."""
        state = np.concatenate([obs_vec, self.space.features()])
        action = self.space.command(base_action, self.actor.correction(state, base_action))
        self.space.follow(base_action, action)
        return action

    def correct(self, obs: dict, base_action) -> np.ndarray:
        return self.step(state_vector(obs, self.cfg.obs_keys, base_action, self.cfg.robot or None), base_action)

    def act(self, obs: dict) -> np.ndarray:
        self.last_base, obs = act_with_context(self.base, obs, self.cfg.obs_keys)
        return self.correct(obs, self.last_base)

    # --- checkpoints: policies/checkpoint.py (weights, config, normalizer, robot) ------------
    def save(self, path, critic: ResidualCritic | None = None, extra: dict | None = None) -> Path:
        # The normaliser lives in normalizer.json; the weights file holds only learned tensors.
        nets = {"actor": self.actor, "critic": critic} if critic is not None else {"actor": self.actor}
        tensors = {f"{name}.{k}": v for name, net in nets.items()
                   for k, v in net.state_dict().items() if not k.startswith("norm.")}
        return checkpoint.save(path, tensors, {"policy": "residual", **self.cfg.to_dict(), **(extra or {})},
                               self.actor.norm.to_json(), load_robot(self.cfg.robot) if self.cfg.robot else None)

    @classmethod
    def from_checkpoint(cls, path, base=None, device: str = "cpu") -> "ResidualPolicy":
        ckpt = checkpoint.load(path, "residual", device)
        raw, tensors = ckpt.config, ckpt.tensors
        try:
            norm = Normalizer.from_json(ckpt.normalizer)
            fields = ResidualConfig.__dataclass_fields__
            known = {k: v for k, v in raw.items() if k in fields}  # the rest: what it learned on (base_deployment)
            if known.get("robot"):  # checkpoints of an arm from before action bounds were a field
                known.setdefault("action_low", [])
                known.setdefault("action_high", [])
            check_fields(ResidualConfig, known)
            cfg = ResidualConfig(**known)
        except ConfigError as e:
            raise DataError(f"{ckpt.path / checkpoint.CONFIG}: invalid residual config ({e})") from None
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{ckpt.path}: not a readable residual checkpoint ({type(e).__name__}: {e})") from None
        actor = ResidualActor(len(norm.obs_mean), cfg, norm)
        missing, unexpected = actor.load_state_dict(
            {k[6:]: v for k, v in tensors.items() if k.startswith("actor.")}, strict=False)
        # "scale": a buffer of actors saved before the correction space moved into space.py
        wrong = [k for k in missing if not k.startswith("norm.")] + [k for k in unexpected if k != "scale"]
        if wrong:
            raise DataError(f"{path / 'model.safetensors'}: actor tensors do not match the config ({wrong[:3]})")
        policy = cls(base, actor.eval(), cfg)
        policy.base_noise_scale = raw.get("base_noise_scale")
        policy.base_action_horizon = raw.get("base_action_horizon")
        return policy


def residual_normalizer(cfg: ResidualConfig, states: np.ndarray, columns: dict[str, slice]) -> Normalizer:
    """Standardise the state vector with the statistics of `states` (N, D) rows, except the
    features of features.FIXED_STATS (`columns`: feature_columns of the state); the correction
    space's features (already in [-1, 1]) are appended unscaled."""
    extra = space_for(cfg).feature_dim
    states = np.atleast_2d(states)
    mean = np.concatenate([states.mean(0), np.zeros(extra)])
    std = np.concatenate([states.std(0) + 1e-2, np.ones(extra)])
    for key, (m, s) in FIXED_STATS.items():
        if key in columns:
            mean[columns[key]], std[columns[key]] = m, s
    return default_normalizer(len(mean), mean, std, limits=cfg.limits())


def default_normalizer(obs_dim: int, obs_mean=None, obs_std=None, robot="arm", limits=None) -> Normalizer:
    """`limits`: the actions' (low, high); default: `robot`'s joint limits."""
    low, high = limits if limits is not None else load_robot(robot).joint_limits()
    return Normalizer(np.zeros(obs_dim) if obs_mean is None else obs_mean,
                      np.ones(obs_dim) if obs_std is None else obs_std, low, high)
