"""offline_trainer: keeps a trainer running on a growing dataset and publishes each new checkpoint.

    ros2 run robot_rl offline_trainer --ros-args -p dataset:=data/demos -p out_dir:=runs/stream

It starts `robot-rl train <trainer> --dataset D --out O --follow [trainer_args]` as a child
process (its own process group; the trainer picks up episodes as the recorder commits them,
robot_rl.data.follow) and watches `out_dir/<watch>` (default `best`: the trainer writes it when
the policy improves). Each time that folder holds a complete new checkpoint -- model.safetensors,
config.json and normalizer.json carrying one save_id -- its absolute path goes out on
`checkpoint_topic` (std_msgs/String, reliable, transient local: a policy node that starts later
still gets the latest) for the policy node to hot-reload.

`trainer_command` replaces the whole command (placeholders $dataset, $out_dir, $python).
A trainer that fails ends this node with its exit code as one error line; SIGINT/SIGTERM stop the
trainer too.
"""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from robot_rl.errors import ConfigError, RobotRLError
from robot_rl.ros.base_node import BaseNode
from robot_rl.ros.params import declare_config
from robot_rl.ros.spin import run_node

CHECKPOINT_FILES = ("model.safetensors", "config.json", "normalizer.json")


@dataclass
class OfflineTrainerConfig:
    dataset: str = field(default="", metadata={"help": "episode dataset the recorder appends to"})
    out_dir: str = field(default="runs/offline_trainer", metadata={"help": "the trainer's output directory"})
    trainer: str = field(default="diffusion", metadata={"help": "`robot-rl train` algorithm"})
    trainer_args: tuple[str, ...] = field(default=(), metadata={"help": "extra trainer flags, e.g. [--obs, state]"})
    trainer_command: tuple[str, ...] = field(default=(), metadata={"help": "full command instead ($python, $dataset, $out_dir)"})
    follow: bool = field(default=True, metadata={"help": "pass --follow: keep training as episodes arrive"})
    watch: str = field(default="best", metadata={"help": "checkpoint folder under out_dir to publish"})
    checkpoint_topic: str = field(default="/policy/checkpoint", metadata={"help": "std_msgs/String topic of checkpoint paths"})
    poll_s: float = field(default=1.0, metadata={"help": "s between looks at the checkpoint folder"})

    def __post_init__(self):
        if not self.dataset and not self.trainer_command:
            raise ConfigError("offline_trainer needs the dataset parameter")
        if not self.poll_s > 0:
            raise ConfigError(f"poll_s must be > 0, got {self.poll_s}")

    def command(self) -> list[str]:
        if self.trainer_command:
            from string import Template

            values = {"python": sys.executable, "dataset": self.dataset, "out_dir": self.out_dir}
            return [Template(part).safe_substitute(values) for part in self.trainer_command]
        cmd = [sys.executable, "-m", "robot_rl.cli", "train", self.trainer, "--dataset", self.dataset,
               "--out", self.out_dir]
        return cmd + (["--follow"] if self.follow else []) + list(self.trainer_args)


def checkpoint_id(folder: Path) -> str | None:
    """The save_id shared by a checkpoint's three files, or None while it is incomplete."""
    try:
        ids = {json.loads((folder / name).read_text()).get("save_id") for name in CHECKPOINT_FILES[1:]}
        with open(folder / CHECKPOINT_FILES[0], "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        ids.add(header.get("__metadata__", {}).get("save_id"))
    except (OSError, ValueError, struct.error, AttributeError):
        return None
    return ids.pop() if len(ids) == 1 and None not in ids else None


class OfflineTrainerNode(BaseNode):
    def __init__(self, **kwargs):
        super().__init__("offline_trainer", **kwargs)
        self.config = c = declare_config(self, OfflineTrainerConfig)
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub = self.create_publisher(String, c.checkpoint_topic, qos)
        self._published: str | None = None
        self.folder = Path(c.out_dir).resolve() / c.watch
        cmd = c.command()
        try:
            self.proc = subprocess.Popen(cmd, start_new_session=True)
        except OSError as e:
            raise ConfigError(f"cannot start the trainer {cmd[0]}: {e.strerror or e}") from e
        self.get_logger().info(f"trainer pid {self.proc.pid}: {' '.join(cmd)}; publishing {self.folder} "
                               f"on {c.checkpoint_topic}")
        self.create_timer(c.poll_s, self._poll)

    def _poll(self) -> None:
        save_id = checkpoint_id(self.folder)
        if save_id is not None and save_id != self._published:
            self._published = save_id
            self.pub.publish(String(data=str(self.folder)))
            self.get_logger().info(f"new checkpoint {self.folder} (save_id {save_id[:8]})")
        code = self.proc.poll()
        if code is not None and code != 0:
            raise RobotRLError(f"the trainer exited with code {code}; see its output above")

    def close(self) -> None:
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGINT, 20.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue


def main(args=None) -> int:
    return run_node(OfflineTrainerNode, args)


if __name__ == "__main__":
    sys.exit(main())
