"""`robot-rl eval`: success of a policy in the simulator, and of the same policy steered or corrected.

All variants run on the same seeds, so differences are the method's, not the draw's:
the base policy, V-GPS steering with every requested number of samples N and temperature beta
(the success-vs-N and success-vs-beta curves), and the base plus a residual correction.
"""
from __future__ import annotations

import argparse
import json
import time

from robot_rl.cli_checks import at_least, output_file, output_folder
from robot_rl.eval_report import slug, write_report
from robot_rl.sim.rollout import evaluate, run_episode
from robot_rl.video import write_video


def env_kwargs_for_policy(policy, spec: str = "") -> dict:
    """Simulator arguments that give a policy every observation it reads (cameras, points); a
    point-cloud checkpoint folder `spec` also gives its depth camera's resolution (cloud.json)."""
    config = getattr(policy, "config", None)
    if config is None or not hasattr(config, "rgb_keys"):
        return {}
    from pathlib import Path

    from robot_rl.perception.camera_cloud import read_cloud_record
    from robot_rl.train.diffusion import env_kwargs_for

    cloud = read_cloud_record(spec) if spec and config.points_keys and Path(spec).is_dir() else None
    return env_kwargs_for(config, cloud)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=["reach", "push", "lift"], help="the simulated arm's task (or --env)")
    parser.add_argument("--env", default="", help="instead of --task: any gymnasium env with a dict observation "
                        "(a registered id or module:Class; success from info['success'] or info['is_success'])")
    parser.add_argument("--policy", required=True, help="checkpoint folder or expert:<task>[:<quality>]")
    parser.add_argument("--value", help="value checkpoint: also evaluate V-GPS steering of --policy")
    parser.add_argument("--num-samples", type=int, nargs="+", default=[16], help="candidates N (several: a curve)")
    parser.add_argument("--beta", type=float, nargs="+", default=[0.0], help="0 = argmax, else softmax(Q/beta)")
    parser.add_argument("--residual", help="residual checkpoint: also evaluate base + residual")
    parser.add_argument("--action-horizon", type=int, default=0,
                        help="diffusion policy: actions executed per chunk (Ta); 0: the one --residual was trained "
                             "with, else the checkpoint's own")
    parser.add_argument("--noise-scale", type=float,
                        help="diffusion policy: scale of the initial DDIM noise (0: deterministic); default: the one "
                             "--residual was trained with, else the checkpoint's")
    parser.add_argument("--num-episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=10_000, help="episode i uses seed+i")
    parser.add_argument("--robot", default=None, help="the simulated arm (arm, ur_arm); default: the one the "
                        "checkpoint was trained on")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--report", help="folder for a report: success and length per seed (report.json), "
                        "success_over_seeds.png, and MP4s of the first failures")
    parser.add_argument("--report-videos", type=int, default=3, help="failures per variant written as MP4 (--report)")


