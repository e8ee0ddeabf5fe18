"""Triton kernels of the small-batch linear layer y = x @ W^T (imported lazily: needs triton).

A decode step multiplies a few rows (the batch) by each weight matrix: pure weight streaming.
One program owns BLOCK_N output columns (BLOCK_N rows of W, contiguous along K) and one chunk of
K (split-K), and walks it in BLOCK_K tiles. With one split the result is stored in y's dtype;
with several, fp32 partials [splits, M, N] are stored and summed by the caller in split order
(deterministic).

- `_rows_kernel` (several rows): tl.dot of the [BLOCK_M, BLOCK_K] rows against the W tile.
- `_row_kernel` (one row): fp32 products accumulated elementwise in a [BLOCK_N, BLOCK_K] tile and
  summed once at the end (no tensor-core padding of a single row to 16). It can build its input
  row itself, so the elementwise kernel before a projection disappears from the step:
    INPUT_PLAIN  x as given;
    INPUT_GATED  x = silu(gate) * up from a gate_up row [gate | up] (the MLP's down projection);
    INPUT_NORM   x = rms_norm(a + b) * norm_weight, Hugging Face's rounding (the statistics in
                 fp32, the normalized row and its product with the weight rounded to the row's
                 dtype); program (0, 0) also stores the residual a + b.
    INPUT_MERGE  x = the KVP merge of PARTS partial attention outputs, read from the exchange's
                 receive buffer (fp32 [part, head, DV + 1]: a head's DV output values, then its
                 natural-log LSE), with the merge kernel's arithmetic (_triton_decode._merge_kernel),
                 rounded to W's dtype: the attention output projection without the merge kernel.
  PDL (sm_90+): launched as a programmatic dependent of the kernel before it, a program loads its
  first W tile (weights are never written by a step) before it waits for that kernel, so the
  launch and the first loads hide under the previous kernel's tail; and it lets its own
  dependent launch at once. Nothing is read from or written to activations before the wait.
  PREFETCH (sm_90+): after its store, each program asks for its share of the first prefetch_bytes of
  another tensor (the projection after the collective that follows this one) to be brought into L2
  (`cp.async.bulk.prefetch.L2`, a hint that does not wait), so HBM works while the collective's latency
  runs and that projection reads its first tiles from L2.
"""
from __future__ import annotations

import triton
import triton.language as tl
from triton import knobs

try:  # grid dependency control (programmatic dependent launch, sm_90+): Triton 3.4+
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait
except ImportError:  # pragma: no cover - older Triton: the launcher keeps PDL off (kernels.pdl_usable)
    pass

from . import kernel_module

INTERPRET = bool(knobs.runtime.interpret)
_common = kernel_module("_triton_common")  # built in this module's mode (compiled or interpreted)
_round = _common.round_to
_prefetch_share = _common.prefetch_share

INPUT_PLAIN = 0
INPUT_GATED = 1
INPUT_NORM = 2
INPUT_MERGE = 3
INPUT_MODES = {"plain": INPUT_PLAIN, "gated": INPUT_GATED, "norm": INPUT_NORM,
               "merge": INPUT_MERGE}  # _row_kernel's INPUT by name


@triton.jit
def _rows_kernel(x_ptr, w_ptr, y_ptr, M, N, K, k_per_split,
                 stride_xm, stride_wn, stride_ys, stride_ym,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, UPCAST: tl.constexpr):
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    k_start = pid_k * k_per_split
    k_stop = tl.minimum(k_start + k_per_split, K)
    w_rows = w_ptr + offs_n[:, None] * stride_wn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(k_start, k_stop, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        w = tl.load(w_rows + offs_k[None, :], mask=(offs_n[:, None] < N) & (offs_k[None, :] < k_stop), other=0.0)
        x_mask = (offs_m[:, None] < M) & (offs_k[None, :] < k_stop)
        x = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :], mask=x_mask, other=0.0)
        if UPCAST:  # the CPU interpreter multiplies 16-bit tiles as raw bits; fp32 products are exact
            acc += tl.dot(x.to(tl.float32), tl.trans(w.to(tl.float32)), input_precision="ieee")
        else:
            acc += tl.dot(x, tl.trans(w), input_precision="ieee")  # fp32 weights: no tf32
    y_mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    tl.store(y_ptr + pid_k * stride_ys + offs_m[:, None] * stride_ym + offs_n[None, :],
             acc.to(y_ptr.dtype.element_ty), mask=y_mask)


