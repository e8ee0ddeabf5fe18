"""Joining the shard group: a long wait for every rank to start, then short collective timeouts.

Forming the group waits for the slowest rank to come up (minutes on Kubernetes), but once formed
a collective stuck on a dead or hung peer must fail within seconds, so the timeouts of every
process group are shortened after the join. helix_core.comm reads its join timeout from
HELIX_COLLECTIVE_TIMEOUT_S when first imported, so set_join_timeout must run before that import.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from helix_core.cpu_threads import threads_per_rank
from services.shard.config import ShardConfig

log = logging.getLogger(__name__)


def set_join_timeout(join_timeout_s: float) -> None:
    """Make helix_core's process-group creation wait this long for peers (unless the user set it)."""
    os.environ.setdefault("HELIX_COLLECTIVE_TIMEOUT_S", str(join_timeout_s))
    os.environ.setdefault("HELIX_CONTROL_TIMEOUT_S", str(join_timeout_s))


def join_group(config: ShardConfig):
    """Join the group and build this rank's engine (helix_core.launcher.start_rank)."""
    from helix_core.engine import EngineOptions
    from helix_core.launcher import RankSetup, start_rank
    from helix_core.plan import Plan

    plan = Plan.parse(config.plan_spec)
    if plan.world_size != config.world_size:
        raise ValueError(
            f"--plan {config.plan_spec} needs {plan.world_size} shards, but --world-size is "
            f"{config.world_size}"
        )
    options = EngineOptions(
        dtype=config.dtype,
        page_size=config.page_size,
        stage_size=config.stage_size,
        kv_pages=config.kv_pages,
        kv_memory_fraction=config.kv_memory_fraction,
        prefill_chunk=config.prefill_chunk,
        hopb_pieces=config.hopb_pieces,
        all_reduce=config.all_reduce,
        exchange=config.exchange,
        small_linear=config.small_linear,
        o_projection=config.o_projection,
        seed=config.seed,
        max_batch=config.max_batch_size,
    )  # the fast path's buckets cover the scheduler's batches
    threads = threads_per_rank(config.world_size, config.threads)
    setup = RankSetup(config.model_dir, plan, config.device, options, config.init_method, threads)
    engine, _ = start_rank(config.rank, setup)
    shorten_collective_timeouts(config.collective_timeout_s)
    return engine


def shorten_collective_timeouts(timeout_s: float) -> None:
    """Every process group of this rank (world, named groups, control channel) times out after timeout_s."""
    import torch.distributed as dist
    from torch.distributed import distributed_c10d

    if not (dist.is_available() and dist.is_initialized()):
        return
    for group in list(distributed_c10d._world.pg_map):
        try:
            distributed_c10d._set_pg_timeout(timedelta(seconds=timeout_s), group)
        except Exception as error:  # an older torch or backend without it keeps the join timeout
            log.warning("cannot shorten a process group's timeout to %.0f s: %s", timeout_s, error)
