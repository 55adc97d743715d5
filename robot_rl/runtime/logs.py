"""Logging for the core that runs inside nodes and without them.

The core logs like an rclpy node (`logger.error(text, throttle_duration_sec=5.0)`): a node hands
it its own logger; in-process use (a test, a notebook) wraps a Python logger in RateLimitedLogger,
which keeps the signature and the rate limit. WarnOnce is for conditions that last (a topic not
publishing yet, an observation of the wrong size): one line per kind until cleared, where a node
ticking ten times a second would repeat it every tick.
"""
from __future__ import annotations

import logging
import sys
import time


class RateLimitedLogger:
    """A Python logger with rclpy's logging calls: at most one line per call site per throttle period."""

    def __init__(self, logger: logging.Logger | str = "robot_rl", clock=time.monotonic):
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.clock = clock
        self._last: dict[tuple, float] = {}  # call site -> time of its last line

    def _log(self, level: int, text: str, throttle_duration_sec: float | None) -> None:
        if throttle_duration_sec:
            caller = sys._getframe(2)
            site = (caller.f_code.co_filename, caller.f_lineno)
            now = self.clock()
            if now - self._last.get(site, -float("inf")) < throttle_duration_sec:
                return
            self._last[site] = now
        self.logger.log(level, text)

    def debug(self, text: str, throttle_duration_sec: float | None = None) -> None:
        self._log(logging.DEBUG, text, throttle_duration_sec)

    def info(self, text: str, throttle_duration_sec: float | None = None) -> None:
        self._log(logging.INFO, text, throttle_duration_sec)

    def warning(self, text: str, throttle_duration_sec: float | None = None) -> None:
        self._log(logging.WARNING, text, throttle_duration_sec)

    def error(self, text: str, throttle_duration_sec: float | None = None) -> None:
        self._log(logging.ERROR, text, throttle_duration_sec)


class WarnOnce:
    def __init__(self, logger):
        self.logger = logger  # an rclpy logger or a RateLimitedLogger
        self.keys: set[str] = set()

    def __call__(self, key: str, text: str, error: bool = False) -> None:
        if key not in self.keys:
            self.keys.add(key)
            if error:  # two call sites: rclpy fixes a call site's severity at its first call
                self.logger.error(text)
            else:
                self.logger.warning(text)

    def clear(self) -> None:
        self.keys.clear()
