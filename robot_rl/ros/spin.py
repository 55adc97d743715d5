"""The one `main()` body every node shares: init, build, spin, clean shutdown.

rclpy's default signal handlers turn SIGINT and SIGTERM into a context shutdown, which ends
`spin` with ExternalShutdownException (or KeyboardInterrupt, or, when the signal lands while a
callback publishes or the executor takes a message, an error about the invalid context: seen as
the shutdown when the context is down within a second); in every case `close()` runs so the
node stops commanding and closes its files before the process exits 0. A RobotRLError raised
while building the node (bad parameters) is one line on stderr and exit code 2.
"""
from __future__ import annotations

import sys
import time
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

from robot_rl.errors import RobotRLError


def run_node(factory: Callable[[], "rclpy.node.Node"], args=None, threads: int = 1) -> int:
    """`threads` > 1 spins a MultiThreadedExecutor, for nodes with their own callback groups."""
    rclpy.init(args=args)
    node = None
    try:
        node = factory()
        if threads > 1:
            executor = MultiThreadedExecutor(num_threads=threads)
            executor.add_node(node)
            executor.spin()
        else:
            rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RobotRLError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception:
        if not _shutting_down():
            raise
        # The signal shut the context down while a callback was publishing, or while the executor
        # took a message (rclpy raises RCLError "context is invalid", or a pybind RuntimeError from
        # take_message): that is the shutdown, not a failure.
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _shutting_down(grace: float = 1.0) -> bool:
    """True when the context is (about to be) shut down: a signal's shutdown can complete just
    after the exception it caused in the executor, so wait `grace` s for it before calling the
    exception a failure."""
    deadline = time.monotonic() + grace
    while rclpy.ok():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
