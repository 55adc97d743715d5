"""numpy <-> ROS 2 message conversions: the only place that knows message layouts.

Arrays go through the buffer protocol (array.array from bytes, np.frombuffer), never a Python
loop per element, so a 640x480 image or a 50k-point cloud converts in about a millisecond.
"""
from __future__ import annotations

import array
from typing import Sequence

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Pose, PoseArray
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState, PointCloud2, PointField
from std_msgs.msg import Float64MultiArray, Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from robot_rl.errors import DataError

# ---------------------------------------------------------------- time


def to_time(seconds: float) -> Time:
    """Seconds (float, >= 0) -> builtin_interfaces/Time."""
    ns = int(round(float(seconds) * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def from_time(msg: Time) -> float:
    return msg.sec + msg.nanosec * 1e-9


def to_duration(seconds: float) -> Duration:
    ns = int(round(float(seconds) * 1e9))
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def from_duration(msg: Duration) -> float:
    return msg.sec + msg.nanosec * 1e-9


def header(stamp: float | Time, frame_id: str = "") -> Header:
    return Header(stamp=stamp if isinstance(stamp, Time) else to_time(stamp), frame_id=frame_id)


def clock_to_msg(seconds: float) -> Clock:
    return Clock(clock=to_time(seconds))


def _doubles(values) -> array.array:
    a = array.array("d")
    a.frombytes(np.ascontiguousarray(values, dtype=np.float64).reshape(-1).tobytes())
    return a


def _f64(buf) -> np.ndarray:
    """A float64 array copied out of a message field (so the caller may modify it)."""
    return np.frombuffer(buf, dtype=np.float64).copy() if len(buf) else np.zeros(0)


# ---------------------------------------------------------------- joints and commands


def joint_state_to_msg(names: Sequence[str], position, velocity=None, effort=None,
                       stamp: float = 0.0, frame_id: str = "") -> JointState:
    msg = JointState(header=header(stamp, frame_id), name=list(names))
    msg.position = _doubles(position)
    if velocity is not None:
        msg.velocity = _doubles(velocity)
    if effort is not None:
        msg.effort = _doubles(effort)
    return msg


def joint_state_from_msg(msg: JointState):
    """-> (names tuple, position, velocity, effort); missing fields are empty arrays."""
    return tuple(msg.name), _f64(msg.position), _f64(msg.velocity), _f64(msg.effort)


def joints_from_msg(msg: JointState, names: Sequence[str]):
    """-> (stamp s, position, velocity) in `names` order, matched by name; velocity is zeros when
    the message carries none. A joint of `names` missing from the message raises DataError."""
    names_in, position, velocity, _ = joint_state_from_msg(msg)
    q = reorder(names_in, position, names)
    v = reorder(names_in, velocity, names) if len(velocity) == len(names_in) else np.zeros(len(names))
    return from_time(msg.header.stamp), q, v


def reorder(names_in: Sequence[str], values, names_out: Sequence[str]) -> np.ndarray:
    """Values given for `names_in`, returned in `names_out` order (by name, never position)."""
    values = np.asarray(values)
    if len(values) != len(names_in):
        raise DataError(f"{len(names_in)} joint names but {len(values)} values")
    index = {n: i for i, n in enumerate(names_in)}
    missing = [n for n in names_out if n not in index]
    if missing:
        raise DataError(f"joints {missing} missing from message with joints {list(names_in)}")
    return values[[index[n] for n in names_out]]


def array_to_msg(values) -> Float64MultiArray:
    msg = Float64MultiArray()
    msg.data = _doubles(values)
    return msg


def array_from_msg(msg: Float64MultiArray) -> np.ndarray:
    return _f64(msg.data)


def trajectory_to_msg(names: Sequence[str], times, positions, stamp: float = 0.0) -> JointTrajectory:
    """times (T,) seconds from start, positions (T, n) -> JointTrajectory."""
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    positions = np.asarray(positions, dtype=np.float64).reshape(len(times), len(names))
    msg = JointTrajectory(header=header(stamp), joint_names=list(names))
    points = []
    for t, q in zip(times, positions):
        p = JointTrajectoryPoint(time_from_start=to_duration(t))
        p.positions = _doubles(q)
        points.append(p)
    msg.points = points
    return msg


def trajectory_from_msg(msg: JointTrajectory):
    """-> (names tuple, times (T,), positions (T, n)). Points with the wrong width raise."""
    names = tuple(msg.joint_names)
    n, T = len(names), len(msg.points)
    times = np.array([from_duration(p.time_from_start) for p in msg.points], dtype=np.float64)
    if any(len(p.positions) != n for p in msg.points):
        raise DataError(f"trajectory points must each have {n} positions for joints {list(names)}")
    if len(set(names)) != n:
        raise DataError(f"trajectory joint names repeat: {list(names)}")
    flat = b"".join(p.positions.tobytes() for p in msg.points)
    return names, times, np.frombuffer(flat, dtype=np.float64).reshape(T, n).copy()


# ---------------------------------------------------------------- images and cameras

_ENCODINGS = {"rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "mono8": (np.uint8, 1),
              "32FC1": (np.float32, 1), "16UC1": (np.uint16, 1)}


def image_to_msg(image: np.ndarray, stamp: float = 0.0, frame_id: str = "",
                 encoding: str | None = None) -> Image:
    """(H, W, 3) uint8 -> rgb8; (H, W) float -> 32FC1 (depth in metres); (H, W) uint8 -> mono8."""
    image = np.asarray(image)
    if encoding is None:
        if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
            encoding = "rgb8"
        elif image.ndim == 2 and image.dtype == np.uint8:
            encoding = "mono8"
        elif image.ndim == 2 and np.issubdtype(image.dtype, np.floating):
            encoding = "32FC1"
        else:
            raise DataError(f"no image encoding for shape {image.shape} dtype {image.dtype}")
    dtype, channels = _ENCODINGS[encoding]
    image = np.ascontiguousarray(image, dtype=dtype)
    h, w = image.shape[:2]
    msg = Image(header=header(stamp, frame_id), height=h, width=w, encoding=encoding,
                is_bigendian=0, step=w * channels * image.itemsize)
    data = array.array("B")
    data.frombytes(image.tobytes())
    msg.data = data
    return msg


def image_from_msg(msg: Image) -> np.ndarray:
    """Image -> (H, W, C) or (H, W) array, honouring row padding (step) and byte order."""
    if msg.encoding not in _ENCODINGS:
        raise DataError(f"unsupported image encoding {msg.encoding!r}; expected one of {list(_ENCODINGS)}")
    dtype, channels = _ENCODINGS[msg.encoding]
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    row = msg.width * channels * dt.itemsize
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if msg.step < row or len(buf) < msg.step * msg.height:
        raise DataError(f"image data too short for {msg.width}x{msg.height} {msg.encoding}")
    rows = buf[: msg.step * msg.height].reshape(msg.height, msg.step)[:, :row]
    out = np.array(np.ascontiguousarray(rows).view(dt), dtype=dtype)  # own copy, native order
    shape = (msg.height, msg.width, channels) if channels > 1 else (msg.height, msg.width)
    return out.reshape(shape)


def camera_info_to_msg(fx: float, fy: float, cx: float, cy: float, width: int, height: int,
                       stamp: float = 0.0, frame_id: str = "") -> CameraInfo:
    """Pinhole intrinsics (no distortion) -> CameraInfo with K, R = I, P = [K | 0]."""
    msg = CameraInfo(header=header(stamp, frame_id), width=int(width), height=int(height),
                     distortion_model="plumb_bob")
    msg.d = _doubles(np.zeros(5))
    msg.k = np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1], dtype=np.float64)
    msg.r = np.eye(3).reshape(-1)
    msg.p = np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0], dtype=np.float64)
    return msg


