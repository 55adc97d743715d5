"""How much memory this process may still take: the machine's available memory, or less when a
cgroup (a container, a SLURM job, `systemd-run -p MemoryMax=`) caps it. The trainers use it to
decide whether a dataset's images fit in RAM or must stream from disk."""
from __future__ import annotations

from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def available_bytes() -> int:
    import psutil

    available = int(psutil.virtual_memory().available)
    limit, usage = _cgroup_limit()
    if limit is not None:
        available = min(available, max(0, limit - usage))
    return available


def _cgroup_limit() -> tuple[int | None, int]:
    """(limit, usage) in bytes of this process's memory cgroup (v2 or v1); (None, 0) when unlimited."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None, 0
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: one unified hierarchy
            limit_file, usage_file = CGROUP / path.lstrip("/") / "memory.max", CGROUP / path.lstrip("/") / "memory.current"
        elif "memory" in controllers.split(","):
            base = CGROUP / "memory" / path.lstrip("/")
            limit_file, usage_file = base / "memory.limit_in_bytes", base / "memory.usage_in_bytes"
        else:
            continue
        try:
            text = limit_file.read_text().strip()
            usage = int(usage_file.read_text().strip())
        except (OSError, ValueError):
            continue
        if text != "max" and int(text) < 1 << 60:
            return int(text), usage
    return None, 0
