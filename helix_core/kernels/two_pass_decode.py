"""Absorbed-MLA decode attention in two passes (`DecodeConfig(two_pass=True)` of paged_decode_attention).

Pass 1 writes every key tile's probabilities (16-bit, relative to the tile's own max) and the tile's max
and sum; pass 2 runs the online softmax over those tiles and P.V over a part of the value dims. No program
holds the scores and the whole value accumulator at once, so 128 heads a latent need neither a second
score computation (the one-pass kernel's two value parts) nor a second read of the keys (64-head blocks).
The price is the probabilities' round trip through memory: 2 x heads bytes a key written, read once per
value part. Kernels in `_triton_two_pass.py`.
"""
from __future__ import annotations

import torch

from . import kernel_module, sm_count
from .decode_attention import (
    DecodeConfig,
    HeadGroups,
    _launch_merge,
    _next_pow2,
    _tile_widths,
    choose_num_splits,
)


def _kernels():
    return kernel_module("_triton_two_pass")


def two_pass_launch(cfg: DecodeConfig, max_group: int, dv: int) -> dict:
    """The shared compile-time arguments of both passes and each pass's warps / stages / value parts.
    Heads a block: all of a latent's heads up to 128 (one wgmma M tile per warpgroup over 8 warps); the
    value dims in parts of 256, so pass 2's accumulator is at most [128, 256] fp32 (128 registers a thread)."""
    block_h = cfg.block_h or min(128, max(16, _next_pow2(max_group)))
    block_n = cfg.block_n or 32
    if block_n < 16 or block_n & (block_n - 1) or block_h < 16 or block_h & (block_h - 1):
        raise ValueError("block_n and block_h must be powers of two >= 16")
    block_dv = max(16, _next_pow2(dv))
    parts = cfg.dv_parts or max(1, block_dv // 256)
    if parts & (parts - 1) or block_dv % parts:
        raise ValueError(f"dv_parts {parts} must be a power of two dividing the value tile {block_dv}")
    warps = cfg.num_warps or (8 if block_h >= 128 else 4)
    return dict(block_n=block_n, block_h=block_h, block_dv=block_dv // parts, parts=parts,
                probs_warps=warps, probs_stages=cfg.num_stages or 2, values_warps=warps, values_stages=3)


def two_pass_splits(cfg: DecodeConfig, groups: HeadGroups, batch: int, max_length: int, dv: int,
                    device: torch.device) -> tuple[int, int, int]:
    """(keys padded to whole tiles, pass 1 splits, pass 2 splits): one program per SM in each pass (pass 1
    holds the whole query block in shared memory, pass 2 the value part's accumulator in registers)."""
    launch = two_pass_launch(cfg, groups.max_group, dv)
    block_n = launch["block_n"]
    num_keys = -(-max(1, int(max_length)) // block_n) * block_n
    head_blocks = groups.tables(launch["block_h"], device)[0].shape[0]
    sms = sm_count(device)
    if cfg.num_splits:
        return num_keys, int(cfg.num_splits), int(cfg.num_splits)
    return (num_keys, choose_num_splits(batch, head_blocks, num_keys, block_n, sms, waves=1),
            choose_num_splits(batch, head_blocks * launch["parts"], num_keys, block_n, sms, waves=1))


def paged_two_pass_attention(q: torch.Tensor, key_pages: torch.Tensor, block_table: torch.Tensor,
                             lengths: torch.Tensor, scale: float, groups: HeadGroups, dv: int, max_length: int,
                             cfg: DecodeConfig, out: torch.Tensor, lse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """out/lse of paged_decode_attention for values that are the keys' first dv dims (validated, int32
    block table and lengths, preallocated out/lse: the caller's checks)."""
    mod = _kernels()
    batch, num_q_heads, dk = q.shape
    page_size = key_pages.shape[1]
    launch = two_pass_launch(cfg, groups.max_group, dv)
    block_n, block_h, parts = launch["block_n"], launch["block_h"], launch["parts"]
    block_a, block_t, _ = _tile_widths(dk, dv)
    device = q.device
    # keys past max_length are cut (the bound's contract)
    num_keys, splits1, splits2 = two_pass_splits(cfg, groups, batch, max_length, dv, device)
    group_kv, group_heads = groups.tables(block_h, device)
    head_blocks = group_kv.shape[0]
    upcast = mod.INTERPRET

    probs = torch.empty(batch, num_q_heads, num_keys, dtype=key_pages.dtype, device=device)
    tile_max = torch.empty(batch, num_q_heads, num_keys // block_n, dtype=torch.float32, device=device)
    tile_sum = torch.empty_like(tile_max)
    mod._tile_probs_kernel[(head_blocks, splits1, batch)](
        q, key_pages, block_table, lengths, group_kv, group_heads, probs, tile_max, tile_sum,
        float(scale) * mod.LOG2E, splits1, num_keys,
        q.stride(0), q.stride(1),
        key_pages.stride(0), key_pages.stride(1), key_pages.stride(2),
        block_table.stride(0),
        probs.stride(0), probs.stride(1), tile_max.stride(0), tile_max.stride(1),
        DK=dk, BLOCK_A=block_a, BLOCK_T=max(16, block_t), PAGE_SIZE=page_size, BLOCK_N=block_n, BLOCK_H=block_h,
        UPCAST=upcast, PAGES_AHEAD=cfg.pages_ahead is not False,
        num_warps=launch["probs_warps"], num_stages=launch["probs_stages"],
    )


    def values(part_out, part_lse, splits):
        final = splits == 1
        mod._tile_values_kernel[(head_blocks * parts, splits, batch)](
            probs, tile_max, tile_sum, key_pages, block_table, lengths, group_kv, group_heads, part_out, part_lse,
            splits, num_keys,
            probs.stride(0), probs.stride(1), tile_max.stride(0), tile_max.stride(1),
            key_pages.stride(0), key_pages.stride(1), key_pages.stride(2),
            block_table.stride(0),
            part_out.stride(0), part_out.stride(1), 0 if final else part_out.stride(2),
            part_lse.stride(0), part_lse.stride(1), 0 if final else part_lse.stride(2),
            DV=dv, BLOCK_DV=launch["block_dv"], DV_PARTS=parts, PAGE_SIZE=page_size, BLOCK_N=block_n,
            BLOCK_H=block_h, FINAL=final, UPCAST=upcast, PAGES_AHEAD=cfg.pages_ahead is not False,
            num_warps=launch["values_warps"], num_stages=launch["values_stages"],
        )

    if splits2 == 1:
        values(out, lse, 1)
        return out, lse
    mid_out = torch.empty(batch, num_q_heads, splits2, dv, dtype=torch.float32, device=device)
    mid_lse = torch.empty(batch, num_q_heads, splits2, dtype=torch.float32, device=device)
    values(mid_out, mid_lse, splits2)
    _launch_merge(kernel_module("_triton_decode"), mid_out.permute(2, 0, 1, 3), mid_lse.permute(2, 0, 1), out, lse,
                  lse_in_log2=True)
    return out, lse
