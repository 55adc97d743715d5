"""Align topic streams on one clock at the dataset rate: the live recorder and `from-bag` both
use this module, fed the same message sequence, so they make the same episodes. The rules, with
what they tolerate, are in docs/synchronisation.md; in short:

The frame grid: frame n is at G_n = phase + n / rate_hz, phase-locked to the reference topic (joint
states): the middle of the first messages' offsets (a first stamp early or late by jitter does not
shift the grid), following drift and clock jumps (_ReferenceClock). Each reference message
belongs to the frame it is within half a period of; at the frame rate (one message per frame) its
stamp may jitter by up to 40 % of the period; one farther than 45 % is ambiguous and its frame
dropped. A reference faster than the frame rate gives each frame its message nearest G_n.

A message's time is its header stamp when it has a header (and the stamp is set). A message
without one (reward, success, Float64MultiArray commands) gets a time on the stamp clock from its
send time: between the stamped messages sent just before and just after it, and never before the
newest stamp sent before it (MCAP publish_time = the middleware's source timestamp; without
publish times, the bag's log order), which does not depend on the order the recorder took the
topics in.

For each frame and stream, the message picked is:

* `nearest` (observations): the message whose time is closest to the frame time, at most
  `max_age` away either side;
* `last` (the action): the last message of the frame's period, from its reference message's stamp
  to the next frame's (1 ms early) -- the command in effect when the arm moves on to the next
  frame, which is what a forward/position controller executes; a command sent after the joint
  states it answers is timed at or after their stamp, so the label is exact under any jitter the
  grid tolerates. No command in a period: the commander did not act on that observation;
* `hold` (success, a level published every tick or only when it changes): the message within half
  a period of the frame time, else the last one before it;
* `in_force` (a JointTrajectory as the action, `from-bag --actions trajectory`): the latest
  trajectory before the frame's period ends, sampled at the frame's time (linear between points,
  the last point after its end; point j of a chunk stamped s is the command for the frame at
  s + j * dt, as in the chunks this package publishes);

and a stream with `lead = 1` (reward, success) is sampled at the *next* frame's time, so frame k
holds the reward and success that followed action k, like gymnasium's `step()` and
`robot-rl collect`.

Where an episode begins: at its start marker, or -- when `episode_start_topic` is set (the
simulator's /sim/episode_start, a std_msgs/Header stamped with the new episode's first observation)
and such a message comes within `episode_start_window` seconds after the marker -- at that stamp:
the episode is assembled again from its first messages with everything timed before it left out
(the old episode's last frames, before the reset; an observation of another stream up to max_age
before it still counts). So a recorder started just before the reset
keeps the first observation, whichever topic the recorder happened to take first.

Frames before every stream has a message, and after the last one, are trimmed (and counted). A
frame in the middle that lacks something (no reference message, or none for the next frame whose
stamp ends its command period; a stream with nothing in its window; next to a clock jump) is, by
`on_gap`: `drop` -- left out, and listed with its reason in the episode's meta (sync.dropped,
sync.dropped_frames), unless the run of such frames is longer than `max_gap` seconds, which
refuses the episode (the stream stopped); `refuse` -- the episode is refused (EpisodeRefused names
the topic, frames and time); `mark` -- filled from the nearest message of any age and listed in
the meta's gaps. Nothing is filled silently.

Streaming: messages arrive in any interleaving (per topic in arrival order); a stream decides a
frame as soon as it has seen a message a period past the frame's window, so only a window of
messages per topic is held (memory does not grow with 30 Hz images in a long episode), and only
the picked messages are ever deserialised.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from robot_rl.data.episode_points import add_points
from robot_rl.errors import ConfigError, DataError
from robot_rl.perception.depth import DEPTH_SCALE, depth_in_metres
from robot_rl.perception.pointcloud import PointCloudConfig

KINDS = ("joint_state", "image", "depth", "points", "poses", "command", "trajectory", "reward", "success", "camera_info")
MODES = ("nearest", "last", "hold", "in_force")
ON_GAP = ("drop", "refuse", "mark")
ACTIVE_NS = 1_000_000_000  # a stamped topic silent for longer does not hold headerless messages back
LAST_TOLERANCE_NS = 1_000_000  # `last`: periods start 1 ms early (a command stamped just before its frame)

HEADER_TYPE = "std_msgs/msg/Header"  # the episode-start announcement (/sim/episode_start)
MSGTYPES = {  # default message type per stream kind, and the types each kind accepts
    "joint_state": ("sensor_msgs/msg/JointState",),
    "image": ("sensor_msgs/msg/Image",),
    "depth": ("sensor_msgs/msg/Image",),
    "points": ("sensor_msgs/msg/PointCloud2",),
    "poses": ("geometry_msgs/msg/PoseArray",),
    "command": ("std_msgs/msg/Float64MultiArray",),
    "trajectory": ("trajectory_msgs/msg/JointTrajectory",),
    "reward": ("std_msgs/msg/Float32", "std_msgs/msg/Float64"),
    "success": ("std_msgs/msg/Bool",),
    "camera_info": ("sensor_msgs/msg/CameraInfo",),
}


class EpisodeRefused(DataError):
    """An episode with a gap (on_gap='refuse') or no usable frame; the message says why."""


@dataclass(frozen=True)
class Stream:
    topic: str
    kind: str
    name: str = ""  # camera name for image / depth / camera_info streams
    mode: str = "nearest"
    lead: int = 0  # frames: sample at the time of frame k + lead

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"stream {self.topic}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.mode not in MODES:
            raise ConfigError(f"stream {self.topic}: mode must be one of {MODES}, got {self.mode!r}")
        if self.kind in ("image", "depth", "camera_info") and not self.name:
            raise ConfigError(f"stream {self.topic}: {self.kind} streams need a camera name")
        if self.lead < 0:
            raise ConfigError(f"stream {self.topic}: lead must be >= 0")

    @property
    def keys(self) -> tuple[str, ...]:
        """The frame keys this stream fills (joint_state: ee pose keys are added by the config)."""
        return {"joint_state": ("joint_pos", "joint_vel"), "image": (f"{self.name}_rgb",),
                "depth": (f"{self.name}_depth",), "points": ("points",), "poses": ("object_poses",),
                "command": ("action",), "trajectory": ("action",), "reward": ("reward",), "success": ("success",),
                "camera_info": ()}[self.kind]


@dataclass(frozen=True)
class SyncConfig:
    rate_hz: float
    max_age: float  # seconds
    joint_names: tuple[str, ...]
    streams: tuple[Stream, ...]
    on_gap: str = "refuse"
    use_header_stamps: bool = True
    ee_pose: bool = False  # add ee_pos / ee_quat from joint_pos by forward kinematics of `robot`
    robot: str = "arm"  # the robot (robot_rl.robot.load_robot spec) whose kinematics ee_pose uses
    max_gap: float = 1.0  # s: on_gap "drop" refuses an episode whose frames are missing for longer than this
    episode_start_topic: str = ""  # std_msgs/Header stamped with an episode's first observation ('' none)
    episode_start_window: float = 10.0  # s: an announcement this soon after the start marker sets the beginning
    # The policy's `points` (robot_rl/data/episode_points.py): from a camera's depth image, or the
    # points stream's PointCloud2 resampled; where the camera is: a URDF link or a fixed pose.
    points_from_depth: str = ""  # camera whose depth image (+ its camera_info) makes `points`
    camera_link: str = ""  # the URDF link of that camera's optical frame (its pose follows joint_pos)
    camera_pose: tuple[float, ...] = ()  # or x y z qx qy qz qw of the optical frame in the base frame
    num_points: int = 512  # per frame of `points`: voxel grid, then farthest-point sampling
    keep_depth: bool = True  # store points_from_depth's depth images too

    def __post_init__(self):
        from robot_rl.perception.camera_cloud import check_camera_placement

        object.__setattr__(self, "joint_names", tuple(str(n) for n in self.joint_names))
        object.__setattr__(self, "camera_pose", tuple(float(v) for v in self.camera_pose))
        object.__setattr__(self, "streams", tuple(s if isinstance(s, Stream) else Stream(**s) for s in self.streams))
        if not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise ConfigError(f"rate_hz must be > 0, got {self.rate_hz}")
        if not (math.isfinite(self.max_age) and self.max_age > 0):
            raise ConfigError(f"max_age must be > 0 s, got {self.max_age}")
        if not (math.isfinite(self.max_gap) and self.max_gap >= 0):
            raise ConfigError(f"max_gap must be >= 0 s, got {self.max_gap}")
        if self.on_gap not in ON_GAP:
            raise ConfigError(f"on_gap must be one of {ON_GAP}, got {self.on_gap!r}")
        if not (math.isfinite(self.episode_start_window) and self.episode_start_window >= 0):
            raise ConfigError(f"episode_start_window must be >= 0 s, got {self.episode_start_window}")
        if not self.joint_names:
            raise ConfigError("joint_names must not be empty")
        frame_streams = [s for s in self.streams if s.kind != "camera_info"]
        if not frame_streams or frame_streams[0].kind != "joint_state":
            raise ConfigError("the first stream must be the joint_state stream: it is the reference clock")
        topics = [s.topic for s in self.streams]
        if len(set(topics)) != len(topics):
            raise ConfigError(f"a topic appears twice among the streams: {topics}")
        keys = [k for s in frame_streams for k in s.keys]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"two streams fill the same frame key: {keys}")
        if self.ee_pose:
            from robot_rl.robot import load_robot

            robot = load_robot(self.robot)
            missing = [j for j in robot.arm_joints if j not in self.joint_names]
            if missing:
                raise ConfigError(f"ee_pose needs every arm joint of robot {robot.name!r}; joint_names "
                                  f"{list(self.joint_names)} lacks {missing}")
        if self.points_from_depth and not (self.camera_link or self.camera_pose):
            raise ConfigError(f"points_from_depth {self.points_from_depth!r} needs where the camera is: camera_link "
                              "(its optical frame's URDF link) or camera_pose (x y z qx qy qz qw in the base frame)")
        check_camera_placement("depth" if self.points_from_depth else "points", self.camera_link, self.camera_pose)
        if self.num_points <= 0:
            raise ConfigError(f"num_points must be > 0, got {self.num_points}")
        if self.points_from_depth:
            cam = self.points_from_depth
            kinds = {s.kind for s in self.streams if s.name == cam}
            if not {"depth", "camera_info"} <= kinds:
                raise ConfigError(f"points_from_depth {cam!r} needs the camera's depth image and camera_info "
                                  f"streams (/camera/{cam}/depth/image_raw, /camera/{cam}/camera_info)")
            if any(s.kind == "points" for s in self.streams):
                raise ConfigError("points come from points_from_depth or from a points topic, not both")

    @property
    def reference(self) -> Stream:
        return next(s for s in self.streams if s.kind != "camera_info")

    @property
    def frame_streams(self) -> tuple[Stream, ...]:
        return tuple(s for s in self.streams if s.kind != "camera_info")

    @property
    def frame_keys(self) -> list[str]:
        """The keys the synchroniser decodes into each frame."""
        keys = [k for s in self.frame_streams for k in s.keys]
        if self.ee_pose:
            keys[2:2] = ["ee_pos", "ee_quat"]
        return keys

    @property
    def keys(self) -> list[str]:
        """The keys an episode is stored with: the frame keys, with the points made from depth."""
        keys = self.frame_keys
        if self.points_from_depth:
            depth = keys.index(f"{self.points_from_depth}_depth")
            keys[depth:depth + 1] = [f"{self.points_from_depth}_depth", "points"] if self.keep_depth else ["points"]
        return keys

    @property
    def cameras(self) -> list[str]:
        return sorted({s.name for s in self.streams if s.kind in ("image", "depth")})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["joint_names"] = list(self.joint_names)
        d["streams"] = [asdict(s) for s in self.streams]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SyncConfig:
        d = dict(d)
        d["streams"] = tuple(Stream(**s) for s in d["streams"])
        d["joint_names"] = tuple(d["joint_names"])
        d["camera_pose"] = tuple(d.get("camera_pose", ()))
        return cls(**d)


def standard_streams(joint_states_topic: str = "/joint_states",
                     action_topic: str = "/forward_position_controller/commands",
                     cameras=(), depth=False, object_poses_topic: str = "/task/object_poses",
                     reward_topic: str = "/task/reward", success_topic: str = "/task/success",
                     points_topic: str = "") -> tuple[Stream, ...]:
    """The streams of the project's standard topics (ARCHITECTURE.md); '' leaves a topic out.
    `depth`: True for every camera's depth image, or the names of the cameras that have one (a
    name not in `cameras` is a depth camera: depth image and camera_info only)."""
    depth = set(cameras) if depth is True else set(depth or ())
    streams = [Stream(joint_states_topic, "joint_state")]
    if object_poses_topic:
        streams.append(Stream(object_poses_topic, "poses"))
    for cam in list(cameras) + sorted(depth - set(cameras)):  # a camera only in `depth`: no colour image
        if cam in cameras:
            streams.append(Stream(f"/camera/{cam}/image_raw", "image", cam))
        if cam in depth:
            streams.append(Stream(f"/camera/{cam}/depth/image_raw", "depth", cam))
        streams.append(Stream(f"/camera/{cam}/camera_info", "camera_info", cam))
    if points_topic:
        streams.append(Stream(points_topic, "points"))
    if action_topic:
        streams.append(Stream(action_topic, "command", mode="last"))
    if reward_topic:
        streams.append(Stream(reward_topic, "reward", lead=1))
    if success_topic:
        streams.append(Stream(success_topic, "success", mode="hold", lead=1))
    return tuple(streams)


# ---------------------------------------------------------------------------- decoding


class Decoder:
    """Deserialised messages -> frame arrays, checking names, lengths and encodings.

    `deserialize(raw, msgtype)` is the rosbags type store's (a bag's own store for bags).
    """

    def __init__(self, config: SyncConfig, msgtypes: dict[str, str], deserialize: Callable):
        self.config = config
        self.msgtypes = msgtypes
        self.deserialize = deserialize
        self._fk = None

    def decode(self, stream: Stream, raw) -> dict[str, np.ndarray]:
        msgtype = self.msgtypes[stream.topic]
        try:
            msg = self.deserialize(raw, msgtype)
        except DataError:
            raise
        except Exception as e:
            raise DataError(f"topic {stream.topic}: undecodable {msgtype} message ({type(e).__name__}: {e})") from e
        return getattr(self, f"_{stream.kind}")(stream, msg)

    def _joint_state(self, stream, msg):
        names = [str(n) for n in msg.name]
        index = {n: i for i, n in enumerate(names)}
        missing = [n for n in self.config.joint_names if n not in index]
        if missing:
            raise DataError(f"topic {stream.topic}: joint names {names} lack {missing} of joint_names "
                            f"{list(self.config.joint_names)}; record the arm the dataset is for or fix joint_names")
        order = [index[n] for n in self.config.joint_names]
        position = np.asarray(msg.position, dtype=np.float64)
        velocity = np.asarray(msg.velocity, dtype=np.float64)
        if len(position) != len(names):
            raise DataError(f"topic {stream.topic}: {len(position)} positions for {len(names)} joint names")
        if len(velocity) != len(names):
            raise DataError(f"topic {stream.topic}: {len(velocity)} velocities for {len(names)} joint names; "
                            "the dataset needs joint velocities")
        out = {"joint_pos": position[order].astype(np.float32), "joint_vel": velocity[order].astype(np.float32)}
        if self.config.ee_pose:
            out["ee_pos"], out["ee_quat"] = self._ee_pose(position[order])
        return out

    def _ee_pose(self, q: np.ndarray):
        from robot_rl.robot import load_robot
        from robot_rl.robot.kinematics import kinematics_for

        if self._fk is None:
            robot = load_robot(self.config.robot)
            self._fk = (kinematics_for(robot), [self.config.joint_names.index(j) for j in robot.arm_joints])
        kin, arm = self._fk
        pos, quat = kin.tcp_pose(q[arm])
        return pos.astype(np.float32), quat.astype(np.float32)

    def _image_array(self, stream, msg) -> np.ndarray:
        encodings = {"rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
                     "mono8": (np.uint8, 1), "32FC1": (np.float32, 1), "16UC1": (np.uint16, 1)}
        if msg.encoding not in encodings:
            raise DataError(f"topic {stream.topic}: unsupported image encoding {msg.encoding!r} "
                            f"(supported: {', '.join(encodings)})")
        dtype, channels = encodings[msg.encoding]
        dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
        row = msg.width * channels * dt.itemsize
        buf = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
        if msg.step < row or len(buf) < msg.step * msg.height:
            raise DataError(f"topic {stream.topic}: image data too short for {msg.width}x{msg.height} {msg.encoding}")
        rows = buf[: msg.step * msg.height].reshape(msg.height, msg.step)[:, :row]
        image = np.ascontiguousarray(rows).view(dt).astype(dtype, copy=False)
        return image.reshape(msg.height, msg.width, channels)

    def _image(self, stream, msg):
        image = self._image_array(stream, msg)
        if msg.encoding in ("bgr8", "bgra8"):
            image = image[..., 2::-1]
        elif msg.encoding == "rgba8":
            image = image[..., :3]
        elif image.dtype != np.uint8 or image.shape[2] != 3:
            raise DataError(f"topic {stream.topic}: colour image expected (rgb8/bgr8), got {msg.encoding}")
        return {f"{stream.name}_rgb": np.ascontiguousarray(image)}

    def _depth(self, stream, msg):
        if msg.encoding not in DEPTH_SCALE:
            raise DataError(f"topic {stream.topic}: depth image expected (32FC1 metres or 16UC1 mm), got {msg.encoding}")
        return {f"{stream.name}_depth": depth_in_metres(self._image_array(stream, msg)[..., 0], msg.encoding)}

    def _points(self, stream, msg):
        by_name = {f.name: f for f in msg.fields}
        names = [n for n in ("x", "y", "z", "r", "g", "b") if n in by_name]
        if names[:3] != ["x", "y", "z"]:
            raise DataError(f"topic {stream.topic}: point cloud needs x, y, z fields, has {list(by_name)}")
        if len(names) != 6:
            names = names[:3]
        if any(by_name[n].datatype != 7 for n in names):  # 7 = FLOAT32
            raise DataError(f"topic {stream.topic}: point fields must be float32")
        endian = ">" if msg.is_bigendian else "<"
        dtype = np.dtype({"names": names, "formats": [endian + "f4"] * len(names),
                          "offsets": [by_name[n].offset for n in names], "itemsize": msg.point_step})
        n = msg.width * msg.height
        buf = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
        if msg.height > 1 and msg.row_step != msg.width * msg.point_step:
            buf = np.ascontiguousarray(buf.reshape(msg.height, msg.row_step)[:, : msg.width * msg.point_step]).reshape(-1)
        rec = buf[: n * msg.point_step].view(dtype)
        return {"points": np.stack([rec[k].astype(np.float32) for k in names], axis=1)}

    def _poses(self, stream, msg):
        return {"object_poses": np.array([[p.position.x, p.position.y, p.position.z, p.orientation.w,
                                           p.orientation.x, p.orientation.y, p.orientation.z] for p in msg.poses],
                                         dtype=np.float32).reshape(-1, 7)}

    def _command(self, stream, msg):
        data = np.asarray(msg.data, dtype=np.float64)
        if len(data) != len(self.config.joint_names):
            raise DataError(f"topic {stream.topic}: command has {len(data)} values, expected "
                            f"{len(self.config.joint_names)} for joint_names {list(self.config.joint_names)}")
        return {"action": data.astype(np.float32)}

    def trajectory_at(self, stream: Stream, raw, received: int, at: int) -> dict[str, np.ndarray]:
        """A JointTrajectory's positions for joint_names at time `at` (ns): linear between points,
        the last point after its end, like joint_trajectory_controller; it starts at its header
        stamp (0: when it was sent, `received`)."""
        msg = self.deserialize(raw, self.msgtypes[stream.topic])
        names = [str(n) for n in msg.joint_names]
        missing = [n for n in self.config.joint_names if n not in names]
        if missing or not msg.points:
            raise DataError(f"topic {stream.topic}: trajectory for {names} with {len(msg.points)} points lacks "
                            f"{missing or 'points'} of joint_names {list(self.config.joint_names)}")
        start = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec or received
        times = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points])
        positions = np.array([np.asarray(p.positions, dtype=np.float64) for p in msg.points])
        if positions.shape != (len(times), len(names)) or np.any(np.diff(times) <= 0):
            raise DataError(f"topic {stream.topic}: trajectory points must have {len(names)} positions and "
                            "increasing times")
        order = [names.index(n) for n in self.config.joint_names]
        s = (at - start) * 1e-9
        action = [np.interp(s, times, positions[:, j]) for j in order]
        return {"action": np.asarray(action, dtype=np.float32)}

    def _reward(self, stream, msg):
        return {"reward": np.float32(msg.data)}

    def _success(self, stream, msg):
        return {"success": np.bool_(msg.data)}

    def intrinsics(self, stream: Stream, raw) -> list:
        msg = self.deserialize(raw, self.msgtypes[stream.topic])
        k = np.asarray(msg.k, dtype=np.float64)
        return [float(k[0]), float(k[4]), float(k[2]), float(k[5]), int(msg.width), int(msg.height)]


# ---------------------------------------------------------------------------- synchroniser


class _Lane:
    """One stream's window of messages and its decision pointer."""

    __slots__ = ("stream", "buf", "older", "last_t", "k", "seen", "late", "arrivals")

    def __init__(self, stream: Stream):
        self.stream = stream
        self.buf: deque = deque()  # (t, arrival, raw) in arrival order
        self.older = None  # newest message pruned from the window (a fallback for `mark`)
        self.last_t = -(2**63)
        self.k: int | None = None  # next frame to decide
        self.seen = 0
        self.late = 0  # messages older than one already seen on this topic
        self.arrivals = 0


