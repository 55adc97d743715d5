"""The command path without ROS: joint mapping, ticks, chunk execution and the guard."""
