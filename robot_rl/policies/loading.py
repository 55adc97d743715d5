"""One way to name a policy anywhere (CLI flags, ROS parameters): a checkpoint folder or an expert.

`path/to/checkpoint` loads whatever its config.json says it is (diffusion, residual);
`expert:<task>[:<quality>]` is a scripted expert, handy as a base policy or a baseline;
`hold` commands the current joint positions (a residual on it is RL from scratch).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from robot_rl.errors import ConfigError, DataError
from robot_rl.policies.checkpoint import read_json


def load_policy(spec: str, device: str = "cpu", robot=None):
    """The policy `spec` names; `robot` (a robot_rl.robot spec) is the arm an expert drives
    (default: the shipped 7-DoF arm); a checkpoint brings its own."""
    if spec == "hold":
        from robot_rl.policies.hold import HoldPosition

        return HoldPosition()
    if spec.startswith("expert:"):
        from robot_rl.sim.experts import ScriptedExpert

        _, task, *rest = spec.split(":")
        return ScriptedExpert(task, rest[0] if rest else "expert", robot=robot or "arm")
    path = Path(spec)
    config = path / "config.json"
    if not config.is_file():
        raise DataError(f"{config}: no checkpoint config here; pass a checkpoint folder or expert:<task>[:<quality>]")
    kind = read_json(config).get("policy", "diffusion")
    if kind == "diffusion":
        from robot_rl.policies.diffusion.model import DiffusionPolicy

        return DiffusionPolicy.from_checkpoint(path, device=device)
    if kind in ("residual", "value"):
        raise DataError(f"{config}: a {kind} checkpoint is not a standalone policy: pass it as "
                        + ("--residual / residual_checkpoint" if kind == "residual" else "--value / value_checkpoint"))
    raise DataError(f"{config}: policy kind {kind!r} cannot be loaded as a standalone policy")


def with_deployment(policy, spec: str, **settings):
    """`policy` with deployment-time settings of its diffusion config replaced (action_horizon,
    noise_scale, ...); a None setting keeps the checkpoint's. Validated like the config itself."""
    settings = {k: v for k, v in settings.items() if v is not None}
    if not settings:
        return policy
    if not hasattr(policy, "config"):
        raise ConfigError(f"{', '.join(settings)} applies to a diffusion checkpoint, not {spec}")
    policy.config = dataclasses.replace(policy.config, **settings)
    return policy
