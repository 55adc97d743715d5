"""Min/max normalisation of low-dim keys and actions to [-1, 1]; images to [0, 1] floats.

Diffusion is trained on actions in [-1, 1] so `clip_sample` bounds the denoised chunk to the
demonstrated range. Dimensions that never vary in the data (range < 1e-4) are only centred,
so the map stays invertible and a constant dimension normalises to exactly 0.

Stats come from `robot_rl.data.stats.compute_stats` ({key: {"min", "max", ...}}); only min
and max are kept. Point clouds use per-feature stats (the last axis).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch

from robot_rl.errors import DataError

MIN_RANGE = 1e-4


class Normalizer:
    """Per-key affine maps `(x - center) / half_range`, as tensors on one device."""

    def __init__(self, stats: Mapping[str, Mapping[str, Iterable]] | None = None):
        self.center: dict[str, torch.Tensor] = {}
        self.half_range: dict[str, torch.Tensor] = {}
        self.stats: dict[str, dict[str, list]] = {}
        for key, s in (stats or {}).items():
            self.add(key, s["min"], s["max"])

    def add(self, key: str, lo, hi) -> None:
        lo = np.asarray(lo, np.float64)
        hi = np.asarray(hi, np.float64)
        if lo.shape != hi.shape or not (np.isfinite(lo).all() and np.isfinite(hi).all()) or (hi < lo).any():
            raise ValueError(f"bad stats for {key!r}: min/max must be finite, same shape, min <= max")
        half = (hi - lo) / 2
        self.stats[key] = {"min": lo.tolist(), "max": hi.tolist()}
        self.center[key] = torch.as_tensor((hi + lo) / 2, dtype=torch.float32)
        self.half_range[key] = torch.as_tensor(np.where(half < MIN_RANGE / 2, 1.0, half), dtype=torch.float32)

    @classmethod
    def identity(cls, shapes: Mapping[str, tuple[int, ...]]) -> Normalizer:
        """Maps that leave values unchanged (centre 0, half-range 1): for tests and benchmarks."""
        n = cls()
        for key, shape in shapes.items():
            n.add(key, -np.ones(shape), np.ones(shape))
        return n

    def __contains__(self, key: str) -> bool:
        return key in self.center

    def keys(self) -> list[str]:
        return list(self.center)

    def to(self, device) -> Normalizer:
        self.center = {k: v.to(device) for k, v in self.center.items()}
        self.half_range = {k: v.to(device) for k, v in self.half_range.items()}
        return self

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        return (x - self.center[key]) / self.half_range[key]

    def unnormalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        return x * self.half_range[key] + self.center[key]

    @staticmethod
    def normalize_image(x: torch.Tensor) -> torch.Tensor:
        """(..., H, W, 3) uint8 (or float in [0, 255]) -> (..., 3, H, W) float in [0, 1]."""
        return x.movedim(-1, -3).float().div_(255.0) if x.dtype == torch.uint8 else x.movedim(-1, -3) / 255.0

    # --- JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": "robot_rl.normalizer/1", "stats": self.stats}

    @classmethod
    def from_dict(cls, d: Mapping) -> Normalizer:
        return cls(d["stats"])

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON atomically (temp file + rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Normalizer:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
            return cls.from_dict(d)
        except FileNotFoundError:
            raise DataError(f"{path}: normalizer file missing; a checkpoint needs normalizer.json") from None
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}: not a normalizer file ({type(e).__name__}: {e})") from None


def normalizer_from_stats(stats: Mapping[str, Mapping], config) -> Normalizer:
    """Keep the stats the policy needs: low-dim keys, point clouds (per feature) and the action."""
    keep = {}
    for key in (*config.lowdim_keys, *config.points_keys, "action"):
        if key not in stats:
            raise DataError(f"no statistics for {key!r} (have: {', '.join(stats)})")
        s = stats[key]
        lo, hi = np.asarray(s["min"], np.float64), np.asarray(s["max"], np.float64)
        if key in config.points_keys and lo.ndim > 1:  # per-point stats -> per-feature
            lo, hi = lo.reshape(-1, lo.shape[-1]).min(0), hi.reshape(-1, hi.shape[-1]).max(0)
        keep[key] = {"min": lo, "max": hi}
    try:
        return Normalizer(keep)
    except ValueError as e:
        raise DataError(f"dataset statistics unusable: {e}") from None
