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


@triton.jit
def prefetch_pieces(prefetch_bytes, program, programs, THREADS: tl.constexpr):
    """(start, size) [THREADS] in bytes: this program's share of the first prefetch_bytes (a multiple of
    16) as one piece a thread; pieces start on 16 bytes, and those past the end are empty."""
    share = tl.cdiv(tl.cdiv(prefetch_bytes, programs), 16 * THREADS) * 16 * THREADS
    piece = share // THREADS
    start = program.to(tl.int64) * share + tl.arange(0, THREADS).to(tl.int64) * piece
    size = tl.minimum(tl.maximum(prefetch_bytes - start, 0), piece).to(tl.int32)
    return start, size


@triton.jit
def prefetch_share(next_ptr, prefetch_bytes, program, programs, num_warps: tl.constexpr):
    """This program's share of next_ptr's first prefetch_bytes, into L2: one bulk prefetch a thread
    (next_ptr is a tensor's start: 16-byte aligned)."""
    start, size = prefetch_pieces(prefetch_bytes, program, programs, num_warps * 32)
    base = next_ptr.to(tl.pointer_type(tl.int8)) + start
    tl.inline_asm_elementwise(
        "{ .reg .pred p; setp.ne.s32 p, $2, 0; @p cp.async.bulk.prefetch.L2.global [$1], $2; mov.b32 $0, 0; }",
        "=r,l,r", [base, size], dtype=tl.int32, is_pure=False, pack=1)
