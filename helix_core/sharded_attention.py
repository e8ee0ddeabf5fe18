"""Helix attention plumbing for one rank: KV append, shard-local attention, exchange, merge.

For each layer: the new tokens' K/V go to the KVP rank that owns their position; every rank
attends the whole batch's queries (its head group, its dimension slice) over its own KV shard,
giving a partial output and its LSE; one all-to-all over the KVP group gives each rank every
shard's partial for its slice of the query heads; an LSE-rescaled sum makes it exact.

HOP-B: the batch is cut into pieces of whole sequences; the all-to-all of a piece is launched
asynchronously and runs while the next piece's attention computes.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .attention import merge_partials, partial_attention
from .comm import Comm
from .kv_cache import PagedKVCache
from .plan import AttentionShard
from .step import StepBatch


@dataclass
class AttentionStats:
    hopb_pieces_run: int = 0  # pieces of the last layer's exchange
    exchanges: int = 0
    merges_in_projection: int = 0  # fast path: KVP merges done by the o projection's kernel (eager calls)
    # fast path: layers whose rank projected every head with the whole o projection, no all-reduce (eager calls)
    replicated_o_projections: int = 0


class ShardedAttention:
    def __init__(self, *, shard: AttentionShard, num_heads: int, num_kv_heads: int, kvp: int, comm: Comm,
                 cache: PagedKVCache, scale: float, hopb_pieces: int = 1):
        self.comm = comm
        self.cache = cache
        self.scale = scale
        self.kvp = kvp
        self.hopb_pieces = max(1, hopb_pieces)
        self.slices = comm.size("head_slices")
        group = num_heads // num_kv_heads
        q_global = torch.arange(*shard.q_heads)
        kv_of_q = q_global // group - shard.kv_heads[0]
        self.kv_head_of_q = kv_of_q.clamp_min(0).to(cache.keys.device)
        self.out_heads = shard.out_heads[1] - shard.out_heads[0]
        self.stats = AttentionStats()

    def __call__(self, layer: int, batch: StepBatch, q: torch.Tensor, k: torch.Tensor,
                 v: torch.Tensor | None, value_dim: int | None = None, phase=None) -> torch.Tensor:
        """q [T, Hq, Dk], k [T, Hkv, Dk], v [T, Hkv, Dv] or None when values are the first
        `value_dim` dims of the keys (MLA's latent). Returns [T, out_heads, Dv] fp32.
        `phase(name)` (optional) gives a context manager timing "attention" and "all_to_all"."""
        phase = phase or _untimed
        with phase("attention"):
            if batch.write_slots.numel():
                idx = batch.write_token_index
                self.cache.write(layer, batch.write_slots, k[idx], None if v is None else v[idx])
        reduce = self._reduce_scores if self.slices > 1 else None
        pieces = batch.piece_bounds(self.hopb_pieces if self.kvp > 1 else 1)
        pending = []
        for first, stop in pieces:
            with phase("attention"):
                out, lse = self._local_attention(layer, batch, q, first, stop, value_dim, reduce)
            with phase("all_to_all"):
                pending.append(self._start_exchange(out, lse))
        self.stats.hopb_pieces_run = len(pieces)
        self.stats.exchanges += len(pieces) if self.kvp > 1 else 0
        merged = []
        for recv, work, dim in pending:
            if work is not None:
                with phase("all_to_all"):
                    work.wait()
            with phase("attention"):
                merged.append(self._merge(recv, dim))
        return torch.cat(merged, dim=0)

    def _reduce_scores(self, scores: torch.Tensor) -> torch.Tensor:
        return self.comm.all_reduce(scores.contiguous(), "head_slices")

    def _local_attention(self, layer, batch, q, first_span, stop_span, value_dim, reduce):
        outs, lses = [], []
        kvp_rank = self.cache.kvp_rank
        for span in batch.spans[first_span:stop_span]:
            keys, values = self.cache.gather(layer, span.seq_id)
            if values is None:
                values = keys[..., :value_dim]
            k_pos = self.cache.placement.global_positions(keys.shape[0], span.start_rank, kvp_rank, keys.device)
            rows = slice(span.offset, span.offset + span.tokens)
            out, lse = partial_attention(q[rows], keys, values, self.scale, batch.positions[rows], k_pos,
                                         self.kv_head_of_q, reduce)
            outs.append(out)
            lses.append(lse)
        return torch.cat(outs), torch.cat(lses)

    def _start_exchange(self, out: torch.Tensor, lse: torch.Tensor):
        return start_exchange(self.comm, out, lse, self.kvp, self.out_heads)

    def _merge(self, recv, dim):
        if dim is None:
            return recv  # KVP = 1: the local attention is already exact
        return merge_partials(recv[..., :dim], recv[..., dim])


def start_exchange(comm: Comm, out: torch.Tensor, lse: torch.Tensor, kvp: int, out_heads: int):
    """Launch the all-to-all of one piece's partials: (recv, work, value dim), or (out, None,
    None) when KVP = 1 and the local attention is already exact."""
    if kvp == 1:
        return out, None, None
    # the LSE travels as one more channel of the output
    return exchange_packed(comm, torch.cat([out, lse.unsqueeze(-1)], dim=-1), kvp, out_heads)


def exchange_packed(comm: Comm, packed: torch.Tensor, kvp: int, out_heads: int):
    """All-to-all of partials packed as [T, Hq, Dv + 1] (output channels, then the LSE):
    (recv [kvp, T, out_heads, Dv + 1], work, Dv)."""
    tokens, _, width = packed.shape
    dim = width - 1
    # piece j of the query heads goes to KVP peer j (no copy for one token: the transpose is trivial)
    send = packed.view(tokens, kvp, out_heads, width).transpose(0, 1).contiguous()
    recv = torch.empty_like(send)
    work = comm.all_to_all(recv, send, "kvp", async_op=True)
    return recv, work, dim


def _untimed(name: str):
    return _UNTIMED


_UNTIMED = contextlib.nullcontext()
