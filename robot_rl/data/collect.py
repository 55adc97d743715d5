"""`robot-rl collect`: scripted-expert rollouts in the simulator appended to an episode dataset.

Episodes land in the same on-disk format the recorder node writes, so everything downstream
(training, `dataset info`, export) cannot tell in-process collection from a recorded session.
A quality mixture such as `expert=0.3,poor=0.7` makes the mixed-quality data offline RL needs.
"""
from __future__ import annotations

import argparse

import numpy as np
from tqdm import tqdm

from robot_rl.data.dataset import EpisodeDataset
from robot_rl.errors import ConfigError
from robot_rl.perception.pointcloud import PointCloudConfig
from robot_rl.sim.env import ArmEnv
from robot_rl.sim.experts import ScriptedExpert, quality_value
from robot_rl.sim.rollout import run_episode


def parse_mixture(text: str) -> list[tuple[str, float]]:
    """'expert' -> [('expert', 1.0)]; 'expert=0.3,poor=0.7' -> fractions normalised to 1."""
    parts = []
    for item in text.split(","):
        name, _, share = item.partition("=")
        quality_value(name if not name.replace(".", "", 1).isdigit() else float(name))
        try:
            parts.append((name.strip(), float(share) if share else 1.0))
        except ValueError as e:
            raise ConfigError(f"bad quality mixture {text!r}: write e.g. expert=0.3,poor=0.7") from e
    total = sum(share for _, share in parts)
    if total <= 0:
        raise ConfigError(f"quality mixture {text!r} has no positive share")
    return [(name, share / total) for name, share in parts]


def collect(task: str, out, num_episodes: int, quality: str = "expert", seed: int = 0,
            cameras=(), image_size=(96, 96), points: bool = False, progress: bool = True,
            robot: str = "arm", depth: bool = False) -> EpisodeDataset:
    """Roll out experts on seeds seed..seed+N-1 and append every episode (with its success label)."""
    mixture = parse_mixture(quality)
    counts = np.floor(np.array([s for _, s in mixture]) * num_episodes).astype(int)
    counts[0] += num_episodes - counts.sum()
    plan = [name for (name, _), n in zip(mixture, counts) for _ in range(n)]
    env = ArmEnv(task, cameras=cameras, image_size=image_size, depth=depth, points=points, robot=robot)
    dataset = EpisodeDataset.open_or_create(out, {"joint_names": list(env.joint_names),
                                                  "rate_hz": 1.0 / env.control_dt}, env.robot)
    intrinsics = {cam: list(env.camera_intrinsics(cam)) for cam in cameras}
    cloud_record = PointCloudConfig(num_points=env.num_points).record(
        f"{cameras[0]}_depth" if cameras else "", image_size) if points else None
    experts = {name: ScriptedExpert(task, name if not name.replace(".", "", 1).isdigit() else float(name),
                                    robot=env.robot) for name, _ in mixture}
    bar = tqdm(enumerate(plan), total=len(plan), desc=f"collect {task}", disable=not progress)
    successes = 0
    for i, name in bar:
        episode_seed = seed + i
        result = run_episode(env, experts[name], episode_seed, record=True)
        meta = {"task": task, "success": result.success, "seed": episode_seed,
                "source": {"kind": "scripted_expert", "quality": name}}
        if intrinsics:
            meta["camera_intrinsics"] = intrinsics
        if points:
            meta["points"] = cloud_record
        dataset.append_episode(result.frames, meta)
        successes += result.success
        bar.set_postfix(success=f"{successes / (i + 1):.2f}")
    env.close()
    print(f"collected {len(plan)} {task} episodes into {out}: success {successes}/{len(plan)}, "
          f"dataset now {dataset.num_episodes} episodes")
    return dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=["reach", "push", "lift"])
    parser.add_argument("--out", required=True, help="dataset directory (created or appended to)")
    parser.add_argument("--num-episodes", type=int, default=100)
    parser.add_argument("--quality", default="expert", help="expert|good|medium|poor|0..1, or a mixture expert=0.3,poor=0.7")
    parser.add_argument("--seed", type=int, default=0, help="first episode seed; episode i uses seed+i")
    parser.add_argument("--cameras", nargs="*", default=[], choices=["front", "wrist"])
    parser.add_argument("--image-size", type=int, nargs=2, default=(96, 96), metavar=("W", "H"))
    parser.add_argument("--depth", action="store_true", help="also record each camera's depth image (metres)")
    parser.add_argument("--points", action="store_true", help="also record a point cloud per step")
    parser.add_argument("--robot", default="arm", help="the simulated arm: arm (7-DoF, Panda-like) or ur_arm (6-DoF, UR-like)")


def run(args: argparse.Namespace) -> int:
    collect(args.task, args.out, args.num_episodes, args.quality, args.seed, tuple(args.cameras),
            tuple(args.image_size), args.points, robot=args.robot, depth=args.depth)
    return 0
