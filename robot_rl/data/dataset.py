"""The episode dataset on disk: one directory, one zarr v3 group per episode, each committed atomically.

Layout::

    root/
      dataset.json               format, version, rate_hz, keys {name: {shape, dtype}}, names {key: [dim names]},
                                 joint_names and robot (an arm's datasets), created_by
      robot.json                 the robot the episodes come from (robot_rl.robot record, URDF included), if known
      episodes/
        episode_000000/          zarr v3 group; its attributes hold {"meta": ..., "length": T}
          joint_pos/             zarr v3 array (T, 8), chunked along time, zstd (low-dim) or blosc (images)
          front_rgb/ ...
        .tmp-<host>-<pid>-<hex>/ an episode being written: readers ignore it, the next writer
                                 removes it once the process that wrote it is gone

Why this shape: the diffusion trainer, the recorder, the value learner and the residual RL demos
share one format. A per-episode group makes appending cheap (nothing existing is rewritten) and
lets a whole episode appear at once with one directory rename, so a reader polling `refresh()`
in another process never sees half an episode and a crash leaves only an ignored temp dir. Any
zarr v3 reader opens the episodes; our own reader of the subset we write (see `_read_array`)
exists because zarr-python spends ~1 ms per small array read, and the trainer reads thousands.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from robot_rl import __version__
from robot_rl.errors import ConfigError, DataError
from robot_rl.robot import RobotModel
from robot_rl.robot.catalog import read_robot_file, robot_for_joints, write_robot_file

FORMAT = "robot_rl.episodes"
FORMAT_VERSION = 1
META_FILE = "dataset.json"
ROBOT_FILE = "robot.json"
EPISODES_DIR = "episodes"
TEMP_PREFIX = ".tmp-"
STALE_FOREIGN_TEMP_S = 24 * 3600.0  # temp dirs of other hosts: we cannot check their pid

_EPISODE_RE = re.compile(r"^episode_(\d{6,})$")
_KEY_RE = re.compile(r"^[A-Za-z0-9_]+$")
_CHUNK_BYTES = 1 << 20  # target compressed-chunk size before compression
_SMALL_FRAME_BYTES = 4096  # frames up to this size are "low-dim": zstd, cached in memory
_CAMERA_SUFFIXES = ("_rgb", "_depth")
_JOINT_SIZED_KEYS = ("joint_pos", "joint_vel", "action")  # one value per entry of joint_names, when it is set
_INTRINSICS_FIELDS = ("fx", "fy", "cx", "cy", "width", "height")


def _fail(path: Path | str, problem: str) -> DataError:
    """A DataError whose message is one line: '<file>: <problem>'."""
    return DataError(f"{path}: {problem}".replace("\n", " "))


def camera_of(key: str) -> str | None:
    """The camera name of an image key ('front_rgb' -> 'front'), or None for other keys."""
    for suffix in _CAMERA_SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)]
    return None


class EpisodeDataset:
    """A directory of episodes; `create` or `open` it, never construct directly."""

    def __init__(self, root: Path, meta: dict):
        self.root = root
        self.meta = meta
        self._names: list[str] = []  # committed episode dir names, in index order
        self._lengths: list[int] = []
        self._metas: list[dict] = []
        self._cache: dict[tuple[int, str], np.ndarray] = {}  # low-dim whole-episode arrays
        self.refresh()

    # ------------------------------------------------------------------ create / open

    @classmethod
    def create(cls, root: str | os.PathLike, meta: Mapping, robot: RobotModel | None = None) -> EpisodeDataset:
        """Make a new dataset at `root` (absent or an empty dir).

        `meta` needs `rate_hz`. An arm's dataset gives `joint_names` (joint_pos, joint_vel and action
        then hold one value per joint); any other data names its dimensions in `names` ({key: [one
        name per value of the last axis]}, e.g. {"action": ["dx", "dy", "dz", "gripper"]}).
        `keys` ({name: {"shape", "dtype"}}) is optional, and when absent the first appended episode
        fixes it. Other entries are kept as given. `robot` (its joint_names must be among the
        robot's) is written beside as robot.json.
        """
        root = Path(root)
        if (root / META_FILE).exists():
            raise _fail(root, "a dataset already exists here; open it or choose another path")
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise _fail(root, "exists and is not an empty directory; choose another path")
        meta = _check_dataset_meta(root, dict(meta))
        if robot is not None:
            meta.setdefault("joint_names", list(robot.joint_names))
            foreign = [n for n in meta["joint_names"] if n not in robot.joint_names]
            if foreign:
                raise _fail(root, f"joint_names {foreign} are not joints of robot {robot.name!r} {list(robot.joint_names)}")
            meta["robot"] = robot.name
        meta.setdefault("created_by", f"robot_rl {__version__}")
        meta.setdefault("created_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
        try:
            (root / EPISODES_DIR).mkdir(parents=True, exist_ok=True)
            if robot is not None:
                write_robot_file(robot, root / ROBOT_FILE)
            _write_json_atomic(root / META_FILE, meta)
        except OSError as e:
            raise _fail(root, f"cannot create dataset: {e.strerror or e}") from e
        return cls(root, meta)

    @classmethod
    def open(cls, root: str | os.PathLike) -> EpisodeDataset:
        """Open an existing dataset; DataError if it is missing or corrupt."""
        root = Path(root)
        return cls(root, _read_dataset_meta(root))

    @classmethod
    def open_or_create(cls, root: str | os.PathLike, meta: Mapping, robot: RobotModel | None = None) -> EpisodeDataset:
        """Open `root` if it holds a dataset (checking joint_names, rate_hz and robot agree), else create it."""
        root = Path(root)
        if not (root / META_FILE).exists():
            return cls.create(root, meta, robot)
        ds = cls.open(root)
        if robot is not None and ds.robot is not None and not ds.robot.same_kinematics(robot):
            raise _fail(root / ROBOT_FILE, f"the dataset's robot {ds.robot.name!r} is not {robot.name!r}; "
                        "use a new dataset path")
        for field in ("joint_names", "rate_hz"):
            if field in meta and _normalise(field, meta[field]) != ds.meta.get(field):
                raise _fail(root / META_FILE, f"{field} {ds.meta.get(field)} differs from the requested "
                            f"{meta[field]}; use a new dataset path")
        return ds

    # ------------------------------------------------------------------ reading

    @property
    def robot(self) -> RobotModel | None:
        """The robot the episodes come from: robot.json, else a shipped robot with exactly the
        dataset's joint_names (datasets from before robot.json), else None (robot unknown)."""
        if not hasattr(self, "_robot"):
            try:
                self._robot = (read_robot_file(self.root / ROBOT_FILE)
                               or (robot_for_joints(self.meta["joint_names"]) if self.meta.get("joint_names") else None))
            except ConfigError as e:
                raise DataError(str(e)) from None
        return self._robot

    @property
    def keys(self) -> dict[str, dict]:
        """{key: {"shape": per-frame shape list, "dtype": str}}; empty until the first episode."""
        return self.meta.get("keys", {})

    def names(self, key: str) -> list[str] | None:
        """The names of `key`'s values (its last axis): `names` in dataset.json, else the joints for
        joint_pos / joint_vel / action of an arm's dataset, else None."""
        named = self.meta.get("names", {}).get(key)
        if named is None and key in _JOINT_SIZED_KEYS and self.meta.get("joint_names"):
            named = self.meta["joint_names"]
        return list(named) if named is not None else None

    def layout(self) -> dict:
        """The dataset.json entries a dataset made from this one inherits (rate, joints, names)."""
        return {k: self.meta[k] for k in ("rate_hz", "joint_names", "names") if k in self.meta}

    @property
    def num_episodes(self) -> int:
        return len(self._names)

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.asarray(self._lengths, dtype=np.int64)

    @property
    def success(self) -> np.ndarray:
        """The success label of every episode, (num_episodes,) bool."""
        return np.asarray([bool(m.get("success")) for m in self._metas], dtype=bool)

    def episode_meta(self, i: int) -> dict:
        return json.loads(json.dumps(self._metas[self._index(i)]))  # a deep copy

    def episode_path(self, i: int) -> Path:
        return self.root / EPISODES_DIR / self._names[self._index(i)]

    def load_episode(self, i: int, keys: Iterable[str] | None = None,
                     frames: slice | None = None) -> dict[str, np.ndarray]:
        """The arrays of episode `i` for `keys` (default all), reading only those keys' files.

        `frames` (a slice along time) reads only the chunks it covers, for streaming over long
        image episodes. Whole low-dim arrays are cached: episodes never change once committed.
        """
        i = self._index(i)
        keys = list(self.keys) if keys is None else list(keys)
        out = {}
        for key in keys:
            spec = self._spec(key)
            cacheable = frames is None and _frame_nbytes(spec) <= _SMALL_FRAME_BYTES
            array = self._cache.get((i, key)) if cacheable else None
            if array is None:
                array = _read_array(self.episode_path(i) / key, frames)
                if list(array.shape[1:]) != list(spec["shape"]) or array.dtype != np.dtype(spec["dtype"]):
                    raise _fail(self.episode_path(i) / key, f"holds {array.dtype} frames of shape "
                                f"{tuple(array.shape[1:])}, {META_FILE} says {spec['dtype']} {tuple(spec['shape'])} "
                                "(a file edited or copied from another dataset?)")
                if frames is None and len(array) != self._lengths[i]:
                    raise _fail(self.episode_path(i) / key, f"holds {len(array)} frames, the episode {self._lengths[i]}")
                if cacheable:
                    self._cache[(i, key)] = array
            out[key] = array.copy() if cacheable else array
        return out

    def iter_episodes(self, keys: Iterable[str] | None = None,
                      episodes: Iterable[int] | None = None) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """(index, frames) for each episode in `episodes` (default all), loading one at a time."""
        keys = None if keys is None else list(keys)
        for i in range(self.num_episodes) if episodes is None else episodes:
            yield int(i), self.load_episode(i, keys)

    def concat_episodes(self, keys: Iterable[str], episodes: Iterable[int] | None = None
                        ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Flat training arrays: ({key: (sum T, ...)}, episode_ends), ends cumulative like Diffusion
        Policy's replay buffer. Filled in place, so images need one copy of memory, not two."""
        keys = list(keys)
        episodes = list(range(self.num_episodes)) if episodes is None else [self._index(i) for i in episodes]
        lengths = np.asarray([self._lengths[i] for i in episodes], dtype=np.int64)
        ends = np.cumsum(lengths)
        total = int(ends[-1]) if len(ends) else 0
        out = {k: np.empty((total, *self._spec(k)["shape"]), dtype=self._spec(k)["dtype"]) for k in keys}
        for i, end, length in zip(episodes, ends, lengths):
            for key, array in self.load_episode(i, keys).items():
                out[key][end - length:end] = array
        return out, ends

    def refresh(self) -> int:
        """Pick up episodes committed (by any process) since the last look; returns how many."""
        self.meta = _read_dataset_meta(self.root)
        episodes_dir = self.root / EPISODES_DIR
        try:
            names = [n for n in os.listdir(episodes_dir) if _EPISODE_RE.match(n)]
        except OSError as e:
            raise _fail(episodes_dir, f"cannot list episodes: {e.strerror or e}") from e
        names.sort(key=lambda n: int(_EPISODE_RE.match(n).group(1)))
        known = set(self._names)
        new = [n for n in names if n not in known]
        for name in new:
            length, meta = _read_episode_attrs(episodes_dir / name)
            self._names.append(name)
            self._lengths.append(length)
            self._metas.append(meta)
        return len(new)

    # ------------------------------------------------------------------ writing

    def append_episode(self, frames: Mapping[str, np.ndarray], meta: Mapping) -> int:
        """Validate, write under a temp name, fsync, and rename into place; returns the index.

        Raises DataError (one line, naming the dataset) when keys, shapes, dtypes, joint_names or
        rate_hz disagree with the dataset, or when the disk refuses the write.
        """
        self.refresh()
        arrays, length = self._check_frames(frames)
        meta = self._check_episode_meta(meta, arrays)
        meta["fingerprint"] = fingerprint = episode_fingerprint(arrays, meta)
        for i, other in enumerate(self._metas):
            if other.get("fingerprint") == fingerprint:
                raise DuplicateEpisode(f"dataset {self.root}: this episode is already its episode {i} "
                                       f"(same frames{', from bag ' + str(other['bag']) if other.get('bag') else ''}); "
                                       "not added twice")
        episodes_dir = self.root / EPISODES_DIR
        temp = episodes_dir / f"{TEMP_PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            if not self.keys:  # the first episode fixes the keys
                self.meta["keys"] = {k: {"shape": list(a.shape[1:]), "dtype": a.dtype.name}
                                     for k, a in arrays.items()}
                _write_json_atomic(self.root / META_FILE, self.meta)
            self.remove_stale_temp()
            _write_episode(temp, arrays, {"meta": meta, "length": length})
            _fsync_tree(temp)
            name = _rename_to_next_episode(temp, episodes_dir)
            fsync_path(episodes_dir)
        except OSError as e:
            shutil.rmtree(temp, ignore_errors=True)
            raise _fail(self.root, f"cannot write episode: {e.strerror or e}") from e
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        self.refresh()
        return self._names.index(name)

    def remove_stale_temp(self) -> list[Path]:
        """Delete temp episode dirs whose writer is gone (crashed); returns what was removed."""
        removed = []
        episodes_dir = self.root / EPISODES_DIR
        host = socket.gethostname()
        for name in os.listdir(episodes_dir):
            if not name.startswith(TEMP_PREFIX):
                continue
            path = episodes_dir / name
            owner_host, _, rest = name[len(TEMP_PREFIX):].rpartition("-")[0].rpartition("-")
            pid = int(rest) if rest.isdigit() else -1
            if owner_host == host:
                stale = pid != os.getpid() and not _pid_alive(pid)
            else:
                try:
                    stale = time.time() - path.stat().st_mtime > STALE_FOREIGN_TEMP_S
                except FileNotFoundError:
                    continue
            if stale:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        return removed

    # ------------------------------------------------------------------ validation

    def _index(self, i: int) -> int:
        n = len(self._names)
        if not -n <= i < n:
            raise IndexError(f"{self.root}: episode {i} out of range ({n} episodes)")
        return int(i) % n

    def _spec(self, key: str) -> dict:
        if key not in self.keys:
            raise _fail(self.root, f"no key '{key}' in this dataset (keys: {', '.join(self.keys) or 'none yet'})")
        return self.keys[key]

    def _check_frames(self, frames: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        """Arrays cast to the dataset dtypes, all of one length T >= 1, keys and shapes matching."""
        if not frames:
            raise _fail(self.root, "episode has no frame keys")
        arrays = {}
        for key, value in frames.items():
            if not isinstance(key, str) or not _KEY_RE.match(key):
                raise _fail(self.root, f"episode key {key!r} is not a plain name (letters, digits, _)")
            array = np.asarray(value)
            if array.ndim == 0:
                raise _fail(self.root, f"episode key '{key}' is a scalar; expected (T, ...) per-frame values")
            arrays[key] = array
        for key in _JOINT_SIZED_KEYS if self.meta.get("joint_names") else ():
            if key in arrays and arrays[key].shape[-1:] != (len(self.meta["joint_names"]),):
                raise _fail(self.root, f"episode key '{key}' has shape {arrays[key].shape}, expected "
                            f"(T, {len(self.meta['joint_names'])}) for the dataset's joint_names")
        for key, named in self.meta.get("names", {}).items():
            if key in arrays and arrays[key].shape[-1:] != (len(named),):
                raise _fail(self.root, f"episode key '{key}' has shape {arrays[key].shape}, but dataset.json "
                            f"names {len(named)} values for it ({', '.join(named)})")
        lengths = {k: a.shape[0] for k, a in arrays.items()}
        length = next(iter(lengths.values()))
        if length == 0 or any(n != length for n in lengths.values()):
            raise _fail(self.root, f"episode keys need one length T >= 1, got {lengths}")
        if self.keys:
            missing = sorted(set(self.keys) - set(arrays))
            extra = sorted(set(arrays) - set(self.keys))
            if missing or extra:
                raise _fail(self.root, f"episode keys differ from the dataset's: missing {missing}, unexpected {extra}")
            for key, array in arrays.items():
                spec = self.keys[key]
                if list(array.shape[1:]) != spec["shape"]:
                    raise _fail(self.root, f"episode key '{key}' has per-frame shape {tuple(array.shape[1:])}, "
                                f"the dataset has {tuple(spec['shape'])}")
                arrays[key] = _cast(self.root, key, array, np.dtype(spec["dtype"]))
        else:
            for key, array in arrays.items():
                target = np.float32 if array.dtype.kind == "f" else array.dtype
                arrays[key] = _cast(self.root, key, array, np.dtype(target))
        for key, array in arrays.items():  # never silently keep NaN actions/states (depth may have holes)
            if array.dtype.kind == "f" and not key.endswith("_depth") and not np.isfinite(array).all():
                raise _fail(self.root, f"episode key '{key}' contains NaN or inf")
        return arrays, length

    def _check_episode_meta(self, meta: Mapping, arrays: Mapping[str, np.ndarray]) -> dict:
        meta = _jsonable(self.root, dict(meta))
        for field in ("joint_names", "rate_hz"):
            if field not in self.meta:
                continue
            if field in meta and _normalise(field, meta[field]) != self.meta[field]:
                raise _fail(self.root, f"episode {field} {meta[field]} do not match the dataset's "
                            f"{self.meta[field]}; record in the dataset's joint order and rate, or use a new dataset")
            meta[field] = self.meta[field]
        if "success" not in meta:
            if "success" not in arrays:
                raise _fail(self.root, "episode meta has no 'success' label and frames have no 'success' key")
            meta["success"] = bool(arrays["success"].any())
        meta["success"] = bool(meta["success"])
        # depth becomes points only through the camera's intrinsics; for colour alone they are a record
        depth = {c for c in (camera_of(k) for k in arrays if k.endswith("_depth")) if c}
        cameras = sorted({c for c in map(camera_of, arrays) if c})
        intrinsics = meta.get("camera_intrinsics", {})
        if cameras and not isinstance(intrinsics, dict):
            raise _fail(self.root, "episode meta camera_intrinsics must be {camera: (fx, fy, cx, cy, width, height)}")
        for cam in cameras:
            if cam in depth or intrinsics.get(cam) is not None:
                meta.setdefault("camera_intrinsics", {})[cam] = _check_intrinsics(self.root, cam, intrinsics.get(cam))
        return meta


def append_new(ds: EpisodeDataset, episodes: Iterable[tuple[Mapping[str, np.ndarray], Mapping]]) -> tuple[int, list[int]]:
    """Append each (frames, meta); one `ds` holds already is skipped. -> (added, indices skipped)."""
    added, skipped = 0, []
    for i, (frames, meta) in enumerate(episodes):
        try:
            ds.append_episode(frames, meta)
            added += 1
        except DuplicateEpisode:
            skipped.append(i)
    return added, skipped


class DuplicateEpisode(DataError):
    """The dataset holds these very frames already (a bag converted twice, a dataset merged with itself)."""


def episode_fingerprint(arrays: Mapping[str, np.ndarray], meta: Mapping | None = None) -> str:
    """A hash of an episode's frames (every key, shape, dtype and byte) and of where it came from
    (the source bag and its time span, when the meta says): the same episode twice, the same print."""
    h = hashlib.sha256()
    sync = (meta or {}).get("sync") or {}
    h.update(json.dumps([(meta or {}).get("bag"), sync.get("start_ns"), sync.get("stop_ns")]).encode())
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:32]


# ---------------------------------------------------------------------- helpers: meta files


def _normalise(field: str, value):
    return [str(n) for n in value] if field == "joint_names" else float(value)


def _check_dataset_meta(root: Path, meta: dict) -> dict:
    if "rate_hz" not in meta:
        raise _fail(root, "dataset meta needs 'rate_hz'")
    try:
        meta["rate_hz"] = _normalise("rate_hz", meta["rate_hz"])
        if "joint_names" in meta:
            meta["joint_names"] = _normalise("joint_names", meta["joint_names"])
    except (TypeError, ValueError):
        raise _fail(root, "dataset meta needs a number rate_hz and a list of joint_names") from None
    if not math.isfinite(meta["rate_hz"]) or meta["rate_hz"] <= 0:
        raise _fail(root, f"dataset meta needs a positive rate_hz, got {meta['rate_hz']}")
    if "joint_names" in meta and not meta["joint_names"]:
        raise _fail(root, "dataset meta joint_names is empty; leave it out for data that is not an arm's joints")
    names = meta.get("names") or {}
    if not isinstance(names, dict) or not all(
            isinstance(k, str) and isinstance(v, (list, tuple)) and v and all(isinstance(n, str) for n in v)
            for k, v in names.items()):
        raise _fail(root, "dataset meta names must be {key: [a name per value of its last axis]}")
    if names:
        meta["names"] = {k: list(v) for k, v in names.items()}
    keys = meta.get("keys") or {}
    for key, spec in keys.items():
        try:
            ok = bool(_KEY_RE.match(key)) and all(int(n) >= 0 for n in spec["shape"])
            np.dtype(spec["dtype"])
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise _fail(root, f"dataset meta key '{key}' needs a plain name and {{'shape': [...], 'dtype': str}}")
    meta["keys"] = {k: {"shape": [int(n) for n in s["shape"]], "dtype": np.dtype(s["dtype"]).name}
                    for k, s in keys.items()}
    for key, named in names.items():
        shape = meta["keys"].get(key, {}).get("shape")
        if shape is not None and shape[-1:] != [len(named)]:
            raise _fail(root, f"dataset meta names {len(named)} values of '{key}', its shape is {shape}")
    return _jsonable(root, meta)


def _read_dataset_meta(root: Path) -> dict:
    path = root / META_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise _fail(root, f"no dataset here ({META_FILE} missing); create one with EpisodeDataset.create "
                    "or `robot-rl collect`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(path, f"unreadable dataset meta ({e}); restore it or recreate the dataset") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _fail(path, f"not a {FORMAT} dataset meta file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise _fail(path, f"format_version {meta.get('format_version')} is not supported "
                    f"(this robot_rl reads {FORMAT_VERSION})")
    if not (root / EPISODES_DIR).is_dir():
        raise _fail(root, f"the '{EPISODES_DIR}' directory is missing")
    return _check_dataset_meta(path, meta)


def _read_episode_attrs(path: Path) -> tuple[int, dict]:
    """(length, meta) from the episode group's zarr.json (plain JSON, no zarr machinery)."""
    try:
        attrs = json.loads((path / "zarr.json").read_text())["attributes"]
        return int(attrs["length"]), dict(attrs["meta"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise _fail(path, f"corrupt episode ({type(e).__name__}: {e}); move it out of the dataset") from e


def _jsonable(path: Path, value):
    """`value` with numpy scalars/arrays turned into JSON types; DataError for anything else."""
    if isinstance(value, dict):
        return {str(k): _jsonable(path, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(path, v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(path, value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise _fail(path, f"meta value {value!r} is not JSON-able (use str, numbers, lists, dicts)")


def _check_intrinsics(root: Path, cam: str, value) -> dict:
    """Intrinsics as {fx, fy, cx, cy, width, height}; accepts the sim's 6-tuple too."""
    if isinstance(value, (list, tuple)) and len(value) == len(_INTRINSICS_FIELDS):
        value = dict(zip(_INTRINSICS_FIELDS, value))
    if not isinstance(value, dict) or any(f not in value for f in _INTRINSICS_FIELDS):
        raise _fail(root, f"episode has depth or images from camera '{cam}' but meta camera_intrinsics['{cam}'] "
                    f"is missing or not (fx, fy, cx, cy, width, height)")
    return {f: value[f] for f in value}


def _write_json_atomic(path: Path, value: dict) -> None:
    temp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(temp, "w") as f:
            json.dump(value, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    fsync_path(path.parent)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------- helpers: arrays


def _frame_nbytes(spec: dict) -> int:
    return int(np.prod(spec["shape"], dtype=np.int64)) * np.dtype(spec["dtype"]).itemsize


def _cast(root: Path, key: str, array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if array.dtype == dtype:
        return array
    if not np.can_cast(array.dtype, dtype, casting="same_kind"):
        raise _fail(root, f"episode key '{key}' has dtype {array.dtype}, the dataset stores {dtype}")
    return array.astype(dtype)


def _write_episode(path: Path, arrays: Mapping[str, np.ndarray], attrs: dict) -> None:
    """One zarr v3 group; arrays chunked along time only (~1 MiB), every chunk written."""
    group = zarr.open_group(path, mode="w-", zarr_format=3, attributes=attrs)
    for key, array in arrays.items():
        frame_bytes = max(1, array[:1].nbytes)
        chunk_t = int(min(len(array), max(1, _CHUNK_BYTES // frame_bytes)))
        if frame_bytes <= _SMALL_FRAME_BYTES:
            compressor = ZstdCodec(level=3)
        else:
            compressor = BloscCodec(cname="zstd", clevel=3, shuffle="shuffle", typesize=array.dtype.itemsize)
        group.create_array(key, data=np.ascontiguousarray(array), chunks=(chunk_t, *array.shape[1:]),
                           compressors=compressor, config={"write_empty_chunks": True})


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a directory's entries: what a rename changed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    """Flush every file and directory under `path`, so a power cut after the rename keeps the data."""
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_path(Path(dirpath))


def _rename_to_next_episode(temp: Path, episodes_dir: Path) -> str:
    """Rename `temp` to the next free episode name; rename fails on a non-empty target, so two
    writers racing for one name cannot both win, and the loser takes the next name."""
    while True:
        numbers = [int(m.group(1)) for m in map(_EPISODE_RE.match, os.listdir(episodes_dir)) if m]
        name = f"episode_{max(numbers, default=-1) + 1:06d}"
        try:
            os.rename(temp, episodes_dir / name)
            return name
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise


_DECODERS = {"zstd": numcodecs.Zstd(), "blosc": numcodecs.Blosc()}


def _is_our_layout(meta: dict) -> bool:
    """True for arrays as `_write_episode` writes them: regular grid chunked along axis 0 only,
    default '/' chunk keys, little-endian bytes then at most one zstd or blosc codec."""
    codecs = meta["codecs"]
    key_encoding = meta["chunk_key_encoding"]
    return (meta["chunk_grid"]["name"] == "regular"
            and meta["chunk_grid"]["configuration"]["chunk_shape"][1:] == meta["shape"][1:]
            and key_encoding["name"] == "default"
            and key_encoding.get("configuration", {}).get("separator", "/") == "/"
            and not meta.get("storage_transformers")
            and 1 <= len(codecs) <= 2 and codecs[0]["name"] == "bytes"
            and codecs[0].get("configuration", {}).get("endian", "little") == "little"
            and (len(codecs) == 1 or codecs[1]["name"] in _DECODERS))


def _read_array(path: Path, frames: slice | None = None) -> np.ndarray:
    """Read rows `frames` (default all) of one zarr v3 array, decoding its chunk files directly.

    Why not zarr-python: it spends ~1 ms per small array in its async machinery, and the trainer
    reads thousands (200 episodes x 8 keys). Arrays in any other layout (rewritten by another
    tool) and strided slices still go through zarr.
    """
    path = os.fspath(path)
    try:
        with open(os.path.join(path, "zarr.json"), "rb") as f:
            meta = json.loads(f.read())
        shape, dtype = meta["shape"], np.dtype(meta["data_type"])
        chunk_t = meta["chunk_grid"]["configuration"]["chunk_shape"][0]
        ours = _is_our_layout(meta)
    except FileNotFoundError:
        raise _fail(path, "array missing; the episode is corrupt, move it out of the dataset") from None
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise _fail(path, f"unreadable array metadata ({type(e).__name__}: {e})") from e
    rows = range(shape[0])[frames if frames is not None else slice(None)]
    if not ours or rows.step != 1:
        return np.asarray(zarr.open_array(path, mode="r")[frames if frames is not None else slice(None)])
    decoder = _DECODERS[meta["codecs"][1]["name"]] if len(meta["codecs"]) == 2 else None
    chunk_shape = (chunk_t, *shape[1:])
    inner_keys = "/0" * (len(shape) - 1)  # chunk (c, 0, 0, ...) lives at c/<c>/0/0...
    out = np.empty((len(rows), *shape[1:]), dtype=dtype)
    if not rows:
        return out
    for c in range(rows.start // chunk_t, -(-rows.stop // chunk_t)):
        chunk_file = f"{path}/c/{c}{inner_keys}"
        try:
            with open(chunk_file, "rb") as f:
                raw = f.read()
            chunk = np.frombuffer(decoder.decode(raw) if decoder else raw, dtype=dtype.newbyteorder("<"))
            chunk = chunk.reshape(chunk_shape)
        except (OSError, ValueError, RuntimeError) as e:
            raise _fail(chunk_file, f"unreadable chunk ({type(e).__name__}: {e}); the episode is corrupt, "
                        "move it out of the dataset") from e
        lo, hi = max(rows.start, c * chunk_t), min(rows.stop, (c + 1) * chunk_t)
        out[lo - rows.start:hi - rows.start] = chunk[lo - c * chunk_t:hi - c * chunk_t]
    return out
