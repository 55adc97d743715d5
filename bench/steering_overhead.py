"""Cost of a V-GPS steered decision against an unsteered one, with the default diffusion config.

A steered decision = sample N chunks in one batched denoising pass + score all N with the
critic in one batched forward pass. Reported per N in {1, 8, 32, 64} as a ratio to one unsteered
decision (`predict_chunk`) measured in the same run, with the share of it spent scoring.
Weights are random: the time does not depend on them. Last stdout line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from robot_rl.policies.diffusion.config import DiffusionConfig
from robot_rl.policies.diffusion.model import DiffusionPolicy
from robot_rl.policies.value.config import ValueConfig
from robot_rl.policies.value.model import ChunkCritic, ValueFunction, ValueNormalizer

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from diffusion_latency import history_for  # noqa: E402  (same random histories as the latency bench)


def timed(fn, repeats: int) -> list[float]:
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 8, 32, 64])
    args = parser.parse_args()
    torch.manual_seed(0)
    dcfg = DiffusionConfig()
    policy = DiffusionPolicy(dcfg).eval()
    policy.reset(seed=0)
    hist = history_for(dcfg)
    obs = {k: v[-1] for k, v in hist.items()}
    vcfg = ValueConfig(obs_keys=dcfg.obs_keys, chunk=dcfg.action_horizon, num_objects=len(obs["object_poses"]))
    obs_dim = sum(int(np.prod(dcfg.obs_shapes[k])) for k in dcfg.obs_keys)
    value = ValueFunction(ChunkCritic(obs_dim, vcfg), ValueNormalizer(-np.ones(obs_dim), np.ones(obs_dim), task_offsets=vcfg.offset_objects), vcfg)

    base = np.median(timed(lambda: policy.predict_chunk(hist), args.repeats))
    print(f"unsteered decision (predict_chunk): p50 {base:.1f} ms", file=sys.stderr)
    result = {"bench": "steering_overhead", "unsteered_ms": round(base, 2),
              "diffusion_params": policy.num_parameters(), "torch_threads": torch.get_num_threads()}
    for n in args.samples:
        chunks = policy.sample_executable(hist, n)
        sample_ms = timed(lambda: policy.sample_executable(hist, n), args.repeats)
        score_ms = timed(lambda: value.score(obs, chunks), args.repeats)
        decision = np.median(np.array(sample_ms) + np.array(score_ms))
        p99 = np.percentile(np.array(sample_ms) + np.array(score_ms), 99)
        share = np.median(score_ms) / decision
        result.update({f"ratio_n{n}": round(decision / base, 2), f"n{n}_decision_ms": round(decision, 1),
                       f"n{n}_decision_p99_ms": round(p99, 1), f"scoring_share_n{n}": round(share, 3)})
        print(f"N={n:3d}: decision p50 {decision:7.1f} ms (p99 {p99:.1f}), {decision / base:5.2f}x unsteered, "
              f"scoring {100 * share:.1f}%", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
