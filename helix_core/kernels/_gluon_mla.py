"""Hopper (sm_90) absorbed-MLA decode kernel in Gluon, with two warpgroups in different roles.

Why not the Triton kernel: with 64 heads a program, Triton gives a score dot that feeds another dot
all warps stacked along the heads, so two warpgroups either both compute every score or each
computes half the keys at wgmma N = 16-32, where re-reading Q from shared memory per instruction
bounds the tensor pipe. Here the roles are explicit (the layout FlashMLA popularised):

  warpgroup 0 ("scores", the default partition): S = Q K^T for the tile (wgmma M 64 x N 64, K 576:
      Q and K from shared memory), the online softmax (it owns the running max and sum), P to
      shared memory for warpgroup 1, then O[:, :256] += P V[:, :256] with P from its registers.
  warpgroup 1 ("values", a worker partition): loads the next tile's keys from the paged cache by TMA
      (boxes of min(page, 64) keys x 64 dims, their block-table entries read a tile ahead) while
      warpgroup 0 works on this one, then O[:, 256:] += P V[:, 256:] with P from shared memory.
      The partial last tile, and every tile of pages too small for a box, by cp.async (zero fill).

Keys are the first 512 dims (nope / latent) plus 64 rope dims; values are the first 512 dims, so
each cached byte is read once. Shared memory: Q (72 KB), two key tiles (2 x 72 KB), P (8 KB):
230,236 of the 232,448 bytes an sm_90 block may use, one program a SM.

Synchronisation (mbarriers, single-arrive; each partition passes its own barrier before it arrives,
so all of its threads' stores are done):
  full[s]   tile in stage s is loaded (warpgroup 1 -> 0)
  empty[s]  both warpgroups are done reading stage s (count 2)
  p_ready   P and the rescale factor of this tile are in shared memory (0 -> 1)
  p_free    warpgroup 1 has read them (1 -> 0)
  done      the final row sums are in shared memory (0 -> 1)

PROBE (measurement only, wrong results): bit 1 loads only the first two tiles, bit 2 drops warpgroup 1's
value MMA, bit 4 warpgroup 0's score and value MMAs; scripts/gpu_gluon_mla.py `probe` and `bound` time them to see
what bounds the kernel.
TRACE_ON (measurement only, same results): each program writes clock readings at its stages into a row of
TRACE (see TRACE_SLOTS); scripts/gpu_gluon_mla.py `timeline` reads them to see where a short split's time goes.

Q_TMA: the block's queries come by TMA (its 64 heads consecutive rows of Q), in flight while warpgroup 1
asks for the first key tile; warpgroup 0 waits for them on q_full. Otherwise they go through registers
before the partitions start (the only way for a block of scattered or padded heads).

STAGED_STORE: after the tile loop each warpgroup writes its normalized [64, 256] fp32 output half into its own
key buffers (warpgroup 0 into k_lo, 1 into k_hi: 64 KB each, free by then), reads it back 16 rows at a time in a
row-major layout and stores 16-byte (fp32) or 8-byte (16-bit) vectors of one row a thread. From the MMA layout a
thread's pieces are 8 bytes (fp32) or 4 (16-bit: half a sector for 4 threads). The same values reach the same
places.

FUSED_MERGE (several splits; every program of the launch resident at once: one wave, launched cooperatively):
no merge kernel. Past the two partitions (so the merge's arguments take none of their registers), each
program, its partial stored, bumps its (sequence, head block)'s counter and waits until all num_splits
programs of the block have (a grid barrier per block); then program `split` merges rows split,
split + num_splits, ... of the block with the merge kernel's arithmetic, its partials brought from L2 by
cp.async into the key buffers (two chunks of splits in flight). The last program to leave puts the counter
back to 0 for the next launch or graph replay. It saves the merge kernel's launch and the gap before it, but
on an H100 it was slower than the merge kernel in all three versions measured (docs/benchmarks.md, tenth and
eleventh sessions of 2026-12-06): the barrier passes 0.8 us after the last partial is stored, but each
program then merges a row of 66 splits (135 KB) in about 8 us, where the merge kernel and the gap before it
take about 3.6.

One program = (head block of 64, split, sequence); it writes the normalized partial output and its
base-2 LSE like `_triton_decode._decode_split_kernel` (FINAL: the output and natural LSE), so the
same merge kernel combines the splits. Compiled only for sm_90 with a Gluon-capable Triton (3.5+);
Gluon has no CPU interpreter, so CI compiles it for sm_90 (kernels/sm90_report.py) and the GPU tests
check its numbers.
"""
from __future__ import annotations

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, tma, warpgroup_mma,
                                                              warpgroup_mma_wait)

# the barrier of the warps running the code (a partition's own named barrier inside one): Triton 3.6
# calls it thread_barrier, 3.9 barrier
_barrier = getattr(gl, "thread_barrier", None) or gl.barrier
# cp.async global -> shared: async_copy_global_to_shared in 3.6, async_load in 3.9
_cp_async = getattr(async_copy, "async_load", None) or async_copy.async_copy_global_to_shared
_tma_load = getattr(tma, "async_load", None) or tma.async_copy_global_to_shared  # TMA, likewise renamed
# a shared-memory view as another dtype / shape / layout: _reinterpret in 3.6, reinterpret in 3.9
_REINTERPRET_PUBLIC = gl.constexpr(hasattr(gl.shared_memory_descriptor, "reinterpret"))

INTERPRET = False  # kernel_module's bookkeeping: Gluon kernels never run under the interpreter

