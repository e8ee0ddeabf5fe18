"""Paged split-KV ("flash-decoding") attention for decode steps: one new query per sequence.

    out, lse = paged_decode_attention(q, key_pages, value_pages, block_table, lengths, scale,
                                      kv_head_of_q)

q [B, Hq, Dk]; key_pages [P, page_size, Hkv, Dk]; value_pages [P, page_size, Hkv, Dv] or None
(MLA: values are keys[..., :value_dim]); block_table [B, max_pages] int32 page ids of each
sequence's local keys in order; lengths [B] int32 local key counts (0 allowed). Returns out
[B, Hq, Dv] fp32 and lse [B, Hq] fp32 (-inf, out 0 for a sequence with no keys): exactly
helix_core.attention.partial_attention over the same keys (every cached key of a sequence is
visible to its one new query, so no mask).

Work split: stage 1 runs (head blocks x splits x batch) programs. A head block is up to BLOCK_H
query heads sharing one KV head, so a program reads each KV byte once for all of them. The
number of splits is chosen from the longest sequence and the SM count so that a batch of one
short sequence still fills the GPU. The splits are merged by their LSE in a second small kernel,
or (DecodeConfig.fuse_merge) inside the same launch: the last program of each (sequence, head
block) to finish merges them, found with a per-device int32 counter buffer that the kernel leaves
at zero (see `_merge_counters`; two fused calls at once on two streams of one device would share
it). The fused merge also falls back to the second kernel when one program would read too much.

Nothing here imports triton at module import; kernels are compiled on first use.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from . import (interpret_mode, kernel_module, l2_prefetch_request, l2_prefetch_usable, pdl_usable, sm_count,
               triton_available)


# ---------------------------------------------------------------------------------------------
# kernel module (lazy; rebuilt if TRITON_INTERPRET changed since it was imported)
# ---------------------------------------------------------------------------------------------
def _kernels():
    return kernel_module("_triton_decode")


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


# ---------------------------------------------------------------------------------------------
# query-head grouping
# ---------------------------------------------------------------------------------------------
class HeadGroups:
    """Which query heads read which KV head, packed in blocks of <= BLOCK_H heads.

    Build it once (from kv_head_of_q: int group size, list, or tensor) and pass it on every call:
    the kernel's tables are cached per (BLOCK_H, device) and never need a host sync afterwards.
    """

    def __init__(self, kv_head_of_q: Sequence[int] | torch.Tensor, num_q_heads: int | None = None):
        if isinstance(kv_head_of_q, torch.Tensor):
            mapping = [int(x) for x in kv_head_of_q.detach().cpu().tolist()]
        else:
            mapping = [int(x) for x in kv_head_of_q]
        if num_q_heads is not None and len(mapping) != num_q_heads:
            raise ValueError(f"kv_head_of_q has {len(mapping)} entries for {num_q_heads} query heads")
        if any(h < 0 for h in mapping):
            raise ValueError("kv_head_of_q has negative entries")
        self.mapping = mapping
        self.num_q_heads = len(mapping)
        heads_of: dict[int, list[int]] = {}
        for q_head, kv_head in enumerate(mapping):
            heads_of.setdefault(kv_head, []).append(q_head)
        self.heads_of_kv = heads_of
        self.max_group = max((len(v) for v in heads_of.values()), default=1)
        self.max_kv_head = max(mapping, default=0)
        self._tables: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_group_size(cls, num_q_heads: int, group: int) -> HeadGroups:
        return cls([h // group for h in range(num_q_heads)])

    def whole_runs(self, block_h: int) -> bool:
        """Every block of `block_h` query heads (as `tables` lays them out) is that many consecutive heads, so a
        block's query rows can be loaded as one box."""
        for q_heads in self.heads_of_kv.values():
            for i in range(0, len(q_heads), block_h):
                block = q_heads[i:i + block_h]
                if block != list(range(block[0], block[0] + block_h)):  # scattered, or a short (padded) block
                    return False
        return True

    def tables(self, block_h: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(kv head of each head block [G] int32, query heads of each block [G, block_h] int32, -1 pad)."""
        key = (block_h, str(device))
        hit = self._tables.get(key)
        if hit is None:
            kv, rows = [], []
            for kv_head, q_heads in self.heads_of_kv.items():
                for i in range(0, len(q_heads), block_h):
                    chunk = q_heads[i:i + block_h]
                    kv.append(kv_head)
                    rows.append(chunk + [-1] * (block_h - len(chunk)))
            hit = (torch.tensor(kv, dtype=torch.int32).to(device),
                   torch.tensor(rows, dtype=torch.int32).reshape(len(kv), block_h).to(device))
            self._tables[key] = hit
        return hit


_GROUPS_CACHE: OrderedDict[tuple, tuple[HeadGroups, torch.Tensor]] = OrderedDict()


def as_head_groups(kv_head_of_q, num_q_heads: int) -> HeadGroups:
    """int (GQA group size) | sequence | tensor | HeadGroups -> HeadGroups (tensors cached by identity
    and version, so only the first call with a given CUDA tensor syncs)."""
    if isinstance(kv_head_of_q, HeadGroups):
        return kv_head_of_q
    if kv_head_of_q is None:
        return HeadGroups(list(range(num_q_heads)))
    if isinstance(kv_head_of_q, int):
        return HeadGroups.from_group_size(num_q_heads, kv_head_of_q)
    if isinstance(kv_head_of_q, torch.Tensor):
        key = (kv_head_of_q.data_ptr(), kv_head_of_q._version, tuple(kv_head_of_q.shape), str(kv_head_of_q.device))
        hit = _GROUPS_CACHE.get(key)
        if hit is not None and hit[1] is kv_head_of_q:
            _GROUPS_CACHE.move_to_end(key)
            return hit[0]
        groups = HeadGroups(kv_head_of_q, num_q_heads)
        _GROUPS_CACHE[key] = (groups, kv_head_of_q)  # holds the tensor: its address is not reused
        while len(_GROUPS_CACHE) > 32:
            _GROUPS_CACHE.popitem(last=False)
        return groups
    return HeadGroups(kv_head_of_q, num_q_heads)


# ---------------------------------------------------------------------------------------------
# launch configuration
# ---------------------------------------------------------------------------------------------
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


_OUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

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


# Fused merge: the last program of a head block reads all its partials alone, so fuse only while that
# is small (one SM's share of the L2 bandwidth; e.g. GQA 32K keys, 4 heads a block, 66 splits: 135 KB).
FUSED_MERGE_MAX_BYTES = 256 * 1024
# fp32 partial-output elements per merge load (heads x splits x Dv), per warp: 32 a thread keeps the
# merge loop free of spills on sm_90 (Triton 3.6: GQA 4-32 heads a block x 128); LSE elements per load
MERGE_TILE_PER_WARP = 1024
MERGE_LSE_TILE = 2048
# partial-output elements (parts x Dv) the merge kernel reads per step: 32 a thread at Dv 128 (4 warps)
MERGE_KERNEL_TILE = 4096
COUNTERS_MIN = 1 << 15  # counter slots allocated at least (batch x head blocks), 128 KB

_COUNTERS: dict[str, torch.Tensor] = {}
_RETIRED_COUNTERS: list[torch.Tensor] = []


def _capturing(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def _merge_counters(device: torch.device, size: int) -> torch.Tensor | None:
    """The device's zeroed int32 counters for the fused merge, >= size slots; None while a CUDA graph
    is being captured and the buffer would have to grow (the caller then merges in a second launch).

    Kernels leave every counter at 0, so one buffer serves all calls and graph replays. It is never
    freed: a grown buffer replaces it for new calls, the old one stays alive for the graphs that
    captured its address.
    """
    key = str(device)
    buf = _COUNTERS.get(key)
    if buf is not None and buf.numel() >= size:
        return buf
    if _capturing(device):
        return None  # an allocation now would live in the graph's private pool
    if buf is not None:
        _RETIRED_COUNTERS.append(buf)
    buf = torch.zeros(max(COUNTERS_MIN, _next_pow2(size)), dtype=torch.int32, device=device)
    _COUNTERS[key] = buf
    return buf


def _merge_tiles(block_h: int, max_group: int, block_dv: int, num_warps: int) -> tuple[int, int, int]:
    """(MERGE_H, MERGE_S, MERGE_LS): heads per merge tile (all heads of a block), splits per output
    tile and per LSE tile. Independent of num_splits, so the split kernel compiles once per shape."""
    merge_h = min(block_h, _next_pow2(max_group))
    merge_s = max(1, MERGE_TILE_PER_WARP * num_warps // (merge_h * block_dv))  # powers of two
    merge_ls = max(2, MERGE_LSE_TILE // merge_h)
    return merge_h, merge_s, merge_ls


def _tile_widths(dk: int, dv: int) -> tuple[int, int, int]:
    """(head part, tail, value) tile widths: keys are read as [0, block_a) (also the value tile when
    values are keys) and, when wider than the values (MLA's 512 + 64), a tail [block_a, dk); 0: none."""
    block_a = max(16, _next_pow2(min(dk, dv)))
    block_t = max(16, _next_pow2(dk - block_a)) if dk > block_a else 0
    return block_a, block_t, max(16, _next_pow2(dv))


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
    return min(max(16, _next_pow2(max_group)), 64)


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
        block_t = max(16, _next_pow2(dk - dv)) if dk > dv else 0
    if values_are_keys:
        assert block_dv == block_a
    return dict(
        DK=dk, DV=dv, BLOCK_A=block_a, BLOCK_T=block_t or 16, HAS_TAIL=block_t > 0, BLOCK_DV=block_dv,
        VALUES_ARE_KEYS=values_are_keys, QK_FP32=qk_fp32, DV_PARTS=dv_parts, PAGE_SIZE=page_size, BLOCK_N=block_n,
        BLOCK_H=block_h, UPCAST=upcast, P_VIA_MEMORY=probs_via_memory, num_warps=num_warps, num_stages=num_stages,
    )  # BLOCK_T 16 without a tail: the kernel's tail tile is then never read


# ---------------------------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------------------------
def check_value_pages(key_pages: torch.Tensor, value_pages: torch.Tensor, value_dim: int | None) -> int:
    """The value dim of separate value pages, checked against the key pages and a given value_dim."""
    if value_pages.shape[:3] != key_pages.shape[:3]:
        raise ValueError(f"value pages {tuple(value_pages.shape)} do not match key pages {tuple(key_pages.shape)}")
    dv = value_pages.shape[-1]
    if value_dim is not None and value_dim != dv:
        raise ValueError(f"value_dim {value_dim} != value pages dim {dv}")
    return dv


def check_layout(q, key_pages, value_pages, block_table, lengths) -> None:
    """Unit last strides, and a block table and lengths with one row per query row."""
    batch = q.shape[0]
    if q.stride(-1) != 1 or key_pages.stride(-1) != 1 or value_pages.stride(-1) != 1:
        raise ValueError("q, key_pages and value_pages need a unit stride in their last dim")
    if block_table.dim() != 2 or block_table.shape[0] != batch:
        raise ValueError(f"block_table must be [B={batch}, pages], got {tuple(block_table.shape)}")
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must be [B={batch}], got {tuple(lengths.shape)}")


def decode_kernel_usable(q: torch.Tensor) -> bool:
    """True where the engine should take the Triton path for this query: a CUDA tensor, Triton
    importable, not under the CPU interpreter, not disabled by HELIX_DISABLE_TRITON_DECODE=1."""
    if os.environ.get("HELIX_DISABLE_TRITON_DECODE", "0") not in ("", "0"):
        return False
    return bool(q.is_cuda) and not interpret_mode() and triton_available()


def paged_decode_attention(
    q: torch.Tensor,
    key_pages: torch.Tensor,
    value_pages: torch.Tensor | None,
    block_table: torch.Tensor,
    lengths: torch.Tensor,
    scale: float,
    kv_head_of_q: int | Sequence[int] | torch.Tensor | HeadGroups | None = None,
    *,
    value_dim: int | None = None,
    max_length: int | None = None,
    config: DecodeConfig | None = None,
    out: torch.Tensor | None = None,
    lse: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
    prefetch: tuple[torch.Tensor, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode attention of one query per sequence over its paged local keys -> (out [B,Hq,Dv], lse [B,Hq]).

    kv_head_of_q: GQA group size (int: head h reads KV head h // group), a [Hq] mapping (list or
      tensor), or a prebuilt HeadGroups (preferred in a serving loop: no host sync). None: Hq == Hkv.
    value_pages None: values are key_pages[..., :value_dim] (MLA); value_dim defaults to Dk.
    max_length: host-side upper bound of `lengths` (e.g. from the cache metadata); picks the number
      of splits without a device sync. Defaults to block_table.shape[1] * page_size.
    out/lse: optional preallocated outputs (any strides with unit last-dim stride for out). lse is
      fp32; out is fp32, or bf16/fp16 to get the attention already cast (the math stays fp32).
    out_dtype: dtype of the returned out when `out` is not given (default fp32).
    prefetch: (contiguous tensor, bytes): where the split merge runs as its own kernel on an sm_90+ GPU, it ends
      by asking for the tensor's first bytes in L2 (for what the step reads after a collective that follows).
    """
    mod = _kernels()
    if q.dim() != 3:
        raise ValueError(f"q must be [B, Hq, Dk], got {tuple(q.shape)}")
    batch, num_q_heads, dk = q.shape
    if key_pages.dim() != 4:
        raise ValueError(f"key_pages must be [P, page_size, Hkv, Dk], got {tuple(key_pages.shape)}")
    _, page_size, num_kv_heads, dk_cache = key_pages.shape
    if dk_cache != dk:
        raise ValueError(f"query dim {dk} != key dim {dk_cache}")
    values_are_keys = value_pages is None
    if values_are_keys:
        dv = dk if value_dim is None else int(value_dim)
        if not 0 < dv <= dk:
            raise ValueError(f"value_dim {dv} must be in (0, {dk}] when values are a view of the keys")
        value_pages = key_pages  # placeholder pointer, never read
    else:
        dv = check_value_pages(key_pages, value_pages, value_dim)
    check_layout(q, key_pages, value_pages, block_table, lengths)
    device = q.device
    if block_table.dtype != torch.int32:
        block_table = block_table.to(torch.int32)
    if block_table.stride(-1) != 1:
        block_table = block_table.contiguous()
    if lengths.dtype != torch.int32 or not lengths.is_contiguous():
        lengths = lengths.to(torch.int32).contiguous()

    groups = as_head_groups(kv_head_of_q, num_q_heads)
    if groups.num_q_heads != num_q_heads:
        raise ValueError(f"head mapping covers {groups.num_q_heads} query heads, q has {num_q_heads}")
    if groups.max_kv_head >= num_kv_heads:
        raise ValueError(f"kv_head_of_q refers to KV head {groups.max_kv_head} of {num_kv_heads}")

    if max_length is None:
        max_length = block_table.shape[1] * page_size
    cfg = config or DecodeConfig()

    if out_dtype is None:
        out_dtype = torch.float32 if out is None else out.dtype
    if out_dtype not in _OUT_DTYPES or (out is not None and out.dtype != out_dtype):
        given = None if out is None else out.dtype
        raise ValueError(f"out must be fp32, bf16 or fp16 (got {out_dtype}, out {given})")
    if out is None:
        out = torch.empty(batch, num_q_heads, dv, dtype=out_dtype, device=device)
    elif out.shape != (batch, num_q_heads, dv) or out.stride(-1) != 1:
        raise ValueError(f"out must be [{batch}, {num_q_heads}, {dv}] with a unit last stride")
    if lse is None:
        lse = torch.empty(batch, num_q_heads, dtype=torch.float32, device=device)
    elif lse.shape != (batch, num_q_heads) or lse.dtype != torch.float32:
        raise ValueError(f"lse must be fp32 [{batch}, {num_q_heads}]")
    if batch == 0 or num_q_heads == 0:
        return out, lse
    if _take_sm90_mla(cfg, q, key_pages, dv, values_are_keys):
        from . import mla_sm90

        group_kv, group_heads = groups.tables(mla_sm90.BLOCK_H, device)
        splits = mla_sm90.choose_splits(batch, groups, max_length, device, cfg.num_splits)
        mla_sm90.launch(q, key_pages, block_table, lengths, scale, group_kv, group_heads, splits, out, lse,
                        q_by_tma=mla_sm90.Q_BY_TMA and groups.whole_runs(mla_sm90.BLOCK_H))
        return out, lse

    qk_fp32 = q.dtype != key_pages.dtype
    fp32_math = qk_fp32 or key_pages.dtype == torch.float32
    block_n, block_h, num_warps, num_stages, num_splits, dv_parts, pages_ahead, want_pdl, probs_via_memory = \
        resolve_launch(dk, dv, groups, batch, max_length, fp32_math, cfg, device, values_are_keys)
    common = split_kernel_constants(dk, dv, values_are_keys, qk_fp32, dv_parts, page_size, block_n, block_h,
                                    num_warps, num_stages, mod.INTERPRET, probs_via_memory)
    block_dv = common["BLOCK_DV"]
    group_kv, group_heads = groups.tables(block_h, device)
    head_blocks = group_kv.shape[0]

    pdl = num_splits > 1 and want_pdl and pdl_usable(device)
    if cfg.pdl and not pdl and num_splits > 1:
        raise ValueError("DecodeConfig(pdl=True) needs compiled Triton with griddepcontrol on an sm_90+ GPU")

    def split_kernel(part_out, part_lse, splits, counters=None, merge=(2, 2, 2)):
        """One launch of the split kernel. One split: part_out/part_lse are the final out/lse. Several:
        it writes the partials [B, Hq, S, ...] and, given the counters, merges them into out/lse."""
        final, fused = splits == 1, counters is not None
        if probs_via_memory:  # per program: two [block_h, block_n + 1] P slots and two [block_h] rescale slots
            programs = head_blocks * dv_parts * splits * batch
            p_scratch = torch.empty(programs * 2 * block_h * (block_n + 1), dtype=value_pages.dtype, device=device)
            a_scratch = torch.empty(programs * 2 * block_h, dtype=torch.float32, device=device)
        else:
            p_scratch = a_scratch = lengths  # placeholders: never touched
        mod._decode_split_kernel[(head_blocks * dv_parts, splits, batch)](
            q, key_pages, value_pages, block_table, lengths, group_kv, group_heads, part_out, part_lse,
            out, lse, counters if fused else lengths,  # placeholders when not fused: never touched
            p_scratch, a_scratch,
            float(scale) * mod.LOG2E, splits,
            q.stride(0), q.stride(1),
            key_pages.stride(0), key_pages.stride(1), key_pages.stride(2),
            value_pages.stride(0), value_pages.stride(1), value_pages.stride(2),
            block_table.stride(0),
            part_out.stride(0), part_out.stride(1), 0 if final else part_out.stride(2),
            part_lse.stride(0), part_lse.stride(1), 0 if final else part_lse.stride(2),
            out.stride(0), out.stride(1), lse.stride(0), lse.stride(1),
            FINAL=final, FUSED=fused, MERGE_H=merge[0], MERGE_S=merge[1], MERGE_LS=merge[2],
            PDL=pdl and not fused, PAGES_AHEAD=pages_ahead, **common,
        )

    if num_splits == 1:
        split_kernel(out, lse, 1)
        return out, lse

    mid_out = torch.empty(batch, num_q_heads, num_splits, dv, dtype=torch.float32, device=device)
    mid_lse = torch.empty(batch, num_q_heads, num_splits, dtype=torch.float32, device=device)
    merge = _merge_tiles(block_h, groups.max_group, block_dv, num_warps)
    merge_bytes = num_splits * merge[0] * dv * 4  # what the last program of a head block reads
    counters = None
    if cfg.fuse_merge and merge_bytes <= FUSED_MERGE_MAX_BYTES and dv_parts == 1:  # one counter per head block
        counters = _merge_counters(device, batch * head_blocks)
    if counters is not None:
        split_kernel(mid_out, mid_lse, num_splits, counters=counters, merge=merge)
        return out, lse

    split_kernel(mid_out, mid_lse, num_splits)
    # a hint: dropped where bulk L2 prefetches do not compile
    prefetch = l2_prefetch_request(*prefetch) if prefetch is not None and l2_prefetch_usable(device) else None
    _launch_merge(mod, mid_out.permute(2, 0, 1, 3), mid_lse.permute(2, 0, 1), out, lse, lse_in_log2=True,
                  pdl=pdl, prefetch=prefetch)
    return out, lse


def _take_sm90_mla(cfg: DecodeConfig, q: torch.Tensor, key_pages: torch.Tensor, dv: int, values_are_keys: bool) -> bool:
    """Whether this call goes to the Gluon MLA kernel (DecodeConfig.sm90_mla)."""
    if cfg.sm90_mla is False or (cfg.sm90_mla is None and cfg.triton_tile_set()):
        return False
    if cfg.sm90_mla and cfg.triton_tile_set():
        raise ValueError("DecodeConfig(sm90_mla=True) takes num_splits only, not the Triton kernel's tile fields "
                         "(block_n, block_h, num_warps, num_stages, dv_parts, probs_via_memory)")
    from . import mla_sm90

    fits = mla_sm90.usable(q, key_pages, dv, values_are_keys)
    if cfg.sm90_mla and not fits:
        raise ValueError("DecodeConfig(sm90_mla=True) needs absorbed MLA (576-dim keys, values their first 512 dims), "
                         "a 16-bit query and cache, an sm_90 GPU and Triton with Gluon")
    return fits


def _launch_merge(mod, part_out: torch.Tensor, part_lse: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
                  lse_in_log2: bool, pdl: bool = False, prefetch: tuple[torch.Tensor, int] | None = None,
                  columns: int | None = None) -> None:
    """LSE-weighted merge of partials part_out [P, R0, R1, D] / part_lse [P, R0, R1] (any strides,
    unit last stride) into out [R0, R1, D] and natural-log lse [R0, R1]: one program per (R0, R1) and block
    of `columns` values.
    pdl: launched as a programmatic dependent of the kernel just before it (the split kernel, which
    lets it start early); it waits for that kernel's writes before reading.
    prefetch: (tensor, bytes) whose first bytes the kernel asks for in L2 as it ends (sm_90+).
    columns: at most this many of a row's values a program (a power of two; default the whole row): more
    programs, each with fewer bytes to read, for few wide rows (MLA's 512 values at batch 1)."""
    parts, rows0, rows1, dim = part_out.shape
    next_tensor, prefetch_bytes = prefetch if prefetch is not None else (out, 0)
    consts = merge_kernel_constants(dim, parts, lse_in_log2, pdl, prefetch is not None, columns)
    mod._merge_kernel[(rows0, rows1, -(-dim // consts["BLOCK_DV"]))](
        part_out, part_lse, out, lse, parts,
        part_out.stride(0), part_out.stride(1), part_out.stride(2),
        part_lse.stride(0), part_lse.stride(1), part_lse.stride(2),
        out.stride(0), out.stride(1),
        lse.stride(0), lse.stride(1), next_tensor, prefetch_bytes, **consts,
    )


def merge_kernel_constants(dim: int, parts: int, lse_in_log2: bool, pdl: bool = False, prefetch: bool = False,
                           columns: int | None = None) -> dict:
    """The merge kernel's compile-time arguments and launch options for `parts` partials of `dim` values
    (pdl: a programmatic dependent launch; prefetch: the variant that ends with an L2 prefetch; Triton
    compiles each variant apart)."""
    block_dv = max(16, _next_pow2(dim) if columns is None else min(_next_pow2(dim), _next_pow2(columns)))
    block_p = max(2, _next_pow2(parts))
    num_warps = 4 if block_dv <= 256 else 8
    return dict(DV=dim, BLOCK_DV=block_dv, BLOCK_P=block_p, BLOCK_S=min(block_p, max(1, MERGE_KERNEL_TILE // block_dv)),
                LSE_IN_LOG2=lse_in_log2, PDL=pdl, PREFETCH=prefetch, NUM_WARPS=num_warps, num_warps=num_warps,
                launch_pdl=pdl)


def merge_partials(outs: torch.Tensor, lses: torch.Tensor,
                   out_dtype: torch.dtype = torch.float32, columns: int | None = None) -> torch.Tensor:
    """Triton twin of helix_core.attention.merge_partials for the KVP merge.

    outs [P, T, H, D] (any strides, unit last stride: e.g. a slice of the packed exchange buffer),
    lses [P, T, H] natural-log LSE (-inf: no keys) -> exact attention [T, H, D], fp32 math, stored
    as out_dtype (the model's dtype saves the layer a cast kernel); columns: `_launch_merge`'s.
    Falls back to the torch version for other ranks of tensor or off-GPU without the interpreter.
    """
    if out_dtype not in _OUT_DTYPES:
        raise ValueError(f"out_dtype must be one of {_OUT_DTYPES}, got {out_dtype}")
    if outs.dim() != 4 or lses.dim() != 3 or not (outs.is_cuda or interpret_mode()) or not triton_available():
        from ..attention import merge_partials as torch_merge
        return torch_merge(outs, lses).to(out_dtype)
    mod = _kernels()
    if outs.stride(-1) != 1:
        outs = outs.contiguous()
    parts, tokens, heads, dim = outs.shape
    result = torch.empty(tokens, heads, dim, dtype=out_dtype, device=outs.device)
    lse = torch.empty(tokens, heads, dtype=torch.float32, device=outs.device)
    if parts == 0 or tokens == 0 or heads == 0:
        return result.zero_()
    _launch_merge(mod, outs, lses, result, lse, lse_in_log2=False, columns=columns)
    return result


# ---------------------------------------------------------------------------------------------
# PagedKVCache glue
# ---------------------------------------------------------------------------------------------
_TABLE_CACHE: OrderedDict[tuple, tuple] = OrderedDict()
_TABLE_CACHE_SIZE = 16


def build_block_table(cache, seq_ids: Sequence[int], device: torch.device | str | None = None,
                      ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(block_table [B, max_pages] int32, lengths [B] int32, max_length) of this rank's pages.

    Memoized on the sequences' state (shard object identity, page count, length), so the layers
    of one step (and the HOP-B pieces) share one host->device copy. Pages of a sequence are only
    ever appended, and a freed-and-readded id gets a new shard object (held by the memo entry,
    so its identity cannot be reused while the entry lives).
    """
    device = torch.device(device) if device is not None else cache.keys.device
    shards = [cache.sequences[s] for s in seq_ids]
    key = (id(cache), str(device), tuple((id(sh), len(sh.pages), sh.length) for sh in shards))
    hit = _TABLE_CACHE.get(key)
    if hit is not None:
        _TABLE_CACHE.move_to_end(key)
        return hit[0], hit[1], hit[2]
    local = [cache.local_length(s) for s in seq_ids]
    page_size = cache.page_size
    counts = [-(-n // page_size) for n in local]
    width = max(1, max(counts, default=0))
    table = torch.zeros(len(seq_ids), width, dtype=torch.int32)
    for row, (sh, count) in enumerate(zip(shards, counts)):
        if count:
            table[row, :count] = torch.tensor(sh.pages[:count], dtype=torch.int32)
    lens = torch.tensor(local, dtype=torch.int32)
    max_length = max(local, default=0)
    if device.type == "cuda":
        table = table.pin_memory().to(device, non_blocking=True)
        lens = lens.pin_memory().to(device, non_blocking=True)
    else:
        table, lens = table.to(device), lens.to(device)
    _TABLE_CACHE[key] = (table, lens, max_length, shards)
    while len(_TABLE_CACHE) > _TABLE_CACHE_SIZE:
        _TABLE_CACHE.popitem(last=False)
    return table, lens, max_length


def decode_attention_for_step(cache, layer: int, seq_ids: Sequence[int], q: torch.Tensor, scale: float,
                              kv_head_of_q, value_dim: int | None = None,
                              config: DecodeConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop-in for ShardedAttention._local_attention on a decode piece (one token per sequence).

    q [B, Hq, Dk] (row i is seq_ids[i]'s new token, already written to the cache). Returns
    (out [B, Hq, Dv] fp32, lse [B, Hq] fp32) as partial_attention would over each sequence's local keys.
    """
    table, lens, max_length = build_block_table(cache, seq_ids, q.device)
    values = None if cache.values is None else cache.values[layer]
    if values is None and value_dim is None:
        value_dim = cache.keys.shape[-1]
    return paged_decode_attention(q, cache.keys[layer], values, table, lens, scale, kv_head_of_q,
                                  value_dim=value_dim if values is None else None, max_length=max_length,
                                  config=config)
