"""Triton kernel of a decode step's RoPE and KV append (imported lazily: needs triton).

One program per (token, block of heads): q heads are rotated into a new q tensor, k heads are
rotated straight into their cache slot, v heads are copied into theirs; the rotation is RoPE's
rotate-half form, x * cos + rotate_half(x) * sin, in fp32 and rounded once (as
helix_core.rope.apply_rope computes it). This replaces a rotation kernel and two cache copies.
"""
from __future__ import annotations

import triton
import triton.language as tl
from triton import knobs

from . import kernel_module

INTERPRET = bool(knobs.runtime.interpret)
_round = kernel_module("_triton_common").round_to  # built in this module's mode (compiled or interpreted)


@triton.jit
def _rotate_heads(src_ptr, stride_st, stride_sh, dst_ptr, dst_row, stride_dh, cos_ptr, sin_ptr, t, heads, n_heads,
                  HALF: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_HALF: tl.constexpr, RTNE_BY_BITS: tl.constexpr):
    d = tl.arange(0, BLOCK_HALF)
    d_mask = d < HALF
    cos1 = tl.load(cos_ptr + d, mask=d_mask, other=0.0)
    cos2 = tl.load(cos_ptr + HALF + d, mask=d_mask, other=0.0)
    sin1 = tl.load(sin_ptr + d, mask=d_mask, other=0.0)
    sin2 = tl.load(sin_ptr + HALF + d, mask=d_mask, other=0.0)
    mask = (heads[:, None] < n_heads) & d_mask[None, :]
    src = src_ptr + t * stride_st + heads[:, None] * stride_sh + d[None, :]
    x1 = tl.load(src, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(src + HALF, mask=mask, other=0.0).to(tl.float32)
    out1 = x1 * cos1[None, :] - x2 * sin1[None, :]
    out2 = x2 * cos2[None, :] + x1 * sin2[None, :]
    dst = dst_ptr + dst_row + heads[:, None] * stride_dh + d[None, :]
    tl.store(dst, _round(out1, dst_ptr.dtype.element_ty, RTNE_BY_BITS), mask=mask)
    tl.store(dst + HALF, _round(out2, dst_ptr.dtype.element_ty, RTNE_BY_BITS), mask=mask)


@triton.jit
def _rope_append_kernel(q_ptr, k_ptr, v_ptr, cos_ptr, sin_ptr, slot_ptr, q_out_ptr, key_ptr, value_ptr,
                        stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ct,
                        stride_ot, stride_oh, stride_ks, stride_kh_cache, stride_vs, stride_vh_cache,
                        HQ, HKV, DV,
                        HALF: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_HALF: tl.constexpr, BLOCK_DV: tl.constexpr,
                        RTNE_BY_BITS: tl.constexpr):
    t = tl.program_id(0)
    block = tl.program_id(1)
    q_blocks = tl.cdiv(HQ, BLOCK_H)
    k_blocks = tl.cdiv(HKV, BLOCK_H)
    slot = tl.load(slot_ptr + t).to(tl.int64)
    cos_row = cos_ptr + t * stride_ct
    sin_row = sin_ptr + t * stride_ct
    if block < q_blocks:
        heads = block * BLOCK_H + tl.arange(0, BLOCK_H)
        _rotate_heads(q_ptr, stride_qt, stride_qh, q_out_ptr, t * stride_ot, stride_oh, cos_row, sin_row, t, heads,
                      HQ, HALF, BLOCK_H, BLOCK_HALF, RTNE_BY_BITS)
    elif block < q_blocks + k_blocks:
        heads = (block - q_blocks) * BLOCK_H + tl.arange(0, BLOCK_H)
        _rotate_heads(k_ptr, stride_kt, stride_kh, key_ptr, slot * stride_ks, stride_kh_cache, cos_row, sin_row, t,
                      heads, HKV, HALF, BLOCK_H, BLOCK_HALF, RTNE_BY_BITS)
    else:
        heads = (block - q_blocks - k_blocks) * BLOCK_H + tl.arange(0, BLOCK_H)
        d = tl.arange(0, BLOCK_DV)
        mask = (heads[:, None] < HKV) & (d[None, :] < DV)
        v = tl.load(v_ptr + t * stride_vt + heads[:, None] * stride_vh + d[None, :], mask=mask, other=0.0)
        tl.store(value_ptr + slot * stride_vs + heads[:, None] * stride_vh_cache + d[None, :],
                 v.to(value_ptr.dtype.element_ty), mask=mask)  # same dtype: exact