def run(args: argparse.Namespace) -> int:
    from robot_rl.errors import ConfigError
    from robot_rl.policies.fit import check_observations, check_policy, check_residual_observation, policy_robot
    from robot_rl.policies.loading import load_policy, with_deployment
    from robot_rl.robot import load_robot
    from robot_rl.sim.env import ArmEnv

    if bool(args.task) == bool(args.env):
        raise ConfigError("pass --task (the simulated arm) or --env (another gymnasium env), one of them")
    at_least("--num-episodes", args.num_episodes, 1)
    at_least("--num-samples", args.num_samples, 1)
    at_least("--beta", args.beta, 0)
    at_least("--action-horizon", args.action_horizon, 0)
    at_least("--report-videos", args.report_videos, 0)
    out = output_file("--out", args.out)  # before the evaluation, not after it
    report_dir = output_folder("--report", args.report) if args.report else None
    seeds = range(args.seed, args.seed + args.num_episodes)
    value = None
    if args.value:  # loaded (and its kind checked) before any episode runs
        from robot_rl.policies.value.model import ValueFunction

        value = ValueFunction.from_checkpoint(args.value)
    residual = None
    if args.residual:
        from robot_rl.policies.residual.model import ResidualPolicy

        residual = ResidualPolicy.from_checkpoint(args.residual)
    # deployment choices, like the node's action_horizon and noise_scale parameters; unless given,
    # base and base + residual run the base the residual learned on
    settings = residual.base_deployment() if residual is not None else {}
    given = {"noise_scale": args.noise_scale, "action_horizon": args.action_horizon or None}
    settings.update({k: v for k, v in given.items() if v is not None})
    base = with_deployment(load_policy(args.policy, robot=args.robot), args.policy, **settings)
    if args.env:  # not an arm of ours: only the observations can be checked
        from robot_rl.envs import make_env

        robot, env, where = None, make_env(args.env), f"--env {args.env}"
    else:
        robot = load_robot(args.robot) if args.robot else (policy_robot(base) or policy_robot(residual) or load_robot())
        env, where = ArmEnv(args.task, robot=robot, **env_kwargs_for_policy(base, args.policy)), f"task {args.task}"
    shapes = {k: tuple(v.shape) for k, v in env.observation_space.spaces.items()}

    def check(policy, what: str) -> None:
        if robot is None:
            check_observations(policy, shapes, what, where)
        else:
            check_policy(policy, robot, shapes, what, f"{where} on robot {robot.name!r}")

    check(base, f"--policy {args.policy}")
    if residual is not None:
        check(residual, f"--residual {args.residual}")
        check_residual_observation(residual, env.reset(seed=args.seed)[0], f"--residual {args.residual}", where, base)
    config = getattr(base, "config", None)
    task = args.task or args.env
    results = {"task": task, "episodes": args.num_episodes, "seed": args.seed,
               "action_horizon": getattr(config, "action_horizon", None),
               "noise_scale": getattr(config, "noise_scale", None)}
    rows, variants, videos = [], {}, {}

    def record(name: str, policy, **extra) -> None:
        start = time.perf_counter()
        r = evaluate(task, policy, seeds, env=env)
        rows.append({"variant": name, "success": r["success_rate"], **extra,
                     "wall_s": round(time.perf_counter() - start, 1)})
        variants[name] = r
        if report_dir is not None:  # the first failures again, filmed: same start, same policy seed
            failed = [s for s, ok in zip(seeds, r["successes"]) if not ok][: args.report_videos]
            videos[name] = {}
            for s in failed:
                frames = run_episode(env, policy, s, video=True).video
                if frames and frames[0] is not None:  # an --env without rgb_array rendering films nothing
                    videos[name][s] = write_video(report_dir / f"{slug(name)}_seed{s}.mp4", frames)
        print(f"{name:<28} success {r['success_rate']:.2f}  ({args.num_episodes} episodes, "
              f"{rows[-1]['wall_s']} s)", flush=True)

    record("base", base)
    if value is not None:
        from robot_rl.policies.steering import SteeredPolicy

        check(value, f"--value {args.value}")
        from robot_rl.policies import base_view

        if base_view.KEY in value.cfg.obs_keys and not base_view.sees(base):
            raise ConfigError(f"--value {args.value} reads {base_view.KEY}, what the generalist sees in its cameras; "
                              f"--policy {args.policy} has none (steer the point-cloud or RGB generalist it learned on)")
        for n in args.num_samples:
            for beta in args.beta:
                record(f"steered N={n} beta={beta:g}", SteeredPolicy(base, value, n, beta), num_samples=n, beta=beta)
    if residual is not None:
        residual.base = base
        record("base + residual", residual)
    results["rows"] = rows
    results["base_success"] = rows[0]["success"]
    if len(rows) > 1:
        results["best_success"] = max(r["success"] for r in rows[1:])
    if out:
        with open(out, "w") as f:
            json.dump(results, f, indent=2)
    if report_dir is not None:
        print(f"report: {write_report(report_dir, task, seeds, variants, videos)}, "
              f"{sum(map(len, videos.values()))} failure videos", flush=True)
    print(json.dumps(results))
    return 0
