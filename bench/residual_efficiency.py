"""Sample efficiency of residual RL (ResFiT) against plain RL from scratch, in one run.

Two learners train side by side (one process and one core each, same seeds, same env-step
budget, same evaluation seeds): the residual on top of a frozen base policy, and the baseline,
the same TD3/RLPD update with the "hold position" base, i.e. a delta-position agent without any
base (with the same demonstrations for RLPD's symmetric sampling when --demos is given).
Reports success of the base, of the residual at the end, env steps and wall-clock to 90% and
95% success, and the baseline's final success. Progress on stderr; last stdout line: one JSON.

    python bench/residual_efficiency.py --base runs/lift_base/best --task lift --env-steps 100000
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import sys
from pathlib import Path

from robot_rl.policies.residual.config import arm_gripper_scale
from robot_rl.train.residual import ResidualTrainConfig
from robot_rl.train.residual_cli import add_algo_arguments, add_base_arguments, algo_config, base_factory


def run_one(tc: ResidualTrainConfig, demos: str | None, progress: bool) -> dict:
    """One learner in its own process (arguments are picklable, unlike a base factory)."""
    from robot_rl.data.dataset import EpisodeDataset
    from robot_rl.train.residual import train

    dataset = EpisodeDataset.open(demos) if demos else None
    summary = train(tc, base_factory(tc.base, tc.base_noise_scale, tc.base_action_horizon), dataset, progress=progress)
    summary.pop("curve", None)
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="frozen base: checkpoint folder or expert:<task>:<quality>")
    add_base_arguments(p)
    p.add_argument("--task", required=True, choices=["reach", "push", "lift"])
    p.add_argument("--demos", help="demonstrations for RLPD symmetric sampling (both learners)")
    p.add_argument("--env-steps", type=int, default=100_000)
    p.add_argument("--eval-every", type=int, default=5_000)
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--out", default="runs/bench_residual")
    add_algo_arguments(p)  # both learners get the same knobs
    p.add_argument("--baseline-scale", type=float, nargs=2, metavar=("ARM", "GRIPPER"),
                   help="baseline's largest step per control tick: rad per joint (joint space) or m along x, y, z "
                        "(task space), then m for the finger; default joint: 0.1 0.04, task: the residual's")
    args = p.parse_args()

    common = dict(task=args.task, total_env_steps=args.env_steps, eval_every=args.eval_every,
                  eval_episodes=args.eval_episodes)
    algo = algo_config(args)
    residual = ResidualTrainConfig(out=str(Path(args.out) / "residual"), base=args.base,
                                   base_noise_scale=args.base_noise_scale, base_action_horizon=args.base_action_horizon,
                                   algo=algo, **common)
    arm, gripper = args.baseline_scale or ((0.1, 0.04) if args.residual_space == "joint" else
                                           (algo.residual_scale[0], algo.residual_scale[-1]))
    scratch_algo = dataclasses.replace(algo, residual_penalty=0.0,
                                       residual_scale=arm_gripper_scale(args.residual_space, arm, gripper))
    baseline = ResidualTrainConfig(out=str(Path(args.out) / "baseline"), base="hold", algo=scratch_algo, **common)
    print(f"[bench] residual on {args.base} and the from-scratch baseline, {args.env_steps} env steps each, "
          f"evaluated every {args.eval_every} on {args.eval_episodes} episodes", file=sys.stderr, flush=True)
    with mp.get_context("spawn").Pool(2) as pool:
        res = pool.apply_async(run_one, (residual, args.demos, True))
        base = pool.apply_async(run_one, (baseline, args.demos, False))
        r, b = res.get(), base.get()
    result = {"bench": "residual_efficiency", "task": args.task, "base": args.base,
              "base_noise_scale": args.base_noise_scale, "base_action_horizon": args.base_action_horizon,
              "env_steps": args.env_steps,
              "eval_episodes": args.eval_episodes, "residual": algo.to_dict(),
              **{k: r[k] for k in ("base_success", "final_success", "best_success", "best_env_steps", "env_steps_to_90",
                                   "env_steps_to_95", "wall_s_to_90", "wall_s_to_95", "wall_s")},
              "baseline_final_success": b["final_success"], "baseline_best_success": b["best_success"],
              "baseline_env_steps_to_90": b["env_steps_to_90"], "baseline_env_steps_to_95": b["env_steps_to_95"],
              "baseline_wall_s": b["wall_s"]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
