"""Paged split-KV ("flash-decoding") attention for decode steps: one new query per sequence.

    out, lse = paged_decode_attention(q, key_pages, value_pages, block_table, lengths, scale,
                                      kv_head_of_q)

q [B, Hq, Dk]; key_pages [P, page_size, Hkv, Dk]; value_pages [P, page_size, Hkv, Dv] or None
(MLA: values are keys[..., :value_dim]); block_table [B, max_pages] int32 page ids of each
sequence's local keys in order; lengths [B] int32 local key counts (0 allowed). Returns out
[B, Hq, Dv] fp32 and lse [B, Hq] fp32 (-inf, out 0 for a sequence with no keys): exactly
helix_core.attention.partial_attention over the same keys (every cached key of a sequence is
visible to its one new query, so no mask).

Work split: stage 1 runs (head blocks x splits x batch) programs. A head block is up to BLOCK_H
query heads sharing one KV head, so a program reads each KV byte once for all of them. The
number of splits is chosen from the longest sequence and the SM count so that a batch of one
short sequence still fills the GPU. Stage 2 merges the splits by their LSE.

Nothing here imports triton at module import; kernels are compiled on first use.
"""
from __future__ import annotations

import importlib
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from . import interpret_mode, triton_available

# ---------------------------------------------------------------------------------------------
# kernel module (lazy; rebuilt if TRITON_INTERPRET changed since it was imported)
# ---------------------------------------------------------------------------------------------
_MOD = None


def _kernels():
    global _MOD
    if not triton_available():
        raise RuntimeError("Triton is not installed/importable: the paged decode kernel is unavailable "
                           "(use helix_core.attention.partial_attention)")
    want = interpret_mode()
    if _MOD is None:
        _MOD = importlib.import_module("helix_core.kernels._triton_decode")
    if _MOD.INTERPRET != want:
        _MOD = importlib.reload(_MOD)
    return _MOD


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


