"""Online residual RL beside a running controller: the learning side of the residual_policy node.

The control thread only computes and queues. `act` explores on a snapshot of the actor (its
weights read under a lock), `observe` closes the previous tick's transition with this tick's
observation, base action, reward and success, and `executed` opens the next one with the
command actually sent. A learner thread owns the Learner and both replay buffers: it writes
the queued steps through an NStepWriter into the online buffer, runs `utd_ratio` updates per
received step once warm-up is over, copies the actor's weights into the snapshot after each
update, and saves a checkpoint every `checkpoint_every` updates. So the control loop never
waits for a gradient step, and no buffer is touched from two threads.

Whether a step is its episode's last is only known at the next tick (or the next episode
start), so the learner thread holds the latest step back until then: a step followed by an
episode end (a new episode, a held tick, a gap in the ticks) is written with `episode_end`
(bootstrapped, like a time limit); a step that reaches success is `terminal`, and nothing is
recorded after it until the next episode or until success is lost again.
"""
from __future__ import annotations

import copy
import os
import shutil
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from robot_rl.data.dataset import fsync_path
from robot_rl.data.replay import NStepWriter
from robot_rl.policies.residual.config import ResidualConfig
from robot_rl.policies.residual.learner import Learner, relabel_demos
from robot_rl.policies.residual.model import ResidualActor, ResidualPolicy
from robot_rl.policies.residual.noise import ExplorationNoise
from robot_rl.policies.residual.space import space_for

END = "end"  # queue marker: the chain of consecutive ticks broke here
CHECKPOINT, REPLAY = "checkpoint", "replay.npz"


@dataclass
class _Tick:
    t: float
    obs: np.ndarray         # the residual's state (state vector + correction-space features)
    base: np.ndarray
    correction: np.ndarray


