"""Per-chunk inference latency of the diffusion policy on this machine (default config).

Measures `predict_chunk` (batch 1) and `sample_chunks(history, 32)` (32 candidates for
steering) from a raw observation history to an action chunk in joint units, for DDIM 10 and
100 steps, low-dim and RGB observations (two cameras, 96x96 by default), plus the paper-size
U-Net (down_dims 256/512/1024, ~65M parameters) in plain eager mode with the textbook diffusers
loop at DDIM 10 / batch 1 as the in-run baseline (with torch's default threads and with one).
Weights are random: latency does not depend on them.

Progress goes to stderr; the last stdout line is one JSON object. Wall-clock p50/p99 and the
process CPU time p50 are reported per case (CPU time shows how much of a slow p99 is other
processes preempting us on a shared machine). `dds_overhead_ratio` comes from the node benchmark
(bench/diffusion_node_latency.py, see `measure_dds_overhead`); null with --no-node.

    python bench/diffusion_latency.py                # everything, ~2-3 min on 2 cores
    python bench/diffusion_latency.py --quick        # skip the 100-step batch-32 cases
    python bench/diffusion_latency.py --no-node --down-dims 64 128 256   # another U-Net size
    python bench/diffusion_latency.py --image-size 128x128 --cameras front
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

from robot_rl.policies.diffusion.config import DiffusionConfig
from robot_rl.policies.diffusion.model import DiffusionPolicy

PAPER_UNET = dict(down_dims=(256, 512, 1024), step_embed_dim=256)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_size(text: str) -> tuple[int, int]:
    """"96" or "96x128" (height x width)."""
    h, _, w = text.lower().partition("x")
    return int(h), int(w or h)


def lowdim_config(**kw) -> DiffusionConfig:
    return DiffusionConfig(**kw)


def rgb_config(image_hw: tuple[int, int], cameras: list[str], **kw) -> DiffusionConfig:
    crop = (max(8, round(image_hw[0] * 0.875)), max(8, round(image_hw[1] * 0.875)))
    keys = ("joint_pos", "ee_pos", *(f"{c}_rgb" for c in cameras))
    shapes = {"joint_pos": (8,), "ee_pos": (3,), **{f"{c}_rgb": (*image_hw, 3) for c in cameras}}
    return DiffusionConfig(obs_keys=keys, obs_shapes=shapes, crop_shape=crop, **kw)


def history_for(config: DiffusionConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """A random observation history {key: (To, ...)} with the dtypes the simulator produces."""
    rng = np.random.default_rng(seed)
    hist = {}
    for key in config.obs_keys:
        shape = (config.obs_horizon, *config.obs_shapes[key])
        if key.endswith("_rgb"):
            hist[key] = rng.integers(0, 256, shape, dtype=np.uint8)
        else:
            hist[key] = rng.uniform(-1, 1, shape).astype(np.float32)
    return hist


def time_calls(fn, budget_s: float, min_n: int, max_n: int, warmup: int = 2) -> dict:
    """Call `fn` until `budget_s` is spent (within [min_n, max_n] calls): wall and CPU ms."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    start = time.perf_counter()
    while len(wall) < max_n and (len(wall) < min_n or time.perf_counter() - start < budget_s):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
    return {
        "p50_ms": round(float(np.percentile(wall, 50)), 2),
        "p99_ms": round(float(np.percentile(wall, 99)), 2),
        "cpu_p50_ms": round(float(np.percentile(cpu, 50)), 2),
        "n": len(wall),
    }


def measure_dds_overhead(args, inference_p50_ms: float) -> float | None:
    """Observation-to-command latency of the diffusion_policy node over DDS, minus the node's own
    inference time for the same chunk, over that inference time (bench/diffusion_node_latency.py;
    goal <= 0.20). None with --no-node (no ROS run)."""
    if getattr(args, "no_node", False):
        return None
    from diffusion_node_latency import measure_dds_overhead as node_bench  # bench/ is on sys.path

    return node_bench()["dds_overhead_ratio"]


