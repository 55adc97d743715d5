"""Observation topics besides /joint_states, converted for a runner: object poses, images, depth,
point clouds and CameraInfo (which key reads which topic: runtime/camera_feed.py's topic_for).

Shared by the nodes that run a checkpoint's observation keys: diffusion_policy (its policy's) and
residual_policy (what a perception base sees). A message that does not convert is one error
line per topic per period and is dropped.
"""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PoseArray
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from robot_rl.errors import DataError
from robot_rl.perception.depth import DepthImage, PinholeCamera
from robot_rl.ros import msgs

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def _rgb_from_msg(msg: Image) -> np.ndarray:
    image = msgs.image_from_msg(msg)
    return image[..., ::-1].copy() if msg.encoding == "bgr8" else image


def _depth_image(msg: Image) -> DepthImage:
    return DepthImage(msgs.image_from_msg(msg), msg.encoding)


# topic kind -> (message type, converter, QoS)
SOURCES = {
    "poses": (PoseArray, msgs.poses_from_msg, RELIABLE),
    "rgb": (Image, _rgb_from_msg, qos_profile_sensor_data),
    "depth": (Image, msgs.image_from_msg, qos_profile_sensor_data),
    "points": (PointCloud2, msgs.points_from_msg, qos_profile_sensor_data),
    "camera_info": (CameraInfo, lambda m: PinholeCamera.from_k(m.k, m.width, m.height), qos_profile_sensor_data),
}


def kind_of(topic: str) -> str:
    if topic == "/task/object_poses":
        return "poses"
    if topic.endswith("/depth/image_raw"):
        return "depth"
    if topic.endswith("/camera_info"):
        return "camera_info"
    if topic.endswith("/image_raw"):
        return "rgb"
    return "points"


def subscribe_observation(node, topic: str, runner, cameras):
    """Subscribe `node` (a BaseNode) to `topic`, handing each converted message to the runner
    method that takes it: observation, camera_points, camera_depth (the points camera's depth
    when `cameras.points_source` is depth) or camera_info; `cameras`: the node's CameraConfig."""
    kind = kind_of(topic)
    msg_type, convert, qos = SOURCES[kind]
    deliver = runner.observation
    if kind == "camera_info":
        deliver = runner.camera_info
    elif kind == "points":
        deliver = runner.camera_points
    elif cameras.points_source == "depth" and topic == f"/camera/{cameras.points_camera}/depth/image_raw":
        convert, deliver = _depth_image, runner.camera_depth

    def on_message(msg) -> None:
        try:
            value = convert(msg)
        except DataError as e:
            node._error_every(topic, f"{topic}: {e}; ignoring the message")
            return
        deliver(topic, msgs.from_time(msg.header.stamp), value)

    return node.create_subscription(msg_type, topic, on_message, qos)
