"""y = x @ W^T for the few rows of a decode step, as a weight-streaming Triton kernel.

    y = small_linear(x, w)                              # x [M, K], w [N, K] (as F.linear takes it)
    y = gated_linear(gate_up, w)                        # one row: silu(gate) * up, then @ w^T
    total, y = norm_linear(x, delta, norm_w, eps, w)    # one row: rms_norm(x + delta) @ w^T
    y = merge_linear(recv, w)                           # one row: the KVP merge of recv, then @ w^T

At batch 1 cuBLAS reads the weights of a sharded llama3-8b layer at 2.3-3.6 TB/s on an H200,
and its split-K down projection adds a reduction kernel; this kernel spreads 8-row blocks of W
over every SM and reads them at 2.6-4.0 TB/s (docs/benchmarks.md). fp32 accumulation; the output
in x's dtype. From 2 rows on cuBLAS is as fast or faster (measured), so the engine uses this for
one row only (models/ops.py); `usable` says where it can run at all. For one row the kernel also
builds its input (the MLP's SiLU gate, the residual add and RMSNorm before a projection, the KVP
merge of the attention partials before the output projection), and on sm_90+ is launched as a programmatic dependent (PDL) of the kernel before it, streaming its first
weights while that one finishes (see _triton_gemv.py). A projection followed by a collective can end
by asking for the next projection's first weights in L2 (`prefetch_after`), so HBM works during the
collective's latency.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import (interpret_mode, kernel_module, l2_prefetch_request, l2_prefetch_usable, pdl_usable, sm_count,
               triton_available)

MAX_ROWS = 16  # one tl.dot row block; larger batches are GEMMs for cuBLAS
# the norm's statistics read this many row values a step (llama's 4096 in 2 steps, not 8 of BLOCK_K): sm_90,
# Triton 3.6, bf16, PDL: 72 / 96 registers (without / with look-ahead) as with 512, 103 / 118 with 4096
NORM_BLOCK_MAX = 2048
AHEAD_MAX_PROGRAMS_PER_SM = 4
_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


@dataclass(frozen=True)
class LinearConfig:
    """Defaults: the fastest one-row config of the sweep on an H200 for every llama3-8b projection
    (docs/benchmarks.md, `python -m helix_core.kernels.bench_small_linear`)."""

    block_n: int = 8
    block_k: int = 512
    splits: int = 1  # K chunks; 0: enough for about two programs per SM
    num_warps: int = 4
    num_stages: int = 4
    pdl: bool | None = None  # one row: None = where the device and Triton support it
    # one row: load each weight tile a tile early (two tiles in flight a program, 96 registers instead of
    # 72). None: where the grid has at most AHEAD_MAX_PROGRAMS_PER_SM programs a SM. H200, one row, bf16:
    # o 2048 x 4096 5.3 against 5.8 us, down 7168 x 4096 15.9 / 16.5, their one-GPU sizes 9.5 / 10.5 and
    # 30.1 / 30.9, qkv 4096 x 3072 8.1 / 8.5; but gate_up 4096 x 14336 30.3 / 29.1 and qkv 4096 x 6144
    # 16.2 / 13.8, whose many programs hide the latency better with more of them resident
    ahead: bool | None = None


def usable(x: torch.Tensor, w: torch.Tensor, in_features: int | None = None) -> bool:
    """x [M, in_features] (default: K) against w [N, K], where the kernel runs."""
    width = w.shape[1] if in_features is None else in_features
    return (x.dim() == 2 and w.dim() == 2 and x.shape[0] <= MAX_ROWS and x.shape[1] == width
            and x.dtype == w.dtype and x.dtype in _DTYPES
            and w.stride(1) == 1 and x.stride(1) == 1 and (x.is_cuda or interpret_mode()) and triton_available())


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _splits(config: LinearConfig, n: int, k: int, device: torch.device) -> int:
    if config.splits:
        return max(1, min(config.splits, k // config.block_k))
    blocks = _ceil_div(n, config.block_n)
    want = max(1, (2 * sm_count(device)) // blocks)
    return max(1, min(want, k // (4 * config.block_k)))


def _refuse(what: str, x: torch.Tensor, w: torch.Tensor) -> ValueError:
    return ValueError(f"{what}: x {tuple(x.shape)} {x.dtype} and w {tuple(w.shape)} {w.dtype} do not fit the kernel "
                      f"(at most {MAX_ROWS} rows, one for the fused inputs; unit last strides, same dtype)")


def small_linear(x: torch.Tensor, w: torch.Tensor, config: LinearConfig = LinearConfig()) -> torch.Tensor:
    """x [M, K] @ w[N, K]^T -> [M, N] in x's dtype (M <= MAX_ROWS; see `usable`)."""
    if not usable(x, w):
        raise _refuse("small_linear", x, w)
    if x.shape[0] == 1:
        return _launch_one_row(x, None, None, w, config, input_mode="plain")
    mod = kernel_module("_triton_gemv")
    rows, k = x.shape
    n = w.shape[0]
    splits, k_per_split = _split_k(config, n, k, x.device)
    y = torch.empty(rows, n, dtype=x.dtype, device=x.device) if splits == 1 else \
        torch.empty(splits, rows, n, dtype=torch.float32, device=x.device)
    mod._rows_kernel[(_ceil_div(n, config.block_n), splits)](
        x, w, y, rows, n, k, k_per_split,
        x.stride(0), w.stride(0), y.stride(0) if splits > 1 else 0, y.stride(-2),
        BLOCK_M=16, BLOCK_N=config.block_n, BLOCK_K=config.block_k, UPCAST=interpret_mode(),
        num_warps=config.num_warps, num_stages=config.num_stages,
    )
    return y if splits == 1 else y.sum(dim=0).to(x.dtype)


