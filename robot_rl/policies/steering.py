"""Value-guided policy steering (V-GPS): pick one of N sampled chunks by a learned Q.

The generalist is never changed: it proposes N chunks, the critic scores them in one batched
pass, and we execute the argmax (beta = 0) or a sample from softmax(Q / beta). When the critic
is missing or returns a non-finite score, the first candidate (the generalist's own choice) is
executed and the caller is told, so steering can only ever fall back to the unsteered policy.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from robot_rl.policies import base_view


@dataclass
class Selection:
    index: int
    fallback: bool
    reason: str = ""


def select_candidate(scores, beta: float = 0.0, rng: np.random.Generator | None = None) -> Selection:
    """Index of the candidate to execute given its scores."""
    if scores is None:
        return Selection(0, True, "no critic")
    scores = np.asarray(scores, np.float64).reshape(-1)
    if len(scores) == 0 or not np.all(np.isfinite(scores)):
        return Selection(0, True, "non-finite critic scores")
    if beta <= 0:
        return Selection(int(np.argmax(scores)), False)
    z = (scores - scores.max()) / beta
    p = np.exp(z) / np.exp(z).sum()
    return Selection(int((rng or np.random.default_rng()).choice(len(p), p=p)), False)


# Candidates come from the distribution the generalist learned (DDIM noise 1), whatever noise its
# plain deployment uses (training may pick 0: one deterministic chunk, nothing left to rank).
CANDIDATE_NOISE_SCALE = 1.0


class SteeredPolicy:
    """Policy protocol (`reset`, `act`) around a generalist with `sample_chunks` and a scorer.

    At every chunk boundary: sample N chunks for the current observation history, score them,
    queue the chosen one's executable actions.
    """

    def __init__(self, generalist, value_fn, num_samples: int = 16, beta: float = 0.0,
                 noise_scale: float | None = CANDIDATE_NOISE_SCALE):
        self.generalist, self.value_fn = generalist, value_fn
        self.num_samples, self.beta = num_samples, beta
        self.noise_scale = noise_scale  # None: the generalist's deployment noise
        self.queue: deque = deque()
        self.rng = np.random.default_rng(0)
        self.fallbacks = 0

    def reset(self, seed: int | None = None) -> None:
        self.generalist.reset(seed=seed)
        self.queue.clear()
        self.rng = np.random.default_rng(seed)

    def act(self, obs: dict) -> np.ndarray:
        history = self.generalist.observe(obs)
        if not self.queue:
            chunks = self.generalist.sample_executable(history, self.num_samples, noise_scale=self.noise_scale)  # (N, Ta, A)
            scores = None
            if self.value_fn is not None:  # a critic on a perception base reads what the generalist sees
                seen = base_view.of(self.generalist, obs) if base_view.KEY in self.value_fn.cfg.obs_keys else {}
                scores = self.value_fn.score({**obs, **seen}, chunks)
            choice = select_candidate(scores, self.beta, self.rng)
            self.fallbacks += choice.fallback
            self.queue.extend(chunks[choice.index])
        return np.asarray(self.queue.popleft(), np.float32)
