"""A tiny diffusion checkpoint trained in seconds, for the tests of what runs it (nodes, runner).

A few reach demonstrations from the scripted expert, a 2-level U-Net, a few hundred AdamW steps
through the DiffusionPolicy API. What it does in the task does not matter; what runs it does.
"""
from __future__ import annotations

import numpy as np

TA = 4  # the tiny checkpoint's action horizon


POINTS_IMAGE_SIZE = (64, 48)  # the front depth camera of the point-cloud checkpoint's demos


def train_tiny(root, outs, task="reach", episodes=4, steps=(150, 30), points=False):
    """Collect expert demos and train a tiny checkpoint: `steps[0]` AdamW steps, saved to
    outs[0], then `steps[i]` more for each further folder (distinct weights for hot reload).
    `points`: from joint states and the front camera's point cloud, no object poses."""
    import torch

    from robot_rl.data.collect import collect
    from robot_rl.data.stats import compute_stats
    from robot_rl.data.windows import ChunkWindows
    from robot_rl.policies.diffusion.config import DiffusionConfig
    from robot_rl.policies.diffusion.model import DiffusionPolicy
    from robot_rl.policies.diffusion.normalizer import Normalizer
    from robot_rl.train.diffusion import cloud_files

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 OpenMP threads on 2 busy cores are 10-50x slower, not faster
    try:
        camera = dict(cameras=("front",), image_size=POINTS_IMAGE_SIZE, points=True) if points else {}
        ds = collect(task, root / "demos", episodes, progress=False, **camera)
        keys = ("joint_pos", "ee_pos", "points" if points else "object_poses")
        config = DiffusionConfig(obs_keys=keys, obs_shapes={k: tuple(ds.keys[k]["shape"]) for k in keys},
                                 pred_horizon=8, action_horizon=TA, down_dims=(16, 32), n_groups=4,
                                 step_embed_dim=16, num_inference_steps=4, lr=3e-3, lr_warmup_steps=0,
                                 pointnet_dims=(16, 32), points_feature_dim=16)
        windows = ChunkWindows(ds, keys, config.obs_horizon, config.pred_horizon)
        stats = compute_stats(ds, keys + ("action",))
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        policy = DiffusionPolicy(config, Normalizer(stats))
        opt = torch.optim.AdamW(policy.parameters(), lr=config.lr)
        for n, out in zip(steps, outs):
            for _ in range(n):
                loss = policy.compute_loss(windows[rng.integers(len(windows), size=64)])
                opt.zero_grad()
                loss.backward()
                opt.step()
            policy.save_checkpoint(out, cloud_files(ds, config, range(ds.num_episodes)))
    finally:
        torch.set_num_threads(threads)
    return outs