def gated_linear(gate_up: torch.Tensor, w: torch.Tensor, config: LinearConfig = LinearConfig()) -> torch.Tensor:
    """One row: (silu(gate) * up) @ w^T, where gate_up [1, 2K] holds the gate, then the up values
    (the gated MLP's fused projection), w [N, K]. The SiLU gate is computed as the kernel reads it."""
    if gate_up.shape[0] != 1 or not usable(gate_up, w, 2 * w.shape[1]):
        raise _refuse("gated_linear", gate_up, w)
    return _launch_one_row(gate_up, None, None, w, config, input_mode="gated")


def norm_linear(x: torch.Tensor, delta: torch.Tensor | None, norm_weight: torch.Tensor, eps: float,
                w: torch.Tensor, config: LinearConfig = LinearConfig()) -> tuple[torch.Tensor, torch.Tensor]:
    """One row: (x + delta, rms_norm(x + delta) @ w^T) with Hugging Face's RMSNorm; delta None adds
    nothing. x, delta [1, K], norm_weight [K], w [N, K]."""
    if not norm_linear_usable(x, delta, norm_weight, w):
        raise _refuse("norm_linear", x, w)
    total = torch.empty_like(x)
    return total, _launch_one_row(x, delta, (norm_weight, eps, total), w, config, input_mode="norm")


def norm_linear_usable(x: torch.Tensor, delta: torch.Tensor | None, norm_weight: torch.Tensor,
                       w: torch.Tensor) -> bool:
    return (x.dim() == 2 and x.shape[0] == 1 and usable(x, w) and x.is_contiguous()
            and (delta is None or (delta.shape == x.shape and delta.dtype == x.dtype and delta.is_contiguous()))
            and norm_weight.shape == (x.shape[1],) and norm_weight.dtype == x.dtype and norm_weight.is_contiguous())


def merge_linear(recv: torch.Tensor, w: torch.Tensor, config: LinearConfig = LinearConfig()) -> torch.Tensor:
    """One row: merge(recv) @ w^T in w's dtype, where recv [P, 1, H, Dv + 1] (fp32, unit last stride: the
    KVP exchange's receive buffer or a view of it) holds P partial attention outputs of H heads, each a
    head's Dv values then its natural-log LSE, and w [N, H * Dv] is the output projection. The merge is
    the KVP merge kernel's, rounded to w's dtype as that kernel stores it for the model
    (kernels/split_merge.merge_partials), so the projection reads what it would have read."""
    if not merge_linear_usable(recv, w):
        raise ValueError(f"merge_linear: recv {tuple(recv.shape)} {recv.dtype} (stride {recv.stride()}) and w "
                         f"{tuple(w.shape)} {w.dtype} do not fit the kernel (recv [parts, 1, heads, Dv + 1] fp32 "
                         f"with a unit last stride, w [N, heads * Dv] 16-bit or fp32 with a unit last stride)")
    parts, _, heads, width = recv.shape
    return _launch_one_row(recv, None, None, w, config, input_mode="merge",
                           merge=(parts, width - 1, recv.stride(0), recv.stride(2)))


