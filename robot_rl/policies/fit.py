"""Does a policy fit this robot and these observations? One clear error at start, never a matmul
shape error deep inside a rollout.

Used by `robot-rl eval`, the trainers and the nodes before the first step: the robot a checkpoint
was trained on (robot.json, or the `robot` of a residual / value config) against the robot it is
asked to drive, its joint names against the robot's, and every observation key it reads against
what the environment (or the topics) provide.
"""
from __future__ import annotations

from collections.abc import Mapping

from robot_rl.errors import ConfigError
from robot_rl.robot import RobotModel, load_robot


def policy_robot(policy) -> RobotModel | None:
    """The robot a policy object was trained on, if it records one."""
    robot = getattr(policy, "robot", None)
    if isinstance(robot, RobotModel):
        return robot
    cfg = getattr(policy, "cfg", None)
    if cfg is not None and getattr(cfg, "robot", None):
        return load_robot(cfg.robot)
    return None


def check_robot(trained: RobotModel | None, robot: RobotModel, what: str) -> None:
    """Refuse a policy trained on another robot (other kinematics), listing both sides."""
    if trained is not None and not trained.same_kinematics(robot):
        raise ConfigError(f"{what} was trained on robot {trained.name!r} (joints {list(trained.joint_names)}, "
                          f"kinematics {trained.kinematic_hash}); this is robot {robot.name!r} (joints "
                          f"{list(robot.joint_names)}, kinematics {robot.kinematic_hash})")


def check_joint_names(names, robot: RobotModel, what: str) -> None:
    """The policy's joint order must be the robot's own: a checkpoint's actions are in that order."""
    if names and tuple(names) != robot.joint_names:
        raise ConfigError(f"{what} acts on joints {list(names)}; robot {robot.name!r} has {list(robot.joint_names)}")


def check_observations(policy, shapes: Mapping[str, tuple], what: str, source: str = "the environment") -> None:
    """Every key a diffusion policy reads must be provided with the shape it was trained on."""
    config = getattr(policy, "config", None)
    if config is None or not hasattr(config, "obs_shapes"):
        return
    missing = [k for k in config.obs_keys if k not in shapes]
    if missing:
        raise ConfigError(f"{what} reads {missing}, which {source} does not provide (it has {sorted(shapes)})")
    wrong = {k: (tuple(config.obs_shapes[k]), tuple(shapes[k])) for k in config.obs_keys
             if tuple(config.obs_shapes[k]) != tuple(shapes[k])}
    if wrong:
        text = ", ".join(f"{k} {a} (trained) vs {b}" for k, (a, b) in wrong.items())
        raise ConfigError(f"{what} does not fit {source}: {text} (another task, camera size or robot?)")


def check_policy(policy, robot: RobotModel, shapes: Mapping[str, tuple], what: str,
                 source: str = "the environment") -> None:
    """All of the above for one policy object."""
    check_robot(policy_robot(policy), robot, what)
    config = getattr(policy, "config", None)
    if config is not None and hasattr(config, "action_dim"):
        if config.action_dim != robot.num_joints:
            raise ConfigError(f"{what} has {config.action_dim} actions; robot {robot.name!r} has "
                              f"{robot.num_joints} joints {list(robot.joint_names)}")
        check_joint_names(getattr(config, "joint_names", ()), robot, what)
    check_observations(policy, shapes, what, source)


def check_residual_observation(residual, obs: Mapping, what: str, source: str = "the environment",
                               base=None) -> None:
    """A residual's state vector, built from `obs` (one observation) and what `base` sees in it,
    must have the size its actor was trained on (a lift residual on push has other object poses;
    one learned on a point-cloud base reads that base's features)."""
    import numpy as np

    from robot_rl.policies import base_view
    from robot_rl.policies.features import source_keys, state_vector
    from robot_rl.policies.residual.space import space_for

    cfg = residual.cfg
    sample = {**obs, "chunk_end": np.asarray(obs["joint_pos"], np.float32), "chunk_left": np.float32(0.0)}
    if base_view.KEY in source_keys(cfg.obs_keys):
        if not base_view.sees(base):
            raise ConfigError(f"{what} reads {base_view.KEY!r}, what its base sees in its cameras; the base given "
                              "has no cameras (pass the point-cloud or RGB base it learned on)")
        sample.update(base_view.of(base, obs))
    missing = [k for k in source_keys(cfg.obs_keys) if k not in sample]
    if missing:
        raise ConfigError(f"{what} reads {missing}, which {source} does not provide (it has {sorted(obs)})")
    dim = len(state_vector(sample, cfg.obs_keys, sample["joint_pos"], cfg.robot)) + space_for(cfg).feature_dim
    expected = residual.actor.norm.obs_mean.numel()
    if dim != expected:
        raise ConfigError(f"{what} was trained on {expected} observation values ({list(cfg.obs_keys)}); "
                          f"{source} gives {dim} (another task?)")
