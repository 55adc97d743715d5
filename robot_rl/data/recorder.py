"""The recorder, without ROS: raw messages in, a rosbag2 MCAP bag and dataset episodes out.

The ROS node (robot_rl/ros/recorder_node.py) subscribes with `raw=True` and hands every
message's serialized bytes to `on_message` -- O(1) work on the subscription thread: take a
strictly increasing log time, count, enqueue. A writer thread writes each message into the bag
as it came (never deserialised) and feeds the episode assembler (robot_rl.data.sync) that
`robot-rl dataset from-bag` also uses; a committer thread appends finished episodes to the
dataset (atomically: EpisodeDataset.append_episode), so compressing images never delays the bag.

Episode lifecycle: `start(**meta)` -> `stop(success)` or `discard()`. Each call writes a marker
(std_msgs/String JSON on /recorder/events) into the bag at its place in the message sequence,
so a bag alone reproduces the episodes. A marker called with the caller's wall time (`wall_ns`,
the node passes it) is placed after the messages *sent* before that time: it waits until any
topic delivers a message published at or after it (or DEFER_S passes), because the
subscription backlog of a busy executor would otherwise land on the wrong side of it (a stop
handled while 0.3 s of joint states still queued cut an episode to 1 frame). The bag rolls to a new file at every stop/discard: a
SIGKILL loses at most the open episode; everything before it is in closed, listed files.

A disk that refuses writes (full, read-only, no permission) stops recording: `error` holds one
line saying what and where, and the node exits with it.
"""
from __future__ import annotations

import errno
import json
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from robot_rl.data.bag import (DISK_ERRNOS, EVENTS_TOPIC, STRING_TYPE, BagWriter, event_message, msgtype_name,
                               typestore)
from robot_rl.data.sync import HEADER_TYPE, MSGTYPES, EpisodeAssembler, EpisodeRefused, SyncConfig, standard_streams
from robot_rl.errors import ConfigError, DataError
from robot_rl.robot import load_robot

SOURCE_KINDS = ("scripted_expert", "teleop", "policy", "other")
DEFER_S = 1.0  # wall s: a marker waits at most this long for the messages sent before it


