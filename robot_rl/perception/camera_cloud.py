"""The policy's point cloud from a camera's own messages: a depth image + CameraInfo, or a
PointCloud2 as a driver publishes it (any frame, any size), made the way the checkpoint's
training data was (robot_rl/perception: base frame, workspace crop, voxel + farthest-point
sampling to the checkpoint's number of points).

Where the camera is: `camera_link`, a URDF link of its optical frame (its pose follows the joint
states: a wrist camera), or `camera_pose`, x y z qx qy qz qw of the optical frame in the base
frame (a camera on a tripod). Neither: the cloud is already in the base frame, and one with the
checkpoint's number of points is used as it is (the simulator publishes the policy's cloud).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from robot_rl.errors import ConfigError, DataError
from robot_rl.perception.depth import PinholeCamera
from robot_rl.perception.extrinsics import LinkPose, pose_matrix
from robot_rl.perception.pointcloud import CLOUD_FILE, PointCloudConfig, cloud_from_depth, cloud_from_points

POINTS_SOURCES = ("points", "depth")


def check_camera_placement(points_source: str, camera_link: str, camera_pose) -> None:
    if points_source not in POINTS_SOURCES:
        raise ConfigError(f"points_source must be one of {POINTS_SOURCES}, got {points_source!r}")
    if camera_pose and len(camera_pose) != 7:
        raise ConfigError(f"camera_pose is x y z qx qy qz qw (7 values), got {len(camera_pose)}")
    if camera_pose and camera_link:
        raise ConfigError("give camera_link (a camera in the URDF) or camera_pose (one outside it), not both")
    if points_source == "depth" and not (camera_pose or camera_link):
        raise ConfigError("points_source depth needs where the camera is: camera_link or camera_pose")


def read_cloud_record(checkpoint) -> dict | None:
    """How a point-cloud checkpoint's training clouds were made (CLOUD_FILE), or None (not recorded)."""
    path = Path(checkpoint) / CLOUD_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a JSON cloud record ({e}); retrain, or delete it to use the defaults") from None


class CameraCloud:
    def __init__(self, robot, points_shape, points_source: str = "points", camera_link: str = "", camera_pose=(),
                 record: dict | None = None):
        """`record`: the checkpoint's cloud record (crop, voxel, N, the training camera's image size)."""
        check_camera_placement(points_source, camera_link, camera_pose)
        self.num_points, self.channels = int(points_shape[0]), int(points_shape[1])
        self.cloud = PointCloudConfig.from_dict(record) if record else PointCloudConfig(num_points=self.num_points)
        if self.cloud.num_points != self.num_points:
            raise ConfigError(f"the cloud record says {self.cloud.num_points} points, the policy reads {self.num_points}")
        self.trained_image_size = tuple((record or {}).get("image_size") or ())
        self.pose = pose_matrix(camera_pose[:3], camera_pose[3:]) if camera_pose else None
        self.link = LinkPose(robot, camera_link) if camera_link else None

    @property
    def needs_joints(self) -> bool:
        return self.link is not None

    def extrinsics(self, joint_positions: dict[str, float] | None = None) -> np.ndarray | None:
        if self.link is not None:
            return self.link(joint_positions)
        return self.pose

    def from_points(self, points: np.ndarray, joint_positions: dict[str, float] | None = None) -> np.ndarray:
        base_from_camera = self.extrinsics(joint_positions)
        if base_from_camera is None and len(points) == self.num_points:
            return points
        return self._channels(cloud_from_points(points, base_from_camera, self.cloud))

    def image_size_note(self, camera: PinholeCamera) -> str | None:
        """A depth camera of another resolution than training's: denser or sparser clouds (the
        voxel grid and the sampling to N points even most of it out)."""
        if self.trained_image_size and (camera.width, camera.height) != self.trained_image_size:
            w, h = self.trained_image_size
            return (f"depth images are {camera.width}x{camera.height}, the policy was trained on clouds from "
                    f"{w}x{h}; the clouds' density differs (set the camera to {w}x{h} where it can)")
        return None

    def from_depth(self, depth: np.ndarray, encoding: str, camera: PinholeCamera,
                   joint_positions: dict[str, float] | None = None) -> np.ndarray:
        return self._channels(cloud_from_depth(depth, encoding, camera, self.extrinsics(joint_positions), self.cloud))

    def _channels(self, points: np.ndarray) -> np.ndarray:
        """xyz only (a depth image has no colour) for a checkpoint trained on xyz + rgb: the colour
        channels are zero; the encoder reads them only with points_use_rgb (checked at load)."""
        if points.shape[1] < self.channels:
            points = np.concatenate([points, np.zeros((len(points), self.channels - points.shape[1]), np.float32)], 1)
        return points[:, : self.channels]
