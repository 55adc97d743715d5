"""`robot-rl dataset export --format lerobot`: an episode dataset in the LeRobot v3.0 layout.

    out/
      meta/info.json                         codebase_version v3.0, fps, features, paths, splits
      meta/stats.json                        min/max/mean/std/count per feature (images per channel, in [0, 1])
      meta/tasks.parquet                     task string -> task_index
      meta/episodes/chunk-000/file-000.parquet   per episode: tasks, length, data file, index range
      data/chunk-000/file-000.parquet        frames, episodes back to back, files of ~100 MB

Features: observation.state (joint_pos, named by joint), observation.velocity (joint_vel),
observation.ee_pose (ee_pos + ee_quat wxyz), observation.environment_state (object_poses
flattened), observation.<key> for any other low-dimensional key, observation.images.<cam> (dtype
"image": PNG bytes in the parquet, no video encoding needed), action, next.reward, next.success,
next.done, and the bookkeeping columns timestamp, frame_index, episode_index, index, task_index. Depth images and point clouds have
no LeRobot convention and are left out (said in info.json's robot_rl notes, which also hold our
keys, shapes and names, so `robot-rl dataset from-lerobot` gives the same dataset back).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from robot_rl.data.dataset import EpisodeDataset, camera_of
from robot_rl.errors import DataError

CHUNKS_SIZE = 1000
DATA_FILE_MB = 100
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
IMAGE_STATS_SAMPLES = 200  # frames per camera sampled for image statistics


FRAME_KEYS = {"reward": "next.reward", "success": "next.success"}  # per-frame scalars, LeRobot's "next." names
_NAMED = {"joint_pos": "observation.state", "joint_vel": "observation.velocity",
          "object_poses": "observation.environment_state", "action": "action"}


def _vector_features(ds: EpisodeDataset) -> dict[str, tuple[list[str], list[str] | None]]:
    """LeRobot feature -> (our keys concatenated, names): LeRobot's conventional names for ours, and
    `observation.<key>` for any other low-dimensional key (a dataset from arrays)."""
    keys = ds.keys
    out = {}
    for key, feature in _NAMED.items():
        if key in keys:
            out[feature] = ([key], ds.names(key))
    if "ee_pos" in keys and "ee_quat" in keys:
        out["observation.ee_pose"] = (["ee_pos", "ee_quat"], ["x", "y", "z", "qw", "qx", "qy", "qz"])
    used = {k for ks, _ in out.values() for k in ks}
    for key, spec in keys.items():
        if key not in used and key not in FRAME_KEYS and key != "points" and not camera_of(key) and len(spec["shape"]) <= 1:
            out[f"observation.{key}"] = ([key], ds.names(key))
    return out


def export_lerobot(dataset_path, out, repo_id: str = "local/robot_rl", robot_type: str = "robot_rl_arm") -> Path:
    """Write the LeRobot v3.0 layout of `dataset_path` into `out` (must not exist); returns `out`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ds = EpisodeDataset.open(dataset_path)
    if ds.num_episodes == 0:
        raise DataError(f"{dataset_path}: no episodes to export")
    out = Path(out)
    if out.exists():
        raise DataError(f"{out}: already exists; choose a new export directory")
    temp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(temp, ignore_errors=True)
    try:
        _write(ds, temp, repo_id, robot_type, pa, pq)
        os.rename(temp, out)
    except OSError as e:
        shutil.rmtree(temp, ignore_errors=True)
        raise DataError(f"{out}: cannot write the export: {e.strerror or e}") from e
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return out


