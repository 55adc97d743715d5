"""Training on a dataset larger than the memory it may use: peak memory with images streamed from disk.

Writes an RGB dataset (96x96 camera frames of noise, which do not compress) `--times` times the
memory limit, then trains the diffusion policy on it for `--steps` steps in child processes:

* `--stream disk` under a memory cgroup capped at `--limit-mb` (cgroup v1 or v2; needs root, else
  it runs uncapped and says so): its peak resident memory (ru_maxrss) and the cgroup's peak
  (which also counts the page cache the kernel may reclaim);
* `--stream memory` under the same cap: the baseline, expected to be killed;
* `--stream memory` and `--stream disk` uncapped: steps/s of each, and their ratio.

Progress on stderr; the last stdout line is one JSON object.

    python bench/streaming_memory.py                 # 1 GiB cap, a 3 GiB dataset, ~5 min
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FRAME = (96, 96, 3)
CGROUP = Path("/sys/fs/cgroup")


def make_dataset(root: Path, total_bytes: int, episode_frames: int = 500) -> int:
    from robot_rl.data.dataset import EpisodeDataset

    ds = EpisodeDataset.create(root, {"rate_hz": 10})
    rng = np.random.default_rng(0)
    frames = total_bytes // int(np.prod(FRAME))
    for start in range(0, frames, episode_frames):
        n = min(episode_frames, frames - start)
        ds.append_episode({"joint_pos": rng.normal(size=(n, 8)), "action": rng.normal(size=(n, 8)),
                           "front_rgb": rng.integers(0, 256, (n, *FRAME), dtype=np.uint8)},
                          {"task": "bench", "success": True})
        print(f"dataset: {start + n}/{frames} frames", file=sys.stderr, flush=True)
    return frames


def capped(limit: int | None) -> tuple[list[str], Path | None]:
    """A shell prefix that runs the command inside a fresh memory cgroup of `limit` bytes."""
    if limit is None:
        return [], None
    for base, limit_file, procs in ((CGROUP, "memory.max", "cgroup.procs"),
                                    (CGROUP / "memory", "memory.limit_in_bytes", "cgroup.procs")):
        if not (base / ("cgroup.controllers" if base == CGROUP else limit_file)).exists():
            continue  # not a cgroup v2 root / not a v1 memory hierarchy
        group = base / f"robot_rl_bench_{os.getpid()}_{time.monotonic_ns()}"
        try:
            group.mkdir()
            (group / limit_file).write_text(str(limit))
            if limit_file == "memory.limit_in_bytes" and (group / "memory.memsw.limit_in_bytes").exists():
                (group / "memory.memsw.limit_in_bytes").write_text(str(limit))
            return ["sh", "-c", f'echo $$ > {group / procs} && exec "$@"', "sh"], group
        except OSError:
            try:
                group.rmdir()
            except OSError:
                pass
    return [], None


def peak_of(group: Path | None) -> int | None:
    for name in ("memory.peak", "memory.max_usage_in_bytes"):
        if group is not None and (group / name).exists():
            return int((group / name).read_text())
    return None


def train(dataset: Path, out: Path, stream: str, steps: int, limit: int | None) -> dict:
    prefix, group = capped(limit)
    cmd = [*prefix, sys.executable, "-m", "robot_rl.cli", "train", "diffusion", "--dataset", str(dataset),
           "--obs-keys", "joint_pos", "front_rgb", "--stream", stream, "--num-steps", str(steps), "--batch-size", "32",
           "--eval-episodes", "0", "--eval-every", str(steps), "--rgb-widths", "16", "32", "64", "128",
           "--torch-threads", "1", "--out", str(out)]
    t0 = time.perf_counter()
    out.mkdir(parents=True)
    with open(out.parent / f"{out.name}.log", "w+") as log:
        child = subprocess.Popen(cmd, stdout=log, stderr=log)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak resident memory
        child.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        tail = log.read().replace("\r", "\n").strip().splitlines()
    wall = time.perf_counter() - t0
    result = {"stream": stream, "limit_mib": None if limit is None or group is None else limit >> 20,
              "rc": child.returncode, "wall_s": round(wall, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024),
              "cgroup_peak_mib": None if peak_of(group) is None else peak_of(group) >> 20}
    if child.returncode == 0:
        summary = json.loads((out / "summary.json").read_text())
        result["steps_per_s"] = round(steps / summary["wall_s"], 2)
    else:
        result["error"] = (tail or ["killed"])[-1][-200:]
    if group is not None:
        group.rmdir()
    print(f"train --stream {stream} (cap {result['limit_mib']} MiB): {result}", file=sys.stderr, flush=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit-mb", type=int, default=1024)
    p.add_argument("--times", type=float, default=3.0, help="dataset size / limit")
    p.add_argument("--steps", type=int, default=40)
    args = p.parse_args()
    limit = args.limit_mb << 20
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frames = make_dataset(tmp / "d", int(args.times * limit))
        data_mib = sum(f.stat().st_size for f in (tmp / "d").rglob("*") if f.is_file()) >> 20
        free_disk = train(tmp / "d", tmp / "disk_free", "disk", args.steps, None)
        free_mem = train(tmp / "d", tmp / "mem_free", "memory", args.steps, None)
        capped_disk = train(tmp / "d", tmp / "disk_cap", "disk", args.steps, limit)
        capped_mem = train(tmp / "d", tmp / "mem_cap", "memory", args.steps, limit)
    ratio = (free_disk.get("steps_per_s") or 0) / free_mem["steps_per_s"] if free_mem.get("steps_per_s") else None
    print(json.dumps({"bench": "streaming_memory", "frames": frames, "dataset_mib": data_mib, "limit_mib": args.limit_mb,
                      "disk_capped": capped_disk, "memory_capped": capped_mem, "disk_uncapped": free_disk,
                      "memory_uncapped": free_mem, "disk_over_memory_steps_per_s": None if ratio is None else round(ratio, 2)}))


if __name__ == "__main__":
    main()
