"""A decode step's RoPE and KV append in one kernel (Triton; its CPU interpreter in tests).

    q_rotated = rope_and_append(q, k, v, cos, sin, slots, key_slots, value_slots)

The fast decode path rotated q and k in one kernel and copied k and v into the paged cache in
two more, each a few microseconds of a step's per-layer overhead; this does all three at once.
"""
from __future__ import annotations

import torch

from . import interpret_mode, kernel_module, triton_available
from . import next_pow2

BLOCK_H = 8


def rope_append_usable(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None, key_slots: torch.Tensor,
                       value_slots: torch.Tensor | None) -> bool:
    """Where the kernel runs: GQA/MHA values of their own (not MLA's latent view), even head dims,
    unit last strides, on CUDA or under the interpreter."""
    tensors = (q, k, v, key_slots, value_slots)
    return (v is not None and value_slots is not None and triton_available()
            and (q.is_cuda or interpret_mode()) and q.shape[-1] == k.shape[-1] and q.shape[-1] % 2 == 0
            and all(t.stride(-1) == 1 for t in tensors) and key_slots.shape[-1] == q.shape[-1]
            and value_slots.shape[-1] == v.shape[-1])


def rope_and_append(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                    slots: torch.Tensor, key_slots: torch.Tensor, value_slots: torch.Tensor) -> torch.Tensor:
    """q [T, Hq, D], k [T, Hkv, D], v [T, Hkv, Dv] (views of a fused QKV output are fine); cos/sin
    [T, D] fp32 (helix_core.rope.rope_cos_sin); slots [T] the cache row of each token; key_slots
    [S, Hkv, D] and value_slots [S, Hkv, Dv], one layer's pages seen as rows. Writes the rotated k
    and v into their rows and returns the rotated q, [T, Hq, D] in q's dtype."""
    if not rope_append_usable(q, k, v, key_slots, value_slots):
        raise ValueError(f"rope_and_append: q {tuple(q.shape)}, k {tuple(k.shape)}, v "
                         f"{None if v is None else tuple(v.shape)} do not fit the kernel")
    tokens, q_heads, dim = q.shape
    kv_heads, value_dim = k.shape[1], v.shape[-1]
    cos, sin = cos.float().contiguous(), sin.float().contiguous()
    q_out = torch.empty(tokens, q_heads, dim, dtype=q.dtype, device=q.device)
    if tokens == 0:
        return q_out
    blocks = 2 * -(-kv_heads // BLOCK_H) + -(-q_heads // BLOCK_H)
    half = dim // 2
    kernel_module("_triton_rope_append")._rope_append_kernel[(tokens, blocks)](
        q, k, v, cos, sin, slots, q_out, key_slots, value_slots,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), cos.stride(0),
        q_out.stride(0), q_out.stride(1), key_slots.stride(0), key_slots.stride(1),
        value_slots.stride(0), value_slots.stride(1),
        q_heads, kv_heads, value_dim,
        HALF=half, BLOCK_H=BLOCK_H, BLOCK_HALF=next_pow2(half), BLOCK_DV=next_pow2(value_dim),
        RTNE_BY_BITS=interpret_mode(),
        num_warps=4,
    )
    return q_out
