"""The checkpoint folder every policy uses: model.safetensors, config.json, normalizer.json, robot.json.

Why this shape: safetensors and JSON load without unpickling anything, tensors are saved from
the CPU and mapped straight onto the requested device, so a checkpoint trained on a GPU loads
on a CPU-only robot and back. `robot.json` is the robot the policy was trained on (joint order,
gripper, TCP, limits and the URDF itself: robot_rl.robot.RobotModel), so a node, an evaluation or
a trainer can check it against the arm it is given and compute its kinematic features anywhere.
Each save writes temp files, then renames them into place; the files carry the same `save_id`,
so a folder mixing two saves (a crash between renames) is reported instead of silently loading
mismatched weights and statistics. Bad files raise DataError naming the file.
"""
from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from robot_rl.errors import ConfigError, DataError
from robot_rl.robot import RobotModel
from robot_rl.robot.catalog import read_robot_file, write_robot_file

WEIGHTS, CONFIG, NORMALIZER, ROBOT = "model.safetensors", "config.json", "normalizer.json", "robot.json"


@dataclass
class Checkpoint:
    """What a folder holds, read and checked: the policy module builds itself from it."""

    path: Path
    config: dict  # config.json without save_id
    normalizer: dict
    tensors: dict[str, torch.Tensor]
    robot: RobotModel | None  # None: saved before checkpoints recorded their robot


def save(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], config: Mapping, normalizer: Mapping,
         robot: RobotModel | None = None, extra_files: Mapping[str, bytes] | None = None) -> Path:
    """Write a checkpoint folder atomically per file, every file stamped with one save_id."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_id = uuid.uuid4().hex
    state = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    staged: list[tuple[Path, Path]] = []

    def stage(name: str, write) -> None:
        tmp = path / f".{name}.tmp"
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        staged.append((tmp, path / name))

    stage(WEIGHTS, lambda p: save_file(state, str(p), metadata={"format": "pt", "save_id": save_id}))
    stage(CONFIG, lambda p: p.write_text(json.dumps({**config, "save_id": save_id}, indent=2)))
    stage(NORMALIZER, lambda p: p.write_text(json.dumps({**normalizer, "save_id": save_id}, indent=1)))
    if robot is not None:
        stage(ROBOT, lambda p: write_robot_file(robot, p, save_id=save_id))
    for name, data in (extra_files or {}).items():
        stage(name, lambda p, data=data: p.write_bytes(data))
    mode = os.stat(path / f".{CONFIG}.tmp").st_mode & 0o777  # what the umask gives a plain file
    for tmp, final in staged:
        os.chmod(tmp, mode)  # safetensors writes its file 0600: a checkpoint others cannot read
        os.replace(tmp, final)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def read_json(path: Path, kind: str = "policy") -> dict:
    if not path.is_file():
        raise DataError(f"{path}: missing; a {kind} checkpoint folder needs {WEIGHTS}, {CONFIG} and {NORMALIZER}")
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object")
    return value


def torch_device(device) -> torch.device:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"bad device {device!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device} requested but CUDA is not available; use device='cpu'")
    return device


def read_robot(path: str | os.PathLike) -> RobotModel | None:
    """The robot a checkpoint (or dataset) folder records, registered by name; None if it records none."""
    try:
        return read_robot_file(Path(path) / ROBOT)
    except ConfigError as e:
        raise DataError(str(e)) from None


def load(path: str | os.PathLike, kind: str, device: str | torch.device = "cpu") -> Checkpoint:
    """Read and check a checkpoint folder of policy `kind` ("diffusion", "residual", "value")."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: no checkpoint folder here (expected {WEIGHTS}, {CONFIG}, {NORMALIZER})")
    device = torch_device(device)
    config = read_json(path / CONFIG, kind)
    ids = {CONFIG: config.pop("save_id", None)}
    if config.get("policy", "diffusion") != kind:
        raise DataError(f"{path / CONFIG}: policy {config.get('policy', 'diffusion')!r} is not a {kind} policy")
    normalizer = read_json(path / NORMALIZER, kind)
    ids[NORMALIZER] = normalizer.pop("save_id", None)
    weights = path / WEIGHTS
    if not weights.is_file():
        raise DataError(f"{weights}: missing; a {kind} checkpoint folder needs {WEIGHTS}")
    try:
        with safe_open(str(weights), framework="pt", device=str(device)) as f:
            ids[WEIGHTS] = (f.metadata() or {}).get("save_id")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for truncated / foreign files
        raise DataError(f"{weights}: not a readable safetensors file ({type(e).__name__}: {e})") from None
    if (path / ROBOT).is_file():
        ids[ROBOT] = read_json(path / ROBOT, kind).get("save_id")
    if len(set(ids.values())) != 1:
        raise DataError(f"{path}: {', '.join(ids)} come from different saves (interrupted save?); "
                        "save the checkpoint again")
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise DataError(f"{weights}: non-finite values in {bad[:3]}")
    return Checkpoint(path, config, normalizer, tensors, read_robot(path))
