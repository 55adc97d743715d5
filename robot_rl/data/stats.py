"""Per-key statistics (min, max, mean, std) over every frame of a dataset, for the normalizers.

Streams over episodes in blocks of frames and merges partial moments (Chan et al.'s parallel
variance), so an image dataset never has to fit in memory and the result matches a one-shot
numpy computation. What a statistic is "per" depends on the key:
- low-dim keys (joint_pos (8,), object_poses (K, 7), reward ()): per element of a frame;
- `<cam>_rgb` (H, W, 3): per colour channel, (3,);  `<cam>_depth` (H, W): one scalar;
- `points` / `*_points` (N, F): per point feature, (F,).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from robot_rl.data.dataset import EpisodeDataset
from robot_rl.errors import DataError

_BLOCK_ELEMENTS = 4_000_000  # float64 temporaries of ~32 MB per block


def reduced_axes(key: str, frame_ndim: int) -> tuple[int, ...]:
    """Axes of a (T, ...) array that a statistic of `key` is taken over (time always)."""
    if key.endswith("_depth"):
        return tuple(range(frame_ndim + 1))
    if key.endswith("_rgb") or key == "points" or key.endswith("_points"):
        return tuple(range(frame_ndim))  # keep the channel / feature axis
    return (0,)


class _Moments:
    """Running count, mean, sum of squared deviations, min and max, merged block by block."""

    def __init__(self):
        self.count = 0
        self.mean = self.m2 = self.min = self.max = None

    def add(self, block: np.ndarray, axes: tuple[int, ...]) -> None:
        block = block.astype(np.float64, copy=False)
        n = int(np.prod([block.shape[a] for a in axes]))
        if n == 0:
            return
        mean = block.mean(axis=axes)
        m2 = ((block - np.expand_dims(mean, axes)) ** 2).sum(axis=axes)
        lo, hi = block.min(axis=axes), block.max(axis=axes)
        if self.count == 0:
            self.count, self.mean, self.m2, self.min, self.max = n, mean, m2, lo, hi
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.min, self.max = np.minimum(self.min, lo), np.maximum(self.max, hi)
        self.count = total

    def result(self) -> dict:
        std = np.sqrt(self.m2 / self.count)
        return {"min": self.min.tolist(), "max": self.max.tolist(), "mean": self.mean.tolist(), "std": std.tolist()}


def compute_stats(dataset: EpisodeDataset, keys: Iterable[str], episodes: Iterable[int] | None = None,
                  block_elements: int = _BLOCK_ELEMENTS) -> dict[str, dict[str, list | float]]:
    """{key: {"min", "max", "mean", "std"}} over all frames of `episodes` (default all), as plain
    lists (floats for scalar statistics) that `json.dump` writes as-is. std is the population std."""
    keys = list(keys)
    episodes = list(range(dataset.num_episodes)) if episodes is None else list(episodes)
    if not episodes:
        raise DataError(f"{dataset.root}: no episodes to compute statistics from")
    lengths = dataset.episode_lengths
    stats = {}
    for key in keys:
        if key not in dataset.keys:
            raise DataError(f"{dataset.root}: no key '{key}' in this dataset (keys: {', '.join(dataset.keys)})")
        frame_shape = dataset.keys[key]["shape"]
        axes = reduced_axes(key, len(frame_shape))
        block_frames = max(1, block_elements // max(1, int(np.prod(frame_shape, dtype=np.int64))))
        moments = _Moments()
        for i in episodes:
            length = int(lengths[i])
            for start in range(0, length, block_frames):
                frames = None if block_frames >= length else slice(start, start + block_frames)
                moments.add(dataset.load_episode(i, [key], frames=frames)[key], axes)
        stats[key] = moments.result()
    return stats
