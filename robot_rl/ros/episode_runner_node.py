"""episode_runner: N episodes through the running node graph, and their success rate.

For each episode it calls the expert's reset service and /sim/reset (the expert first, so its
answer to the old episode's last observation is the only stale one), then counts sim ticks
(joint states stamped after the reset) until /task/success or `max_steps`. Optionally the first
episode's /camera/front/image_raw frames become an MP4. Also the `robot-rl episodes` verb.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rcl_interfaces.srv import GetParameters
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from robot_rl.errors import ConfigError, RobotRLError
from robot_rl.ros import msgs
from robot_rl.video import write_video

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
_TIME_RE = re.compile(r"time (\S+)")
_SEED_RE = re.compile(r"seed (\S+)")


@dataclass
class EpisodeRunnerConfig:
    task: str = field(default="reach", metadata={"help": "task the sim must be running (checked)"})
    num_episodes: int = field(default=10, metadata={"help": "episodes to run"})
    max_steps: int = field(default=200, metadata={"help": "ticks before an episode counts as failed"})
    video: str = field(default="", metadata={"help": "MP4 of the first episode from /camera/<video_camera>/image_raw"})
    video_camera: str = field(default="front", metadata={"help": "camera for the video"})
    sim_node: str = field(default="mujoco_sim", metadata={"help": "name of the sim node (its task parameter is checked)"})
    reset_services: tuple[str, ...] = field(default=("/scripted_expert/reset", "/sim/reset"),
                                            metadata={"help": "Trigger services called, in order, before each episode"})
    recorder: str = field(default="", metadata={"help": "recorder node name: each episode is recorded (~/start before /sim/reset, else after the resets; ~/stop_success or ~/stop_failure at its end)"})
    service_timeout: float = field(default=20.0, metadata={"help": "seconds to wait for the services to appear"})
    step_timeout: float = field(default=5.0, metadata={"help": "wall seconds without a tick before giving up"})

    def __post_init__(self):
        if self.num_episodes < 1 or self.max_steps < 1:
            raise ConfigError("num_episodes and max_steps must be >= 1")
        if self.service_timeout <= 0 or self.step_timeout <= 0:
            raise ConfigError("service_timeout and step_timeout must be > 0")


@dataclass
class EpisodeOutcome:
    seed: str
    success: bool
    steps: int
    wall_s: float


class EpisodeRunner(Node):
    def __init__(self, config: EpisodeRunnerConfig, **kwargs):
        super().__init__("episode_runner", **kwargs)
        self.config = config
        self._reset_clients = [self.create_client(Trigger, name) for name in config.reset_services]
        self._recorder_clients: dict = {}  # recorder services, made on first use
        self._t_reset = float("inf")
        self._steps = 0
        self._success = False
        self._last_tick_wall = time.monotonic()
        self._frames: list | None = None
        self.create_subscription(JointState, "/joint_states", self._on_joints, RELIABLE)
        self.create_subscription(Bool, "/task/success", self._on_success, RELIABLE)
        if config.video:
            self.create_subscription(Image, f"/camera/{config.video_camera}/image_raw", self._on_image,
                                     qos_profile_sensor_data)

    # ------------------------------------------------------------------ callbacks
    def _on_joints(self, msg: JointState) -> None:
        if msgs.from_time(msg.header.stamp) > self._t_reset + 1e-6:  # the reset's own obs is not a tick
            self._steps += 1
            self._last_tick_wall = time.monotonic()

    def _on_success(self, msg: Bool) -> None:
        if msg.data and self._steps > 0:  # a True still in flight from the last episode is ignored
            self._success = True

    def _on_image(self, msg: Image) -> None:
        if self._frames is not None and msgs.from_time(msg.header.stamp) >= self._t_reset:
            self._frames.append(msgs.image_from_msg(msg))

    # ------------------------------------------------------------------ helpers
    def _spin_until(self, future, timeout: float, what: str):
        rclpy.spin_until_future_complete(self, future, timeout_sec=timeout)
        if not future.done():
            raise RobotRLError(f"no answer from {what} within {timeout:.0f} s; is the sim/expert graph running?")
        return future.result()

    def wait_for_graph(self) -> None:
        deadline = time.monotonic() + self.config.service_timeout
        for client in self._reset_clients:
            while not client.wait_for_service(timeout_sec=0.2):
                if time.monotonic() > deadline:
                    raise RobotRLError(f"service {client.srv_name} not available after "
                                       f"{self.config.service_timeout:.0f} s; start the graph first "
                                       "(robot-rl bringup sim_expert)")
        self._check_task()
        if self.config.recorder:  # before the first reset: an episode must not start while the
            # recorder still connects to its topics, nor while this node discovers the recorder's
            # services (a lock-step sim ran the first episode to its end meanwhile: it was recorded
            # from its last frames, the cube already lifted)
            for verb in ("start", "stop_success", "stop_failure"):
                self._client(f"/{self.config.recorder}/{verb}")
            self._call(f"/{self.config.recorder}/ready", retry_not_ready=True)

    def _check_task(self) -> None:
        """Refuse to report a success rate for the wrong task."""
        client = self.create_client(GetParameters, f"/{self.config.sim_node}/get_parameters")
        if not client.wait_for_service(timeout_sec=2.0):
            self.get_logger().warning(f"cannot read /{self.config.sim_node}'s task parameter; not checked")
            return
        result = self._spin_until(client.call_async(GetParameters.Request(names=["task"])), 5.0,
                                  f"/{self.config.sim_node}/get_parameters")
        task = result.values[0].string_value if result.values else ""
        if task and task != self.config.task:
            raise ConfigError(f"/{self.config.sim_node} runs task {task!r}, asked for {self.config.task!r}; "
                              f"start it with task:={self.config.task}")

    def run_episode(self, record: bool = False) -> EpisodeOutcome:
        self._t_reset, self._steps, self._success = float("inf"), 0, False
        self._frames = [] if record else None
        seed = "?"
        started = False
        for client in self._reset_clients:
            if self.config.recorder and client.srv_name.endswith("/sim/reset"):
                # before the sim's reset: the recorder keeps the first observation (its episode
                # begins at /sim/episode_start's stamp, the old episode's frames left out)
                self._call(f"/{self.config.recorder}/start", retry_not_ready=True)
                started = True
            response = self._spin_until(client.call_async(Trigger.Request()), 10.0, client.srv_name)
            if not response.success:
                if started:
                    self._call(f"/{self.config.recorder}/discard")
                raise RobotRLError(f"{client.srv_name} failed: {response.message}")
            if client.srv_name.endswith("/sim/reset"):
                t = _TIME_RE.search(response.message)
                s = _SEED_RE.search(response.message)
                self._t_reset = float(t.group(1)) if t else 0.0
                seed = s.group(1) if s else "?"
        if self.config.recorder and not started:
            self._call(f"/{self.config.recorder}/start", retry_not_ready=True)
        t0 = self._last_tick_wall = time.monotonic()
        while not self._success and self._steps < self.config.max_steps:
            rclpy.spin_once(self, timeout_sec=0.05)
            if time.monotonic() - self._last_tick_wall > self.config.step_timeout:
                raise RobotRLError(f"no /joint_states for {self.config.step_timeout:.0f} s; did the sim stop?")
        for _ in range(3):  # let the last frames in
            rclpy.spin_once(self, timeout_sec=0.01)
        if self.config.recorder:
            self._call(f"/{self.config.recorder}/stop_{'success' if self._success else 'failure'}")
        return EpisodeOutcome(seed, self._success, self._steps, time.monotonic() - t0)

    def _client(self, service: str):
        """The Trigger client of `service`, made once and waited for (discovery takes a while)."""
        client = self._recorder_clients.get(service)
        if client is None:
            client = self._recorder_clients[service] = self.create_client(Trigger, service)
            if not client.wait_for_service(timeout_sec=self.config.service_timeout):
                raise RobotRLError(f"service {service} did not appear within {self.config.service_timeout:.0f} s")
        return client

    def _call(self, service: str, retry_not_ready: bool = False) -> str:
        """Call a Trigger service (clients are made once); RobotRLError when it refuses. With
        `retry_not_ready`, a "not ready: ..." answer (the recorder still connecting to its topics)
        is asked again until service_timeout."""
        client = self._client(service)
        deadline = time.monotonic() + self.config.service_timeout
        while True:
            response = self._spin_until(client.call_async(Trigger.Request()), 10.0, service)
            if response.success or not (retry_not_ready and response.message.startswith("not ready")):
                break
            if time.monotonic() > deadline:
                break
            rclpy.spin_once(self, timeout_sec=0.1)
        if not response.success:
            raise RobotRLError(f"{service} failed: {response.message}")
        return response.message

    def take_frames(self) -> list:
        frames, self._frames = self._frames or [], None
        return frames


def run_episodes(config: EpisodeRunnerConfig, log=print) -> dict:
    """Run the episodes (rclpy must be initialised); return the summary as a dict."""
    from tqdm import tqdm

    node = EpisodeRunner(config)
    try:
        node.wait_for_graph()
        outcomes = []
        bar = tqdm(range(config.num_episodes), desc=config.task, unit="ep", file=sys.stderr,
                   disable=None)
        for i in bar:
            out = node.run_episode(record=bool(config.video) and i == 0)
            outcomes.append(out)
            if i == 0 and config.video:
                write_video(config.video, node.take_frames(), fps=10.0)
            bar.write(f"episode {i + 1}/{config.num_episodes} seed {out.seed}: "
                      f"{'success' if out.success else 'failure'} in {out.steps} steps ({out.wall_s:.1f} s)",
                      file=sys.stderr)
            bar.set_postfix(success_rate=f"{sum(o.success for o in outcomes) / len(outcomes):.2f}")
        bar.close()
    finally:
        node.destroy_node()
    successes = sum(o.success for o in outcomes)
    summary = {"task": config.task, "episodes": len(outcomes), "successes": successes,
               "success_rate": successes / len(outcomes),
               "mean_steps": sum(o.steps for o in outcomes) / len(outcomes)}
    log(f"task {config.task}: {successes}/{len(outcomes)} episodes succeeded, "
        f"success_rate={summary['success_rate']:.2f}, mean_steps={summary['mean_steps']:.1f}"
        + (f", video {config.video}" if config.video else ""))
    return summary


# ---------------------------------------------------------------------- CLI verb and executable
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default="reach", help="task the running sim must have")
    parser.add_argument("--num-episodes", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--video", default="", help="write the first episode as this MP4")
    parser.add_argument("--video-camera", default="front")
    parser.add_argument("--sim-node", default="mujoco_sim")
    parser.add_argument("--reset-service", action="append", dest="reset_services",
                        help="Trigger service called before each episode (repeatable; "
                             "default /scripted_expert/reset then /sim/reset)")
    parser.add_argument("--recorder", default="", help="recorder node name: record every episode (e.g. recorder)")
    parser.add_argument("--service-timeout", type=float, default=20.0)
    parser.add_argument("--step-timeout", type=float, default=5.0,
                        help="give up when no tick arrives for this many wall seconds")
    parser.add_argument("--min-success-rate", type=float, default=0.0,
                        help="exit 1 when the success rate is below this")
    parser.add_argument("--out", default="", help="write the summary (success rate, episodes, steps) as JSON here")


def config_from_args(args) -> EpisodeRunnerConfig:
    return EpisodeRunnerConfig(
        task=args.task, num_episodes=args.num_episodes, max_steps=args.max_steps, video=args.video,
        video_camera=args.video_camera, sim_node=args.sim_node,
        reset_services=tuple(args.reset_services or EpisodeRunnerConfig.reset_services), recorder=args.recorder,
        service_timeout=args.service_timeout, step_timeout=args.step_timeout)


def run(args) -> int:
    config = config_from_args(args)
    rclpy.init(args=getattr(args, "ros_args", None))
    try:
        summary = run_episodes(config)
    except KeyboardInterrupt:
        return 130
    finally:
        rclpy.try_shutdown()
    if args.out:
        import json

        Path(args.out).write_text(json.dumps(summary))
    return 0 if summary["success_rate"] >= args.min_success_rate else 1


def main(argv=None) -> int:
    from rclpy.utilities import remove_ros_args

    from robot_rl.cli import run_verb

    argv = sys.argv if argv is None else argv
    parser = argparse.ArgumentParser(prog="episode_runner", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(remove_ros_args(argv)[1:])
    args.ros_args = argv
    return run_verb(run, args)


if __name__ == "__main__":
    sys.exit(main())
