"""Triton kernels of absorbed-MLA decode attention in two passes. Imported lazily (needs triton); same
Triton language subset as _triton_decode.py.

Why two passes: in one pass a program holds the whole [heads, 512] fp32 accumulator; 128 heads do not fit
the register file, so the one-pass kernel splits the values over two programs that both compute all the
scores (1.53x the useful tensor work). Here the scores and the values run in separate kernels, joined by
the probabilities in memory (bf16, as the one-pass kernel feeds them to its P.V dot):
  1. `_tile_probs_kernel`, grid (head blocks, splits, batch): for every BLOCK_N-key tile of its keys,
     scores s = scale * q.k over all Dk dims (base 2), the tile's row max m_t, p = exp2(s - m_t) stored
     as the probabilities P[b, h, n] (16-bit), and m_t and l_t = sum(p) (fp32) per (b, h, tile). Tiles
     are independent: no running state, any split of the keys.
  2. `_tile_values_kernel`, grid (head blocks x value parts, splits, batch): an online softmax over the
     tiles of its split from their (m_t, l_t), acc = acc * exp2(m - m') + (exp2(m_t - m') * P_t) . V_t
     over its part of the value dims; writes the normalized partial output and base-2 LSE per split (or
     the final output and natural LSE with one split), merged by _triton_decode's `_merge_kernel`.
Values are the keys' first Dv dims (MLA's latent); pages come from the block table per token.
"""
from __future__ import annotations

import triton
import triton.language as tl
from triton import knobs

from . import kernel_module

INTERPRET = bool(knobs.runtime.interpret)

LOG2E = 1.4426950408889634

_decode = kernel_module("_triton_decode")
_mm = _decode._mm
_sliced = kernel_module("_triton_sliced")
_program_rows = _sliced._program_rows


@triton.jit
def _tile_probs_kernel(
    Q, K, BLOCK_TABLE, LENGTHS, GROUP_KV, GROUP_HEADS, PROBS, TILE_MAX, TILE_SUM,
    qk_scale,  # softmax scale * log2(e)
    num_splits, num_keys,
    stride_qb, stride_qh,
    stride_kp, stride_ks, stride_kh,
    stride_btb,
    stride_pb, stride_ph,  # PROBS [B, Hq, num_keys], unit last stride
    stride_tb, stride_th,  # TILE_MAX / TILE_SUM [B, Hq, num_keys // BLOCK_N], unit last stride
    DK: tl.constexpr, BLOCK_A: tl.constexpr, BLOCK_T: tl.constexpr,
    PAGE_SIZE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr, UPCAST: tl.constexpr,
    PAGES_AHEAD: tl.constexpr = False,
):
    b, split, kv_head, heads, h_ok, start, end = _program_rows(GROUP_KV, GROUP_HEADS, LENGTHS, num_splits,
                                                               num_keys, BLOCK_N, BLOCK_H)
    # the key dims as a head part [0, BLOCK_A) and a tail [BLOCK_A, DK) (MLA: 512 latent + 64 rope)
    offs_a = tl.arange(0, BLOCK_A)
    offs_t = BLOCK_A + tl.arange(0, BLOCK_T)
    t_ok = offs_t < DK
    q_base = Q + b.to(tl.int64) * stride_qb + heads[:, None] * stride_qh
    q_a = tl.load(q_base + offs_a[None, :], mask=h_ok[:, None], other=0.0)
    q_t = tl.load(q_base + offs_t[None, :], mask=h_ok[:, None] & t_ok[None, :], other=0.0)

    bt_row = BLOCK_TABLE + b.to(tl.int64) * stride_btb
    p_rows = PROBS + b.to(tl.int64) * stride_pb + heads[:, None] * stride_ph  # [BLOCK_H, 1]
    t_rows = b.to(tl.int64) * stride_tb + heads * stride_th  # [BLOCK_H]
    page_next = _decode._first_tile_pages(bt_row, start, end, PAGE_SIZE, BLOCK_N, PAGES_AHEAD)
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_ok = offs_n < end
        page, page_next = _decode._tile_pages(bt_row, offs_n, end, page_next, PAGE_SIZE, BLOCK_N, PAGES_AHEAD)
        k_row = page * stride_kp + (offs_n % PAGE_SIZE) * stride_ks + kv_head * stride_kh
        k_a = tl.load(K + k_row[:, None] + offs_a[None, :], mask=n_ok[:, None], other=0.0)
        k_t = tl.load(K + k_row[:, None] + offs_t[None, :], mask=n_ok[:, None] & t_ok[None, :], other=0.0)
        s = (_mm(q_a, tl.trans(k_a), UPCAST) + _mm(q_t, tl.trans(k_t), UPCAST)) * qk_scale
        s = tl.where(n_ok[None, :], s, float("-inf"))
        m_t = tl.max(s, 1)  # every tile holds at least one visible key: finite
        p = tl.exp2(s - m_t[:, None])
        tl.store(p_rows + offs_n[None, :], p.to(PROBS.dtype.element_ty), mask=h_ok[:, None] & n_ok[None, :])
        tile = n0 // BLOCK_N
        tl.store(TILE_MAX + t_rows + tile, m_t, mask=h_ok)
        tl.store(TILE_SUM + t_rows + tile, tl.sum(p, 1), mask=h_ok)


