"""A benchmark's rank processes: spawned, their rows collected under a deadline, and none left behind."""
from __future__ import annotations

import multiprocessing as mp
import queue
import time

POLL_S = 1.0  # how often the wait for results checks that every rank is still alive


def run_ranks(target, args: tuple, world_size: int, timeout_s: float, done_count: int = 1) -> tuple[list, str | None]:
    """Runs `target(rank, *args, results)` in `world_size` spawned processes and returns (rows, failure).

    A rank puts ("row", value) for each result, ("done", None) when it has finished, ("error", message) when it
    failed. Collection ends after `done_count` "done" messages, at the first "error", when a rank exits with an
    error before reporting (it died in setup, or was killed), or at the deadline (then `failure` says so); the
    processes are then joined briefly and killed if still alive (a rank stuck in a collective whose peer is gone
    would otherwise stay)."""
    context = mp.get_context("spawn")
    results = context.Queue()
    procs = [context.Process(target=target, args=(rank, *args, results), daemon=True) for rank in range(world_size)]
    for proc in procs:
        proc.start()
    rows, done, failure = [], 0, None
    deadline = time.monotonic() + timeout_s
    while done < done_count:
        try:
            kind, value = results.get(timeout=min(POLL_S, max(0.1, deadline - time.monotonic())))
        except queue.Empty:
            # a rank that died before it could report (or was killed) must not leave us waiting out the deadline
            dead = [(rank, proc.exitcode) for rank, proc in enumerate(procs) if proc.exitcode not in (None, 0)]
            if dead:
                exits = ", ".join(f"rank {rank} exited with code {code}" for rank, code in dead)
                failure = f"{exits} before reporting (its error is above)"
                break
            if time.monotonic() >= deadline:
                failure = f"no result within {timeout_s:.0f} s"
                break
            continue
        if kind == "row":
            rows.append(value)
        elif kind == "done":
            done += 1
        else:
            failure = value
            break
    for proc in procs:
        proc.join(timeout=10 if failure is None else 1)
        if proc.is_alive():
            proc.kill()
    return rows, failure
