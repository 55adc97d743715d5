"""`robot-rl dataset from-lerobot`: a local LeRobot v3.0 dataset (parquet + MP4) as an episode dataset.

Which LeRobot feature becomes which key:

* a dataset `robot-rl dataset export` wrote: the keys, shapes and names it came from (info.json's
  robot_rl notes), so export -> import gives the same frames back;
* any other: `action` -> action, `next.reward` -> reward, `next.success` -> success,
  `observation.images.<cam>` (or any image / video feature) -> `<cam>_rgb` (H, W, 3) uint8,
  `observation.<name>` -> `<name>` with dots as underscores (observation.state -> state), each
  with the feature's `names` as the names of its values. `--map FEATURE=KEY` chooses another key
  (e.g. observation.state=joint_pos for an arm whose state is its joint positions).

Videos are decoded with the ffmpeg that imageio-ffmpeg ships (AV1, H.264, HEVC, VP9), file by
file in order, frame i of an episode at its `from_timestamp` + i / fps; `--image-size` resizes.
Depth videos, bookkeeping columns (timestamp, frame_index, index, task_index, next.done) and
variable-length features are not carried over. An episode's success is `next.success` when the
dataset has it, else the episode is a demonstration, labelled successful (said in its meta).
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from robot_rl.data.dataset import EpisodeDataset, append_new
from robot_rl.data.lerobot import FRAME_KEYS
from robot_rl.errors import DataError

BOOKKEEPING = {"timestamp", "frame_index", "episode_index", "index", "task_index", "next.done"}
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_]")


def import_lerobot(root, out, mapping: Mapping[str, str] | None = None, image_size: tuple[int, int] | None = None,
                   log=print) -> EpisodeDataset:
    """Append every episode of the LeRobot v3 dataset at `root` to the dataset `out`; returns it.
    An episode `out` already holds (the same frames) is skipped and counted."""
    reader = LeRobotReader(root, mapping, image_size)
    ds = EpisodeDataset.open_or_create(out, reader.layout)
    added, skipped = append_new(ds, reader.episodes())
    log(f"{added} of {reader.num_episodes} LeRobot episodes into {out} ({ds.num_episodes} in all"
        f"{f'; {len(skipped)} already there (same frames), skipped' if skipped else ''})")
    return ds


class LeRobotReader:
    """A local LeRobot v3.0 dataset, episode by episode, as our keys: `layout` (dataset.json entries)
    and `episodes()` -> (frames, meta) pairs, videos decoded as they are reached."""

    def __init__(self, root, mapping: Mapping[str, str] | None = None, image_size: tuple[int, int] | None = None):
        import pyarrow.parquet as pq

        self.root, self.image_size, self._pq = Path(root), image_size, pq
        self.info = _read_info(self.root)
        notes = self.info.get("robot_rl")
        self.ours = notes if isinstance(notes, dict) and "features" in notes and "layout" in notes else None
        self.features = {name: spec for name, spec in self.info["features"].items()
                         if name not in BOOKKEEPING and isinstance(spec, dict)}
        self.keys = _keys_for(self.features, self.ours, dict(mapping or {}), self.root)
        self.rows = _episode_rows(self.root, pq)
        self.tasks = _tasks(self.root, pq)

    @property
    def num_episodes(self) -> int:
        return len(self.rows)

    @property
    def layout(self) -> dict:
        if self.ours:  # our own export: the dataset it came from
            return {k: v for k, v in self.ours["layout"].items() if k != "keys"}
        names = {key: n for f, key in self.keys.items() if isinstance(key, str) and (n := _names(self.features[f]))
                 and len(n) == int(np.prod(self.features[f]["shape"]))}
        return {"rate_hz": float(self.info["fps"]), **({"names": names} if names else {})}

    def episodes(self) -> Iterator[tuple[dict, dict]]:
        videos = _VideoFiles(self.root, self.info, self.image_size)
        try:
            for path, rows in _by_data_file(self.root, self.info, self.rows):
                table = self._pq.read_table(path)
                column_episode = table.column("episode_index").to_numpy()
                for row in rows:
                    ep = int(row["episode_index"])
                    sel = np.flatnonzero(column_episode == ep)
                    if len(sel) != int(row["length"]):
                        raise DataError(f"{path}: episode {ep} has {len(sel)} frames, meta/episodes says {row['length']}")
                    frames = self._frames(table.take(sel), row, path, videos)
                    yield frames, _episode_meta(row, frames, self.tasks, self.root, ep)
        finally:
            videos.close()

    def _frames(self, part, row: dict, path: Path, videos: _VideoFiles) -> dict[str, np.ndarray]:
        n, frames = len(part), {}
        for feature, key in self.keys.items():
            dtype = self.features[feature]["dtype"]
            if dtype == "video":
                frames[key] = videos.frames(feature, row, n)
            elif dtype == "image":
                frames[key] = _images(part.column(feature).to_pylist(), self.root, self.image_size, feature)
            elif isinstance(key, list):  # one feature back into the keys it was made of (our export)
                frames.update(_split(_numeric(part.column(feature), feature, path), key, self.ours["layout"]["keys"]))
            else:
                values = _numeric(part.column(feature), feature, path)
                frames[key] = values.reshape(n) if key in FRAME_KEYS else values
        return frames


def _read_info(root: Path) -> dict:
    path = root / "meta" / "info.json"
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{root}: no meta/info.json; pass the folder of a local LeRobot dataset") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable ({e})") from None
    version = str(info.get("codebase_version", "?"))
    if not version.startswith("v3"):
        raise DataError(f"{path}: codebase_version {version}; this reads LeRobot v3.0 (convert older ones with "
                        "LeRobot's convert_dataset_v21_to_v30)")
    for field in ("fps", "features", "data_path"):
        if field not in info:
            raise DataError(f"{path}: no '{field}'; not a LeRobot v3.0 info.json")
    return info


def _keys_for(features: dict, ours: dict | None, mapping: dict, root: Path) -> dict[str, str | list[str]]:
    """LeRobot feature -> our key (or, for our own export, the list of keys it concatenated)."""
    unknown = sorted(set(mapping) - set(features))
    if unknown:
        raise DataError(f"{root}: --map names feature(s) {unknown} the dataset does not have "
                        f"(features: {', '.join(features)})")
    keys: dict[str, str | list[str]] = {}
    for name, spec in features.items():
        if name in mapping:
            keys[name] = mapping[name]
        elif ours and name in ours["features"]:
            keys[name] = list(ours["features"][name])
        elif name in FRAME_KEYS.values():
            keys[name] = next(k for k, v in FRAME_KEYS.items() if v == name)
        elif name == "action":
            keys[name] = "action"
        elif spec.get("dtype") in ("image", "video"):
            if (spec.get("info") or {}).get("video.is_depth_map"):
                continue
            keys[name] = _KEY_CHARS.sub("_", name.rsplit(".", 1)[-1]) + "_rgb"
        elif name.startswith("observation."):
            keys[name] = _KEY_CHARS.sub("_", name[len("observation."):])
        if name in keys and spec.get("dtype") not in ("image", "video") and len(spec.get("shape", [])) > 1:
            keys.pop(name)  # per-frame matrices have no convention: not carried over
    flat = [k for v in keys.values() for k in (v if isinstance(v, list) else [v])]
    if "action" not in flat:
        raise DataError(f"{root}: no 'action' feature (features: {', '.join(features)}); "
                        "name the one that is with --map FEATURE=action")
    twice = sorted({k for k in flat if flat.count(k) > 1})
    if twice:
        raise DataError(f"{root}: several features become key(s) {twice}; choose distinct keys with --map")
    return keys


def _names(spec: dict) -> list[str] | None:
    """A feature's names: a list, or {"motors": [...]} (LeRobot v2 habit); None for axis names."""
    names = spec.get("names")
    if isinstance(names, dict) and len(names) == 1:
        names = next(iter(names.values()))
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return None
    return None if names in (["height", "width", "channels"], ["height", "width", "channel"]) else list(names)


