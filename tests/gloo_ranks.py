"""Test helper: run `body(rank)` in spawned CPU ranks joined in one gloo group; fail the test on a hang or an error."""
from __future__ import annotations

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _rank(rank: int, body, world_size: int, init_method: str, failures) -> None:
    from helix_core.comm import init_distributed, shutdown_distributed

    try:
        init_distributed(rank, world_size, init_method, torch.device("cpu"))
        body(rank)
        dist.barrier()
    except BaseException as error:  # noqa: BLE001 - reported to the parent
        failures.put(f"rank {rank}: {type(error).__name__}: {error}")
        raise
    finally:
        shutdown_distributed()


def run_gloo_ranks(body, world_size: int, timeout_s: float = 120.0) -> None:
    """`body` (a module-level function, so it can be pickled) runs on every rank after the group is up; an
    exception in it fails the test with the rank's message, and a rank still alive after `timeout_s` is killed."""
    ctx = mp.get_context("spawn")
    failures = ctx.SimpleQueue()
    with tempfile.TemporaryDirectory() as tmp:
        init = "file://" + os.path.join(tmp, "rendezvous")
        procs = [ctx.Process(target=_rank, args=(rank, body, world_size, init, failures)) for rank in range(world_size)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(timeout=timeout_s)
        hung = [proc for proc in procs if proc.is_alive()]
        for proc in hung:
            proc.kill()
        if hung:
            pytest.fail("a rank hung")
    errors = []
    while not failures.empty():
        errors.append(failures.get())
    assert not errors, errors
    assert all(proc.exitcode == 0 for proc in procs), [proc.exitcode for proc in procs]
