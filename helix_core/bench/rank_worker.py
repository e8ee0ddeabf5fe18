"""One rank of a benchmark run: random weights on the device, KV filled with random data to the
asked context (no prefill), timed decode steps through the engine's fast path.

Timings per point:
  ttl_*            host-visible: Engine.decode() call to tokens on the host (CUDA-graph replay,
                   page bookkeeping, the token read), median and p99 over `steps` calls;
  ttl_device_s     the captured step alone (CUDA events around graph replays);
  compute_only_s   the same step captured with every collective muted;
  attention_s / ffn_s / all_to_all_s / all_reduce_s   each phase alone, captured and replayed (phases.py);
  other_s          compute_only_s - attention_s - ffn_s (projections around attention, norms, merges,
                   lm_head, sampling, bookkeeping);
  exposed_comm_s   ttl_device_s - compute_only_s (0 on one rank, which has no collectives).
Before a point is reported, the attention kernel's output on the filled cache is checked against
a chunked fp32 reference for a few rows, so a fast wrong kernel cannot post a number.
"""
from __future__ import annotations

import dataclasses
import os
import statistics
import time
from dataclasses import dataclass

import torch

from ..attention import partial_attention
from ..comm import Comm, init_distributed, shutdown_distributed
from ..engine import DTYPES, Engine, EngineOptions, ModelSource, _Sequence, default_page_size
from ..fast_decode import DecodeRunner, paged_attention
from ..kernels import l2_prefetch_usable
from ..kv_cache import StagePlacement
from ..launcher import rank_device
from ..plan import Plan
from ..sampling import SamplingParams
from .phases import exchange_used, o_projection_used, phases, unread_o_bytes
from .probes import hbm_bandwidth, matmul_rate, time_cuda
from .roofline import step_work
from .timeline import critical_path, format_table, spans_from_profiler
from .shapes import shape_config


@dataclass(frozen=True)
class BenchJob:
    shape: str
    layers: int | None
    plan: str
    dtype: str
    points: tuple[tuple[int, int], ...]  # (batch, context)
    hopb: tuple[int, ...]
    steps: int = 100
    warmup: int = 5
    page_size: int | None = None  # None: the engine's default (engine.default_page_size: 16 GQA, 64 MLA)
    stage_size: int = 16
    graphs: bool = True
    init_method: str = ""
    device: str = "cuda"
    all_reduce: str = "auto"
    exchange: str = "auto"
    small_linear: str = "auto"
    fusions: str = "auto"  # EngineOptions.decode_fusions
    merge_in_projection: str = "auto"  # EngineOptions.merge_in_projection
    l2_prefetch_mib: float = 0.0  # EngineOptions.l2_prefetch_mib
    o_projection: str = "sharded"  # EngineOptions.o_projection
    profile_dir: str | None = None  # write a per-kernel table of the captured step here (rank 0)
    kv_pages: int | None = None  # pages per rank; None: what the points need, or free memory with a max point


MAX_CONTEXT = -1  # a point's context: the longest its batch can reach in the KV pool


def _decoded_per_point(job) -> int:
    """Tokens a point's sequences grow by: the warm-up, the steps one at a time, then the launched ones
    (two more than the steps), and a margin."""
    return job.warmup + 2 * job.steps + 2 + 8


