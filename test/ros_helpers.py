"""Helpers for integration tests: node processes with robust cleanup, and a probe node."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest


def wait_for(predicate, timeout: float, what: str, interval: float = 0.02):
    """Poll `predicate` until it returns something truthy; fail the test with `what` if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


class NodeProcesses:
    """Processes started in new sessions, so a kill reaches every child they started."""

    def __init__(self, log_dir: Path):
        self.log_dir = Path(log_dir)
        self.procs: dict[str, tuple[subprocess.Popen, Path]] = {}

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = self.log_dir / f"{name}.log"
        with open(log, "wb") as f:
            p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, env=os.environ.copy())
        self.procs[name] = (p, log)
        return p

    def node(self, name: str, module: str, params: dict | None = None, ros_args=()) -> subprocess.Popen:
        argv = [sys.executable, "-m", module, "--ros-args"]
        for k, v in (params or {}).items():
            argv += ["-p", f"{k}:={_ros_value(v)}"]
        return self.start(name, argv + list(ros_args))

    def log(self, name: str) -> str:
        return self.procs[name][1].read_text(errors="replace")

    def stop(self, name: str, sig=signal.SIGINT, timeout: float = 10.0) -> int | None:
        p, _ = self.procs[name]
        for s, t in ((sig, timeout), (signal.SIGKILL, 2.0)):
            if p.poll() is not None:
                break
            try:
                os.killpg(p.pid, s)
            except ProcessLookupError:
                break
            try:
                p.wait(t)
            except subprocess.TimeoutExpired:
                continue
        return p.returncode

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name, timeout=5.0)
            p, log = self.procs[name]
            try:
                os.killpg(p.pid, signal.SIGKILL)  # anything the node left behind
            except (ProcessLookupError, PermissionError):
                pass
            print(f"----- {name} (exit {p.returncode}) -----\n{log.read_text(errors='replace')[-4000:]}")


def _ros_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_ros_value(x) for x in v) + "]"
    return str(v)


@pytest.fixture(scope="session")
def ros_context():
    """One rclpy context (one DDS participant) for the whole test session."""
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)


class Probe:
    """A test-side node: publishers, latest-message subscriptions and service calls."""

    def __init__(self, context):
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self.node = Node(f"probe_{os.getpid()}_{int(time.monotonic() * 1e3) % 100000}", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.messages: dict[str, list] = {}
        self._stop = False
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        while not self._stop:
            self.executor.spin_once(timeout_sec=0.02)

    def subscribe(self, msg_type, topic: str, qos=None):
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        qos = qos or QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.messages[topic] = []

        def on_msg(msg):
            with self.lock:
                self.messages[topic].append(msg)

        self.node.create_subscription(msg_type, topic, on_msg, qos)

    def latest(self, topic: str):
        with self.lock:
            return self.messages[topic][-1] if self.messages[topic] else None

    def count(self, topic: str) -> int:
        with self.lock:
            return len(self.messages[topic])

    def all(self, topic: str) -> list:
        with self.lock:
            return list(self.messages[topic])

    def settle(self, quiet: float = 0.5, timeout: float = 10.0) -> None:
        """Wait until no subscribed topic has received anything for `quiet` s: after the
        publishers stopped, messages already sent on one topic may still be queued on another."""
        deadline = time.monotonic() + timeout
        counts, since = None, time.monotonic()
        while time.monotonic() < deadline:
            with self.lock:
                now = {t: len(m) for t, m in self.messages.items()}
            if now != counts:
                counts, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.05)

    def publisher(self, msg_type, topic: str, wait_subscribers: float = 15.0):
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        pub = self.node.create_publisher(msg_type, topic, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        wait_for(lambda: pub.get_subscription_count() > 0, wait_subscribers, f"a subscriber on {topic}")
        return pub

    def call(self, srv_type, name: str, request=None, timeout: float = 15.0):
        client = self.node.create_client(srv_type, name)
        wait_for(lambda: client.service_is_ready(), timeout, f"service {name}")
        future = client.call_async(request or srv_type.Request())
        wait_for(future.done, timeout, f"a response from {name}")
        self.node.destroy_client(client)
        return future.result()

    def close(self):
        self._stop = True
        self._thread.join(timeout=2.0)
        self.executor.remove_node(self.node)
        self.node.destroy_node()
