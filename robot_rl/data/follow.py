"""Follow a dataset while a recorder (or `robot-rl collect`) appends to it: the streaming hook
for trainers (`robot-rl train diffusion --dataset D --follow`).

    follower = EpisodeFollower("data/demos")          # episodes already there count as seen
    for index in follower.wait(timeout=5.0):          # [] on timeout
        frames = follower.dataset.load_episode(index)

Episodes are committed atomically (one directory rename, see dataset.py), so an index this
yields is a whole episode, readable at once. The dataset may not exist yet when the trainer
starts: the follower waits for it. Polling costs one directory listing per `poll_s`.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

from robot_rl.data.dataset import META_FILE, EpisodeDataset


class EpisodeFollower:
    def __init__(self, dataset, start: int | None = None, poll_s: float = 1.0):
        """`dataset`: a path or an open EpisodeDataset. `start`: first episode index to yield;
        None yields only episodes committed after this call."""
        self.poll_s = float(poll_s)
        self._dataset = dataset if isinstance(dataset, EpisodeDataset) else None
        self.path = Path(dataset.root if isinstance(dataset, EpisodeDataset) else dataset)
        self._start = start
        self._next: int | None = None
        self._ensure_open()

    @property
    def dataset(self) -> EpisodeDataset | None:
        """The dataset (refreshed by poll/wait); None until it exists on disk."""
        return self._dataset

    @property
    def seen(self) -> int:
        """Episodes yielded or skipped so far (the index the next new episode will have)."""
        return self._next or 0

    def _ensure_open(self) -> bool:
        if self._dataset is None:
            if not (self.path / META_FILE).exists():
                return False
            self._dataset = EpisodeDataset.open(self.path)
        if self._next is None:
            self._next = self._dataset.num_episodes if self._start is None else int(self._start)
        return True

    def poll(self) -> list[int]:
        """Indices of episodes committed since the last call (never blocks)."""
        if not self._ensure_open():
            return []
        self._dataset.refresh()
        n = self._dataset.num_episodes
        new = list(range(self._next, n))
        self._next = max(self._next, n)
        return new

    def wait(self, timeout: float | None = None, stop: threading.Event | None = None) -> list[int]:
        """Block until at least one new episode is committed (its indices), `timeout` passes, or
        `stop` is set ([] in both of the latter cases)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            new = self.poll()
            if new or (stop is not None and stop.is_set()):
                return new
            left = self.poll_s if deadline is None else min(self.poll_s, deadline - time.monotonic())
            if left <= 0:
                return []
            if stop is not None:
                stop.wait(left)
            else:
                time.sleep(left)

    def __iter__(self) -> Iterator[int]:
        """New episode indices, forever (stop by breaking out of the loop)."""
        while True:
            yield from self.wait()
