"""Forward kinematics of each shipped arm: MuJoCo's URDF import (what robot_rl uses) against a
plain numpy chain of URDF joint transforms (what we would write ourselves), in the same run.

Reports microseconds per FK call for both, their ratio, and the largest TCP position
difference between them over random postures (they must agree: same URDF, two readers).
Progress on stderr; last stdout line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from robot_rl.robot import load_robot
from robot_rl.robot.kinematics import Kinematics


def _rpy(r, p, y) -> np.ndarray:
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def _axis_angle(axis, angle) -> np.ndarray:
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


class NumpyChain:
    """The baseline: 4x4 transforms along the URDF chain from the root to the TCP link."""

    def __init__(self, robot):
        joints = robot.joints()
        by_child = {j.child: j for j in joints.values()}
        chain, link = [], robot.tcp_link
        while link in by_child:
            chain.append(by_child[link])
            link = by_child[link].parent
        self.chain = chain[::-1]
        self.index = {n: i for i, n in enumerate(robot.arm_joints)}
        self.fixed = []
        for j in self.chain:
            t = np.eye(4)
            t[:3, :3], t[:3, 3] = _rpy(*j.origin[3:]), j.origin[:3]
            self.fixed.append(t)

    def fk(self, q) -> np.ndarray:
        t = np.eye(4)
        for j, origin in zip(self.chain, self.fixed):
            t = t @ origin
            if j.name in self.index:
                m = np.eye(4)
                if j.type == "prismatic":
                    m[:3, 3] = np.asarray(j.axis) * q[self.index[j.name]]
                else:
                    m[:3, :3] = _axis_angle(j.axis, q[self.index[j.name]])
                t = t @ m
        return t[:3, 3]


def per_call_us(fk, postures) -> float:
    start = time.perf_counter()
    for q in postures:
        fk(q)
    return (time.perf_counter() - start) / len(postures) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    out = {"bench": "kinematics_speed", "calls": args.calls}
    for name in ("arm", "ur_arm"):
        robot = load_robot(name)
        n = robot.num_arm
        postures = rng.uniform(robot.lower[:n], robot.upper[:n], (args.calls, n))
        mujoco_fk, numpy_fk = Kinematics(robot), NumpyChain(robot)
        worst = max(np.abs(mujoco_fk.fk(q)[0] - numpy_fk.fk(q)).max() for q in postures[:500])
        mj = min(per_call_us(lambda q: mujoco_fk.fk(q), postures) for _ in range(3))
        npy = min(per_call_us(numpy_fk.fk, postures) for _ in range(3))
        print(f"{name}: mujoco {mj:.2f} us, numpy chain {npy:.2f} us per FK, max difference {worst:.2e} m",
              file=sys.stderr)
        out[name] = {"mujoco_us": round(mj, 3), "numpy_us": round(npy, 3), "numpy_over_mujoco": round(npy / mj, 2),
                     "max_position_difference_m": float(worst)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