def camera_info_from_msg(msg: CameraInfo):
    """-> (fx, fy, cx, cy, width, height), the same tuple as ArmEnv.camera_intrinsics."""
    k = np.asarray(msg.k)
    return float(k[0]), float(k[4]), float(k[2]), float(k[5]), int(msg.width), int(msg.height)


# ---------------------------------------------------------------- point clouds

_XYZRGB = ("x", "y", "z", "r", "g", "b")


def points_to_msg(points: np.ndarray, stamp: float = 0.0, frame_id: str = "world") -> PointCloud2:
    """(N, 3) xyz or (N, 6) xyz + rgb in [0, 1] -> PointCloud2 with float32 fields."""
    points = np.ascontiguousarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] not in (3, 6):
        raise DataError(f"points must be (N, 3) or (N, 6), got {points.shape}")
    c = points.shape[1]
    fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, name in enumerate(_XYZRGB[:c])]
    msg = PointCloud2(header=header(stamp, frame_id), height=1, width=len(points),
                      fields=fields, is_bigendian=False, point_step=4 * c,
                      row_step=4 * c * len(points), is_dense=bool(np.all(np.isfinite(points))))
    data = array.array("B")
    data.frombytes(points.tobytes())
    msg.data = data
    return msg


def points_from_msg(msg: PointCloud2) -> np.ndarray:
    """PointCloud2 with float32 x, y, z (and r, g, b if present) -> (N, 3) or (N, 6) float32."""
    by_name = {f.name: f for f in msg.fields}
    names = [n for n in _XYZRGB if n in by_name]
    if names[:3] != ["x", "y", "z"]:
        raise DataError(f"point cloud needs float32 x, y, z fields, has {list(by_name)}")
    if len(names) != 6:
        names = names[:3]
    if any(by_name[n].datatype != PointField.FLOAT32 for n in names):
        raise DataError("point cloud fields x, y, z, r, g, b must be float32")
    if msg.point_step < max(by_name[k].offset for k in names) + 4 or msg.row_step < msg.width * msg.point_step:
        raise DataError(f"point cloud point_step {msg.point_step} / row_step {msg.row_step} too small for its fields")
    endian = ">" if msg.is_bigendian else "<"
    dtype = np.dtype({"names": names, "formats": [endian + "f4"] * len(names),
                      "offsets": [by_name[n].offset for n in names], "itemsize": msg.point_step})
    n = msg.width * msg.height
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if len(buf) < msg.height * msg.row_step:
        raise DataError(f"point cloud data has {len(buf)} bytes for {msg.height} rows of {msg.row_step}")
    if msg.height > 1 and msg.row_step != msg.width * msg.point_step:  # padded rows
        buf = buf[: msg.height * msg.row_step].reshape(msg.height, msg.row_step)[:, : msg.width * msg.point_step]
        buf = np.ascontiguousarray(buf).reshape(-1)
    rec = buf[: n * msg.point_step].view(dtype)
    out = np.empty((n, len(names)), dtype=np.float32)
    for i, name in enumerate(names):  # a loop over fields, not points
        out[:, i] = rec[name]
    if not np.all(np.isfinite(out)):
        raise DataError(f"point cloud has {int((~np.isfinite(out)).any(axis=1).sum())} non-finite points "
                        "(filter them before the policy)")
    return out


