"""Bag conversion throughput: `robot-rl dataset from-bag` on a generated bag of --mb megabytes.

The bag holds what a real cell records: two RGB cameras 640x480 and one depth camera at 10 Hz
(with camera_info), joint states at 100 Hz with +-2 ms stamp jitter, object poses, commands,
reward and success, as one markerless episode. The baseline, measured in the same run, is a
plain read of every message of the bag (no decoding): `ratio_to_read` is conversion time over
read time. Also reported: frames and MB per second of conversion, and the frames dropped (0).

Progress on stderr; the last stdout line is one JSON object.

    python bench/bag_conversion.py --mb 1024
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rosbags.typesys.stores import ros2_kilted as T

from robot_rl.data import tools
from robot_rl.data.bag import BagWriter, open_bag, serialize
from robot_rl.data.dataset import EpisodeDataset
from robot_rl.robot import load_robot

JS_HZ, FRAME_HZ = 100, 10
W, H = 640, 480


def stamped(raw: bytes, t_ns: int) -> bytes:
    """The same message with another header stamp (CDR: 4-byte encapsulation, then sec, nanosec)."""
    out = bytearray(raw)
    out[4:8] = int(t_ns // 1_000_000_000).to_bytes(4, "little", signed=True)
    out[8:12] = int(t_ns % 1_000_000_000).to_bytes(4, "little")
    return bytes(out)


def header(t_ns=0, frame="world"):
    return T.std_msgs__msg__Header(stamp=T.builtin_interfaces__msg__Time(sec=int(t_ns // 10**9), nanosec=int(t_ns % 10**9)),
                                   frame_id=frame)


def templates(joint_names):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    depth = rng.uniform(0.3, 2.0, (H, W)).astype(np.float32)

    def image(array, encoding):
        return serialize(T.sensor_msgs__msg__Image(header=header(0, "cam"), height=H, width=W, encoding=encoding,
                                                   is_bigendian=0, step=array[0].nbytes,
                                                   data=np.frombuffer(array.tobytes(), np.uint8)), "sensor_msgs/msg/Image")

    roi = T.sensor_msgs__msg__RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    info = serialize(T.sensor_msgs__msg__CameraInfo(
        header=header(0, "cam"), height=H, width=W, distortion_model="plumb_bob", d=np.zeros(5),
        k=np.array([500.0, 0, W / 2, 0, 500.0, H / 2, 0, 0, 1]), r=np.eye(3).reshape(-1),
        p=np.array([500.0, 0, W / 2, 0, 0, 500.0, H / 2, 0, 0, 0, 1, 0]), binning_x=0, binning_y=0, roi=roi),
        "sensor_msgs/msg/CameraInfo")
    return {"rgb": image(rgb, "rgb8"), "depth": image(depth, "32FC1"), "info": info}


def generate(path: Path, mb: float, robot) -> int:
    names = list(robot.joint_names)
    t = templates(names)
    types = {"/joint_states": "sensor_msgs/msg/JointState", "/task/object_poses": "geometry_msgs/msg/PoseArray",
             "/forward_position_controller/commands": "std_msgs/msg/Float64MultiArray",
             "/task/reward": "std_msgs/msg/Float32", "/task/success": "std_msgs/msg/Bool",
             "/camera/front/depth/image_raw": "sensor_msgs/msg/Image"}
    for cam in ("front", "wrist"):
        types[f"/camera/{cam}/image_raw"] = "sensor_msgs/msg/Image"
        types[f"/camera/{cam}/camera_info"] = "sensor_msgs/msg/CameraInfo"
    w = BagWriter(path)
    for topic, msgtype in types.items():
        w.add_topic(topic, msgtype)
    rng = np.random.default_rng(1)
    home = np.asarray(robot.home, float)
    frames = 0
    per_frame = 2 * len(t["rgb"]) + len(t["depth"]) + 2 * len(t["info"])
    total = int(mb * 2**20 / per_frame)
    for k in range(total):
        g = 1_000_000_000 + k * 100_000_000
        pose = T.geometry_msgs__msg__Pose(position=T.geometry_msgs__msg__Point(x=0.5, y=0.0, z=0.02),
                                          orientation=T.geometry_msgs__msg__Quaternion(x=0.0, y=0.0, z=0.0, w=1.0))
        w.write("/task/object_poses", g + 10_000, serialize(T.geometry_msgs__msg__PoseArray(header=header(g), poses=[pose]),
                                                              types["/task/object_poses"]))
        w.write("/task/reward", g + 20_000, serialize(T.std_msgs__msg__Float32(data=float(k)), types["/task/reward"]))
        w.write("/task/success", g + 30_000, serialize(T.std_msgs__msg__Bool(data=k > total - 5), types["/task/success"]))
        for cam in ("front", "wrist"):
            w.write(f"/camera/{cam}/image_raw", g + 40_000, stamped(t["rgb"], g))
            w.write(f"/camera/{cam}/camera_info", g + 41_000, stamped(t["info"], g))
        w.write("/camera/front/depth/image_raw", g + 42_000, stamped(t["depth"], g))
        for j in range(JS_HZ // FRAME_HZ):  # the broadcaster at 100 Hz
            s = g + j * 10_000_000 + int(rng.uniform(-2e6, 2e6))
            q = home + 0.01 * np.sin(k / 10.0)
            msg = T.sensor_msgs__msg__JointState(header=header(s), name=names, position=q, velocity=np.zeros(len(names)),
                                                 effort=np.zeros(0))
            w.write("/joint_states", g + j * 10_000_000 + 50_000, serialize(msg, types["/joint_states"]))
            if j == 0:  # the 10 Hz commander answers the frame's joint state
                layout = T.std_msgs__msg__MultiArrayLayout(dim=[], data_offset=0)
                w.write("/forward_position_controller/commands", g + 1_050_000,
                        serialize(T.std_msgs__msg__Float64MultiArray(layout=layout, data=q), types["/forward_position_controller/commands"]))
        frames += 1
        if k % 50 == 0:
            print(f"generating: {k}/{total} frames", file=sys.stderr, flush=True)
    w.close()
    return frames


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, default=1024.0, help="bag size to generate (MB)")
    p.add_argument("--keep", default="", help="write the bag and dataset here and keep them")
    args = p.parse_args(argv)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bag_conversion_"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        robot = load_robot("arm")
        bag = root / "bag"
        generated = generate(bag, args.mb, robot)
        size_mb = sum(f.stat().st_size for f in bag.glob("*.mcap")) / 2**20
        print(f"bag: {size_mb:.0f} MB, {generated} frames; reading it (baseline)", file=sys.stderr, flush=True)
        start = time.perf_counter()
        with open_bag(bag) as r:
            n = sum(1 for _ in r.records())
        read_s = time.perf_counter() - start
        print(f"read {n} messages in {read_s:.1f} s; converting", file=sys.stderr, flush=True)
        a = tools._defaults()
        a.cameras, a.depth, a.task = ["front", "wrist"], None, "lift"  # depth: the cameras that have it
        start = time.perf_counter()
        report = tools.convert_bag(bag, root / "dataset", a, log=lambda s: print(s, file=sys.stderr))
        convert_s = time.perf_counter() - start
        ds = EpisodeDataset.open(root / "dataset")
        frames = int(sum(ds.episode_lengths))
        print(json.dumps({"bench": "bag_conversion", "bag_mb": round(size_mb, 1), "messages": n,
                          "frames": frames, "dropped": int(sum(c["dropped"] for c in report["committed"])),
                          "read_s": round(read_s, 2), "convert_s": round(convert_s, 2),
                          "read_mb_s": round(size_mb / read_s, 1), "convert_mb_s": round(size_mb / convert_s, 1),
                          "convert_frames_s": round(frames / convert_s, 1),
                          "ratio_to_read": round(convert_s / read_s, 2)}))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
