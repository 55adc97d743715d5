"""Flags of `robot-rl train value`, mapped 1:1 onto ValueTrainConfig / ValueConfig."""
from __future__ import annotations

import argparse
import dataclasses

from robot_rl.policies.value.config import ValueConfig
from robot_rl.train.value import ValueTrainConfig, train_value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = ValueConfig()
    parser.add_argument("--dataset", required=True, help="episode dataset (mixed quality, with success labels)")
    parser.add_argument("--algo", choices=["calql", "iql"], default=d.algo)
    parser.add_argument("--out", default="runs/value")
    parser.add_argument("--num-steps", type=int, default=d.num_steps)
    parser.add_argument("--chunk", type=int, default=d.chunk, help="actions per scored chunk (1 = single actions)")
    parser.add_argument("--reward", choices=["success", "step_penalty"], default=d.reward)
    parser.add_argument("--num-critics", type=int, default=d.num_critics)
    parser.add_argument("--hidden", type=int, default=d.hidden)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--cql-alpha", type=float, default=d.cql_alpha)
    parser.add_argument("--cql-num-actions", type=int, default=d.cql_num_actions)
    parser.add_argument("--iql-expectile", type=float, default=d.iql_expectile)
    parser.add_argument("--awr-temperature", type=float, default=d.awr_temperature)
    parser.add_argument("--no-task-space", dest="task_space", action="store_false",
                        help="score joint targets only, without their TCP positions")
    parser.add_argument("--obs-keys", nargs="+", default=list(d.obs_keys),
                        help="the critic's observation keys; base_features: what the --base generalist's frozen "
                             "encoder sees (a critic without object poses, with --no-task-space)")
    parser.add_argument("--base", default="", help="the point-cloud or RGB generalist to steer, for base_features")
    parser.add_argument("--env", default="", help="the gymnasium env (id or module:Class) the data comes from: "
                        "checks it gives the critic's keys, takes its action bounds (a dataset with no robot)")
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from robot_rl.cli_checks import at_least, output_folder
    from robot_rl.data.dataset import EpisodeDataset
    from robot_rl.errors import ConfigError, DataError

    for flag in ("num_steps", "chunk", "num_critics", "hidden", "batch_size", "eval_every"):
        at_least(f"--{flag.replace('_', '-')}", getattr(args, flag), 1)
    dataset = EpisodeDataset.open(args.dataset)
    if dataset.num_episodes == 0:
        raise DataError(f"{args.dataset}: no episodes to train a critic on (record or convert some first)")
    output_folder("--out", args.out)
    algo = ValueConfig(algo=args.algo, num_steps=args.num_steps, chunk=args.chunk, reward=args.reward,
                       num_critics=args.num_critics, hidden=args.hidden, batch_size=args.batch_size,
                       cql_alpha=args.cql_alpha, cql_num_actions=args.cql_num_actions, iql_expectile=args.iql_expectile,
                       awr_temperature=args.awr_temperature, task_space=args.task_space,
                       obs_keys=tuple(args.obs_keys))
    bounds = {}
    if args.env:  # not our arm: the env says what the critic can read and how far actions go
        from robot_rl.envs import action_limits, make_env

        env = make_env(args.env)
        missing = [k for k in algo.obs_keys if k not in env.observation_space.spaces]
        if missing:
            raise ConfigError(f"--env {args.env} gives no {missing} (it has {sorted(env.observation_space.spaces)}); "
                              "choose --obs-keys among them")
        low, high = action_limits(env)
        bounds = {"action_low": tuple(low.tolist()), "action_high": tuple(high.tolist()), "env": args.env}
        if "action" in dataset.keys and tuple(dataset.keys["action"]["shape"]) != env.action_space.shape:
            raise ConfigError(f"--env {args.env} takes actions of shape {env.action_space.shape}, the dataset's "
                              f"are {tuple(dataset.keys['action']['shape'])}")
        if dataset.robot is None and algo.task_space:
            print(f"--env {args.env}: scoring the actions themselves (--no-task-space: TCP offsets need an arm)")
            algo = dataclasses.replace(algo, task_space=False)
    tc = ValueTrainConfig(dataset=args.dataset, out=args.out, eval_every=args.eval_every, seed=args.seed,
                          base=args.base, algo=algo, **bounds)
    train_value(tc, dataset)
    return 0