def backend_of(policy: DiffusionPolicy) -> str:
    fns = list(policy._steps.values())
    return "trace" if fns and all(isinstance(f, torch.jit.ScriptModule) for f in fns) else "eager"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-size", type=parse_size, default=(96, 96), help="HxW of each camera (default 96x96)")
    ap.add_argument("--cameras", default="front,wrist", help="comma-separated camera names (default front,wrist)")
    ap.add_argument("--threads", type=int, default=None, help="inference_threads (default: the config default)")
    ap.add_argument("--down-dims", type=int, nargs="+", default=None, help="U-Net widths (default: the config default)")
    ap.add_argument("--kernel-size", type=int, default=None, help="U-Net kernel size (default: the config default)")
    ap.add_argument("--no-rgb", action="store_true", help="skip the RGB cases")
    ap.add_argument("--budget", type=float, default=6.0, help="seconds of timed calls per case")
    ap.add_argument("--quick", action="store_true", help="skip the 100-step batch-32 cases")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-node", action="store_true", help="skip the diffusion_policy node run over DDS")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    extra = {} if args.threads is None else {"inference_threads": args.threads}
    size = {}
    if args.down_dims:
        size["down_dims"] = tuple(args.down_dims)
    if args.kernel_size:
        size["kernel_size"] = args.kernel_size
    cameras = [c for c in args.cameras.split(",") if c]
    load_before = os.getloadavg()
    result: dict = {}

    policies = {"lowdim": DiffusionPolicy(lowdim_config(**extra, **size)).eval()}
    if not args.no_rgb:
        policies["rgb"] = DiffusionPolicy(rgb_config(args.image_size, cameras, **extra, **size)).eval()
    result["down_dims"] = list(policies["lowdim"].config.down_dims)
    result["kernel_size"] = policies["lowdim"].config.kernel_size
    for kind, policy in policies.items():
        result[f"{kind}_params"] = policy.num_parameters()
        result[f"{kind}_unet_params"] = sum(p.numel() for p in policy.unet.parameters())
        hist = history_for(policy.config, args.seed)
        for steps in (10, 100):
            for batch in (1, 32):
                if args.quick and steps == 100 and batch == 32:
                    continue
                name = f"{kind}_ddim{steps}_b{batch}"
                gen = torch.Generator().manual_seed(args.seed)
                if batch == 1:
                    def call(p=policy, h=hist, g=gen, s=steps):
                        return p.predict_chunk(h, g, s)
                else:
                    def call(p=policy, h=hist, g=gen, b=batch, s=steps):
                        return p.sample_chunks(h, b, g, s)
                slow = steps * batch >= 1000
                stats = time_calls(call, args.budget, 5 if slow else 20, 300)
                for k, v in stats.items():
                    result[f"{name}_{k}"] = v
                log(f"{name:22s} p50 {stats['p50_ms']:8.2f} ms  p99 {stats['p99_ms']:8.2f} ms  "
                    f"cpu p50 {stats['cpu_p50_ms']:8.2f} ms  (n={stats['n']})")
        result[f"{kind}_backend"] = backend_of(policy)

    # Baseline: the paper-size U-Net, plain eager diffusers loop, DDIM 10, batch 1, with torch's
    # default threads (what an untuned run gets) and with one thread; ratios use the faster one.
    paper = DiffusionPolicy(lowdim_config(**PAPER_UNET)).eval()
    result["paper_unet_params"] = sum(p.numel() for p in paper.unet.parameters())
    hist = paper._history_batch(history_for(paper.config, args.seed))
    noise = torch.randn(1, paper.config.pred_horizon, paper.config.action_dim)
    default_threads = torch.get_num_threads()
    for label, threads in (("", default_threads), ("_1thread", 1)):
        torch.set_num_threads(threads)
        stats = time_calls(lambda: paper.generate_reference(hist, noise), args.budget, 10, 100, warmup=1)
        for k, v in stats.items():
            result[f"paper_unet_eager{label}_ddim10_b1_{k}"] = v
        name = f"paper_unet_eager{label}_ddim10_b1"
        log(f"{name:22s} p50 {stats['p50_ms']:8.2f} ms  p99 {stats['p99_ms']:8.2f} ms  "
            f"cpu p50 {stats['cpu_p50_ms']:8.2f} ms  (n={stats['n']}, {threads} threads)")
    torch.set_num_threads(default_threads)
    base_p50 = min(result["paper_unet_eager_ddim10_b1_p50_ms"], result["paper_unet_eager_1thread_ddim10_b1_p50_ms"])
    base_p99 = min(result["paper_unet_eager_ddim10_b1_p99_ms"], result["paper_unet_eager_1thread_ddim10_b1_p99_ms"])
    result["paper_unet_default_threads"] = default_threads
    result["speedup_vs_paper_p50"] = round(base_p50 / result["lowdim_ddim10_b1_p50_ms"], 2)
    result["speedup_vs_paper_p99"] = round(base_p99 / result["lowdim_ddim10_b1_p99_ms"], 2)

    result["dds_overhead_ratio"] = measure_dds_overhead(args, result["lowdim_ddim10_b1_p50_ms"])
    result["goal_lowdim_ddim10_b1_p99_ms"] = 30.0
    result["meets_goal"] = result["lowdim_ddim10_b1_p99_ms"] <= 30.0
    result["env"] = {
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "inference_threads": policies["lowdim"].config.inference_threads,
        "nice": os.nice(0),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "machine": platform.processor() or platform.machine(),
        "image_size": list(args.image_size),
        "cameras": cameras,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
