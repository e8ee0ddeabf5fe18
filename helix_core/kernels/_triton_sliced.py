"""Triton kernels of paged decode attention over a slice of every head's dimension (the headslice
plan). Imported lazily (needs triton); same Triton language subset as _triton_decode.py.

A rank holds dims [slice] of each K/V head; the softmax needs q.k over the whole head, so a step
runs in three parts, the middle one a collective:
  1. `_partial_scores_kernel`: scores[b, h, n] = q[b, h, slice] . k[n, slice] (fp32), for the
     first lengths[b] keys of each row (later columns are left unwritten);
  2. the caller sums the scores over the ranks of the other slices (an all-reduce);
  3. `_softmax_values_kernel`: online softmax of scale * scores over one split of the keys and
     P.V over the rank's value slice -> normalized partial output + base-2 LSE per split (or, with
     one split, the final output and natural LSE); the splits are merged by _triton_decode's
     `_merge_kernel`.
Both kernels run on a grid (head blocks, splits, batch): a head block is up to BLOCK_H query heads
that read the same KV head, so each K or V tile is loaded once for the whole GQA group; a split is
a contiguous chunk of a row's keys, a multiple of BLOCK_N long, so a long context spreads over
the whole GPU. Pages come from the block table per token: page size and BLOCK_N are independent;
PAGES_AHEAD reads a tile's entries an iteration early, as the decode kernel does.
"""
from __future__ import annotations

import triton
import triton.language as tl
from triton import knobs

from . import kernel_module

INTERPRET = bool(knobs.runtime.interpret)

LOG2E = 1.4426950408889634

# the decode kernels' dot with fp32 accumulation (and the interpreter's 16-bit workaround) and block-table
# reads, from the module built in the same interpret mode as this one
_decode = kernel_module("_triton_decode")
_mm, _first_tile_pages, _tile_pages = _decode._mm, _decode._first_tile_pages, _decode._tile_pages


@triton.jit
def _program_rows(GROUP_KV, GROUP_HEADS, LENGTHS, num_splits, num_keys, BLOCK_N: tl.constexpr,
                  BLOCK_H: tl.constexpr):
    """What one program of either kernel, grid (head blocks, splits, batch), works on: its row b,
    split, KV head, <= BLOCK_H query heads (h_ok: a real head, not padding) and [start, end) of its
    keys: row b's length cut at the scores' width, in chunks of whole BLOCK_N tiles (so every tile
    of a split except its last is full)."""
    grp = tl.program_id(0)
    split = tl.program_id(1)
    b = tl.program_id(2)
    kv_head = tl.load(GROUP_KV + grp).to(tl.int64)
    heads = tl.load(GROUP_HEADS + grp * BLOCK_H + tl.arange(0, BLOCK_H))
    h_ok = heads >= 0
    heads = tl.where(h_ok, heads, 0).to(tl.int64)
    length = tl.minimum(tl.load(LENGTHS + b), num_keys)
    per_split = tl.cdiv(tl.cdiv(length, num_splits), BLOCK_N) * BLOCK_N
    start = split * per_split
    return b, split, kv_head, heads, h_ok, start, tl.minimum(start + per_split, length)


@triton.jit
def _partial_scores_kernel(
    Q, K, BLOCK_TABLE, LENGTHS, GROUP_KV, GROUP_HEADS, SCORES,
    num_splits, num_keys,
    stride_qb, stride_qh,
    stride_kp, stride_ks, stride_kh,
    stride_btb,
    stride_sb, stride_sh,  # SCORES [B, Hq, num_keys], unit last stride
    DK: tl.constexpr, BLOCK_DK: tl.constexpr, QK_FP32: tl.constexpr,
    PAGE_SIZE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr, UPCAST: tl.constexpr,
    PAGES_AHEAD: tl.constexpr = False,
):
    b, split, kv_head, heads, h_ok, start, end = _program_rows(GROUP_KV, GROUP_HEADS, LENGTHS, num_splits,
                                                               num_keys, BLOCK_N, BLOCK_H)

    offs_d = tl.arange(0, BLOCK_DK)
    d_ok = offs_d < DK
    q = tl.load(Q + b.to(tl.int64) * stride_qb + heads[:, None] * stride_qh + offs_d[None, :],
                mask=h_ok[:, None] & d_ok[None, :], other=0.0)
    if QK_FP32:
        q = q.to(tl.float32)

    bt_row = BLOCK_TABLE + b.to(tl.int64) * stride_btb
    s_rows = SCORES + b.to(tl.int64) * stride_sb + heads[:, None] * stride_sh  # [BLOCK_H, 1]
    page_next = _first_tile_pages(bt_row, start, end, PAGE_SIZE, BLOCK_N, PAGES_AHEAD)
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_ok = offs_n < end
        page, page_next = _tile_pages(bt_row, offs_n, end, page_next, PAGE_SIZE, BLOCK_N, PAGES_AHEAD)
        k_row = page * stride_kp + (offs_n % PAGE_SIZE) * stride_ks + kv_head * stride_kh
        k = tl.load(K + k_row[:, None] + offs_d[None, :], mask=n_ok[:, None] & d_ok[None, :], other=0.0)
        if QK_FP32:
            k = k.to(tl.float32)
        qk = _mm(q, tl.trans(k), UPCAST)  # [BLOCK_H, BLOCK_N] fp32
        tl.store(s_rows + offs_n[None, :], qk, mask=h_ok[:, None] & n_ok[None, :])