BLOCK_H = gl.constexpr(64)  # heads a program: one wgmma M tile
BLOCK_N = gl.constexpr(64)  # keys a tile: wgmma N 64 keeps the score MMAs from being bound by shared-memory reads
HALF = gl.constexpr(256)  # value columns a warpgroup owns (Dv 512)
TAIL = gl.constexpr(64)  # rope dims after the 512 latent dims
STAGES = gl.constexpr(2)  # key tiles in shared memory
ROW_BLOCKS = gl.constexpr(8)  # TMA boxes a tile at most (boxes of >= 8 keys: whole 128-byte swizzle atoms)
# TRACE row of a program (int64): where each reading is written (clock: the SM's %clock64; time: %globaltimer, ns)
TRACE_SLOTS = ("time_start", "clock_start", "clock_q_ready", "clock_first_tile", "clock_loop_end", "clock_stored",
               "time_stored", "clock_values_stored", "time_values_stored", "sm", "clock_q_arrived",
               "time_arrived", "time_released", "time_merged")  # the last three: FUSED_MERGE's grid barrier
TRACE_ROW = gl.constexpr(16)
MAX_POLLS = gl.constexpr(1 << 24)  # FUSED_MERGE: polls of the block's counter before the kernel traps (>= 0.3 us each)
MERGE_SUB = gl.constexpr(16)  # FUSED_MERGE: splits a thread copies or sums at a time (16 x 16 bytes)
STAGED_ROWS = gl.constexpr(16)  # STAGED_STORE: output rows a warpgroup stores at a time (32 fp32 registers a thread)


@gluon.jit
def _stamp(TRACE, slot: gl.constexpr, WHAT: gl.constexpr, ON: gl.constexpr):
    """Write one reading (WHAT 0: %clock64, 1: %globaltimer, 2: %smid) into `slot` of this program's TRACE row,
    from the warps running the code (4)."""
    if ON:
        lane = gl.arange(0, 128, gl.BlockedLayout([1], [32], [4], [0]))
        if WHAT == 0:
            value = gl.inline_asm_elementwise("mov.u64 $0, %clock64;", "=l,l", [lane.to(gl.int64)], dtype=gl.int64,
                                              is_pure=False, pack=1)
        elif WHAT == 1:
            value = gl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l,l", [lane.to(gl.int64)],
                                              dtype=gl.int64, is_pure=False, pack=1)
        else:
            value = gl.inline_asm_elementwise("mov.u32 $0, %smid;", "=r,r", [lane], dtype=gl.int32,
                                              is_pure=False, pack=1).to(gl.int64)
        row = (gl.program_id(2) * gl.num_programs(1) + gl.program_id(1)) * gl.num_programs(0) + gl.program_id(0)
        gl.store(TRACE + row.to(gl.int64) * TRACE_ROW + slot + lane * 0, value, mask=lane == 0)


