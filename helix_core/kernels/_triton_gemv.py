"""Triton kernel of the small-batch linear layer y = x @ W^T (imported lazily: needs triton).

A decode step multiplies a few rows (the batch) by each weight matrix: pure weight streaming.
One program owns BLOCK_N output columns (BLOCK_N rows of W, contiguous along K) and one chunk of
K (split-K), and walks it in BLOCK_K tiles:
- one row (DOT=False): fp32 products accumulated elementwise in a [BLOCK_N, BLOCK_K] tile and
  summed once at the end (no tensor-core padding of a single row to 16);
- several rows (DOT=True): tl.dot of the [BLOCK_M, BLOCK_K] rows against the W tile.
With one split the result is stored in y's dtype; with several, fp32 partials [splits, M, N]
are stored and summed by the caller in split order (deterministic).
"""
from __future__ import annotations

import triton
import triton.language as tl
from triton import knobs

INTERPRET = bool(knobs.runtime.interpret)


@triton.jit
def _gemv_kernel(x_ptr, w_ptr, y_ptr, M, N, K, k_per_split,
                 stride_xm, stride_wn, stride_ys, stride_ym,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                 DOT: tl.constexpr, EVEN: tl.constexpr, UPCAST: tl.constexpr):
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    k_start = pid_k * k_per_split
    k_stop = tl.minimum(k_start + k_per_split, K)
    w_rows = w_ptr + offs_n[:, None] * stride_wn
    if DOT:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    else:
        tile = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    for k0 in range(k_start, k_stop, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        if EVEN:
            w = tl.load(w_rows + offs_k[None, :])
        else:
            w = tl.load(w_rows + offs_k[None, :], mask=(offs_n[:, None] < N) & (offs_k[None, :] < k_stop), other=0.0)
        if DOT:
            x_mask = (offs_m[:, None] < M) & (offs_k[None, :] < k_stop)
            x = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :], mask=x_mask, other=0.0)
            if UPCAST:  # the CPU interpreter multiplies 16-bit tiles as raw bits; fp32 products are exact
                acc += tl.dot(x.to(tl.float32), tl.trans(w.to(tl.float32)), input_precision="ieee")
            else:
                acc += tl.dot(x, tl.trans(w), input_precision="ieee")  # fp32 weights: no tf32
        else:
            if EVEN:
                x = tl.load(x_ptr + offs_k)
            else:
                x = tl.load(x_ptr + offs_k, mask=offs_k < k_stop, other=0.0)
            tile += w.to(tl.float32) * x.to(tl.float32)[None, :]
    y_base = y_ptr + pid_k * stride_ys
    if DOT:
        y_mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
        tl.store(y_base + offs_m[:, None] * stride_ym + offs_n[None, :], acc.to(y_ptr.dtype.element_ty), mask=y_mask)
    else:
        tl.store(y_base + offs_n, tl.sum(tile, axis=1).to(y_ptr.dtype.element_ty), mask=offs_n < N)
