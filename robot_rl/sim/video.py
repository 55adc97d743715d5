"""Write RGB frames to an MP4 (imageio-ffmpeg ships its own ffmpeg binary in the wheel)."""
from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio


def write_mp4(frames, path, fps: int = 10) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # macro_block_size=1 keeps odd image sizes as they are instead of resizing with a warning.
    with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1) as writer:
        for frame in frames:
            writer.append_data(frame)
    return path
