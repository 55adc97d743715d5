"""What camera data costs in the episode dataset: MB per episode and read speed, per key.

Collects lift episodes from the scripted expert with a front camera (RGB, depth in metres and the
policy's 512-point cloud) into a temp dir, then reports for each key its stored MB per episode,
the compression ratio, and how fast a fresh dataset object reads it back for training (every
episode, `concat_episodes`, files in the OS page cache): frames/s and the read time relative to
the low-dim state keys read in the same run (`read_over_state`). Progress on stderr; the last
stdout line is one JSON object.

    python bench/camera_dataset.py                          # 20 episodes at 96x96, ~1 min
    python bench/camera_dataset.py --image-size 640 480     # a real camera's resolution
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STATE = ("joint_pos", "joint_vel", "ee_pos", "ee_quat", "action")
CAMERA = ("front_rgb", "front_depth", "points")


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--image-size", type=int, nargs=2, default=(96, 96), metavar=("W", "H"))
    parser.add_argument("--repeats", type=int, default=3, help="best of N for each read figure")
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    from robot_rl.data.collect import collect
    from robot_rl.data.dataset import EpisodeDataset

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "lift_cameras"
        print(f"collecting {args.episodes} lift episodes at {args.image_size[0]}x{args.image_size[1]} ...",
              file=sys.stderr, flush=True)
        collect("lift", root, args.episodes, cameras=("front",), image_size=tuple(args.image_size), points=True,
                depth=True, progress=False)
        ds = EpisodeDataset.open(root)
        frames = int(sum(ds.episode_lengths))
        episodes = [ds.episode_path(i) for i in range(ds.num_episodes)]
        keys = {}
        for key in STATE + CAMERA:
            spec = ds.keys[key]
            raw = frames * int(np.prod(spec["shape"])) * np.dtype(spec["dtype"]).itemsize / 1e6
            stored = sum(disk_mb(e / key) for e in episodes)
            keys[key] = {"mb_per_episode": round(stored / ds.num_episodes, 4), "compression": round(raw / stored, 2)}
        state_s = best_of(lambda: EpisodeDataset.open(root).concat_episodes(list(STATE)), args.repeats)
        for key in CAMERA:
            read_s = best_of(lambda: EpisodeDataset.open(root).concat_episodes([key]), args.repeats)
            keys[key].update(frames_per_s=round(frames / read_s), read_over_state=round(read_s / state_s, 1))
            print(f"{key}: {keys[key]}", file=sys.stderr, flush=True)
    print(json.dumps({"episodes": args.episodes, "frames": frames, "image_size": list(args.image_size),
                      "state_frames_per_s": round(frames / state_s), "keys": keys}))


if __name__ == "__main__":
    main()
