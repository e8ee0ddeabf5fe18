"""Hopper (sm_90) absorbed-MLA decode kernel, "seesaw" schedule: both warpgroups score tiles, in turn.

The split schedule of `_gluon_mla` has warpgroup 0 score every tile and run its softmax while nothing feeds
the tensor cores (warpgroup 1's value MMA waits for P). This schedule hides each softmax under the other
warpgroup's MMAs. Measured on an H100 (docs/benchmarks.md, 2026-12-06, thirteenth session): as exact, its tile
loop no faster (2.05-2.12 against 2.07 us a tile at 1 x 128K), every launch slower (1.14x at 1 x 128K, 1.42x at
4 x 512K); so it is off (`mla_sm90.SCHEDULE`) until an H200 has run it. The tiles go in pairs, A (stage 0) and
B (stage 1):

  warpgroup 0 ("even", the default partition): S_A = Q K_A^T, softmax of A, O[:, :256] += P_A V_A[:, :256];
      then, once warpgroup 1 has the max after B, O[:, :256] += P_B V_B[:, :256] with P_B from shared memory.
  warpgroup 1 ("odd", a worker): S_B = Q K_B^T, issued as warpgroup 0's scores of A finish, so it runs on the
      tensor cores during A's softmax; O[:, 256:] += P_A V_A[:, 256:] (P_A from shared memory) runs during B's
      softmax; then O[:, 256:] += P_B V_B[:, 256:].
  the loader (one warp, a worker): each tile's rope dims, latent first half, latent second half, by TMA into
      stage (tile % 2) as each part is released (cp.async with zero fill for a partial last tile or pages too
      small for a box), so a tile's scores start on its first part while the rest comes in.

Both warpgroups keep the same running max: B's softmax starts from A's max (shared memory, `m_a_buf`), and
warpgroup 0 rescales to B's (`m_b_buf`). Each keeps its own row sum over its tiles; the two are added at the
end (`l_a_buf`, `l_b_buf`). One P buffer suffices: P_A is overwritten by P_B only after warpgroup 1's MMA over
P_A is done, and P_B by the next P_A only after warpgroup 0's is.

Shared memory: Q (72 KB), two key stages (144 KB), P (8 KB), as in `_gluon_mla`. Barriers (single arrival):
  full_{t,lo,hi}[s]   that part of stage s is loaded (loader -> scorer and value MMAs)
  empty_t[s]          the scores of stage s are done (its scorer -> loader)
  empty_lo[s]         warpgroup 0's value MMA over stage s is done (its scores came before: -> loader)
  empty_hi[s]         warpgroup 1's value MMA over stage s is done (likewise)
  a_go                A's scores are nearly done: warpgroup 1 may queue B's behind them
  a_ready / b_ready   P_A and A's max (warpgroup 0 -> 1) / P_B and B's max (1 -> 0) are in shared memory
  l_ready             both row sums are in shared memory (count 2)

Launched like `_gluon_mla._mla_decode_kernel` (same arguments and constants; `mla_sm90.launch(schedule=...)`),
writing the same normalized partials and base-2 LSE for the same merge. PROBE bit 1 (measurement only, wrong
results): no key loads past the first two tiles; bit 2: no value MMAs in warpgroup 1. TRACE_ON writes the same
TRACE slots as `_gluon_mla` (the values' store by warpgroup 1, the rest by warpgroup 0).
"""
from __future__ import annotations

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, warpgroup_mma,
                                                              warpgroup_mma_wait)

from ._gluon_mla import (BLOCK_H, BLOCK_N, HALF, ROW_BLOCKS, STAGES, TAIL, TRACE_ROW, TRACE_SLOTS, _barrier,
                         _block_index, _cp_async, _grid_merge, _program, _start_queries, _tile_buffers, _stamp,
                         _store_half, _tile_rows, _tma_load)

INTERPRET = False  # kernel_module's bookkeeping: Gluon kernels never run under the interpreter
__all__ = ["TRACE_ROW", "TRACE_SLOTS", "_mla_seesaw_kernel"]