@triton.jit
def _softmax_values_kernel(
    SCORES, V, BLOCK_TABLE, LENGTHS, GROUP_KV, GROUP_HEADS, OUT, LSE,
    qk_scale,  # softmax scale * log2(e)
    num_splits, num_keys,
    stride_sb, stride_sh,  # summed SCORES [B, Hq, num_keys], unit last stride
    stride_vp, stride_vs, stride_vh,
    stride_btb,
    stride_ob, stride_oh, stride_os,  # OUT [B, Hq, S, Dv] (or [B, Hq, Dv] with stride_os = 0)
    stride_lb, stride_lh, stride_ls,  # LSE [B, Hq, S]
    DV: tl.constexpr, BLOCK_DV: tl.constexpr,
    PAGE_SIZE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr,
    FINAL: tl.constexpr, UPCAST: tl.constexpr, PAGES_AHEAD: tl.constexpr = False,
):
    b, split, kv_head, heads, h_ok, start, end = _program_rows(GROUP_KV, GROUP_HEADS, LENGTHS, num_splits,
                                                               num_keys, BLOCK_N, BLOCK_H)

    offs_v = tl.arange(0, BLOCK_DV)
    v_ok = offs_v < DV
    m_i = tl.full([BLOCK_H], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_DV], tl.float32)

    bt_row = BLOCK_TABLE + b.to(tl.int64) * stride_btb
    s_rows = SCORES + b.to(tl.int64) * stride_sb + heads[:, None] * stride_sh
    page_next = _first_tile_pages(bt_row, start, end, PAGE_SIZE, BLOCK_N, PAGES_AHEAD)
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_ok = offs_n < end
        # padding heads read 0, not -inf: their rows stay finite (and are never stored)
        scores = tl.load(s_rows + offs_n[None, :], mask=h_ok[:, None] & n_ok[None, :], other=0.0)
        # columns from `end` on were never written (or hold the sum of garbage): select, never scale them
        qk = tl.where(n_ok[None, :], scores * qk_scale, float("-inf"))

        # every tile holds at least one visible key, so m_new is finite
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(qk - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        page, page_next = _tile_pages(bt_row, offs_n, end, page_next, PAGE_SIZE, BLOCK_N, PAGES_AHEAD)
        v_row = page * stride_vp + (offs_n % PAGE_SIZE) * stride_vs + kv_head * stride_vh
        v = tl.load(V + v_row[:, None] + offs_v[None, :], mask=n_ok[:, None] & v_ok[None, :], other=0.0)
        acc = acc * alpha[:, None] + _mm(p.to(v.dtype), v, UPCAST)
        m_i = m_new

    has = l_i > 0.0  # a row or split without keys: out 0, LSE -inf (the merge weighs it 0)
    out = acc / tl.where(has, l_i, 1.0)[:, None]
    lse2 = tl.where(has, m_i + tl.log2(tl.where(has, l_i, 1.0)), float("-inf"))
    o_ptr = OUT + b.to(tl.int64) * stride_ob + heads[:, None] * stride_oh + split * stride_os + offs_v[None, :]
    tl.store(o_ptr, out.to(OUT.dtype.element_ty), mask=h_ok[:, None] & v_ok[None, :])
    l_ptr = LSE + b.to(tl.int64) * stride_lb + heads * stride_lh + split * stride_ls
    if FINAL:
        tl.store(l_ptr, lse2 * 0.6931471805599453, mask=h_ok)
    else:
        tl.store(l_ptr, lse2, mask=h_ok)