def _pages_needed(job: BenchJob, kvp: int, page_size: int) -> int:
    """Pages per rank: as asked, else just enough for the points, else (a max point) 0, which sizes
    the pool from the GPU memory left after the weights, as a server does."""
    if job.kv_pages:
        return job.kv_pages
    if any(context == MAX_CONTEXT for _, context in job.points):
        return 0
    placement = StagePlacement(kvp, job.stage_size)
    most = 0
    for batch, context in job.points:
        length = context + _decoded_per_point(job)
        per_rank = max(placement.local_count(length, s % kvp, r) for s in range(batch) for r in range(kvp))
        most = max(most, batch * (-(-per_rank // page_size) + 1))
    return most


def run_rank(rank: int, job: BenchJob, results) -> None:
    try:  # setup failures too are reported, so the parent does not wait out its deadline
        plan = Plan.parse(job.plan)
        device = rank_device(job.device, rank)
        init_distributed(rank, plan.world_size, job.init_method, device)
        _run(rank, plan, device, job, results if rank == 0 else None)
        if rank == 0:
            results.put(("done", None))
    except Exception as error:  # report, then let the other ranks time out
        import traceback

        results.put(("error", f"rank {rank}: {error}\n{traceback.format_exc()}"))
        raise
    finally:
        shutdown_distributed()


def _run(rank: int, plan: Plan, device, job: BenchJob, results) -> None:
    """Rank 0 puts each point's row on `results` as soon as it is measured."""
    cfg = shape_config(job.shape, job.layers)
    comm = Comm(plan, rank, device)
    page_size = job.page_size or default_page_size(cfg)  # what a server of this model would use, unless asked
    options = EngineOptions(dtype=_full(job.dtype), page_size=page_size, stage_size=job.stage_size,
                            kv_pages=_pages_needed(job, plan.kvp, page_size), fast_decode="on",
                            cuda_graphs=job.graphs and device.type == "cuda",
                            max_batch=max(b for b, _ in job.points), all_reduce=job.all_reduce,
                            exchange=job.exchange, small_linear=job.small_linear,
                            decode_fusions=job.fusions, merge_in_projection=job.merge_in_projection,
                            l2_prefetch_mib=job.l2_prefetch_mib, o_projection=job.o_projection)
    engine = Engine(ModelSource.random(cfg, DTYPES[_full(job.dtype)], device), plan, rank, comm, device, options)
    for pool in (engine.cache.keys, engine.cache.values):
        if pool is not None:
            pool.normal_()  # random KV: long contexts need no prefill
    on_gpu = device.type == "cuda"
    hbm, flops = (hbm_bandwidth(device), matmul_rate(device)) if on_gpu else (None, None)
    sustained = matmul_rate(device, sustained_s=1.0) if on_gpu else None
    for batch, context in job.points:
        if context == MAX_CONTEXT:
            context = _longest_context(engine, batch, job)
        for hopb in (job.hopb if plan.kvp > 1 else (1,)):
            row = _run_point(engine, cfg, plan, rank, job, batch, context, hopb, hbm, flops, sustained)
            if results is not None:
                results.put(("row", row))
            if on_gpu:
                torch.cuda.empty_cache()


def _full(dtype: str) -> str:
    return {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(dtype, dtype)


def _longest_context(engine: Engine, batch: int, job: BenchJob) -> int:
    """The longest context `batch` sequences can each hold in the pool, less the tokens the
    warmup and timed steps append."""
    engine.free(list(engine.sequences))
    longest = engine.cache.longest_length([seq_id % engine.plan.kvp for seq_id in range(batch)])
    context = longest - _decoded_per_point(job)
    if context < 1:
        raise ValueError(f"a KV pool of {engine.cache.num_pages} pages per rank holds no context for batch {batch}")
    return context


def _reset(engine: Engine, batch: int, context: int) -> list[int]:
    engine.free(list(engine.sequences))
    ids = list(range(batch))
    for seq_id in ids:
        start = seq_id % engine.plan.kvp
        engine.sequences[seq_id] = _Sequence(start, SamplingParams(), pending_token=1 + seq_id)
        engine.cache.add_sequence(seq_id, start)
        engine.cache.grow(seq_id, context)
    engine._next_start_rank = batch % engine.plan.kvp
    return ids


def _pipelined_intervals(engine: Engine, ids: list[int], steps: int) -> list[float]:
    """Host time between consecutive steps' tokens when each step is launched before the previous one
    is finished, as the shard server runs them (Engine.decode_launch)."""
    in_flight = engine.decode_launch(ids)
    intervals, last = [], None
    for _ in range(steps + 1):
        launched = engine.decode_launch(ids)
        engine.decode_finish(in_flight)
        now = time.perf_counter()
        if last is not None:
            intervals.append(now - last)
        last, in_flight = now, launched
    engine.decode_finish(in_flight)
    return intervals


def _run_point(engine: Engine, cfg, plan: Plan, rank: int, job: BenchJob, batch: int, context: int, hopb: int,
               hbm: float, flops: float, sustained: float | None = None) -> dict:
    engine.options = dataclasses.replace(engine.options, hopb_pieces=hopb)
    graphs = job.graphs and engine.device.type == "cuda"
    engine.runner = DecodeRunner(engine, use_graphs=graphs, max_batch=engine.options.max_batch)
    ids = _reset(engine, batch, context)
    for _ in range(job.warmup):
        engine.decode(ids)
    engine.comm.barrier()
    one_at_a_time = []
    for _ in range(job.steps):
        begin = time.perf_counter()
        engine.decode(ids)
        one_at_a_time.append(time.perf_counter() - begin)
    host = _pipelined_intervals(engine, ids, job.steps)
    bucket = engine.runner.bucket_for(batch)
    step_graph = engine.runner._graphs[engine.runner.last_key][0] if graphs else None
    device_s = time_cuda(step_graph.replay, job.steps, warmup=1) if graphs else None
    step_phases = phases(engine, bucket, job.steps) if graphs else {}
    if graphs and job.profile_dir:
        _profile_step(engine, job, rank, f"{job.shape}-{plan.spec()}-{batch}x{context}")
    verified = _verify_attention(engine, ids)
    local_tokens = [engine.cache.local_length(s) for s in ids]
    vocab = engine.model.vocab
    embed_bytes = 0 if vocab.head is vocab.embed else vocab.embed.nbytes  # a lookup reads B rows only
    o_projection = o_projection_used(engine, bucket)
    # held but not read: a lookup reads B rows of the embedding; o columns of other ranks' heads where
    # replicated o is held but the step's exchange does not gather
    weight_bytes = engine.weight_bytes() - embed_bytes - unread_o_bytes(engine, o_projection)
    element = torch.tensor([], dtype=engine.dtype).element_size()
    work = step_work(cfg, plan, rank, weight_bytes, weight_bytes // element, local_tokens, batch, element)
    roofline = work.roofline_s(hbm, flops) if hbm else None
    sustained_roofline = work.roofline_s(hbm, sustained) if hbm and sustained else None
    ttl = statistics.median(host)
    row = {
        "shape": job.shape, "layers": cfg.num_layers, "plan": plan.spec(), "gpus": plan.world_size,
        "gpu_name": torch.cuda.get_device_name(engine.device) if engine.device.type == "cuda" else "cpu",
        "context": context, "batch": batch, "dtype": _full(job.dtype), "hopb_pieces": hopb,
        "cuda_graphs": job.graphs, "all_reduce": engine.all_reduce_impl,
        "exchange": exchange_used(engine, bucket), "exchange_impl": engine.exchange_impl,
        "small_linear": engine.use_small_linear, "fusions": engine.use_fusions,
        # where FastDecodeContext.attention_output merges in the o projection: one row, KVP > 1, GQA
        "merge_in_projection": engine.merges_in_projection(bucket),
        # MiB of what is read after a collective asked for in L2 before it (sm_90+): by the one-row projections
        # before the all-reduces (batch 1), by the decode kernel's split merge before the KVP exchange
        "o_projection": o_projection,
        "l2_prefetch_mib": job.l2_prefetch_mib if l2_prefetch_usable(engine.device) and (
            (engine.l2_prefetch_pairs and bucket == 1) or (plan.kvp > 1 and engine.runner.attention_path == "triton"))
        else 0.0,
        "attention_path": engine.runner.attention_path,
        "sm90_mla_kernel": engine.runner.attention_path == "triton" and engine.runner.sm90_mla_kernel,
        "kv": "random data (no prefill)", "page_size": engine.cache.page_size,
        "kv_pool_pages_per_rank": engine.cache.num_pages,
        "kv_pool_bytes_per_gpu": engine.cache.total_bytes(),
        "ttl_median_s": ttl, "ttl_p99_s": sorted(host)[min(len(host) - 1, int(0.99 * len(host)))],
        "ttl_one_at_a_time_s": statistics.median(one_at_a_time),
        "ttl_device_s": device_s, "tokens_per_s": batch / ttl,
        "bytes_per_gpu": work.bytes, "weight_bytes_per_gpu": work.weight_bytes, "kv_bytes_per_gpu": work.kv_bytes,
        "flops_per_gpu": work.flops, "hbm_Bps_measured": hbm, "matmul_flops_measured": flops,
        "roofline_s": roofline, "pct_roofline": roofline / ttl if roofline else None,
        "matmul_flops_sustained": sustained,
        "pct_roofline_sustained": sustained_roofline / ttl if sustained_roofline else None,
        **step_phases, "attention_verified": verified,
    }
    engine.comm.barrier()
    if engine.device.type == "cuda":
        torch.cuda.synchronize()
    return row


def _profile_step(engine: Engine, job: BenchJob, rank: int, name: str, replays: int = 10) -> None:
    """Kernel-level time of the captured step (CUPTI sees the kernels a graph launches). Every rank
    replays, as the graph's collectives need; rank 0 writes the table."""
    from torch.profiler import ProfilerActivity, profile

    graph = engine.runner._graphs[engine.runner.last_key][0]
    torch.cuda.synchronize()
    engine.comm.barrier()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(replays):
            graph.replay()
        torch.cuda.synchronize()
    if rank == 0:
        os.makedirs(job.profile_dir, exist_ok=True)
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=45, max_name_column_width=90)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        with open(os.path.join(job.profile_dir, f"profile-{safe}.txt"), "w") as handle:
            handle.write(f"{name}: {replays} replays of the captured decode step\n{table}\n")
        rows, span = critical_path(spans_from_profiler(prof))
        with open(os.path.join(job.profile_dir, f"timeline-{safe}.txt"), "w") as handle:
            handle.write(format_table(rows, span, replays, name))


def _verify_attention(engine: Engine, ids: list[int]) -> bool:
    """Kernel output for the first and last sequence against chunked fp32 attention."""
    runner, cache, cfg = engine.runner, engine.cache, engine.cfg
    rows = sorted({ids[0], ids[-1]})
    shard = engine.model.shard
    q_heads = shard.q_heads[1] - shard.q_heads[0]
    q = torch.randn(len(rows), q_heads, cache.keys.shape[-1], device=engine.device, dtype=engine.dtype)
    from ..kernels.block_tables import build_block_table

    table, lengths, _ = build_block_table(cache, rows, device=engine.device)
    value_dim = cfg.kv_lora_rank if cfg.is_mla else None
    values = None if cache.values is None else cache.values[0]
    out, lse = paged_attention(q, cache.keys[0], values, table, lengths, engine.attention.scale,
                               engine.attention.kv_head_of_q, runner.head_groups, value_dim)
    for i, seq_id in enumerate(rows):
        keys, vals = cache.gather(0, seq_id)
        vals = keys[..., :value_dim] if vals is None else vals
        positions = torch.zeros(keys.shape[0], dtype=torch.long, device=keys.device)
        ref_out, ref_lse = partial_attention(q[i:i + 1], keys, vals, engine.attention.scale,
                                             torch.zeros(1, dtype=torch.long, device=keys.device), positions,
                                             engine.attention.kv_head_of_q, key_block=16384)
        if not (torch.allclose(out[i], ref_out[0], atol=2e-2, rtol=2e-2)
                and torch.allclose(lse[i], ref_lse[0], atol=2e-2, rtol=1e-3)):
            return False
    return True
