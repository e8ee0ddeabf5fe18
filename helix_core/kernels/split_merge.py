"""The LSE-weighted merge of attention partials over disjoint key sets: the decode kernel's KV splits, and the
KVP ranks' partials after the all-to-all (`merge_partials`, the Triton twin of helix_core.attention's). Also
the per-device counters with which the split kernel's last program of a head block finds it should merge
(DecodeConfig.fuse_merge)."""
from __future__ import annotations

import torch

from . import interpret_mode, kernel_module, next_pow2, triton_available

OUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # what the kernels store their output as

# partial-output elements (parts x Dv) the merge kernel reads per step: 32 a thread at Dv 128 (4 warps)
MERGE_KERNEL_TILE = 4096
# 16-bit partials (the sm_90 MLA kernel's bf16 option): the same 16 KB a step in twice the parts, on 4 warps.
# H100, MLA's 128 heads x 512 values, CUDA graph: 66 splits at batch 1 5.26 against 7.91 us with fp32's config
# (8 parts a step on 8 warps; fp32 partials 5.62), 16 splits at batch 4 5.41 against 12.12 (2026-12-06)
MERGE_KERNEL_TILE_16BIT = 8192
COUNTERS_MIN = 1 << 15  # counter slots allocated at least (batch x head blocks), 128 KB

_COUNTERS: dict[str, torch.Tensor] = {}
_RETIRED_COUNTERS: list[torch.Tensor] = []


def _capturing(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def merge_counters(device: torch.device, size: int) -> torch.Tensor | None:
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
    buf = torch.zeros(max(COUNTERS_MIN, next_pow2(size)), dtype=torch.int32, device=device)
    _COUNTERS[key] = buf
    return buf


def launch_merge(part_out: torch.Tensor, part_lse: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
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
    consts = merge_kernel_constants(dim, parts, lse_in_log2, pdl, prefetch is not None, columns,
                                    part_out.element_size() * 8)
    kernel_module("_triton_decode")._merge_kernel[(rows0, rows1, -(-dim // consts["BLOCK_DV"]))](
        part_out, part_lse, out, lse, parts,
        part_out.stride(0), part_out.stride(1), part_out.stride(2),
        part_lse.stride(0), part_lse.stride(1), part_lse.stride(2),
        out.stride(0), out.stride(1),
        lse.stride(0), lse.stride(1), next_tensor, prefetch_bytes, **consts,
    )


def merge_kernel_constants(dim: int, parts: int, lse_in_log2: bool, pdl: bool = False, prefetch: bool = False,
                           columns: int | None = None, partial_bits: int = 32) -> dict:
    """The merge kernel's compile-time arguments and launch options for `parts` partials of `dim` values
    (pdl: a programmatic dependent launch; prefetch: the variant that ends with an L2 prefetch; Triton
    compiles each variant apart; partial_bits: the partial outputs' element width)."""
    block_dv = max(16, next_pow2(dim) if columns is None else min(next_pow2(dim), next_pow2(columns)))
    block_p = max(2, next_pow2(parts))
    wide = partial_bits > 16
    num_warps = 4 if block_dv <= 256 or not wide else 8
    tile = MERGE_KERNEL_TILE if wide else MERGE_KERNEL_TILE_16BIT
    return dict(DV=dim, BLOCK_DV=block_dv, BLOCK_P=block_p, BLOCK_S=min(block_p, max(1, tile // block_dv)),
                LSE_IN_LOG2=lse_in_log2, PDL=pdl, PREFETCH=prefetch, NUM_WARPS=num_warps, num_warps=num_warps,
                launch_pdl=pdl)


def merge_partials(outs: torch.Tensor, lses: torch.Tensor,
                   out_dtype: torch.dtype = torch.float32, columns: int | None = None) -> torch.Tensor:
    """Triton twin of helix_core.attention.merge_partials for the KVP merge.

    outs [P, T, H, D] (any strides, unit last stride: e.g. a slice of the packed exchange buffer),
    lses [P, T, H] natural-log LSE (-inf: no keys) -> exact attention [T, H, D], fp32 math, stored
    as out_dtype (the model's dtype saves the layer a cast kernel); columns: `launch_merge`'s.
    Falls back to the torch version for other ranks of tensor or off-GPU without the interpreter.
    """
    if out_dtype not in OUT_DTYPES:
        raise ValueError(f"out_dtype must be one of {OUT_DTYPES}, got {out_dtype}")
    if outs.dim() != 4 or lses.dim() != 3 or not (outs.is_cuda or interpret_mode()) or not triton_available():
        from ..attention import merge_partials as torch_merge
        return torch_merge(outs, lses).to(out_dtype)
    if outs.stride(-1) != 1:
        outs = outs.contiguous()
    parts, tokens, heads, dim = outs.shape
    result = torch.empty(tokens, heads, dim, dtype=out_dtype, device=outs.device)
    lse = torch.empty(tokens, heads, dtype=torch.float32, device=outs.device)
    if parts == 0 or tokens == 0 or heads == 0:
        return result.zero_()
    launch_merge(outs, lses, result, lse, lse_in_log2=False, columns=columns)
    return result
