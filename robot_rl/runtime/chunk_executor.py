"""Receding-horizon execution of action chunks with latency compensation (no ROS, no torch).

Everything is in observation time: a control tick is the stamp `t` of the observation it
acts on, and a chunk is stamped with the time of the observation it was computed from. Action
`k` of a chunk stamped `s` is the command for the tick at `s + k * dt` (action 0 answers the
observation itself, as in Diffusion Policy's executable window that starts at the latest
observation).

The cycle, with Ta = `action_horizon` and L = `request_lead`:
- a tick takes the current chunk's action for its time; when there is none (no chunk yet, or
  the chunk has run out) the tick *waits*: nothing is commanded until a chunk arrives;
- a tick requests a new chunk (from its own observation) when there is no chunk or when it is
  Ta or more ticks after the current chunk's stamp, unless a request is already in flight, so
  requests come every Ta ticks and each chunk executes Ta actions;
- the chunk that answers a request should hold Ta + L actions: the L extra ones cover the ticks
  that pass while the next chunk is computed. With inference faster than L ticks, every tick is
  answered at once from a chunk; with L = 0 every Ta-th tick waits for inference (in a lock-step
  simulator this is exactly `DiffusionPolicy.act`);
- latency compensation: when a chunk arrives, the actions whose time has passed are skipped
  (those before the latest tick, and the latest tick's own one if that tick was already answered
  from the previous chunk); a waiting latest tick is answered at once with the action for its
  time. A newer chunk replaces the current one. A chunk with nothing left to execute is dropped,
  and if the latest tick is waiting a new request from it is due at once;
- `reset()` (new episode, clock jumped back) forgets the chunk and the pending request and
  bumps `generation`, so a chunk computed before the reset is refused when it arrives. A tick
  earlier than the previous one resets the executor by itself.

The object is not thread-safe: callers serialise `tick` and `deliver` (the ROS node holds one
lock around both; inference runs outside it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from robot_rl.errors import ConfigError


@dataclass(frozen=True)
class Tick:
    action: np.ndarray | None  # the command for this tick; None: wait (hold, command nothing)
    index: int | None  # that action's index in the current chunk
    request: bool  # start computing a chunk from this tick's observation now
    reset: bool = False  # the tick was earlier than the previous one: the executor reset itself


@dataclass(frozen=True)
class Delivery:
    accepted: bool  # the chunk became the current one
    reason: str  # "ok", "reset" (computed before a reset), "older" (than the current chunk), "late"
    skipped: int = 0  # actions at the start of the chunk whose time had passed on arrival
    action: np.ndarray | None = None  # command for the latest tick, which was waiting; send it now
    index: int | None = None  # that action's index in the chunk
    request: bool = False  # the latest tick still waits and nothing is in flight: request again


@dataclass
class _Chunk:
    stamp: float
    actions: np.ndarray  # (M, A)


class ChunkExecutor:
    def __init__(self, dt: float, action_horizon: int, request_lead: int = 0):
        if not dt > 0:
            raise ConfigError(f"chunk executor: dt must be > 0, got {dt}")
        if action_horizon < 1 or request_lead < 0:
            raise ConfigError(f"chunk executor: need action_horizon >= 1 and request_lead >= 0, "
                              f"got {action_horizon}, {request_lead}")
        self.dt = float(dt)
        self.action_horizon = int(action_horizon)
        self.request_lead = int(request_lead)
        self.generation = 0
        self.reset()

    @property
    def chunk_length(self) -> int:
        """Actions a requested chunk should hold: Ta, plus L to bridge the next inference."""
        return self.action_horizon + self.request_lead

    def reset(self) -> None:
        self.generation += 1
        self._chunk: _Chunk | None = None
        self.pending: float | None = None  # stamp of the observation a chunk is being computed from
        self.last_tick: float | None = None
        self.waiting = False  # the latest tick got no action yet

    def _index(self, t: float, stamp: float) -> int:
        return int(math.floor((t - stamp) / self.dt + 0.5))

    @property
    def chunk_actions(self) -> np.ndarray | None:
        """The current chunk's actions (M, A), or None."""
        return None if self._chunk is None else self._chunk.actions

    def tick(self, t: float) -> Tick:
        """One control tick at observation time `t` (ticks come in increasing time)."""
        reset = self.last_tick is not None and t < self.last_tick - 0.5 * self.dt
        if reset:
            self.reset()
        action = index = None
        k = None
        if self._chunk is not None:
            k = self._index(t, self._chunk.stamp)
            if 0 <= k < len(self._chunk.actions):
                action, index = self._chunk.actions[k].copy(), k
        request = self.pending is None and (self._chunk is None or k is None or k >= self.action_horizon)
        if request:
            self.pending = t
        self.last_tick = t
        self.waiting = action is None
        return Tick(action, index, request, reset)

    def deliver(self, stamp: float, actions, generation: int) -> Delivery:
        """A chunk computed from the observation at `stamp` (before the reset `generation`)."""
        if generation != self.generation:
            return Delivery(False, "reset")
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or len(actions) == 0:
            raise ConfigError(f"chunk executor: a chunk must be (M >= 1, A), got {actions.shape}")
        if self.pending is not None and stamp >= self.pending - 0.5 * self.dt:
            self.pending = None  # the request in flight is answered (or overtaken)
        if self._chunk is not None and stamp < self._chunk.stamp:
            return Delivery(False, "older")
        latest = stamp if self.last_tick is None else self.last_tick
        k = self._index(latest, stamp)
        first = k if self.waiting else k + 1  # the first action whose time has not passed
        first = max(first, 0)
        if first >= len(actions):
            request = self.waiting and self.pending is None
            if request:
                self.pending = latest
            return Delivery(False, "late", skipped=len(actions), request=request)
        self._chunk = _Chunk(float(stamp), actions)
        if self.waiting and 0 <= k < len(actions):
            self.waiting = False
            return Delivery(True, "ok", skipped=k, action=actions[k].copy(), index=k)
        return Delivery(True, "ok", skipped=first)
