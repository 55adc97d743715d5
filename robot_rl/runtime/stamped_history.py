"""The recent messages of a few topics, by stamp (no ROS): the observation nearest a past stamp.

A node that acts on something computed elsewhere (value_steering scores candidates sampled from
an observation the sampler saw) needs the observation at *their* stamp, not the newest one, and
the candidates can overtake it on the wire: `wait_for` blocks until every topic has a message at
least that new (or the timeout passes) while the subscriptions keep filling the history.
"""
from __future__ import annotations

import threading
from collections import deque


class StampedHistory:
    def __init__(self, keys, maxlen: int = 50):
        self._cv = threading.Condition()
        self._items = {key: deque(maxlen=maxlen) for key in keys}

    def put(self, key: str, stamp: float, value) -> None:
        with self._cv:
            self._items[key].append((float(stamp), value))
            self._cv.notify_all()

    def newest(self, key: str) -> tuple[float, object] | None:
        with self._cv:
            items = self._items[key]
            return items[-1] if items else None

    def wait_for(self, stamp: float, keys, timeout: float) -> bool:
        """Block until each of `keys` has a message stamped at or after `stamp` (False: timed out)."""
        def arrived() -> bool:
            return all(self._items[k] and self._items[k][-1][0] >= stamp for k in keys)

        with self._cv:
            return self._cv.wait_for(arrived, timeout=timeout)

    def nearest(self, key: str, stamp: float, tolerance: float):
        """The value stamped nearest `stamp`, or None when none is within `tolerance`."""
        with self._cv:
            items = list(self._items[key])
        if not items:
            return None
        t, value = min(items, key=lambda item: abs(item[0] - stamp))
        return value if abs(t - stamp) <= tolerance else None