class _ReferenceClock:
    """The reference stream's messages -> one per frame, on a grid phase-locked to them.

    Frame n is at G_n = phase + n * period. The phase starts as the circular mean of the first
    LOOKAHEAD messages' times modulo the period (a first message early or late by jitter does not
    shift the grid) and, while the stream runs at the frame rate, follows each message a little
    (clock drift). Each message belongs to the frame n = round((t - phase) / period); of two, the
    one nearer G_n is kept. A reference stream faster than the frame rate (500 Hz joint states at
    10 Hz) keeps the phase of its first message and gives each frame the message nearest G_n.
    Frame n is final once a message for frame n + 2 has arrived (reordering slack). A paced
    stamp more than JUMP frames back, or that far ahead while the log time hardly moved, is a
    clock jump: the grid follows it (the message is the frame after the previous one).
    """

    LOOKAHEAD = 32  # messages the first phase estimate waits for (bounded jitter: its error ~ 1 / LOOKAHEAD)
    AMBIGUOUS = 0.45  # paced: a reference stamp farther than this (periods) from its frame time is ambiguous
    WINDOW = 32  # paced: the phase is the middle of the latest messages' offsets from the grid
    JUMP = 1.5  # periods: paced stamps going back this far (or forward, see _jumped) are a clock jump

    def __init__(self, period: float):
        self.period = period
        self.phase: float | None = None
        self.paced = True
        self._first: list = []  # (t, arrival, raw, log_t) until the phase is known
        self.frames: dict[int, tuple] = {}  # n -> (t, arrival, raw, grid time and clock epoch when assigned)
        self.final = None  # frames n < final are decided
        self.newest: int | None = None  # the latest frame a message was assigned to
        self._last: tuple[int, int, int] | None = None  # (n, log time, stamp) of the latest message
        self.collisions = 0  # paced: two messages for one frame (duplicates, or jitter beyond half a period)
        self.late = 0  # messages for a frame already decided
        self.jumps = 0  # clock jumps followed
        self.jump_frames: list[int] = []  # the first frame after each jump
        self._recent: deque = deque(maxlen=self.WINDOW)  # paced: (t, n) of the latest messages

    def grid(self, n: int) -> int:
        return int(round(self.phase + n * self.period))

    def index(self, t: int) -> int:
        """The frame a stamp on the current clock belongs to."""
        return int(round((t - self.phase) / self.period))

    def add(self, t: int, arrival: int, raw, log_t: int | None = None) -> None:
        if self.phase is None:
            if not (self._first and self._jumped(t, log_t, self._first[-1][0], self._first[-1][3])):
                self._first.append((t, arrival, raw, log_t))
                if len(self._first) >= self.LOOKAHEAD:
                    self._lock_phase()
                return
            self._lock_phase()  # a jump before the phase is known: lock on the messages before it
        self._assign(t, arrival, raw, log_t)

    def _jumped(self, t: int, log_t: int | None, last_t: int, last_log: int | None) -> bool:
        """Stamps back by more than JUMP periods, or forward by as much while the log time moved 20x
        less (a lock-step sim may run 10x real time; a dropout moves stamps and log times alike)."""
        if log_t is None or last_log is None:
            return False
        dt = t - last_t
        return dt < -self.JUMP * self.period or (dt > self.JUMP * self.period and dt > 20 * max(log_t - last_log, 0))

    def _lock_phase(self) -> None:
        first = sorted(self._first, key=lambda m: (m[0], m[1]))
        self._first = []
        times = np.array([m[0] for m in first], dtype=np.float64)
        t_ref = times[0]
        intervals = np.diff(times)
        self.paced = len(intervals) == 0 or float(np.median(intervals)) > 0.6 * self.period
        if self.paced:  # the middle of the smallest arc (of the period circle) holding every offset:
            r = np.sort(((times - t_ref) / self.period) % 1.0)  # opposite the widest empty arc
            gaps = np.diff(np.concatenate([r, [r[0] + 1.0]]))
            widest = int(np.argmax(gaps))
            start, end = r[(widest + 1) % len(r)], r[widest] + (1.0 if widest + 1 < len(r) else 0.0)
            self.phase = t_ref + ((start + end) / 2 % 1.0) * self.period
            self._recent.extend((t, round((t - self.phase) / self.period)) for t in times)
            self._recenter()
        else:
            self.phase = float(t_ref)
        for m in first:
            self._assign(*m, follow=False)

    def _assign(self, t: int, arrival: int, raw, log_t: int | None, follow: bool = True) -> None:
        n = int(round((t - self.phase) / self.period))
        if self.paced and follow and self._last is not None:
            last_n, last_log, last_t = self._last
            if self._jumped(t, log_t, last_t, last_log):
                self.phase += (n - last_n - 1) * self.period  # the stamps jumped: the grid follows
                self._recent = deque(((rt + (n - last_n - 1) * self.period, rn) for rt, rn in self._recent),
                                     maxlen=self.WINDOW)
                self.jumps += 1
                n = last_n + 1
                self.jump_frames.append(n)
        if self.final is not None and n < self.final:
            self.late += 1
            return
        held = self.frames.get(n)
        if held is None or abs(t - self.grid(n)) < abs(held[0] - self.grid(n)):
            self.frames[n] = (t, arrival, raw, self.grid(n), self.jumps)
        if held is not None and self.paced:
            self.collisions += 1
        if self.paced and follow and held is None:
            self._recent.append((t, n))
            self._recenter()
        self.newest = n if self.newest is None else max(self.newest, n)
        if log_t is not None and (self._last is None or n >= self._last[0]):
            self._last = (n, log_t, t)

    def _recenter(self) -> None:
        """The phase that puts the latest messages' offsets symmetric about the grid (follows drift)."""
        offsets = [(t - self.phase) / self.period - n for t, n in self._recent]
        self.phase += (max(offsets) + min(offsets)) / 2 * self.period

    def finalize(self, finish: bool = False) -> int | None:
        """Decide the frames that can be; the index after the last final frame (None: none yet)."""
        if self.phase is None:
            if not (finish and self._first):
                return None
            self._lock_phase()
        if finish and not self.paced and self.frames:  # a fast stream's frames end at its last message
            last_t = max(m[0] for m in self.frames.values())
            self.frames = {n: m for n, m in self.frames.items() if self.grid(n) <= last_t}
        if self.final is None:
            if not self.frames:
                return None
            self.final = min(self.frames)
        last = max(self.frames) if self.frames else self.final - 1
        while self.final <= last and (finish or self.newest >= self.final + 2):
            self.final += 1
        return self.final


