"""Session-wide test environment, and fixtures for tests that start ROS 2 nodes as processes.

Each pytest session talks DDS on its own ROS_DOMAIN_ID (random in 1..100 unless set), on
loopback only, so parallel sessions and other machines never see each other's nodes.
"""
from __future__ import annotations

import os
import random

os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYTHONUNBUFFERED", "1")

import pytest  # noqa: E402

from ros_helpers import NodeProcesses, Probe, ros_context  # noqa: E402,F401


def pytest_report_header(config):
    return (f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} "
            f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']}")


@pytest.fixture
def nodes(tmp_path):
    """Start node processes (each in its own process group); all are killed at teardown."""
    procs = NodeProcesses(tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture
def probe(ros_context):  # noqa: F811 - the imported fixture
    """An rclpy node in the test process, spun in a background thread."""
    p = Probe(ros_context)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture(scope="module")
def torch_one_thread():
    """Small models run faster on one intra-op thread, and it is fair on a shared 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
