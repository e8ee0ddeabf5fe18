"""Triton helpers shared by the kernel modules (imported through kernels.kernel_module, so that a
module built for the CPU interpreter gets helpers built for it too)."""
from __future__ import annotations

import triton
import triton.language as tl
from triton import knobs

INTERPRET = bool(knobs.runtime.interpret)


@triton.jit
def round_to(x, dtype: tl.constexpr, RTNE_BY_BITS: tl.constexpr):
    """fp32 x rounded to dtype, to nearest even. Triton's CPU interpreter truncates fp32 -> bf16, so
    there (RTNE_BY_BITS) the rounding is done on the bits first and the conversion is then exact."""
    if RTNE_BY_BITS and dtype == tl.bfloat16:
        bits = x.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        x = bits.to(tl.float32, bitcast=True)
    return x.to(dtype)