def _episode_rows(root: Path, pq) -> list[dict]:
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise DataError(f"{root}: no meta/episodes/chunk-*/file-*.parquet; not a LeRobot v3.0 dataset")
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    for r in rows:
        if "episode_index" not in r or "length" not in r:
            raise DataError(f"{root}: meta/episodes rows need episode_index and length")
    return sorted(rows, key=lambda r: int(r["episode_index"]))


def _tasks(root: Path, pq) -> dict[int, str]:
    path = root / "meta" / "tasks.parquet"
    if not path.exists():
        return {}
    table = pq.read_table(path).to_pydict()
    labels = table.get("task") or table.get("__index_level_0__") or []
    return dict(zip(table.get("task_index", []), labels))


def _by_data_file(root: Path, info: dict, episodes: list[dict]) -> Iterator[tuple[Path, list[dict]]]:
    groups: dict[Path, list[dict]] = {}
    for row in episodes:
        path = root / info["data_path"].format(chunk_index=int(row.get("data/chunk_index", 0)),
                                               file_index=int(row.get("data/file_index", 0)))
        groups.setdefault(path, []).append(row)
    for path, rows in groups.items():
        if not path.exists():
            raise DataError(f"{path}: missing (meta/episodes names it for episode {rows[0]['episode_index']})")
        yield path, rows


