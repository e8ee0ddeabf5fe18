"""Launcher of the Hopper MLA decode kernel (`_gluon_mla`): which calls it can take, and the launch.

It takes absorbed-MLA calls only: 576-dim keys (512 latent + 64 rope) whose first 512 dims are the
values, 16-bit query and cache, on an sm_90 GPU with a Triton that has Gluon's Hopper API. Anything
else keeps the Triton kernel of decode_attention.py. Heads go in blocks of 64 (a block of a
smaller group is padded), one program a SM (225 KB of shared memory), the keys split so that all
programs run in one wave; the splits are merged by split_merge's merge kernel.
"""
from __future__ import annotations

import torch

from . import interpret_mode, kernel_module, sm_count, triton_available

KEY_DIM = 576
VALUE_DIM = 512
BLOCK_H = 64
BLOCK_N = 64
WORKER_REGS = 240  # registers a thread of the kernel's second warpgroup (the first gets the rest: 256)
# Decode calls load a block's queries by TMA where its heads allow (launch's q_by_tma): on one H100 (2026-12-05)
# it cut a program's start to its first key tile from 6.2 to 4.2 us, the 1 x 32K and 1 x 128K launches 3.5% and 1.4%.
Q_BY_TMA = True
# ... and store their outputs through shared memory (launch's staged_store: the same bits, written in whole sectors).
# On one H100 (2026-12-06), against the store from the MMA layout, CUDA graph, two runs each: 1 x 32K 34.8 / 34.6
# against 36.3 / 35.7 us, 1 x 128K 84.2 / 85.0 against 85.9 / 86.5 (10 launches a graph in the kernel's timeline:
# 1.2-1.6 us slower), 4 x 128K 286.9 / 288.6 against 294.6 / 287.1. Later rounds (ninth session): faster at
# 1 x 32K again, no clear direction at 1 x 128K (docs/benchmarks.md).
STAGED_STORE = True
# ... and merge their splits in the split kernel (launch's fused_merge: a grid barrier per sequence and head block,
# no merge kernel) where the launch allows. Off: slower than the merge kernel in all three versions measured on an
# H100 (2026-12-06, eleventh session: 1 x 32K 37.0 against 33.6 us, 1 x 128K 88.4 against 86.2, 10 a graph).
FUSED_MERGE = False
# ... and give splits lengths that differ by at most a tile (launch's even_splits) instead of ceil(tiles / splits)
# tiles each. The same critical path (the longest split's tiles), but at 1 x 128K 128 of 132 programs end a tile
# early. On one H100 (2026-12-06, fifteenth session), 6 interleaved rounds, 10 launches a graph: 1 x 128K
# 83.8-86.3 against 85.7-87.3 us (faster in every round), 1 x 32K 33.5-33.6 against 33.8.
EVEN_SPLITS = True

_GLUON_OK: bool | None = None
_CAPABILITY: dict[int, tuple[int, int]] = {}


def gluon_hopper_available() -> bool:
    """Triton's Gluon with the Hopper ops this kernel uses is importable (asked once)."""
    global _GLUON_OK
    if _GLUON_OK is None:
        try:
            from triton.experimental.gluon.language.nvidia.hopper import warpgroup_mma  # noqa: F401
            _GLUON_OK = triton_available()
        except Exception:  # no Gluon (Triton < 3.5) or a broken install
            _GLUON_OK = False
    return _GLUON_OK


def _capability(device: torch.device) -> tuple[int, int]:
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _CAPABILITY:
        _CAPABILITY[index] = torch.cuda.get_device_capability(index)
    return _CAPABILITY[index]


def shape_fits(dk: int, dv: int, values_are_keys: bool, q_dtype: torch.dtype, cache_dtype: torch.dtype) -> bool:
    """The call's shape is the one the kernel is written for (device aside)."""
    return (values_are_keys and dk == KEY_DIM and dv == VALUE_DIM and q_dtype == cache_dtype
            and cache_dtype in (torch.bfloat16, torch.float16))


def usable(q: torch.Tensor, key_pages: torch.Tensor, dv: int, values_are_keys: bool) -> bool:
    """The kernel can run this call here: the MLA shape, 16-bit, an sm_90 CUDA device, Gluon, no interpreter,
    rows of the cache and query 16-byte aligned (cp.async moves 16 bytes)."""
    if not (q.is_cuda and shape_fits(q.shape[-1], dv, values_are_keys, q.dtype, key_pages.dtype)):
        return False
    if interpret_mode() or not gluon_hopper_available() or _capability(q.device) != (9, 0):
        return False
    aligned = all(s % 8 == 0 for s in (key_pages.stride(0), key_pages.stride(1), key_pages.stride(2),
                                       q.stride(0), q.stride(1)))
    return aligned and key_pages.stride(-1) == 1 and q.stride(-1) == 1 \
        and key_pages.data_ptr() % 16 == 0 and q.data_ptr() % 16 == 0


def takes_cache(key_pages: torch.Tensor, dv: int) -> bool:
    """Decode calls over this cache (one layer's [P, page, Hkv, Dk] pages; a query of its dtype, the values its
    first dv dims) run this kernel here."""
    q = torch.empty(1, 1, key_pages.shape[-1], dtype=key_pages.dtype, device=key_pages.device)
    return usable(q, key_pages, dv, True)


