"""The per-phase times of a benchmarked decode step (the columns attention_s, ffn_s, all_to_all_s, all_reduce_s,
compute_only_s and other_s of `helix bench`): each phase of every layer captured alone in a CUDA graph and
replayed, as the step runs it (with HOP-B, per piece); compute-only is the whole step captured with every
collective muted. Also what the step's rows report of how it ran its exchange and output projection."""
from __future__ import annotations

import torch

from ..engine import Engine
from ..fast_decode import DecodeRunner, FastDecodeContext
from .probes import capture_graph, time_cuda


def o_projection_used(engine: Engine, bucket: int) -> str:
    """replicated: the bucket's steps project every head on each rank, with no all-reduce after (see
    FastDecodeContext.attention_output); else sharded."""
    return "replicated" if engine.projects_every_head(bucket) else "sharded"


def unread_o_bytes(engine: Engine, used: str) -> int:
    if not engine.replicate_o or used == "replicated":
        return 0
    return sum(layer.wo.full.nbytes - layer.wo.local.nbytes for layer in engine.model.layers)


def exchange_used(engine: Engine, bucket: int) -> str:
    if engine.plan.kvp == 1:
        return "none"
    return "gather" if engine.gathers(bucket) else "all-to-all"


def phases(engine: Engine, bucket: int, replays: int) -> dict:
    """Each phase captured alone; compute-only = the step with every collective muted; other = what
    compute-only holds besides attention and FFN (projections before and after attention, norms, RoPE and
    KV append, merges, lm_head, sampling, the step's bookkeeping)."""
    runner = engine.runner
    buf = runner._buffers[bucket]
    engine.comm.muted = True
    try:
        muted = DecodeRunner(engine, use_graphs=True, max_batch=bucket)
        muted._buffers[bucket], muted._rows[bucket] = buf, runner._rows[bucket]
        graph, _, _ = muted._capture(buf, runner.last_key[1])
        compute_only = time_cuda(graph.replay, replays, warmup=1)
    finally:
        engine.comm.muted = False
    out = {"compute_only_s": compute_only}
    for name, fn in phase_functions(engine, bucket).items():
        out[name] = time_cuda(capture_graph(fn).replay, 20, warmup=1)
    out["other_s"] = compute_only - out["attention_s"] - out["ffn_s"]  # can dip below 0 by timing noise
    return out


def phase_functions(engine: Engine, bucket: int) -> dict:
    """A function per phase of the last step of batch bucket `bucket`, each running that phase of every
    layer once on the step's buffers, as the step runs it (with HOP-B, a kernel or exchange per piece):
    attention_s (the decode attention kernels), ffn_s (norm + FFN, `DecoderStack.ffn`), all_to_all_s (the KVP
    exchanges), all_reduce_s (the step's all-reduces)."""
    runner = engine.runner
    buf = runner._buffers[bucket]
    cfg, layers = engine.cfg, engine.cfg.num_layers
    _, slots, lengths = runner.placement.inputs(buf, runner.feedback)
    ctx = FastDecodeContext(engine, buf, slots, lengths, engine.options.hopb_pieces, runner.head_groups,
                            runner.last_key[1])
    pieces = ctx.piece_bounds(bucket)
    shard = engine.model.shard
    q_heads = shard.q_heads[1] - shard.q_heads[0]
    width = engine.cache.keys.shape[-1]
    q = torch.randn(bucket, q_heads, width, device=engine.device, dtype=engine.dtype)
    value_dim = cfg.kv_lora_rank if cfg.is_mla else None

    def attention():
        for layer in range(layers):
            values = None if engine.cache.values is None else engine.cache.values[layer]
            for lo, hi in pieces:
                ctx._attention(q[lo:hi], engine.cache.keys[layer], values, buf.block_table[lo:hi], lengths[lo:hi],
                               value_dim)

    residual = torch.randn(bucket, cfg.hidden_size, device=engine.device, dtype=engine.dtype)
    delta = torch.randn_like(residual)

    def ffn():
        for layer in range(layers):
            engine.model.ffn(layer, residual, delta, static_shapes=True)

    dv = cfg.kv_lora_rank if cfg.is_mla else engine.model.local_value_dim
    # a piece's all-to-all buffers (with the gather, its rows of the slot buffer)
    sends = [torch.zeros(engine.plan.kvp, hi - lo, engine.attention.out_heads, dv + 1, device=engine.device)
             for lo, hi in pieces]
    recvs = [torch.empty_like(send) for send in sends]
    hidden = torch.zeros(bucket, cfg.hidden_size, device=engine.device, dtype=engine.dtype)
    # the embedding's and each FFN's, and each attention's unless every rank projects every head itself
    all_reduces = 2 * layers + 1 if o_projection_used(engine, bucket) == "sharded" else layers + 1

    def all_to_all():
        for _ in range(layers):
            for (lo, hi), send, recv in zip(pieces, sends, recvs):
                if engine.gathers(hi):  # as FastDecodeContext._attend_pieces decides, piece by piece
                    engine.gather_exchange.exchange(lo, hi)
                else:
                    engine.comm.all_to_all(recv, send, "kvp")

    def all_reduce():
        for _ in range(all_reduces):
            engine.comm.all_reduce(hidden)

    return {"attention_s": attention, "ffn_s": ffn, "all_to_all_s": all_to_all, "all_reduce_s": all_reduce}
