"""Align topic streams on one clock at the dataset rate: the live recorder and `from-bag` both
use this module, fed the same message sequence, so they make the same episodes.

The reference clock: frame k is at time t0 + k / rate_hz, where t0 is the time of the first
message of the reference topic (joint states) in the episode and the episode ends at the last
reference message. A message's time is its header stamp when it has a header (and the stamp is
set). A message without one (reward, success, Float64MultiArray commands) takes the newest header
stamp among the stamped messages *sent* before it, by publish time (MCAP publish_time = the
middleware's source timestamp), which does not depend on the order the recorder took the topics
in; without publish times, its receive time in the bag.

For each frame and stream, the message picked is:

* `nearest` (observations): the message whose time is closest to the frame time, at most
  `max_age` away either side;
* `last` (the action): the last message received during the frame's period [t_k, t_k+1) (1 ms
  tolerance) -- the command in effect when the arm moves on to the next frame, which is what a
  forward/position controller executes. No command in a period is a gap: the commander did not
  act on that observation (the arm held its previous target);

and a stream with `lead = 1` (reward, success) is sampled at the *next* frame's time, so frame k
holds the reward and success that followed action k, like gymnasium's `step()` and
`robot-rl collect`.

Frames before every stream has a message, and after the last one, are trimmed (and counted). A
frame in the middle where some stream has nothing within `max_age` is a gap: with
`on_gap="refuse"` the episode is refused (EpisodeRefused names the topic, frames and time);
with `on_gap="mark"` the frames take the nearest message of any age and the episode's meta lists
each gap. Nothing is filled silently.

Streaming: messages arrive in any interleaving (per topic in arrival order); a stream decides a
frame as soon as it has seen a message later than the frame's window, so only a window of
messages per topic is held (memory does not grow with 30 Hz images in a long episode), and only
the picked messages are ever deserialised.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from robot_rl.errors import ConfigError, DataError

KINDS = ("joint_state", "image", "depth", "points", "poses", "command", "reward", "success", "camera_info")
MODES = ("nearest", "last")
ON_GAP = ("refuse", "mark")
ACTIVE_NS = 1_000_000_000  # a stamped topic silent for longer does not hold headerless messages back
LAST_TOLERANCE_NS = 1_000_000  # `last`: periods start 1 ms early (a command stamped just before its frame)

MSGTYPES = {  # default message type per stream kind, and the types each kind accepts
    "joint_state": ("sensor_msgs/msg/JointState",),
    "image": ("sensor_msgs/msg/Image",),
    "depth": ("sensor_msgs/msg/Image",),
    "points": ("sensor_msgs/msg/PointCloud2",),
    "poses": ("geometry_msgs/msg/PoseArray",),
    "command": ("std_msgs/msg/Float64MultiArray",),
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
                "command": ("action",), "reward": ("reward",), "success": ("success",),
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

    def __post_init__(self):
        object.__setattr__(self, "joint_names", tuple(str(n) for n in self.joint_names))
        object.__setattr__(self, "streams", tuple(s if isinstance(s, Stream) else Stream(**s) for s in self.streams))
        if not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise ConfigError(f"rate_hz must be > 0, got {self.rate_hz}")
        if not (math.isfinite(self.max_age) and self.max_age > 0):
            raise ConfigError(f"max_age must be > 0 s, got {self.max_age}")
        if self.on_gap not in ON_GAP:
            raise ConfigError(f"on_gap must be one of {ON_GAP}, got {self.on_gap!r}")
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

    @property
    def reference(self) -> Stream:
        return next(s for s in self.streams if s.kind != "camera_info")

    @property
    def frame_streams(self) -> tuple[Stream, ...]:
        return tuple(s for s in self.streams if s.kind != "camera_info")

    @property
    def keys(self) -> list[str]:
        keys = [k for s in self.frame_streams for k in s.keys]
        if self.ee_pose:
            keys[2:2] = ["ee_pos", "ee_quat"]
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
        return cls(**d)


def standard_streams(joint_states_topic: str = "/joint_states",
                     action_topic: str = "/forward_position_controller/commands",
                     cameras=(), depth=False, object_poses_topic: str = "/task/object_poses",
                     reward_topic: str = "/task/reward", success_topic: str = "/task/success",
                     points_topic: str = "") -> tuple[Stream, ...]:
    """The streams of the project's standard topics (ARCHITECTURE.md); '' leaves a topic out.
    `depth`: True for every camera's depth image, or the names of the cameras that have one."""
    depth = set(cameras) if depth is True else set(depth or ())
    streams = [Stream(joint_states_topic, "joint_state")]
    if object_poses_topic:
        streams.append(Stream(object_poses_topic, "poses"))
    for cam in cameras:
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
        streams.append(Stream(success_topic, "success", lead=1))
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
        image = self._image_array(stream, msg)
        if msg.encoding == "32FC1":
            depth = image[..., 0].astype(np.float32)
        elif msg.encoding == "16UC1":
            depth = image[..., 0].astype(np.float32) / 1000.0  # millimetres -> metres
        else:
            raise DataError(f"topic {stream.topic}: depth image expected (32FC1 metres or 16UC1 mm), got {msg.encoding}")
        return {f"{stream.name}_depth": depth}

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
        self.k = 0  # next frame to decide
        self.seen = 0
        self.late = 0  # messages older than one already seen on this topic
        self.arrivals = 0


