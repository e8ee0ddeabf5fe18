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
at zero (see `split_merge.merge_counters`; two fused calls at once on two streams of one device would
share it). The fused merge also falls back to the second kernel when one program would read too much.

The launch configuration (tiles, warps, stages, splits) is chosen in decode_launch.py, the query-head
blocks in head_groups.py, the merge kernel's launch in split_merge.py; an absorbed-MLA call on sm_90
goes to the Gluon kernel (mla_sm90.py). Nothing here imports triton at module import; kernels are
compiled on first use.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from . import interpret_mode, kernel_module, l2_prefetch_request, l2_prefetch_usable, pdl_usable, triton_available
from .decode_launch import DecodeConfig, merge_tiles, resolve_launch, split_kernel_constants
from .head_groups import HeadGroups, as_head_groups
from .split_merge import OUT_DTYPES, launch_merge, merge_counters

__all__ = ["DecodeConfig", "HeadGroups", "check_layout", "check_value_pages", "decode_kernel_usable",
           "paged_decode_attention"]

# Fused merge: the last program of a head block reads all its partials alone, so fuse only while that
# is small (one SM's share of the L2 bandwidth; e.g. GQA 32K keys, 4 heads a block, 66 splits: 135 KB).
FUSED_MERGE_MAX_BYTES = 256 * 1024


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
    mod = kernel_module("_triton_decode")
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
    if out_dtype not in OUT_DTYPES or (out is not None and out.dtype != out_dtype):
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
    if takes_sm90_mla(cfg, q, key_pages, dv, values_are_keys):
        from . import mla_sm90

        group_kv, group_heads = groups.tables(mla_sm90.BLOCK_H, device)
        splits = mla_sm90.choose_splits(batch, groups, max_length, device, cfg.num_splits)
        mla_sm90.launch(q, key_pages, block_table, lengths, scale, group_kv, group_heads, splits, out, lse,
                        q_by_tma=mla_sm90.Q_BY_TMA and groups.whole_runs(mla_sm90.BLOCK_H),
                        staged_store=mla_sm90.STAGED_STORE, fused_merge=mla_sm90.FUSED_MERGE,
                        even_splits=mla_sm90.EVEN_SPLITS)
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
    merge = merge_tiles(block_h, groups.max_group, block_dv, num_warps)
    merge_bytes = num_splits * merge[0] * dv * 4  # what the last program of a head block reads
    counters = None
    if cfg.fuse_merge and merge_bytes <= FUSED_MERGE_MAX_BYTES and dv_parts == 1:  # one counter per head block
        counters = merge_counters(device, batch * head_blocks)
    if counters is not None:
        split_kernel(mid_out, mid_lse, num_splits, counters=counters, merge=merge)
        return out, lse

    split_kernel(mid_out, mid_lse, num_splits)
    # a hint: dropped where bulk L2 prefetches do not compile
    prefetch = l2_prefetch_request(*prefetch) if prefetch is not None and l2_prefetch_usable(device) else None
    launch_merge(mid_out.permute(2, 0, 1, 3), mid_lse.permute(2, 0, 1), out, lse, lse_in_log2=True,
                  pdl=pdl, prefetch=prefetch)
    return out, lse


def takes_sm90_mla(cfg: DecodeConfig, q: torch.Tensor, key_pages: torch.Tensor, dv: int, values_are_keys: bool) -> bool:
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
