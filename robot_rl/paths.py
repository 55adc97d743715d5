"""Where the package's data folders (urdf/, config/, launch/) are, installed or not.

A source checkout (including `pip install -e .`) keeps them beside the package; a colcon or
pip install puts them in share/robot_rl. The checkout wins so that code and data never come
from two different versions.
"""
from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

from robot_rl.errors import ConfigError

PACKAGE = "robot_rl"
_MARKERS = ("package.xml", "urdf")


def _has_data(root: Path) -> bool:
    return all((root / m).exists() for m in _MARKERS)


def _ament_share() -> Path | None:
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(PACKAGE))
    except Exception:  # PackageNotFoundError, or no AMENT_PREFIX_PATH at all
        return None


@lru_cache(maxsize=None)
def share_dir() -> Path:
    """The folder holding urdf/, config/, launch/ and package.xml."""
    env = os.environ.get("ROBOT_RL_SHARE")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parent.parent)  # source checkout
    ament = _ament_share()
    if ament is not None:
        candidates.append(ament)
    candidates.append(Path(sys.prefix) / "share" / PACKAGE)  # pip install (non-editable)
    for root in candidates:
        if _has_data(root):
            return root
    raise ConfigError(
        f"cannot find robot_rl's data folders (urdf/, config/) in any of "
        f"{', '.join(map(str, candidates))}; reinstall the package or set ROBOT_RL_SHARE"
    )


def urdf_dir() -> Path:
    return share_dir() / "urdf"


def config_dir() -> Path:
    return share_dir() / "config"


def config_file(name: str) -> Path:
    """A params file in config/ by name (with or without .yaml); a clear error if missing."""
    path = config_dir() / (name if name.endswith(".yaml") else name + ".yaml")
    if not path.is_file():
        known = sorted(p.stem for p in config_dir().glob("*.yaml"))
        raise ConfigError(f"no params file {path}; known: {', '.join(known) or 'none'}")
    return path
