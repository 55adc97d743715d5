"""Training speed per observation kind on this CPU: steps/s and the share of a step spent loading.

Collects a few lift demonstrations from the scripted expert with a front camera and point clouds
(a temp dir), then times the trainer's own loop pieces for three policies on the same data:
state (joint_pos, ee_pos, object_poses), points (joint_pos, ee_pos, 512 points) and rgb
(joint_pos, ee_pos, front_rgb): `ChunkWindows[batch]` (loading: gather, no decoding: the episodes
are in memory after the first read) and `compute_loss` + backward + AdamW step (compute). The
baseline is the state policy in the same run: `*_step_over_state` = step time / state's.
Each at its recommended CPU batch (state 256, points 64, rgb 32). Progress on stderr; the last
stdout line is one JSON object.

    python bench/training_step.py            # ~2 min on 2 cores
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

KINDS = {"state": (("joint_pos", "ee_pos", "object_poses"), 256),
         "points": (("joint_pos", "ee_pos", "points"), 64),
         "rgb": (("joint_pos", "ee_pos", "front_rgb"), 32)}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def time_kind(ds, keys, batch: int, steps: int, seed: int = 0) -> dict:
    from robot_rl.data.stats import compute_stats
    from robot_rl.data.windows import ChunkWindows
    from robot_rl.policies.diffusion.config import DiffusionConfig
    from robot_rl.policies.diffusion.model import DiffusionPolicy
    from robot_rl.policies.diffusion.normalizer import normalizer_from_stats
    from robot_rl.train.diffusion import config_for_dataset

    shapes = {k: tuple(ds.keys[k]["shape"]) for k in keys}
    cfg = config_for_dataset(ds, DiffusionConfig(obs_keys=keys, obs_shapes=shapes))
    windows = ChunkWindows(ds, cfg.obs_keys, cfg.obs_horizon, cfg.pred_horizon)
    stats = compute_stats(ds, [*cfg.lowdim_keys, *cfg.points_keys, "action"])
    torch.manual_seed(seed)
    policy = DiffusionPolicy(cfg, normalizer_from_stats(stats, cfg))
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    rng = np.random.default_rng(seed)
    load, compute = [], []
    for i in range(steps + 2):  # two warm-up steps
        t0 = time.perf_counter()
        obs, action = windows[rng.integers(len(windows), size=batch)]
        t1 = time.perf_counter()
        loss = policy.compute_loss((obs, action))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        if i >= 2:
            load.append(t1 - t0)
            compute.append(t2 - t1)
    step = float(np.median(np.add(load, compute)))
    return {"batch": batch, "steps_per_s": round(1.0 / step, 2), "step_ms": round(step * 1e3, 1),
            "loading_share": round(float(np.median(load)) / step, 4), "parameters": policy.num_parameters()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=6)
    ap.add_argument("--steps", type=int, default=12, help="timed steps per kind")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the CPU recipe)")
    ap.add_argument("--image-size", type=int, nargs=2, default=(96, 96), metavar=("W", "H"))
    args = ap.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    torch.set_num_threads(args.threads)
    from robot_rl.data.collect import collect

    with tempfile.TemporaryDirectory(prefix="robot_rl_training_step_") as tmp:
        log(f"collecting {args.episodes} lift demonstrations with a front camera and point clouds")
        ds = collect("lift", Path(tmp) / "d", args.episodes, cameras=("front",), image_size=tuple(args.image_size),
                     points=True, progress=False)
        result = {}
        for kind, (keys, batch) in KINDS.items():
            log(f"{kind}: {args.steps} steps at batch {batch}")
            result[kind] = time_kind(ds, keys, batch, args.steps)
    for kind in ("points", "rgb"):
        result[f"{kind}_step_over_state"] = round(result[kind]["step_ms"] / result["state"]["step_ms"], 2)
    result["threads"], result["image_size"] = args.threads, list(args.image_size)
    result["env"] = {"cpu_count": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]}
    log(" ".join(f"{k}: {v['steps_per_s']} steps/s, loading {v['loading_share']:.1%}" for k, v in result.items()
                 if isinstance(v, dict) and "steps_per_s" in v))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