@dataclass
class RecorderConfig:
    dataset: str = field(default="", metadata={"help": "episode dataset directory (created if absent); '' records the bag only"})
    bag_dir: str = field(default="bags", metadata={"help": "directory that receives this run's bag"})
    bag_name: str = field(default="", metadata={"help": "bag directory name; '' -> rec_<date>_<time>"})
    rate_hz: float = field(default=10.0, metadata={"help": "dataset frame rate (Hz): the reference clock's tick"})
    max_age: float = field(default=0.05, metadata={"help": "s: a frame takes a message at most this far from its time (keep below 1/rate_hz)"})
    on_gap: str = field(default="drop", metadata={"help": "frames a stream has no message for: drop (counted in the meta; a gap longer than max_gap refuses the episode), refuse (the episode) or mark (fill from the nearest message, listed)"})
    max_gap: float = field(default=1.0, metadata={"help": "s: on_gap drop refuses an episode whose frames are missing for longer than this"})
    robot: str = field(default="arm", metadata={"help": "the robot: a catalog name (arm, ur_arm), a URDF path or the robot_description XML"})
    joint_names: tuple[str, ...] = field(default=(), metadata={"help": "joint order of joint_pos, joint_vel and action; empty: the robot's"})
    joint_states_topic: str = field(default="/joint_states", metadata={"help": "sensor_msgs/JointState: the reference clock"})
    action_topic: str = field(default="/forward_position_controller/commands", metadata={"help": "std_msgs/Float64MultiArray commands: the action; '' for none"})
    cameras: tuple[str, ...] = field(default=(), metadata={"help": "cameras: /camera/<cam>/image_raw and camera_info"})
    depth_cameras: tuple[str, ...] = field(default=(), metadata={"help": "cameras whose /camera/<cam>/depth/image_raw (32FC1 metres) is recorded too"})
    points_topic: str = field(default="", metadata={"help": "sensor_msgs/PointCloud2 topic; '' for none (resampled to num_points in the base frame)"})
    points_from_depth: str = field(default="", metadata={"help": "camera whose /camera/<cam>/depth/image_raw (32FC1 m or 16UC1 mm) + camera_info make the policy's points; its depth images are stored only if it is in depth_cameras"})
    camera_link: str = field(default="", metadata={"help": "URDF link of that camera's optical frame (a wrist camera: its pose follows the joint states)"})
    camera_pose: tuple[float, ...] = field(default=(), metadata={"help": "or x y z qx qy qz qw of the optical frame in the base frame (a camera outside the URDF)"})
    num_points: int = field(default=512, metadata={"help": "points per frame (workspace crop, voxel grid, farthest-point sampling)"})
    object_poses_topic: str = field(default="/task/object_poses", metadata={"help": "geometry_msgs/PoseArray; '' for none"})
    reward_topic: str = field(default="/task/reward", metadata={"help": "std_msgs/Float32 reward; '' for none"})
    success_topic: str = field(default="/task/success", metadata={"help": "std_msgs/Bool success; '' for none"})
    episode_start_topic: str = field(default="/sim/episode_start", metadata={"help": "std_msgs/Header stamped with an episode's first observation (the simulator's reset): an episode started up to episode_start_window s before it begins at that observation; '' for none"})
    episode_start_window: float = field(default=10.0, metadata={"help": "s: see episode_start_topic"})
    extra_topics: tuple[str, ...] = field(default=(), metadata={"help": "more topics for the bag only, as topic=pkg/msg/Type"})
    ee_pose: bool = field(default=True, metadata={"help": "add ee_pos/ee_quat from joint_pos by forward kinematics of the robot"})
    use_header_stamps: bool = field(default=True, metadata={"help": "align on header stamps where messages have them"})
    task: str = field(default="", metadata={"help": "episode meta: task name"})
    source_kind: str = field(default="scripted_expert", metadata={"help": "episode meta: scripted_expert, teleop, policy or other"})
    source_quality: str = field(default="", metadata={"help": "episode meta: expert quality (expert, good, medium, poor, 0..1)"})
    source_policy: str = field(default="", metadata={"help": "episode meta: policy name"})
    source_checkpoint: str = field(default="", metadata={"help": "episode meta: policy checkpoint path"})
    operator: str = field(default="", metadata={"help": "episode meta: who recorded it"})
    split_mb: float = field(default=1024.0, metadata={"help": "roll the bag to a new file past this size (MB)"})
    compression: str = field(default="none", metadata={"help": "bag chunk compression: none or zstd"})
    queue_mb: float = field(default=1024.0, metadata={"help": "messages waiting for the disk beyond this (MB) are dropped and counted"})
    idle_rate_hz: float = field(default=-1.0, metadata={"help": "between episodes: -1 records every message, 0 pauses the bag (camera_info kept), > 0 keeps at most this rate per topic"})

    def __post_init__(self):
        self.joint_names = tuple(self.joint_names) or load_robot(self.robot).joint_names
        if self.source_kind not in SOURCE_KINDS:
            raise ConfigError(f"source_kind must be one of {SOURCE_KINDS}, got {self.source_kind!r}")
        if self.compression not in ("none", "zstd"):
            raise ConfigError(f"compression must be none or zstd, got {self.compression!r}")
        if not self.split_mb > 0 or not self.queue_mb > 0:
            raise ConfigError("split_mb and queue_mb must be > 0")
        if not self.joint_states_topic:
            raise ConfigError("joint_states_topic is needed: it is the reference clock")
        unknown = [c for c in self.depth_cameras if c not in self.cameras]
        if unknown:
            raise ConfigError(f"depth_cameras {unknown} are not in cameras {list(self.cameras)}")
        self.sync_config()  # validates rate_hz, max_age, on_gap, streams
        self.extra()

    def sync_config(self) -> SyncConfig:
        depth = set(self.depth_cameras) | ({self.points_from_depth} if self.points_from_depth else set())
        streams = standard_streams(self.joint_states_topic, self.action_topic, self.cameras, depth,
                                   self.object_poses_topic, self.reward_topic, self.success_topic, self.points_topic)
        return SyncConfig(self.rate_hz, self.max_age, tuple(self.joint_names), streams, self.on_gap,
                          self.use_header_stamps, self.ee_pose, self.robot, self.max_gap,
                          self.episode_start_topic, self.episode_start_window, self.points_from_depth,
                          self.camera_link, tuple(self.camera_pose), self.num_points,
                          keep_depth=self.points_from_depth in self.depth_cameras)

    def extra(self) -> dict[str, str]:
        out = {}
        for item in self.extra_topics:
            topic, sep, msgtype = item.partition("=")
            if not sep or not topic.startswith("/"):
                raise ConfigError(f"extra_topics entry {item!r} must be /topic=pkg/msg/Type")
            try:
                out[topic] = msgtype_name(msgtype)
            except DataError as e:
                raise ConfigError(f"extra_topics entry {item!r}: {e}") from e
        return out

    def source(self) -> dict:
        out = {"kind": self.source_kind}
        for key in ("quality", "policy", "checkpoint"):
            value = getattr(self, f"source_{key}")
            if value:
                out[key] = value
        return out


