"""Camera data -> the policy's point cloud: N points in the robot's base frame, cropped to the
workspace and downsampled (voxel grid, then farthest-point sampling: the cloud keeps its shape
with a fixed number of points).

One path for every source: the simulator's depth camera, a real camera's depth image + CameraInfo
(robot_rl/perception/depth.py), and a PointCloud2 in any frame; where the camera is comes from a
pose parameter or a URDF link (robot_rl/perception/extrinsics.py). The back-projection is numpy
(one matrix product); open3d does the voxel grid and the farthest-point sampling.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from robot_rl.perception.depth import PinholeCamera, back_project, depth_in_metres

# Workspace box (base frame, metres) that the policies look at: the table top and above it.
WORKSPACE_MIN = (0.15, -0.45, 0.0015)  # just above the table top: the table is no information
WORKSPACE_MAX = (0.85, 0.45, 0.6)


CLOUD_FILE = "cloud.json"  # in a point-cloud checkpoint: how its training clouds were made


@dataclass(frozen=True)
class PointCloudConfig:
    """How a cloud is made. A dataset's episodes record it (meta "points"), a checkpoint trained
    on them records it (CLOUD_FILE), and the node makes its clouds with the same."""
    num_points: int = 512
    voxel_size: float = 0.005  # metres
    workspace_min: tuple[float, float, float] = WORKSPACE_MIN
    workspace_max: tuple[float, float, float] = WORKSPACE_MAX

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def record(self, source: str, image_size=(), camera_link: str = "", camera_pose=()) -> dict:
        """How a dataset's clouds were made (episode meta "points", then a checkpoint's CLOUD_FILE):
        this config, the depth key or topic they came from, that camera's image size and placement."""
        return {"from": source, "camera_link": camera_link, "camera_pose": list(camera_pose),
                "image_size": list(image_size), **self.to_dict()}

    @classmethod
    def from_dict(cls, record: dict) -> PointCloudConfig:
        """From a record that may hold more (the camera's placement, image size): those are left."""
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in record.items() if k in fields}
        for k in ("workspace_min", "workspace_max"):
            if k in kw:
                kw[k] = tuple(float(v) for v in kw[k])
        return cls(**kw)


def transform(points: np.ndarray, base_from_frame: np.ndarray) -> np.ndarray:
    """(M, 3 or 6) points in a frame -> the same points in the base frame (colours kept)."""
    m = np.asarray(base_from_frame, np.float32)
    out = np.array(points, np.float32)
    out[:, :3] = out[:, :3] @ m[:3, :3].T + m[:3, 3]
    return out


def crop(points: np.ndarray, lo=WORKSPACE_MIN, hi=WORKSPACE_MAX) -> np.ndarray:
    xyz = points[:, :3]
    keep = np.all((xyz >= np.asarray(lo)) & (xyz <= np.asarray(hi)), axis=1)
    return points[keep]


def downsample(points: np.ndarray, num_points: int, voxel_size: float = 0.005) -> np.ndarray:
    """Voxel grid then farthest-point sampling to exactly `num_points` (repeats if too few)."""
    import open3d as o3d  # here: a second to import, and only the cloud makers need it

    if len(points) == 0:
        return np.zeros((num_points, points.shape[1]), np.float32)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points[:, :3].astype(np.float64)))
    has_color = points.shape[1] >= 6
    if has_color:
        cloud.colors = o3d.utility.Vector3dVector(points[:, 3:6].astype(np.float64))
    cloud = cloud.voxel_down_sample(voxel_size)
    if len(cloud.points) > num_points:
        cloud = cloud.farthest_point_down_sample(num_points)
    out = np.asarray(cloud.points, np.float32)
    if has_color:
        out = np.concatenate([out, np.asarray(cloud.colors, np.float32)], axis=1)
    if len(out) < num_points:  # pad by repeating points so batch shapes stay fixed
        out = out[np.arange(num_points) % len(out)]
    return out


def cloud_from_points(points: np.ndarray, base_from_frame: np.ndarray | None, config: PointCloudConfig) -> np.ndarray:
    """A cloud in some frame (a driver's PointCloud2) -> the policy's (num_points, C) in the base frame."""
    points = np.asarray(points, np.float32)
    if base_from_frame is not None:
        points = transform(points, base_from_frame)
    points = crop(points, config.workspace_min, config.workspace_max)
    return downsample(points, config.num_points, config.voxel_size)


def cloud_from_depth(depth: np.ndarray, encoding: str, camera: PinholeCamera, base_from_optical: np.ndarray,
                     config: PointCloudConfig, rgb: np.ndarray | None = None) -> np.ndarray:
    """A depth image as published (+ its CameraInfo and the camera's pose) -> (num_points, 3 or 6)
    in the base frame; with `rgb` (registered to the depth image) each point keeps its colour in [0, 1]."""
    xyz, index = back_project(depth_in_metres(depth, encoding), camera)
    if rgb is not None:
        colours = np.asarray(rgb).reshape(-1, 3)[index].astype(np.float32) / 255.0
        xyz = np.concatenate([xyz, colours], axis=1)
    return cloud_from_points(xyz, base_from_optical, config)