def _write(ds: EpisodeDataset, root: Path, repo_id: str, robot_type: str, pa, pq) -> None:
    fps = float(ds.meta["rate_hz"])
    vectors = _vector_features(ds)
    cameras = [camera_of(k) for k in ds.keys if k.endswith("_rgb")]
    tasks: dict[str, int] = {}
    for i in range(ds.num_episodes):
        tasks.setdefault(str(ds.episode_meta(i).get("task") or "unspecified"), len(tasks))

    features = {}
    for name, (keys, names) in vectors.items():
        width = sum(int(np.prod(ds.keys[k]["shape"])) for k in keys)
        features[name] = {"dtype": "float32", "shape": [width], "names": names}
    for cam in cameras:
        h, w, c = ds.keys[f"{cam}_rgb"]["shape"]
        features[f"observation.images.{cam}"] = {"dtype": "image", "shape": [h, w, c],
                                                 "names": ["height", "width", "channels"]}
    if "reward" in ds.keys:
        features["next.reward"] = {"dtype": "float32", "shape": [1], "names": None}
    if "success" in ds.keys:
        features["next.success"] = {"dtype": "bool", "shape": [1], "names": None}
    features["next.done"] = {"dtype": "bool", "shape": [1], "names": None}
    for name, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                        ("index", "int64"), ("task_index", "int64")):
        features[name] = {"dtype": dtype, "shape": [1], "names": None}

    schema = pa.schema([(name, _arrow_type(spec, pa)) for name, spec in features.items()],
                       metadata={"huggingface": json.dumps({"info": {"features": _hf_features(features)}})})
    stats = _Stats(features)
    episode_rows = []
    writer, file_index, file_bytes, index = None, 0, 0, 0

    def data_path(fi: int) -> Path:
        return root / DATA_PATH.format(chunk_index=fi // CHUNKS_SIZE, file_index=fi % CHUNKS_SIZE)

    try:
        for ep in range(ds.num_episodes):
            frames = ds.load_episode(ep)
            meta = ds.episode_meta(ep)
            n = len(next(iter(frames.values())))
            columns = {}
            for name, (keys, _) in vectors.items():
                columns[name] = np.concatenate([frames[k].reshape(n, -1) for k in keys], axis=1).astype(np.float32)
            for cam in cameras:
                columns[f"observation.images.{cam}"] = frames[f"{cam}_rgb"]
            if "reward" in ds.keys:
                columns["next.reward"] = frames["reward"].astype(np.float32).reshape(n)
            if "success" in ds.keys:
                columns["next.success"] = frames["success"].astype(bool).reshape(n)
            done = np.zeros(n, dtype=bool)
            done[-1] = True
            columns["next.done"] = done
            columns["timestamp"] = (np.arange(n) / fps).astype(np.float32)
            columns["frame_index"] = np.arange(n, dtype=np.int64)
            columns["episode_index"] = np.full(n, ep, dtype=np.int64)
            columns["index"] = np.arange(index, index + n, dtype=np.int64)
            columns["task_index"] = np.full(n, tasks[str(meta.get("task") or "unspecified")], dtype=np.int64)
            stats.add(columns)
            table = pa.table({name: _arrow_column(columns[name], features[name], pa) for name in features},
                             schema=schema)
            if writer is not None and file_bytes >= DATA_FILE_MB * 1e6:
                writer.close()
                writer, file_index, file_bytes = None, file_index + 1, 0
            if writer is None:
                path = data_path(file_index)
                path.parent.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(path, schema)
            writer.write_table(table)
            file_bytes += table.nbytes
            episode_rows.append({
                "episode_index": ep, "tasks": [str(meta.get("task") or "unspecified")], "length": n,
                "data/chunk_index": file_index // CHUNKS_SIZE, "data/file_index": file_index % CHUNKS_SIZE,
                "dataset_from_index": index, "dataset_to_index": index + n,
                "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
                "success": bool(meta.get("success")), "source": json.dumps(meta.get("source", {})),
            })
            index += n
    finally:
        if writer is not None:
            writer.close()

    episodes_path = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
    episodes_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(episode_rows), episodes_path)
    _write_tasks(root / "meta" / "tasks.parquet", tasks, pa, pq)
    info = {
        "codebase_version": "v3.0",
        "robot_type": robot_type,
        "total_episodes": ds.num_episodes,
        "total_frames": index,
        "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILE_MB,
        "video_files_size_in_mb": 200,
        "fps": fps,
        "splits": {"train": f"0:{ds.num_episodes}"},
        "data_path": DATA_PATH,
        "video_path": None,
        "features": features,
        "robot_rl": {"repo_id": repo_id, "source": str(ds.root), "joint_names": ds.meta.get("joint_names"),
                     "layout": dict(ds.layout(), keys=ds.keys),  # what `dataset from-lerobot` restores exactly
                     "features": {name: keys for name, (keys, _) in vectors.items()},
                     "not_exported": sorted(k for k in ds.keys if k.endswith("_depth") or k == "points")},
    }
    _write_json(root / "meta" / "info.json", info)
    _write_json(root / "meta" / "stats.json", stats.result())


