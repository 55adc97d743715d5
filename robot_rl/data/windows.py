"""Training windows over an episode dataset: To observations ending at t, Tp actions from t-To+1.

This is Diffusion Policy's convention (Chi et al. 2023): a sample for timestep t holds the
observations t-To+1..t and the actions t-To+1..t-To+Tp, so the first To-1 actions line up with
observed steps and the rest are the future to predict. Indices before an episode's start repeat
its first frame, indices past its end repeat its last action; nothing crosses an episode boundary.

Every episode's arrays are concatenated once into flat in-memory arrays; a sample is then a
clipped index grid, so `ds[batch_indices]` gathers a whole batch in one numpy call per key.
With `stream=True` the large keys (images, point clouds: more than 4 KB a frame) stay on disk
and each sample reads only the chunk that holds its frames, so a dataset larger than RAM trains
(the trainer prefetches the next batch in a thread to hide the reads).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

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
                 pred_horizon: int, episodes: Iterable[int] | None = None, action_key: str = "action",
                 stream: bool = False):
        if obs_horizon < 1 or pred_horizon < 1:
            raise ValueError(f"obs_horizon and pred_horizon must be >= 1, got {obs_horizon}, {pred_horizon}")
        self.obs_keys = tuple(obs_keys)
        self.action_key = action_key
        self.obs_horizon = obs_horizon
        self.pred_horizon = pred_horizon
        self.episodes = list(range(dataset.num_episodes)) if episodes is None else [int(i) for i in episodes]
        keys = list(dict.fromkeys([*self.obs_keys, action_key]))
        self.streamed = [k for k in keys if stream and k != action_key and is_large(dataset, k)]
        self.dataset = dataset
        self.arrays, self.episode_ends = dataset.concat_episodes([k for k in keys if k not in self.streamed],
                                                                 self.episodes)
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
        obs = {k: torch.from_numpy(self._read(k, obs_idx, first) if k in self.streamed else self.arrays[k][obs_idx])
               for k in self.obs_keys}
        action = torch.from_numpy(self.arrays[self.action_key][action_idx])
        return obs, action

    def _read(self, key: str, idx: np.ndarray, first: np.ndarray) -> np.ndarray:
        """Frames `idx` (B, To) flat of a streamed key, each sample's rows read from its episode."""
        if idx.ndim == 1:  # one sample
            return self._read(key, idx[None], first[None])[0]
        spec = self.dataset.keys[key]
        out = np.empty((*idx.shape, *spec["shape"]), dtype=spec["dtype"])
        episode_of = np.searchsorted(self.episode_ends, first[:, 0], side="right")
        for b, (rows, e) in enumerate(zip(idx, episode_of)):
            local = rows - first[b, 0]
            lo, hi = int(local.min()), int(local.max()) + 1
            out[b] = self.dataset.load_episode(self.episodes[e], [key], frames=slice(lo, hi))[key][local - lo]
        return out


def is_large(dataset: EpisodeDataset, key: str) -> bool:
    """A key whose frames are more than 4 KB (images, clouds): the ones worth streaming."""
    spec = dataset.keys[key]
    return int(np.prod(spec["shape"], dtype=np.int64)) * np.dtype(spec["dtype"]).itemsize > 4096


def from_disk(mode: str, dataset: EpisodeDataset, keys: Sequence[str], episodes: Sequence[int], say=None) -> bool:
    """Stream the large keys? "disk" / "memory" as told; "auto": when holding them would take more
    than half the memory this process may still use (the machine's, or its cgroup's limit)."""
    if mode != "auto":
        return mode == "disk"
    from robot_rl.data.memory import available_bytes

    large = [k for k in keys if is_large(dataset, k)]
    frames = int(dataset.episode_lengths[list(episodes)].sum()) if len(episodes) else 0
    need = sum(frames * int(np.prod(dataset.keys[k]["shape"], dtype=np.int64)) * np.dtype(dataset.keys[k]["dtype"]).itemsize
               for k in large)
    free = available_bytes()
    stream = need > free // 2
    if stream and say:
        say(f"{', '.join(large)}: {need / 2**30:.1f} GiB, more than half of the {free / 2**30:.1f} GiB this "
            "process may use: read from disk batch by batch")
    return stream


def epoch_batches(rng: np.random.Generator, n: int, batch_size: int) -> Iterator[np.ndarray]:
    """Window indices, `batch_size` at a time, reshuffled when an epoch has too few left."""
    order, cursor = rng.permutation(n), 0
    while True:
        if cursor + batch_size > len(order):
            order, cursor = rng.permutation(n), 0
        yield order[cursor:cursor + batch_size]
        cursor += batch_size


def prefetched(load: Callable, items: Iterable, depth: int = 2) -> Iterator[tuple]:
    """(item, load(item)) for each item, loaded `depth` items ahead in a thread, so the reads of a
    streamed dataset overlap the training step. An error in `load` is raised where it is consumed."""
    ready: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                result = (item, load(item))
                while not stop.is_set():
                    try:
                        ready.put(result, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as e:  # handed to the consumer
            ready.put(e)

    worker = threading.Thread(target=work, daemon=True, name="prefetch")
    worker.start()
    try:
        while True:
            result = ready.get()
            if isinstance(result, BaseException):
                raise result
            yield result
    finally:  # let the thread finish its batch: one killed mid-read by the interpreter's exit aborts it
        stop.set()
        while worker.is_alive():
            try:
                ready.get(timeout=0.1)
            except queue.Empty:
                pass
