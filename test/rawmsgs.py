"""Serialized (CDR) standard messages built with rosbags, for tests of the ROS-free data code.

The bytes are what a ROS 2 publisher puts on the wire, so the recorder and the bag code see
exactly what they see from rclpy with `raw=True`.
"""
from __future__ import annotations

import numpy as np
from rosbags.typesys.stores import ros2_kilted as T

from robot_rl.data.bag import serialize

JOINTS = ("joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "joint7", "finger_joint")


def _stamp(t_ns: int):
    return T.builtin_interfaces__msg__Time(sec=int(t_ns // 1_000_000_000), nanosec=int(t_ns % 1_000_000_000))


def _header(t_ns: int, frame: str = "world"):
    return T.std_msgs__msg__Header(stamp=_stamp(t_ns), frame_id=frame)


def joint_state(t_ns: int, position, velocity=None, names=JOINTS) -> bytes:
    position = np.asarray(position, dtype=np.float64)
    velocity = np.zeros_like(position) if velocity is None else np.asarray(velocity, dtype=np.float64)
    msg = T.sensor_msgs__msg__JointState(header=_header(t_ns), name=list(names), position=position,
                                         velocity=velocity, effort=np.zeros(0))
    return serialize(msg, "sensor_msgs/msg/JointState")


def image(t_ns: int, array: np.ndarray, encoding: str | None = None) -> bytes:
    array = np.ascontiguousarray(array)
    if encoding is None:
        encoding = "rgb8" if array.ndim == 3 else "32FC1"
    h, w = array.shape[:2]
    msg = T.sensor_msgs__msg__Image(header=_header(t_ns, "cam"), height=h, width=w, encoding=encoding,
                                    is_bigendian=0, step=array[0].nbytes,
                                    data=np.frombuffer(array.tobytes(), dtype=np.uint8))
    return serialize(msg, "sensor_msgs/msg/Image")


def camera_info(t_ns: int, fx=100.0, fy=100.0, cx=32.0, cy=24.0, width=64, height=48) -> bytes:
    roi = T.sensor_msgs__msg__RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    msg = T.sensor_msgs__msg__CameraInfo(
        header=_header(t_ns, "cam"), height=height, width=width, distortion_model="plumb_bob", d=np.zeros(5),
        k=np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1], dtype=np.float64), r=np.eye(3).reshape(-1),
        p=np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0], dtype=np.float64), binning_x=0, binning_y=0, roi=roi)
    return serialize(msg, "sensor_msgs/msg/CameraInfo")


def poses(t_ns: int, array) -> bytes:
    ps = [T.geometry_msgs__msg__Pose(position=T.geometry_msgs__msg__Point(x=float(p[0]), y=float(p[1]), z=float(p[2])),
                                     orientation=T.geometry_msgs__msg__Quaternion(x=float(p[4]), y=float(p[5]),
                                                                                  z=float(p[6]), w=float(p[3])))
          for p in np.asarray(array, dtype=np.float64).reshape(-1, 7)]
    return serialize(T.geometry_msgs__msg__PoseArray(header=_header(t_ns), poses=ps), "geometry_msgs/msg/PoseArray")


def command(values) -> bytes:
    layout = T.std_msgs__msg__MultiArrayLayout(dim=[], data_offset=0)
    msg = T.std_msgs__msg__Float64MultiArray(layout=layout, data=np.asarray(values, dtype=np.float64))
    return serialize(msg, "std_msgs/msg/Float64MultiArray")


def reward(value: float) -> bytes:
    return serialize(T.std_msgs__msg__Float32(data=float(value)), "std_msgs/msg/Float32")


def success(value: bool) -> bytes:
    return serialize(T.std_msgs__msg__Bool(data=bool(value)), "std_msgs/msg/Bool")


def sim_ticks(n: int, dt_ns: int = 100_000_000, t0_ns: int = 1_000_000_000, cameras=(), success_at=None,
              image_size=(64, 48), seed: int = 0):
    """(topic, log_time_ns, raw) of a simulated episode published like mujoco_sim + an expert:
    per tick poses, reward, success, camera, joint states (header stamps = tick time), then the
    command answering it 1 ms later. Values encode the tick index so alignment is checkable:
    joint_pos[0] = k, action[0] = k + 0.5, reward = k, object_poses[0, 0] = k, image pixel = k."""
    rng = np.random.default_rng(seed)
    out = []
    w, h = image_size
    for k in range(n):
        t = t0_ns + k * dt_ns
        q = rng.normal(size=8) * 0.1
        q[0] = k
        out.append(("/task/object_poses", t, poses(t, [[k, 0, 0, 1, 0, 0, 0]])))
        out.append(("/task/reward", t, reward(float(k))))
        out.append(("/task/success", t, success(success_at is not None and k >= success_at)))
        for cam in cameras:
            out.append((f"/camera/{cam}/image_raw", t, image(t, np.full((h, w, 3), k % 256, np.uint8))))
            out.append((f"/camera/{cam}/camera_info", t, camera_info(t, width=w, height=h)))
        out.append(("/joint_states", t, joint_state(t, q)))
        a = np.zeros(8)
        a[0] = k + 0.5
        out.append(("/forward_position_controller/commands", t + 1_000_000, command(a)))
    # strictly increasing log times in list order, as the recorder assigns them
    last = -1
    fixed = []
    for topic, t, raw in out:
        last = max(t, last + 1)
        fixed.append((topic, last, raw))
    return fixed


def header(t_ns: int) -> bytes:
    """A std_msgs/Header, as /sim/episode_start announces an episode's first observation."""
    return serialize(_header(t_ns), "std_msgs/msg/Header")


def point_cloud(t_ns: int, xyz: np.ndarray, frame: str = "camera_optical_frame") -> bytes:
    """An unorganised float32 xyz PointCloud2, as a depth driver publishes it."""
    xyz = np.ascontiguousarray(xyz, dtype=np.float32)
    fields = [T.sensor_msgs__msg__PointField(name=n, offset=4 * i, datatype=7, count=1) for i, n in enumerate("xyz")]
    msg = T.sensor_msgs__msg__PointCloud2(header=_header(t_ns, frame), height=1, width=len(xyz), fields=fields,
                                          is_bigendian=False, point_step=12, row_step=12 * len(xyz),
                                          data=np.frombuffer(xyz.tobytes(), dtype=np.uint8), is_dense=True)
    return serialize(msg, "sensor_msgs/msg/PointCloud2")