def tma_box_rows(key_pages: torch.Tensor) -> int:
    """Keys per TMA box (0: no TMA, cp.async for every tile): the cache must be one KV head of contiguous pages,
    and a page a power of two >= 8 keys (whole 128-byte swizzle atoms of 8 rows; min(page, 64) a box)."""
    pages, page_size, kv_heads, dim = key_pages.shape
    contiguous = key_pages.stride(0) == page_size * key_pages.stride(1) and key_pages.stride(1) % 8 == 0
    if kv_heads != 1 or not contiguous or page_size < 8 or page_size & (page_size - 1):
        return 0
    return min(page_size, BLOCK_N)


def key_descriptor(key_pages: torch.Tensor, box_rows: int):
    """TMA descriptor of the cache as rows of 576 dims, boxes of box_rows keys x 64 dims (128-byte swizzle,
    the layout the kernel's key buffers have)."""
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    pages, page_size = key_pages.shape[:2]
    layout = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=16, rank=2)
    return TensorDescriptor(key_pages, [pages * page_size, KEY_DIM], [key_pages.stride(1), 1], [box_rows, 64], layout)


def query_descriptor(q: torch.Tensor):
    """TMA descriptor of q [B, Hq, 576] as rows of 576 (a head a row, sequence b's first at b x
    q.stride(0) / q.stride(1)), boxes of 64 heads x 64 dims (128-byte swizzle); None where q's layout does not
    allow it (rows not a whole number apart, or not 16-byte aligned)."""
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    batch, heads, dim = q.shape
    row = q.stride(1)
    apart = batch > 1 and (q.stride(0) % row or q.stride(0) < heads * row)  # sequences' rows not on one grid
    if q.stride(2) != 1 or row % 8 or q.data_ptr() % 16 or apart:
        return None
    rows = (batch - 1) * (q.stride(0) // row) + heads
    layout = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=16, rank=2)
    return TensorDescriptor(q, [rows, dim], [row, 1], [BLOCK_H, 64], layout)


def choose_splits(batch: int, groups, max_length: int, device: torch.device, forced: int | None = None) -> int:
    """`forced` (DecodeConfig.num_splits) where given, else one wave: at most one program a SM, splits of at
    least MIN_TILES_PER_SPLIT tiles, for the head blocks of 64 of `groups` (a HeadGroups)."""
    from .decode_launch import choose_num_splits

    if forced:
        return forced
    head_blocks = groups.tables(BLOCK_H, device)[0].shape[0]
    return choose_num_splits(batch, head_blocks, max_length, BLOCK_N, sm_count(device), waves=1)


