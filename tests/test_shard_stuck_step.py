"""Rank 0 counts its group as hung when a step runs past max(60 s, 6 x the collective timeout):
a peer stopped mid-step leaves device-side waits (collectives inside a CUDA graph, the symm-mem
barrier) that no host-side timeout reaches, so Status must say FAILED on its own."""
import time

from services.proto_gen.helix.v1 import shard_pb2
from services.shard.config import ShardConfig
from services.shard.runtime import ShardRuntime

FAILED = shard_pb2.ShardState.SHARD_STATE_FAILED


class _Scheduler:
    group_call_since_s = None
    active, waiting, decode_steps, profile_every_n_steps = {}, [], 0, 0


def _runtime(collective_timeout_s: float) -> ShardRuntime:
    config = ShardConfig(model_dir="/nonexistent", plan_spec="helix:kvp=2,tpa=1", world_size=2, rank=0,
                         rendezvous="127.0.0.1:1", collective_timeout_s=collective_timeout_s)
    runtime = ShardRuntime(config, metrics=None)
    runtime.scheduler = _Scheduler()
    return runtime


def test_no_step_in_progress_is_never_stuck():
    runtime = _runtime(10.0)
    assert runtime.stuck_step(now_s=time.monotonic() + 1e6) is None
    assert runtime.status().state != FAILED


def test_a_step_past_the_limit_turns_status_failed():
    runtime = _runtime(10.0)  # limit: 60 s (the floor)
    start = time.monotonic()
    runtime.scheduler.group_call_since_s = start
    assert runtime.stuck_step(now_s=start + 59.0) is None
    why = runtime.stuck_step(now_s=start + 61.0)
    assert why is not None and "has not finished in 61 s (limit 60 s)" in why
    runtime.scheduler.group_call_since_s = time.monotonic() - 61.0
    status = runtime.status()
    assert status.state == FAILED and "must be restarted" in status.message


def test_the_limit_grows_with_the_collective_timeout():
    runtime = _runtime(20.0)  # limit: 120 s
    runtime.scheduler.group_call_since_s = 0.0
    assert runtime.stuck_step(now_s=119.0) is None
    assert "limit 120 s" in runtime.stuck_step(now_s=121.0)
