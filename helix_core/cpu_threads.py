"""How many torch threads a CPU rank takes: the cores this process may run on, shared by the ranks beside it."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity (a container's cpuset, `taskset`), not the host's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity API (macOS)
        return os.cpu_count() or 1


def threads_per_rank(ranks_here: int, requested: int = 0) -> int:
    """`requested` if set (> 0), else the usable cores split evenly over the ranks on this machine."""
    return requested or max(1, usable_cores() // max(1, ranks_here))