def merge_linear_usable(recv: torch.Tensor, w: torch.Tensor) -> bool:
    return (recv.dim() == 4 and recv.shape[1] == 1 and recv.shape[0] >= 1 and recv.shape[3] >= 2
            and recv.dtype == torch.float32 and recv.stride(3) == 1
            and w.dim() == 2 and w.dtype in _DTYPES and w.stride(1) == 1
            and w.shape[1] == recv.shape[2] * (recv.shape[3] - 1)
            and recv.device == w.device and (w.is_cuda or interpret_mode()) and triton_available())


def _split_k(config: LinearConfig, n: int, k: int, device) -> tuple[int, int]:
    """(splits, K per split): every split but the last covers a whole number of K tiles."""
    splits = _splits(config, n, k, device)
    k_per_split = _ceil_div(_ceil_div(k, splits), config.block_k) * config.block_k
    return _ceil_div(k, k_per_split), k_per_split


def norm_block(k: int) -> int:
    """The norm statistics' step for rows of k values: the row's power of two, at most NORM_BLOCK_MAX."""
    return min(1 << max(0, k - 1).bit_length(), NORM_BLOCK_MAX)


def prefetch_after(weight: torch.Tensor, target: torch.Tensor | None, nbytes: int = 0) -> bool:
    """From now on each one-row projection by `weight` ends by asking for the first `nbytes` of `target`
    to be brought into L2 (PREFETCH in _triton_gemv.py), where `l2_prefetch_usable`; target None: no more.
    For a projection followed by a collective: HBM then reads ahead for the projection after it.
    False (nothing registered) for a target that is not one contiguous block starting on 16 bytes."""
    weight.__dict__.pop("_helix_l2_prefetch", None)
    request = l2_prefetch_request(target, nbytes)
    if request is not None:
        weight._helix_l2_prefetch = request
    return request is not None


def _launch_one_row(a, b, norm, w, config: LinearConfig, input_mode: str,
                    merge: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """merge: (parts, Dv, part stride, head stride) of the receive buffer `a` (input_mode "merge")."""
    mod = kernel_module("_triton_gemv")
    n, k = w.shape
    splits, k_per_split = _split_k(config, n, k, a.device)
    even = n % config.block_n == 0 and k % k_per_split == 0
    pdl = pdl_usable(a.device) if config.pdl is None else bool(config.pdl)
    if pdl and not pdl_usable(a.device):
        raise ValueError("LinearConfig(pdl=True) needs compiled Triton with griddepcontrol on an sm_90+ GPU")
    y = torch.empty(1, n, dtype=w.dtype, device=a.device) if splits == 1 else \
        torch.empty(splits, 1, n, dtype=torch.float32, device=a.device)
    parts, value_dim, stride_part, stride_head = merge if merge is not None else (1, 1, 0, 0)
    norm_weight, eps, total = norm if norm is not None else (a, 0.0, a)  # unused pointers: any tensor
    prefetch = getattr(w, "_helix_l2_prefetch", None)
    if prefetch is not None and not l2_prefetch_usable(a.device):
        prefetch = None
    next_tensor, prefetch_bytes = prefetch if prefetch is not None else (w, 0)
    programs = _ceil_div(n, config.block_n) * splits
    ahead = programs <= AHEAD_MAX_PROGRAMS_PER_SM * sm_count(a.device) if config.ahead is None else config.ahead
    mod._row_kernel[(_ceil_div(n, config.block_n), splits)](
        a, a if b is None else b, norm_weight, total, w, y, n, k, k_per_split, w.stride(0),
        y.stride(0) if splits > 1 else 0, eps, stride_part, stride_head, next_tensor, prefetch_bytes,
        BLOCK_N=config.block_n, BLOCK_K=config.block_k, EVEN=even, INPUT=mod.INPUT_MODES[input_mode],
        HAS_B=b is not None, PDL=pdl,
        RTNE_BY_BITS=interpret_mode(), AHEAD=ahead, NORM_BLOCK=norm_block(k), PARTS=parts, DV=value_dim,
        PREFETCH=prefetch is not None, NUM_WARPS=config.num_warps,
        num_warps=config.num_warps, num_stages=config.num_stages, launch_pdl=pdl,
    )
    return y if splits == 1 else y.sum(dim=0).to(w.dtype)
