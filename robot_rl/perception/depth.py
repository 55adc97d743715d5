"""Depth images as cameras publish them -> metres -> points in the camera's optical frame.

ROS conventions (REP 103, REP 118, sensor_msgs/CameraInfo): the optical frame has x right, y down,
z forward; depth is the z coordinate, `32FC1` in metres or `16UC1` in millimetres, and a pixel
without a measurement is 0 (16UC1) or NaN / inf (32FC1); pixel (u, v)'s centre has coordinates
(u, v), so K's principal point of a centred 640x480 camera is (319.5, 239.5).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from robot_rl.errors import DataError

DEPTH_SCALE = {"32FC1": 1.0, "16UC1": 0.001}  # encoding -> metres per unit (REP 118)


class DepthImage(NamedTuple):
    """A depth image as published: its array and its encoding."""
    depth: np.ndarray
    encoding: str


@dataclass(frozen=True)
class PinholeCamera:
    """A rectified pinhole camera: CameraInfo's K and image size."""
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_k(cls, k, width: int, height: int) -> PinholeCamera:
        k = np.asarray(k, float).reshape(-1)
        if k.size != 9 or k[0] <= 0 or k[4] <= 0:
            raise DataError(f"camera info K must be 9 values with fx, fy > 0, got {k.tolist()}")
        return cls(float(k[0]), float(k[4]), float(k[2]), float(k[5]), int(width), int(height))


def depth_in_metres(depth: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W) depth as published -> float32 metres, NaN where the camera measured nothing."""
    if encoding not in DEPTH_SCALE:
        raise DataError(f"depth encoding {encoding!r} is not one of {sorted(DEPTH_SCALE)}")
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise DataError(f"a depth image is (H, W), got shape {depth.shape}")
    z = depth.astype(np.float32) * np.float32(DEPTH_SCALE[encoding])
    z[~np.isfinite(z) | (z <= 0)] = np.nan
    return z


def back_project(depth_m: np.ndarray, camera: PinholeCamera) -> tuple[np.ndarray, np.ndarray]:
    """Metres (H, W) -> (points (M, 3) in the optical frame, flat indices (M,) of their pixels);
    pixels without depth are left out."""
    h, w = depth_m.shape
    if (w, h) != (camera.width, camera.height):
        raise DataError(f"depth image is {w}x{h} but its camera info says {camera.width}x{camera.height}")
    index = np.flatnonzero(np.isfinite(depth_m))
    v, u = np.divmod(index, w)
    z = depth_m.reshape(-1)[index]
    x = (u - camera.cx) / camera.fx * z
    y = (v - camera.cy) / camera.fy * z
    return np.stack([x, y, z], axis=1).astype(np.float32), index
