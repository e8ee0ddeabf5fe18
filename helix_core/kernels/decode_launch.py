"""The split-KV decode kernel's launch configuration: tile sizes, warps, stages and the number of KV splits
for a call's head widths, query-group size, batch and context length, from defaults measured on an H200
(each choice says where its numbers come from) or a caller's DecodeConfig; and the compile-time constants
that the launcher (decode_attention.py) and the sm_90 compile reports (sm90_report.py) build the kernel with.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from . import next_pow2, sm_count
from .head_groups import HeadGroups


@dataclass(frozen=True)
class DecodeConfig:
    block_n: int | None = None  # keys per tile
    block_h: int | None = None  # query heads per program (>= 16: tensor-core minimum)
    num_warps: int | None = None
    num_stages: int | None = None
    num_splits: int | None = None  # force the number of KV splits (else chosen from length and SMs)
    # values split over this many programs (1 or 2; 2 only where the values are the keys' first Dv dims,
    # Dv a power of two, as in MLA): each holds half the accumulator and recomputes the scores
    dv_parts: int | None = None
    # merge the splits in the split kernel's last program (one launch, not two). Off by default: on an
    # H200 (GQA 32K keys, batch 1, CUDA graph) it took 48.9 us against 46.5 us for the separate merge
    # kernel, whose B x Hq programs merge in parallel where the fused one merges a head block serially
    fuse_merge: bool = False
    # launch the split merge as a programmatic dependent of the split kernel (PDL: sm_90+, Triton with
    # griddepcontrol), so its launch overlaps the split kernel's end. None: where supported, except for the
    # MLA-shaped launches. H200 (CUDA graph, 2026-12-03): GQA batch 1 x 32K 43.9 against 44.8 us, x 128K
    # 133.9 against 134.6, 8 x 64K a tie; MLA 128 heads 1 x 32K 66.4 against 62.6 us (its one wave of
    # 216 KB programs leaves no room for the merge's programs early), 4 x 128K a tie
    pdl: bool | None = None
    # read a tile's block-table entries an iteration ahead, so its K/V loads depend on no load of their own
    # iteration and Triton can multi-buffer them. None: on for GQA-sized heads (measured faster), off for
    # MLA (compute-bound; not measured)
    pages_ahead: bool | None = None
    # pass each tile's probabilities P and rescale factors through a per-program scratch in memory (L2)
    # instead of registers, so Triton spreads the score dot's warps over the keys and a 64-head MLA block
    # on 8 warps computes each score once (in registers, all warps stack along the heads and both
    # warpgroups compute the same scores). Costs a store, a CTA barrier and a load per tile; 16-bit math only.
    # None: on for MLA's 64-head blocks at long context (TP-sharded MLA), off elsewhere
    probs_via_memory: bool | None = None
    # absorbed MLA (576 / 512, 16-bit) on sm_90: the Gluon kernel with two warpgroups in different roles
    # (kernels/_gluon_mla.py) instead of the Triton one. None: wherever it can run, unless a field above that
    # only the Triton kernel has (tile, warps, stages, value parts, P through memory) is set; True: required
    # (an error where it cannot run, or beside such a field); False: the Triton kernel. Of the fields above it
    # takes num_splits; its splits are merged by the separate merge kernel, without PDL (fuse_merge / pdl are
    # the Triton kernel's).
    # H200, 128 heads, 4 x 512K keys: 978 against 2595 us (2026-12-04, third session)
    sm90_mla: bool | None = None

    def triton_tile_set(self) -> bool:
        """A field that only the Triton kernel's launch has is set."""
        return any(v is not None for v in (self.block_n, self.block_h, self.num_warps, self.num_stages,
                                           self.dv_parts, self.probs_via_memory))


OUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