@gluon.jit
def _issue_tile(K, bt_row, kv_off, stride_kp, stride_ks, n0, end, k_lo, k_hi, k_t,
                PAGE_SIZE: gl.constexpr, WIDE: gl.constexpr, NARROW: gl.constexpr):
    """cp.async keys [n0, n0 + BLOCK_N) of a sequence (zero past `end`) into one stage's buffers."""
    rows = n0 + gl.arange(0, BLOCK_N, gl.SliceLayout(1, WIDE))
    ok = rows < end
    page = gl.load(bt_row + rows // PAGE_SIZE, mask=ok, other=0).to(gl.int64)
    base = K + kv_off + page * stride_kp + (rows % PAGE_SIZE).to(gl.int64) * stride_ks
    cols = gl.arange(0, HALF, gl.SliceLayout(0, WIDE))
    ptr = base[:, None] + cols[None, :]
    mask = ok[:, None] & (cols[None, :] < HALF)
    _cp_async(k_lo, ptr, mask=mask)
    _cp_async(k_hi, ptr + HALF, mask=mask)

    rows_t = n0 + gl.arange(0, BLOCK_N, gl.SliceLayout(1, NARROW))
    ok_t = rows_t < end
    page_t = gl.load(bt_row + rows_t // PAGE_SIZE, mask=ok_t, other=0).to(gl.int64)
    base_t = K + kv_off + page_t * stride_kp + (rows_t % PAGE_SIZE).to(gl.int64) * stride_ks + 2 * HALF
    cols_t = gl.arange(0, TAIL, gl.SliceLayout(0, NARROW))
    _cp_async(k_t, base_t[:, None] + cols_t[None, :], mask=ok_t[:, None] & (cols_t[None, :] < TAIL))
    async_copy.commit_group()


@gluon.jit
def _tile_rows(bt_row, n0, end, PAGE_SIZE: gl.constexpr, TMA_ROWS: gl.constexpr, LAYOUT: gl.constexpr):
    """The cache rows where tile n0's TMA boxes start ([ROW_BLOCKS]; entries past the tile or `end`: 0). Read a
    tile ahead of their use, so no block-table round trip sits between a stage's release and its next load."""
    r = gl.arange(0, ROW_BLOCKS, LAYOUT)
    if TMA_ROWS == 0:  # no TMA: unused
        return r * 0
    else:
        first = n0 + r * TMA_ROWS
        ok = (r < BLOCK_N // TMA_ROWS) & (first < end)
        return gl.load(bt_row + first // PAGE_SIZE, mask=ok, other=0) * PAGE_SIZE + first % PAGE_SIZE


@gluon.jit
def _load_tile(desc, K, bt_row, kv_off, stride_kp, stride_ks, n0, end, rows, bar, k_lo, k_hi, k_t,
               PAGE_SIZE: gl.constexpr, TMA_ROWS: gl.constexpr, WIDE: gl.constexpr, NARROW: gl.constexpr):
    """Start loading keys [n0, n0 + BLOCK_N) into one stage; `bar` completes when they are in shared memory.
    TMA_ROWS > 0: whole tiles by TMA in boxes of TMA_ROWS keys x 64 dims starting at `rows` (`_tile_rows`; a page
    holds whole boxes; the barrier counts the bytes). The partial last tile, and every tile when TMA_ROWS == 0,
    by cp.async with zero fill past `end` (stale cache rows could hold NaN, which P = 0 would not cancel),
    waited here."""
    if TMA_ROWS > 0 and n0 + BLOCK_N <= end:
        mbarrier.expect(bar, BLOCK_N * (2 * HALF + TAIL) * 2)
        index = gl.arange(0, ROW_BLOCKS, rows.type.layout)
        for r in gl.static_range(BLOCK_N // TMA_ROWS):
            row = gl.sum(gl.where(index == r, rows, 0), 0)
            for c in gl.static_range(HALF // 64):
                _tma_load(desc, [row, c * 64], bar, k_lo.slice(r * TMA_ROWS, TMA_ROWS, dim=0).slice(c * 64, 64, dim=1))
                _tma_load(desc, [row, HALF + c * 64], bar,
                          k_hi.slice(r * TMA_ROWS, TMA_ROWS, dim=0).slice(c * 64, 64, dim=1))
            _tma_load(desc, [row, 2 * HALF], bar, k_t.slice(r * TMA_ROWS, TMA_ROWS, dim=0))
    else:
        _issue_tile(K, bt_row, kv_off, stride_kp, stride_ks, n0, end, k_lo, k_hi, k_t, PAGE_SIZE, WIDE, NARROW)
        async_copy.wait_group(0)
        _barrier()
        fence_async_shared()
        mbarrier.arrive(bar, count=1)


@gluon.jit
def _store_half(OUT, LSE, o, l_i, m_i, col0, b, split, stage, GROUP_HEADS, grp,
                stride_ob, stride_oh, stride_os, stride_lb, stride_lh, stride_ls, TRACE, slot: gl.constexpr,
                O_LAYOUT: gl.constexpr, FINAL: gl.constexpr, WRITE_LSE: gl.constexpr, STAGED: gl.constexpr,
                TRACE_ON: gl.constexpr):
    """Normalize one warpgroup's [BLOCK_H, HALF] output columns and store them (and, once, the LSE), then stamp
    TRACE slots `slot` (clock) and `slot` + 1 (time).
    STAGED: through `stage` (this warpgroup's key buffers, [STAGES, BLOCK_N, HALF] 16-bit, free once the tile loop
    is over: 64 KB, the fp32 half's size), back in rows of 16-byte vectors, so each warp store writes whole 32-byte
    sectors of one row; else straight from the MMA layout (a store writes 8 rows x 32 bytes in fp32, and half
    sectors in 16 bits)."""
    offs_h = gl.arange(0, BLOCK_H, l_i.type.layout)
    heads = gl.load(GROUP_HEADS + grp * BLOCK_H + offs_h)
    h_ok = heads >= 0
    heads = gl.where(h_ok, heads, 0).to(gl.int64)
    out = o / gl.convert_layout(gl.where(l_i > 0.0, l_i, 1.0), gl.SliceLayout(1, O_LAYOUT))[:, None]
    if STAGED:
        STAGED_SMEM: gl.constexpr = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=32, rank=2)
        if _REINTERPRET_PUBLIC:
            staged = stage.reinterpret(gl.float32, [BLOCK_H, HALF], STAGED_SMEM)
        else:
            staged = stage._reinterpret(gl.float32, [BLOCK_H, HALF], STAGED_SMEM)
        staged.store(out)
        _barrier()  # every thread's part is in before any thread reads another's
        ROWS_OUT: gl.constexpr = gl.BlockedLayout([1, 4], [1, 32], [4, 1], [1, 0])
        cols = col0 + gl.arange(0, HALF, gl.SliceLayout(0, ROWS_OUT))
        for r in gl.static_range(BLOCK_H // STAGED_ROWS):
            part = staged.slice(r * STAGED_ROWS, STAGED_ROWS, dim=0).load(ROWS_OUT)
            offs = r * STAGED_ROWS + gl.arange(0, STAGED_ROWS, gl.SliceLayout(1, ROWS_OUT))
            rows = gl.load(GROUP_HEADS + grp * BLOCK_H + offs)
            rows_ok = rows >= 0
            o_ptr = (OUT + b.to(gl.int64) * stride_ob + gl.where(rows_ok, rows, 0).to(gl.int64)[:, None] * stride_oh
                     + split * stride_os + cols[None, :])
            gl.store(o_ptr, part.to(OUT.dtype.element_ty), mask=rows_ok[:, None] & (cols[None, :] < 2 * HALF))
    else:
        rows = gl.convert_layout(heads, gl.SliceLayout(1, O_LAYOUT))
        rows_ok = gl.convert_layout(h_ok, gl.SliceLayout(1, O_LAYOUT))
        cols = col0 + gl.arange(0, HALF, gl.SliceLayout(0, O_LAYOUT))
        o_ptr = OUT + b.to(gl.int64) * stride_ob + rows[:, None] * stride_oh + split * stride_os + cols[None, :]
        gl.store(o_ptr, out.to(OUT.dtype.element_ty), mask=rows_ok[:, None] & (cols[None, :] < 2 * HALF))
    if WRITE_LSE:
        has = l_i > 0.0
        lse2 = gl.where(has, m_i + gl.log2(gl.where(has, l_i, 1.0)), float("-inf"))
        if FINAL:
            lse2 = lse2 * 0.6931471805599453
        gl.store(LSE + b.to(gl.int64) * stride_lb + heads * stride_lh + split * stride_ls, lse2, mask=h_ok)
    _stamp(TRACE, slot, 0, TRACE_ON)
    _stamp(TRACE, slot + 1, 1, TRACE_ON)


@gluon.jit
def _block_index(axis: gl.constexpr):
    """%ctaid.x / y / z read anew (not CSE'd with program_id), so the program's indices need not stay live in a
    register through the partitions (Triton 3.6 spilled one, reloaded every tile)."""
    if axis == 0:
        return gl.inline_asm_elementwise("mov.u32 $0, %ctaid.x;", "=r", [], dtype=gl.int32, is_pure=False, pack=1)
    elif axis == 1:
        return gl.inline_asm_elementwise("mov.u32 $0, %ctaid.y;", "=r", [], dtype=gl.int32, is_pure=False, pack=1)
    else:
        return gl.inline_asm_elementwise("mov.u32 $0, %ctaid.z;", "=r", [], dtype=gl.int32, is_pure=False, pack=1)


@gluon.jit
def _copy_splits(buf, out_row, first, num_splits, stride_os, CHUNK: gl.constexpr, SUB: gl.constexpr):
    """cp.async splits [first, first + CHUNK) of one row's partials into `buf` ([CHUNK, 512]) as one copy group,
    MERGE_SUB splits at a time (each thread the 16-byte pieces it will read: few addresses live at once); splits
    past num_splits copy nothing."""
    offs_sub = gl.arange(0, MERGE_SUB, gl.SliceLayout(1, SUB))
    cols = gl.arange(0, 2 * HALF, gl.SliceLayout(0, SUB))
    for sub in gl.static_range(CHUNK // MERGE_SUB):
        offs_s = first + sub * MERGE_SUB + offs_sub
        _cp_async(buf.slice(sub * MERGE_SUB, MERGE_SUB, dim=0), out_row + offs_s[:, None] * stride_os + cols[None, :],
                  mask=(offs_s < num_splits)[:, None] & (cols[None, :] < 2 * HALF), cache_modifier=".cg")
    async_copy.commit_group()


@gluon.jit
def _sum_chunk(buf, lse_row, stride_ls, safe, num_splits, acc, first, SUB: gl.constexpr, CHUNK: gl.constexpr):
    """acc + the weighted sum of splits [first, first + CHUNK) from `buf`, once its copy group is in (the one
    group after it may still be in flight); splits past num_splits weigh 0."""
    async_copy.wait_group(1)
    _barrier()  # every thread's copies are in (each reads its own, but this does not rely on it)
    for sub in gl.static_range(CHUNK // MERGE_SUB):
        if first + sub * MERGE_SUB < num_splits:  # pieces wholly past the splits were not copied
            o = buf.slice(sub * MERGE_SUB, MERGE_SUB, dim=0).load(SUB)
            offs_s = first + sub * MERGE_SUB + gl.arange(0, MERGE_SUB, gl.SliceLayout(1, SUB))
            w = gl.exp2(gl.load(lse_row + offs_s * stride_ls, mask=offs_s < num_splits, other=float("-inf")) - safe)
            acc += gl.sum(gl.where(w[:, None] > 0.0, o.to(gl.float32) * w[:, None], 0.0), 0)
    _barrier()  # every thread has read `buf` before a new copy into it may land
    return acc


@gluon.jit
def _grid_merge(PART_OUT, PART_LSE, FOUT, FLSE, COUNTERS, GROUP_HEADS, k_lo, k_hi, grp, b, split, num_splits,
                stride_ob, stride_oh, stride_os, stride_lb, stride_lh, stride_ls,
                stride_fob, stride_foh, stride_flb, stride_flh, TRACE, MERGE_P: gl.constexpr, TRACE_ON: gl.constexpr):
    """FUSED_MERGE's end of a program (its first warpgroup, past both partitions): arrive at the block's counter
    once the program's partial is stored, wait for the block's other num_splits - 1 programs, merge rows split,
    split + num_splits, ... of the block (`_triton_decode._merge_kernel`'s arithmetic: fp32, weights
    exp2(lse - peak), a split without keys weighs 0) into FOUT / FLSE (natural log), then leave; the last to
    leave resets the counter. MERGE_P: num_splits rounded up to a power of two (>= 16)."""
    counter = COUNTERS + b * gl.num_programs(0) + grp
    _barrier()  # every thread's partial stores (both partitions, joined) precede the (releasing) arrival
    _stamp(TRACE, 11, 1, TRACE_ON)
    seen = gl.atomic_add(counter, 1, sem="acq_rel", scope="gpu") + 1
    polls = 0
    while (seen < num_splits) & (polls <= MAX_POLLS):  # every program is resident (one cooperative wave)
        seen = gl.atomic_add(counter, 0, sem="acquire", scope="gpu")
        polls += 1
    # seconds of polling: a corrupted count (launches overlapping on the counters); fail (a CUDA error), don't hang
    # (the asm's 0 starts the row loop below, so the compiler keeps it)
    zero = gl.inline_asm_elementwise("{ .reg .pred late; setp.gt.s32 late, $1, $2; @late trap; mov.u32 $0, 0; }",
                                     "=r,r,r", [polls, MAX_POLLS], dtype=gl.int32, is_pure=False, pack=1)
    _stamp(TRACE, 12, 1, TRACE_ON)

    # A row's partials come into shared memory by cp.async, a chunk of splits into each of two buffers (the key
    # stages of both warpgroups, free now): a chunk's copies are all in flight at once, and the next chunk's while
    # this one is summed. Loads into registers did not get there: v2 stored each 32-column tile before loading the
    # next (16 dependent L2 trips a row), and without the stores ptxas still sank each load to its use.
    # Each thread copies, then reads, 4 columns (16 bytes) of a row's splits, MERGE_SUB splits at a time
    # (16: no spills on Triton 3.6 or 3.9, where 8 spilled on 3.6, and about 2 us faster at 1 x 32K on an H100).
    part_dtype: gl.constexpr = PART_OUT.dtype.element_ty
    # the splits a k_lo / k_hi buffer ([STAGES, BLOCK_N, HALF] 16-bit) holds
    CHUNK: gl.constexpr = STAGES * BLOCK_N * HALF * 2 // (2 * HALF * part_dtype.primitive_bitwidth // 8)
    PLAIN: gl.constexpr = gl.SwizzledSharedLayout(vec=1, per_phase=1, max_phase=1, order=[1, 0])
    if _REINTERPRET_PUBLIC:
        buf_a = k_lo.reinterpret(part_dtype, [CHUNK, 2 * HALF], PLAIN)
        buf_b = k_hi.reinterpret(part_dtype, [CHUNK, 2 * HALF], PLAIN)
    else:
        buf_a = k_lo._reinterpret(part_dtype, [CHUNK, 2 * HALF], PLAIN)
        buf_b = k_hi._reinterpret(part_dtype, [CHUNK, 2 * HALF], PLAIN)
    SUB: gl.constexpr = gl.BlockedLayout([MERGE_SUB, 4], [1, 32], [1, 4], [1, 0])
    SPREAD: gl.constexpr = gl.BlockedLayout([1], [32], [4], [0])  # the row's LSEs, for their peak and sum
    offs_all = gl.arange(0, MERGE_P, SPREAD)
    cols = gl.arange(0, 2 * HALF, gl.SliceLayout(0, SUB))
    bb = b.to(gl.int64)
    for r in range(split + zero, BLOCK_H, num_splits):
        head = gl.load(GROUP_HEADS + grp * BLOCK_H + r)
        if head >= 0:
            hh = head.to(gl.int64)
            out_row = PART_OUT + bb * stride_ob + hh * stride_oh
            _copy_splits(buf_a, out_row, 0, num_splits, stride_os, CHUNK, SUB)
            _copy_splits(buf_b, out_row, CHUNK, num_splits, stride_os, CHUNK, SUB)
            lse_row = PART_LSE + bb * stride_lb + hh * stride_lh
            # cached in L1 (past the acquiring poll, so not stale): _sum_chunk reads them again, a branch a piece
            lses = gl.load(lse_row + offs_all * stride_ls, mask=offs_all < num_splits, other=float("-inf"))
            peak = gl.max(lses, 0)
            safe = gl.where(peak == float("-inf"), 0.0, peak)
            total = gl.sum(gl.exp2(lses - safe), 0)
            has = total > 0.0
            acc = gl.zeros([2 * HALF], gl.float32, gl.SliceLayout(0, SUB))
            # chunks c (buffer a) and c + 1 (b) a trip; every chunk is one copy group (an empty one past the
            # splits), so waiting for all but the newest group always means the buffer about to be read is in
            for c in range(0, num_splits, 2 * CHUNK):
                acc = _sum_chunk(buf_a, lse_row, stride_ls, safe, num_splits, acc, c, SUB, CHUNK)
                _copy_splits(buf_a, out_row, c + 2 * CHUNK, num_splits, stride_os, CHUNK, SUB)
                acc = _sum_chunk(buf_b, lse_row, stride_ls, safe, num_splits, acc, c + CHUNK, SUB, CHUNK)
                _copy_splits(buf_b, out_row, c + 3 * CHUNK, num_splits, stride_os, CHUNK, SUB)
            async_copy.wait_group(0)  # the empty groups past the splits
            merged = acc / gl.where(has, total, 1.0)
            gl.store(FOUT + bb * stride_fob + hh * stride_foh + cols, merged.to(FOUT.dtype.element_ty))
            lse = gl.where(has, (safe + gl.log2(gl.where(has, total, 1.0))) * 0.6931471805599453, float("-inf"))
            gl.store(FLSE + bb * stride_flb + hh * stride_flh, lse)

    _stamp(TRACE, 13, 1, TRACE_ON)
    left = gl.atomic_add(counter, 1, sem="relaxed", scope="gpu")
    if left == 2 * num_splits - 1:  # the last to leave: every program of the block is past its wait
        gl.atomic_xchg(counter, 0, sem="relaxed", scope="gpu")


@gluon.jit
def _scores(q_lo, q_hi, q_t, k_lo, k_hi, k_t, zero_s):
    """Issue S = Q K^T for one stage (latent halves and rope dims, accumulated): an async wgmma chain."""
    acc = warpgroup_mma(q_lo, k_lo.permute((1, 0)), zero_s, use_acc=False, is_async=True)
    acc = warpgroup_mma(q_hi, k_hi.permute((1, 0)), acc, is_async=True)
    return warpgroup_mma(q_t, k_t.permute((1, 0)), acc, is_async=True)


@gluon.jit
def _scores_partition(q_lo, q_hi, q_t, k_lo, k_hi, k_t, p_smem, alpha_smem, l_smem, bars,
                      OUT, LSE, GROUP_HEADS, grp, b, split, start, end, n_tiles, qk_scale,
                      stride_ob, stride_oh, stride_os, stride_lb, stride_lh, stride_ls, TRACE,
                      FINAL: gl.constexpr, PROBE: gl.constexpr, TRACE_ON: gl.constexpr, Q_TMA: gl.constexpr,
                      STAGED_STORE: gl.constexpr):
    """Warpgroup 0: scores, softmax, and output columns [0, HALF)."""
    full, empty, p_ready, p_free, done, q_full = bars
    S_LAYOUT: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, BLOCK_N, 16])
    O_LAYOUT: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, HALF, 16])
    P_LAYOUT: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=O_LAYOUT, k_width=2)
    ROW: gl.constexpr = gl.SliceLayout(1, S_LAYOUT)

    m_i = gl.full([BLOCK_H], float("-inf"), gl.float32, ROW)
    l_i = gl.zeros([BLOCK_H], gl.float32, ROW)
    o = gl.zeros([BLOCK_H, HALF], gl.float32, O_LAYOUT)
    zero_s = gl.zeros([BLOCK_H, BLOCK_N], gl.float32, S_LAYOUT)
    offs_n = gl.arange(0, BLOCK_N, gl.SliceLayout(0, S_LAYOUT))
    if Q_TMA:
        mbarrier.wait(q_full, 0)
    _stamp(TRACE, 10, 0, TRACE_ON)
    for j in range(n_tiles):
        s = j % STAGES
        mbarrier.wait(full.index(s), (j // STAGES) & 1)
        if TRACE_ON:
            if j == 0:
                _stamp(TRACE, 3, 0, TRACE_ON)
        if (PROBE & 4) == 0:
            qk = warpgroup_mma_wait(0, deps=[_scores(q_lo, q_hi, q_t, k_lo.index(s), k_hi.index(s), k_t.index(s),
                                                     zero_s)])
        else:
            qk = zero_s
        n_ok = (start + j * BLOCK_N + offs_n) < end
        qk = gl.where(n_ok[None, :], qk * qk_scale, float("-inf"))
        # every tile holds at least one visible key, so m_new is finite
        m_new = gl.maximum(m_i, gl.max(qk, 1))
        alpha = gl.exp2(m_i - m_new)
        p = gl.exp2(qk - m_new[:, None])
        l_i = l_i * alpha + gl.sum(p, 1)
        m_i = m_new
        p16 = p.to(k_lo.dtype)

        mbarrier.wait(p_free, (j & 1) ^ 1)  # warpgroup 1 has read the previous tile's P
        p_smem.store(p16)
        alpha_smem.store(alpha)
        fence_async_shared()
        _barrier()
        mbarrier.arrive(p_ready, count=1)

        o = o * gl.convert_layout(alpha, gl.SliceLayout(1, O_LAYOUT))[:, None]
        # (queueing the next tile's scores behind this MMA before waiting was slower: H200, 128 heads, 4 x 512K
        # keys, 1178 against 984 us; 2026-12-04, third session)
        if (PROBE & 4) == 0:
            o = warpgroup_mma(gl.convert_layout(p16, P_LAYOUT), k_lo.index(s), o, is_async=True)
            o = warpgroup_mma_wait(0, deps=[o])
        mbarrier.arrive(empty.index(s), count=1)

    _stamp(TRACE, 4, 0, TRACE_ON)
    l_smem.store(l_i)
    _barrier()
    mbarrier.arrive(done, count=1)
    # staged through its own key buffers (warpgroup 1 reads only k_hi from here on)
    _store_half(OUT, LSE, o, l_i, m_i, 0, b, split, k_lo, GROUP_HEADS, grp, stride_ob, stride_oh, stride_os,
                stride_lb, stride_lh, stride_ls, TRACE, 5, O_LAYOUT, FINAL, True, STAGED_STORE, TRACE_ON)


@gluon.jit
def _values_partition(k_lo, k_hi, k_t, p_smem, alpha_smem, l_smem, bars,
                      desc, K, BLOCK_TABLE, OUT, LSE, GROUP_HEADS, grp, b, split, start, end, n_tiles, kv_off,
                      stride_kp, stride_ks, stride_btb,
                      stride_ob, stride_oh, stride_os, stride_lb, stride_lh, stride_ls, TRACE,
                      PAGE_SIZE: gl.constexpr, TMA_ROWS: gl.constexpr, FINAL: gl.constexpr, PROBE: gl.constexpr,
                      TRACE_ON: gl.constexpr, STAGED_STORE: gl.constexpr):
    """Warpgroup 1: loads every tile (one ahead of warpgroup 0) and output columns [HALF, 2 HALF)."""
    full, empty, p_ready, p_free, done, q_full = bars
    O_LAYOUT: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, HALF, 16])
    WIDE: gl.constexpr = gl.BlockedLayout([1, 8], [1, 32], [4, 1], [1, 0])
    NARROW: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [4, 1], [1, 0])
    ROW: gl.constexpr = gl.SliceLayout(1, O_LAYOUT)
    bt_row = BLOCK_TABLE + b.to(gl.int64) * stride_btb

    ROWS_LAYOUT: gl.constexpr = gl.BlockedLayout([1], [32], [4], [0])
    if n_tiles > 0:  # the first tile, before the loop
        rows = _tile_rows(bt_row, start, end, PAGE_SIZE, TMA_ROWS, ROWS_LAYOUT)
        _load_tile(desc, K, bt_row, kv_off, stride_kp, stride_ks, start, end, rows, full.index(0), k_lo.index(0),
                   k_hi.index(0), k_t.index(0), PAGE_SIZE, TMA_ROWS, WIDE, NARROW)
    rows_next = _tile_rows(bt_row, start + BLOCK_N, end, PAGE_SIZE, TMA_ROWS, ROWS_LAYOUT)

    o = gl.zeros([BLOCK_H, HALF], gl.float32, O_LAYOUT)
    for j in range(n_tiles):
        s = j % STAGES
        nxt = j + 1
        if nxt < n_tiles:  # stage nxt % STAGES is free once both warpgroups are done with tile nxt - STAGES
            sn = nxt % STAGES
            mbarrier.wait(empty.index(sn), ((nxt // STAGES) & 1) ^ 1)
            if (PROBE & 1) == 0 or nxt < STAGES:
                _load_tile(desc, K, bt_row, kv_off, stride_kp, stride_ks, start + nxt * BLOCK_N, end, rows_next,
                           full.index(sn), k_lo.index(sn), k_hi.index(sn), k_t.index(sn), PAGE_SIZE, TMA_ROWS,
                           WIDE, NARROW)
            else:
                mbarrier.arrive(full.index(sn), count=1)
            rows_next = _tile_rows(bt_row, start + (nxt + 1) * BLOCK_N, end, PAGE_SIZE, TMA_ROWS, ROWS_LAYOUT)

        mbarrier.wait(p_ready, j & 1)
        mbarrier.wait(full.index(s), (j // STAGES) & 1)  # TMA's writes, visible to this warpgroup too
        alpha = alpha_smem.load(ROW)
        if (PROBE & 2) == 0:
            o = o * alpha[:, None]
            o = warpgroup_mma(p_smem, k_hi.index(s), o, is_async=True)
            o = warpgroup_mma_wait(0, deps=[o])
        _barrier()  # every thread's wgmma has read P before it may be overwritten
        mbarrier.arrive(p_free, count=1)
        mbarrier.arrive(empty.index(s), count=1)

    mbarrier.wait(done, 0)
    l_i = l_smem.load(ROW)
    # staged through k_hi: warpgroup 0, past `done`, reads no key buffer again
    _store_half(OUT, LSE, o, l_i, l_i, HALF, b, split, k_hi, GROUP_HEADS, grp, stride_ob, stride_oh, stride_os,
                stride_lb, stride_lh, stride_ls, TRACE, 7, O_LAYOUT, FINAL, False, STAGED_STORE, TRACE_ON)


@gluon.jit
def _program(LENGTHS, GROUP_KV, num_splits, stride_kh, TRACE, TRACE_ON: gl.constexpr, EVEN_SPLITS: gl.constexpr):
    """This program's head block, split and sequence b, its keys [start, end) of b (splits of whole tiles), its
    tile count and its KV head's offset in the cache; its start stamped in TRACE. Splits of ceil(tiles / splits)
    tiles (the last ones shorter or empty), or EVEN_SPLITS: tiles * split // splits onwards, so split lengths
    differ by at most one tile (at 1 x 128K and 66 splits: 64 of 31 tiles and 2 of 32, where the other rule
    gives 64 of 32 and 2 empty; most programs then store their partials while the longest run their last tile)."""
    _stamp(TRACE, 0, 1, TRACE_ON)
    _stamp(TRACE, 1, 0, TRACE_ON)
    _stamp(TRACE, 9, 2, TRACE_ON)
    grp = gl.program_id(0)
    split = gl.program_id(1)
    b = gl.program_id(2)
    length = gl.load(LENGTHS + b)
    if EVEN_SPLITS:
        tiles = gl.cdiv(length, BLOCK_N)
        start = (split * tiles // num_splits) * BLOCK_N
        end = gl.minimum(((split + 1) * tiles // num_splits) * BLOCK_N, length)
    else:
        per_split = gl.cdiv(gl.cdiv(length, num_splits), BLOCK_N) * BLOCK_N
        start = split * per_split
        end = gl.minimum(start + per_split, length)
    n_tiles = gl.cdiv(gl.maximum(end - start, 0), BLOCK_N)
    kv_off = gl.load(GROUP_KV + grp).to(gl.int64) * stride_kh
    return grp, split, b, start, end, n_tiles, kv_off


@gluon.jit
def _tile_buffers(Q, GROUP_HEADS, grp, b, stride_qb, stride_qh, Q_TMA: gl.constexpr):
    """Shared memory for the block's queries (latent halves and rope dims), the key stages (latent halves and
    rope dims) and P. Q_TMA: the queries' buffers empty, for `_start_queries` to fill; else filled here through
    registers (padding heads read as 0; the only way for scattered heads)."""
    dtype: gl.constexpr = Q.dtype.element_ty
    WIDE_SMEM: gl.constexpr = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=16, rank=2)
    if Q_TMA:
        q_lo = gl.allocate_shared_memory(dtype, [BLOCK_H, HALF], WIDE_SMEM)
        q_hi = gl.allocate_shared_memory(dtype, [BLOCK_H, HALF], WIDE_SMEM)
        q_t = gl.allocate_shared_memory(dtype, [BLOCK_H, TAIL], WIDE_SMEM)
    else:
        Q_LOAD: gl.constexpr = gl.BlockedLayout([1, 8], [1, 32], [4, 1], [1, 0])
        Q_TAIL: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [4, 1], [1, 0])
        offs_h = gl.arange(0, BLOCK_H, gl.SliceLayout(1, Q_LOAD))
        heads = gl.load(GROUP_HEADS + grp * BLOCK_H + offs_h)
        h_ok = heads >= 0
        q_row = Q + b.to(gl.int64) * stride_qb + gl.where(h_ok, heads, 0).to(gl.int64) * stride_qh
        cols = gl.arange(0, HALF, gl.SliceLayout(0, Q_LOAD))
        q_mask = h_ok[:, None] & (cols[None, :] < HALF)
        q_lo = gl.allocate_shared_memory(dtype, [BLOCK_H, HALF], WIDE_SMEM,
                                         gl.load(q_row[:, None] + cols[None, :], mask=q_mask, other=0.0))
        q_hi = gl.allocate_shared_memory(dtype, [BLOCK_H, HALF], WIDE_SMEM,
                                         gl.load(q_row[:, None] + HALF + cols[None, :], mask=q_mask, other=0.0))
        offs_ht = gl.arange(0, BLOCK_H, gl.SliceLayout(1, Q_TAIL))
        heads_t = gl.load(GROUP_HEADS + grp * BLOCK_H + offs_ht)
        ht_ok = heads_t >= 0
        q_row_t = Q + b.to(gl.int64) * stride_qb + gl.where(ht_ok, heads_t, 0).to(gl.int64) * stride_qh + 2 * HALF
        cols_t = gl.arange(0, TAIL, gl.SliceLayout(0, Q_TAIL))
        q_t = gl.allocate_shared_memory(dtype, [BLOCK_H, TAIL], WIDE_SMEM,
                                        gl.load(q_row_t[:, None] + cols_t[None, :],
                                                mask=ht_ok[:, None] & (cols_t[None, :] < TAIL), other=0.0))
    k_lo = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HALF], WIDE_SMEM)
    k_hi = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HALF], WIDE_SMEM)
    k_t = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, TAIL], WIDE_SMEM)
    p_smem = gl.allocate_shared_memory(dtype, [BLOCK_H, BLOCK_N], WIDE_SMEM)
    return q_lo, q_hi, q_t, k_lo, k_hi, k_t, p_smem


@gluon.jit
def _start_queries(Q_DESC, GROUP_HEADS, grp, b, q_rows_per_seq, q_full, q_lo, q_hi, q_t, Q_TMA: gl.constexpr):
    """Past the other barriers' inits: q_full's (Q_TMA), a fence so the inits and any queries stored through
    registers reach the async proxy (wgmma, TMA) and the other warps, then (Q_TMA) the queries' TMA."""
    if Q_TMA:
        mbarrier.init(q_full, count=1)
    fence_async_shared()
    _barrier()
    if Q_TMA:  # the block's 64 consecutive heads; q_full completes when they are in
        row = b * q_rows_per_seq + gl.load(GROUP_HEADS + grp * BLOCK_H)
        mbarrier.expect(q_full, BLOCK_H * (2 * HALF + TAIL) * 2)
        for c in gl.static_range(HALF // 64):
            _tma_load(Q_DESC, [row, c * 64], q_full, q_lo.slice(c * 64, 64, dim=1))
            _tma_load(Q_DESC, [row, HALF + c * 64], q_full, q_hi.slice(c * 64, 64, dim=1))
        _tma_load(Q_DESC, [row, 2 * HALF], q_full, q_t)


@gluon.jit
def _mla_decode_kernel(
    Q, Q_DESC, K, K_DESC, BLOCK_TABLE, LENGTHS, GROUP_KV, GROUP_HEADS, OUT, LSE,
    TRACE,  # int64 [programs, TRACE_ROW] with TRACE_ON, else never read
    qk_scale,  # softmax scale * log2(e)
    num_splits,
    q_rows_per_seq,  # Q_TMA: rows of Q_DESC (query heads) a sequence
    stride_qb, stride_qh, stride_kp, stride_ks, stride_kh, stride_btb,
    stride_ob, stride_oh, stride_os,  # OUT [B, Hq, S, 512] (or [B, Hq, 512] with stride_os = 0)
    stride_lb, stride_lh, stride_ls,  # LSE [B, Hq, S]
    FOUT, FLSE, COUNTERS,  # FUSED_MERGE: the merged output [B, Hq, 512] and natural LSE [B, Hq]; int32 counters
    stride_fob, stride_foh, stride_flb, stride_flh,  # (zeroed, >= B x head blocks); else never read
    PAGE_SIZE: gl.constexpr, TMA_ROWS: gl.constexpr, FINAL: gl.constexpr, PROBE: gl.constexpr = 0,
    WORKER_REGS: gl.constexpr = 240,  # registers a thread of warpgroup 1 (its O half takes 128; mla_sm90)
    TRACE_ON: gl.constexpr = False,
    Q_TMA: gl.constexpr = False,  # Q_DESC: a TMA descriptor of Q as rows of 576 (each block 64 consecutive heads)
    STAGED_STORE: gl.constexpr = False,  # the outputs stored through shared memory (_store_half's STAGED)
    FUSED_MERGE: gl.constexpr = False,  # the splits merged at the end of this kernel (module docstring)
    MERGE_P: gl.constexpr = 16,  # FUSED_MERGE: num_splits rounded up to a power of two, >= 16
    EVEN_SPLITS: gl.constexpr = False,  # split lengths differ by at most a tile (_program)
):
    grp, split, b, start, end, n_tiles, kv_off = _program(LENGTHS, GROUP_KV, num_splits, stride_kh, TRACE, TRACE_ON,
                                                          EVEN_SPLITS)
    ROWS: gl.constexpr = gl.SwizzledSharedLayout(vec=1, per_phase=1, max_phase=1, order=[0])
    q_lo, q_hi, q_t, k_lo, k_hi, k_t, p_smem = _tile_buffers(Q, GROUP_HEADS, grp, b, stride_qb, stride_qh, Q_TMA)
    alpha_smem = gl.allocate_shared_memory(gl.float32, [BLOCK_H], ROWS)
    l_smem = gl.allocate_shared_memory(gl.float32, [BLOCK_H], ROWS)

    full = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    p_ready = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    p_free = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    done = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    if Q_TMA:
        q_full = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    else:
        q_full = done  # a placeholder: warpgroup 0 waits on q_full only with Q_TMA
    for i in gl.static_range(STAGES):
        mbarrier.init(full.index(i), count=1)
        mbarrier.init(empty.index(i), count=2)
    mbarrier.init(p_ready, count=1)
    mbarrier.init(p_free, count=1)
    mbarrier.init(done, count=1)
    # Q_TMA: in flight while warpgroup 1 asks for the first key tile; warpgroup 0 waits for it on q_full
    _start_queries(Q_DESC, GROUP_HEADS, grp, b, q_rows_per_seq, q_full, q_lo, q_hi, q_t, Q_TMA)
    _stamp(TRACE, 2, 0, TRACE_ON)

    bars = (full, empty, p_ready, p_free, done, q_full)
    gl.warp_specialize([
        (_scores_partition, (q_lo, q_hi, q_t, k_lo, k_hi, k_t, p_smem, alpha_smem, l_smem, bars,
                             OUT, LSE, GROUP_HEADS, grp, b, split, start, end, n_tiles, qk_scale,
                             stride_ob, stride_oh, stride_os, stride_lb, stride_lh, stride_ls, TRACE, FINAL, PROBE,
                             TRACE_ON, Q_TMA, STAGED_STORE)),
        (_values_partition, (k_lo, k_hi, k_t, p_smem, alpha_smem, l_smem, bars,
                             K_DESC, K, BLOCK_TABLE, OUT, LSE, GROUP_HEADS, grp, b, split, start, end, n_tiles, kv_off,
                             stride_kp, stride_ks, stride_btb,
                             stride_ob, stride_oh, stride_os, stride_lb, stride_lh, stride_ls, TRACE, PAGE_SIZE,
                             TMA_ROWS, FINAL, PROBE, TRACE_ON, STAGED_STORE)),
    ], [4], [WORKER_REGS])
    if FUSED_MERGE:  # here, past the partitions: the merge's arguments take none of their registers
        _grid_merge(OUT, LSE, FOUT, FLSE, COUNTERS, GROUP_HEADS, k_lo, k_hi,
                    _block_index(0), _block_index(2), _block_index(1), num_splits,
                    stride_ob, stride_oh, stride_os, stride_lb, stride_lh, stride_ls,
                    stride_fob, stride_foh, stride_flb, stride_flh, TRACE, MERGE_P, TRACE_ON)
