"""Online residual RL through the ROS node path: success before and after learning on the topics.

Three runs of the `sim_residual` graph (mujoco_sim lock-step + diffusion_policy publishing base
chunks + residual_policy commanding the arm), all over DDS: the start residual on the evaluation
seeds (before), `learn: true` on disjoint training seeds for --learn-episodes episodes (the
learner thread trains while the arm runs; its checkpoint and replay buffer are saved on stop),
then the learned checkpoint with `learn: false` on the evaluation seeds again (after).
Progress on stderr; last stdout line: one JSON object.

    python bench/residual_online_ros.py --base runs/lift_base/best --task lift --demos data/lift200
"""
from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="diffusion checkpoint folder: the frozen base")
    p.add_argument("--task", required=True, choices=["reach", "push", "lift"])
    p.add_argument("--residual", default="", help="residual checkpoint to start from (default: zero, the base)")
    p.add_argument("--demos", default="", help="demonstrations relabelled by the base into the demo buffer")
    p.add_argument("--learn-episodes", type=int, default=200)
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--eval-seed", type=int, default=900_000)
    p.add_argument("--learn-seed", type=int, default=910_000)
    p.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                   help="extra residual_policy parameter for the learning run (e.g. utd_ratio=1)")
    p.add_argument("--out", default="runs/bench_residual_online")
    args = p.parse_args()
    if any("=" not in kv for kv in args.param):
        p.error("--param takes KEY=VALUE")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(101, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("MUJOCO_GL", "egl")
    import rclpy

    from robot_rl.demo import run_graph_episodes, say
    from robot_rl.ros.episode_runner_node import EpisodeRunnerConfig
    from robot_rl.sim.tasks import TASKS

    out = Path(args.out).resolve()
    online_dir = out / "online"
    graph = {"task": args.task, "mode": "lockstep", "checkpoint": Path(args.base).resolve(),
             "publish_commands": "false", "num_samples": 1}

    def episodes(seed: int, n: int, residual, **params) -> dict:
        runner = EpisodeRunnerConfig(task=args.task, num_episodes=n, max_steps=TASKS[args.task].max_steps,
                                     service_timeout=60.0, reset_services=("/sim/reset",))
        params = {**graph, "seed": seed, "residual_checkpoint": residual, **params}
        # An empty override cannot be passed to a node: leave those keys at the params file's "".
        return run_graph_episodes("sim_residual", {k: v for k, v in params.items() if v != ""}, runner)

    rclpy.init()
    try:
        say(f"before: {args.residual or 'zero residual (the base)'} on {args.eval_episodes} episodes")
        before = episodes(args.eval_seed, args.eval_episodes, args.residual)
        say(f"learning online through the nodes for {args.learn_episodes} episodes -> {online_dir}")
        extra = dict(kv.split("=", 1) for kv in args.param)
        learn = episodes(args.learn_seed, args.learn_episodes, args.residual, learn="true", out_dir=online_dir,
                         demo_dataset=Path(args.demos).resolve() if args.demos else "",
                         base_checkpoint=Path(args.base).resolve(), **extra)
        learned = online_dir / "checkpoint"  # written by the node on stop, before the graph exits
        cfg = json.loads((learned / "config.json").read_text()) if learned.exists() else {}
        meta = {k: cfg.get(k) for k in ("env_steps", "updates")}
        say(f"after: {learned} ({meta}) on the same {args.eval_episodes} episodes")
        after = episodes(args.eval_seed, args.eval_episodes, learned)
    finally:
        rclpy.shutdown()
    result = {"bench": "residual_online_ros", "task": args.task, "base": args.base, "start": args.residual or "zero",
              "eval_episodes": args.eval_episodes, "before_success": before["success_rate"],
              "after_success": after["success_rate"], "learn_episodes": args.learn_episodes,
              "learn_success": learn["success_rate"], "learn_wall_s": learn["wall_s"],
              "learn_env_steps": meta.get("env_steps"), "learn_updates": meta.get("updates")}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
