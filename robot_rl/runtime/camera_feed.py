"""A perception checkpoint's camera keys from their topics, for every node that runs one: the
diffusion_policy node (its own policy) and residual_policy (the base whose features it reads).

Which topic gives which key (`topic_for`): `<cam>_rgb` /camera/<cam>/image_raw, `<cam>_depth`
/camera/<cam>/depth/image_raw, `points` /camera/<points_camera>/points, or with
`points_source: depth` that camera's depth/image_raw + camera_info back-projected. The points key
is made the way the checkpoint's training clouds were (its cloud.json: crop, voxel, N), from a
PointCloud2 in any frame or a depth image, with the camera placed by `camera_link` (URDF) or
`camera_pose`. Images pass as published. No rclpy here: messages come in converted.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robot_rl.errors import ConfigError, RobotRLError
from robot_rl.perception.camera_cloud import CameraCloud, check_camera_placement, read_cloud_record
from robot_rl.perception.depth import DepthImage, PinholeCamera
from robot_rl.runtime.logs import WarnOnce

JOINT_KEYS = ("joint_pos", "joint_vel", "ee_pos", "ee_quat")  # all from /joint_states


@dataclass
class CameraConfig:
    """Where a node's points come from (the ROS parameters of every node that reads cameras)."""
    points_camera: str = field(default="front", metadata={"help": "the points key reads /camera/<points_camera>/points"})
    points_source: str = field(default="points", metadata={"help": "points: a PointCloud2 on /camera/<points_camera>/points; depth: its depth/image_raw (32FC1 m or 16UC1 mm) + camera_info, back-projected"})
    camera_link: str = field(default="", metadata={"help": "URDF link of the points camera's optical frame (its pose follows the joint states)"})
    camera_pose: tuple[float, ...] = field(default=(), metadata={"help": "x y z qx qy qz qw of the points camera's optical frame in the base frame (a camera outside the URDF); neither: clouds are in the base frame"})

    def check_cameras(self) -> None:
        check_camera_placement(self.points_source, self.camera_link, self.camera_pose)


def topic_for(key: str, points_camera: str = "front") -> str | None:
    """The topic an observation key is read from, or None when no topic provides it."""
    if key in JOINT_KEYS:
        return "/joint_states"
    if key == "object_poses":
        return "/task/object_poses"
    if key.endswith("_rgb"):
        return f"/camera/{key[:-4]}/image_raw"
    if key.endswith("_depth"):
        return f"/camera/{key[:-6]}/depth/image_raw"
    if key == "points":
        return f"/camera/{points_camera}/points"
    if key.endswith("_points"):
        return f"/camera/{key[:-7]}/points"
    return None


