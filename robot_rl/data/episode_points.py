"""The `points` key of a recorded episode, made the way the simulator and the diffusion node make
theirs (robot_rl/perception): each frame's depth image with its camera's CameraInfo, or each
PointCloud2 a driver published (any frame, any number of points), -> `num_points` points in the
robot's base frame, cropped to the workspace, voxel- and farthest-point-sampled. A policy trained
on a real arm's recording then sees at deployment the cloud it was trained on.

Where the camera is comes from SyncConfig: `camera_link` (a URDF link: its pose is computed from
each frame's joint positions, a wrist camera) or `camera_pose` (fixed); neither: the cloud is in
the base frame already.
"""
from __future__ import annotations

import numpy as np

from robot_rl.errors import DataError
from robot_rl.perception.camera_cloud import CameraCloud
from robot_rl.perception.depth import PinholeCamera


def add_points(frames: dict, intrinsics: dict, config) -> dict:
    """`frames` (the synchroniser's, `config` a SyncConfig) with `points` made from the depth
    camera or resampled from the points stream; the frames as they are when neither applies."""
    cam = config.points_from_depth
    if not cam and "points" not in frames:
        return frames
    frames = dict(frames)
    joint_pos = frames["joint_pos"]

    def joints(t: int) -> dict[str, float]:
        return dict(zip(config.joint_names, map(float, joint_pos[t])))

    if cam:
        if cam not in intrinsics:
            raise DataError(f"topic /camera/{cam}/camera_info: no camera_info for camera '{cam}'; "
                            "its intrinsics are needed to make points from depth")
        fx, fy, cx, cy, w, h = intrinsics[cam]
        camera = PinholeCamera(fx, fy, cx, cy, int(w), int(h))
        cloud = _camera_cloud(config, 3)
        depth = frames[f"{cam}_depth"]
        frames["points"] = np.stack([cloud.from_depth(d, "32FC1", camera, joints(t)) for t, d in enumerate(depth)])
        if not config.keep_depth:
            del frames[f"{cam}_depth"]
        return frames
    raw = frames["points"]
    cloud = _camera_cloud(config, raw[0].shape[1])
    frames["points"] = np.stack([cloud.from_points(p, joints(t)) for t, p in enumerate(raw)])
    return frames


def _camera_cloud(config, channels: int) -> CameraCloud:
    robot = None
    if config.camera_link:
        from robot_rl.robot import load_robot

        robot = load_robot(config.robot)
    return CameraCloud(robot, (config.num_points, channels), "depth" if config.points_from_depth else "points",
                       config.camera_link, config.camera_pose)
