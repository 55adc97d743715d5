"""Depth image -> world-frame point cloud, cropped to the workspace and downsampled to N points.

Back-projection is plain numpy (it is one matrix product); open3d does the voxel grid and the
farthest-point sampling, which keep the cloud's shape with a fixed number of points.
"""
from __future__ import annotations

import numpy as np
import open3d as o3d

# Workspace box (world frame, metres) that the policies look at: the table top and above it.
WORKSPACE_MIN = np.array([0.15, -0.45, 0.0015])  # just above the table top: the table is no information
WORKSPACE_MAX = np.array([0.85, 0.45, 0.6])


def depth_to_points(depth: np.ndarray, intrinsics, cam_pos: np.ndarray, cam_rot: np.ndarray,
                    rgb: np.ndarray | None = None) -> np.ndarray:
    """(H, W) depth in metres -> (M, 3 or 6) points in the world frame.

    `cam_rot` is the camera-to-world rotation in OpenGL convention (x right, y up, looking
    along -z), as MuJoCo and most renderers give it.
    """
    fx, fy, cx, cy = intrinsics[:4]
    h, w = depth.shape
    v, u = np.indices((h, w), dtype=np.float32)
    z = depth.astype(np.float32)
    cam = np.stack([(u + 0.5 - cx) / fx * z, -(v + 0.5 - cy) / fy * z, -z], axis=-1).reshape(-1, 3)
    pts = cam @ cam_rot.T.astype(np.float32) + cam_pos.astype(np.float32)
    if rgb is not None:
        pts = np.concatenate([pts, rgb.reshape(-1, 3).astype(np.float32) / 255.0], axis=1)
    return pts


def crop(points: np.ndarray, lo=WORKSPACE_MIN, hi=WORKSPACE_MAX) -> np.ndarray:
    xyz = points[:, :3]
    keep = np.all((xyz >= lo) & (xyz <= hi), axis=1)
    return points[keep]


def downsample(points: np.ndarray, num_points: int, voxel_size: float = 0.005) -> np.ndarray:
    """Voxel grid then farthest-point sampling to exactly `num_points` (repeats if too few)."""
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
