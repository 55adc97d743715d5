"""Write a LeRobot v3.0 dataset the way LeRobot lays one out, without LeRobot: a 6-motor arm with a
7-D end-effector action, one AV1 camera video shared by all episodes (each at its from_timestamp),
list<float> columns as HF datasets writes them, tasks.parquet indexed by the task string (pandas
style), several episodes per data file. No robot_rl notes in info.json: a foreign dataset."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MOTORS = ["shoulder_pan.pos", "shoulder_lift.pos", "elbow_flex.pos", "wrist_flex.pos", "wrist_roll.pos", "gripper.pos"]
ACTION = ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]
FPS = 15
SIZE = (48, 32)  # W, H


def frame_image(episode: int, i: int) -> np.ndarray:
    """A picture that changes smoothly with time and episode (so a lossy codec keeps it close)."""
    w, h = SIZE
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 4 + i * 6 + episode * 40) % 256
    g = (y * 6 + i * 3) % 256
    b = np.full_like(x, 60 + 30 * episode)
    return np.stack([r, g, b], -1).astype(np.uint8)


def write_lerobot_v3(root, lengths=(12, 9, 14), task: str = "stack the cube") -> dict:
    """Write the dataset; returns the truth: {"state": [...], "action": [...], "images": [...]} per episode."""
    import imageio_ffmpeg
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(root)
    rng = np.random.default_rng(0)
    truth = {"state": [], "action": [], "images": []}
    rows, index = [], 0
    columns = {k: [] for k in ("observation.state", "action", "timestamp", "frame_index", "episode_index", "index",
                               "task_index", "next.done")}
    video = root / "videos" / "observation.images.top" / "chunk-000" / "file-000.mp4"
    video.parent.mkdir(parents=True)
    writer = imageio_ffmpeg.write_frames(str(video), SIZE, fps=FPS, codec="libsvtav1", pix_fmt_out="yuv420p",
                                         macro_block_size=1, quality=None,
                                         output_params=["-crf", "20", "-g", "2"])
    writer.send(None)
    t0 = 0.0
    for ep, n in enumerate(lengths):
        state = rng.normal(size=(n, 6)).astype(np.float32)
        action = rng.normal(size=(n, 7)).astype(np.float32)
        images = np.stack([frame_image(ep, i) for i in range(n)])
        for image in images:
            writer.send(np.ascontiguousarray(image))
        truth["state"].append(state)
        truth["action"].append(action)
        truth["images"].append(images)
        columns["observation.state"] += state.tolist()
        columns["action"] += action.tolist()
        columns["timestamp"] += (np.arange(n) / FPS).tolist()
        columns["frame_index"] += list(range(n))
        columns["episode_index"] += [ep] * n
        columns["index"] += list(range(index, index + n))
        columns["task_index"] += [0] * n
        columns["next.done"] += [False] * (n - 1) + [True]
        rows.append({"episode_index": ep, "tasks": [task], "length": n, "data/chunk_index": 0, "data/file_index": 0,
                     "dataset_from_index": index, "dataset_to_index": index + n,
                     "videos/observation.images.top/chunk_index": 0, "videos/observation.images.top/file_index": 0,
                     "videos/observation.images.top/from_timestamp": t0,
                     "videos/observation.images.top/to_timestamp": t0 + n / FPS,
                     "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
        index += n
        t0 += n / FPS
    writer.close()
    data = root / "data" / "chunk-000" / "file-000.parquet"
    data.parent.mkdir(parents=True)
    floats = pa.list_(pa.float32())
    pq.write_table(pa.table({
        "observation.state": pa.array(columns["observation.state"], floats),
        "action": pa.array(columns["action"], floats),
        "timestamp": pa.array(columns["timestamp"], pa.float32()),
        "frame_index": pa.array(columns["frame_index"], pa.int64()),
        "episode_index": pa.array(columns["episode_index"], pa.int64()),
        "index": pa.array(columns["index"], pa.int64()),
        "task_index": pa.array(columns["task_index"], pa.int64()),
        "next.done": pa.array(columns["next.done"], pa.bool_()),
    }), data)
    episodes = root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    episodes.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), episodes)
    pq.write_table(pa.table({"task_index": pa.array([0], pa.int64()), "__index_level_0__": pa.array([task])}),
                   root / "meta" / "tasks.parquet")
    w, h = SIZE
    info = {
        "codebase_version": "v3.0", "robot_type": "so100_follower", "total_episodes": len(lengths),
        "total_frames": index, "total_tasks": 1, "chunks_size": 1000, "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200, "fps": FPS, "splits": {"train": f"0:{len(lengths)}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": {
            "action": {"dtype": "float32", "shape": [7], "names": ACTION},
            "observation.state": {"dtype": "float32", "shape": [6], "names": {"motors": MOTORS}},
            "observation.images.top": {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                                       "info": {"video.height": h, "video.width": w, "video.codec": "av1",
                                                "video.pix_fmt": "yuv420p", "video.is_depth_map": False,
                                                "video.fps": FPS, "video.channels": 3, "has_audio": False}},
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            "frame_index": {"dtype": "int64", "shape": [1], "names": None},
            "episode_index": {"dtype": "int64", "shape": [1], "names": None},
            "index": {"dtype": "int64", "shape": [1], "names": None},
            "task_index": {"dtype": "int64", "shape": [1], "names": None},
            "next.done": {"dtype": "bool", "shape": [1], "names": None},
        },
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    return truth