LOADER_SLICE = gl.constexpr(8)  # cache rows the loader's cp.async moves at a time (a 128-byte swizzle atom's)
# the warpgroups' layouts: scores [64 heads, 64 keys] and output halves [64, 256] as wgmma accumulators, P as the
# A operand of the value MMA from registers, and their rows
S_LAYOUT = gl.constexpr(gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, 64, 16]))
O_LAYOUT = gl.constexpr(gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, 256, 16]))
P_LAYOUT = gl.constexpr(gl.DotOperandLayout(operand_index=0, parent=O_LAYOUT.value, k_width=2))
ROW = gl.constexpr(gl.SliceLayout(1, S_LAYOUT.value))
O_ROW = gl.constexpr(gl.SliceLayout(1, O_LAYOUT.value))
LOADER_REGS = gl.constexpr(32)  # registers a thread of the loader warp (the idle rest of its warpgroup too)


@gluon.jit
def _copy_tile(K, bt_row, kv_off, stride_kp, stride_ks, n0, end, k_lo, k_hi, k_t, PAGE_SIZE: gl.constexpr):
    """cp.async keys [n0, n0 + BLOCK_N) (zero past `end`) into one stage, from one warp, in pieces of
    LOADER_SLICE rows x 64 dims (two 16-byte copies a lane: few registers); waited here."""
    PIECE: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [1, 1], [1, 0])
    cols = gl.arange(0, 64, gl.SliceLayout(0, PIECE))
    for r0 in gl.static_range(0, BLOCK_N, LOADER_SLICE):
        rows = n0 + r0 + gl.arange(0, LOADER_SLICE, gl.SliceLayout(1, PIECE))
        ok = rows < end
        page = gl.load(bt_row + rows // PAGE_SIZE, mask=ok, other=0).to(gl.int64)
        ptr = (K + kv_off + page * stride_kp + (rows % PAGE_SIZE).to(gl.int64) * stride_ks)[:, None] + cols[None, :]
        mask = ok[:, None] & (cols[None, :] < 64)
        for c in gl.static_range(HALF // 64):
            _cp_async(k_lo.slice(r0, LOADER_SLICE, dim=0).slice(c * 64, 64, dim=1), ptr + c * 64, mask=mask)
            _cp_async(k_hi.slice(r0, LOADER_SLICE, dim=0).slice(c * 64, 64, dim=1), ptr + HALF + c * 64, mask=mask)
        _cp_async(k_t.slice(r0, LOADER_SLICE, dim=0), ptr + 2 * HALF, mask=mask)
    async_copy.commit_group()
    async_copy.wait_group(0)


@gluon.jit
def _box_row(rows, r: gl.constexpr):
    """Entry r of `_tile_rows`' answer, as a scalar."""
    index = gl.arange(0, ROW_BLOCKS, rows.type.layout)
    return gl.sum(gl.where(index == r, rows, 0), 0)


@gluon.jit
def _loader_partition(k_lo, k_hi, k_t, bars, desc, K, BLOCK_TABLE, b, start, end, n_tiles, kv_off,
                      stride_kp, stride_ks, stride_btb,
                      PAGE_SIZE: gl.constexpr, TMA_ROWS: gl.constexpr, PROBE: gl.constexpr):
    """One warp: every tile into stage tile % 2, each part as soon as its previous keys are released (rope dims,
    then the latent halves: the order the scores take them in)."""
    full_t, full_lo, full_hi, empty_t, empty_lo, empty_hi, a_go, a_ready, b_ready, l_ready, q_full = bars
    ROWS_LAYOUT: gl.constexpr = gl.BlockedLayout([1], [32], [1], [0])
    bt_row = BLOCK_TABLE + b.to(gl.int64) * stride_btb
    rows = _tile_rows(bt_row, start, end, PAGE_SIZE, TMA_ROWS, ROWS_LAYOUT)
    for j in range(n_tiles):
        s = j % STAGES
        free = ((j // STAGES) & 1) ^ 1  # passes at once for each stage's first tile
        n0 = start + j * BLOCK_N
        if (PROBE & 1) != 0 and j >= STAGES:  # measurement: the stage keeps its old keys
            mbarrier.wait(empty_t.index(s), free)
            mbarrier.arrive(full_t.index(s), count=1)
            mbarrier.wait(empty_lo.index(s), free)
            mbarrier.arrive(full_lo.index(s), count=1)
            mbarrier.wait(empty_hi.index(s), free)
            mbarrier.arrive(full_hi.index(s), count=1)
        elif TMA_ROWS > 0 and n0 + BLOCK_N <= end:
            mbarrier.wait(empty_t.index(s), free)
            mbarrier.expect(full_t.index(s), BLOCK_N * TAIL * 2)
            for r in gl.static_range(BLOCK_N // TMA_ROWS):
                _tma_load(desc, [_box_row(rows, r), 2 * HALF], full_t.index(s),
                          k_t.index(s).slice(r * TMA_ROWS, TMA_ROWS, dim=0))
            mbarrier.wait(empty_lo.index(s), free)
            mbarrier.expect(full_lo.index(s), BLOCK_N * HALF * 2)
            for r in gl.static_range(BLOCK_N // TMA_ROWS):
                for c in gl.static_range(HALF // 64):
                    _tma_load(desc, [_box_row(rows, r), c * 64], full_lo.index(s),
                              k_lo.index(s).slice(r * TMA_ROWS, TMA_ROWS, dim=0).slice(c * 64, 64, dim=1))
            mbarrier.wait(empty_hi.index(s), free)
            mbarrier.expect(full_hi.index(s), BLOCK_N * HALF * 2)
            for r in gl.static_range(BLOCK_N // TMA_ROWS):
                for c in gl.static_range(HALF // 64):
                    _tma_load(desc, [_box_row(rows, r), HALF + c * 64], full_hi.index(s),
                              k_hi.index(s).slice(r * TMA_ROWS, TMA_ROWS, dim=0).slice(c * 64, 64, dim=1))
        else:  # a partial tile, or pages too small for a box: the whole stage at once, zero past `end`
            mbarrier.wait(empty_t.index(s), free)
            mbarrier.wait(empty_lo.index(s), free)
            mbarrier.wait(empty_hi.index(s), free)
            _copy_tile(K, bt_row, kv_off, stride_kp, stride_ks, n0, end, k_lo.index(s), k_hi.index(s),
                       k_t.index(s), PAGE_SIZE)
            fence_async_shared()
            mbarrier.arrive(full_t.index(s), count=1)
            mbarrier.arrive(full_lo.index(s), count=1)
            mbarrier.arrive(full_hi.index(s), count=1)
        # the next tile's block-table entries, read while this tile's keys come in
        rows = _tile_rows(bt_row, n0 + BLOCK_N, end, PAGE_SIZE, TMA_ROWS, ROWS_LAYOUT)


@gluon.jit
def _score_stage(q_lo, q_hi, q_t, bars, s: gl.constexpr, phase, k_lo, k_hi, k_t, S_LAYOUT: gl.constexpr):
    """Issue S = Q K^T over stage s (async wgmmas: rope dims, then the latent halves, each once it is loaded)."""
    full_t, full_lo, full_hi, empty_t, empty_lo, empty_hi, a_go, a_ready, b_ready, l_ready, q_full = bars
    mbarrier.wait(full_t.index(s), phase)
    # the zero accumulator made here, not kept live across the tile loop (32 registers a thread)
    zero = gl.zeros([BLOCK_H, BLOCK_N], gl.float32, S_LAYOUT)
    acc = warpgroup_mma(q_t, k_t.index(s).permute((1, 0)), zero, use_acc=False, is_async=True)
    mbarrier.wait(full_lo.index(s), phase)
    acc = warpgroup_mma(q_lo, k_lo.index(s).permute((1, 0)), acc, is_async=True)
    mbarrier.wait(full_hi.index(s), phase)
    return warpgroup_mma(q_hi, k_hi.index(s).permute((1, 0)), acc, is_async=True)


@gluon.jit
def _softmax_tile(qk, m_i, n0, end, qk_scale, offs_n):
    """P of one tile's scores and the new running max (keys past `end` masked; a tile holds at least one key
    that is not, so the max is finite), and the factor exp2(old max - new)."""
    n_ok = (n0 + offs_n) < end
    qk = gl.where(n_ok[None, :], qk * qk_scale, float("-inf"))
    m_new = gl.maximum(m_i, gl.max(qk, 1))
    return gl.exp2(qk - m_new[:, None]), m_new, gl.exp2(m_i - m_new)


@gluon.jit
def _partition_start(q_full, Q_TMA: gl.constexpr):
    """A warpgroup's running max and row sums, its output half (zeros) and the keys' offsets in a tile, once the
    queries are in shared memory."""
    m_i = gl.full([BLOCK_H], float("-inf"), gl.float32, ROW)
    l_i = gl.zeros([BLOCK_H], gl.float32, ROW)
    o = gl.zeros([BLOCK_H, HALF], gl.float32, O_LAYOUT)
    offs_n = gl.arange(0, BLOCK_N, gl.SliceLayout(0, S_LAYOUT))
    if Q_TMA:
        mbarrier.wait(q_full, 0)
    return m_i, l_i, o, offs_n


@gluon.jit
def _take_max(bar, phase, m_buf, m_i, l_i, o):
    """Once `bar` says the other warpgroup's running max is in `m_buf`, take it: this warpgroup's row sums and
    output half rescaled to it."""
    mbarrier.wait(bar, phase)
    m_new = m_buf.load(ROW)
    alpha = gl.exp2(m_i - m_new)
    return m_new, l_i * alpha, o * gl.convert_layout(alpha, O_ROW)[:, None]


@gluon.jit
def _release(bar):
    """Arrive on `bar` once every thread of the warpgroup is past its reads (its MMAs waited for)."""
    _barrier()
    mbarrier.arrive(bar, count=1)


@gluon.jit
def _even_partition(q_lo, q_hi, q_t, k_lo, k_hi, k_t, p_smem, rows_buf, bars,
                    OUT, LSE, GROUP_HEADS, grp, b, split, start, end, n_tiles, qk_scale,
                    stride_ob, stride_oh, stride_os, stride_lb, stride_lh, stride_ls, TRACE,
                    FINAL: gl.constexpr, TRACE_ON: gl.constexpr, Q_TMA: gl.constexpr, STAGED_STORE: gl.constexpr):
    """Warpgroup 0: scores and softmax of tiles A (stage 0), output columns [0, HALF) of every tile."""
    full_t, full_lo, full_hi, empty_t, empty_lo, empty_hi, a_go, a_ready, b_ready, l_ready, q_full = bars
    m_a_buf, m_b_buf, l_a_buf, l_b_buf = rows_buf

    m_i, l_i, o, offs_n = _partition_start(q_full, Q_TMA)
    _stamp(TRACE, 10, 0, TRACE_ON)
    for k in range(gl.cdiv(n_tiles, 2)):
        phase = k & 1
        acc = _score_stage(q_lo, q_hi, q_t, bars, 0, phase, k_lo, k_hi, k_t, S_LAYOUT)
        if TRACE_ON:
            if k == 0:
                _stamp(TRACE, 3, 0, TRACE_ON)
        acc = warpgroup_mma_wait(1, deps=[acc])  # all but the last latent half: B's scores may queue behind it
        mbarrier.arrive(a_go, count=1)
        qk = warpgroup_mma_wait(0, deps=[acc])
        _release(empty_t.index(0))
        p, m_i, alpha = _softmax_tile(qk, m_i, start + 2 * k * BLOCK_N, end, qk_scale, offs_n)
        l_i = l_i * alpha + gl.sum(p, 1)
        p16 = p.to(k_lo.dtype)
        p_smem.store(p16)
        m_a_buf.store(m_i)
        fence_async_shared()
        _release(a_ready)
        o = o * gl.convert_layout(alpha, O_ROW)[:, None]
        o = warpgroup_mma(gl.convert_layout(p16, P_LAYOUT), k_lo.index(0), o, is_async=True)
        o = warpgroup_mma_wait(0, deps=[o])
        _release(empty_lo.index(0))
        if 2 * k + 1 < n_tiles:
            m_i, l_i, o = _take_max(b_ready, phase, m_b_buf, m_i, l_i, o)
            mbarrier.wait(full_lo.index(1), phase)  # the loader's writes, visible to this warpgroup too
            o = warpgroup_mma(p_smem, k_lo.index(1), o, is_async=True)
            o = warpgroup_mma_wait(0, deps=[o])
            _release(empty_lo.index(1))

    _stamp(TRACE, 4, 0, TRACE_ON)
    l_a_buf.store(l_i)
    _release(l_ready)
    mbarrier.wait(l_ready, 0)
    l_i = l_i + l_b_buf.load(ROW)
    # staged through k_lo: past l_ready warpgroup 1 reads no k_lo again (its last scores came before b_ready)
    _store_half(OUT, LSE, o, l_i, m_i, 0, b, split, k_lo, GROUP_HEADS, grp, stride_ob, stride_oh, stride_os,
                stride_lb, stride_lh, stride_ls, TRACE, 5, O_LAYOUT, FINAL, True, STAGED_STORE, TRACE_ON)


@gluon.jit
def _odd_partition(q_lo, q_hi, q_t, k_lo, k_hi, k_t, p_smem, rows_buf, bars,
                   OUT, LSE, GROUP_HEADS, grp, b, split, start, end, n_tiles, qk_scale,
                   stride_ob, stride_oh, stride_os, stride_lb, stride_lh, stride_ls, TRACE,
                   FINAL: gl.constexpr, PROBE: gl.constexpr, TRACE_ON: gl.constexpr, Q_TMA: gl.constexpr,
                   STAGED_STORE: gl.constexpr):
    """Warpgroup 1: scores and softmax of tiles B (stage 1), output columns [HALF, 2 HALF) of every tile."""
    full_t, full_lo, full_hi, empty_t, empty_lo, empty_hi, a_go, a_ready, b_ready, l_ready, q_full = bars
    m_a_buf, m_b_buf, l_a_buf, l_b_buf = rows_buf
    VALUES: gl.constexpr = (PROBE & 2) == 0

    m_i, l_i, o, offs_n = _partition_start(q_full, Q_TMA)
    for k in range(gl.cdiv(n_tiles, 2)):
        phase = k & 1
        if 2 * k + 1 < n_tiles:
            mbarrier.wait(a_go, phase)
            acc = _score_stage(q_lo, q_hi, q_t, bars, 1, phase, k_lo, k_hi, k_t, S_LAYOUT)
            mbarrier.wait(a_ready, phase)
            m_a = m_a_buf.load(ROW)
            qk = warpgroup_mma_wait(0, deps=[acc])
            _release(empty_t.index(1))
            # rescale to A's max, then A's values over this half: on the tensor cores during B's softmax (touching
            # O before the scores are waited for made ptxas wait for them there anyway)
            alpha_a = gl.exp2(m_i - m_a)
            l_i = l_i * alpha_a
            o = o * gl.convert_layout(alpha_a, O_ROW)[:, None]
            mbarrier.wait(full_hi.index(0), phase)
            if VALUES:
                o = warpgroup_mma(p_smem, k_hi.index(0), o, is_async=True)
            p, m_i, alpha = _softmax_tile(qk, m_a, start + (2 * k + 1) * BLOCK_N, end, qk_scale, offs_n)
            l_i = l_i * alpha + gl.sum(p, 1)
            p16 = p.to(k_lo.dtype)
            if VALUES:
                o = warpgroup_mma_wait(0, deps=[o])
            _release(empty_hi.index(0))  # and P_A read: P_B may take its place
            p_smem.store(p16)
            m_b_buf.store(m_i)
            fence_async_shared()
            _release(b_ready)
            o = o * gl.convert_layout(alpha, O_ROW)[:, None]
            if VALUES:
                o = warpgroup_mma(gl.convert_layout(p16, P_LAYOUT), k_hi.index(1), o, is_async=True)
                o = warpgroup_mma_wait(0, deps=[o])
            _release(empty_hi.index(1))
        else:  # a last tile A without its B
            m_i, l_i, o = _take_max(a_ready, phase, m_a_buf, m_i, l_i, o)
            mbarrier.wait(full_hi.index(0), phase)
            if VALUES:
                o = warpgroup_mma(p_smem, k_hi.index(0), o, is_async=True)
                o = warpgroup_mma_wait(0, deps=[o])
            _release(empty_hi.index(0))

    l_b_buf.store(l_i)
    _release(l_ready)
    mbarrier.wait(l_ready, 0)
    l_i = l_i + l_a_buf.load(ROW)
    # staged through k_hi: past l_ready warpgroup 0 reads no k_hi again (its last scores came before a_ready)
    _store_half(OUT, LSE, o, l_i, m_i, HALF, b, split, k_hi, GROUP_HEADS, grp, stride_ob, stride_oh, stride_os,
                stride_lb, stride_lh, stride_ls, TRACE, 7, O_LAYOUT, FINAL, False, STAGED_STORE, TRACE_ON)


@gluon.jit
def _mla_seesaw_kernel(
    Q, Q_DESC, K, K_DESC, BLOCK_TABLE, LENGTHS, GROUP_KV, GROUP_HEADS, OUT, LSE,
    TRACE, qk_scale, num_splits, q_rows_per_seq,
    stride_qb, stride_qh, stride_kp, stride_ks, stride_kh, stride_btb,
    stride_ob, stride_oh, stride_os,
    stride_lb, stride_lh, stride_ls,
    FOUT, FLSE, COUNTERS,
    stride_fob, stride_foh, stride_flb, stride_flh,
    PAGE_SIZE: gl.constexpr, TMA_ROWS: gl.constexpr, FINAL: gl.constexpr, PROBE: gl.constexpr = 0,
    WORKER_REGS: gl.constexpr = 224,  # registers a thread of warpgroup 1 (mla_sm90.SCHEDULES)
    TRACE_ON: gl.constexpr = False, Q_TMA: gl.constexpr = False, STAGED_STORE: gl.constexpr = False,
    FUSED_MERGE: gl.constexpr = False, MERGE_P: gl.constexpr = 16,
):
    """`_gluon_mla._mla_decode_kernel`'s arguments and results, the seesaw schedule (module docstring)."""
    grp, split, b, start, end, n_tiles, kv_off = _program(LENGTHS, GROUP_KV, num_splits, stride_kh, TRACE, TRACE_ON)
    ROWS: gl.constexpr = gl.SwizzledSharedLayout(vec=1, per_phase=1, max_phase=1, order=[0])
    q_lo, q_hi, q_t, k_lo, k_hi, k_t, p_smem = _tile_buffers(Q, GROUP_HEADS, grp, b, stride_qb, stride_qh, Q_TMA)
    # A's max, B's max; warpgroup 0's and 1's row sums
    m_a_buf = gl.allocate_shared_memory(gl.float32, [BLOCK_H], ROWS)
    m_b_buf = gl.allocate_shared_memory(gl.float32, [BLOCK_H], ROWS)
    l_a_buf = gl.allocate_shared_memory(gl.float32, [BLOCK_H], ROWS)
    l_b_buf = gl.allocate_shared_memory(gl.float32, [BLOCK_H], ROWS)
    rows_buf = (m_a_buf, m_b_buf, l_a_buf, l_b_buf)

    full_t = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    full_lo = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    full_hi = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty_t = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty_lo = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty_hi = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    a_go = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    a_ready = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    b_ready = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    l_ready = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    if Q_TMA:
        q_full = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    else:
        q_full = l_ready  # a placeholder: the warpgroups wait on q_full only with Q_TMA
    for i in gl.static_range(STAGES):
        mbarrier.init(full_t.index(i), count=1)
        mbarrier.init(full_lo.index(i), count=1)
        mbarrier.init(full_hi.index(i), count=1)
        mbarrier.init(empty_t.index(i), count=1)
        mbarrier.init(empty_lo.index(i), count=1)
        mbarrier.init(empty_hi.index(i), count=1)
    mbarrier.init(a_go, count=1)
    mbarrier.init(a_ready, count=1)
    mbarrier.init(b_ready, count=1)
    mbarrier.init(l_ready, count=2)
    # Q_TMA: in flight while the first key tile is asked for; the warpgroups wait for it on q_full
    _start_queries(Q_DESC, GROUP_HEADS, grp, b, q_rows_per_seq, q_full, q_lo, q_hi, q_t, Q_TMA)
    _stamp(TRACE, 2, 0, TRACE_ON)

    bars = (full_t, full_lo, full_hi, empty_t, empty_lo, empty_hi, a_go, a_ready, b_ready, l_ready, q_full)
    gl.warp_specialize([
        (_even_partition, (q_lo, q_hi, q_t, k_lo, k_hi, k_t, p_smem, rows_buf, bars,
                           OUT, LSE, GROUP_HEADS, grp, b, split, start, end, n_tiles, qk_scale,
                           stride_ob, stride_oh, stride_os, stride_lb, stride_lh, stride_ls, TRACE, FINAL,
                           TRACE_ON, Q_TMA, STAGED_STORE)),
        (_odd_partition, (q_lo, q_hi, q_t, k_lo, k_hi, k_t, p_smem, rows_buf, bars,
                          OUT, LSE, GROUP_HEADS, grp, b, split, start, end, n_tiles, qk_scale,
                          stride_ob, stride_oh, stride_os, stride_lb, stride_lh, stride_ls, TRACE, FINAL, PROBE,
                          TRACE_ON, Q_TMA, STAGED_STORE)),
        (_loader_partition, (k_lo, k_hi, k_t, bars, K_DESC, K, BLOCK_TABLE, b, start, end, n_tiles, kv_off,
                             stride_kp, stride_ks, stride_btb, PAGE_SIZE, TMA_ROWS, PROBE)),
    ], [4, 1], [WORKER_REGS, LOADER_REGS])
    if FUSED_MERGE:  # past the partitions, as in _gluon_mla
        _grid_merge(OUT, LSE, FOUT, FLSE, COUNTERS, GROUP_HEADS, k_lo, k_hi,
                    _block_index(0), _block_index(2), _block_index(1), num_splits,
                    stride_ob, stride_oh, stride_os, stride_lb, stride_lh, stride_ls,
                    stride_fob, stride_foh, stride_flb, stride_flh, TRACE, MERGE_P, TRACE_ON)
