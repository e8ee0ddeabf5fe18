"""Exact attention over one KV shard, with log-sum-exp, and the LSE-rescaled merge of shards.

This is the CPU reference path (and the GPU fallback): it walks the keys in blocks with an
online softmax, so no query ever needs the scores of the whole sequence at once. A query that
sees no key of this shard gets output 0 and LSE -inf, which the merge treats as "no
contribution". Everything is accumulated in fp32.
"""
from __future__ import annotations

from typing import Callable

import torch

KEY_BLOCK = 2048
ScoreReduce = Callable[[torch.Tensor], torch.Tensor]


def partial_attention(
    q: torch.Tensor,  # [T, Hq, Dk]
    k: torch.Tensor,  # [S, Hkv, Dk]
    v: torch.Tensor,  # [S, Hkv, Dv]
    scale: float,
    q_positions: torch.Tensor,  # [T] global positions (causal mask)
    k_positions: torch.Tensor,  # [S]
    kv_head_of_q: torch.Tensor,  # [Hq] local KV head each local query head reads
    reduce_scores: ScoreReduce | None = None,
    key_block: int = KEY_BLOCK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (out [T, Hq, Dv] fp32, lse [T, Hq] fp32) of softmax(q.k*scale) @ v over these keys.

    `reduce_scores` sums partial q.k scores over the ranks that hold other slices of the head
    dimension; it must run before the mask and the softmax, so every rank of the slice group
    calls it the same number of times (they hold the same keys).
    """
    tokens, heads, _ = q.shape
    out = torch.zeros(tokens, heads, v.shape[-1], dtype=torch.float32, device=q.device)
    lse = torch.full((tokens, heads), float("-inf"), dtype=torch.float32, device=q.device)
    if k.shape[0] == 0:
        return out, lse
    qf = q.float().transpose(0, 1)  # [Hq, T, D]
    for start in range(0, k.shape[0], key_block):
        stop = min(start + key_block, k.shape[0])
        kb = k[start:stop].float()[:, kv_head_of_q].transpose(0, 1)  # [Hq, S_b, D]
        vb = v[start:stop].float()[:, kv_head_of_q].transpose(0, 1)
        scores = torch.matmul(qf, kb.transpose(1, 2))  # [Hq, T, S_b]
        if reduce_scores is not None:
            scores = reduce_scores(scores)
        scores = scores * scale
        visible = k_positions[start:stop].unsqueeze(0) <= q_positions.unsqueeze(1)  # [T, S_b]
        scores = scores.masked_fill(~visible.unsqueeze(0), float("-inf"))
        block_lse = torch.logsumexp(scores, dim=-1)  # [Hq, T]
        probs = torch.exp(scores - block_lse.unsqueeze(-1).clamp_min(torch.finfo(torch.float32).min))
        probs = torch.nan_to_num(probs, nan=0.0)
        block_out = torch.matmul(probs, vb).transpose(0, 1)  # [T, Hq, Dv]
        out, lse = merge_two(out, lse, block_out, block_lse.transpose(0, 1))
    return out, lse


def merge_two(out_a, lse_a, out_b, lse_b):
    """Merge two partial attentions over disjoint key sets."""
    lse = torch.logaddexp(lse_a, lse_b)
    safe = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)
    wa = torch.exp(lse_a - safe).unsqueeze(-1)
    wb = torch.exp(lse_b - safe).unsqueeze(-1)
    return out_a * wa + out_b * wb, lse


def merge_partials(outs: torch.Tensor, lses: torch.Tensor) -> torch.Tensor:
    """outs [P, ..., D], lses [P, ...] from P disjoint KV shards -> exact attention [..., D]."""
    peak = lses.max(dim=0).values
    peak = torch.where(torch.isinf(peak), torch.zeros_like(peak), peak)
    weights = torch.exp(lses - peak.unsqueeze(0))  # -inf shards weigh 0
    total = weights.sum(dim=0).clamp_min(torch.finfo(torch.float32).tiny)
    return (outs * weights.unsqueeze(-1)).sum(dim=0) / total.unsqueeze(-1)
