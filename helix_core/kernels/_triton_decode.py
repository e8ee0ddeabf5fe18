"""Triton kernels of the paged split-KV decode attention. Imported lazily (needs triton).

Written against the Triton language of 3.4+ (tested with 3.9's interpreter; targets 3.6 on
Hopper): tl.dot with input_precision, tl.exp2/log2, runtime-bounded range loops, no
descriptors/TMA, no newer APIs.

Stage 1 (`_decode_split_kernel`), grid (head blocks, splits, batch):
  one program = one sequence b, one block of <= BLOCK_H query heads that all read the same KV
  head, one contiguous chunk (split) of the sequence's local keys. It walks its chunk in tiles of
  BLOCK_N tokens; each token's page comes from the block table, so pages can lie anywhere in the
  pool and the page size need not divide BLOCK_N. Online softmax in base 2 (scores pre-scaled by
  scale*log2(e)), fp32 accumulators; writes the normalized partial output and its base-2 LSE
  (or, with one split, the final output and natural LSE directly).
  FUSED (several splits, one launch): after writing its partial, a program bumps the int32
  counter of its (sequence, head block); the program that sees num_splits - 1 is the last one,
  so every partial of the block is written: it merges them (`_merge_block`, the same weights as
  `_merge_kernel`), writes the final output and natural LSE, and puts the counter back to 0 for
  the next call or graph replay. The counter atomic (acq_rel, gpu scope), after a CTA barrier,
  publishes the partials of all of a program's threads; the last program reads them with .cg loads.
  Head dims: the key dims are read as a head part [0, BLOCK_A) and, when Dk is wider than the
  value dim (MLA: 512 + 64 rope dims), a tail part [BLOCK_A, Dk). When values are the first Dv
  dims of the keys (MLA), the value tile *is* the head part of the key tile: each byte is read
  once. DV_PARTS = 2 (MLA only): two programs share a head block and a split, each owning one half
  of the values (its accumulator is half as wide, so 64 heads fit one warpgroup's registers); both
  compute the full scores from their own half, the other half and the tail.
  P_VIA_MEMORY (16-bit math; the default for MLA's 64-head blocks at long context): each tile's P and
  rescale factors go through a per-program scratch (store, CTA barrier, read back) instead of straight into
  the P.V dot, so Triton does not stack all warps along the heads for the score dot (its rule for a dot
  feeding another dot) and the two warpgroups of a 64-head block split the scores instead of repeating them.
Stage 2 (`_merge_kernel`), grid (rows0, rows1, column blocks): LSE-weighted merge of partials laid out with
  arbitrary strides; used for the splits when not FUSED and, reused, for the KVP merge of shards.
  PDL (sm_90+, the split merge only): the split kernel lets its dependent launch at its start and the
  merge kernel, launched with programmatic stream serialization, waits for the split kernel's writes
  (griddepcontrol), so the merge's launch and scheduling overlap the split kernel's last wave.
Outputs are stored in the dtype of the final `out` (fp32, or 16-bit to save the caller a cast);
partials and LSEs stay fp32.
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
_prefetch_share = kernel_module("_triton_common").prefetch_share  # built in this module's mode

LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453


@triton.jit
def _mm(a, b, UPCAST: tl.constexpr):
    """a @ b with fp32 accumulation. UPCAST: compute in fp32 (the CPU interpreter of Triton 3.9
    multiplies bf16 tiles as raw uint16 bits; fp32 products of 16-bit values are exact, so this
    gives the same result as the tensor-core path up to summation order)."""
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        return tl.dot(a, b, input_precision="ieee")


@triton.jit
def _cta_barrier(value, INTERPRETED: tl.constexpr):
    """A CTA barrier (bar.sync) that returns `value`, so loads addressed from the result cannot be issued
    before it. Inline PTX, not tl.debug_barrier: Triton 3.6 does not software-pipeline a loop that holds
    a gpu.barrier (its K/V loads would lose their async copies). The interpreter runs a program as one
    thread: no barrier needed."""
    if INTERPRETED:
        return value
    else:
        return tl.inline_asm_elementwise("bar.sync 0;\n\tmov.b32 $0, $1;", "=r,r", [value], dtype=tl.int32,
                                         is_pure=False, pack=1)


@triton.jit
def _first_tile_pages(bt_row, start, end, PAGE_SIZE: tl.constexpr, BLOCK_N: tl.constexpr, AHEAD: tl.constexpr):
    """The block-table entries of a program's first tile when they are read a tile ahead (else unused)."""
    offs = start + tl.arange(0, BLOCK_N)
    if AHEAD:
        return tl.load(bt_row + offs // PAGE_SIZE, mask=offs < end, other=0)
    else:
        return offs * 0


@triton.jit
def _tile_pages(bt_row, offs_n, end, page_next, PAGE_SIZE: tl.constexpr, BLOCK_N: tl.constexpr,
                AHEAD: tl.constexpr):
    """(pages of the tile's keys offs_n as int64, the value to pass as page_next for the next tile).
    AHEAD: this tile's entries were read an iteration earlier (page_next) and the next tile's are read
    now, so the tile's K/V loads depend on no load of their own iteration and Triton multi-buffers them
    (sm_90: with the entries read in-tile it keeps one K/V buffer at any stage count). Entries past
    `end` read as page 0 and are masked by the caller."""
    if AHEAD:
        ahead = offs_n + BLOCK_N
        return page_next.to(tl.int64), tl.load(bt_row + ahead // PAGE_SIZE, mask=ahead < end, other=0)
    else:
        page = tl.load(bt_row + offs_n // PAGE_SIZE, mask=offs_n < end, other=0)
        return page.to(tl.int64), page_next


@triton.jit
def _decode_split_kernel(
    Q, K, V, BLOCK_TABLE, LENGTHS, GROUP_KV, GROUP_HEADS, OUT, LSE,
    FOUT, FLSE, COUNTERS,  # FUSED only: final out [B, Hq, Dv] / lse [B, Hq], counters [B * head blocks]
    P_SCRATCH, A_SCRATCH,  # P_VIA_MEMORY only: [programs, 2, BLOCK_H, BLOCK_N + 1] (K's dtype), [programs, 2, BLOCK_H] fp32
    qk_scale,  # softmax scale * log2(e)
    num_splits,
    stride_qb, stride_qh,
    stride_kp, stride_ks, stride_kh,
    stride_vp, stride_vs, stride_vh,
    stride_btb,
    stride_ob, stride_oh, stride_os,  # OUT [B, Hq, S, Dv] (or [B, Hq, Dv] with stride_os = 0)
    stride_lb, stride_lh, stride_ls,  # LSE [B, Hq, S]
    stride_fob, stride_foh, stride_flb, stride_flh,  # FOUT, FLSE
    DK: tl.constexpr, DV: tl.constexpr,
    BLOCK_A: tl.constexpr, BLOCK_T: tl.constexpr, HAS_TAIL: tl.constexpr, BLOCK_DV: tl.constexpr,
    VALUES_ARE_KEYS: tl.constexpr, QK_FP32: tl.constexpr, DV_PARTS: tl.constexpr,
    PAGE_SIZE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr,
    FINAL: tl.constexpr, UPCAST: tl.constexpr,
    FUSED: tl.constexpr, MERGE_H: tl.constexpr, MERGE_S: tl.constexpr, MERGE_LS: tl.constexpr,
    PDL: tl.constexpr = False, PAGES_AHEAD: tl.constexpr = False, P_VIA_MEMORY: tl.constexpr = False,
):
    if PDL:  # the merge kernel, launched as a programmatic dependent, may start its programs now
        gdc_launch_dependents()
    grp = tl.program_id(0) // DV_PARTS
    part = tl.program_id(0) % DV_PARTS  # which BLOCK_A-wide slice of the values this program owns
    split = tl.program_id(1)
    b = tl.program_id(2)

    kv_head = tl.load(GROUP_KV + grp).to(tl.int64)
    offs_h = tl.arange(0, BLOCK_H)
    heads = tl.load(GROUP_HEADS + grp * BLOCK_H + offs_h)
    h_ok = heads >= 0
    heads = tl.where(h_ok, heads, 0).to(tl.int64)

    length = tl.load(LENGTHS + b)
    per_split = tl.cdiv(tl.cdiv(length, num_splits), BLOCK_N) * BLOCK_N
    start = split * per_split
    end = tl.minimum(start + per_split, length)

    # key dims: the own part [own, own + BLOCK_A) (the value tile when values are keys), with two value
    # parts the other part [other, other + BLOCK_A), then the tail [DV_PARTS * BLOCK_A, DK)
    own = part * BLOCK_A
    offs_a = own + tl.arange(0, BLOCK_A)
    offs_v = own + tl.arange(0, BLOCK_DV)
    q_base = Q + b.to(tl.int64) * stride_qb + heads[:, None] * stride_qh
    q_a = tl.load(q_base + offs_a[None, :], mask=h_ok[:, None] & (offs_a[None, :] < DK), other=0.0)
    if QK_FP32:
        q_a = q_a.to(tl.float32)
    if DV_PARTS == 2:
        offs_o = (1 - part) * BLOCK_A + tl.arange(0, BLOCK_A)
        q_o = tl.load(q_base + offs_o[None, :], mask=h_ok[:, None] & (offs_o[None, :] < DK), other=0.0)
    if HAS_TAIL:
        offs_t = tl.arange(0, BLOCK_T)
        t_ok = (DV_PARTS * BLOCK_A + offs_t) < DK
        q_t = tl.load(q_base + DV_PARTS * BLOCK_A + offs_t[None, :], mask=h_ok[:, None] & t_ok[None, :],
                      other=0.0)
        if QK_FP32:
            q_t = q_t.to(tl.float32)

    m_i = tl.full([BLOCK_H], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_DV], tl.float32)

    if P_VIA_MEMORY:  # this program's two scratch slots (tiles alternate between them)
        prog = (b.to(tl.int64) * tl.num_programs(1) + split) * tl.num_programs(0) + tl.program_id(0)
        # rows of BLOCK_N + 1 values: an odd pitch leaves the reads no provable 4-byte alignment, so Triton
        # does not turn them into async copies issued a tile early (before this tile's P is stored)
        p_slots = P_SCRATCH + prog * (2 * BLOCK_H * (BLOCK_N + 1)) + offs_h[:, None] * (BLOCK_N + 1) \
            + tl.arange(0, BLOCK_N)[None, :]
        a_slots = A_SCRATCH + prog * (2 * BLOCK_H) + offs_h

    bt_row = BLOCK_TABLE + b.to(tl.int64) * stride_btb
    page_next = _first_tile_pages(bt_row, start, end, PAGE_SIZE, BLOCK_N, PAGES_AHEAD)
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_ok = offs_n < end
        page, page_next = _tile_pages(bt_row, offs_n, end, page_next, PAGE_SIZE, BLOCK_N, PAGES_AHEAD)
        slot = offs_n % PAGE_SIZE
        k_row = page * stride_kp + slot * stride_ks + kv_head * stride_kh  # [BLOCK_N]
        k_a = tl.load(K + k_row[:, None] + offs_a[None, :], mask=n_ok[:, None] & (offs_a[None, :] < DK),
                      other=0.0)  # [BLOCK_N, BLOCK_A]
        if QK_FP32:
            qk = _mm(q_a, tl.trans(k_a.to(tl.float32)), UPCAST)
        else:
            qk = _mm(q_a, tl.trans(k_a), UPCAST)
        if DV_PARTS == 2:
            k_o = tl.load(K + k_row[:, None] + offs_o[None, :], mask=n_ok[:, None] & (offs_o[None, :] < DK),
                          other=0.0)
            qk += _mm(q_o, tl.trans(k_o), UPCAST)
        if HAS_TAIL:
            k_t = tl.load(K + k_row[:, None] + DV_PARTS * BLOCK_A + offs_t[None, :],
                          mask=n_ok[:, None] & t_ok[None, :], other=0.0)
            if QK_FP32:
                qk_t = _mm(q_t, tl.trans(k_t.to(tl.float32)), UPCAST)
            else:
                qk_t = _mm(q_t, tl.trans(k_t), UPCAST)
            if P_VIA_MEMORY:  # scaled apart: Triton would fold `dot + dot` into a chain of dots
                qk = qk * qk_scale + qk_t * qk_scale
            else:
                qk = (qk + qk_t) * qk_scale
        else:
            qk = qk * qk_scale
        qk = tl.where(n_ok[None, :], qk, float("-inf"))  # [BLOCK_H, BLOCK_N]

        # every tile holds at least one visible key, so m_new is finite
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(qk - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        if VALUES_ARE_KEYS:
            v = k_a  # BLOCK_DV == BLOCK_A; columns >= DV are never stored
        else:
            v_row = page * stride_vp + slot * stride_vs + kv_head * stride_vh
            v = tl.load(V + v_row[:, None] + offs_v[None, :], mask=n_ok[:, None] & (offs_v[None, :] < DV),
                        other=0.0)
        p = p.to(v.dtype)
        if P_VIA_MEMORY:
            # Triton stacks all warps along the heads for a dot whose result reaches another dot (so
            # both warpgroups of a 64-head block would compute the same scores); passing P and alpha
            # through memory cuts that data path, so the score dot spreads its warps over the keys
            # and each score is computed once. Slots alternate by tile: a thread may store the next
            # tile's P before a slower one has read this tile's.
            parity = ((n0 - start) // BLOCK_N) % 2
            tl.store(p_slots + parity * (BLOCK_H * (BLOCK_N + 1)), p)
            tl.store(a_slots + parity * BLOCK_H, alpha)
            # every thread's part is written before any thread reads it (UPCAST: set exactly when interpreted)
            parity = _cta_barrier(parity, UPCAST)
            p = tl.load(p_slots + parity * (BLOCK_H * (BLOCK_N + 1)))
            alpha = tl.load(a_slots + parity * BLOCK_H)
        acc = acc * alpha[:, None] + _mm(p, v, UPCAST)
        m_i = m_new

    has = l_i > 0.0
    out = acc / tl.where(has, l_i, 1.0)[:, None]
    lse2 = tl.where(has, m_i + tl.log2(tl.where(has, l_i, 1.0)), float("-inf"))
    o_ptr = OUT + b.to(tl.int64) * stride_ob + heads[:, None] * stride_oh + split * stride_os + offs_v[None, :]
    tl.store(o_ptr, out.to(OUT.dtype.element_ty), mask=h_ok[:, None] & (offs_v[None, :] < DV))
    l_ptr = LSE + b.to(tl.int64) * stride_lb + heads * stride_lh + split * stride_ls
    l_ok = h_ok & ((offs_h * 0 + part) == 0)  # the value parts' LSEs are the same up to rounding: one writes it
    if FINAL:
        tl.store(l_ptr, lse2 * 0.6931471805599453, mask=l_ok)
    else:
        tl.store(l_ptr, lse2, mask=l_ok)

    if FUSED:
        # every thread's partial stores precede the (releasing) counter increment
        tl.debug_barrier()
        counter = COUNTERS + b * tl.num_programs(0) + grp
        if tl.atomic_add(counter, 1) == num_splits - 1:  # all other splits of this block are written
            _merge_block(OUT, LSE, FOUT, FLSE, GROUP_HEADS + grp * BLOCK_H, b, num_splits,
                         stride_ob, stride_oh, stride_os, stride_lb, stride_lh, stride_ls,
                         stride_fob, stride_foh, stride_flb, stride_flh,
                         DV, BLOCK_DV, MERGE_H, MERGE_S, MERGE_LS)
            tl.store(counter, 0)  # ready for the next call / graph replay


@triton.jit(noinline=True)  # own function: its values do not stretch the main loop's live ranges
def _merge_block(
    PART_OUT, PART_LSE, OUT, LSE, HEADS, b, num_splits,
    stride_pob, stride_poh, stride_pos,
    stride_plb, stride_plh, stride_pls,  # base-2 LSE
    stride_ob, stride_oh, stride_lb, stride_lh,
    DV: tl.constexpr, BLOCK_DV: tl.constexpr, MERGE_H: tl.constexpr, MERGE_S: tl.constexpr,
    MERGE_LS: tl.constexpr,
):
    """Merge the split partials of sequence b for the <= MERGE_H heads listed at HEADS (-1: none),
    with `_merge_kernel`'s arithmetic: fp32, weights exp2(lse - peak), a split with no keys (LSE
    -inf) weighs 0. Tiles span heads x MERGE_S splits so one program keeps many loads in flight."""
    offs_h = tl.arange(0, MERGE_H)
    heads = tl.load(HEADS + offs_h)
    h_ok = heads >= 0
    heads = tl.where(h_ok, heads, 0).to(tl.int64)
    b = b.to(tl.int64)
    pl_base = PART_LSE + b * stride_plb + heads * stride_plh  # [MERGE_H]

    # pass 1: peak LSE of each head (splits are few: MERGE_LS of them per load). Running tiles
    # reduced after the loops: Triton 3.6's OptimizeThreadLocality asserts on `x = f(x, reduce(...))`
    # loops whose result has several uses.
    offs_ls = tl.arange(0, MERGE_LS)
    peaks = tl.full([MERGE_H, MERGE_LS], float("-inf"), tl.float32)
    for s0 in range(0, num_splits, MERGE_LS):
        s_ok = (s0 + offs_ls) < num_splits
        lse_ptrs = pl_base[:, None] + (s0 + offs_ls)[None, :] * stride_pls
        lses = tl.load(lse_ptrs, mask=h_ok[:, None] & s_ok[None, :], other=float("-inf"), cache_modifier=".cg")
        peaks = tl.maximum(peaks, lses)
    peak = tl.max(peaks, 1)
    safe = tl.where(peak == float("-inf"), 0.0, peak)

    # pass 2: weighted sum of the partial outputs, a [MERGE_H, MERGE_S, BLOCK_DV] tile at a time
    offs_s = tl.arange(0, MERGE_S)
    offs_d = tl.arange(0, BLOCK_DV)
    d_ok = offs_d < DV
    po_base = PART_OUT + b * stride_pob + heads[:, None, None] * stride_poh + offs_d[None, None, :]
    totals = tl.zeros([MERGE_H, MERGE_S], tl.float32)
    acc = tl.zeros([MERGE_H, BLOCK_DV], tl.float32)
    for s0 in range(0, num_splits, MERGE_S):
        s = s0 + offs_s
        hs_ok = h_ok[:, None] & (s[None, :] < num_splits)  # [MERGE_H, MERGE_S]
        lses = tl.load(pl_base[:, None] + s[None, :] * stride_pls, mask=hs_ok, other=float("-inf"),
                       cache_modifier=".cg")
        w = tl.exp2(lses - safe[:, None])
        o = tl.load(po_base + s[None, :, None] * stride_pos, mask=hs_ok[:, :, None] & d_ok[None, None, :],
                    other=0.0, cache_modifier=".cg")
        totals += w
        acc += tl.sum(tl.where(w[:, :, None] > 0.0, o * w[:, :, None], 0.0), 1)  # empty split: weight 0

    total = tl.sum(totals, 1)
    has = total > 0.0
    out = acc / tl.where(has, total, 1.0)[:, None]
    lse = tl.where(has, (safe + tl.log2(tl.where(has, total, 1.0))) * 0.6931471805599453, float("-inf"))
    o_ptr = OUT + b * stride_ob + heads[:, None] * stride_oh + offs_d[None, :]
    tl.store(o_ptr, out.to(OUT.dtype.element_ty), mask=h_ok[:, None] & d_ok[None, :])
    tl.store(LSE + b * stride_lb + heads * stride_lh, lse, mask=h_ok)


@triton.jit
def _merge_kernel(
    PART_OUT, PART_LSE, OUT, LSE,
    num_parts,
    stride_po_p, stride_po_0, stride_po_1,
    stride_pl_p, stride_pl_0, stride_pl_1,
    stride_o_0, stride_o_1,
    stride_l_0, stride_l_1,
    next_ptr, prefetch_bytes,
    DV: tl.constexpr, BLOCK_DV: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_S: tl.constexpr,
    LSE_IN_LOG2: tl.constexpr, PDL: tl.constexpr = False, PREFETCH: tl.constexpr = False,
    NUM_WARPS: tl.constexpr = 4,
):
    """out[r0, r1] = sum_p w_p out_p / sum_p w_p with w_p = exp(lse_p - max); lse = log sum exp.
    The partial outputs are read BLOCK_S parts at a time ([BLOCK_S, BLOCK_DV] tiles), so a program keeps
    many loads in flight rather than one part's row per dependent step.
    PDL: launched as a programmatic dependent of the split kernel, so its programs are resident before
    that kernel ends; they wait here until all of its writes are visible. It does not let its own dependent
    (the o projection) launch early: measured slower (H200, llama3-8b one GPU, 2026-12-04: the projections'
    share of the 1 x 8K step grew by 173 us, docs/benchmarks.md).
    PREFETCH: after its stores, each program asks for its share of next_ptr's first prefetch_bytes in L2
    (_triton_common.prefetch_share; NUM_WARPS: the launch's): with KVP, the o projection's weights, read
    while the KVP exchange that follows this merge waits on the network."""
    r0 = tl.program_id(0).to(tl.int64)
    r1 = tl.program_id(1).to(tl.int64)
    column_block = tl.program_id(2)  # BLOCK_DV < DV: the row's columns over several programs
    offs_p = tl.arange(0, BLOCK_P)
    pl_base = PART_LSE + r0 * stride_pl_0 + r1 * stride_pl_1
    if PDL:
        gdc_wait()
    lses = tl.load(pl_base + offs_p * stride_pl_p, mask=offs_p < num_parts, other=float("-inf")).to(tl.float32)
    if not LSE_IN_LOG2:
        lses = lses * 1.4426950408889634
    peak = tl.max(lses, 0)
    safe = tl.where(peak == float("-inf"), 0.0, peak)
    total = tl.sum(tl.exp2(lses - safe), 0)

    offs_d = column_block * BLOCK_DV + tl.arange(0, BLOCK_DV)
    d_ok = offs_d < DV
    offs_s = tl.arange(0, BLOCK_S)
    po_base = PART_OUT + r0 * stride_po_0 + r1 * stride_po_1 + offs_d[None, :]
    acc = tl.zeros([BLOCK_S, BLOCK_DV], tl.float32)  # reduced after the loop (see _merge_block)
    for p0 in range(0, num_parts, BLOCK_S):
        p = p0 + offs_s
        p_ok = p < num_parts
        lse_p = tl.load(pl_base + p * stride_pl_p, mask=p_ok, other=float("-inf")).to(tl.float32)
        if not LSE_IN_LOG2:
            lse_p = lse_p * 1.4426950408889634
        w = tl.exp2(lse_p - safe)
        o = tl.load(po_base + p[:, None] * stride_po_p, mask=p_ok[:, None] & d_ok[None, :], other=0.0)
        acc += tl.where(w[:, None] > 0.0, o.to(tl.float32) * w[:, None], 0.0)  # a part with no keys: weight 0

    has = total > 0.0
    out = tl.sum(acc, 0) / tl.where(has, total, 1.0)
    lse = tl.where(has, (safe + tl.log2(tl.where(has, total, 1.0))) * 0.6931471805599453, float("-inf"))
    tl.store(OUT + r0 * stride_o_0 + r1 * stride_o_1 + offs_d, out.to(OUT.dtype.element_ty), mask=d_ok)
    if column_block == 0:
        tl.store(LSE + r0 * stride_l_0 + r1 * stride_l_1, lse)
    if PREFETCH:
        share = (r0 * tl.num_programs(1) + r1) * tl.num_programs(2) + column_block
        _prefetch_share(next_ptr, prefetch_bytes, share, tl.num_programs(0) * tl.num_programs(1) * tl.num_programs(2),
                        NUM_WARPS)
