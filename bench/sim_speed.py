"""Control steps per second of each task, state-only and with both cameras, as a real-time factor.

RTF = simulated seconds / wall seconds (1.0 = real time at the 10 Hz control rate). The scripted
expert drives the arm so contacts and grasps are exercised as in data collection.
Last stdout line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from robot_rl.sim.env import ArmEnv
from robot_rl.sim.experts import ScriptedExpert


def measure(task: str, cameras: tuple[str, ...], steps: int, image_size) -> float:
    env = ArmEnv(task, cameras=cameras, image_size=image_size)
    expert = ScriptedExpert(task)
    obs, _ = env.reset(seed=0)
    expert.reset(seed=0)
    seed = 0
    elapsed = 0.0
    for _ in range(steps):
        action = expert.act(obs)  # the expert's IK is not simulator time: keep it out of the clock
        start = time.perf_counter()
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            seed += 1
            obs, _ = env.reset(seed=seed)
            expert.reset(seed=seed)
        elapsed += time.perf_counter() - start
    env.close()
    return steps * env.control_dt / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--image-size", type=int, nargs=2, default=(96, 96), metavar=("W", "H"))
    args = parser.parse_args()
    result = {"bench": "sim_speed", "steps": args.steps, "image_size": list(args.image_size)}
    for task in ("reach", "push", "lift"):
        for label, cams in (("state", ()), ("rgb", ("front", "wrist"))):
            rtf = measure(task, cams, args.steps, tuple(args.image_size))
            result[f"{task}_{label}_rtf"] = round(rtf, 2)
            print(f"{task:6s} {label:5s} RTF {rtf:8.2f}  ({rtf / 0.1:7.1f} control steps/s)", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
