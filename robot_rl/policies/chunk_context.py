"""Where a chunking base is heading: what a per-step residual cannot see in the base's one action.

A diffusion base executes Ta actions of each chunk open-loop. This step's correction matters
differently when the chunk ends now than when it still has 14 steps to run, and where the chunk
ends is where the base is taking the gripper. Two observation keys carry that, filled in by
whoever runs the base (the trainer and ResidualPolicy from the policy object, the
residual_policy node from the chunk on /policy/action_chunk):
- `chunk_end`: the last action the base will execute from its current chunk (joint targets);
- `chunk_left`: the share of that chunk still to run after this step's action (0 at its last).
A base without chunks (an expert, hold) is a chunk of one: its own action, nothing left.
features.py derives `chunk_end_rel` (each object relative to the TCP at the chunk's end).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from robot_rl.policies import base_view

KEYS = ("chunk_end", "chunk_left")


def from_chunk(actions, index: int, lead: int = 0) -> dict[str, np.ndarray]:
    """The context of action `index` of a chunk (M, A) whose last `lead` actions only bridge the
    next chunk's inference (the diffusion_policy node's request_lead): the base plans to execute
    M - lead, and an action past those (the next chunk is late) is its own chunk's end."""
    actions = np.asarray(actions, np.float32)
    executed = max(len(actions) - lead, index + 1)
    left = (executed - 1 - index) / executed
    return {"chunk_end": actions[executed - 1], "chunk_left": np.array([left], np.float32)}


def from_policy(policy, action) -> dict[str, np.ndarray]:
    """The context of the action `policy.act` just returned (`current_chunk`: the chunk and that
    action's index in it, for a policy that has one)."""
    chunk = getattr(policy, "current_chunk", None)
    return from_chunk(*chunk) if chunk is not None else from_chunk(np.asarray(action)[None], 0)


def act_with_context(policy, obs: Mapping, keys=()) -> tuple[np.ndarray, dict]:
    """The base's action for `obs`, and `obs` with what running the base adds (for features.py):
    its chunk context, and, when the observation keys `keys` read it, what a base with cameras
    sees (base_view.KEY: an encoder pass per step, so only then)."""
    action = np.asarray(policy.act(obs), np.float32)
    seen = base_view.of(policy, obs) if base_view.KEY in keys else {}
    return action, {**obs, **from_policy(policy, action), **seen}
