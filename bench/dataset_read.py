"""Read speed of the episode dataset: 200 low-dim episodes of 100 steps, as the trainer loads them.

Writes the dataset into a temp dir, then times (files in the OS page cache, fresh dataset object):
open + load every episode, open + concat_episodes (what ChunkWindows does), a second pass served
from the in-memory cache, and zarr-python reading the same arrays as the baseline.
Progress on stderr; the last stdout line is one JSON object.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

from robot_rl.data.dataset import EpisodeDataset

SHAPES = {"joint_pos": (8,), "joint_vel": (8,), "ee_pos": (3,), "ee_quat": (4,), "object_poses": (2, 7),
          "action": (8,), "reward": (), "success": ()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="best of N for each read figure")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "d"
        ds = EpisodeDataset.create(root, {"joint_names": [f"j{i}" for i in range(8)], "rate_hz": 10})
        start = time.perf_counter()
        for e in range(args.episodes):
            frames = {k: rng.normal(size=(args.steps, *s)).astype(np.float32) for k, s in SHAPES.items()}
            frames["success"] = np.arange(args.steps) == args.steps - 1
            ds.append_episode(frames, {"task": "push", "seed": e})
        write_s = time.perf_counter() - start
        print(f"wrote {args.episodes} episodes in {write_s:.2f} s", file=sys.stderr)

        def best(fn):
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            return min(times)

        load_all = best(lambda: [d.load_episode(i) for d in [EpisodeDataset.open(root)] for i in range(d.num_episodes)])
        concat = best(lambda: EpisodeDataset.open(root).concat_episodes(list(SHAPES)))
        warm = EpisodeDataset.open(root)
        warm.concat_episodes(list(SHAPES))
        cached = best(lambda: warm.concat_episodes(list(SHAPES)))
        paths = [ds.episode_path(i) / k for i in range(ds.num_episodes) for k in SHAPES]
        baseline = best(lambda: [zarr.open_array(p, mode="r")[:] for p in paths])
        print(f"open+load all {load_all:.3f} s, open+concat {concat:.3f} s, cached concat {cached:.4f} s, "
              f"zarr-python {baseline:.3f} s", file=sys.stderr)
    print(json.dumps({
        "episodes": args.episodes, "steps": args.steps, "keys": len(SHAPES),
        "write_s_per_episode": round(write_s / args.episodes, 5),
        "open_load_all_s": round(load_all, 4), "open_concat_s": round(concat, 4),
        "cached_concat_s": round(cached, 5), "zarr_python_read_s": round(baseline, 4),
        "speedup_vs_zarr_python": round(baseline / concat, 1),
    }))


if __name__ == "__main__":
    main()
