"""An emulated ros2_control driver nobody here wrote the sim for (a real process, for test_any_arm.py).

joint_state_broadcaster: /joint_states at `rate` Hz with the controller's joint names, in a
shuffled order, plus joints that are not the arm's (a head, a mobile base). forward position
controller: /forward_position_controller/commands (Float64MultiArray in `joint_names` order)
become the joint positions at once. joint_trajectory_controller: the last point of a
JointTrajectory. Touch `stall_file` and it stops publishing; touch `drop_file` and it leaves
`drop_joint` out of its messages.

    python test/fake_driver.py --ros-args -p joint_names:=[...] -p initial:=[...] ...
"""
import os
import random
import sys

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

EXTRA = ("head_pan_joint", "base_x_joint")


class FakeDriver(Node):
    def __init__(self):
        super().__init__("fake_driver")
        self.names = list(self.declare_parameter("joint_names", ["a"]).value)
        self.q = dict(zip(self.names, self.declare_parameter("initial", [0.0]).value))
        self.stall_file = self.declare_parameter("stall_file", "").value
        self.drop_file = self.declare_parameter("drop_file", "").value
        self.drop_joint = self.declare_parameter("drop_joint", "").value
        rate = self.declare_parameter("rate", 50.0).value
        self.order = self.names + list(EXTRA)
        random.Random(0).shuffle(self.order)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.create_publisher(JointState, "/joint_states", reliable)
        self.create_subscription(Float64MultiArray, "/forward_position_controller/commands", self.on_command, reliable)
        self.create_subscription(JointTrajectory, "/joint_trajectory_controller/joint_trajectory", self.on_trajectory,
                                 reliable)
        self.create_timer(1.0 / rate, self.publish)
        self.get_logger().info(f"publishing {self.order}")

    def on_command(self, msg):
        if len(msg.data) == len(self.names):
            self.q.update(zip(self.names, msg.data))

    def on_trajectory(self, msg):
        if msg.points:
            self.q.update(zip(msg.joint_names, msg.points[-1].positions))

    def publish(self):
        if self.stall_file and os.path.exists(self.stall_file):
            return
        names = [n for n in self.order
                 if not (self.drop_file and os.path.exists(self.drop_file) and n == self.drop_joint)]
        msg = JointState()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.name = names
        msg.position = [float(self.q.get(n, 0.0)) for n in names]
        msg.velocity = [0.0] * len(names)
        self.pub.publish(msg)


def main():
    rclpy.init(args=sys.argv)
    node = FakeDriver()
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
