"""Project exceptions: the CLI turns each into one line on stderr and exit code 2."""


class RobotRLError(Exception):
    """A user-facing error: what went wrong, which file or topic, what to do."""


class ConfigError(RobotRLError):
    """A configuration value or parameter is invalid."""


class DataError(RobotRLError):
    """A dataset, bag or checkpoint file is missing, corrupt or inconsistent."""


class CommandError(RobotRLError):
    """A command for the arm was refused (NaN/inf, wrong length, unknown joint)."""