def launch(q: torch.Tensor, key_pages: torch.Tensor, block_table: torch.Tensor, lengths: torch.Tensor,
           scale: float, group_kv: torch.Tensor, group_heads: torch.Tensor, num_splits: int,
           out: torch.Tensor, lse: torch.Tensor, pdl: bool = False, probe: int = 0, use_tma: bool = True,
           worker_regs: int = WORKER_REGS, trace: torch.Tensor | None = None, q_by_tma: bool = False,
           partials: torch.dtype = torch.float32, merge_columns: int | None = None, staged_store: bool = False,
           fused_merge: bool = False, cooperative: bool = True, even_splits: bool = False) -> None:
    """Attention of q [B, Hq, 576] over the paged cache into out [B, Hq, 512] and lse [B, Hq] (natural log).
    group_kv / group_heads: HeadGroups.tables(64) of the call; num_splits >= 1. trace (measurement): an int64
    [head blocks x splits x B, TRACE_ROW] tensor the split kernel's programs write their clock readings into
    (`trace_rows` reads them). q_by_tma: each head block is 64 consecutive heads (HeadGroups.whole_runs), so
    its queries may come by TMA where q's layout allows (`query_descriptor`). partials: the dtype the splits'
    normalized outputs are written in for the merge (measurement: bf16 halves those bytes); merge_columns: the
    merge's values a program (`split_merge.launch_merge`'s columns); staged_store: each warpgroup's outputs go
    through its key buffers, free once the tile loop is over, and out in 16-byte vectors of one row a thread
    (the kernel's STAGED_STORE; the same bits as the store from the MMA layout, whose fp32 pieces are 8 bytes
    and whose bf16 pieces half a 32-byte sector); fused_merge: the split kernel merges its splits itself once all
    of a block's are written (the kernel's FUSED_MERGE, a grid barrier per sequence and head block), where every
    program fits one wave, the device's counters are at hand (`fused_merge_counters`) and the partials are fp32
    (the only kind it has run with), else the merge kernel does (calls on a device must not overlap: the counters
    are the device's, as every engine call on its compute stream is; a barrier that waits for seconds traps, a
    CUDA error, rather than hang); cooperative: that launch is cooperative, so the driver guarantees every program
    is resident at once (without it the barrier relies on nothing else holding the SMs); even_splits: the keys'
    tiles dealt to the splits so that their lengths differ by at most a tile (the kernel's EVEN_SPLITS)."""
    mod = kernel_module("_gluon_mla")
    batch = q.shape[0]
    head_blocks = group_kv.shape[0]
    if trace is not None and (trace.dtype != torch.int64 or trace.dim() != 2 or trace.shape[1] != mod.TRACE_ROW.value
                              or trace.shape[0] < head_blocks * num_splits * batch):
        raise ValueError(f"trace must be int64 [>= {head_blocks * num_splits * batch}, {mod.TRACE_ROW.value}], "
                         f"not {trace.dtype} {list(trace.shape)}")
    qk_scale = float(scale) * 1.4426950408889634
    tma_rows = tma_box_rows(key_pages) if use_tma else 0
    desc = key_descriptor(key_pages, tma_rows) if tma_rows else key_pages  # placeholder: never read
    q_desc = query_descriptor(q) if q_by_tma else None
    rows_per_seq = q.stride(0) // q.stride(1) if q_desc is not None and batch > 1 else 0

    def run(part_out, part_lse, splits, merged=None):
        final = splits == 1
        fused = merged is not None
        fout, flse, counters = merged if fused else (part_out, part_lse, lengths)  # placeholders: never read
        mod._mla_decode_kernel[(head_blocks, splits, batch)](
            q, q_desc if q_desc is not None else q, key_pages, desc, block_table, lengths, group_kv, group_heads,
            part_out, part_lse,
            trace if trace is not None else lengths, qk_scale, splits, rows_per_seq,
            q.stride(0), q.stride(1), key_pages.stride(0), key_pages.stride(1), key_pages.stride(2),
            block_table.stride(0),
            part_out.stride(0), part_out.stride(1), 0 if final else part_out.stride(2),
            part_lse.stride(0), part_lse.stride(1), 0 if final else part_lse.stride(2),
            fout, flse, counters, fout.stride(0), fout.stride(1), flse.stride(0), flse.stride(1),
            PAGE_SIZE=key_pages.shape[1], TMA_ROWS=tma_rows, FINAL=final, PROBE=probe, WORKER_REGS=worker_regs,
            TRACE_ON=trace is not None, Q_TMA=q_desc is not None, STAGED_STORE=staged_store, FUSED_MERGE=fused,
            MERGE_P=merge_width(splits) if fused else 16, EVEN_SPLITS=even_splits, num_warps=4,
            **({"launch_cooperative_grid": True} if fused and cooperative else {}),
        )

    if num_splits == 1:
        run(out, lse, 1)
        return
    from .split_merge import launch_merge

    mid_out = torch.empty(batch, q.shape[1], num_splits, VALUE_DIM, dtype=partials, device=q.device)
    mid_lse = torch.empty(batch, q.shape[1], num_splits, dtype=torch.float32, device=q.device)
    fuse = fused_merge and partials == torch.float32
    counters = fused_merge_counters(q.device, batch, head_blocks, num_splits) if fuse else None
    if counters is not None:
        run(mid_out, mid_lse, num_splits, (out, lse, counters))
        return
    run(mid_out, mid_lse, num_splits)
    launch_merge(mid_out.permute(2, 0, 1, 3), mid_lse.permute(2, 0, 1), out, lse, lse_in_log2=True, pdl=pdl,
                 columns=merge_columns)


def merge_width(num_splits: int) -> int:
    """The fused merge's width for a row's LSEs (the kernel's MERGE_P): num_splits rounded up to a power of two,
    >= 16."""
    return max(16, 1 << max(0, num_splits - 1).bit_length())


def fused_merge_counters(device: torch.device, batch: int, head_blocks: int, num_splits: int) -> torch.Tensor | None:
    """The zeroed int32 counters a fused-merge launch of this grid uses (one per sequence and head block), or
    None where it cannot fuse: more programs than SMs (its grid barrier needs them all resident at once), or
    no counters while a CUDA graph is captured (split_merge.merge_counters)."""
    from .split_merge import merge_counters

    if head_blocks * num_splits * batch > sm_count(device):
        return None
    return merge_counters(device, batch * head_blocks)


def trace_buffer(head_blocks: int, num_splits: int, batch: int, device) -> torch.Tensor:
    """A zeroed trace for `launch(trace=...)`: a row of TRACE_ROW int64 readings a program."""
    rows = kernel_module("_gluon_mla").TRACE_ROW.value
    return torch.zeros(head_blocks * num_splits * batch, rows, dtype=torch.int64, device=device)


def trace_rows(trace: torch.Tensor, head_blocks: int, num_splits: int, batch: int) -> list[dict]:
    """The programs' readings of a traced launch: a dict per program (its head block, split and sequence, and
    each of _gluon_mla.TRACE_SLOTS)."""
    slots = kernel_module("_gluon_mla").TRACE_SLOTS
    values = trace[:head_blocks * num_splits * batch, :len(slots)].cpu().tolist()
    rows = []
    for index, row in enumerate(values):
        grp, rest = index % head_blocks, index // head_blocks
        rows.append(dict(head_block=grp, split=rest % num_splits, sequence=rest // num_splits, **dict(zip(slots, row))))
    return rows
