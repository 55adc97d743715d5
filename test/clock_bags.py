"""Episodes as a real arm's bag has them: stamps that jitter, a late or early first message, lost,
duplicated and reordered messages, clock jumps, success published on change.

Per tick k (true time G_k = t0 + k * period) the publishers send, in this order: object poses
(stamped G_k + its own jitter), reward and success (no header), joint states (stamped G_k + their
jitter) and the command answering them (no header). Values encode the tick so every label can be
checked exactly: joint_pos[0] = k, object_poses[0, 0] = k, action[0] = k + 0.5, reward = k.

`truth` says what a correct synchroniser must make of it: the ticks whose frame is complete (its
joint state, its command and the next tick's joint state arrived, its poses arrived), so the
count of dropped frames is known in advance (a lost success costs nothing: it is a held level).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rawmsgs import command, joint_state, poses, reward, success

MS = 1_000_000
PERIOD = 100 * MS
TOPICS = ("/task/object_poses", "/task/reward", "/task/success", "/joint_states",
          "/forward_position_controller/commands")


@dataclass
class Truth:
    ticks: int
    lost: dict[str, set] = field(default_factory=dict)  # topic -> ticks whose message was lost
    success_at: int | None = None

    def complete(self, k: int) -> bool:
        """Frame k has everything a frame needs (the last tick's has no next joint state)."""
        lost = self.lost
        return (k not in lost["/joint_states"] and k + 1 not in lost["/joint_states"]
                and k not in lost["/forward_position_controller/commands"]
                and k not in lost["/task/object_poses"] and k + 1 not in lost["/task/reward"]
                and k + 1 < self.ticks)  # success is a held level: a lost one costs nothing


def clock_episode(ticks: int = 60, seed: int = 0, jitter: float = 0.0, first: float = 0.0, lose: float = 0.0,
                  duplicate: float = 0.0, reorder: float = 0.0, jump_at: int | None = None, jump_s: float = 0.0,
                  success_at: int | None = None, success_on_change: bool = False, publish_times: bool = True,
                  t0: int = 100_000 * MS):
    """(messages [(topic, log_ns, raw, publish_ns or None)] in log order, Truth).

    jitter: stamps are G_k + U(-jitter, jitter) * period (poses and joint states independently);
    first: the first joint state's stamp is off by this many periods; lose: each message is lost
    with this probability (never the first tick's); duplicate: a stamped message is written twice;
    reorder: a poses message is logged after the next one; jump_at / jump_s: every stamp from that
    tick on is off by jump_s seconds (the sim clock restarted; log times go on); publish_times:
    False writes publish_time = log_time, as many tools do."""
    rng = np.random.default_rng(seed)
    truth = Truth(ticks, {t: set() for t in TOPICS}, success_at)
    out = []
    for k in range(ticks):
        g = t0 + k * PERIOD
        shift = int(jump_s * 1e9) if jump_at is not None and k >= jump_at else 0

        def stamp(extra: float = 0.0) -> int:
            return g + shift + int(round((rng.uniform(-jitter, jitter) + extra) * PERIOD))

        t_poses, t_joints = stamp(), stamp(first if k == 0 else 0.0)
        q = np.zeros(8)
        q[0] = k
        a = np.zeros(8)
        a[0] = k + 0.5
        done = success_at is not None and k >= success_at
        sent = [("/task/object_poses", poses(t_poses, [[k, 0, 0, 1, 0, 0, 0]])),
                ("/task/reward", reward(float(k)))]
        if not success_on_change or k == 0 or k == success_at:
            sent.append(("/task/success", success(done)))
        sent += [("/joint_states", joint_state(t_joints, q)), ("/forward_position_controller/commands", command(a))]
        for i, (topic, raw) in enumerate(sent):
            if k > 0 and rng.random() < lose:
                truth.lost[topic].add(k)
                continue
            publish = g + i * MS // 5 + (MS if topic.endswith("commands") else 0)
            log = publish + int(rng.integers(20_000, 150_000))  # received a little later
            out.append([topic, log, raw, publish])
            if topic in ("/task/object_poses", "/joint_states") and rng.random() < duplicate:
                out.append([topic, log + 1, raw, publish + 1])
    if reorder:
        by_poses = [i for i, m in enumerate(out) if m[0] == "/task/object_poses"]
        for i, j in zip(by_poses, by_poses[1:]):
            if rng.random() < reorder:  # logged after the next poses message (stamps stay with content)
                out[i][1], out[j][1] = out[j][1] + 1, out[i][1]
    out.sort(key=lambda m: m[1])
    last = -1
    for m in out:  # strictly increasing log times, as a recorder writes them
        m[1] = last = max(m[1], last + 1)
        if not publish_times:
            m[3] = None
    return [tuple(m) for m in out], truth