# ---------------------------------------------------------------------------------------------
# query-head grouping
# ---------------------------------------------------------------------------------------------
class HeadGroups:
    """Which query heads read which KV head, packed in blocks of <= BLOCK_H heads.

    Build it once (from kv_head_of_q: int group size, list, or tensor) and pass it on every call:
    the kernel's tables are cached per (BLOCK_H, device) and never need a host sync afterwards.
    """

    def __init__(self, kv_head_of_q: Sequence[int] | torch.Tensor, num_q_heads: int | None = None):
        if isinstance(kv_head_of_q, torch.Tensor):
            mapping = [int(x) for x in kv_head_of_q.detach().cpu().tolist()]
        else:
            mapping = [int(x) for x in kv_head_of_q]
        if num_q_heads is not None and len(mapping) != num_q_heads:
            raise ValueError(f"kv_head_of_q has {len(mapping)} entries for {num_q_heads} query heads")
        if any(h < 0 for h in mapping):
            raise ValueError("kv_head_of_q has negative entries")
        self.mapping = mapping
        self.num_q_heads = len(mapping)
        heads_of: dict[int, list[int]] = {}
        for q_head, kv_head in enumerate(mapping):
            heads_of.setdefault(kv_head, []).append(q_head)
        self.heads_of_kv = heads_of
        self.max_group = max((len(v) for v in heads_of.values()), default=1)
        self.max_kv_head = max(mapping, default=0)
        self._tables: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_group_size(cls, num_q_heads: int, group: int) -> HeadGroups:
        return cls([h // group for h in range(num_q_heads)])

    def tables(self, block_h: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(kv head of each head block [G] int32, query heads of each block [G, block_h] int32, -1 pad)."""
        key = (block_h, str(device))
        hit = self._tables.get(key)
        if hit is None:
            kv, rows = [], []
            for kv_head, q_heads in self.heads_of_kv.items():
                for i in range(0, len(q_heads), block_h):
                    chunk = q_heads[i:i + block_h]
                    kv.append(kv_head)
                    rows.append(chunk + [-1] * (block_h - len(chunk)))
            hit = (torch.tensor(kv, dtype=torch.int32).to(device),
                   torch.tensor(rows, dtype=torch.int32).reshape(len(kv), block_h).to(device))
            self._tables[key] = hit
        return hit


_GROUPS_CACHE: OrderedDict[tuple, tuple[HeadGroups, torch.Tensor]] = OrderedDict()


def as_head_groups(kv_head_of_q, num_q_heads: int) -> HeadGroups:
    """int (GQA group size) | sequence | tensor | HeadGroups -> HeadGroups (tensors cached by identity
    and version, so only the first call with a given CUDA tensor syncs)."""
    if isinstance(kv_head_of_q, HeadGroups):
        return kv_head_of_q
    if kv_head_of_q is None:
        return HeadGroups(list(range(num_q_heads)))
    if isinstance(kv_head_of_q, int):
        return HeadGroups.from_group_size(num_q_heads, kv_head_of_q)
    if isinstance(kv_head_of_q, torch.Tensor):
        key = (kv_head_of_q.data_ptr(), kv_head_of_q._version, tuple(kv_head_of_q.shape), str(kv_head_of_q.device))
        hit = _GROUPS_CACHE.get(key)
        if hit is not None and hit[1] is kv_head_of_q:
            _GROUPS_CACHE.move_to_end(key)
            return hit[0]
        groups = HeadGroups(kv_head_of_q, num_q_heads)
        _GROUPS_CACHE[key] = (groups, kv_head_of_q)  # holds the tensor: its address is not reused
        while len(_GROUPS_CACHE) > 32:
            _GROUPS_CACHE.popitem(last=False)
        return groups
    return HeadGroups(kv_head_of_q, num_q_heads)


# ---------------------------------------------------------------------------------------------
# launch configuration
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecodeConfig:
    block_n: int | None = None  # keys per tile
    block_h: int | None = None  # query heads per program (>= 16: tensor-core minimum)
    num_warps: int | None = None
    num_stages: int | None = None
    num_splits: int | None = None  # force the number of KV splits (else chosen from length and SMs)


_SM_COUNT: dict[int, int] = {}


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 8  # interpreter: small, so tests exercise several splits cheaply
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SM_COUNT:
        _SM_COUNT[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _SM_COUNT[index]


MAX_SPLITS = 256
MIN_TILES_PER_SPLIT = 4  # fewer keys than this per split and the merge overhead dominates


def choose_num_splits(batch: int, head_blocks: int, max_length: int, block_n: int, sm_count: int,
                      waves: int = 4) -> int:
    """Enough programs for ~`waves` programs per SM, without splits shorter than a few tiles."""
    programs = max(1, batch * head_blocks)
    want = -(-waves * sm_count // programs)
    tiles = -(-max(1, max_length) // block_n)
    most = max(1, tiles // MIN_TILES_PER_SPLIT)
    return int(max(1, min(want, most, MAX_SPLITS)))


def _default_config(dk_a: int, dk_t: int, dv: int, max_group: int, fp32_math: bool) -> tuple[int, int, int, int]:
    """(block_n, block_h, num_warps, num_stages) for head-part width dk_a, tail width dk_t, value width dv.

    Chosen from sm_90 ptxas reports (registers, no spills) with Triton 3.6/3.9; the benchmark's
    sweep times the alternatives. fp32_math: fp32 cache or query (no 16-bit tensor-core operands).
    """
    width = dk_a + dk_t + dv
    block_h = min(max(16, _next_pow2(max_group)), 64)
    if fp32_math:
        if width >= 768:
            return 16, 16, 8, 2
        return (32 if width <= 256 else 16), min(block_h, 32), 8, 2
    if width >= 768:  # MLA-sized (576 + 512): keep the [block_h, 512] fp32 accumulator in registers
        return 32, min(block_h, 32), 8, 2
    if width >= 384:
        return 32, block_h, 4, 2
    return 64, block_h, 4, 2


# ---------------------------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------------------------
def decode_kernel_usable(q: torch.Tensor) -> bool:
    """True where the engine should take the Triton path for this query: a CUDA tensor, Triton
    importable, not under the CPU interpreter, not disabled by HELIX_DISABLE_TRITON_DECODE=1."""
    if os.environ.get("HELIX_DISABLE_TRITON_DECODE", "0") not in ("", "0"):
        return False
    return bool(q.is_cuda) and not interpret_mode() and triton_available()


def paged_decode_attention(
    q: torch.Tensor,
    key_pages: torch.Tensor,
    value_pages: torch.Tensor | None,
    block_table: torch.Tensor,
    lengths: torch.Tensor,
    scale: float,
    kv_head_of_q: int | Sequence[int] | torch.Tensor | HeadGroups | None = None,
    *,
    value_dim: int | None = None,
    max_length: int | None = None,
    config: DecodeConfig | None = None,
    out: torch.Tensor | None = None,
    lse: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode attention of one query per sequence over its paged local keys -> (out [B,Hq,Dv], lse [B,Hq]).

    kv_head_of_q: GQA group size (int: head h reads KV head h // group), a [Hq] mapping (list or
      tensor), or a prebuilt HeadGroups (preferred in a serving loop: no host sync). None: Hq == Hkv.
    value_pages None: values are key_pages[..., :value_dim] (MLA); value_dim defaults to Dk.
    max_length: host-side upper bound of `lengths` (e.g. from the cache metadata); picks the number
      of splits without a device sync. Defaults to block_table.shape[1] * page_size.
    out/lse: optional preallocated fp32 outputs (any strides with unit last-dim stride for out).
    """
    mod = _kernels()
    if q.dim() != 3:
        raise ValueError(f"q must be [B, Hq, Dk], got {tuple(q.shape)}")
    batch, num_q_heads, dk = q.shape
    if key_pages.dim() != 4:
        raise ValueError(f"key_pages must be [P, page_size, Hkv, Dk], got {tuple(key_pages.shape)}")
    _, page_size, num_kv_heads, dk_cache = key_pages.shape
    if dk_cache != dk:
        raise ValueError(f"query dim {dk} != key dim {dk_cache}")
    values_are_keys = value_pages is None
    if values_are_keys:
        dv = dk if value_dim is None else int(value_dim)
        if not 0 < dv <= dk:
            raise ValueError(f"value_dim {dv} must be in (0, {dk}] when values are a view of the keys")
        value_pages = key_pages  # placeholder pointer, never read
    else:
        if value_pages.shape[:3] != key_pages.shape[:3]:
            raise ValueError(f"value pages {tuple(value_pages.shape)} do not match key pages {tuple(key_pages.shape)}")
        dv = value_pages.shape[-1]
        if value_dim is not None and value_dim != dv:
            raise ValueError(f"value_dim {value_dim} != value pages dim {dv}")
    if q.stride(-1) != 1 or key_pages.stride(-1) != 1 or value_pages.stride(-1) != 1:
        raise ValueError("q, key_pages and value_pages need a unit stride in their last dim")
    if block_table.dim() != 2 or block_table.shape[0] != batch:
        raise ValueError(f"block_table must be [B={batch}, max_pages], got {tuple(block_table.shape)}")
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must be [B={batch}], got {tuple(lengths.shape)}")
    device = q.device
    if block_table.dtype != torch.int32:
        block_table = block_table.to(torch.int32)
    if block_table.stride(-1) != 1:
        block_table = block_table.contiguous()
    if lengths.dtype != torch.int32 or not lengths.is_contiguous():
        lengths = lengths.to(torch.int32).contiguous()

    groups = as_head_groups(kv_head_of_q, num_q_heads)
    if groups.num_q_heads != num_q_heads:
        raise ValueError(f"head mapping covers {groups.num_q_heads} query heads, q has {num_q_heads}")
    if groups.max_kv_head >= num_kv_heads:
        raise ValueError(f"kv_head_of_q refers to KV head {groups.max_kv_head} of {num_kv_heads}")

    # head dims: head part [0, block_a) (also the value tile when values are keys), tail [block_a, dk)
    block_a = max(16, _next_pow2(min(dk, dv)))
    block_dv = max(16, _next_pow2(dv))
    has_tail = dk > block_a
    block_t = max(16, _next_pow2(dk - block_a)) if has_tail else 16
    if values_are_keys:
        assert block_dv == block_a

    cfg = config or DecodeConfig()
    qk_fp32 = q.dtype != key_pages.dtype
    fp32_math = qk_fp32 or key_pages.dtype == torch.float32
    d_bn, d_bh, d_warps, d_stages = _default_config(block_a, block_t if has_tail else 0, block_dv,
                                                    groups.max_group, fp32_math)
    block_n = cfg.block_n or d_bn
    block_h = cfg.block_h or d_bh
    num_warps = cfg.num_warps or d_warps
    num_stages = cfg.num_stages or d_stages
    if block_n < 16 or block_n & (block_n - 1) or block_h < 16 or block_h & (block_h - 1):
        raise ValueError("block_n and block_h must be powers of two >= 16")
    group_kv, group_heads = groups.tables(block_h, device)
    head_blocks = group_kv.shape[0]

    if max_length is None:
        max_length = block_table.shape[1] * page_size
    num_splits = cfg.num_splits or choose_num_splits(batch, head_blocks, max_length, block_n, _sm_count(device))
    num_splits = max(1, int(num_splits))

    if out is None:
        out = torch.empty(batch, num_q_heads, dv, dtype=torch.float32, device=device)
    elif out.shape != (batch, num_q_heads, dv) or out.dtype != torch.float32 or out.stride(-1) != 1:
        raise ValueError(f"out must be fp32 [{batch}, {num_q_heads}, {dv}] with a unit last stride")
    if lse is None:
        lse = torch.empty(batch, num_q_heads, dtype=torch.float32, device=device)
    elif lse.shape != (batch, num_q_heads) or lse.dtype != torch.float32:
        raise ValueError(f"lse must be fp32 [{batch}, {num_q_heads}]")
    if batch == 0 or num_q_heads == 0:
        return out, lse

    upcast = mod.INTERPRET
    common = dict(
        DK=dk, DV=dv, BLOCK_A=block_a, BLOCK_T=block_t, HAS_TAIL=has_tail, BLOCK_DV=block_dv,
        VALUES_ARE_KEYS=values_are_keys, QK_FP32=qk_fp32, PAGE_SIZE=page_size, BLOCK_N=block_n,
        BLOCK_H=block_h, UPCAST=upcast, num_warps=num_warps, num_stages=num_stages,
    )
    grid = (head_blocks, num_splits, batch)
    qk_scale = float(scale) * mod.LOG2E
    if num_splits == 1:
        mod._decode_split_kernel[grid](
            q, key_pages, value_pages, block_table, lengths, group_kv, group_heads, out, lse,
            qk_scale, 1,
            q.stride(0), q.stride(1),
            key_pages.stride(0), key_pages.stride(1), key_pages.stride(2),
            value_pages.stride(0), value_pages.stride(1), value_pages.stride(2),
            block_table.stride(0),
            out.stride(0), out.stride(1), 0,
            lse.stride(0), lse.stride(1), 0,
            FINAL=True, **common,
        )
        return out, lse

    mid_out = torch.empty(batch, num_q_heads, num_splits, dv, dtype=torch.float32, device=device)
    mid_lse = torch.empty(batch, num_q_heads, num_splits, dtype=torch.float32, device=device)
    mod._decode_split_kernel[grid](
        q, key_pages, value_pages, block_table, lengths, group_kv, group_heads, mid_out, mid_lse,
        qk_scale, num_splits,
        q.stride(0), q.stride(1),
        key_pages.stride(0), key_pages.stride(1), key_pages.stride(2),
        value_pages.stride(0), value_pages.stride(1), value_pages.stride(2),
        block_table.stride(0),
        mid_out.stride(0), mid_out.stride(1), mid_out.stride(2),
        mid_lse.stride(0), mid_lse.stride(1), mid_lse.stride(2),
        FINAL=False, **common,
    )
    mod._merge_kernel[(batch, num_q_heads)](
        mid_out, mid_lse, out, lse, num_splits,
        mid_out.stride(2), mid_out.stride(0), mid_out.stride(1),
        mid_lse.stride(2), mid_lse.stride(0), mid_lse.stride(1),
        out.stride(0), out.stride(1),
        lse.stride(0), lse.stride(1),
        DV=dv, BLOCK_DV=block_dv, BLOCK_P=max(2, _next_pow2(num_splits)), LSE_IN_LOG2=True,
        num_warps=4 if block_dv <= 256 else 8,
    )
    return out, lse


def merge_partials(outs: torch.Tensor, lses: torch.Tensor) -> torch.Tensor:
    """Triton twin of helix_core.attention.merge_partials for the KVP merge.

    outs [P, T, H, D] (any strides, unit last stride: e.g. a slice of the packed exchange buffer),
    lses [P, T, H] natural-log LSE (-inf: no keys) -> exact attention [T, H, D] fp32.
    Falls back to the torch version for other ranks of tensor or off-GPU without the interpreter.
    """
    if outs.dim() != 4 or lses.dim() != 3 or not (outs.is_cuda or interpret_mode()) or not triton_available():
        from ..attention import merge_partials as torch_merge
        return torch_merge(outs, lses)
    mod = _kernels()
    if outs.stride(-1) != 1:
        outs = outs.contiguous()
    parts, tokens, heads, dim = outs.shape
    result = torch.empty(tokens, heads, dim, dtype=torch.float32, device=outs.device)
    lse = torch.empty(tokens, heads, dtype=torch.float32, device=outs.device)
    if parts == 0 or tokens == 0 or heads == 0:
        return result.zero_()
    block_dv = max(16, _next_pow2(dim))
    mod._merge_kernel[(tokens, heads)](
        outs, lses, result, lse, parts,
        outs.stride(0), outs.stride(1), outs.stride(2),
        lses.stride(0), lses.stride(1), lses.stride(2),
        result.stride(0), result.stride(1),
        lse.stride(0), lse.stride(1),
        DV=dim, BLOCK_DV=block_dv, BLOCK_P=max(2, _next_pow2(parts)), LSE_IN_LOG2=False,
        num_warps=4 if block_dv <= 256 else 8,
    )
    return result


# ---------------------------------------------------------------------------------------------
# PagedKVCache glue
# ---------------------------------------------------------------------------------------------
_TABLE_CACHE: OrderedDict[tuple, tuple] = OrderedDict()
_TABLE_CACHE_SIZE = 16


def build_block_table(cache, seq_ids: Sequence[int], device: torch.device | str | None = None,
                      ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(block_table [B, max_pages] int32, lengths [B] int32, max_length) of this rank's pages.

    Memoized on the sequences' state (shard object identity, page count, length), so the layers
    of one step (and the HOP-B pieces) share one host->device copy. Pages of a sequence are only
    ever appended, and a freed-and-readded id gets a new shard object (held by the memo entry,
    so its identity cannot be reused while the entry lives).
    """
    device = torch.device(device) if device is not None else cache.keys.device
    shards = [cache.sequences[s] for s in seq_ids]
    key = (id(cache), str(device), tuple((id(sh), len(sh.pages), sh.length) for sh in shards))
    hit = _TABLE_CACHE.get(key)
    if hit is not None:
        _TABLE_CACHE.move_to_end(key)
        return hit[0], hit[1], hit[2]
    local = [cache.local_length(s) for s in seq_ids]
    page_size = cache.page_size
    counts = [-(-n // page_size) for n in local]
    width = max(1, max(counts, default=0))
    table = torch.zeros(len(seq_ids), width, dtype=torch.int32)
    for row, (sh, count) in enumerate(zip(shards, counts)):
        if count:
            table[row, :count] = torch.tensor(sh.pages[:count], dtype=torch.int32)
    lens = torch.tensor(local, dtype=torch.int32)
    max_length = max(local, default=0)
    if device.type == "cuda":
        table = table.pin_memory().to(device, non_blocking=True)
        lens = lens.pin_memory().to(device, non_blocking=True)
    else:
        table, lens = table.to(device), lens.to(device)
    _TABLE_CACHE[key] = (table, lens, max_length, shards)
    while len(_TABLE_CACHE) > _TABLE_CACHE_SIZE:
        _TABLE_CACHE.popitem(last=False)
    return table, lens, max_length


def decode_attention_for_step(cache, layer: int, seq_ids: Sequence[int], q: torch.Tensor, scale: float,
                              kv_head_of_q, value_dim: int | None = None,
                              config: DecodeConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop-in for ShardedAttention._local_attention on a decode piece (one token per sequence).

    q [B, Hq, Dk] (row i is seq_ids[i]'s new token, already written to the cache). Returns
    (out [B, Hq, Dv] fp32, lse [B, Hq] fp32) as partial_attention would over each sequence's local keys.
    """
    table, lens, max_length = build_block_table(cache, seq_ids, q.device)
    values = None if cache.values is None else cache.values[layer]
    if values is None and value_dim is None:
        value_dim = cache.keys.shape[-1]
    return paged_decode_attention(q, cache.keys[layer], values, table, lens, scale, kv_head_of_q,
                                  value_dim=value_dim if values is None else None, max_length=max_length,
                                  config=config)
