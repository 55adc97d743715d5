"""Deployment settings picked at training: the DDIM noise scale and Ta that score best on the
validation seeds become the checkpoint's defaults, which the node and `robot-rl eval` use.

Why: a diffusion policy's default sampling noise (1) is what it learned, not what deploys best;
a lift policy scored 0.40 at noise 1 and 1.00 at noise 0.5 and 0 (issue 32). The grid is
evaluated on the same seeds as training's evaluations (disjoint from the held-out 2000000+);
ties keep the trained settings, then the earlier grid entry. The table goes to deployment.json in
the checkpoint. Steering keeps noise 1 for its candidates (policies/steering.py).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

from robot_rl.errors import ConfigError

DEPLOYMENT_FILE = "deployment.json"


def deployment_grid(config, noise_scales, action_horizons) -> list[tuple[float, int]]:
    """(noise_scale, Ta) pairs to try, the trained settings first."""
    available = config.pred_horizon - config.obs_horizon + 1
    horizons = tuple(action_horizons) or (config.action_horizon,)
    bad = [ta for ta in horizons if not 1 <= ta <= available]
    if bad or any(n < 0 for n in noise_scales):
        raise ConfigError(f"deployment grid: Ta must be in [1, {available}] and noise scales >= 0, "
                          f"got Ta {list(horizons)} noise {list(noise_scales)}")
    own = (float(config.noise_scale), int(config.action_horizon))
    grid = [own] + [(float(n), int(ta)) for n in noise_scales for ta in horizons]
    return list(dict.fromkeys(grid))


def choose_deployment(checkpoint: Path, evaluate: Callable, noise_scales, action_horizons,
                      known_success: float | None = None, log: Callable[[str], None] = print) -> dict:
    """Evaluate the checkpoint at each grid point, rewrite it with the best; returns the record.
    `known_success`: the checkpoint's score at its trained settings (training measured it)."""
    from robot_rl.policies.diffusion.model import DiffusionPolicy

    policy = DiffusionPolicy.from_checkpoint(checkpoint)
    trained = policy.config
    rows = []
    for i, (noise, ta) in enumerate(deployment_grid(trained, noise_scales, action_horizons)):
        if i == 0 and known_success is not None:
            success = float(known_success)
        else:
            policy.config = dataclasses.replace(trained, noise_scale=noise, action_horizon=ta)
            success = float(evaluate(policy)["success_rate"])
        rows.append({"noise_scale": noise, "action_horizon": ta, "success_rate": success})
    best = max(rows, key=lambda r: r["success_rate"])  # max keeps the first of equals
    record = {"noise_scale": best["noise_scale"], "action_horizon": best["action_horizon"],
              "success_rate": best["success_rate"], "trained": rows[0], "grid": rows}
    policy.config = dataclasses.replace(trained, noise_scale=best["noise_scale"], action_horizon=best["action_horizon"])
    policy.save_checkpoint(checkpoint, extra_files={DEPLOYMENT_FILE: json.dumps(record, indent=2).encode()})
    log("deployment: " + ", ".join(f"noise {r['noise_scale']:g} Ta {r['action_horizon']}: {r['success_rate']:.2f}"
                                   for r in rows) + f" -> noise {best['noise_scale']:g}, Ta {best['action_horizon']}")
    return record
