"""`make demo`: the product end to end, every step over ROS 2 DDS where a robot would use it.

1. sim + scripted expert (`robot-rl bringup sim_expert`, lock-step): episodes of each task
   through the topics, success rates, an MP4 per task;
2. sim + expert + recorder (`robot-rl bringup record_demos`): demonstrations of `lift` recorded
   as a rosbag2 MCAP bag and committed episode by episode to a training dataset;
3. a low-dim diffusion policy trained on that dataset for a few minutes on the CPU;
4. sim + diffusion_policy node (`robot-rl bringup sim_diffusion`, lock-step): the trained policy
   drives the arm over DDS; its success rate, next to the library rollout on the same seeds;
5. V-GPS: mixed-quality episodes of the task (`robot-rl collect --quality expert=0.6,poor=0.4`), a
   generalist diffusion policy trained on all of them (failures included: `--all-episodes`), an
   IQL critic trained on the same data (`robot-rl train value --algo iql`); the generalist alone
   (sim_diffusion, at the deployment noise its training chose), then sim + diffusion_policy (N
   candidate chunks per observation) + value_steering (`robot-rl bringup sim_steering`,
   lock-step): the critic picks the chunk the arm executes, on stage 4's seeds;
6. ResFiT: a residual policy learned by off-policy RL on top of the stage-3 policy in the library
   sim (`robot-rl train residual`, stage 2's demos relabelled by the base), then sim +
   diffusion_policy (base chunks, no commands) + residual_policy (base + correction, commands)
   (`robot-rl bringup sim_residual`, lock-step) on stage 4's seeds.

Each stage prints what it does as it goes, and the demo ends with one summary table, one line per
comparison (generalist vs steered generalist, base vs base + residual: success rates on the same
seeds, each policy at its best plain deployment) and one JSON line. Stage 6 compares with stage
4's run through ROS; without stage 4 in the same invocation it runs the base through
sim_diffusion on those seeds first. Everything lands under
--out-dir (runs/demo).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

TASKS = ("reach", "push", "lift")
STAGES = (1, 2, 3, 4, 5, 6)
MIXTURE = "expert=0.6,poor=0.4"  # stage 5: mixed-quality data for the generalist and its critic
DEPLOY_EPISODES = 20  # stage 3: validation episodes per deployment setting (noise 1, 0.5, 0)
GENERALIST_DEPLOY_EPISODES = 10  # stage 5: the same for the generalist (the demo's time)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m robot_rl.demo", description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--num-episodes", type=int, default=20, help="expert episodes per task in stage 1")
    p.add_argument("--demo-task", default="lift", choices=TASKS, help="task recorded, trained and evaluated")
    p.add_argument("--num-demos", type=int, default=150, help="demonstrations recorded in stage 2")
    p.add_argument("--train-steps", type=int, default=5000, help="gradient steps of the diffusion policy")
    p.add_argument("--eval-episodes", type=int, default=20, help="policy episodes through ROS (and in-library)")
    p.add_argument("--mixed-episodes", type=int, default=100,
                   help=f"stage 5: mixed-quality episodes ({MIXTURE}) the critic is trained on")
    p.add_argument("--generalist-steps", type=int, default=2000,
                   help="stage 5: gradient steps of the generalist diffusion policy on the mixed-quality data")
    p.add_argument("--value-steps", type=int, default=2000, help="stage 5: gradient steps of the IQL critic")
    p.add_argument("--num-samples", type=int, default=16, help="stage 5: candidate chunks the critic chooses from")
    p.add_argument("--residual-steps", type=int, default=3000,
                   help="stage 6: env steps of residual RL (the first 2000 are the base plus small noise)")
    p.add_argument("--stages", nargs="+", type=int, default=list(STAGES), choices=STAGES)
    p.add_argument("--out-dir", default="runs/demo")
    p.add_argument("--seed", type=int, default=1000, help="first episode seed (then +1 per episode)")
    p.add_argument("--image-size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"))
    p.add_argument("--robot", default="arm", help="the simulated arm every stage uses: arm (7-DoF) or ur_arm (6-DoF)")
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


class GraphFailed(RuntimeError):
    """A graph or its episode runner exited with an error (their messages are above)."""


def run_graph_episodes(graph: str, params: dict, runner: dict, out: Path) -> dict:
    """Start `graph`, run `robot-rl episodes` (flags from `runner`) against it, stop it; the
    runner's JSON summary. When the graph exits first (bringup stops as soon as one of its nodes
    exits, e.g. on a bad checkpoint path), fail at once rather than after the runner's timeouts.
    Both are processes: the demo itself never talks DDS (only robot_rl/ros imports rclpy)."""
    summary_file = out / f".episodes_{graph}.json"
    summary_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "robot_rl.cli", "episodes", "--out", str(summary_file)]
    for key, value in runner.items():
        for v in value if isinstance(value, (list, tuple)) else [value]:
            cmd += [f"--{key.replace('_', '-')}", str(v)]
    proc = start_graph(graph, params)
    t0 = time.monotonic()
    episodes = subprocess.Popen(cmd, start_new_session=True)
    try:
        while episodes.poll() is None:
            if proc.poll() is not None:
                raise GraphFailed(f"graph {graph} exited with code {proc.returncode} before its episodes finished "
                                  "(a node failed to start?); its nodes' errors are above")
            time.sleep(0.2)
        if episodes.returncode != 0 or not summary_file.is_file():
            raise GraphFailed(f"robot-rl episodes against {graph} exited with code {episodes.returncode}")
    finally:
        stop_graph(episodes)
        stop_graph(proc)
    summary = json.loads(summary_file.read_text())
    summary["wall_s"] = round(time.monotonic() - t0, 1)
    summary_file.unlink(missing_ok=True)
    return summary


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(101, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from robot_rl.errors import RobotRLError
    from robot_rl.sim.tasks import TASKS as SPECS

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    demo_task, max_steps = args.demo_task, SPECS[args.demo_task].max_steps
    dataset, ckpt = out / f"{demo_task}_demos", out / f"{demo_task}_diffusion"
    mixed, value_dir = out / f"{demo_task}_mixed", out / f"{demo_task}_value"
    generalist_dir = out / f"{demo_task}_generalist"
    residual_dir = out / f"{demo_task}_residual"
    seeds = range(args.seed + 50_000, args.seed + 50_000 + args.eval_episodes)  # stages 4-6: the same episodes
    results: dict = {}

    def cli(*words) -> float:
        """`robot-rl WORDS...` in a subprocess; its wall time (s)."""
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "robot_rl.cli", *map(str, words)], check=True)
        return round(time.monotonic() - t0, 1)

    def run_policy_graph(graph: str, params: dict) -> dict:
        """`graph` in lock-step on the evaluation seeds; the node that drives the arm resets on /sim/episode_start."""
        return run_graph_episodes(
            graph, {"task": demo_task, "mode": "lockstep", "seed": seeds[0], "robot": args.robot, **params},
            dict(task=demo_task, num_episodes=args.eval_episodes, max_steps=max_steps,
                 service_timeout=60.0, reset_service="/sim/reset"), out)

    t_start = time.monotonic()
    try:
        if 1 in args.stages:
            say(f"stage 1: scripted expert through the topics, {args.num_episodes} episodes per task "
                f"(ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']})")
            for task in args.tasks:
                say(f"--- {task}: starting mujoco_sim + scripted_expert")
                results[f"expert_{task}"] = run_graph_episodes(
                    "sim_expert",
                    {"task": task, "mode": "lockstep", "seed": args.seed, "cameras": "[front]", "robot": args.robot,
                     "image_width": args.image_size[0], "image_height": args.image_size[1]},
                    dict(task=task, num_episodes=args.num_episodes, max_steps=SPECS[task].max_steps,
                         video=out / f"{task}.mp4", service_timeout=60.0), out)
        if 2 in args.stages:
            shutil.rmtree(dataset, ignore_errors=True)  # the recorder appends: a re-run starts empty
            say(f"stage 2: recording {args.num_demos} {args.demo_task} demonstrations through the recorder "
                f"-> bag in {out / 'bags'}, dataset {dataset}")
            results["recorded"] = run_graph_episodes(
                "record_demos",
                {"task": args.demo_task, "seed": args.seed + 10_000, "robot": args.robot, "recorder.dataset": dataset,
                 "recorder.bag_dir": out / "bags", "recorder.cameras": "[]", "mujoco_sim.cameras": "[]"},
                dict(task=args.demo_task, num_episodes=args.num_demos,
                     max_steps=SPECS[args.demo_task].max_steps, recorder="recorder", service_timeout=60.0), out)
            subprocess.run([sys.executable, "-m", "robot_rl.cli", "dataset", "info", str(dataset)], check=True)
        if 3 in args.stages:
            say(f"stage 3: training a low-dim diffusion policy on {dataset} for {args.train_steps} steps, then "
                f"choosing its deployment noise on {DEPLOY_EPISODES} validation episodes per setting")
            subprocess.run([sys.executable, "-m", "robot_rl.cli", "train", "diffusion", "--dataset", str(dataset),
                            "--out", str(ckpt), "--num-steps", str(args.train_steps),
                            "--batch-size", "64", "--lr", "1e-3", "--torch-threads", "1",
                            "--eval-every", str(args.train_steps), "--eval-episodes", str(DEPLOY_EPISODES)],
                           check=True)  # the base deploys at the noise scale that scores best on validation seeds
        if 4 in args.stages:
            best = _checkpoint_in(ckpt)
            say(f"stage 4: the trained policy ({best}) in the library rollout, then through the ROS nodes")
            from robot_rl.policies.diffusion.model import DiffusionPolicy
            from robot_rl.sim.rollout import evaluate

            results["policy_library"] = evaluate(demo_task, DiffusionPolicy.from_checkpoint(best), seeds,
                                                 env_kwargs={"robot": args.robot})
            say(f"library rollout: success {results['policy_library']['success_rate']:.2f}")
            results["policy_ros"] = run_policy_graph("sim_diffusion",
                                                     {"checkpoint": best, "diffusion_policy.request_lead": 0})
        if 6 in args.stages and "policy_ros" not in results:
            best = _checkpoint_in(ckpt)
            say(f"the base for stage 6: stage 4 is not in this run, so {best} through sim_diffusion "
                "on its seeds first")
            results["policy_ros"] = run_policy_graph("sim_diffusion",
                                                     {"checkpoint": best, "diffusion_policy.request_lead": 0})
        if 5 in args.stages:
            say(f"stage 5 (V-GPS): {args.mixed_episodes} mixed-quality {demo_task} episodes ({MIXTURE}) from the "
                f"scripted experts -> {mixed}")
            shutil.rmtree(mixed, ignore_errors=True)  # collect appends: start from an empty dataset
            wall = cli("collect", "--task", demo_task, "--out", mixed, "--num-episodes", args.mixed_episodes,
                       "--quality", MIXTURE, "--seed", args.seed + 20_000, "--robot", args.robot)
            from robot_rl.data.dataset import EpisodeDataset

            labels = EpisodeDataset.open(mixed).success
            results["mixed_data"] = {"episodes": len(labels), "successes": int(sum(labels)),
                                     "success_rate": float(sum(labels)) / max(len(labels), 1), "wall_s": wall}
            say(f"a generalist diffusion policy on all of {mixed} (failures too) for {args.generalist_steps} steps, "
                f"its deployment noise chosen on {GENERALIST_DEPLOY_EPISODES} validation episodes per setting")
            results["generalist_training"] = {"wall_s": cli(
                "train", "diffusion", "--dataset", mixed, "--all-episodes", "--out", generalist_dir,
                "--num-steps", args.generalist_steps, "--batch-size", 64, "--lr", "1e-3", "--torch-threads", 1,
                "--eval-every", args.generalist_steps, "--eval-episodes", GENERALIST_DEPLOY_EPISODES)}
            generalist = _checkpoint_in(generalist_dir)
            say(f"an IQL critic on {mixed} for {args.value_steps} steps -> {value_dir / 'checkpoint'}")
            results["critic_training"] = {"wall_s": cli(
                "train", "value", "--dataset", mixed, "--algo", "iql", "--out", value_dir,
                "--num-steps", args.value_steps, "--eval-every", args.value_steps)}
            say(f"the generalist alone ({generalist}) through sim_diffusion, stage 4's seeds")
            results["generalist_ros"] = run_policy_graph("sim_diffusion", {"checkpoint": generalist,
                                                                           "diffusion_policy.request_lead": 0})
            say(f"sim + diffusion_policy (the generalist: {args.num_samples} candidate chunks per observation on "
                f"/policy/candidates) + value_steering (the critic picks the chunk the arm executes), same seeds")
            results["steered_ros"] = run_policy_graph(
                "sim_steering", {"checkpoint": generalist, "num_samples": args.num_samples,
                                 "value_checkpoint": (value_dir / "checkpoint").resolve()})
        if 6 in args.stages:
            best = _checkpoint_in(ckpt)
            say(f"stage 6 (ResFiT): residual RL on top of {best} in the library sim for {args.residual_steps} env "
                f"steps, {dataset}'s demos relabelled by the base -> {residual_dir / 'checkpoint'}")
            results["residual_training"] = {"wall_s": cli(
                "train", "residual", "--base", best, "--task", demo_task, "--demos", dataset, "--out", residual_dir,
                "--total-env-steps", args.residual_steps, "--eval-every", args.residual_steps,
                "--eval-episodes", args.eval_episodes, "--seed", args.seed + 30_000, "--robot", args.robot)}
            say("sim + diffusion_policy (base chunks on /policy/action_chunk, no commands) + residual_policy "
                "(base + correction on the arm's commands, not learning), stage 4's seeds")
            results["residual_ros"] = run_policy_graph(
                "sim_residual", {"checkpoint": best, "num_samples": 1, "publish_commands": "false",
                                 "diffusion_policy.request_lead": 0, "learn": "false",
                                 "residual_checkpoint": (residual_dir / "checkpoint").resolve()})
    except (RobotRLError, GraphFailed, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
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
        success = f"{r['success_rate']:.2f}" if "success_rate" in r else "-"
        print(f"{key:<38} {success:>7}   {r.get('episodes', '-'):>8}   {r.get('wall_s', '-')}")
    print(f"videos: {', '.join(str(p) for p in sorted(out.glob('*.mp4')))}; total {wall / 60:.1f} min")
    for base_key, key, what in (("generalist_ros", "steered_ros", "generalist vs steered (V-GPS)"),
                                ("policy_ros", "residual_ros", "base vs base + residual (ResFiT)")):
        base = results.get(base_key)
        if base is not None and key in results:
            r = results[key]
            print(f"{what + ':':<34} success {base['success_rate']:.2f} -> {r['success_rate']:.2f} "
                  f"({base['successes']}/{base['episodes']} -> {r['successes']}/{r['episodes']} episodes, "
                  f"same seeds, {r['task']} over ROS 2)")
    print(json.dumps({"demo": "robot_rl", "wall_s": round(wall, 1),
                      **{f"{k}_success_rate": r["success_rate"] for k, r in results.items() if "success_rate" in r}}))


if __name__ == "__main__":
    sys.exit(main())