@triton.jit
def _load_w(w_rows, offs_n, offs_k, N, k_stop, EVEN: tl.constexpr):
    if EVEN:
        return tl.load(w_rows + offs_k[None, :])
    return tl.load(w_rows + offs_k[None, :], mask=(offs_n[:, None] < N) & (offs_k[None, :] < k_stop), other=0.0)


@triton.jit
def _residual(a_ptr, b_ptr, offs_k, mask_k, HAS_B: tl.constexpr, RTNE_BY_BITS: tl.constexpr):
    """a + b rounded to the row's dtype, as the eager add computes it."""
    a = tl.load(a_ptr + offs_k, mask=mask_k, other=0.0)
    if HAS_B:
        b = tl.load(b_ptr + offs_k, mask=mask_k, other=0.0)
        a = _round(a.to(tl.float32) + b.to(tl.float32), a_ptr.dtype.element_ty, RTNE_BY_BITS)
    return a


@triton.jit
def _input_tile(a_ptr, b_ptr, norm_ptr, offs_k, mask_k, K, inv_rms,
                INPUT: tl.constexpr, HAS_B: tl.constexpr, RTNE_BY_BITS: tl.constexpr):
    """The input row's values at offs_k, in fp32 (see the module docstring for the modes)."""
    dtype = a_ptr.dtype.element_ty
    if INPUT == 1:  # silu(gate) * up; silu as x / (1 + exp(-x)) in fp32, each product rounded
        gate = tl.load(a_ptr + offs_k, mask=mask_k, other=0.0).to(tl.float32)
        up = tl.load(a_ptr + K + offs_k, mask=mask_k, other=0.0)
        act = _round(gate / (1.0 + tl.exp(-gate)), dtype, RTNE_BY_BITS)
        return _round(act.to(tl.float32) * up.to(tl.float32), dtype, RTNE_BY_BITS).to(tl.float32)
    elif INPUT == 2:
        total = _residual(a_ptr, b_ptr, offs_k, mask_k, HAS_B, RTNE_BY_BITS).to(tl.float32)
        weight = tl.load(norm_ptr + offs_k, mask=mask_k, other=0.0)
        normed = _round(total * inv_rms, dtype, RTNE_BY_BITS)
        return _round(weight.to(tl.float32) * normed.to(tl.float32), dtype, RTNE_BY_BITS).to(tl.float32)
    else:
        return tl.load(a_ptr + offs_k, mask=mask_k, other=0.0).to(tl.float32)


@triton.jit
def _merged_tile(recv_ptr, offs_k, mask_k, stride_part, stride_head, dtype: tl.constexpr,
                 PARTS: tl.constexpr, DV: tl.constexpr, RTNE_BY_BITS: tl.constexpr):
    """The merged attention output at offs_k (= head * DV + d), in fp32 after rounding to dtype:
    weights exp2(lse_p * log2(e) - peak) as the merge kernel computes them, a part with no keys
    (LSE -inf) weighs 0. Every value of a head loads that head's LSEs: the same few addresses, from L1."""
    head = offs_k // DV
    row = recv_ptr + head * stride_head
    chan = offs_k - head * DV
    peak = tl.full(offs_k.shape, float("-inf"), tl.float32)
    for p in tl.static_range(PARTS):
        lse = tl.load(row + p * stride_part + DV, mask=mask_k, other=float("-inf")) * 1.4426950408889634
        peak = tl.maximum(peak, lse)
    safe = tl.where(peak == float("-inf"), 0.0, peak)
    total = tl.zeros(offs_k.shape, tl.float32)
    acc = tl.zeros(offs_k.shape, tl.float32)
    for p in tl.static_range(PARTS):
        lse = tl.load(row + p * stride_part + DV, mask=mask_k, other=float("-inf")) * 1.4426950408889634
        weight = tl.exp2(lse - safe)
        out = tl.load(row + p * stride_part + chan, mask=mask_k, other=0.0)
        total += weight
        acc += tl.where(weight > 0.0, out * weight, 0.0)
    merged = acc / tl.where(total > 0.0, total, 1.0)
    return _round(merged, dtype, RTNE_BY_BITS).to(tl.float32)


@triton.jit
def _row_tile(a_ptr, b_ptr, norm_ptr, offs_k, mask_k, K, inv_rms, stride_part, stride_head, w_dtype: tl.constexpr,
              INPUT: tl.constexpr, HAS_B: tl.constexpr, RTNE_BY_BITS: tl.constexpr, PARTS: tl.constexpr,
              DV: tl.constexpr):
    if INPUT == 3:
        return _merged_tile(a_ptr, offs_k, mask_k, stride_part, stride_head, w_dtype, PARTS, DV, RTNE_BY_BITS)
    else:
        return _input_tile(a_ptr, b_ptr, norm_ptr, offs_k, mask_k, K, inv_rms, INPUT, HAS_B, RTNE_BY_BITS)


