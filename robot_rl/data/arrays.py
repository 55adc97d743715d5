"""Your own data as an episode dataset: arrays with named keys, episodes marked by their ends.

The layout is the one Diffusion Policy's ReplayBuffer uses (and many scripts produce): every key
holds all frames of all episodes back to back, (N, ...), and `episode_ends` (E,) the exclusive end
index of each episode. It is read from an .npz file or from a zarr group with `data/<key>` and
`meta/episode_ends` (Diffusion Policy's .zarr datasets, zarr v2 or v3), or passed as numpy arrays::

    from robot_rl.data.arrays import write_arrays
    write_arrays("data/mine", {"state": s, "front_rgb": images, "action": a}, episode_ends, rate_hz=10,
                 names={"action": ["dx", "dy", "dz", "gripper"]}, task="pick")

Keys are what the policies read (`--obs-keys state front_rgb`); `<cam>_rgb` (H, W, 3) uint8 is a
camera. Actions and observations need not be joints: their dimensions are named in `names`. A
`success` key (per frame) labels each episode; without one the episodes are demonstrations and
labelled successful (said in each episode's meta).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from robot_rl.data.dataset import EpisodeDataset, append_new
from robot_rl.errors import DataError


def read_arrays(path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(arrays, episode_ends) from an .npz file or a ReplayBuffer-layout zarr group."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; pass an .npz file or a zarr folder with data/ and meta/")
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: not a readable .npz file ({e})") from None
        if "episode_ends" not in arrays:
            raise DataError(f"{path}: no 'episode_ends' array (the exclusive end index of each episode); "
                            f"arrays here: {', '.join(arrays) or 'none'}")
        return arrays, arrays.pop("episode_ends")
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        data, meta = group["data"], group["meta"]
        arrays = {k: np.asarray(data[k]) for k in data.array_keys()}
        ends = np.asarray(meta["episode_ends"])
    except (KeyError, FileNotFoundError, ValueError, TypeError) as e:
        raise DataError(f"{path}: not a zarr group with data/<key> arrays and meta/episode_ends ({e})") from None
    return arrays, ends


def write_arrays(out, arrays: Mapping[str, np.ndarray], episode_ends, rate_hz: float,
                 names: Mapping[str, list[str]] | None = None, task: str = "", joint_names=None,
                 source: Mapping | None = None, log=print) -> EpisodeDataset:
    """Append each episode of `arrays` to the dataset `out` (created when absent); returns it.
    An episode `out` already holds (same frames) is skipped and said so."""
    ends = np.asarray(episode_ends)
    if ends.ndim != 1 or not len(ends) or ends.dtype.kind not in "iu":
        raise DataError(f"episode_ends must be a non-empty 1-D integer array, got shape {ends.shape} {ends.dtype}")
    starts = np.concatenate([[0], ends[:-1]])
    if (ends <= starts).any():
        raise DataError(f"episode_ends must increase strictly from > 0, got {ends[:8].tolist()}...")
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    short = {k: len(v) for k, v in arrays.items() if v.ndim == 0 or len(v) != ends[-1]}
    if short:
        raise DataError(f"every array needs episode_ends[-1] = {ends[-1]} frames; these do not: {short}")
    if "action" not in arrays:
        raise DataError(f"no 'action' array (keys: {', '.join(arrays)}); the policies learn to predict it")
    layout = {"rate_hz": rate_hz, **({"names": dict(names)} if names else {}),
              **({"joint_names": list(joint_names)} if joint_names else {})}
    ds = EpisodeDataset.open_or_create(out, layout)
    if names and ds.meta.get("names", {}) != {k: list(v) for k, v in names.items()}:
        raise DataError(f"{out}: the dataset names {ds.meta.get('names')}, not {dict(names)}; use a new path")

    def episodes():
        for e, (a, b) in enumerate(zip(starts, ends)):
            frames = {k: v[a:b] for k, v in arrays.items()}
            success = bool(frames["success"].any()) if "success" in frames else True
            yield frames, {"task": task, "success": success, "source": {**(source or {}), "episode": e},
                           **({} if "success" in frames else {"success_assumed": "a demonstration (no success key)"})}

    added, skipped = append_new(ds, episodes())
    there = f"; {len(skipped)} already there (same frames), skipped: {_span(skipped)}" if skipped else ""
    log(f"{added} of {len(ends)} episodes into {out} ({ds.num_episodes} in all){there}")
    return ds


def _span(indices: list[int]) -> str:
    return ", ".join(map(str, indices)) if len(indices) <= 6 else f"{indices[0]}..{indices[-1]}"


def parse_names(items) -> dict[str, list[str]]:
    """`key=a,b,c` strings -> {key: [a, b, c]} (the --names flag)."""
    out = {}
    for item in items or ():
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise DataError(f"--names {item!r}: write KEY=NAME,NAME,... (e.g. action=dx,dy,dz,gripper)")
        out[key] = values.split(",")
    return out