@dataclass
class SyncResult:
    frames: dict[str, np.ndarray]
    length: int
    trimmed_start: int = 0
    trimmed_end: int = 0
    gaps: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # messages seen per topic
    dropped: list[dict] = field(default_factory=list)  # {"frame", "topic", "reason"} of every frame dropped inside the episode
    clock: dict = field(default_factory=dict)  # the reference clock: paced, collisions, jumps, late messages
    begin_ns: int | None = None  # the announced first observation time the episode began at
    before_begin: int = 0  # messages left out: timed before it (the previous episode's)

    def report(self) -> dict:
        out = {"frames": self.length, "trimmed_start": self.trimmed_start, "trimmed_end": self.trimmed_end,
               "dropped": len(self.dropped), "dropped_frames": self.dropped, "gaps": self.gaps,
               "messages": self.counts, "clock": self.clock}
        if self.begin_ns is not None:
            out.update(begin_ns=int(self.begin_ns), before_begin=self.before_begin)
        return out


class Synchronizer:
    """Feed `add(topic, log_time_ns, raw)` in arrival order, then `finish()` -> SyncResult.
    `begin_ns`: the episode's first observation time; messages timed before it are left out."""

    def __init__(self, config: SyncConfig, msgtypes: dict[str, str], deserialize: Callable,
                 begin_ns: int | None = None):
        from robot_rl.data.bag import has_header

        self.config = config
        self.begin_ns = begin_ns
        self.before_begin = 0  # messages left out: timed before the episode's beginning
        self.period = 1e9 / config.rate_hz
        self.max_age = int(round(config.max_age * 1e9))
        self.eps = int(min(LAST_TOLERANCE_NS, self.period / 10))  # `last`: periods start this early
        self.decoder = Decoder(config, msgtypes, deserialize)
        for s in config.frame_streams:
            if s.topic not in msgtypes:
                raise DataError(f"topic {s.topic}: type unknown (not recorded?)")
            if msgtypes[s.topic] not in MSGTYPES[s.kind]:
                raise DataError(f"topic {s.topic}: type {msgtypes[s.topic]} cannot feed a {s.kind} stream "
                                f"(expected {' or '.join(MSGTYPES[s.kind])})")
        self.ref = config.reference.topic
        self.clock = _ReferenceClock(self.period)
        self.lanes = {s.topic: _Lane(s) for s in config.frame_streams if s.topic != self.ref}
        self._stamped = {s.topic: config.use_header_stamps and has_header(msgtypes[s.topic]) for s in config.frame_streams}
        self._stamped_topics = [topic for topic, stamped in self._stamped.items() if stamped]
        self._ref_seen = 0
        self._periods = any(lane.stream.mode in ("last", "in_force") for lane in self.lanes.values())
        self._sample_at: dict[tuple[int, str], int] = {}  # (frame, trajectory topic) -> when to sample it
        self._start_index: int | None = None  # grid index of the episode's frame 0
        self._finishing = False
        self.decisions: dict[int, dict[str, tuple]] = {}  # frame -> topic -> (ok, raw or None, t)
        self.next_frame: int | None = None  # next frame to assemble
        self.started = False  # a valid frame has been emitted
        self.held: list[tuple[int, dict, str]] = []  # invalid frames after the first valid one, with why
        self.columns: dict[str, list] = {}
        self.length = 0
        self.trimmed_start = 0
        self.gaps: list[dict] = []
        self.dropped: list[dict] = []
        self.refused: str | None = None
        self._pubmap: deque = deque()  # (publish_time, stamp) of stamped messages, by arrival
        self._last_pub: dict[str, int] = {}  # stamped topic -> newest publish time seen
        self._pending: deque = deque()  # headerless (topic, publish_time, log_time, raw) awaiting a time
        self._last_s: dict[str, int] = {}  # headerless topic -> newest publish time seen

    # -------------------------------------------------------------- input

    def time_of(self, topic: str, log_time_ns: int, raw) -> int:
        if self._stamped.get(topic):
            from robot_rl.data.bag import header_stamp_ns

            stamp = header_stamp_ns(raw)
            if stamp > 0:
                return stamp
        return log_time_ns

    def add(self, topic: str, log_time_ns: int, raw, publish_time_ns: int | None = None) -> None:
        """One message as recorded: its bag log time and, when known, the time its publisher sent
        it (MCAP publish_time). A message without a header gets the clock of the stamped topics
        through the publish times: the newest header stamp among stamped messages sent before it
        (reward(t) is sent after poses(t); a command after the joint states it answers), which
        holds however the recorder's executor interleaved the topics. Without publish times (bags
        of tools that write publish_time = log_time) the log times order them the same way."""
        if topic != self.ref and topic not in self.lanes:
            return
        known = publish_time_ns is not None and publish_time_ns > 0 and publish_time_ns != log_time_ns
        sent = publish_time_ns if known else log_time_ns  # without publish times, the recording order
        if self._stamped[topic]:
            t = self.time_of(topic, log_time_ns, raw)
            self._last_pub[topic] = max(self._last_pub.get(topic, 0), sent)
            if self._before_begin(t, 0 if topic == self.ref else self.max_age):  # still maps headerless ones
                self._pubmap.append((sent, t, self.clock.jumps))
                return
            self._feed(topic, t, raw, log_time_ns)
            self._pubmap.append((sent, t, self.clock.jumps))  # after the clock has seen it: its epoch
            self._resolve()
        elif self.config.use_header_stamps and any(self._stamped.values()):
            self._last_s[topic] = max(self._last_s.get(topic, 0), sent)
            self._pending.append((topic, sent, log_time_ns, raw))
            self._resolve()
        elif not self._before_begin(log_time_ns):
            self._feed(topic, log_time_ns, raw, log_time_ns)

    def _before_begin(self, t: int, slack: int = 0) -> bool:
        """Timed before the episode's first observation (an observation of another stream may be
        stamped up to max_age before it and still be that frame's)."""
        if self.begin_ns is not None and 0 < t < self.begin_ns - slack:
            self.before_begin += 1
            return True
        return False

    def _resolve(self, final: bool = False) -> None:
        """Give pending headerless messages their time once every stamped topic that is still
        publishing has sent something later (or at the end of the episode)."""
        while self._pending:
            topic, s, log_t, raw = self._pending[0]
            if not final and self._waits(s):
                return
            # forget stamped entries no message can still need: sent before every pending message
            # and before anything a headerless topic still publishing may send next (its publish
            # times only grow)
            newest = max(self._last_s.values())
            horizon = min([m[1] for m in self._pending] + [v for v in self._last_s.values() if v >= newest - ACTIVE_NS])
            self._pending.popleft()
            while self._pubmap and self._pubmap[0][0] <= horizon - ACTIVE_NS:
                self._pubmap.popleft()
            est, epoch = self._estimate(s)
            if not self._before_begin(est):  # 0: nothing to map it with, kept
                self._feed(topic, est or log_t, raw, log_t, epoch)

    def _estimate(self, s: int) -> tuple[int, int | None]:
        """The stamp-clock time of a headerless message sent at `s`: its send time mapped between
        the stamped messages sent just before and just after it, and never earlier than the newest
        stamp sent in the second before it (a camera stamped at exposure may be sent late); with the
        clock epoch of those stamps. (0, None): no stamped message to map it with."""
        before = [e for e in self._pubmap if s - ACTIVE_NS < e[0] <= s]
        if not before:
            return 0, None
        p0, t0, epoch = max(before)
        newest = max(t for _, t, e in before if e == epoch)  # stamps of one clock (not across a jump)
        after = min(((p, t) for p, t, _ in self._pubmap if p > s), default=None)
        if after is None or after[0] <= p0 or after[1] <= t0:
            return newest, epoch
        p1, t1 = after
        if t1 - t0 > max(self.clock.JUMP * self.period, 20 * (p1 - p0)):
            return newest, epoch  # the stamp clock jumped between them: no line to map onto
        return max(newest, int(t0 + (s - p0) / (p1 - p0) * (t1 - t0))), epoch

    def _waits(self, s: int) -> bool:
        """A headerless message sent at `s` must wait while a stamped topic may still send
        something before it: one that has not sent anything later yet and is still publishing
        (sent within ACTIVE_NS), or has not been seen at all while `s` is that recent."""
        newest = max(list(self._last_pub.values()) + list(self._last_s.values()))
        for topic in self._stamped_topics:
            p = self._last_pub.get(topic)
            if p is None:
                if newest - s < ACTIVE_NS:
                    return True
            elif s - ACTIVE_NS <= p <= s:
                return True
        return False

    def _feed(self, topic: str, t: int, raw, log_t: int | None = None, epoch: int | None = None) -> None:
        if topic == self.ref:
            self._ref_seen += 1
            self.clock.add(t, self._ref_seen, raw, log_t)
        else:
            lane = self.lanes[topic]
            lane.seen += 1
            if t < lane.last_t:
                lane.late += 1  # out of stamp order: kept, and the decisions wait a period for such
            lane.last_t = t
            lane.buf.append((t, lane.arrivals, raw, self.clock.jumps if epoch is None else epoch))  # its clock
            lane.arrivals += 1
        self._advance()

    # -------------------------------------------------------------- decisions

    def _time(self, n: int, nearest: bool = False) -> int | None:
        """Frame n's time; None while the reference clock has not decided frame n. For command
        periods, the stamp of the frame's reference message (the grid time when it has none); for
        `nearest` streams, the grid time when the reference is paced (every sensor's stamp is the
        true time plus its own jitter, and the grid is the best estimate of the true time)."""
        if self.clock.final is None or (n >= self.clock.final and not self._finishing):
            return None
        ref = self.clock.frames.get(n) if n < self.clock.final else None
        if ref is None:
            return self.clock.grid(n)
        return ref[3] if nearest and self.clock.paced else ref[0]

    def _epoch(self, n: int) -> int:
        """The clock epoch (jumps so far) frame n's reference message came in."""
        ref = self.clock.frames.get(n)
        return ref[4] if ref is not None else self.clock.jumps

    def _window(self, lane: _Lane, k: int) -> tuple[int, int] | None:
        """[lo, hi] of message times frame k may take from this lane (hi inclusive); None: not known yet."""
        if lane.stream.mode in ("nearest", "hold"):
            T = self._time(k + lane.stream.lead, nearest=True)
            half = self.max_age if lane.stream.mode == "nearest" else int(self.period / 2)
            return None if T is None else (T - half, T + half)
        T, end = self._time(k + lane.stream.lead), self._time(k + lane.stream.lead + 1)
        return None if T is None or end is None else (T - self.eps, end - self.eps - 1)

    def _advance(self) -> None:
        final = self.clock.finalize(self._finishing)
        if final is None:
            return
        if self.next_frame is None:
            self.next_frame = self.clock.final if not self.clock.frames else min(self.clock.frames)
        for lane in self.lanes.values():
            if lane.k is None:
                lane.k = self.next_frame
            while True:
                window = self._window(lane, lane.k)
                if window is None or lane.k >= final:
                    break
                if not self._finishing and lane.last_t <= window[1] + self.period and not (
                        self.clock.phase is not None and self.clock.index(lane.last_t) > lane.k + lane.stream.lead + 2):
                    break  # a message for this window may still come (reordering slack)
                self._decide(lane, window)
        self._assemble(final)

    def _decide(self, lane: _Lane, window: tuple[int, int]) -> None:
        k = lane.k
        lo, hi = window
        T = (lo + hi) // 2  # nearest: the frame's time
        epoch = self._epoch(k + lane.stream.lead)
        buf = [m[:3] for m in lane.buf if m[3] == epoch]  # stamps of one clock (not across a jump)
        older = [lane.older[:3]] if lane.older is not None and lane.older[3] == epoch else []
        best = None
        if lane.stream.mode in ("nearest", "hold"):
            for t, a, raw in buf:
                d = abs(t - T)
                if lo <= t <= hi and (best is None or (d, t, a) < best[0]):
                    best = ((d, t, a), raw, t)
            if best is None and lane.stream.mode == "hold":  # the level last published before the frame
                before = [m for m in buf + older if m[0] < lo]
                if before:
                    t, a, raw = max(before, key=lambda m: (m[0], m[1]))
                    best = ((t, a), raw, t)
        elif lane.stream.mode == "last":  # the latest message of the frame's period, the command in effect after it
            for t, a, raw in buf:
                if lo <= t <= hi and (best is None or (t, a) > best[0]):
                    best = ((t, a), raw, t)
        else:  # in_force: the latest message before the period ends (a trajectory runs for many frames)
            for t, a, raw in buf + older:
                if t <= hi and (best is None or (t, a) > best[0]):
                    best = ((t, a), raw, t)
            if best is not None:  # sampled at the frame's own time: point j of a chunk stamped s is the
                self._sample_at[(k, lane.stream.topic)] = lo + self.eps  # command for the frame at s + j dt
        if best is not None:
            decision = (True, best[1], best[2])
        else:  # a gap for this stream: remember a message of any age for `mark`
            pool = buf + older
            if lane.stream.mode == "nearest":
                near = min(pool, key=lambda m: (abs(m[0] - T), m[0], m[1]), default=None)
            else:  # the command still in effect (held), else the next one
                held = [m for m in pool if m[0] < lo]
                near = max(held, key=lambda m: (m[0], m[1])) if held else min(pool, key=lambda m: (m[0], m[1]),
                                                                              default=None)
            decision = (False, near[2] if near else None, near[0] if near else None)
        self.decisions.setdefault(k, {})[lane.stream.topic] = decision
        lane.k += 1
        # prune: nothing before the next frame's window can be picked again
        nxt = self._window(lane, lane.k)
        if nxt is None:
            return
        horizon = nxt[0] - self.period  # keep one period for messages that arrive out of order
        lane.buf = deque(m for m in lane.buf if m[3] >= epoch)  # a clock before a jump is done with
        while lane.buf and lane.buf[0][0] < horizon and len(lane.buf) > 1:
            lane.older = lane.buf.popleft()
        if lane.buf and lane.buf[0][0] < horizon:  # keep the very last message as the fallback
            lane.older = lane.buf.popleft()

    def _assemble(self, final: int) -> None:
        while self.next_frame < final and len(self.decisions.get(self.next_frame, ())) == len(self.lanes):
            k = self.next_frame
            decision = self.decisions.pop(k, {})
            self._frame(k, self.clock.frames.pop(k, None), decision)
            self.next_frame += 1

    def _frame(self, k: int, ref, decision: dict) -> None:
        """Emit frame k, or hold it as invalid: (topic, why) says what it lacks."""
        missing = [t for t, (ok, _, _) in decision.items() if not ok]
        off = None if ref is None or not self.clock.paced else abs(ref[0] - ref[3]) / self.period
        if ref is None:
            why = (self.ref, "no reference message within half a period of the frame")
        elif any(j - 2 <= k <= j + 1 for j in self.clock.jump_frames):
            why = (self.ref, "next to a clock jump (which message belongs to which frame is not known there)")
        elif off is not None and off > self.clock.AMBIGUOUS:
            why = (self.ref, f"reference stamp {off:.0%} of a period from the frame time: ambiguous")
        elif not self._next_has_reference(k):
            why = (self.ref, "no reference message for the next frame: the command period has no end")
        elif missing:
            why = (missing[0], "no message " + ("within max_age" if self.lanes[missing[0]].stream.mode == "nearest"
                                                else "in the frame's period"))
        else:
            why = None
        decision = {self.ref: (True, ref[2], ref[0]) if ref is not None else (False, None, None), **decision}
        if why is None:
            if self.held:
                self._gap()
            if not self.started:
                self.started, self._start_index = True, k
            self._emit(decision, k)
        elif self.started:
            self.held.append((k, decision, why))
        else:
            self.trimmed_start += 1

    def _next_has_reference(self, k: int) -> bool:
        """Frame k's command period ends at frame k + 1's reference message (when a stream needs it)."""
        if not self._periods:
            return True
        return (k + 1) in self.clock.frames or (self._finishing and k + 1 >= self.clock.final)

    def _gap(self) -> None:
        """The held invalid frames are inside the episode: drop them, refuse the episode, or fill and mark them."""
        held, self.held = self.held, []
        first = self._start_index
        runs: dict[str, list[int]] = {}
        for k, _, (topic, _) in held:
            runs.setdefault(topic, []).append(k)
        long_gap = len(held) / self.config.rate_hz > self.config.max_gap
        for topic, ks in runs.items():
            gap = {"topic": topic, "frames": [min(ks) - first, max(ks) - first],
                   "time_s": round(self.clock.grid(min(ks)) * 1e-9, 6), "max_age_s": self.config.max_age}
            self.gaps.append(gap)
            if self.refused is None and (self.config.on_gap == "refuse" or (self.config.on_gap == "drop" and long_gap)):
                lane = self.lanes.get(topic)
                where = ("for" if lane is None else "in the periods of" if lane.stream.mode == "last"
                         else f"within max_age {self.config.max_age} s of")
                self.refused = (f"topic {topic} had no message {where} frames {gap['frames'][0]}-{gap['frames'][1]} "
                                f"(t = {gap['time_s']:.3f} s)"
                                + (f": a gap longer than max_gap {self.config.max_gap} s" if long_gap else ""))
        if self.refused is not None:
            self.columns.clear()  # the episode will not be kept: free its frames now
            return
        for k, decision, (topic, why) in held:
            if self.config.on_gap == "mark" and all(raw is not None for _, raw, _ in decision.values()):
                self._emit(decision, k)
            else:
                self.dropped.append({"frame": k - first, "topic": topic, "reason": why})

    def _emit(self, decision: dict, k: int) -> None:
        if self.refused is not None:
            return
        for topic, (_, raw, t) in decision.items():
            stream = self.config.reference if topic == self.ref else self.lanes[topic].stream
            if stream.kind == "trajectory":  # the trajectory in force, at the frame's time
                values = self.decoder.trajectory_at(stream, raw, t, self._sample_at.pop((k, topic), t))
            else:
                values = self.decoder.decode(stream, raw)
            for key, value in values.items():
                self.columns.setdefault(key, []).append(value)
        self.length += 1

    # -------------------------------------------------------------- end

    def finish(self) -> SyncResult:
        """Decide every remaining frame up to the last reference message; trim the tail."""
        self._resolve(final=True)
        self._finishing = True
        self._advance()
        counts = {self.ref: self._ref_seen, **{topic: lane.seen for topic, lane in self.lanes.items()}}
        if self._ref_seen == 0:
            raise EpisodeRefused(f"topic {self.ref} (the reference clock) had no message in the episode")
        trimmed_end = len(self.held)
        self.held = []
        if self.refused is not None:
            raise EpisodeRefused(self.refused)
        if self.length == 0:
            silent = [t for t, n in counts.items() if n == 0]
            if silent:
                raise EpisodeRefused(f"topic {silent[0]} had no message in the episode (missing topic?)")
            raise EpisodeRefused("no frame had every topic within max_age "
                                 f"{self.config.max_age} s (streams never overlapped)")
        frames = {key: _stack(key, self.columns[key]) for key in self.config.frame_keys}
        reference = {"paced": self.clock.paced, "collisions": self.clock.collisions, "jumps": self.clock.jumps,
                     "late": self.clock.late + sum(lane.late for lane in self.lanes.values())}
        return SyncResult(frames, self.length, self.trimmed_start, trimmed_end, list(self.gaps), counts,
                          list(self.dropped), reference, self.begin_ns, self.before_begin)