@dataclass
class SyncResult:
    frames: dict[str, np.ndarray]
    length: int
    trimmed_start: int = 0
    trimmed_end: int = 0
    gaps: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # messages seen per topic

    def report(self) -> dict:
        return {"frames": self.length, "trimmed_start": self.trimmed_start, "trimmed_end": self.trimmed_end,
                "gaps": self.gaps, "messages": self.counts}


class Synchronizer:
    """Feed `add(topic, log_time_ns, raw)` in arrival order, then `finish()` -> SyncResult."""

    def __init__(self, config: SyncConfig, msgtypes: dict[str, str], deserialize: Callable):
        from robot_rl.data.bag import has_header

        self.config = config
        self.period = 1e9 / config.rate_hz
        self.max_age = int(round(config.max_age * 1e9))
        self.decoder = Decoder(config, msgtypes, deserialize)
        self.lanes = {s.topic: _Lane(s) for s in config.frame_streams}
        self._stamped = {s.topic: config.use_header_stamps and has_header(msgtypes[s.topic]) for s in config.frame_streams}
        for s in config.frame_streams:
            if s.topic not in msgtypes:
                raise DataError(f"topic {s.topic}: type unknown (not recorded?)")
            if msgtypes[s.topic] not in MSGTYPES[s.kind]:
                raise DataError(f"topic {s.topic}: type {msgtypes[s.topic]} cannot feed a {s.kind} stream "
                                f"(expected {' or '.join(MSGTYPES[s.kind])})")
        self.ref = config.reference.topic
        self.t0: int | None = None
        self.ref_last: int | None = None
        self.decisions: dict[int, dict[str, tuple]] = {}  # frame -> topic -> (ok, raw or None, t)
        self.next_frame = 0  # next frame to assemble
        self.started = False  # a valid frame has been emitted
        self.held: list[tuple[int, dict]] = []  # invalid frames after the first valid one
        self.columns: dict[str, list] = {}
        self.length = 0
        self.trimmed_start = 0
        self.gaps: list[dict] = []
        self.refused: str | None = None
        self._pubmap: deque = deque()  # (publish_time, stamp) of stamped messages, by arrival
        self._base_stamp = 0  # newest stamp among those pruned from _pubmap
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
        holds however the recorder's executor interleaved the topics."""
        lane = self.lanes.get(topic)
        if lane is None:
            return
        known = publish_time_ns is not None and publish_time_ns > 0 and publish_time_ns != log_time_ns
        if self._stamped[topic]:
            t = self.time_of(topic, log_time_ns, raw)
            if known:
                self._pubmap.append((publish_time_ns, t))
                self._last_pub[topic] = max(self._last_pub.get(topic, 0), publish_time_ns)
            self._feed(lane, t, raw)
            self._resolve()
        elif known and self.config.use_header_stamps:
            self._last_s[topic] = max(self._last_s.get(topic, 0), publish_time_ns)
            self._pending.append((topic, publish_time_ns, log_time_ns, raw))
            self._resolve()
        else:
            self._feed(lane, log_time_ns, raw)

    def _resolve(self, final: bool = False) -> None:
        """Give pending headerless messages their time once every stamped topic that is still
        publishing has sent something later (or at the end of the episode)."""
        while self._pending:
            topic, s, log_t, raw = self._pending[0]
            if not final:
                active = [p for p in self._last_pub.values() if p >= s - ACTIVE_NS]
                if not active or min(active) <= s:
                    return
            # forget stamped entries no message can still need: sent before every pending message
            # and before anything a headerless topic still publishing may send next (its publish
            # times only grow)
            newest = max(self._last_s.values())
            horizon = min([m[1] for m in self._pending] + [v for v in self._last_s.values() if v >= newest - ACTIVE_NS])
            self._pending.popleft()
            while self._pubmap and self._pubmap[0][0] <= horizon:
                self._base_stamp = max(self._base_stamp, self._pubmap.popleft()[1])
            est = max([self._base_stamp] + [t for p, t in self._pubmap if p <= s])
            self._feed(self.lanes[topic], est if est > 0 else log_t, raw)

    def _feed(self, lane: _Lane, t: int, raw) -> None:
        topic = lane.stream.topic
        lane.seen += 1
        if t < lane.last_t:
            lane.late += 1
        else:
            lane.last_t = t
        lane.buf.append((t, lane.arrivals, raw))
        lane.arrivals += 1
        if topic == self.ref:
            self.ref_last = t if self.ref_last is None else max(self.ref_last, t)
            if self.t0 is None:
                self.t0 = t
                for other in self.lanes.values():
                    self._decide_ready(other)
                self._assemble()
                return
        if self.t0 is not None:
            self._decide_ready(lane)
            self._assemble()

    # -------------------------------------------------------------- decisions

    def _frame_time(self, lane: _Lane, k: int) -> int:
        return self.t0 + int(round((k + lane.stream.lead) * self.period))

    def _window(self, lane: _Lane, k: int) -> tuple[int, int]:
        """[lo, hi] of message times frame k may take from this lane (hi inclusive)."""
        T = self._frame_time(lane, k)
        if lane.stream.mode == "nearest":
            return T - self.max_age, T + self.max_age
        return T - LAST_TOLERANCE_NS, self._frame_time(lane, k + 1) - LAST_TOLERANCE_NS - 1

    def _decide_ready(self, lane: _Lane) -> None:
        while lane.last_t > self._window(lane, lane.k)[1]:
            self._decide(lane)

    def _decide(self, lane: _Lane) -> None:
        k, T = lane.k, self._frame_time(lane, lane.k)
        lo, hi = self._window(lane, k)
        best = None
        if lane.stream.mode == "nearest":
            for t, a, raw in lane.buf:
                d = abs(t - T)
                if d <= self.max_age and (best is None or (d, t, a) < best[0]):
                    best = ((d, t, a), raw, t)
        else:  # last: the latest message of the frame's period, the command in effect after it
            for t, a, raw in lane.buf:
                if lo <= t <= hi and (best is None or (t, a) > best[0]):
                    best = ((t, a), raw, t)
        if best is not None:
            decision = (True, best[1], best[2])
        else:  # a gap for this stream: remember a message of any age for `mark`
            pool = list(lane.buf) + ([lane.older] if lane.older is not None else [])
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
        horizon = self._window(lane, lane.k)[0]
        while lane.buf and lane.buf[0][0] < horizon and len(lane.buf) > 1:
            lane.older = lane.buf.popleft()
        if lane.buf and lane.buf[0][0] < horizon:  # keep the very last message as the fallback
            lane.older = lane.buf.popleft()

    def _assemble(self) -> None:
        while len(self.decisions.get(self.next_frame, ())) == len(self.lanes):
            k = self.next_frame
            self._frame(k, self.decisions.pop(k))
            self.next_frame += 1

    def _frame(self, k: int, decision: dict) -> None:
        valid = all(ok for ok, _, _ in decision.values())
        if not self.started:
            if valid:
                self.started = True
                self._emit(decision)
            else:
                self.trimmed_start += 1
            return
        if not valid:
            self.held.append((k, decision))
            return
        if self.held:
            self._gap()
        self._emit(decision)

    def _gap(self) -> None:
        """The held invalid frames are inside the episode: refuse it, or fill and mark them."""
        held, self.held = self.held, []
        by_topic: dict[str, list[int]] = {}
        for k, decision in held:
            for topic, (ok, _, _) in decision.items():
                if not ok:
                    by_topic.setdefault(topic, []).append(k)
        for topic, ks in by_topic.items():
            gap = {"topic": topic, "frames": [min(ks) - self.trimmed_start, max(ks) - self.trimmed_start],
                   "time_s": round(self._frame_time(self.lanes[topic], min(ks)) * 1e-9, 6),
                   "max_age_s": self.config.max_age}
            self.gaps.append(gap)
            if self.refused is None and self.config.on_gap == "refuse":
                where = (f"within max_age {self.config.max_age} s of" if self.lanes[topic].stream.mode == "nearest"
                         else "in the periods of")
                self.refused = (f"topic {topic} had no message {where} frames {gap['frames'][0]}-{gap['frames'][1]} "
                                f"(t = {gap['time_s']:.3f} s)")
        if self.refused is not None:
            self.columns.clear()  # the episode will not be kept: free its frames now
            return
        for k, decision in held:
            if any(raw is None for _, raw, _ in decision.values()):
                missing = [t for t, (_, raw, _) in decision.items() if raw is None]
                self.refused = f"topic {missing[0]} has no message to mark frame {k - self.trimmed_start} with"
                return
            self._emit(decision)

    def _emit(self, decision: dict) -> None:
        if self.refused is not None:
            return
        for topic, (_, raw, _) in decision.items():
            for key, value in self.decoder.decode(self.lanes[topic].stream, raw).items():
                self.columns.setdefault(key, []).append(value)
        self.length += 1

    # -------------------------------------------------------------- end

    def finish(self) -> SyncResult:
        """Decide every remaining frame up to the last reference message; trim the tail."""
        self._resolve(final=True)
        counts = {topic: lane.seen for topic, lane in self.lanes.items()}
        if self.t0 is None:
            raise EpisodeRefused(f"topic {self.ref} (the reference clock) had no message in the episode")
        last = int(math.floor((self.ref_last - self.t0) / self.period + 1e-9))
        for lane in self.lanes.values():
            while lane.k <= last:
                self._decide(lane)
        self.decisions = {k: d for k, d in self.decisions.items() if k <= last}
        self._assemble()
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
        frames = {}
        for key in self.config.keys:
            frames[key] = np.stack(self.columns[key])
        return SyncResult(frames, self.length, self.trimmed_start, trimmed_end, list(self.gaps), counts)


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
        self.failure: DataError | None = None  # a decode error inside the open episode

    @property
    def open(self) -> bool:
        return self.sync is not None

    def inherit(self, other: EpisodeAssembler) -> None:
        """Carry the latest camera_info over from an assembler with other settings."""
        self._latest_info.update(other._latest_info)

    def message(self, topic: str, log_time_ns: int, raw, publish_time_ns: int | None = None) -> None:
        if topic in self._info:
            self._latest_info[topic] = raw
        if self.sync is not None and self.failure is None:
            try:
                self.sync.add(topic, log_time_ns, raw, publish_time_ns)
            except DataError as e:  # kept until stop: the episode cannot be saved
                self.failure = e
                self.sync.columns.clear()

    def start(self, meta: dict, log_time_ns: int) -> None:
        if self.sync is not None:
            raise DataError("an episode is already open; stop or discard it first")
        self.sync = Synchronizer(self.config, self.msgtypes, self.deserialize)
        self.start_meta = dict(meta)
        self.start_ns = log_time_ns
        self.failure = None

    def discard(self) -> None:
        self.sync = None
        self.failure = None

    def stop(self, success: bool, log_time_ns: int) -> tuple[dict[str, np.ndarray], dict]:
        """(frames, meta) of the episode; EpisodeRefused / DataError when it cannot be kept."""
        if self.sync is None:
            raise DataError("no episode is open")
        sync, self.sync = self.sync, None
        failure, self.failure = self.failure, None
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
        return result.frames, meta
