"""run_node: a shutdown that lands while a callback publishes is still a clean exit (0)."""
import subprocess
import sys

SCRIPT = """
import rclpy
from rclpy.node import Node
from std_msgs.msg import Bool
from robot_rl.ros.spin import run_node

class Racing(Node):
    def __init__(self):
        super().__init__("racing")
        self.pub = self.create_publisher(Bool, "/spin_test", 1)
        self.create_timer(0.05, self.tick)

    def tick(self):
        rclpy.shutdown()             # what SIGINT does, here just before a publish
        self.pub.publish(Bool())     # raises: the publisher's context is invalid

    def close(self):
        print("closed", flush=True)

raise SystemExit(run_node(Racing))
"""


def test_a_publish_cut_short_by_the_shutdown_exits_0_after_close():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "closed" in out.stdout
