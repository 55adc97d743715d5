"""Synthetic sensor streams at fixed rates, for recorder tests and `bench/recorder_throughput.py`.

    python -m robot_rl.ros.stream_publisher --kind rgb --topic /camera/front/image_raw \\
        --rate 30 --width 640 --height 480 --duration 60

Kinds: `rgb` (sensor_msgs/Image rgb8, plus camera_info on the sibling topic), `depth`
(32FC1), `joint_states` (sensor_msgs/JointState of the arm's joints). It waits until
`--wait-subscribers` subscriptions have matched, publishes on a fixed schedule (never bursts to
catch up), and prints one JSON line `{"topic", "published", "late", "seconds"}` to stdout at the
end. Header stamps come from the node clock; the payload changes every message.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, JointState

from robot_rl.ros import msgs
from robot_rl.robot import default_robot


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", choices=["rgb", "depth", "joint_states"], required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--rate", type=float, required=True, help="Hz")
    p.add_argument("--duration", type=float, default=10.0, help="s of publishing")
    p.add_argument("--count", type=int, default=0, help="publish exactly this many (overrides --duration)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--qos", choices=["reliable", "best_effort"], default="reliable")
    p.add_argument("--depth", type=int, default=100, help="publisher history depth")
    p.add_argument("--wait-subscribers", type=int, default=1)
    p.add_argument("--wait-timeout", type=float, default=30.0)
    p.add_argument("--linger", type=float, default=1.0, help="s to stay up after the last message")
    args = p.parse_args(argv)

    rclpy.init()
    node = rclpy.create_node(f"stream_{args.kind}_{int(time.time() * 1e3) % 100000}")
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=args.depth,
                     reliability=ReliabilityPolicy.RELIABLE if args.qos == "reliable" else ReliabilityPolicy.BEST_EFFORT)
    msg_type = JointState if args.kind == "joint_states" else Image
    pub = node.create_publisher(msg_type, args.topic, qos)
    info_pub = None
    if args.kind == "rgb":
        info_pub = node.create_publisher(CameraInfo, args.topic.rsplit("/", 1)[0] + "/camera_info", qos)
    deadline = time.monotonic() + args.wait_timeout
    pubs = [pub] + ([info_pub] if info_pub is not None else [])
    while min(p.get_subscription_count() for p in pubs) < args.wait_subscribers:
        if time.monotonic() > deadline:
            print(f"error: no subscriber on {args.topic} after {args.wait_timeout} s", file=sys.stderr)
            return 2
        time.sleep(0.02)
    time.sleep(0.2)  # let the match settle on both sides

    rng = np.random.default_rng(0)
    w, h = args.width, args.height
    if args.kind == "rgb":
        base = msgs.image_to_msg(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        info = msgs.camera_info_to_msg(w / 2.0, w / 2.0, w / 2.0, h / 2.0, w, h)
    elif args.kind == "depth":
        base = msgs.image_to_msg(rng.uniform(0.2, 2.0, (h, w)).astype(np.float32))
    else:
        names = default_robot().joint_names
        base = msgs.joint_state_to_msg(names, np.zeros(len(names)), np.zeros(len(names)))
    period = 1.0 / args.rate
    total = args.count or int(round(args.duration * args.rate))
    published = late = 0
    start = time.monotonic()
    for i in range(total):
        target = start + i * period
        now = time.monotonic()
        if target > now:
            time.sleep(target - now)
        elif now - target > period:
            late += 1
        stamp = node.get_clock().now().to_msg()
        base.header.stamp = stamp
        if args.kind == "joint_states":
            base.position = msgs._doubles(np.full(8, i * 1e-3))
        else:
            base.data[0] = i % 256  # a changing payload
        pub.publish(base)
        if info_pub is not None:
            info.header.stamp = stamp
            info_pub.publish(info)
        published += 1
    seconds = time.monotonic() - start
    time.sleep(args.linger)
    print(json.dumps({"topic": args.topic, "published": published, "late": late, "seconds": round(seconds, 3),
                      "camera_info": published if info_pub is not None else 0}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