# ---------------------------------------------------------------- poses


def poses_to_msg(poses: np.ndarray, stamp: float = 0.0, frame_id: str = "world") -> PoseArray:
    """(K, 7) [x y z qw qx qy qz] -> PoseArray (one Pose object per row; K is small)."""
    poses = np.asarray(poses, dtype=np.float64).reshape(-1, 7)
    msg = PoseArray(header=header(stamp, frame_id))
    out = []
    for x, y, z, qw, qx, qy, qz in poses.tolist():
        p = Pose()
        p.position.x, p.position.y, p.position.z = x, y, z
        p.orientation.w, p.orientation.x, p.orientation.y, p.orientation.z = qw, qx, qy, qz
        out.append(p)
    msg.poses = out
    return msg


def poses_from_msg(msg: PoseArray) -> np.ndarray:
    """PoseArray -> (K, 7) [x y z qw qx qy qz]; a non-finite pose raises DataError."""
    out = np.array([[p.position.x, p.position.y, p.position.z, p.orientation.w,
                     p.orientation.x, p.orientation.y, p.orientation.z] for p in msg.poses],
                   dtype=np.float64).reshape(-1, 7)
    if not np.all(np.isfinite(out)):
        raise DataError(f"non-finite object poses: {np.flatnonzero(~np.isfinite(out).all(axis=1)).tolist()}")
    return out