class OnlineResidual:
    """Exploration, transition assembly and a learner thread around `robot_rl.policies.residual.learner.Learner`.

    `actor` is the snapshot the control thread acts with; the Learner starts from its weights.
    `demos` is a function returning labelled demonstrations (learner.label_demos), called
    in the learner thread (running the base over them takes a while); they go into the demo buffer
    before learning starts.
    """

    def __init__(self, actor: ResidualActor, cfg: ResidualConfig, out_dir, control_dt: float,
                 checkpoint_every: int = 1000, seed: int = 0, demos=None, log: Callable[[str], None] = print):
        self.actor, self.cfg, self.dt = actor, cfg, control_dt
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_every, self.seed, self.demos, self.log = checkpoint_every, seed, demos, log
        self.rng = np.random.default_rng(seed)
        self.space = space_for(cfg)  # control thread: the correction state of the running episode
        self.noise = ExplorationNoise(cfg.correction_dim, self.rng)
        self.lock = threading.Lock()  # the snapshot's weights
        self.steps = 0  # transitions recorded (control thread): decides the warm-up exploration
        self.updates = 0
        self.error: str | None = None
        self.learner = None
        self._prev: _Tick | None = None
        self._success = False
        self._cv = threading.Condition()  # _queue, _stopping
        self._queue: deque = deque()
        self._stopping = False
        self._held = None  # learner thread: the latest step, until its successor says how it ends
        self._received = self._owed = 0
        self._thread = threading.Thread(target=self._run, name="residual_learner", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ control thread
    def act(self, obs: np.ndarray, base: np.ndarray) -> np.ndarray:
        """As the trainer explores, on the snapshot: base + half noise during warm-up, then actor + noise."""
        cfg = self.cfg
        warm = self.steps < cfg.warmup_steps
        noise = self.noise.sample(cfg.exploration_noise * (0.5 if warm else 1.0))
        with self.lock:
            correction = self.actor.correction(self.state(obs), base, noise, use_actor=not warm)
        return self.space.command(base, correction)

    def state(self, obs: np.ndarray) -> np.ndarray:
        """The residual's observation: the state vector and the correction space's features."""
        return np.concatenate([np.asarray(obs, np.float32), self.space.features()])

    def observe(self, t: float, obs: np.ndarray, base: np.ndarray, reward: float, success: bool) -> None:
        """The tick at `t` closes the previous tick's transition, if that tick was the one before."""
        prev, self._prev = self._prev, None
        consecutive = prev is not None and abs(t - prev.t - self.dt) < self.dt / 2
        if consecutive and np.all(np.isfinite(obs)) and np.all(np.isfinite(base)):
            self._push((prev.obs, prev.base, prev.correction, float(reward), self.state(obs), base, bool(success)))
            self.steps += 1
        else:
            self._push(END)
        self._success = bool(success)

    def executed(self, t: float, obs: np.ndarray, base: np.ndarray, action: np.ndarray) -> None:
        """The command sent for the tick at `t` (after the guard): what the arm really did, recorded
        as the correction it made (and, in task space, the offset it now holds)."""
        state = self.state(obs)
        correction = self.space.follow(base, action)
        if not self._success:
            self._prev = _Tick(t, state, np.asarray(base, np.float32), correction)

    def end_episode(self) -> None:
        self._prev, self._success = None, False
        self.space.reset()
        self._push(END)

    def _push(self, item) -> None:
        if self.error is not None:
            return  # the learner thread is gone: nothing would drain the queue
        with self._cv:
            self._queue.append(item)
            self._cv.notify()

    # ------------------------------------------------------------------ learner thread
    def _run(self) -> None:
        try:
            self._build()
            while True:
                with self._cv:
                    self._cv.wait_for(lambda: self._stopping or self._queue or self._owed > 0)
                    if self._stopping:
                        return
                    items = list(self._queue)
                    self._queue.clear()
                for item in items:
                    self._write(item)
                if self._owed > 0:
                    self._update()
        except Exception as e:  # noqa: BLE001 - the arm keeps running on the last snapshot
            self.error = f"{type(e).__name__}: {e}"
            self.log(f"residual learner stopped: {self.error}")

    def _build(self) -> None:
        learner = Learner(self.actor.norm.obs_mean.numel(), self.cfg, copy.deepcopy(self.actor.norm), self.seed)
        with self.lock:
            state = copy.deepcopy(self.actor.state_dict())
        for net in (learner.actor, getattr(learner, "actor_target", None)):
            if net is not None:
                net.load_state_dict(state)
        if self.demos is not None:
            self.log(f"relabelled {relabel_demos(learner, self.demos(), self.cfg)} demo transitions with the base")
        self.writer = NStepWriter(learner.online, self.cfg.n_step, self.cfg.gamma)
        self.learner = learner

    def _write(self, item) -> None:
        held, self._held = self._held, None
        if held is not None:
            self.writer.step(*held, terminal=False, episode_end=item is END)
        if item is END:
            return
        *row, terminal = item
        if terminal:
            self.writer.step(*row, terminal=True, episode_end=True)
        else:
            self._held = row
        self._received += 1
        data = self.learner.online.size + self.learner.demos.size
        if self._received > self.cfg.warmup_steps and data >= self.cfg.batch_size:
            self._owed += self.cfg.utd_ratio

    def _update(self) -> None:
        self.learner.update(train_actor=self.updates >= self.cfg.critic_warmup_updates)
        self._owed -= 1
        self.updates += 1
        state = self.learner.actor.state_dict()
        with self.lock:
            self.actor.load_state_dict(state)
        if self.updates % self.checkpoint_every == 0:
            path = self.save_checkpoint()
            self.log(f"checkpoint {path}: {self.updates} updates, {self._received} steps")

    # ------------------------------------------------------------------ files
    def save_checkpoint(self) -> Path:
        """ResidualPolicy.save into a fresh folder, swapped in whole: never a half-written checkpoint."""
        final = self.out_dir / CHECKPOINT
        tmp, old = self.out_dir / f".{CHECKPOINT}.{uuid.uuid4().hex[:8]}", self.out_dir / f".{CHECKPOINT}.old"
        ResidualPolicy(None, self.learner.actor, self.cfg).save(
            tmp, getattr(self.learner, "critic", None), {"updates": self.updates, "env_steps": self._received})
        for f in tmp.iterdir():
            fsync_path(f)
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        fsync_path(self.out_dir)
        shutil.rmtree(old, ignore_errors=True)
        return final

    def save_buffer(self) -> Path:
        """The online buffer as .npz (ReplayBuffer.save), written to a temp file and renamed."""
        final, tmp = self.out_dir / REPLAY, self.out_dir / f".{REPLAY}.tmp"
        with open(tmp, "wb") as f:
            self.learner.online.save(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fsync_path(self.out_dir)
        return final

    def close(self) -> tuple[Path, Path] | None:
        """Stop the learner thread, write what is queued, save the checkpoint and the online buffer."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self._thread.join()
        if self.learner is None:
            return None
        with self._cv:
            items = list(self._queue) + [END]
            self._queue.clear()
        for item in items:
            self._write(item)
        return self.save_checkpoint(), self.save_buffer()
