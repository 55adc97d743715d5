"""Command-line arguments checked before any work starts: a bad count, an unusable device or an
output folder that cannot be written is one line and exit 2 at once, not a traceback after an
hour of evaluation or training (whose result would then be lost)."""
from __future__ import annotations

import os
from pathlib import Path

from robot_rl.errors import ConfigError


def at_least(flag: str, value, minimum) -> None:
    """`flag`'s value (or each of a list) must be >= minimum."""
    for v in value if isinstance(value, (list, tuple)) else [value]:
        if v is not None and v < minimum:
            raise ConfigError(f"{flag} must be >= {minimum}, got {v}")


def output_file(flag: str, path) -> Path | None:
    """The file `flag` names will be writable: its folder is created now, and tried."""
    if not path:
        return None
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{flag} {path}: cannot create its folder ({e.strerror or e})") from None
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a folder; name a file")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{flag} {path}: not writable")
    return path


def output_folder(flag: str, path) -> Path:
    """The folder `flag` names exists (created now) and is writable."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{flag} {path}: cannot create it ({e.strerror or e})") from None
    if not os.access(path, os.W_OK):
        raise ConfigError(f"{flag} {path}: not writable")
    return path


def device(flag: str, name: str) -> None:
    """A torch device that exists on this machine (cuda without CUDA is refused here, not mid-run)."""
    from robot_rl.policies.checkpoint import torch_device

    try:
        torch_device(name)
    except ConfigError as e:
        raise ConfigError(f"{flag}: {e}") from None
