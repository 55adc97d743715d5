"""RGB frames to an MP4 (imageio-ffmpeg ships its own ffmpeg binary in the wheel)."""
from __future__ import annotations

from pathlib import Path

from robot_rl.errors import RobotRLError


def write_video(path, frames: list, fps: float = 10.0) -> Path:
    """Write `frames` (H, W, 3) uint8 to `path`, never leaving a half-written file under its name."""
    import imageio.v2 as imageio

    if not frames:
        raise RobotRLError(f"no camera frames for {path}; start the sim with cameras:=[front]")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial.mp4")
    imageio.mimsave(tmp, frames, fps=fps, macro_block_size=1)  # odd sizes kept, not resized
    tmp.replace(path)
    return path
