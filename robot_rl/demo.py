"""`make demo`: the simulated arm and the scripted expert as ROS 2 nodes talking DDS.

For each task it starts the `sim_expert` graph (`robot-rl bringup sim_expert`, lock-step so it
runs as fast as the expert answers), runs episodes through the topics with the episode runner,
prints the success rates, and writes an MP4 of each task's first episode from the front camera.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

TASKS = ("reach", "push", "lift")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m robot_rl.demo", description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--num-episodes", type=int, default=20)
    p.add_argument("--out-dir", default="runs/demo", help="where the MP4s go")
    p.add_argument("--seed", type=int, default=1000, help="first episode seed (then +1 per episode)")
    p.add_argument("--image-size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"))
    return p.parse_args(argv)


def start_graph(task: str, args) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "robot_rl.cli", "bringup", "sim_expert",
           "-p", f"task={task}", "-p", "mode=lockstep", "-p", f"seed={args.seed}",
           "-p", "cameras=[front]", "-p", f"image_width={args.image_size[0]}",
           "-p", f"image_height={args.image_size[1]}"]
    return subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL)


def stop_graph(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGINT, 15.0), (signal.SIGKILL, 2.0)):
        if proc.poll() is not None:
            return
        os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            pass


def main(argv=None) -> int:
    args = parse_args(argv)
    # a private DDS domain on loopback, unless the caller chose one
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(101, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("MUJOCO_GL", "egl")
    import rclpy

    from robot_rl.errors import RobotRLError
    from robot_rl.ros.episode_runner_node import EpisodeRunnerConfig, run_episodes
    from robot_rl.sim.tasks import TASKS as TASK_SPECS

    out_dir = Path(args.out_dir)
    results = {}
    rclpy.init()
    try:
        for task in args.tasks:
            print(f"--- {task}: starting mujoco_sim + scripted_expert (ROS_DOMAIN_ID="
                  f"{os.environ['ROS_DOMAIN_ID']})", file=sys.stderr, flush=True)
            graph = start_graph(task, args)
            try:
                t0 = time.monotonic()
                config = EpisodeRunnerConfig(task=task, num_episodes=args.num_episodes,
                                             max_steps=TASK_SPECS[task].max_steps,
                                             video=str(out_dir / f"{task}.mp4"), service_timeout=60.0)
                results[task] = run_episodes(config)
                results[task]["wall_s"] = round(time.monotonic() - t0, 1)
            finally:
                stop_graph(graph)
    except RobotRLError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        rclpy.try_shutdown()
    print("\ntask    success rate   episodes   mean steps   video")
    for task, r in results.items():
        print(f"{task:<7} {r['success_rate']:>12.2f}   {r['episodes']:>8}   {r['mean_steps']:>10.1f}   "
              f"{out_dir / (task + '.mp4')}")
    print(json.dumps({"demo": "sim_expert", **{f"{t}_success_rate": r["success_rate"] for t, r in results.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
