"""Training windows over an episode dataset: To observations ending at t, Tp actions from t-To+1.

This is Diffusion Policy's convention (Chi et al. 2023): a sample for timestep t holds the
observations t-To+1..t and the actions t-To+1..t-To+Tp, so the first To-1 actions line up with
observed steps and the rest are the future to predict. Indices before an episode's start repeat
its first frame, indices past its end repeat its last action; nothing crosses an episode boundary.

Every episode's arrays are concatenated once into flat in-memory arrays; a sample is then a
clipped index grid, so `ds[batch_indices]` gathers a whole batch in one numpy call per key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from robot_rl.data.dataset import EpisodeDataset


class ChunkWindows(torch.utils.data.Dataset):
    """One sample per timestep of each selected episode: (obs {key: (To, ...)}, action (Tp, A)).

    Index with an int for one sample, or with a sequence / array of ints for a ready batch
    (obs {key: (B, To, ...)}, action (B, Tp, A)): pass a BatchSampler with `batch_size=None` to a
    DataLoader to skip per-item collation. Arrays keep their stored dtype (images stay uint8).
    """

    def __init__(self, dataset: EpisodeDataset, obs_keys: Sequence[str], obs_horizon: int,
                 pred_horizon: int, episodes: Iterable[int] | None = None, action_key: str = "action"):
        if obs_horizon < 1 or pred_horizon < 1:
            raise ValueError(f"obs_horizon and pred_horizon must be >= 1, got {obs_horizon}, {pred_horizon}")
        self.obs_keys = tuple(obs_keys)
        self.action_key = action_key
        self.obs_horizon = obs_horizon
        self.pred_horizon = pred_horizon
        self.episodes = list(range(dataset.num_episodes)) if episodes is None else [int(i) for i in episodes]
        keys = list(dict.fromkeys([*self.obs_keys, action_key]))
        self.arrays, self.episode_ends = dataset.concat_episodes(keys, self.episodes)
        lengths = np.diff(self.episode_ends, prepend=0)
        # For each flat timestep: the first and last flat index of its episode.
        self._first = np.repeat(self.episode_ends - lengths, lengths)
        self._last = np.repeat(self.episode_ends - 1, lengths)
        self._obs_offsets = np.arange(obs_horizon) - (obs_horizon - 1)
        self._action_offsets = np.arange(pred_horizon) - (obs_horizon - 1)

    def __len__(self) -> int:
        return len(self._first)

    def __getitem__(self, index):
        t = np.asarray(index, dtype=np.int64)
        n = len(self)
        if t.ndim > 1 or ((t < -n) | (t >= n)).any():
            raise IndexError(f"window index {index} out of range for {n} windows")
        t = np.where(t < 0, t + n, t)[..., None]  # (1,) for one sample or (B, 1) for a batch
        first, last = self._first[t], self._last[t]
        obs_idx = np.clip(t + self._obs_offsets, first, last)
        action_idx = np.clip(t + self._action_offsets, first, last)
        obs = {k: torch.from_numpy(self.arrays[k][obs_idx]) for k in self.obs_keys}
        action = torch.from_numpy(self.arrays[self.action_key][action_idx])
        return obs, action
