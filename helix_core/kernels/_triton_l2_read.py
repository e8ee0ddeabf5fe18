"""A measurement kernel, no model math: every program reads one whole buffer small enough to stay in L2, each
from its own starting chunk, and sums it. Timed over a launch (bench/probes.l2_read_rate), it gives the rate at
which L2 feeds all SMs at once with plain loads: what a kernel whose programs re-read shared data (the MLA
kernel's two head blocks read the same key tiles) is measured against, to tell L2's rate from HBM's latency."""
from __future__ import annotations

import triton
import triton.language as tl
from triton import knobs

INTERPRET = bool(knobs.runtime.interpret)


@triton.jit
def _l2_read_kernel(BUF, SUMS, chunks, BLOCK: tl.constexpr, UNROLL: tl.constexpr):
    """SUMS[p] = the sum of int32 BUF's chunks * BLOCK * UNROLL values, read from chunk p % chunks on
    (wrapping): UNROLL independent loads a trip, so that many are in flight a thread."""
    p = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], tl.int32)
    for i in range(chunks):
        base = ((p + i) % chunks).to(tl.int64) * (BLOCK * UNROLL)
        for u in tl.static_range(UNROLL):
            acc += tl.load(BUF + base + u * BLOCK + offs, cache_modifier=".cg")  # L2, not L1: no reuse in an SM
    tl.store(SUMS + p, tl.sum(acc, 0))
