"""Episodes -> chunk-level transitions for offline value learning.

A transition is (o_t, a_t..a_{t+H-1}, R, o_{t+H}, discount, G_t): the reward summed over the
chunk with per-step discounting, and G_t the Monte-Carlo return to the end of the episode that
Cal-QL uses as a lower bound. Actions past the episode's end repeat its last action, as the
diffusion windows do.
"""
from __future__ import annotations

import numpy as np


def step_rewards(success: np.ndarray, scheme: str) -> tuple[np.ndarray, int | None]:
    """Per-step rewards of one episode and the index of its first success (None if it failed)."""
    hits = np.flatnonzero(success)
    end = int(hits[0]) if len(hits) else None
    length = len(success) if end is None else end + 1
    if scheme == "success":
        r = np.zeros(length, np.float32)
        if end is not None:
            r[end] = 1.0
    else:  # step_penalty: -1 every step before success, 0 on it
        r = -np.ones(length, np.float32)
        if end is not None:
            r[end] = 0.0
    return r, end


def chunk_transitions(episodes, chunk: int, gamma: float, scheme: str = "success") -> dict[str, np.ndarray]:
    """`episodes`: iterable of (state (T, D), action (T, A), success (T,)) -> stacked transitions."""
    out = {k: [] for k in ("obs", "chunk", "reward", "next_obs", "discount", "mc_return", "episode", "step")}
    for e, (state, action, success) in enumerate(episodes):
        rewards, end = step_rewards(np.asarray(success, bool), scheme)
        length = len(rewards)  # steps after a success are not part of the task
        state, action = state[:length], action[:length]
        disc = gamma ** np.arange(length)
        mc = np.array([np.sum(rewards[t:] * disc[: length - t]) for t in range(length)], np.float32)
        idx = np.minimum(np.arange(length)[:, None] + np.arange(chunk)[None], length - 1)
        for t in range(length):
            stop = min(t + chunk, length)
            terminal = end is not None and end < t + chunk
            nxt = min(t + chunk, length - 1)
            out["obs"].append(state[t])
            out["chunk"].append(action[idx[t]])
            out["reward"].append(np.sum(rewards[t:stop] * disc[: stop - t]))
            out["next_obs"].append(state[nxt])
            # The episode's end (success, or the time limit of a failure) ends bootstrapping.
            out["discount"].append(0.0 if terminal or t + chunk > length - 1 else gamma ** chunk)
            out["mc_return"].append(mc[t])
            out["episode"].append(e)
            out["step"].append(t)
    return {k: np.asarray(v, np.int64 if k in ("episode", "step") else np.float32) for k, v in out.items()}
