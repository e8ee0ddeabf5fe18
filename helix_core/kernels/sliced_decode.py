"""Paged decode attention over a slice of every head's dimension (the headslice plan, m > 1).

    out, lse = paged_sliced_attention(q, key_pages, value_pages, block_table, lengths, scale,
                                      head_groups, reduce_scores, max_length=bound)

Each rank of a head group holds dims [slice] of every q/K/V head. The scores need the whole head,
so: kernel 1 writes this rank's partial q.k scores [B, Hq, S] (fp32); `reduce_scores` sums them
over the other slices' ranks (an in-place all-reduce); kernel 2 takes the softmax of scale * scores
and P.V over this rank's value slice, split over the keys, and the decode kernels' merge joins the
splits. Returns out [B, Hq, Dv_local] and lse [B, Hq] fp32 (out 0, lse -inf for a row of length 0),
as fast_decode.paged_attention_torch with the same `reduce_scores`.

S, the scores' width, is static: the block table's first ceil(max_length / page_size) pages (the
whole table without max_length), so a CUDA graph captures one shape per bound. Every call on every
rank of a slice group must use the same S, since the all-reduce sums the whole tensor.
Nothing here imports triton at module import; kernels are compiled on first use.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from . import kernel_module, next_pow2, sm_count
from .decode_attention import check_layout, check_value_pages
from .decode_launch import DecodeConfig, choose_num_splits, default_block_h
from .head_groups import HeadGroups
from .split_merge import OUT_DTYPES, launch_merge


def _kernels():
    return kernel_module("_triton_sliced")


def _default_config(max_group: int, widest_dim: int, fp32_math: bool) -> tuple[int, int, int, int, bool]:
    """(block_n, block_h, num_warps, num_stages, pages_ahead). 16-bit: as the decode kernel's GQA default,
    the block table read a tile ahead with three stages (two K or V buffers) and two programs a SM; H200,
    batch 8 x 10000 keys, fp16 (docs/benchmarks.md, third session): a 2 x 2 rank (8 heads x 256 dims)
    171.1 against 193.6 us, a 1 x 4 rank (16 x 128) 192.9 against 219.6 us for the earlier default
    (two stages, four programs a SM)."""
    block_h = default_block_h(max_group)
    if fp32_math:
        return (32 if widest_dim <= 128 else 16), min(block_h, 32), 8, 2, False
    return (64 if widest_dim <= 256 else 32), block_h, 4, 3, True


def sliced_launch(cfg: DecodeConfig, max_group: int, widest_dim: int, fp32_math: bool, page_size: int,
                  upcast: bool) -> dict:
    """The compile-time arguments and launch options both kernels share: cfg's fields where set, else the
    defaults (the launcher and `sm90_report` build the same kernels from them)."""
    d_bn, d_bh, d_warps, d_stages, d_ahead = _default_config(max_group, widest_dim, fp32_math)
    block_n, block_h = cfg.block_n or d_bn, cfg.block_h or d_bh
    if block_n < 16 or block_n & (block_n - 1) or block_h < 16 or block_h & (block_h - 1):
        raise ValueError("block_n and block_h must be powers of two >= 16")
    return dict(
        PAGE_SIZE=page_size, BLOCK_N=block_n, BLOCK_H=block_h, UPCAST=upcast,
        PAGES_AHEAD=d_ahead if cfg.pages_ahead is None else bool(cfg.pages_ahead),
        num_warps=cfg.num_warps or d_warps, num_stages=cfg.num_stages or d_stages)


def paged_sliced_attention(
    q: torch.Tensor,
    key_pages: torch.Tensor,
    value_pages: torch.Tensor | None,
    block_table: torch.Tensor,
    lengths: torch.Tensor,
    scale: float,
    head_groups: HeadGroups,
    reduce_scores: Callable[[torch.Tensor], torch.Tensor] | None,
    value_dim: int | None = None,
    max_length: int | None = None,
    *,
    config: DecodeConfig | None = None,
    out: torch.Tensor | None = None,
    lse: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode attention of one query per sequence whose q.k scores are summed over dimension slices.

    q [B, Hq, Dk] (this rank's dims of each head); key_pages [P, page_size, Hkv, Dk]; value_pages
    [P, page_size, Hkv, Dv]; block_table [B, pages] int32; lengths [B] int32 (0: a padding row).
    head_groups: HeadGroups of the [Hq] query-head -> KV-head mapping.
    reduce_scores: sums a fp32 [B, Hq, S] tensor over the slice group and returns the sum (may be the
      same tensor); CUDA-graph capturable (no host sync). None: this rank holds whole heads.
    max_length: host-side bound of `lengths` that sets S (see the module doc); rows longer than S
      see only their first S keys.
    config: block_n / block_h / num_warps / num_stages / num_splits (splits of each row's keys, both kernels)
      / pages_ahead (the block table read a tile ahead; on by default in 16-bit).
    out/lse: optional destinations (out fp32/bf16/fp16 with a unit last stride; lse fp32).
    """
    if value_pages is None:
        raise NotImplementedError("values as a view of the keys (MLA) have no dimension slices: "
                                  "plan.py refuses headslice for MLA; use paged_decode_attention")
    mod = _kernels()
    if q.dim() != 3 or key_pages.dim() != 4 or value_pages.dim() != 4:
        raise ValueError(f"q must be [B, Hq, Dk] and the pages [P, page_size, Hkv, D]; got {tuple(q.shape)}, "
                         f"{tuple(key_pages.shape)}, {tuple(value_pages.shape)}")
    batch, num_q_heads, dk = q.shape
    _, page_size, num_kv_heads, dk_cache = key_pages.shape
    if dk_cache != dk:
        raise ValueError(f"query dim {dk} != key dim {dk_cache}")
    dv = check_value_pages(key_pages, value_pages, value_dim)
    check_layout(q, key_pages, value_pages, block_table, lengths)
    if head_groups.num_q_heads != num_q_heads or head_groups.max_kv_head >= num_kv_heads:
        raise ValueError(f"head_groups maps {head_groups.num_q_heads} query heads onto KV head <= "
                         f"{head_groups.max_kv_head}; q has {num_q_heads} heads, the cache {num_kv_heads}")
    device = q.device
    if max_length is not None:  # the static bound: only these pages are ever read
        block_table = block_table[:, :max(1, -(-int(max_length) // page_size))]
    if block_table.dtype != torch.int32 or block_table.stride(-1) != 1:
        block_table = block_table.to(torch.int32).contiguous()
    if lengths.dtype != torch.int32 or not lengths.is_contiguous():
        lengths = lengths.to(torch.int32).contiguous()
    num_keys = block_table.shape[1] * page_size

    out_dtype = torch.float32 if out is None else out.dtype
    if out_dtype not in OUT_DTYPES:
        raise ValueError(f"out must be fp32, bf16 or fp16, got {out_dtype}")
    if out is None:
        out = torch.empty(batch, num_q_heads, dv, dtype=torch.float32, device=device)
    elif out.shape != (batch, num_q_heads, dv) or out.stride(-1) != 1:
        raise ValueError(f"out must be [{batch}, {num_q_heads}, {dv}] with a unit last stride")
    if lse is None:
        lse = torch.empty(batch, num_q_heads, dtype=torch.float32, device=device)
    elif lse.shape != (batch, num_q_heads) or lse.dtype != torch.float32:
        raise ValueError(f"lse must be fp32 [{batch}, {num_q_heads}]")

    cfg = config or DecodeConfig()
    qk_fp32 = q.dtype != key_pages.dtype
    fp32_math = qk_fp32 or key_pages.dtype == torch.float32 or value_pages.dtype == torch.float32
    launch = sliced_launch(cfg, head_groups.max_group, max(dk, dv), fp32_math, page_size, mod.INTERPRET)
    group_kv, group_heads = head_groups.tables(launch["BLOCK_H"], device)
    head_blocks = group_kv.shape[0]
    # both kernels split each row's keys so that long contexts fill the GPU; from the static bound,
    # so a captured graph keeps its grid
    splits = max(1, int(cfg.num_splits or choose_num_splits(batch, head_blocks, num_keys, launch["BLOCK_N"],
                                                             sm_count(device),
                                                             waves=2 if launch["PAGES_AHEAD"] else 4)))

    # every rank of the slice group sums the same [B, Hq, S]; columns past a row's length stay unwritten
    scores = torch.empty(batch, num_q_heads, num_keys, dtype=torch.float32, device=device)
    if batch and num_q_heads:
        mod._partial_scores_kernel[(head_blocks, splits, batch)](
            q, key_pages, block_table, lengths, group_kv, group_heads, scores,
            splits, num_keys,
            q.stride(0), q.stride(1),
            key_pages.stride(0), key_pages.stride(1), key_pages.stride(2),
            block_table.stride(0),
            scores.stride(0), scores.stride(1),
            DK=dk, BLOCK_DK=max(16, next_pow2(dk)), QK_FP32=qk_fp32, **launch,
        )
    if reduce_scores is not None:  # called even for an empty batch: the group's ranks stay in step
        scores = reduce_scores(scores)
        if scores.shape != (batch, num_q_heads, num_keys) or scores.stride(-1) != 1:
            raise ValueError(f"reduce_scores returned {tuple(scores.shape)}, expected "
                             f"{(batch, num_q_heads, num_keys)} with a unit last stride")
    if batch == 0 or num_q_heads == 0:
        return out, lse

    def softmax_values(part_out, part_lse, num_splits):
        final = num_splits == 1
        mod._softmax_values_kernel[(head_blocks, num_splits, batch)](
            scores, value_pages, block_table, lengths, group_kv, group_heads, part_out, part_lse,
            float(scale) * mod.LOG2E, num_splits, num_keys,
            scores.stride(0), scores.stride(1),
            value_pages.stride(0), value_pages.stride(1), value_pages.stride(2),
            block_table.stride(0),
            part_out.stride(0), part_out.stride(1), 0 if final else part_out.stride(2),
            part_lse.stride(0), part_lse.stride(1), 0 if final else part_lse.stride(2),
            DV=dv, BLOCK_DV=max(16, next_pow2(dv)), FINAL=final, **launch,
        )

    if splits == 1:
        softmax_values(out, lse, 1)
        return out, lse
    mid_out = torch.empty(batch, num_q_heads, splits, dv, dtype=torch.float32, device=device)
    mid_lse = torch.empty(batch, num_q_heads, splits, dtype=torch.float32, device=device)
    softmax_values(mid_out, mid_lse, splits)
    launch_merge(mid_out.permute(2, 0, 1, 3), mid_lse.permute(2, 0, 1), out, lse, lse_in_log2=True)
    return out, lse
