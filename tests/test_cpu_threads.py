"""CPU ranks take the cores this process may run on (its affinity: a container's cpuset, `taskset`), split over the
ranks beside them, not the host's core count, which oversubscribes a pinned pod."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helix_core.cpu_threads import threads_per_rank

PROBE = ("from helix_core.cpu_threads import threads_per_rank, usable_cores; "
         "print(usable_cores(), threads_per_rank(1), threads_per_rank(2), threads_per_rank(2, 3))")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity API here")
def test_a_process_pinned_to_one_core_gives_each_rank_one_thread():
    proc = subprocess.run([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{0}}); {PROBE}"],
                          capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.split() == ["1", "1", "1", "3"]


def test_requested_threads_win_and_ranks_share_the_cores():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert threads_per_rank(4, requested=7) == 7
    assert threads_per_rank(1) == cores
    assert threads_per_rank(cores * 2) == 1  # never 0
