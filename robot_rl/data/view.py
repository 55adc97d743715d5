"""`robot-rl dataset view D --episode I --out DIR`: one episode as pictures, to look at rather than read.

DIR/episode_I.png plots every low-dim key (joint positions, the actions, end effector, reward and
success) against time; DIR/episode_I_<cam>.mp4 plays each camera key (`<cam>_rgb` as recorded,
`<cam>_depth` as a grey image scaled to the episode's depth range) at the dataset's rate.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from robot_rl.data.dataset import EpisodeDataset
from robot_rl.errors import DataError

LOWDIM_ORDER = ("joint_pos", "action", "joint_vel", "ee_pos", "reward", "success")


def depth_frames(depth: np.ndarray) -> np.ndarray:
    """(T, H, W) metres -> (T, H, W, 3) uint8, near bright; missing depth (NaN, <= 0) black."""
    valid = np.isfinite(depth) & (depth > 0)
    if not valid.any():
        return np.zeros((*depth.shape, 3), np.uint8)
    near, far = np.percentile(depth[valid], [1, 99])
    scaled = 1.0 - np.clip((depth - near) / max(far - near, 1e-6), 0.0, 1.0)
    grey = np.where(valid, scaled * 255, 0).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def view_episode(root, episode: int, out) -> list[Path]:
    """Write the episode's plot and camera videos to `out`; returns the files written."""
    from robot_rl.video import write_video

    ds = EpisodeDataset.open(root)
    if not 0 <= episode < ds.num_episodes:
        raise DataError(f"{root}: no episode {episode} (it has {ds.num_episodes}: 0..{ds.num_episodes - 1})")
    data = ds.load_episode(episode)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [_plot(out / f"episode_{episode}.png", data, ds, episode)]
    for key, frames in data.items():
        if key.endswith("_rgb") and frames.ndim == 4:
            written.append(write_video(out / f"episode_{episode}_{key[:-4]}.mp4", list(frames), fps=ds.meta["rate_hz"]))
        elif key.endswith("_depth") and frames.ndim == 3:
            written.append(write_video(out / f"episode_{episode}_{key}.mp4", list(depth_frames(frames)),
                                       fps=ds.meta["rate_hz"]))
    return written


def _plot(path: Path, data: dict, ds: EpisodeDataset, episode: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in LOWDIM_ORDER if k in data] + sorted(
        k for k, v in data.items() if k not in LOWDIM_ORDER and v.ndim <= 2 and not k.endswith(("_rgb", "_depth")))
    t = np.arange(len(next(iter(data.values())))) / ds.meta["rate_hz"]
    fig, axes = plt.subplots(len(keys), 1, figsize=(9, 1.8 * len(keys)), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        values = data[key].reshape(len(t), -1).astype(float)
        labels = ds.names(key) if data[key].ndim == 2 else None
        for j in range(values.shape[1]):
            ax.plot(t, values[:, j], lw=1, label=labels[j] if labels else None)
        ax.set_ylabel(key, fontsize=8)
        ax.grid(alpha=0.3)
        if labels:
            ax.legend(fontsize=6, ncol=4, loc="upper right")
    meta = ds.episode_meta(episode)
    axes[0, 0].set_title(f"{ds.root.name} episode {episode}: task {meta.get('task', '?')}, "
                         f"success {meta.get('success')}, {len(t)} frames")
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