@dataclass(frozen=True)
class TopicSpec:
    topic: str
    msgtype: str  # pkg/msg/Type
    sensor: bool  # sensor data (best effort is fine) vs state/commands


@dataclass
class TopicStats:
    received: int = 0
    written: int = 0
    bytes: int = 0
    dropped_transport: int = 0  # publication sequence gaps: lost between publisher and us
    lost_events: int = 0  # the middleware's message-lost events
    dropped_queue: int = 0  # the disk could not keep up
    idle_skipped: int = 0  # between episodes, over idle_rate_hz (on purpose, not a drop)
    idle_last: int = -(2**62)  # log time of the last message kept between episodes
    publishers: dict = field(default_factory=dict)  # gid -> last publication sequence number

    @property
    def dropped(self) -> int:
        return self.dropped_transport + self.lost_events + self.dropped_queue

    def as_dict(self) -> dict:
        return {"received": self.received, "written": self.written, "bytes": self.bytes, "dropped": self.dropped,
                "dropped_transport": self.dropped_transport, "lost_events": self.lost_events,
                "dropped_queue": self.dropped_queue, "idle_skipped": self.idle_skipped}


class Recorder:
    """See the module docstring. Thread-safe entry points: on_message, on_lost, start, stop, discard."""

    def __init__(self, config: RecorderConfig, log=None):
        self.config = config
        self.log = log or (lambda level, text: None)
        self.sync_config = config.sync_config()
        msgtypes = {s.topic: MSGTYPES[s.kind][0] for s in self.sync_config.streams}
        if config.episode_start_topic:
            msgtypes[config.episode_start_topic] = HEADER_TYPE
        for topic, msgtype in config.extra().items():
            if topic in msgtypes and msgtypes[topic] != msgtype:
                raise ConfigError(f"extra_topics: {topic} is already recorded as {msgtypes[topic]}")
            msgtypes[topic] = msgtype
        unknown = [t for t in msgtypes.values() if t not in typestore().fielddefs]
        if unknown:
            raise ConfigError(f"extra_topics: unknown message types {unknown}")
        self.msgtypes = msgtypes
        sensor_kinds = {"image", "depth", "points"}  # big messages: a shorter reader history
        kinds = {s.topic: s.kind for s in self.sync_config.streams}
        self.topics = [TopicSpec(t, m, kinds.get(t) in sensor_kinds) for t, m in msgtypes.items()]
        self.stats = {t: TopicStats() for t in msgtypes}
        self.bag: BagWriter | None = None
        self.dataset = None
        self.error: str | None = None  # set once: recording stopped
        self.episode: int | None = None  # the open episode's number (this session)
        self.episodes_started = 0
        self.results: deque = deque(maxlen=50)  # recent episode outcomes (dicts)
        self.committed = 0
        self.refused = 0
        self.discarded = 0
        self._lock = threading.Lock()
        self._last_t = 0
        self._queue: deque = deque()
        self._queued_bytes = 0
        self._cv = threading.Condition(threading.Lock())
        self._commits: queue.Queue = queue.Queue()
        self._pending_commits = 0
        self._busy = False
        self._writer: threading.Thread | None = None
        self._committer: threading.Thread | None = None
        self._closed = False
        self._start_wall = time.monotonic()
        self._deferred: deque = deque()  # (wall_ns, monotonic deadline, event, log_time_ns): markers not yet placed
        self._open_in_bag = False  # an episode is open at the end of what has been queued for the bag
        self._reference = self.sync_config.reference.topic

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> Path:
        """Create the bag, open (or create) the dataset, start the threads; returns the bag path."""
        c = self.config
        name = c.bag_name or time.strftime("rec_%Y%m%d_%H%M%S")
        path = Path(c.bag_dir) / name
        if c.dataset:
            from robot_rl.data.dataset import EpisodeDataset

            self.dataset = EpisodeDataset.open_or_create(c.dataset, {"joint_names": list(c.joint_names),
                                                                     "rate_hz": c.rate_hz}, load_robot(c.robot))
            keys = set(self.sync_config.keys)
            if self.dataset.keys and set(self.dataset.keys) != keys:
                raise DataError(f"{c.dataset}: the dataset's keys {sorted(self.dataset.keys)} differ from what this "
                                f"recorder makes {sorted(keys)}; match cameras/topics or use a new dataset")
        try:
            Path(c.bag_dir).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            from robot_rl.data.bag import os_error_text

            raise DataError(f"bag directory {c.bag_dir}: cannot create ({os_error_text(e)})") from e
        self.bag = BagWriter(path, split_bytes=int(c.split_mb * 1e6), compression=c.compression,
                             custom_data={"robot_rl.recorder": json.dumps({"sync": self.sync_config.to_dict()})})
        for spec in self.topics:
            self.bag.add_topic(spec.topic, spec.msgtype, _qos(spec.sensor))
        self.bag.add_topic(EVENTS_TOPIC, STRING_TYPE, _qos(False))
        self.assembler = EpisodeAssembler(self.sync_config, self.msgtypes, typestore().deserialize_cdr)
        self._writer = threading.Thread(target=self._write_loop, name="recorder-writer", daemon=True)
        self._committer = threading.Thread(target=self._commit_loop, name="recorder-committer", daemon=True)
        self._writer.start()
        self._committer.start()
        self.log("info", f"recording to bag {path}" + (f", episodes to {c.dataset}" if c.dataset else ""))
        return path

    def close(self, timeout: float = 60.0) -> None:
        """Discard an open episode, finish the bag and pending commits, stop the threads."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            self._place_deferred_locked()
            if self.episode is not None and self.error is None:
                self._enqueue_event_locked({"event": "discard", "episode": self.episode, "reason": "recorder shut down"})
                self.episode = None
            self._put(("close",))
        if self._writer is not None:
            self._writer.join(timeout)
        self._commits.put(None)
        if self._committer is not None:
            self._committer.join(timeout)

    # ------------------------------------------------------------------ input (subscription thread)

    def now_ns(self) -> int:
        return time.time_ns()

    def on_message(self, topic: str, raw, log_time_ns: int | None = None, publisher: bytes | None = None,
                   sequence: int | None = None, publish_time_ns: int | None = None) -> None:
        """One serialized message as received. `publisher`/`sequence` (the publisher's gid and
        publication sequence number from the middleware) let gaps be counted as drops;
        `publish_time_ns` (the middleware's source timestamp) is kept as the MCAP publish time."""
        st = self.stats[topic]
        n = len(raw)
        with self._lock:
            st.received += 1
            if publisher is not None and sequence is not None:
                last = st.publishers.get(publisher)
                if last is not None and sequence > last + 1:
                    st.dropped_transport += sequence - last - 1
                if last is None or sequence > last:
                    st.publishers[publisher] = sequence
            if self.error is not None or self._closed:
                return
            if self._queued_bytes + n > self.config.queue_mb * 1e6:
                st.dropped_queue += 1
                return
            if self._deferred and (publish_time_ns or topic == self._reference):
                # a message sent after a marker's call: everything sent before it is queued (a
                # reference message without a publish time: nothing to wait for)
                self._place_deferred_locked(publish_time_ns or None)
            t = self._log_time(log_time_ns)
            if (not self._open_in_bag and self.config.idle_rate_hz >= 0 and not topic.endswith("/camera_info")
                    and topic != self.config.episode_start_topic):
                rate = self.config.idle_rate_hz
                if rate == 0 or t - st.idle_last < 1e9 / rate:
                    st.idle_skipped += 1  # no episode open: the bag does not grow with idle streams
                    return
                st.idle_last = t
            self._put(("msg", topic, t, raw, publish_time_ns), n)

    def set_qos(self, topic: str, reliable: bool, depth: int) -> None:
        """The QoS the topic is actually subscribed with: stored as its offered QoS in the bag's
        metadata (and in the MCAP files opened from now on), which `ros2 bag play` replays with."""
        self.bag.topics[topic].qos = _qos(not reliable, depth)

    def on_lost(self, topic: str, count: int) -> None:
        with self._lock:
            self.stats[topic].lost_events += int(count)

    # ------------------------------------------------------------------ episodes (service thread)

    def place_deferred(self) -> None:
        """Place the markers whose wait (DEFER_S) is over; the node calls this on a timer."""
        with self._lock:
            self._place_deferred_locked(deadline=time.monotonic())

    def _place_deferred_locked(self, published: int | None = None, deadline: float | None = None) -> None:
        """Queue the deferred markers called before `published`, or due by `deadline` (and all
        before them); both None: all of them."""
        while self._deferred:
            wall, due, event, log_time_ns = self._deferred[0]
            if published is not None and wall > published:
                break
            if deadline is not None and due > deadline:
                break
            self._deferred.popleft()
            self._enqueue_event_locked(event, log_time_ns)

    def start(self, log_time_ns: int | None = None, wall_ns: int | None = None, **meta) -> str:
        with self._lock:
            self._check()
            if self.episode is not None:
                raise DataError(f"episode {self.episode} is open; stop or discard it first")
            c = self.config
            base = {"task": c.task, "source": c.source(), "bag": self.bag.path.name}
            if c.operator:
                base["operator"] = c.operator
            base.update({k: v for k, v in meta.items() if v is not None})
            self.episode = self.episodes_started
            self.episodes_started += 1
            self._event_locked({"event": "start", "episode": self.episode, "meta": base,
                                "sync": self.sync_config.to_dict()}, log_time_ns, wall_ns)
            return f"episode {self.episode} started"

    def stop(self, success: bool, log_time_ns: int | None = None, wall_ns: int | None = None) -> str:
        with self._lock:
            self._check()
            if self.episode is None:
                raise DataError("no episode is open; call start first")
            n, self.episode = self.episode, None
            self._event_locked({"event": "stop", "episode": n, "success": bool(success)}, log_time_ns, wall_ns)
            return f"episode {n} stopped ({'success' if success else 'failure'}); committing in the background"

    def discard(self, log_time_ns: int | None = None, wall_ns: int | None = None) -> str:
        with self._lock:
            self._check()
            if self.episode is None:
                raise DataError("no episode is open")
            n, self.episode = self.episode, None
            self._event_locked({"event": "discard", "episode": n}, log_time_ns, wall_ns)
            return f"episode {n} discarded"

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until every queued message is written and every stopped episode committed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cv:
                idle = not self._queue and not self._busy and not self._deferred
            if idle and self._pending_commits == 0:
                return True
            time.sleep(0.01)
        return False

    # ------------------------------------------------------------------ reporting

    def diagnostics(self) -> dict:
        with self._lock:
            topics = {t: s.as_dict() for t, s in self.stats.items()}
        elapsed = max(1e-9, time.monotonic() - self._start_wall)
        written = self.bag.bytes_written if self.bag is not None else 0
        return {
            "state": "failed" if self.error else ("recording" if self.episode is not None else "idle"),
            "error": self.error or "",
            "bag": str(self.bag.path) if self.bag is not None else "",
            "dataset": self.config.dataset,
            "episode": -1 if self.episode is None else self.episode,
            "episodes_started": self.episodes_started,
            "episodes_committed": self.committed,
            "episodes_refused": self.refused,
            "episodes_discarded": self.discarded,
            "last_result": self.results[-1] if self.results else {},
            "queue_messages": len(self._queue),
            "queue_mb": round(self._queued_bytes / 1e6, 3),
            "bytes_written": written,
            "mb_per_s": round(written / 1e6 / elapsed, 3),
            "received": sum(s["received"] for s in topics.values()),
            "written": sum(s["written"] for s in topics.values()),
            "dropped": sum(s["dropped"] for s in topics.values()),
            "topics": topics,
        }

    # ------------------------------------------------------------------ internals

    def _check(self) -> None:
        if self.error is not None:
            raise DataError(f"recording stopped: {self.error}")
        if self.bag is None:
            raise DataError("recorder is not open")

    def _log_time(self, log_time_ns: int | None) -> int:
        t = self.now_ns() if log_time_ns is None else int(log_time_ns)
        t = max(t, self._last_t + 1)  # strictly increasing: any bag reader replays our order
        self._last_t = t
        return t

    def _event_locked(self, event: dict, log_time_ns: int | None, wall_ns: int | None) -> None:
        if wall_ns is None and not self._deferred:
            self._enqueue_event_locked(event, log_time_ns)
        else:  # after the messages sent before it (and after any marker still waiting)
            wall = wall_ns if wall_ns is not None else self._deferred[-1][0]
            if wall_ns is not None:
                event["wall_ns"] = int(wall_ns)
            self._deferred.append((wall, time.monotonic() + DEFER_S, event, None))

    def _enqueue_event_locked(self, event: dict, log_time_ns: int | None = None) -> None:
        self._open_in_bag = event["event"] == "start"
        t = self._log_time(log_time_ns)
        self._put(("event", t, event))

    def _put(self, item, n: int = 0) -> None:
        with self._cv:
            self._queue.append(item)
            self._queued_bytes += n
            self._cv.notify()

    def _write_loop(self) -> None:
        _name_thread("rec-writer")
        aborted = False
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                item = self._queue.popleft()
                self._busy = True
            if self.error is not None and not aborted:
                self.bag.abort()  # the open file stays unlisted (repair_bag can salvage it)
                aborted = True
            try:
                if item[0] == "msg":
                    _, topic, t, raw, publish = item
                    with self._cv:
                        self._queued_bytes -= len(raw)
                    if self.error is None:
                        self.bag.write(topic, t, raw, publish)
                        st = self.stats[topic]
                        st.written += 1
                        st.bytes += len(raw)
                        self.assembler.message(topic, t, raw, publish)
                elif item[0] == "event":
                    if self.error is None:
                        self._on_event(item[1], item[2])
                elif item[0] == "close":
                    if self.error is None:
                        self.bag.close()
                    return
            except DataError as e:
                self._fail(e)
            except Exception as e:  # a bug must not silently stop the bag: report it as the error
                self._fail(DataError(f"recorder writer failed: {type(e).__name__}: {e}"))
            finally:
                with self._cv:
                    self._busy = False

    def _on_event(self, t: int, event: dict) -> None:
        self.bag.write(EVENTS_TOPIC, t, event_message(event))
        kind, n = event["event"], event["episode"]
        if kind == "start":
            self.assembler.start(event["meta"], t, event.get("wall_ns"))
            self.bag.flush()
        elif kind == "discard":
            self.assembler.discard()
            self.bag.roll()
            self.discarded += 1
            self._result(n, "discarded", reason=event.get("reason", "discard requested"))
        elif kind == "stop":
            self.bag.roll()  # the episode's messages are now in a closed, listed file
            try:
                frames, meta = self.assembler.stop(event["success"], t)
            except EpisodeRefused as e:
                self.refused += 1
                self._result(n, "refused", reason=str(e))
                self.log("warn", f"episode {n} refused: {e}; the bag keeps its messages")
                return
            except DataError as e:
                self.refused += 1
                self._result(n, "refused", reason=str(e))
                self.log("error", f"episode {n} not saved: {e}")
                return
            if self.dataset is None:
                self._result(n, "recorded", frames=len(next(iter(frames.values()))))
                return
            self._pending_commits += 1
            self._commits.put((n, frames, meta))

    def _commit_loop(self) -> None:
        _name_thread("rec-commit")
        try:  # compressing episodes yields the CPU to receiving and writing the bag (Linux: per thread)
            import os

            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        while True:
            item = self._commits.get()
            if item is None:
                return
            n, frames, meta = item
            try:
                if self.error is None:
                    index = self.dataset.append_episode(frames, meta)
                    self.committed += 1
                    length = len(next(iter(frames.values())))
                    self._result(n, "committed", index=index, frames=length, success=meta["success"])
                    dropped = meta["sync"].get("dropped", 0)
                    self.log("info", f"episode {n} committed as {self.config.dataset} episode {index} "
                                     f"({length} frames, {'success' if meta['success'] else 'failure'}"
                                     + (f"; {dropped} frames dropped, listed in its meta" if dropped else "") + ")")
            except DataError as e:
                cause = e.__cause__
                if isinstance(cause, OSError) and (cause.errno in DISK_ERRNOS or cause.errno in (errno.EACCES, errno.EPERM)):
                    self._fail(e)
                else:
                    self.refused += 1
                    self._result(n, "refused", reason=str(e))
                    self.log("error", f"episode {n} not saved: {e}")
            except Exception as e:
                self._fail(DataError(f"recorder committer failed: {type(e).__name__}: {e}"))
            finally:
                self._pending_commits -= 1

    def _result(self, n: int, status: str, **info) -> None:
        self.results.append({"episode": n, "status": status, **info})

    def _fail(self, e: Exception) -> None:
        with self._lock:
            if self.error is None:
                self.error = str(e)
                self.episode = None
        self.log("error", f"recording stopped: {e}")
        with self._cv:  # nothing more will be written: free the queue, wake the writer to abort
            for item in self._queue:
                if item[0] == "msg":
                    self.stats[item[1]].dropped_queue += 1
            self._queue = deque([i for i in self._queue if i[0] == "close"] or [("wake",)])
            self._queued_bytes = 0
            self._cv.notify()


def _name_thread(name: str) -> None:
    """Name the OS thread (visible in `top -H`, /proc/<pid>/task/*/comm); Linux only, best effort."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def _qos(best_effort: bool, depth: int | None = None) -> list:
    """A QoS profile as stored in the bag (offered QoS, for replay)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(0, 0)
    reliability = QosReliability.BEST_EFFORT if best_effort else QosReliability.RELIABLE
    return [Qos(QosHistory.KEEP_LAST, depth or (10 if best_effort else 100), reliability, QosDurability.VOLATILE,
                zero, zero, QosLiveliness.AUTOMATIC, zero, False)]