MAX_SPLITS = 256
# from here MLA with 64 heads a latent takes 64-head blocks (more heads: 128-head blocks with the values in
# two parts at every length), at most one program per SM (one wave); each split writes a
# [heads, 512] fp32 partial that the merge reads back, so many short splits cost more than they give.
# H200 (2026-12-03, docs/benchmarks.md), 64-head blocks in one part: 1 x 16K 45.4 us against 63.3 for
# 16-head blocks (shorter contexts not measured), 1 x 32K 80.3 against 151.9 us with 4 programs per
# SM; since 128-head blocks with the values in two parts: 36.6 / 62.5 / 184.1 / 674.5 us at 1 x 16K,
# 1 x 32K, 1 x 128K, 4 x 128K against 44.5 / 79.3 / 246.8 / 922.1 us
LONG_MLA_KEYS = 16384
MIN_TILES_PER_SPLIT = 4  # fewer keys than this per split and the merge overhead dominates


def choose_num_splits(batch: int, head_blocks: int, max_length: int, block_n: int, sm_count: int,
                      waves: int = 4) -> int:
    """Enough programs for ~`waves` programs per SM, without splits shorter than a few tiles. Several
    waves round up (a partial last wave is a small share); one or two round down: configs sized so that
    that many programs are resident on an SM at once, all programs in one go (a second, nearly idle wave
    of long programs would double the time)."""
    programs = max(1, batch * head_blocks)
    want = max(1, waves * sm_count // programs) if waves <= 2 else -(-waves * sm_count // programs)
    tiles = -(-max(1, max_length) // block_n)
    most = max(1, tiles // MIN_TILES_PER_SPLIT)
    return int(max(1, min(want, most, MAX_SPLITS)))


# fp32 partial-output elements per merge load (heads x splits x Dv), per warp: 32 a thread keeps the
# merge loop free of spills on sm_90 (Triton 3.6: GQA 4-32 heads a block x 128); LSE elements per load
MERGE_TILE_PER_WARP = 1024
MERGE_LSE_TILE = 2048


def merge_tiles(block_h: int, max_group: int, block_dv: int, num_warps: int) -> tuple[int, int, int]:
    """(MERGE_H, MERGE_S, MERGE_LS): heads per merge tile (all heads of a block), splits per output
    tile and per LSE tile. Independent of num_splits, so the split kernel compiles once per shape."""
    merge_h = min(block_h, next_pow2(max_group))
    merge_s = max(1, MERGE_TILE_PER_WARP * num_warps // (merge_h * block_dv))  # powers of two
    merge_ls = max(2, MERGE_LSE_TILE // merge_h)
    return merge_h, merge_s, merge_ls


def _tile_widths(dk: int, dv: int) -> tuple[int, int, int]:
    """(head part, tail, value) tile widths: keys are read as [0, block_a) (also the value tile when
    values are keys) and, when wider than the values (MLA's 512 + 64), a tail [block_a, dk); 0: none."""
    block_a = max(16, next_pow2(min(dk, dv)))
    block_t = max(16, next_pow2(dk - block_a)) if dk > block_a else 0
    return block_a, block_t, max(16, next_pow2(dv))


def _value_parts_fit(values_are_keys: bool, dv: int) -> bool:
    """Whether the values can be split into two parts (dv_parts=2): they are the keys' first Dv dims and
    Dv is a power of two >= 32, so each part is a whole tile."""
    return values_are_keys and dv >= 32 and dv & (dv - 1) == 0


def _mla_tiles(dk_a: int, dk_t: int, dv: int, max_group: int, fp32_math: bool, two_parts: bool) -> str | None:
    """The absorbed-MLA launch family of a shape (16-bit math, 576 + 512-wide heads, many heads a latent):
    "parts": more than 64 heads a latent with the values as keys: 128-head blocks, the values in two
      parts, at every length (H200: 16 x 8K 187 us against 435 for 16-head blocks, 1 x 4K a tie);
    "wide": 64 heads (TP-sharded MLA) or separate values: 64-head blocks from LONG_MLA_KEYS on (two
      parts of 64 heads lost: 1109-1615 against 922 us at 4 x 128K); None: not MLA-shaped."""
    if fp32_math or dk_a + dk_t + dv < 768 or max_group < 64:
        return None
    if max_group > 64 and two_parts:
        return "parts"
    return "wide"


def long_context_keys(key_dim: int, value_dim: int, max_group: int, dtype: torch.dtype,
                      values_are_keys: bool = True) -> int | None:
    """For callers that capture the kernel's launch (CUDA graphs): the key count from which the default
    launch config changes, so they can keep one graph for each side of it; None: no such count."""
    block_a, block_t, block_dv = _tile_widths(key_dim, value_dim)
    tiles = _mla_tiles(block_a, block_t, block_dv, max_group, dtype == torch.float32,
                       _value_parts_fit(values_are_keys, value_dim))
    return LONG_MLA_KEYS if tiles == "wide" else None


def default_block_h(max_group: int) -> int:
    """Query heads a program takes: the largest query group, padded to a power of two, in [16, 64]
    (16: the tensor-core minimum; 64: one wgmma M tile)."""
    return min(max(16, next_pow2(max_group)), 64)


def _default_config(dk_a: int, dk_t: int, dv: int, max_group: int, fp32_math: bool) -> tuple[int, int, int, int]:
    """(block_n, block_h, num_warps, num_stages) for head-part width dk_a, tail width dk_t, value width dv.

    Chosen from sm_90 ptxas reports (registers, no spills) with Triton 3.6/3.9; the benchmark's
    sweep times the alternatives. fp32_math: fp32 cache or query (no 16-bit tensor-core operands).
    """
    width = dk_a + dk_t + dv
    block_h = default_block_h(max_group)
    if fp32_math:
        if width >= 768:
            return 16, 16, 8, 2
        return (32 if width <= 256 else 16), min(block_h, 32), 8, 2
    if width >= 768:  # MLA-sized (576 + 512): 16 heads a block; on an H200 (32K keys, batch 1) 111 us
        return 32, 16, 4, 2  # against 161 us for 32 heads and 8 warps, 152-178 us for 64 heads
    if width >= 384:
        return 32, block_h, 4, 2
    # three stages with the block table read a tile ahead (see resolve_launch): two K/V buffers, 72 KB
    return 64, block_h, 4, 3


class Launch(NamedTuple):
    block_n: int
    block_h: int
    num_warps: int
    num_stages: int
    num_splits: int
    dv_parts: int
    pages_ahead: bool
    pdl: bool  # wanted for the split merge (the launcher also needs a device and Triton that support it)
    probs_via_memory: bool = False


def resolve_launch(dk: int, dv: int, groups: HeadGroups, batch: int, max_length: int, fp32_math: bool,
                   cfg: DecodeConfig, device: torch.device, values_are_keys: bool = True) -> Launch:
    """The launch config of a call: cfg's fields where set, else the defaults for these head widths,
    group size and (for MLA) context length."""
    block_a, block_t, block_dv = _tile_widths(dk, dv)
    d_bn, d_bh, d_warps, d_stages = _default_config(block_a, block_t, block_dv, groups.max_group, fp32_math)
    d_parts = 1
    two_parts = _value_parts_fit(values_are_keys, dv)
    tiles = _mla_tiles(block_a, block_t, block_dv, groups.max_group, fp32_math, two_parts)
    waves, d_ahead, d_via_memory = 4, False, False
    wide = block_a + block_t + block_dv >= 384
    if tiles is None and not fp32_math and not wide:
        # GQA-sized heads: a tile's K/V loads wait on its block-table load unless that is read a tile
        # earlier; then Triton multi-buffers them (sm_90: 72 KB at 64 keys x 3 stages against 39 KB,
        # one buffer, at any stage count without). Two programs per SM, all resident at once. H200,
        # batch 1, CUDA graph: 41.1 / 129.4 / 477.7 us at 32K / 128K / 512K keys, 8 x 64K 477.2 us,
        # against 44.0 / 133.9 / 484.9 / 495.7 us with two stages, four programs a SM (SDPA: 42.7,
        # 128.5, 469.3, 472.2 us in the same run)
        d_ahead, waves = True, 2
    elif tiles is None and not fp32_math and not values_are_keys:
        # wide MHA heads (16 x 512, fp16, 8 x 5000 / 8 x 2500 keys): three stages and two programs a SM,
        # 317.2 / 169.0 us against 366.6 / 195.9 us with two stages and four; the block table read
        # ahead took 326.5 / 173.7 us in the same call, so it stays in-tile here
        waves, d_stages = 2, 3
    elif tiles == "parts":
        # 128 heads a block (a wgmma M tile per warpgroup) and the values in two parts, so each program's
        # accumulator is 128 x 256 over 8 warps (235 registers on sm_90, no spills; one 64 x 512 part:
        # 254, and both warpgroups computed the same scores); one wave (see LONG_MLA_KEYS)
        d_bn, d_bh, d_warps, d_stages, d_parts = 32, 128, 8, 2, 2
        waves = 1
    elif tiles == "wide" and max_length >= LONG_MLA_KEYS:  # 64 heads a block in one wave
        d_bn, d_bh, d_warps, d_stages = 32, 64, 8, 2
        waves = 1
        if values_are_keys:
            # P through memory, so the two warpgroups split the scores instead of both computing them
            # all; three K buffers (the block table read ahead): 184 KB, 255 registers (Triton 3.6).
            # H200, 64 heads over 4 x 1M keys: 2793 us against 3534 us for P in registers
            d_stages, d_ahead, d_via_memory = 3, True, True
    block_n = cfg.block_n or d_bn
    block_h = cfg.block_h or d_bh
    dv_parts = cfg.dv_parts or d_parts
    if block_n < 16 or block_n & (block_n - 1) or block_h < 16 or block_h & (block_h - 1):
        raise ValueError("block_n and block_h must be powers of two >= 16")
    if dv_parts not in (1, 2):
        raise ValueError(f"dv_parts must be 1 or 2, got {dv_parts}")
    if dv_parts == 2 and not two_parts:
        raise ValueError("dv_parts=2 needs values that are the keys' first Dv dims, Dv a power of two >= 32")
    programs = groups.tables(block_h, device)[0].shape[0] * dv_parts  # per (split, sequence)
    splits = cfg.num_splits or choose_num_splits(batch, programs, max_length, block_n, sm_count(device), waves)
    ahead = d_ahead if cfg.pages_ahead is None else bool(cfg.pages_ahead)
    via_memory = d_via_memory if cfg.probs_via_memory is None else bool(cfg.probs_via_memory)
    if via_memory and fp32_math:
        # the P reads stay in order only because 16-bit values at an odd row pitch are not provably
        # 4-byte aligned (Triton would otherwise issue them a tile early, before P is stored)
        raise ValueError("probs_via_memory needs a 16-bit cache and query (the tensor-core tiles)")
    pdl = tiles is None if cfg.pdl is None else bool(cfg.pdl)  # default: not for the MLA-shaped launches
    return Launch(block_n, block_h, cfg.num_warps or d_warps, cfg.num_stages or d_stages, max(1, int(splits)),
                  dv_parts, ahead, pdl, via_memory)


def split_kernel_constants(dk: int, dv: int, values_are_keys: bool, qk_fp32: bool, dv_parts: int, page_size: int,
                           block_n: int, block_h: int, num_warps: int, num_stages: int, upcast: bool,
                           probs_via_memory: bool = False) -> dict:
    """The split kernel's compile-time arguments and launch options for one resolved config (the launcher
    and `sm90_report` build the same kernel from them)."""
    block_a, block_t, block_dv = _tile_widths(dk, dv)
    if dv_parts == 2:  # each program's own value half is the head part; the other half is read beside it
        block_a = block_dv = dv // 2
        block_t = max(16, next_pow2(dk - dv)) if dk > dv else 0
    if values_are_keys:
        assert block_dv == block_a
    return dict(
        DK=dk, DV=dv, BLOCK_A=block_a, BLOCK_T=block_t or 16, HAS_TAIL=block_t > 0, BLOCK_DV=block_dv,
        VALUES_ARE_KEYS=values_are_keys, QK_FP32=qk_fp32, DV_PARTS=dv_parts, PAGE_SIZE=page_size, BLOCK_N=block_n,
        BLOCK_H=block_h, UPCAST=upcast, P_VIA_MEMORY=probs_via_memory, num_warps=num_warps, num_stages=num_stages,
    )  # BLOCK_T 16 without a tail: the kernel's tail tile is then never read