@triton.jit
def _row_kernel(a_ptr, b_ptr, norm_ptr, total_ptr, w_ptr, y_ptr, N, K, k_per_split, stride_wn, stride_ys, eps,
                stride_part, stride_head, next_ptr, prefetch_bytes,
                BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, EVEN: tl.constexpr,
                INPUT: tl.constexpr, HAS_B: tl.constexpr, PDL: tl.constexpr, RTNE_BY_BITS: tl.constexpr,
                AHEAD: tl.constexpr = False, NORM_BLOCK: tl.constexpr = 512,
                PARTS: tl.constexpr = 1, DV: tl.constexpr = 1, PREFETCH: tl.constexpr = False,
                NUM_WARPS: tl.constexpr = 4):
    """AHEAD: each W tile's load is issued a tile early (a loop-carried register tile), so a program keeps
    two tiles in flight; the loop has no dot for Triton's pipeliner to stage through shared memory.
    NORM_BLOCK: row values a step of the norm's statistics loop, which runs after the wait, one load round
    trip a step: wider than BLOCK_K (small_linear.NORM_BLOCK_MAX), so fewer round trips.
    stride_part / stride_head, PARTS, DV: INPUT_MERGE's receive buffer (a_ptr), else unused.
    next_ptr / prefetch_bytes: PREFETCH's tensor and byte count (NUM_WARPS: the launch's num_warps)."""
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    if PDL:  # the next kernel, if a programmatic dependent, may start its programs now
        gdc_launch_dependents()
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    k_start = pid_k * k_per_split
    k_stop = tl.minimum(k_start + k_per_split, K)
    w_rows = w_ptr + offs_n[:, None] * stride_wn
    offs_k = k_start + tl.arange(0, BLOCK_K)
    w_first = _load_w(w_rows, offs_n, offs_k, N, k_stop, EVEN)  # before the wait: weights are constant
    if AHEAD:
        w_next = _load_w(w_rows, offs_n, offs_k + BLOCK_K, N, k_stop, False)  # masked: past the end, nothing
    if PDL:
        gdc_wait()  # the previous kernel's writes (this row) are visible from here on
    inv_rms = 0.0
    if INPUT == 2:  # the norm's statistics over the whole row, which every program needs
        squares = tl.zeros((NORM_BLOCK,), dtype=tl.float32)
        for r0 in range(0, K, NORM_BLOCK):
            offs_r = r0 + tl.arange(0, NORM_BLOCK)
            total = _residual(a_ptr, b_ptr, offs_r, offs_r < K, HAS_B, RTNE_BY_BITS)
            if (pid_n == 0) & (pid_k == 0):
                tl.store(total_ptr + offs_r, total, mask=offs_r < K)
            squares += total.to(tl.float32) * total.to(tl.float32)
        inv_rms = 1.0 / tl.sqrt(tl.sum(squares) / K + eps)
    tile = w_first.to(tl.float32) * _row_tile(a_ptr, b_ptr, norm_ptr, offs_k, offs_k < k_stop, K, inv_rms,
                                              stride_part, stride_head, w_ptr.dtype.element_ty,
                                              INPUT, HAS_B, RTNE_BY_BITS, PARTS, DV)[None, :]
    for k0 in range(k_start + BLOCK_K, k_stop, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        if AHEAD:
            w = w_next
            w_next = _load_w(w_rows, offs_n, offs_k + BLOCK_K, N, k_stop, False)
        else:
            w = _load_w(w_rows, offs_n, offs_k, N, k_stop, EVEN)
        tile += w.to(tl.float32) * _row_tile(a_ptr, b_ptr, norm_ptr, offs_k, offs_k < k_stop, K, inv_rms,
                                             stride_part, stride_head, w_ptr.dtype.element_ty,
                                             INPUT, HAS_B, RTNE_BY_BITS, PARTS, DV)[None, :]
    y = _round(tl.sum(tile, axis=1), y_ptr.dtype.element_ty, RTNE_BY_BITS)
    tl.store(y_ptr + pid_k * stride_ys + offs_n, y, mask=offs_n < N)
    if PREFETCH:
        _prefetch_share(next_ptr, prefetch_bytes, pid_n * tl.num_programs(1) + pid_k,
                        tl.num_programs(0) * tl.num_programs(1), NUM_WARPS)