@triton.jit
def _tile_values_kernel(
    PROBS, TILE_MAX, TILE_SUM, V, BLOCK_TABLE, LENGTHS, GROUP_KV, GROUP_HEADS, OUT, LSE,
    num_splits, num_keys,
    stride_pb, stride_ph,
    stride_tb, stride_th,
    stride_vp, stride_vs, stride_vh,
    stride_btb,
    stride_ob, stride_oh, stride_os,  # OUT [B, Hq, S, Dv] (or [B, Hq, Dv] with stride_os = 0)
    stride_lb, stride_lh, stride_ls,  # LSE [B, Hq, S]
    DV: tl.constexpr, BLOCK_DV: tl.constexpr, DV_PARTS: tl.constexpr,
    PAGE_SIZE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr,
    FINAL: tl.constexpr, UPCAST: tl.constexpr, PAGES_AHEAD: tl.constexpr = False,
):
    # program_id(0) = head block * DV_PARTS + value part; _program_rows reads the head block from it
    part = tl.program_id(0) % DV_PARTS
    grp = tl.program_id(0) // DV_PARTS
    split = tl.program_id(1)
    b = tl.program_id(2)
    kv_head = tl.load(GROUP_KV + grp).to(tl.int64)
    heads = tl.load(GROUP_HEADS + grp * BLOCK_H + tl.arange(0, BLOCK_H))
    h_ok = heads >= 0
    heads = tl.where(h_ok, heads, 0).to(tl.int64)
    length = tl.minimum(tl.load(LENGTHS + b), num_keys)
    per_split = tl.cdiv(tl.cdiv(length, num_splits), BLOCK_N) * BLOCK_N
    start = split * per_split
    end = tl.minimum(start + per_split, length)

    offs_v = part * BLOCK_DV + tl.arange(0, BLOCK_DV)
    v_ok = offs_v < DV
    m_i = tl.full([BLOCK_H], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_DV], tl.float32)

    bt_row = BLOCK_TABLE + b.to(tl.int64) * stride_btb
    p_rows = PROBS + b.to(tl.int64) * stride_pb + heads[:, None] * stride_ph
    t_rows = b.to(tl.int64) * stride_tb + heads * stride_th
    page_next = _decode._first_tile_pages(bt_row, start, end, PAGE_SIZE, BLOCK_N, PAGES_AHEAD)
    # each tile's (max, sum) are read an iteration early: the running max waits on them, and Triton
    # software-pipelines only the loads that feed a dot (P and V here)
    first = start // BLOCK_N
    offs_h0 = tl.zeros([BLOCK_H], tl.int32)  # (a tensor, so the masks below are tensors too)
    s_ok = h_ok & ((offs_h0 + start) < end)
    m_next = tl.load(TILE_MAX + t_rows + first, mask=s_ok, other=0.0)
    l_next = tl.load(TILE_SUM + t_rows + first, mask=s_ok, other=0.0)
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_ok = offs_n < end
        m_t, l_t = m_next, l_next
        later = h_ok & ((offs_h0 + n0 + BLOCK_N) < end)
        m_next = tl.load(TILE_MAX + t_rows + n0 // BLOCK_N + 1, mask=later, other=0.0)
        l_next = tl.load(TILE_SUM + t_rows + n0 // BLOCK_N + 1, mask=later, other=0.0)
        m_new = tl.maximum(m_i, m_t)
        alpha = tl.exp2(m_i - m_new)
        beta = tl.exp2(m_t - m_new)
        l_i = l_i * alpha + l_t * beta
        p = tl.load(p_rows + offs_n[None, :], mask=h_ok[:, None] & n_ok[None, :], other=0.0)
        page, page_next = _decode._tile_pages(bt_row, offs_n, end, page_next, PAGE_SIZE, BLOCK_N, PAGES_AHEAD)
        v_row = page * stride_vp + (offs_n % PAGE_SIZE) * stride_vs + kv_head * stride_vh
        v = tl.load(V + v_row[:, None] + offs_v[None, :], mask=n_ok[:, None] & v_ok[None, :], other=0.0)
        # the tile's P rescaled to the running max before the dot, so the dot accumulates into acc (a separate
        # [BLOCK_H, BLOCK_DV] product would double the accumulator's registers); P is rounded to 16 bits
        # again, exact where the tile holds the running max (beta = 1)
        p = (p.to(tl.float32) * beta[:, None]).to(v.dtype)
        acc = acc * alpha[:, None] + _mm(p, v, UPCAST)
        m_i = m_new

    has = l_i > 0.0  # a row or split without keys: out 0, LSE -inf (the merge weighs it 0)
    out = acc / tl.where(has, l_i, 1.0)[:, None]
    lse2 = tl.where(has, m_i + tl.log2(tl.where(has, l_i, 1.0)), float("-inf"))
    o_ptr = OUT + b.to(tl.int64) * stride_ob + heads[:, None] * stride_oh + split * stride_os + offs_v[None, :]
    tl.store(o_ptr, out.to(OUT.dtype.element_ty), mask=h_ok[:, None] & v_ok[None, :])
    l_ptr = LSE + b.to(tl.int64) * stride_lb + heads * stride_lh + split * stride_ls
    l_ok = h_ok & ((heads * 0 + part) == 0)  # every value part computes the same LSE: one writes it
    if FINAL:
        tl.store(l_ptr, lse2 * 0.6931471805599453, mask=l_ok)
    else:
        tl.store(l_ptr, lse2, mask=l_ok)
