"""Flags of `robot-rl train residual`, mapped 1:1 onto ResidualTrainConfig / ResidualConfig."""
from __future__ import annotations

import argparse

from robot_rl.policies.residual.config import DEFAULT_SCALE, ResidualConfig
from robot_rl.policies.residual.space import SPACES
from robot_rl.train.residual import ResidualTrainConfig, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", required=True, help="base policy: a checkpoint folder or expert:<task>[:<quality>]")
    parser.add_argument("--task", required=True, choices=["reach", "push", "lift"])
    parser.add_argument("--demos", help="episode dataset of demonstrations for RLPD symmetric sampling")
    parser.add_argument("--total-env-steps", type=int, default=ResidualTrainConfig.total_env_steps)
    parser.add_argument("--eval-every", type=int, default=ResidualTrainConfig.eval_every)
    parser.add_argument("--eval-episodes", type=int, default=ResidualTrainConfig.eval_episodes)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/residual")
    parser.add_argument("--num-critics", type=int, default=ResidualConfig.num_critics)
    parser.add_argument("--utd-ratio", type=int, default=ResidualConfig.utd_ratio)
    parser.add_argument("--n-step", type=int, default=ResidualConfig.n_step)
    parser.add_argument("--exploration-noise", type=float, default=ResidualConfig.exploration_noise,
                        help="Gaussian noise std on the executed action, in units of residual_scale")
    parser.add_argument("--warmup-steps", type=int, default=ResidualConfig.warmup_steps,
                        help="env steps of base + small-noise rollouts before learning")
    parser.add_argument("--critic-warmup-updates", type=int, default=ResidualConfig.critic_warmup_updates,
                        help="critic-only updates before the actor moves")
    parser.add_argument("--residual-space", choices=SPACES, default=ResidualConfig.residual_space,
                        help="correct each joint target, or displace the TCP (x, y, z) and the finger")
    parser.add_argument("--residual-scale", type=float, nargs=2, metavar=("ARM", "GRIPPER"),
                        help="largest correction per step: rad for each arm joint (joint space) or m along "
                             "x, y, z (task space), and m for the gripper finger; default "
                             + ", ".join(f"{k}: {v[0]} {v[-1]}" for k, v in DEFAULT_SCALE.items()))
    parser.add_argument("--max-offset", type=float, default=ResidualConfig.max_offset,
                        help="task space: the largest TCP offset the residual may hold, m per axis")
    parser.add_argument("--offset-decay", type=float, default=ResidualConfig.offset_decay,
                        help="task space: factor on the held offset every step (< 1: it leaks back to the base)")
    parser.add_argument("--residual-penalty", type=float, default=ResidualConfig.residual_penalty,
                        help="L2 weight on the actor's pre-tanh correction")
    parser.add_argument("--actor-lr", type=float, default=ResidualConfig.actor_lr)
    parser.add_argument("--critic-lr", type=float, default=ResidualConfig.critic_lr)
    parser.add_argument("--gamma", type=float, default=ResidualConfig.gamma)
    parser.add_argument("--hl-gauss", action="store_true")


def train_config(args: argparse.Namespace) -> ResidualTrainConfig:
    scale = ()
    if args.residual_scale:
        arm, gripper = args.residual_scale
        scale = (arm,) * (7 if args.residual_space == "joint" else 3) + (gripper,)
    algo = ResidualConfig(residual_space=args.residual_space, residual_scale=scale, num_critics=args.num_critics,
                          utd_ratio=args.utd_ratio, n_step=args.n_step,
                          exploration_noise=args.exploration_noise, warmup_steps=args.warmup_steps,
                          critic_warmup_updates=args.critic_warmup_updates, residual_penalty=args.residual_penalty,
                          max_offset=args.max_offset, offset_decay=args.offset_decay, actor_lr=args.actor_lr, critic_lr=args.critic_lr, gamma=args.gamma,
                          hl_gauss=args.hl_gauss)
    return ResidualTrainConfig(task=args.task, total_env_steps=args.total_env_steps, eval_every=args.eval_every,
                               eval_episodes=args.eval_episodes, seed=args.seed, out=args.out, algo=algo)


def run(args: argparse.Namespace) -> int:
    from robot_rl.data.dataset import EpisodeDataset
    from robot_rl.policies.loading import load_policy

    demos = EpisodeDataset.open(args.demos) if args.demos else None
    train(train_config(args), lambda: load_policy(args.base), demos)
    return 0
