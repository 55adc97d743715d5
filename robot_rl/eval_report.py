"""`robot-rl eval --report DIR`: what each variant did on each seed, to look at rather than read.

DIR/report.json holds, per variant, the success and length of every seed; success_over_seeds.png
shows each seed's outcome and the running success rate; the first failures of each variant are
rolled out again on their seeds (the same start, the same policy seed) and written as MP4s.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", name).strip("_")


def write_report(out: Path, task: str, seeds, variants: dict[str, dict], videos: dict[str, dict[int, Path]]) -> Path:
    """`variants`: {name: robot_rl.sim.rollout.evaluate's result}; `videos`: {name: {seed: mp4}}."""
    out.mkdir(parents=True, exist_ok=True)
    report = {"task": task, "seeds": [int(s) for s in seeds], "variants": {
        name: {"success_rate": r["success_rate"], "successes": [bool(x) for x in r["successes"]],
               "lengths": [int(x) for x in r["lengths"]],
               "failure_videos": {str(s): p.name for s, p in videos.get(name, {}).items()}}
        for name, r in variants.items()}}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    _plot(out / "success_over_seeds.png", task, list(seeds), variants)
    return out / "report.json"


def _plot(path: Path, task: str, seeds: list[int], variants: dict[str, dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (strip, running) = plt.subplots(2, 1, figsize=(9, 1.2 + 0.5 * len(variants) + 2.5), sharex=True,
                                         gridspec_kw={"height_ratios": [0.5 * len(variants) + 0.5, 2.5]})
    x = np.arange(len(seeds))
    for row, (name, r) in enumerate(variants.items()):
        ok = np.asarray(r["successes"], bool)
        strip.scatter(x[ok], np.full(ok.sum(), row), marker="s", s=12, color="tab:green")
        strip.scatter(x[~ok], np.full((~ok).sum(), row), marker="s", s=12, color="tab:red")
        running.plot(x, np.cumsum(ok) / (x + 1), label=f"{name} ({r['success_rate']:.2f})")
    strip.set_yticks(range(len(variants)), list(variants))
    strip.set_title(f"{task}: success (green) / failure (red) per seed, {seeds[0]}..{seeds[-1]}")
    running.set_ylim(-0.02, 1.02)
    running.set_ylabel("running success rate")
    running.set_xlabel("episode (seed - first seed)")
    running.grid(alpha=0.3)
    running.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