def _numeric(column, feature: str, path: Path) -> np.ndarray:
    import pyarrow as pa

    if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type) or pa.types.is_large_list(column.type):
        combined = column.combine_chunks()
        lengths = set(combined.value_lengths().to_pylist()) if hasattr(combined, "value_lengths") else {column.type.list_size}
        if len(lengths) != 1:
            raise DataError(f"{path}: feature {feature} has rows of different lengths {sorted(lengths)[:5]}")
        return combined.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1)
    return column.to_numpy().reshape(len(column), -1)


def _split(values: np.ndarray, keys: list[str], shapes: dict) -> dict[str, np.ndarray]:
    out, start = {}, 0
    for key in keys:
        shape = shapes[key]["shape"]
        width = int(np.prod(shape))
        out[key] = values[:, start:start + width].reshape(len(values), *shape)
        start += width
    return out


def _images(cells: list, root: Path, size, feature: str) -> np.ndarray:
    import cv2

    frames = []
    for cell in cells:
        data = (cell or {}).get("bytes")
        if data is None and (cell or {}).get("path"):
            data = (root / cell["path"]).read_bytes()
        image = cv2.imdecode(np.frombuffer(data or b"", np.uint8), cv2.IMREAD_COLOR) if data else None
        if image is None:
            raise DataError(f"{root}: feature {feature} holds an image that does not decode")
        frames.append(_resize(image[..., ::-1], size))
    return np.stack(frames)


def _resize(image: np.ndarray, size) -> np.ndarray:
    import cv2

    if size is None or (image.shape[1], image.shape[0]) == tuple(size):
        return np.ascontiguousarray(image)
    return cv2.resize(image, tuple(int(v) for v in size), interpolation=cv2.INTER_AREA)


class _VideoFiles:
    """Frames of each (video feature, file), decoded in order once; an episode takes its span."""

    def __init__(self, root: Path, info: dict, size):
        self.root, self.info, self.size = root, info, size
        self.fps = float(info["fps"])
        self._open: dict[str, tuple[Path, Iterator, int]] = {}  # feature -> (file, reader, next frame)

    def frames(self, feature: str, row: dict, n: int) -> np.ndarray:
        chunk = int(row.get(f"videos/{feature}/chunk_index", 0))
        file = int(row.get(f"videos/{feature}/file_index", 0))
        if not self.info.get("video_path"):
            raise DataError(f"{self.root}: feature {feature} is a video but info.json has no video_path")
        path = self.root / self.info["video_path"].format(video_key=feature, chunk_index=chunk, file_index=file)
        first = int(round(float(row.get(f"videos/{feature}/from_timestamp", 0.0)) * self.fps))
        reader, position = self._reader(feature, path, first)
        out = []
        try:
            while position < first:
                next(reader)
                position += 1
            for _ in range(n):
                out.append(_resize(next(reader), self.size))
                position += 1
        except StopIteration:
            raise DataError(f"{path}: ends before frame {position} (episode {row['episode_index']} needs "
                            f"{first}..{first + n - 1})") from None
        self._open[feature] = (path, reader, position)
        return np.stack(out)

    def _reader(self, feature: str, path: Path, first: int) -> tuple[Iterator, int]:
        if feature in self._open:
            open_path, reader, position = self._open[feature]
            if open_path == path and position <= first:
                return reader, position
            reader.close()
        if not path.exists():
            raise DataError(f"{path}: missing (the episodes' metadata names it for {feature})")
        frames = _decode(path)
        self._open[feature] = (path, frames, 0)
        return frames, 0

    def close(self) -> None:
        for _, reader, _ in self._open.values():
            reader.close()
        self._open.clear()


def _decode(path: Path) -> Iterator[np.ndarray]:
    """The video's frames as (H, W, 3) uint8, in order; closing this stops ffmpeg."""
    import imageio_ffmpeg

    raw = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        w, h = next(raw)["size"]
        for frame in raw:
            yield np.frombuffer(frame, np.uint8).reshape(h, w, 3)
    finally:
        raw.close()


def _episode_meta(row: dict, frames: dict, tasks: dict[int, str], root: Path, ep: int) -> dict:
    listed = row.get("tasks")
    task = listed[0] if isinstance(listed, list) and listed else tasks.get(0, "")
    meta = {"task": str(task), "lerobot": {"dataset": str(root), "episode_index": ep}}
    if "success" in frames:
        meta["success"] = bool(np.asarray(frames["success"]).any())
    elif "success" in row and row["success"] is not None:
        meta["success"] = bool(row["success"])
    else:
        meta["success"], meta["success_assumed"] = True, "a demonstration (no next.success)"
    if isinstance(row.get("source"), str):
        try:
            meta["source"] = json.loads(row["source"])
        except json.JSONDecodeError:
            pass
    return meta
