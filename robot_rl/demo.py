"""`make demo`: the product end to end, every step over ROS 2 DDS where a robot would use it.

1. sim + scripted expert (`robot-rl bringup sim_expert`, lock-step): episodes of each task
   through the topics, success rates, an MP4 per task;
2. sim + expert + recorder (`robot-rl bringup record_demos`): demonstrations of `lift` recorded
   as a rosbag2 MCAP bag and committed episode by episode to a training dataset;
3. a low-dim diffusion policy trained on that dataset for a few minutes on the CPU;
4. sim + diffusion_policy node (`robot-rl bringup sim_diffusion`, lock-step): the trained policy
   drives the arm over DDS; its success rate, next to the library rollout on the same seeds.

Each stage prints what it does as it goes, and the demo ends with one summary table and one
JSON line. Everything lands under --out-dir (runs/demo).
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
    p.add_argument("--num-episodes", type=int, default=20, help="expert episodes per task in stage 1")
    p.add_argument("--demo-task", default="lift", choices=TASKS, help="task recorded, trained and evaluated")
    p.add_argument("--num-demos", type=int, default=150, help="demonstrations recorded in stage 2")
    p.add_argument("--train-steps", type=int, default=5000, help="gradient steps of the diffusion policy")
    p.add_argument("--eval-episodes", type=int, default=20, help="policy episodes through ROS (and in-library)")
    p.add_argument("--stages", nargs="+", type=int, default=[1, 2, 3, 4], choices=[1, 2, 3, 4])
    p.add_argument("--out-dir", default="runs/demo")
    p.add_argument("--seed", type=int, default=1000, help="first episode seed (then +1 per episode)")
    p.add_argument("--image-size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"))
    return p.parse_args(argv)


def say(text: str) -> None:
    print(f"[demo] {text}", file=sys.stderr, flush=True)


def start_graph(name: str, params: dict) -> subprocess.Popen:
    """`robot-rl bringup <name>` with NODE.KEY=VALUE overrides, in its own process group."""
    cmd = [sys.executable, "-m", "robot_rl.cli", "bringup", name]
    for key, value in params.items():
        cmd += ["-p", f"{key}={value}"]
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


def run_graph_episodes(graph: str, params: dict, runner_config) -> dict:
    from robot_rl.ros.episode_runner_node import run_episodes

    proc = start_graph(graph, params)
    try:
        t0 = time.monotonic()
        summary = run_episodes(runner_config, log=say)
        summary["wall_s"] = round(time.monotonic() - t0, 1)
        return summary
    finally:
        stop_graph(proc)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(101, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("MUJOCO_GL", "egl")
    import rclpy

    from robot_rl.errors import RobotRLError
    from robot_rl.ros.episode_runner_node import EpisodeRunnerConfig
    from robot_rl.sim.tasks import TASKS as SPECS

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset, ckpt = out / f"{args.demo_task}_demos", out / f"{args.demo_task}_diffusion"
    results: dict = {}
    rclpy.init()
    t_start = time.monotonic()
    try:
        if 1 in args.stages:
            say(f"stage 1: scripted expert through the topics, {args.num_episodes} episodes per task "
                f"(ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']})")
            for task in args.tasks:
                say(f"--- {task}: starting mujoco_sim + scripted_expert")
                results[f"expert_{task}"] = run_graph_episodes(
                    "sim_expert",
                    {"task": task, "mode": "lockstep", "seed": args.seed, "cameras": "[front]",
                     "image_width": args.image_size[0], "image_height": args.image_size[1]},
                    EpisodeRunnerConfig(task=task, num_episodes=args.num_episodes, max_steps=SPECS[task].max_steps,
                                        video=str(out / f"{task}.mp4"), service_timeout=60.0))
        if 2 in args.stages:
            say(f"stage 2: recording {args.num_demos} {args.demo_task} demonstrations through the recorder "
                f"-> bag in {out / 'bags'}, dataset {dataset}")
            results["recorded"] = run_graph_episodes(
                "record_demos",
                {"task": args.demo_task, "seed": args.seed + 10_000, "recorder.dataset": dataset,
                 "recorder.bag_dir": out / "bags", "recorder.cameras": "[]", "mujoco_sim.cameras": "[]"},
                EpisodeRunnerConfig(task=args.demo_task, num_episodes=args.num_demos,
                                    max_steps=SPECS[args.demo_task].max_steps, recorder="recorder",
                                    service_timeout=60.0))
            subprocess.run([sys.executable, "-m", "robot_rl.cli", "dataset", "info", str(dataset)], check=True)
        if 3 in args.stages:
            say(f"stage 3: training a low-dim diffusion policy on {dataset} for {args.train_steps} steps")
            subprocess.run([sys.executable, "-m", "robot_rl.cli", "train", "diffusion", "--dataset", str(dataset),
                            "--out", str(ckpt), "--num-steps", str(args.train_steps),
                            "--batch-size", "64", "--lr", "1e-3", "--torch-threads", "1",
                            "--eval-every", str(args.train_steps), "--eval-episodes", "0"], check=True)
        if 4 in args.stages:
            best = _checkpoint_in(ckpt)
            say(f"stage 4: the trained policy ({best}) in the library rollout, then through the ROS nodes")
            from robot_rl.policies.diffusion.model import DiffusionPolicy
            from robot_rl.sim.rollout import evaluate

            seeds = range(args.seed + 50_000, args.seed + 50_000 + args.eval_episodes)
            results["policy_library"] = evaluate(args.demo_task, DiffusionPolicy.from_checkpoint(best), seeds)
            say(f"library rollout: success {results['policy_library']['success_rate']:.2f}")
            results["policy_ros"] = run_graph_episodes(
                "sim_diffusion",
                {"task": args.demo_task, "mode": "lockstep", "seed": seeds[0], "checkpoint": best,
                 "diffusion_policy.request_lead": 0},
                EpisodeRunnerConfig(task=args.demo_task, num_episodes=args.eval_episodes,
                                    max_steps=SPECS[args.demo_task].max_steps, service_timeout=60.0,
                                    reset_services=("/sim/reset",)))  # the node resets on /sim/episode_start
    except (RobotRLError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        rclpy.try_shutdown()
    _summary(results, out, time.monotonic() - t_start)
    return 0


def _checkpoint_in(folder: Path) -> Path:
    """The trainer's best checkpoint (by success) if it kept one, else its last."""
    for name in ("best", "last", "."):
        if (folder / name / "config.json").is_file():
            return (folder / name).resolve()
    raise FileNotFoundError(f"{folder}: no checkpoint (config.json) found; run stage 3 first")


def _summary(results: dict, out: Path, wall: float) -> None:
    print("\nstage / what                          success   episodes   wall s")
    for key, r in results.items():
        print(f"{key:<38} {r.get('success_rate', float('nan')):>7.2f}   {r.get('episodes', '-'):>8}   "
              f"{r.get('wall_s', '-')}")
    print(f"videos: {', '.join(str(p) for p in sorted(out.glob('*.mp4')))}; total {wall / 60:.1f} min")
    print(json.dumps({"demo": "robot_rl", "wall_s": round(wall, 1),
                      **{f"{k}_success_rate": r["success_rate"] for k, r in results.items() if "success_rate" in r}}))


if __name__ == "__main__":
    sys.exit(main())
