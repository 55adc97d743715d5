"""Recorder throughput: 2 RGB cameras 640x480 at 30 Hz, one depth camera, joint states at 500 Hz,
each published from its own process over DDS (loopback), into the recorder node for --duration s.

Reports what was published and recorded per topic (counts from the publishers and from the bag's
metadata), dropped messages (published - recorded; goal 0), the recorder's own drop counters,
MB/s written to the bag against the raw MB/s published (the baseline, measured in the same run),
and the recorder process's CPU (psutil): `recorder_cpu_share` is its share of the machine's CPU
time (1.0 = every core busy), `recorder_cpu_cores` the same in cores. With --episode-s the bench
cycles ~/start and ~/stop_success, so the recorder also synchronises frames at 10 Hz and commits
episodes to a dataset (zarr, compressed) while recording.

Progress on stderr; the last stdout line is one JSON object.

    python bench/recorder_throughput.py --duration 60
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


def log(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=60.0, help="s of publishing")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--camera-rate", type=float, default=30.0)
    p.add_argument("--joint-rate", type=float, default=500.0)
    p.add_argument("--qos", choices=["reliable", "best_effort"], default="reliable", help="publishers' QoS")
    p.add_argument("--episode-s", type=float, default=10.0,
                   help="record episodes of this length into a dataset while recording (0: bag only)")
    p.add_argument("--out", default="", help="keep the bag and dataset here (default: a temp dir, removed)")
    args = p.parse_args()

    env = dict(os.environ)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 50))
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")})
    tmp = tempfile.TemporaryDirectory(prefix="recorder_bench_") if not args.out else None
    out = Path(args.out or tmp.name)
    out.mkdir(parents=True, exist_ok=True)
    bag = out / "bags" / "bench"
    cameras = ["front", "wrist"]
    params = {"bag_dir": out / "bags", "bag_name": "bench", "cameras": "[front,wrist]", "depth_cameras": "[front]",
              "dataset": out / "dataset" if args.episode_s > 0 else "", "action_topic": "''",
              "object_poses_topic": "''", "reward_topic": "''", "success_topic": "''", "ee_pose": "false",
              "task": "bench"}
    cmd = [sys.executable, "-m", "robot_rl.ros.recorder_node", "--ros-args"]
    for k, v in params.items():
        cmd += ["-p", f"{k}:={v if v != '' else chr(39) * 2}"]
    rec_log = open(out / "recorder.log", "wb")
    recorder = subprocess.Popen(cmd, env=env, stdout=rec_log, stderr=subprocess.STDOUT, start_new_session=True)
    procs = []
    try:
        wait_for_log(out / "recorder.log", "recording", 60, recorder)
        rec_ps = psutil.Process(recorder.pid)
        pubs = [("rgb", f"/camera/{c}/image_raw", args.camera_rate) for c in cameras]
        pubs += [("depth", "/camera/front/depth/image_raw", args.camera_rate),
                 ("joint_states", "/joint_states", args.joint_rate)]
        for kind, topic, rate in pubs:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "robot_rl.ros.stream_publisher", "--kind", kind, "--topic", topic,
                 "--rate", str(rate), "--duration", str(args.duration), "--width", str(args.width),
                 "--height", str(args.height), "--qos", args.qos, "--linger", "2"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True))
        log(f"{len(procs)} publishers started; recorder pid {recorder.pid}, bag {bag}")
        # publishing starts once every publisher matched the recorder: take the CPU baseline then
        wait_for_log(out / "recorder.log", "subscribed to /joint_states", 60, recorder)
        time.sleep(0.3)
        cpu0, wall0 = cpu_seconds(rec_ps), time.monotonic()
        pub_ps = [psutil.Process(x.pid) for x in procs]
        pub_cpu = {x.pid: cpu_seconds(x) for x in pub_ps}
        pub_cpu0 = sum(pub_cpu.values())
        episodes = EpisodeDriver(args.episode_s) if args.episode_s > 0 else None
        last = wall0
        while any(x.poll() is None for x in procs):
            time.sleep(0.2)
            now = time.monotonic()
            if episodes is not None:
                episodes.tick(now - wall0, args.duration)
            if now - last >= 5:
                last = now
                log(f"t={now - wall0:5.1f}s recorder cpu {(cpu_seconds(rec_ps) - cpu0) / (now - wall0):.2f} cores, "
                    f"rss {rec_ps.memory_info().rss / 1e6:.0f} MB, bag {dir_mb(bag):.0f} MB")
            for x in pub_ps:  # the last reading before each publisher exits
                seconds = cpu_seconds(x)
                if seconds > 0:
                    pub_cpu[x.pid] = seconds
        wall = time.monotonic() - wall0
        cpu = cpu_seconds(rec_ps) - cpu0
        published = {}
        for x in procs:
            stdout, stderr = x.communicate(timeout=30)
            if x.returncode != 0:
                raise SystemExit(f"publisher failed: {stderr.strip()[-500:]}")
            result = json.loads(stdout.strip().splitlines()[-1])
            published[result["topic"]] = result["published"]
            if result["camera_info"]:
                published[result["topic"].rsplit("/", 1)[0] + "/camera_info"] = result["camera_info"]
        if episodes is not None:
            episodes.finish()
        diag = episodes.diagnostics() if episodes is not None else {}
        if episodes is not None:
            episodes.close()
        recorder.send_signal(signal.SIGINT)
        recorder.wait(120)
        from robot_rl.data.bag import open_bag

        with open_bag(bag) as r:
            recorded = {t: r.info.counts.get(t, 0) for t in published}
            bag_bytes = sum((bag / f).stat().st_size for f in r.info.files)
        frame_bytes = {"rgb": args.width * args.height * 3, "depth": args.width * args.height * 4}
        raw_bytes = sum(published[f"/camera/{c}/image_raw"] for c in cameras) * frame_bytes["rgb"] \
            + published["/camera/front/depth/image_raw"] * frame_bytes["depth"]
        seconds = args.duration
        dataset_episodes = 0
        if args.episode_s > 0:
            from robot_rl.data.dataset import EpisodeDataset

            dataset_episodes = EpisodeDataset.open(out / "dataset").num_episodes
        report = {
            "duration_s": seconds,
            "qos": args.qos,
            "published": sum(published.values()),
            "recorded": sum(recorded.values()),
            "dropped": sum(published.values()) - sum(recorded.values()),
            "recorder_dropped": int(diag.get("dropped", -1)) if diag else None,
            "per_topic": {t: {"published": published[t], "recorded": recorded[t]} for t in published},
            "raw_msgs_per_s": round(sum(published.values()) / seconds, 1),
            "raw_image_mb_per_s": round(raw_bytes / 1e6 / seconds, 2),
            "mb_per_s": round(bag_bytes / 1e6 / seconds, 2),
            "bag_mb": round(bag_bytes / 1e6, 1),
            "recorder_cpu_share": round(cpu / wall / psutil.cpu_count(), 3),
            "recorder_cpu_cores": round(cpu / wall, 3),
            "publishers_cpu_cores": round((sum(pub_cpu.values()) - pub_cpu0) / seconds, 3),
            "cpus": psutil.cpu_count(),
            "episodes_committed": dataset_episodes,
        }
        print(json.dumps(report))
    finally:
        for x in procs + [recorder]:
            if x.poll() is None:
                try:
                    os.killpg(x.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        rec_log.close()
        if tmp is not None:
            tmp.cleanup()


def cpu_seconds(proc: psutil.Process) -> float:
    try:
        t = proc.cpu_times()
        return t.user + t.system
    except psutil.NoSuchProcess:
        return 0.0


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.glob("*.mcap")) / 1e6 if path.exists() else 0.0


def wait_for_log(path: Path, text: str, timeout: float, proc) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise SystemExit(f"recorder exited ({proc.returncode}): {path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for '{text}' in {path}")


class EpisodeDriver:
    """Calls the recorder's start/stop services every `episode_s` seconds from this process."""

    def __init__(self, episode_s: float):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from std_srvs.srv import Trigger

        rclpy.init()
        self.node = rclpy.create_node("recorder_bench")
        self.Trigger = Trigger
        self.clients = {n: self.node.create_client(Trigger, f"/recorder/{n}") for n in ("start", "stop_success")}
        self.latest = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._stop = False
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self.episode_s = episode_s
        self.open = False
        self.next_t = 0.0

    def _spin(self):
        while not self._stop:
            self.executor.spin_once(timeout_sec=0.05)

    def _on_diag(self, msg):
        for status in msg.status:
            if status.name.endswith("recorder"):
                self.latest = {kv.key: kv.value for kv in status.values}

    def call(self, name: str) -> str:
        client = self.clients[name]
        if not client.wait_for_service(timeout_sec=10):
            raise SystemExit(f"service /recorder/{name} not available")
        future = client.call_async(self.Trigger.Request())
        deadline = time.monotonic() + 10
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        result = future.result()
        if result is None or not result.success:
            log(f"/recorder/{name}: {result.message if result else 'no answer'}")
        return result.message if result else ""

    def tick(self, t: float, duration: float) -> None:
        if t < self.next_t:
            return
        if self.open:
            self.call("stop_success")
            self.open = False
        if t + self.episode_s <= duration:
            self.call("start")
            self.open = True
            self.next_t = t + self.episode_s

    def finish(self) -> None:
        if self.open:
            self.call("stop_success")
            self.open = False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait for the commits and a fresh diagnostics message
            time.sleep(1.0)
            d = self.latest
            if d and d.get("queue_messages") == "0" and int(d.get("episodes_committed", 0)) + \
                    int(d.get("episodes_refused", 0)) >= int(d.get("episodes_started", 0)):
                return

    def diagnostics(self) -> dict:
        return dict(self.latest)

    def close(self) -> None:
        import rclpy

        self._stop = True
        self._thread.join(2)
        self.node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