def _write_tasks(path: Path, tasks: dict[str, int], pa, pq) -> None:
    """tasks.parquet as pandas writes `DataFrame({"task_index": ...}, index=tasks)`: LeRobot reads it
    with pandas and looks tasks up by the index."""
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                     "numpy_type": "int64", "metadata": None},
                    {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode",
                     "numpy_type": "object", "metadata": None}],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    table = pa.table({"task_index": pa.array(list(tasks.values()), pa.int64()),
                      "__index_level_0__": pa.array(list(tasks), pa.string())})
    pq.write_table(table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)}), path)


def _arrow_type(spec: dict, pa):
    if spec["dtype"] == "image":
        return pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    scalar = {"float32": pa.float32(), "int64": pa.int64(), "bool": pa.bool_()}[spec["dtype"]]
    return scalar if spec["shape"] == [1] else pa.list_(scalar, spec["shape"][0])


def _arrow_column(values: np.ndarray, spec: dict, pa):
    if spec["dtype"] == "image":
        import cv2

        pngs = []
        for image in values:
            ok, buf = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))  # cv2 wants BGR
            if not ok:
                raise DataError("PNG encoding failed")
            pngs.append({"bytes": buf.tobytes(), "path": None})
        return pa.array(pngs, type=_arrow_type(spec, pa))
    if spec["shape"] == [1]:
        return pa.array(values.reshape(-1), type=_arrow_type(spec, pa))
    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, spec["shape"][0])


def _hf_features(features: dict) -> dict:
    """The `datasets` Features JSON that LeRobot builds from info.json features."""
    out = {}
    for name, spec in features.items():
        if spec["dtype"] == "image":
            out[name] = {"_type": "Image"}
        elif spec["shape"] == [1]:
            out[name] = {"dtype": spec["dtype"], "_type": "Value"}
        else:
            out[name] = {"feature": {"dtype": spec["dtype"], "_type": "Value"}, "length": spec["shape"][0],
                         "_type": "Sequence"}
    return out


class _Stats:
    """Running min/max/mean/std per feature; images per channel in [0, 1] on sampled frames."""

    def __init__(self, features: dict):
        self.features = features
        self.acc: dict[str, dict] = {}
        self.rng = np.random.default_rng(0)

    def add(self, columns: dict) -> None:
        for name, values in columns.items():
            spec = self.features[name]
            if spec["dtype"] == "image":
                pick = self.rng.choice(len(values), size=min(len(values), max(1, IMAGE_STATS_SAMPLES // 10)),
                                       replace=False)
                x = values[np.sort(pick)].astype(np.float64).transpose(0, 3, 1, 2).reshape(len(pick), 3, -1) / 255.0
                x = x.transpose(1, 0, 2).reshape(3, -1).T  # (pixels, 3)
            else:
                x = values.astype(np.float64).reshape(len(values), -1)
            a = self.acc.setdefault(name, {"n": 0, "sum": 0.0, "sq": 0.0, "min": None, "max": None, "frames": 0})
            a["n"] += len(x)
            a["frames"] += len(values)
            a["sum"] = a["sum"] + x.sum(axis=0)
            a["sq"] = a["sq"] + (x ** 2).sum(axis=0)
            a["min"] = x.min(axis=0) if a["min"] is None else np.minimum(a["min"], x.min(axis=0))
            a["max"] = x.max(axis=0) if a["max"] is None else np.maximum(a["max"], x.max(axis=0))

    def result(self) -> dict:
        out = {}
        for name, a in self.acc.items():
            mean = a["sum"] / a["n"]
            std = np.sqrt(np.maximum(a["sq"] / a["n"] - mean ** 2, 0.0))
            values = {"min": a["min"], "max": a["max"], "mean": mean, "std": std}
            if self.features[name]["dtype"] == "image":
                values = {k: v.reshape(3, 1, 1) for k, v in values.items()}
            out[name] = {k: np.asarray(v).tolist() for k, v in values.items()}
            out[name]["count"] = [int(a["frames"])]
        return out


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2))
