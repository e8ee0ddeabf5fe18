"""y = x @ W^T for the few rows of a decode step, as a weight-streaming Triton kernel.

    y = small_linear(x, w)            # x [M, K], w [N, K] (row-major, as F.linear takes it)

At batch 1 cuBLAS reads the weights of a sharded llama3-8b layer at 2.3-3.6 TB/s on an H200,
and its split-K down projection adds a reduction kernel; this kernel spreads 8-row blocks of W
over every SM and reads them at 2.6-4.0 TB/s (docs/benchmarks.md). fp32 accumulation; the output
in x's dtype. From 2 rows on cuBLAS is as fast or faster (measured), so the engine uses this for
one row only (models/ops.py); `usable` says where it can run at all.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import interpret_mode, kernel_module, sm_count, triton_available

MAX_ROWS = 16  # one tl.dot row block; larger batches are GEMMs for cuBLAS


@dataclass(frozen=True)
class LinearConfig:
    """Defaults: the fastest one-row config of the sweep on an H200 for every llama3-8b projection
    (docs/benchmarks.md, `python -m helix_core.kernels.bench_small_linear`)."""

    block_n: int = 8
    block_k: int = 512
    splits: int = 1  # K chunks; 0: enough for about two programs per SM
    num_warps: int = 4
    num_stages: int = 4


def usable(x: torch.Tensor, w: torch.Tensor) -> bool:
    return (x.dim() == 2 and w.dim() == 2 and x.shape[0] <= MAX_ROWS and x.shape[1] == w.shape[1]
            and x.dtype == w.dtype and x.dtype in (torch.bfloat16, torch.float16, torch.float32)
            and w.stride(1) == 1 and x.stride(1) == 1 and (x.is_cuda or interpret_mode()) and triton_available())


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _splits(config: LinearConfig, n: int, k: int, device: torch.device) -> int:
    if config.splits:
        return max(1, min(config.splits, k // config.block_k))
    blocks = _ceil_div(n, config.block_n)
    want = max(1, (2 * sm_count(device)) // blocks)
    return max(1, min(want, k // (4 * config.block_k)))


def small_linear(x: torch.Tensor, w: torch.Tensor, config: LinearConfig = LinearConfig()) -> torch.Tensor:
    """x [M, K] @ w[N, K]^T -> [M, N] in x's dtype (M <= MAX_ROWS; see `usable`)."""
    if not usable(x, w):
        raise ValueError(f"small_linear: x {tuple(x.shape)} {x.dtype} and w {tuple(w.shape)} {w.dtype} "
                         f"do not fit the kernel (at most {MAX_ROWS} rows, unit last strides, same dtype)")
    mod = kernel_module("_triton_gemv")
    rows, k = x.shape
    n = w.shape[0]
    splits = _splits(config, n, k, x.device)
    # every split but the last covers a whole number of K tiles
    k_per_split = _ceil_div(_ceil_div(k, splits), config.block_k) * config.block_k
    splits = _ceil_div(k, k_per_split)
    dot = rows > 1
    block_m = 16 if dot else 1
    even = (not dot) and n % config.block_n == 0 and k % k_per_split == 0
    if splits == 1:
        y = torch.empty(rows, n, dtype=x.dtype, device=x.device)
        stride_ys = 0
    else:
        y = torch.empty(splits, rows, n, dtype=torch.float32, device=x.device)
        stride_ys = y.stride(0)
    grid = (_ceil_div(n, config.block_n), splits)
    mod._gemv_kernel[grid](
        x, w, y, rows, n, k, k_per_split,
        x.stride(0), w.stride(0), stride_ys, y.stride(-2),
        BLOCK_M=block_m, BLOCK_N=config.block_n, BLOCK_K=config.block_k,
        DOT=dot, EVEN=even, UPCAST=interpret_mode(),
        num_warps=config.num_warps, num_stages=config.num_stages,
    )
    if splits == 1:
        return y
    return y.sum(dim=0).to(x.dtype)