def _stack(key: str, column: list):
    """A key's frames as one array; a driver's point clouds (any number of points) stay a list,
    resampled to the dataset's number of points when the episode is assembled."""
    if key == "points" and len({p.shape for p in column}) > 1:
        return list(column)
    return np.stack(column)


def synchronize(config: SyncConfig, messages, msgtypes: dict[str, str], deserialize: Callable) -> SyncResult:
    """One-shot: (topic, log_time_ns, raw) messages -> SyncResult."""
    sync = Synchronizer(config, msgtypes, deserialize)
    for topic, t, raw in messages:
        sync.add(topic, t, raw)
    return sync.finish()


# ---------------------------------------------------------------------------- episodes


class EpisodeAssembler:
    """Messages and episode markers in, synchronised episodes out.

    The live recorder (robot_rl.data.recorder) and `robot-rl dataset from-bag` both drive one of
    these with the same sequence -- every message in bag order, `start` / `stop` / `discard`
    where the markers are -- so they produce the same frames and meta.

    With `episode_start_topic`, the messages of the episode's first `episode_start_window` seconds
    are kept too: an announcement among them starts the episode again at its stamp, from those
    messages (module docstring).
    """

    def __init__(self, config: SyncConfig, msgtypes: dict[str, str], deserialize: Callable):
        self.config = config
        self.msgtypes = dict(msgtypes)
        self.deserialize = deserialize
        self._info = {s.topic: s for s in config.streams if s.kind == "camera_info"}
        self._latest_info: dict[str, object] = {}
        self.sync: Synchronizer | None = None
        self.start_meta: dict = {}
        self.start_ns = 0
        self.start_wall_ns: int | None = None
        self.failure: DataError | None = None  # a decode error inside the open episode
        self._window_ns = int(config.episode_start_window * 1e9)
        self._early: list | None = None  # the open episode's messages while an announcement may still come

    @property
    def open(self) -> bool:
        return self.sync is not None

    def inherit(self, other: EpisodeAssembler) -> None:
        """Carry the latest camera_info over from an assembler with other settings."""
        self._latest_info.update(other._latest_info)

    def message(self, topic: str, log_time_ns: int, raw, publish_time_ns: int | None = None) -> None:
        if topic in self._info:
            self._latest_info[topic] = raw
        if self.sync is None:
            return
        if self._early is not None:
            if self._since_start(log_time_ns, publish_time_ns) > self._window_ns:
                self._early = None  # no announcement: the episode began at its marker
            elif topic == self.config.episode_start_topic:
                self._begin_at(self._announced(log_time_ns, raw))
                return
            else:
                self._early.append((topic, log_time_ns, raw, publish_time_ns))
        elif topic == self.config.episode_start_topic and self.failure is None:
            began = (self.sync.begin_ns is not None or self._window_ns == 0)
            self.failure = EpisodeRefused(  # it would hold the end of one episode and the start of another
                f"topic {topic}: a new episode was announced {self._since_start(log_time_ns, publish_time_ns) / 1e9:.2f} s after the "
                + ("episode began (the sim was reset mid-episode)" if began else
                   f"start marker, later than episode_start_window {self.config.episode_start_window} s "
                   "(start recording closer to the reset, or raise the window)"))
            self.sync.columns.clear()
        self._add(topic, log_time_ns, raw, publish_time_ns)

    def _since_start(self, log_time_ns: int, publish_time_ns: int | None) -> int:
        """ns from the start marker to a message: by the wall clock when the marker has the call's
        wall time and the message its publish time (a lock-step sim's time runs many times faster),
        else by log time."""
        if self.start_wall_ns and publish_time_ns and publish_time_ns != log_time_ns:
            return publish_time_ns - self.start_wall_ns
        return log_time_ns - self.start_ns

    def _add(self, topic: str, log_time_ns: int, raw, publish_time_ns: int | None) -> None:
        if self.failure is None:
            try:
                self.sync.add(topic, log_time_ns, raw, publish_time_ns)
            except DataError as e:  # kept until stop: the episode cannot be saved
                self.failure = e
                self.sync.columns.clear()

    def _announced(self, log_time_ns: int, raw) -> int:
        """The first observation time an episode-start message announces, on the synchroniser's clock."""
        from robot_rl.data.bag import header_stamp_ns

        stamp = header_stamp_ns(raw) if self.config.use_header_stamps else 0
        return stamp if stamp > 0 else log_time_ns

    def _begin_at(self, begin_ns: int) -> None:
        """Assemble the open episode again from its first messages, leaving out those before `begin_ns`."""
        early, self._early = self._early, None
        self.sync = Synchronizer(self.config, self.msgtypes, self.deserialize, begin_ns=begin_ns)
        self.failure = None
        for item in early:
            self._add(*item)

    def start(self, meta: dict, log_time_ns: int, wall_ns: int | None = None) -> None:
        """`wall_ns`: the wall time the episode was started at (the recorder's ~/start call)."""
        if self.sync is not None:
            raise DataError("an episode is already open; stop or discard it first")
        self.sync = Synchronizer(self.config, self.msgtypes, self.deserialize)
        self.start_meta = dict(meta)
        self.start_ns = log_time_ns
        self.start_wall_ns = wall_ns
        self.failure = None
        self._early = [] if self.config.episode_start_topic and self._window_ns > 0 else None

    def discard(self) -> None:
        self.sync = None
        self.failure = None
        self._early = None

    def stop(self, success: bool, log_time_ns: int) -> tuple[dict[str, np.ndarray], dict]:
        """(frames, meta) of the episode; EpisodeRefused / DataError when it cannot be kept."""
        if self.sync is None:
            raise DataError("no episode is open")
        sync, self.sync = self.sync, None
        failure, self.failure = self.failure, None
        self._early = None
        if failure is not None:
            raise failure
        result = sync.finish()
        decoder = sync.decoder
        intrinsics = dict(self.start_meta.get("camera_intrinsics") or {})
        for topic, stream in self._info.items():
            raw = self._latest_info.get(topic)
            if raw is not None:
                intrinsics[stream.name] = decoder.intrinsics(stream, raw)
        for cam in self.config.cameras:
            if cam not in intrinsics:
                topic = next((t for t, s in self._info.items() if s.name == cam), f"/camera/{cam}/camera_info")
                raise DataError(f"topic {topic}: no camera_info for camera '{cam}' before the episode ended; "
                                "camera intrinsics are needed with images")
            w, h = int(intrinsics[cam][4]), int(intrinsics[cam][5])
            for key in (f"{cam}_rgb", f"{cam}_depth"):
                if key in result.frames and result.frames[key].shape[1:3] != (h, w):
                    raise DataError(f"camera '{cam}': images are {result.frames[key].shape[2]}x"
                                    f"{result.frames[key].shape[1]} but camera_info says {w}x{h}")
        meta = dict(self.start_meta)
        meta.update({
            "success": bool(success),
            "joint_names": list(self.config.joint_names),
            "rate_hz": float(self.config.rate_hz),
            "sync": {"max_age_s": self.config.max_age, "on_gap": self.config.on_gap,
                     "reference": self.config.reference.topic, **result.report(),
                     "start_ns": int(self.start_ns), "stop_ns": int(log_time_ns)},
        })
        if intrinsics:
            meta["camera_intrinsics"] = {cam: list(v) for cam, v in sorted(intrinsics.items())}
        frames = add_points(result.frames, intrinsics, self.config)
        if "points" in frames:
            c = self.config
            meta["points"] = PointCloudConfig(num_points=c.num_points).record(
                f"{c.points_from_depth}_depth" if c.points_from_depth else "points",
                intrinsics[c.points_from_depth][4:6] if c.points_from_depth else (), c.camera_link, c.camera_pose)
        return frames, meta
