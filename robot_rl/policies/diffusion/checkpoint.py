"""Checkpoint folder: model.safetensors (EMA weights), config.json, normalizer.json (+ curves).

Why this shape: safetensors and JSON load without unpickling anything, tensors are saved from
the CPU and mapped straight onto the requested device, so a checkpoint trained on a GPU loads
on a CPU-only robot and back. Each save writes temp files, then renames them into place; the
three files carry the same `save_id`, so a folder mixing two saves (a crash between renames)
is reported instead of silently loading mismatched weights and statistics.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from robot_rl.errors import ConfigError, DataError
from robot_rl.policies.diffusion.config import DiffusionConfig
from robot_rl.policies.diffusion.normalizer import Normalizer

WEIGHTS, CONFIG, NORMALIZER = "model.safetensors", "config.json", "normalizer.json"


def save_checkpoint(policy, path: str | os.PathLike, extra_files: Mapping[str, bytes] | None = None) -> Path:
    """Write `policy` (its current weights: pass the EMA copy) into folder `path`."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_id = uuid.uuid4().hex
    state = {k: v.detach().to("cpu").contiguous() for k, v in policy.state_dict().items()}
    staged: list[tuple[Path, Path]] = []

    def stage(name: str, write) -> None:
        tmp = path / f".{name}.tmp"
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        staged.append((tmp, path / name))

    stage(WEIGHTS, lambda p: save_file(state, str(p), metadata={"format": "pt", "save_id": save_id}))
    stage(CONFIG, lambda p: p.write_text(json.dumps({**policy.config.to_dict(), "save_id": save_id}, indent=2)))
    stage(NORMALIZER, lambda p: p.write_text(json.dumps({**policy.normalizer.to_dict(), "save_id": save_id}, indent=1)))
    for name, data in (extra_files or {}).items():
        stage(name, lambda p, data=data: p.write_bytes(data))
    for tmp, final in staged:
        os.replace(tmp, final)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: missing; a diffusion checkpoint folder needs {WEIGHTS}, {CONFIG} and {NORMALIZER}")
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object")
    return value


def _device(device) -> torch.device:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"bad device {device!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device} requested but CUDA is not available; use device='cpu'")
    return device


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Folder -> DiffusionPolicy in eval mode on `device`. Bad or missing files raise DataError."""
    from robot_rl.policies.diffusion.model import DiffusionPolicy

    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: no checkpoint folder here (expected {WEIGHTS}, {CONFIG}, {NORMALIZER})")
    device = _device(device)

    config_path = path / CONFIG
    raw = _read_json(config_path)
    config_id = raw.pop("save_id", None)
    if raw.get("policy", "diffusion") != "diffusion":
        raise DataError(f"{config_path}: policy {raw.get('policy')!r} is not a diffusion policy")
    try:
        config = DiffusionConfig.from_dict(raw)
    except (ConfigError, TypeError, ValueError) as e:
        raise DataError(f"{config_path}: invalid config ({e})") from None

    norm_path = path / NORMALIZER
    raw_norm = _read_json(norm_path)
    norm_id = raw_norm.pop("save_id", None)
    try:
        normalizer = Normalizer.from_dict(raw_norm)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{norm_path}: not a normalizer file ({type(e).__name__}: {e})") from None

    weights_path = path / WEIGHTS
    if not weights_path.is_file():
        raise DataError(f"{weights_path}: missing; a diffusion checkpoint folder needs {WEIGHTS}")
    try:
        with safe_open(str(weights_path), framework="pt", device=str(device)) as f:
            weights_id = (f.metadata() or {}).get("save_id")
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for truncated / foreign files
        raise DataError(f"{weights_path}: not a readable safetensors file ({type(e).__name__}: {e})") from None

    if len({config_id, norm_id, weights_id}) != 1:
        raise DataError(f"{path}: {WEIGHTS}, {CONFIG} and {NORMALIZER} come from different saves "
                        "(interrupted save?); save the checkpoint again")
    try:
        policy = DiffusionPolicy(config, normalizer)
    except ConfigError as e:
        raise DataError(f"{norm_path}: {e}") from None
    policy.to(device)
    expected = policy.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        raise DataError(f"{weights_path}: weights do not match {CONFIG} "
                        f"(missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]})")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise DataError(f"{weights_path}: non-finite values in {bad[:3]}")
    policy.load_state_dict(state)
    return policy.eval()
