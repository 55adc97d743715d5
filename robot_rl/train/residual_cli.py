"""Flags of `robot-rl train residual`, mapped 1:1 onto ResidualTrainConfig / ResidualConfig."""
from __future__ import annotations

import argparse

from robot_rl.errors import ConfigError
from robot_rl.policies.residual.config import DEFAULT_SCALE, ENV_SCALE, SPACES, ResidualConfig, arm_gripper_scale
from robot_rl.train.residual import ResidualTrainConfig, train

# ResidualConfig fields exposed as --flags (type and default from the dataclass), with their help.
KNOBS = {
    "actor_hidden": None,
    "actor_layers": None,
    "critic_hidden": None,
    "critic_layers": None,
    "num_critics": None,
    "utd_ratio": None,
    "n_step": None,
    "exploration_noise": "Gaussian noise std on the executed action, in units of residual_scale",
    "target_noise": "TD3 target smoothing noise std, in units of residual_scale",
    "noise_clip": "clip of the target smoothing noise, in units of residual_scale",
    "warmup_steps": "env steps of base + small-noise rollouts before learning",
    "critic_warmup_updates": "critic-only updates before the actor moves",
    "max_offset": "task space: the largest TCP offset the residual may hold, m per axis",
    "offset_decay": "task space: factor on the held offset every step (< 1: it leaks back to the base)",
    "residual_penalty": "L2 weight on the actor's pre-tanh correction",
    "bc_weight": "TD3+BC: weight of the pull towards the demonstrations' corrections (0: plain RLPD); the pull is "
                 "measured in units of residual_scale, so k times the scale needs k^2 times the weight for the same pull",
    "actor_lr": None,
    "critic_lr": None,
    "gamma": None,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", required=True, help="base policy: a checkpoint folder or expert:<task>[:<quality>]")
    add_base_arguments(parser)
    parser.add_argument("--task", choices=["reach", "push", "lift"], help="the simulated arm's task (or --env)")
    parser.add_argument("--env", default="", help="instead of --task: any gymnasium env with a dict observation, a "
                        "registered id or module:Class; its Box action space gives the action limits and the "
                        f"correction scale ({ENV_SCALE:g} of each half-range per step)")
    parser.add_argument("--demos", help="episode dataset of demonstrations for RLPD symmetric sampling")
    parser.add_argument("--total-env-steps", type=int, default=ResidualTrainConfig.total_env_steps)
    parser.add_argument("--eval-every", type=int, default=ResidualTrainConfig.eval_every)
    parser.add_argument("--eval-episodes", type=int, default=ResidualTrainConfig.eval_episodes)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/residual")
    add_algo_arguments(parser)


def add_base_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-noise-scale", type=float,
                        help="diffusion base: scale of its initial DDIM noise (0: deterministic); default: the checkpoint's")
    parser.add_argument("--base-action-horizon", type=int,
                        help="diffusion base: actions executed per chunk (Ta); default: the checkpoint's")
    parser.add_argument("--robot", default=None,
                        help="the simulated arm (arm, ur_arm); default: the base checkpoint's robot, else arm")


def base_factory(spec: str, noise_scale: float | None = None, action_horizon: int | None = None, robot=None):
    """Builds fresh copies of the frozen base (the trainer keeps one for training, one for evaluation)."""
    from robot_rl.policies.loading import load_policy, with_deployment

    return lambda: with_deployment(load_policy(spec, robot=robot), spec, noise_scale=noise_scale,
                                   action_horizon=action_horizon)


def add_algo_arguments(parser: argparse.ArgumentParser) -> None:
    """The ResidualConfig flags; bench/residual_efficiency.py gives both its learners the same."""
    parser.add_argument("--residual-space", choices=SPACES, default=ResidualConfig.residual_space,
                        help="correct each joint target, or hold a TCP offset (x, y, z) and correct the finger")
    parser.add_argument("--residual-scale", type=float, nargs=2, metavar=("ARM", "GRIPPER"),
                        help="largest correction per step: rad for each arm joint (joint space) or m along "
                             "x, y, z (task space), and m for the gripper finger; default "
                             + ", ".join(f"{k}: {v[0]} {v[-1]}" for k, v in DEFAULT_SCALE.items()))
    parser.add_argument("--obs-keys", nargs="+", default=list(ResidualConfig.obs_keys),
                        help="observation keys of actor and critic; derived ones: object_rel (objects relative "
                             "to the TCP), target_rel (objects relative to where the base action sends the TCP), "
                             "chunk_end_rel (objects relative to where the base's current chunk ends), "
                             "chunk_left (the share of that chunk still to run) and base_features (what a "
                             "point-cloud or RGB base's frozen encoder sees: a residual without object poses)")
    for name, help_text in KNOBS.items():
        default = getattr(ResidualConfig, name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default, help=help_text)


def algo_config(args: argparse.Namespace, robot: str = "arm", limits=None) -> ResidualConfig:
    """`limits`: an environment's action bounds (low, high), for a residual without a robot (robot "")."""
    if limits is not None and args.residual_scale:
        raise ConfigError("--residual-scale ARM GRIPPER is for an arm; with --env the scale is "
                          f"{ENV_SCALE:g} of each action's half-range")
    scale = arm_gripper_scale(args.residual_space, *args.residual_scale, robot) if args.residual_scale else ()
    bounds = {} if limits is None else {"action_low": tuple(limits[0]), "action_high": tuple(limits[1])}
    return ResidualConfig(obs_keys=tuple(args.obs_keys), residual_space=args.residual_space, residual_scale=scale,
                          robot=robot, **bounds, **{name: getattr(args, name) for name in KNOBS})


def train_config(args: argparse.Namespace, robot: str = "arm", limits=None) -> ResidualTrainConfig:
    return ResidualTrainConfig(task=args.task or args.env, env=args.env, total_env_steps=args.total_env_steps,
                               eval_every=args.eval_every, eval_episodes=args.eval_episodes, seed=args.seed,
                               out=args.out, base=args.base, base_noise_scale=args.base_noise_scale,
                               base_action_horizon=args.base_action_horizon, algo=algo_config(args, robot, limits))


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from robot_rl.data.dataset import EpisodeDataset
    from robot_rl.policies.checkpoint import read_robot
    from robot_rl.policies.fit import check_robot
    from robot_rl.robot import load_robot

    if bool(args.task) == bool(args.env):
        raise ConfigError("pass --task (the simulated arm) or --env (another gymnasium env), one of them")
    demos = EpisodeDataset.open(args.demos) if args.demos else None
    if args.env:  # not an arm of ours: the env's action space is all the residual knows of the robot
        from robot_rl.envs import action_limits, make_env

        tc = train_config(args, "", action_limits(make_env(args.env)))
        train(tc, base_factory(tc.base, tc.base_noise_scale, tc.base_action_horizon), demos)
        return 0
    trained = read_robot(args.base) if Path(args.base).is_dir() else None  # a checkpoint's robot.json
    robot = load_robot(args.robot) if args.robot else (trained or load_robot())
    check_robot(trained, robot, f"--base {args.base}")
    if demos is not None:
        check_robot(demos.robot, robot, f"--demos {args.demos}")
    tc = train_config(args, robot.name)
    train(tc, base_factory(tc.base, tc.base_noise_scale, tc.base_action_horizon, robot), demos)
    return 0