class CameraFeed:
    def __init__(self, config: CameraConfig, keys, obs_shapes, points_use_rgb: bool, path, robot, joints, log):
        """`keys`: the checkpoint's observation keys (those from cameras are this feed's),
        `joints`: the order of the joint positions handed in (a wrist camera's pose)."""
        self.config, self.joints, self.log = config, tuple(joints), log
        self.warn_once = WarnOnce(log)
        self.keys = tuple(k for k in keys if k not in JOINT_KEYS and k != "object_poses")
        self.points_topic = topic_for("points", config.points_camera)
        self._info: PinholeCamera | None = None  # the points camera's latest CameraInfo
        topics = [topic_for(k, config.points_camera) for k in self.keys]
        self.cloud = None
        if "points" in self.keys:
            if config.points_source == "depth" and points_use_rgb:
                raise ConfigError(f"{path} reads point colours; points_source depth gives xyz only (use a "
                                  "coloured PointCloud2, points_source points)")
            self.cloud = CameraCloud(robot, obs_shapes["points"], config.points_source, config.camera_link,
                                     config.camera_pose, read_cloud_record(path))
            if config.points_source == "depth":
                cam = f"/camera/{config.points_camera}"
                topics = [t for t in topics if t != self.points_topic] + [f"{cam}/depth/image_raw", f"{cam}/camera_info"]
        self.topics = tuple(dict.fromkeys(topics))  # what to subscribe to

    def key_topics(self) -> dict[str, str]:
        """{camera key: the topic its values are stored under} (a cloud made from depth: the points topic)."""
        return {k: topic_for(k, self.config.points_camera) for k in self.keys}

    def points(self, topic: str, points: np.ndarray, q) -> np.ndarray | None:
        """A PointCloud2's points on `topic`: the policy's cloud for the points topic, a
        `<cam>_points` key's as published; None when it cannot be made (logged)."""
        if self.cloud is None or topic != self.points_topic:
            return points
        return self._cloud(topic, q, lambda positions: self.cloud.from_points(points, positions))

    def depth(self, image: DepthImage, q) -> np.ndarray | None:
        """The points camera's depth image, back-projected with its latest CameraInfo."""
        info = self._info
        if info is None:
            self.warn_once("camera_info", f"/camera/{self.config.points_camera}/camera_info: no message yet, "
                           "the depth images wait for it")
            return None
        return self._cloud(f"/camera/{self.config.points_camera}/depth/image_raw", q,
                           lambda positions: self.cloud.from_depth(image.depth, image.encoding, info, positions))

    def info(self, topic: str, camera: PinholeCamera) -> None:
        self._info = camera
        note = self.cloud.image_size_note(camera) if self.cloud is not None else None
        if note:
            self.warn_once("camera_size", f"{topic}: {note}")

    def _cloud(self, topic: str, q, make) -> np.ndarray | None:
        positions = None
        if self.cloud.needs_joints:
            if q is None:
                return None  # a wrist camera's pose needs the joint states first
            positions = dict(zip(self.joints, q))
        try:
            return make(positions)  # voxel + FPS take milliseconds: callers keep it outside their locks
        except RobotRLError as e:
            self.log.error(f"{topic}: {e}; ignoring the message", throttle_duration_sec=5.0)
            return None


def open_base_view(config: CameraConfig, base_checkpoint: str, who: str, robot, joints, log):
    """(the perception base whose frozen encoder gives base_features, the CameraFeed of its
    cameras), for a residual or critic `who` that reads base_features (policies/base_view.py)."""
    from pathlib import Path

    from robot_rl.policies import base_view
    from robot_rl.policies.diffusion.model import DiffusionPolicy

    if not (Path(base_checkpoint) / "config.json").is_file():
        raise ConfigError(f"{who} reads {base_view.KEY} (what its base sees): set base_checkpoint to that "
                          "point-cloud or RGB base's checkpoint folder")
    base = DiffusionPolicy.from_checkpoint(base_checkpoint)
    if not base_view.sees(base):
        raise ConfigError(f"base_checkpoint {base_checkpoint} reads no camera: {base_view.KEY} needs a "
                          "point-cloud or RGB base")
    pc = base.config
    return base, CameraFeed(config, pc.obs_keys, pc.obs_shapes, pc.points_use_rgb, base_checkpoint, robot, joints, log)


class CameraCallbacks:
    """The camera inputs of a runner that owns a CameraFeed: it provides `_feed()` (the feed, or
    None while it has none), `_positions()` (the latest joint positions in the feed's order, or
    None) and `observation(topic, stamp, value)`, where the made values go."""

    def camera_points(self, topic: str, stamp: float, points: np.ndarray) -> None:
        """A PointCloud2's points (any frame, any size): made into the policy's cloud; a
        `<cam>_points` key's cloud is taken as published."""
        feed = self._feed()
        cloud = feed.points(topic, points, self._positions()) if feed is not None else None
        if cloud is not None:
            self.observation(topic, stamp, cloud)

    def camera_depth(self, topic: str, stamp: float, image: DepthImage) -> None:
        """The points camera's depth image: back-projected with its latest CameraInfo."""
        feed = self._feed()
        if feed is not None and feed.cloud is None:  # no points key: a `<cam>_depth` key as published
            self.observation(topic, stamp, image.depth)
            return
        cloud = feed.depth(image, self._positions()) if feed is not None else None
        if cloud is not None:
            self.observation(feed.points_topic, stamp, cloud)

    def camera_info(self, topic: str, stamp: float, camera: PinholeCamera) -> None:
        feed = self._feed()
        if feed is not None:
            feed.info(topic, camera)
